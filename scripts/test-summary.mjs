// Adds up the vitest JSON reports (.vitest-results.json) of every workspace package that has a `test` script and
// prints one closing line: "N passed, N failed, N skipped". Exits non-zero when anything failed.
//
// A package counts as one more failure, named in the listing above the closing line, when its report is missing or
// unreadable (the test run crashed or never started), when a test file failed outside any test (an import error, a
// failing hook), or when its test task exited non-zero although the report shows no failure (an unhandled error, a
// crash after the report was written). Exit codes come from turbo's run summary: pass its path as the first argument
// (`turbo run test --summarize` writes it under .turbo/runs/); without one only the reports are read.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const GROUPS = ['packages', 'apps', 'tools', 'examples'];

/** Exit code of each package's `test` task, by package name, from turbo's run summary (empty without one). */
function testExitCodes(summaryPath) {
  const codes = new Map();
  if (!summaryPath) return codes;
  let summary;
  try {
    summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
  } catch (e) {
    console.log(`(turbo run summary ${summaryPath} unreadable: ${e.message}; exit codes not checked)`);
    return codes;
  }
  for (const t of summary.tasks ?? [])
    if (t.task === 'test') codes.set(t.package, t.execution?.exitCode ?? null);
  return codes;
}

const exitCodes = testExitCodes(process.argv[2]);
let passed = 0;
let failed = 0;
let skipped = 0;
let packages = 0;
for (const group of GROUPS) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir).sort()) {
    const manifest = join(dir, name, 'package.json');
    if (!existsSync(manifest)) continue;
    const pkg = JSON.parse(readFileSync(manifest, 'utf8'));
    if (!pkg.scripts?.test) continue;
    packages++;
    const where = `${group}/${name}`;
    const problems = [];
    const file = join(dir, name, '.vitest-results.json');
    const code = exitCodes.get(pkg.name);
    const ran = exitCodes.size === 0 || (code !== undefined && code !== null);
    let r = null;
    if (!ran) problems.push('its test task did not run');
    else if (!existsSync(file)) problems.push('no test report (the test run crashed or never started)');
    else
      try {
        r = JSON.parse(readFileSync(file, 'utf8'));
      } catch (e) {
        problems.push(`unreadable test report (${e.message})`);
      }
    let p = 0;
    let f = 0;
    let s = 0;
    if (r !== null) {
      p = r.numPassedTests ?? 0;
      f = r.numFailedTests ?? 0;
      s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
      const brokenFiles = (r.testResults ?? []).filter(
        (t) => t.status === 'failed' && !(t.assertionResults ?? []).some((a) => a.status === 'failed'),
      );
      for (const t of brokenFiles)
        problems.push(`${t.name.slice(join(dir, name).length + 1)} failed outside its tests: ${t.message}`);
      if (f === 0 && brokenFiles.length === 0 && r.success === false)
        problems.push('vitest reported a failure');
    }
    if (ran && exitCodes.size > 0 && code !== 0 && f === 0 && problems.length === 0)
      problems.push(`its test task exited with code ${code} (an unhandled error or a crash: see its log)`);
    passed += p;
    failed += f + problems.length;
    skipped += s;
    console.log(`${where}: ${p} passed, ${f + problems.length} failed, ${s} skipped`);
    for (const problem of problems) console.log(`  FAILED: ${problem}`);
  }
}
if (packages === 0) {
  console.log('no workspace package has a test script');
  failed++;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
