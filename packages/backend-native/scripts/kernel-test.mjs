#!/usr/bin/env node
// Builds and runs the C kernel tests (native/test/kernel_test.c) for this machine (x86-64: scalar, AVX2, AVX-512,
// AVX-512 VNNI) or, with --arch arm64, cross-compiled with Debian's aarch64-linux-gnu-gcc and run under qemu-aarch64
// (scalar, NEON, NEON dotprod). Prints the test's output; exits with its status. Objects go to build/kernel-test/<arch>.
//   node scripts/kernel-test.mjs [--arch x64|arm64] [level...]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const ai = argv.indexOf('--arch');
const arch = ai >= 0 ? argv[ai + 1] : process.arch;
const levelArgs = argv.filter((a, i) => a !== '--arch' && i !== ai + 1);
const src = join(root, 'native', 'src');
const out = join(root, 'build', 'kernel-test', arch);
mkdirSync(out, { recursive: true });

const cflags = [
  '-O2',
  '-std=c11',
  '-D_GNU_SOURCE',
  '-ffp-contract=off',
  '-fno-math-errno',
  '-Wall',
  '-Wno-unused-function',
];
const x86 = ['-mavx2', '-mfma', '-mf16c'];
const avx512 = [...x86, '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq'];
const levels =
  arch === 'arm64'
    ? [
        ['scalar', []],
        ['neon', ['-DMN_LEVEL_NEON', '-march=armv8-a']],
        ['dotprod', ['-DMN_LEVEL_DOTPROD', '-march=armv8.2-a+dotprod']],
      ]
    : [
        ['scalar', []],
        ['avx2', ['-DMN_LEVEL_AVX2', ...x86]],
        ['avx512', ['-DMN_LEVEL_AVX512', ...avx512]],
        ['avx512vnni', ['-DMN_LEVEL_AVX512VNNI', ...avx512, '-mavx512vnni']],
      ];
const cc = arch === 'arm64' && process.arch !== 'arm64' ? 'aarch64-linux-gnu-gcc' : 'gcc';

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.error) {
    console.error(`${cmd}: ${r.error.message}`);
    process.exit(127);
  }
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    process.exit(r.status ?? 1);
  }
  return r.stdout;
}

// The host's kernel objects from `pnpm build` (node-gyp compiled the same source with the same flags) are reused
// when newer than every source file.
const kernelSources = readdirSync(src).filter((f) => f === 'kernels.c' || f.endsWith('.h'));
const newestSource = Math.max(...kernelSources.map((f) => statSync(join(src, f)).mtimeMs));
function built(name) {
  if (arch !== process.arch) return undefined;
  const o = join(root, 'build', 'Release', 'obj.target', `mn_kernels_${name}`, 'native', 'src', 'kernels.o');
  return existsSync(o) && statSync(o).mtimeMs >= newestSource ? o : undefined;
}
const objs = [];
const jobs = [];
for (const [name, flags] of levels) {
  const reuse = built(name);
  if (reuse) {
    objs.push(reuse);
    continue;
  }
  const o = join(out, `kernels_${name}.o`);
  objs.push(o);
  jobs.push([cc, [...cflags, ...flags, '-c', join(src, 'kernels.c'), '-o', o]]);
}
jobs.push([cc, [...cflags, '-c', join(src, 'common.c'), '-o', join(out, 'common.o')]]);
jobs.push([cc, [...cflags, '-c', join(src, 'ggml.c'), '-o', join(out, 'ggml.o')]]);
jobs.push([
  cc,
  [...cflags, '-c', join(root, 'native', 'test', 'kernel_test.c'), '-o', join(out, 'kernel_test.o')],
]);
objs.push(join(out, 'common.o'), join(out, 'ggml.o'), join(out, 'kernel_test.o'));
const { spawn } = await import('node:child_process');
await Promise.all(
  jobs.map(
    ([cmd, args]) =>
      new Promise((resolve) => {
        const p = spawn(cmd, args, { stdio: 'inherit' });
        p.on('error', (e) => {
          console.error(`${cmd}: ${e.message}`);
          process.exit(127);
        });
        p.on('exit', (code) => {
          if (code !== 0) process.exit(code ?? 1);
          resolve();
        });
      }),
  ),
);
const exe = join(out, 'kernel_test');
run(cc, [...(arch === 'arm64' && process.arch !== 'arm64' ? ['-static'] : []), '-o', exe, ...objs, '-lm']);
const runner =
  arch === 'arm64' && process.arch !== 'arm64' ? ['qemu-aarch64', [exe, ...levelArgs]] : [exe, levelArgs];
const r = spawnSync(runner[0], runner[1], { stdio: 'inherit' });
if (r.error) {
  console.error(`${runner[0]}: ${r.error.message}`);
  process.exit(127);
}
process.exit(r.status ?? 1);
