#!/usr/bin/env node
// `pnpm build` of @mnemo/backend-native: compiles the addon with node-gyp (the Node headers installed beside Node, so
// no download), then the TypeScript with tsup. When the addon does not compile, CI (CI set, or
// MNEMO_NATIVE_REQUIRED=1) fails; elsewhere the build goes on with a warning, and mnemo falls back to WASM at run time.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // npm ships its own copy
    const npmRoot = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
    return join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  }
}

/** Node's headers: npm's `nodedir` setting, else the prefix of the running node when it has include/node. */
function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  try {
    const d = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
    if (d && d !== 'undefined' && d !== 'null' && existsSync(join(d, 'include', 'node', 'node_api.h')))
      return d;
  } catch {
    // no npm config: try the prefix below
  }
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function buildAddon() {
  const dir = nodeDir();
  const args = [nodeGyp(), 'rebuild', '--jobs', 'max'];
  if (dir) args.push(`--nodedir=${dir}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status === 0) {
    console.log(`native addon built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return;
  }
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').slice(-40).join('\n');
  const required =
    process.env.MNEMO_NATIVE_REQUIRED === '1' || (process.env.CI && process.env.CI !== 'false');
  if (required) {
    console.error(output);
    console.error('the native addon failed to build (required here: CI or MNEMO_NATIVE_REQUIRED=1)');
    process.exit(1);
  }
  console.warn(output);
  console.warn('warning: the native addon failed to build; mnemo will use its WebAssembly backend');
}

buildAddon();
const tsup = spawnSync('tsup', [], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(tsup.status ?? 1);
