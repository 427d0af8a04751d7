#!/usr/bin/env node
// A hostile-file sweep of the mnemo CLI (issue 10): it throws the kinds of files and paths a careless or hostile user
// can give at inspect-cache, generate, cache-prompt, convert-cache and chat, each run with a time limit and a memory
// limit (resident memory polled from /proc; the run is killed past the limit), and prints one row per case with the
// verdict. Nothing may hang, crash (native stack trace, signal), go past the memory limit, replace a non-file, leave
// temporary files behind after the next write, or accept a cache after a weight byte changed.
//
//   pnpm build && node tools/hostile/sweep.mjs [--timeout-s 60] [--max-rss-mb 2048] [--keep]
//
// Linux only (FIFOs, /proc; device nodes with mknod when run as root, in a temporary folder). Exit code 1 when any
// case fails. Takes a few minutes (it writes an 87 MB header and a 95 MB prompt entry).
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  watch,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(root, 'apps', 'cli', 'dist', 'mnemo.js');
const st = await import(join(root, 'packages', 'safetensors', 'dist', 'index.js'));
const preset = join(root, 'fixtures', 'synthetic', 'llama-f32');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const TIMEOUT_MS = opt('--timeout-s', 60) * 1000;
const MAX_RSS = opt('--max-rss-mb', 2048) * 1024 * 1024;
if (!existsSync(cli)) {
  console.error(`${cli} is missing: run pnpm build first`);
  process.exit(2);
}
const isRoot = process.getuid?.() === 0;
const tmp = mkdtempSync(join(tmpdir(), 'mnemo-hostile-sweep-'));

// ---- running the CLI under limits ----------------------------------------------------------------------------

function vmRss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs the CLI; resolves with status, signal, output, wall time, peak RSS and why it was killed (if it was). With
 * `killOnTemp: folder`, `killSignal` is sent as soon as a temporary file appears in that folder (mid-write).
 */
function run(cliArgs, { input = '', cwd, killOnTemp, killSignal = 'SIGKILL' } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [cli, ...cliArgs], {
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, MNEMO_CACHE_DIR: join(tmp, 'mnemo-cache') }, // remembered weight digests stay here
    });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    let killed;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdin.end(input);
    const poll = setInterval(() => {
      peak = Math.max(peak, vmRss(child.pid));
      if (peak > MAX_RSS && !killed) {
        killed = `memory over ${MAX_RSS / 2 ** 20} MiB`;
        child.kill('SIGKILL');
      }
    }, 20);
    const timer = setTimeout(() => {
      killed = `time over ${TIMEOUT_MS / 1000} s`;
      child.kill('SIGKILL');
    }, TIMEOUT_MS);
    let hit = false;
    const watcher =
      killOnTemp === undefined
        ? undefined
        : watch(killOnTemp, (_event, name) => {
            if (!hit && name && /\.tmp-\d+-[0-9a-f]{12}$/.test(name)) {
              hit = true;
              child.kill(killSignal);
            }
          });
    child.on('exit', (status, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      watcher?.close();
      resolve({ status, signal, stdout, stderr, ms: performance.now() - t0, peak, killed, hit });
    });
  });
}

// ---- verdicts ---------------------------------------------------------------------------------------------------

const rows = [];
let failures = 0;

/** A run must end by itself, within the limits, without a crash; `check` adds what this case must show. */
function judge(name, r, check) {
  const problems = [];
  if (r.killed) problems.push(`killed: ${r.killed}`);
  else if (r.signal) problems.push(`died of ${r.signal}`);
  if (/FATAL ERROR|Native stack trace|JavaScript heap out of memory|\n\s+at /.test(r.stderr))
    problems.push('crash output');
  if (!r.killed) {
    const more = check(r);
    if (more) problems.push(more);
  }
  const first = (r.stderr.trim().split('\n')[0] || r.stdout.trim().split('\n').at(-1) || '').slice(0, 150);
  rows.push({
    name,
    exit: r.signal ?? r.status,
    s: (r.ms / 1000).toFixed(1),
    mb: Math.round(r.peak / 2 ** 20),
    ok: problems.length === 0,
    note: problems.length ? problems.join('; ') : first,
  });
  if (problems.length) failures++;
}

/** Refused with exit 1 and one `mnemo:` line (matching `pattern`), one error code at most. */
const refused = (pattern) => (r) => {
  if (r.status !== 1) return `exit ${r.status}, expected 1`;
  const lines = r.stderr.trimEnd().split('\n');
  if (lines.length !== 1 || !lines[0].startsWith('mnemo: '))
    return `stderr is not one mnemo: line: ${r.stderr.slice(0, 200)}`;
  if ((lines[0].match(/\[[A-Z_]+\]/g) ?? []).length > 1) return 'repeated error code';
  if (pattern && !pattern.test(lines[0])) return `unexpected message: ${lines[0].slice(0, 200)}`;
  return undefined;
};
const succeeded = (r) => (r.status === 0 ? undefined : `exit ${r.status}: ${r.stderr.slice(0, 200)}`);

// ---- crafting files ---------------------------------------------------------------------------------------------

function metadataDigest(m) {
  const h = createHash('sha256');
  const entries = Object.entries(m)
    .filter(([k]) => k !== 'metadata_checksum')
    .map(([k, v]) => [Buffer.from(k), Buffer.from(v)])
    .sort((a, b) => Buffer.compare(a[0], b[0]));
  for (const [k, v] of entries)
    h.update(
      Buffer.concat([Buffer.from(`${k.length}:`), k, Buffer.from(`,${v.length}:`), v, Buffer.from(',')]),
    );
  return h.digest('hex');
}

/** Rewrites a prompt-cache file's metadata with `edit` and signs it again (a consistent, crafted file). */
function craft(src, dst, edit) {
  const d = st.decodeSafetensors(readFileSync(src));
  const m = { ...d.metadata };
  edit(m);
  m.metadata_checksum = metadataDigest(m);
  writeFileSync(dst, st.encodeSafetensors([...d.tensors.values()], m));
  return dst;
}

let modelN = 0;
function modelCopy(edit) {
  const dir = join(tmp, `model-${modelN++}`);
  cpSync(preset, dir, { recursive: true });
  edit?.(dir);
  return dir;
}
const editJson = (file, f) => writeFileSync(file, JSON.stringify(f(JSON.parse(readFileSync(file, 'utf8')))));
const p = (name) => join(tmp, name);
const temps = (dir) => readdirSync(dir).filter((f) => /\.tmp-\d+-[0-9a-f]{12}$/.test(f));

// ---- the cases --------------------------------------------------------------------------------------------------

const good = p('good.safetensors');
judge(
  'cache-prompt (baseline)',
  await run(['cache-prompt', '--model', preset, '--prompt', 'Hi! ', '--prompt-cache-file', good]),
  succeeded,
);

// 3. FIFOs as inputs
const fifo = p('cache.fifo');
execFileSync('mkfifo', [fifo]);
symlinkSync(fifo, p('fifo-link.safetensors'));
const fifoMsg = /named pipe \(FIFO\), not a regular file/;
judge('inspect-cache FIFO', await run(['inspect-cache', fifo]), (r) =>
  r.status === 1 && fifoMsg.test(r.stdout) ? undefined : `exit ${r.status}`,
);
judge('inspect-cache symlink to FIFO', await run(['inspect-cache', p('fifo-link.safetensors')]), (r) =>
  r.status === 1 && fifoMsg.test(r.stdout) ? undefined : `exit ${r.status}`,
);
judge(
  'generate --prompt-cache-file FIFO',
  await run(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', fifo]),
  refused(fifoMsg),
);
judge(
  'generate (model from) FIFO',
  await run(['generate', '--prompt', 'x', '--prompt-cache-file', fifo]),
  refused(fifoMsg),
);
judge(
  'convert-cache FIFO',
  await run(['convert-cache', fifo, p('o.safetensors'), '--to', 'mlx']),
  refused(fifoMsg),
);
judge(
  'chat /load FIFO',
  await run(['chat', '--model', preset, '--max-tokens', '2'], { input: `/load ${fifo}\nHi\n` }),
  (r) => (r.status === 0 && fifoMsg.test(r.stderr) ? undefined : `exit ${r.status}`),
);
for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
  const dir = modelCopy((d) => {
    unlinkSync(join(d, name));
    execFileSync('mkfifo', [join(d, name)]);
  });
  judge(
    `generate, model ${name} is a FIFO`,
    await run(['generate', '--model', dir, '--prompt', 'x']),
    refused(fifoMsg),
  );
}
mkdirSync(p('dir.safetensors'));
judge('inspect-cache on a folder', await run(['inspect-cache', p('dir.safetensors')]), (r) =>
  r.status === 1 ? undefined : `exit ${r.status}`,
);
if (isRoot) {
  const zero = p('zero-device');
  execFileSync('mknod', [zero, 'c', '1', '5']); // like /dev/zero, in our own folder
  judge('inspect-cache on a /dev/zero-like device', await run(['inspect-cache', zero]), (r) =>
    r.status === 1 && /character device/.test(r.stdout) ? undefined : `exit ${r.status}`,
  );
  judge(
    'generate --prompt-cache-file device',
    await run(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', zero]),
    refused(/character device/),
  );
}

// 1. writes to non-files
const kindOf = (f) => {
  const s = lstatSync(f);
  return s.isFIFO()
    ? 'fifo'
    : s.isCharacterDevice()
      ? 'chardev'
      : s.isDirectory()
        ? 'dir'
        : s.isSymbolicLink()
          ? 'link'
          : 'file';
};
const outTargets = [
  ['FIFO', fifo, 'fifo'],
  ['folder', p('dir.safetensors'), 'dir'],
];
if (isRoot) {
  const nul = p('null-device');
  execFileSync('mknod', [nul, 'c', '1', '3']);
  outTargets.push(['device (like /dev/null)', nul, 'chardev']);
}
for (const [label, target, kind] of outTargets) {
  const still = (r) =>
    refused(/not a regular file: refusing to replace it/)(r) ??
    (kindOf(target) === kind ? undefined : `${target} is now a ${kindOf(target)}`);
  judge(
    `cache-prompt to a ${label}`,
    await run(['cache-prompt', '--model', preset, '--prompt', 'Hi', '--prompt-cache-file', target]),
    still,
  );
  judge(`convert-cache to a ${label}`, await run(['convert-cache', good, target, '--to', 'mlx']), still);
  judge(
    `chat /save to a ${label}`,
    await run(['chat', '--model', preset, '--max-tokens', '2'], { input: `Hi\n/save ${target}\n` }),
    (r) =>
      r.status === 0 && /not a regular file/.test(r.stderr) && kindOf(target) === kind
        ? undefined
        : `exit ${r.status}, ${target} is a ${kindOf(target)}`,
  );
}
const target = p('private.safetensors');
writeFileSync(target, 'old');
chmodSync(target, 0o600);
symlinkSync(target, p('link.safetensors'));
judge(
  'cache-prompt through a symlink to a 0600 file',
  await run([
    'cache-prompt',
    '--model',
    preset,
    '--prompt',
    'Hi',
    '--prompt-cache-file',
    p('link.safetensors'),
  ]),
  (r) =>
    succeeded(r) ??
    (kindOf(p('link.safetensors')) !== 'link'
      ? 'the link was replaced'
      : (statSync(target).mode & 0o777) !== 0o600
        ? `mode ${(statSync(target).mode & 0o777).toString(8)}`
        : undefined),
);

// 6. interrupted writers, signalled as soon as their temporary file appears: SIGKILL leaves it until the next write to
// the folder; SIGINT and SIGTERM leave none
const killDir = p('killed');
mkdirSync(killDir);
const deep = join(root, 'fixtures', 'synthetic', 'llama-q4g64-deep');
const longPrompt = 'The quick brown fox jumps over the lazy dog. '.repeat(78); // 3,511 tokens: an 11 MB cache
for (const [signal, times] of [
  ['SIGKILL', 6],
  ['SIGINT', 3],
  ['SIGTERM', 3],
]) {
  let left = 0;
  let midWrite = 0;
  let died = 0;
  let seen = 0;
  for (let i = 0; i < times; i++) {
    const r = await run(
      [
        'cache-prompt',
        '--model',
        deep,
        '--prompt',
        longPrompt,
        '--ignore-chat-template',
        '--prompt-cache-file',
        join(killDir, `c-${signal}.safetensors`),
      ],
      { killOnTemp: killDir, killSignal: signal },
    );
    if (r.hit) midWrite++;
    if (r.signal === signal) died++;
    if (signal === 'SIGKILL') seen = Math.max(seen, temps(killDir).length);
    else left += temps(killDir).length;
  }
  const what = `${times} x ${signal} when the temporary file appeared (${midWrite} signalled mid-write, ${died} died of it)`;
  if (signal === 'SIGKILL') {
    const before = temps(killDir).length;
    const r = await run([
      'cache-prompt',
      '--model',
      preset,
      '--prompt',
      'Hi',
      '--prompt-cache-file',
      join(killDir, 'next.safetensors'),
    ]);
    judge(
      `${what}; temporary files in the folder after each kill: at most ${seen} (each write removes the dead writers'), ${before} after the last`,
      r,
      (x) =>
        succeeded(x) ?? (temps(killDir).length ? `${temps(killDir).length} temporary files left` : undefined),
    );
  } else {
    const ok = left === 0 && died === times;
    rows.push({ name: what, exit: '-', s: '-', mb: '-', ok, note: `${left} temporary files left` });
    if (!ok) failures++;
  }
}

// 2. a weight byte changed where the old sampled fingerprint never looked: once by rewriting the file, once in place
// with its size and mtime restored after its digests were remembered
for (const inPlace of [false, true]) {
  const changed = modelCopy();
  const weights = join(changed, 'model.safetensors');
  const past = new Date(Date.now() - 3_600_000);
  utimesSync(weights, past, past); // settled, so that its digests are remembered
  const staleCache = p(`stale-${inPlace}.safetensors`);
  judge(
    'cache-prompt (model to be changed)',
    await run(['cache-prompt', '--model', changed, '--prompt', 'Hi! ', '--prompt-cache-file', staleCache]),
    succeeded,
  );
  const bytes = readFileSync(weights);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const at = 8 + n + header['model.embed_tokens.weight'].data_offsets[0] + 4106;
  bytes[at] ^= 1;
  if (inPlace) {
    const fd = openSync(weights, 'r+');
    writeSync(fd, bytes, at, 1, at);
    closeSync(fd);
    utimesSync(weights, past, past);
  } else writeFileSync(weights, bytes);
  judge(
    `generate with a cache made before a weight byte changed${inPlace ? ' in place (size and mtime kept)' : ''}`,
    await run(['generate', '--model', changed, '--prompt', 'What?', '--prompt-cache-file', staleCache]),
    refused(/MODEL_MISMATCH/),
  );
}

// 4. chat templates that loop or explode
const bombs = {
  'range(1e8)': '{% for i in range(100000000) %}x{% endfor %}',
  'nested loops': '{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}',
  'doubling string':
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% set n = (ns.s | upper) | length %}{% endfor %}",
  'replace growth':
    "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}",
  'indent bomb': '{{ "a\\nb\\nc" | indent(1000000000) }}',
  'list growth':
    '{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}',
};
for (const [label, source] of Object.entries(bombs)) {
  const dir = modelCopy((d) =>
    editJson(join(d, 'tokenizer_config.json'), (c) => ({ ...c, chat_template: source })),
  );
  judge(
    `generate, chat template ${label}`,
    await run(['generate', '--model', dir, '--prompt', 'Hi']),
    refused(/chat template "default": rendering stopped/),
  );
}

// 5. a valid-looking file with a 95 MB prompt entry; an 87 MB header of 1.3 M empty tensors
const hugePrompt = craft(good, p('huge-prompt.safetensors'), (m) => {
  m.prompt = 'x'.repeat(95_000_000);
});
judge('inspect-cache, 95 MB prompt entry', await run(['inspect-cache', hugePrompt]), (r) =>
  r.status === 0 ? undefined : `exit ${r.status}`,
);
judge(
  'generate, 95 MB prompt entry',
  await run(['generate', '--prompt', 'x', '--prompt-cache-file', hugePrompt]),
  refused(/CORRUPT/),
);
{
  const parts = [];
  for (let i = 0; i < 1_300_000; i++)
    parts.push(`"layers.${i}.x":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
  const json = Buffer.from(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const buf = Buffer.alloc(8 + padded, 0x20);
  buf.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(buf, 8);
  writeFileSync(p('huge-header.safetensors'), buf);
}
judge(
  'inspect-cache, 87 MB header of 1.3 M tensors',
  await run(['inspect-cache', p('huge-header.safetensors')]),
  (r) => (r.status === 1 ? undefined : `exit ${r.status}`),
);
judge(
  'generate, 87 MB header of 1.3 M tensors',
  await run([
    'generate',
    '--model',
    preset,
    '--prompt',
    'x',
    '--prompt-cache-file',
    p('huge-header.safetensors'),
  ]),
  refused(),
);

// 9. a cache past the context; a quantized cache with start 1e15; NaN weights; a token id of 1e9; flags
const ctx = modelCopy((d) =>
  editJson(join(d, 'config.json'), (c) => ({ ...c, max_position_embeddings: 64 })),
);
const longCache = p('long.safetensors');
judge(
  'cache-prompt 70 tokens past a 64 context',
  await run([
    'cache-prompt',
    '--model',
    ctx,
    '--prompt',
    'y'.repeat(69),
    '--ignore-chat-template',
    '--prompt-cache-file',
    longCache,
  ]),
  refused(/context of 64/),
);
judge(
  '… with --ignore-context-limit',
  await run([
    'cache-prompt',
    '--model',
    ctx,
    '--prompt',
    'y'.repeat(69),
    '--ignore-chat-template',
    '--prompt-cache-file',
    longCache,
    '--ignore-context-limit',
  ]),
  succeeded,
);
judge(
  'generate from a cache longer than the context',
  await run(['generate', '--model', ctx, '--prompt', 'x', '--prompt-cache-file', longCache]),
  refused(/holds 70 tokens, more than the model's context of 64/),
);
judge(
  'generate, prompt of 5,001 tokens on a 4,096 model',
  await run(['generate', '--model', preset, '--prompt', 'z'.repeat(5000), '--ignore-chat-template']),
  refused(/context of 4096/),
);
const q = p('q.safetensors');
judge(
  'cache-prompt --kv-bits 8',
  await run([
    'cache-prompt',
    '--model',
    preset,
    '--prompt',
    'Hello there',
    '--kv-bits',
    '8',
    '--kv-group-size',
    '32',
    '--prompt-cache-file',
    q,
  ]),
  succeeded,
);
const q15 = craft(q, p('q-start.safetensors'), (m) => {
  const c = JSON.parse(m.cache);
  for (const l of c.layers) l.start = 1e15;
  m.cache = JSON.stringify(c);
});
judge('inspect-cache, quantized start 1e15', await run(['inspect-cache', q15]), (r) =>
  r.status === 1 && /contradicts offset/.test(r.stdout) ? undefined : `exit ${r.status}`,
);
const two = craft(good, p('two-million.safetensors'), (m) => {
  m.tokens = JSON.stringify(Array.from({ length: 2_000_000 }, () => 1));
});
judge(
  'generate, cache claiming 2 M tokens',
  await run(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', two]),
  refused(),
);
const nan = modelCopy((d) => {
  const dd = st.decodeSafetensors(readFileSync(join(d, 'model.safetensors')));
  const tensors = [...dd.tensors.values()].map((t) =>
    t.name === 'model.norm.weight' ? { ...t, data: new Float32Array(64).fill(Number.NaN) } : t,
  );
  writeFileSync(join(d, 'model.safetensors'), st.encodeSafetensors(tensors, dd.metadata));
});
judge(
  'generate with NaN weights',
  await run(['generate', '--model', nan, '--prompt', 'Hi', '--json']),
  refused(/non-finite logit/),
);
const tokBomb = modelCopy((d) =>
  editJson(join(d, 'tokenizer.json'), (t) => ({
    ...t,
    added_tokens: [...t.added_tokens, { id: 1e9, content: '<x>', special: true }],
  })),
);
judge(
  'generate, added token id 1e9',
  await run(['generate', '--model', tokBomb, '--prompt', 'Hi']),
  refused(/has id 1000000000/),
);
for (const v of ['1', '4'])
  judge(
    `generate --max-kv-size ${v}`,
    await run(['generate', '--model', preset, '--prompt', 'x', '--max-kv-size', v]),
    (r) => (r.status === 1 && /must be at least 5/.test(r.stderr) ? undefined : `exit ${r.status}`),
  );
judge(
  "generate --prompt-cache-file ''",
  await run(['generate', '--model', preset, '--prompt', 'x', '--prompt-cache-file', '']),
  (r) => (r.status === 1 && /A file name is needed/.test(r.stderr) ? undefined : `exit ${r.status}`),
);
judge(
  'chat /save without a file',
  await run(['chat', '--model', preset, '--max-tokens', '2'], { input: '/save\n' }),
  (r) => (r.status === 0 && /usage: \/save FILE/.test(r.stdout) ? undefined : 'no usage line'),
);
judge(
  'cache-prompt into a missing folder',
  await run([
    'cache-prompt',
    '--model',
    preset,
    '--prompt',
    'x',
    '--prompt-cache-file',
    p('no/such/dir/c.safetensors'),
  ]),
  refused(/\[IO\]$/),
);

// GGUF models: the same guarantees for a GGUF file given as the model
const ggufFixture = join(root, 'fixtures', 'gguf', 'llama-q8_0.gguf');
const gg = await import(join(root, 'packages', 'gguf', 'dist', 'index.js'));
{
  const fifoGguf = p('fifo-model.gguf');
  execFileSync('mkfifo', [fifoGguf]);
  symlinkSync(fifoGguf, p('fifo-link-model.gguf'));
  for (const [label, path] of [
    ['a FIFO', fifoGguf],
    ['a symlink to a FIFO', p('fifo-link-model.gguf')],
  ])
    judge(
      `generate, model .gguf is ${label}`,
      await run(['generate', '--model', path, '--prompt', 'x']),
      refused(/named pipe \(FIFO\), not a model file or folder/),
    );
  if (isRoot) {
    const zeroGguf = p('zero-model.gguf');
    execFileSync('mknod', [zeroGguf, 'c', '1', '5']);
    judge(
      'generate, model .gguf is a /dev/zero-like device',
      await run(['generate', '--model', zeroGguf, '--prompt', 'x']),
      refused(/character device, not a model file or folder/),
    );
  }
  // a tensor byte changed in place (size and mtime restored) where the old fingerprint's 16 x 4 KiB windows never
  // looked, after the file's digests were remembered
  const model = p('changed.gguf');
  cpSync(ggufFixture, model);
  const past = new Date(Date.now() - 3_600_000);
  utimesSync(model, past, past);
  const staleCache = p('stale-gguf.safetensors');
  judge(
    'cache-prompt (GGUF model to be changed)',
    await run(['cache-prompt', '--model', model, '--prompt', 'Hi! ', '--prompt-cache-file', staleCache]),
    succeeded,
  );
  const f = await gg.openGguf(model);
  const at = f.info('token_embd.weight').byteOffset + 4100;
  await f.close();
  const fd = openSync(model, 'r+');
  writeSync(fd, Buffer.from([readFileSync(model)[at] ^ 1]), 0, 1, at);
  closeSync(fd);
  utimesSync(model, past, past);
  judge(
    'generate with a cache made before a GGUF tensor byte changed in place (size and mtime kept)',
    await run(['generate', '--model', model, '--prompt', 'What?', '--prompt-cache-file', staleCache]),
    refused(/MODEL_MISMATCH/),
  );
  // 87 MB GGUF headers made of millions of tiny entries (they took 1-3 GB to parse before the caps)
  const u32 = (v) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return b;
  };
  const u64 = (v) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    return b;
  };
  const str = (t) => Buffer.concat([u64(Buffer.byteLength(t)), Buffer.from(t)]);
  const tensors = 2_400_000;
  const bombs = {
    '2.4 M empty tensors': Buffer.concat([
      Buffer.from('GGUF'),
      u32(3),
      u64(tensors),
      u64(0),
      ...Array.from({ length: tensors }, (_, i) =>
        Buffer.concat([str(i.toString(36)), u32(1), u64(0), u32(0), u64(0)]),
      ),
    ]),
    '7.2 M nested empty arrays': Buffer.concat([
      Buffer.from('GGUF'),
      u32(3),
      u64(0),
      u64(1),
      str('k'),
      u32(9),
      u32(9),
      u64(7_250_000),
      Buffer.alloc(12 * 7_250_000),
    ]),
  };
  for (const [label, bytes] of Object.entries(bombs)) {
    const file = p(`bomb-${label.replace(/\W+/g, '-')}.gguf`);
    writeFileSync(file, bytes);
    judge(
      `generate, model is an ${Math.round(bytes.length / 1e6)} MB GGUF header of ${label}`,
      await run(['generate', '--model', file, '--prompt', 'x']),
      refused(/TOO_LARGE/),
    );
  }
}

// 8. the cache file's model entry
const evil = craft(good, p('evil-model.safetensors'), (m) => {
  m.model = 'evil/exfiltrate';
});
judge(
  'generate, file names a Hub repo, no --model',
  await run(['generate', '--prompt', 'x', '--prompt-cache-file', evil]),
  refused(/--trust-cache-model/),
);

// ---- report -----------------------------------------------------------------------------------------------------
console.log('| case | exit | s | peak MiB | verdict | first line of output |');
console.log('|---|---:|---:|---:|---|---|');
for (const r of rows)
  console.log(
    `| ${r.name} | ${r.exit} | ${r.s} | ${r.mb} | ${r.ok ? 'ok' : 'FAIL'} | ${String(r.note).replace(/\|/g, '\\|')} |`,
  );
console.log(
  `\n${rows.length} cases, ${failures} failed (limits: ${TIMEOUT_MS / 1000} s, ${MAX_RSS / 2 ** 20} MiB per run)`,
);
if (!args.includes('--keep')) rmSync(tmp, { recursive: true, force: true });
else console.log(`files kept in ${tmp}`);
process.exit(failures ? 1 : 0);
