#!/usr/bin/env node
// Install step of a published @mnemo/backend-native: use a prebuilt binary (prebuilds/<platform>-<arch>/, the
// prebuildify layout) when the package ships one, else try to compile the addon with node-gyp. Never fails the
// install: without a binary mnemo falls back to its WebAssembly backend and says why. Inside the mnemo workspace
// (the TypeScript sources are present) it does nothing: `pnpm build` compiles the addon.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const hasPrebuilt = existsSync(prebuilt) && readdirSync(prebuilt).some((f) => f.endsWith('.node'));
if (
  existsSync(join(root, 'src')) ||
  hasPrebuilt ||
  existsSync(join(root, 'build', 'Release', 'mnemo_native.node'))
)
  process.exit(0);

const gyp = process.env.npm_config_node_gyp;
const cmd = gyp ? process.execPath : 'node-gyp';
const args = gyp ? [gyp, 'rebuild'] : ['rebuild'];
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: !gyp && process.platform === 'win32' });
if (r.status !== 0)
  console.warn(
    'mnemo: the native backend could not be built on this machine; mnemo will use its WebAssembly backend instead',
  );
