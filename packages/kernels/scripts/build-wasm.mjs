#!/usr/bin/env node
// Builds the Rust kernels (packages/kernels/rust) to wasm32 + SIMD128 and embeds the module for the loader:
//   wasm/mnemo_kernels.wasm        the module (gitignored)
//   src/generated/wasm.ts          the same bytes as a base64 string (gitignored), so the loader works unchanged
//                                  from src (vitest), from dist and inside a single-file bundle.
// and, from the same sources, the shared-memory build (threads: imports a shared `env.memory`, exports
// `__stack_pointer` so each instance on that memory gets its own stack; flags in SHARED_RUSTFLAGS below, passed
// through CARGO_ENCODED_RUSTFLAGS into its own target dir, so rust/.cargo/config.toml stays the private build's):
//   wasm/mnemo_kernels_shared.wasm
//   src/generated/wasm-shared.ts   base64, plus the memory's minimum page count from the module's import
// Skips the build when neither the Rust sources nor this script changed (sha256 over their contents).
// `--force` (or MNEMO_KERNELS_FORCE=1) rebuilds anyway.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const crate = join(pkg, 'rust');
const wasmOut = join(pkg, 'wasm', 'mnemo_kernels.wasm');
const tsOut = join(pkg, 'src', 'generated', 'wasm.ts');
const sharedWasmOut = join(pkg, 'wasm', 'mnemo_kernels_shared.wasm');
const sharedTsOut = join(pkg, 'src', 'generated', 'wasm-shared.ts');
const TARGET = 'wasm32-unknown-unknown';
/** The shared build's complete rustflags (they replace rust/.cargo/config.toml's, so simd128 is repeated). */
const SHARED_RUSTFLAGS = [
  '-C',
  'target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals',
  '-C',
  'link-arg=--shared-memory',
  '-C',
  'link-arg=--import-memory',
  '-C',
  'link-arg=--max-memory=4294967296',
  '-C',
  'link-arg=--export=__stack_pointer',
];
const force = process.argv.includes('--force') || process.env.MNEMO_KERNELS_FORCE === '1';

function log(msg) {
  process.stderr.write(`[build-wasm] ${msg}\n`);
}

function sourceFiles() {
  const out = [
    join(crate, 'Cargo.toml'),
    join(crate, '.cargo', 'config.toml'),
    fileURLToPath(import.meta.url),
  ];
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.rs')) out.push(p);
    }
  };
  walk(join(crate, 'src'));
  return out;
}

function sourceHash() {
  const h = createHash('sha256');
  for (const f of sourceFiles()) {
    h.update(relative(pkg, f));
    h.update('\0');
    h.update(readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

/** The source hash both generated files carry, or null when either is missing or they differ. */
function generatedHash() {
  const hashes = [tsOut, sharedTsOut].map((f) => {
    if (!existsSync(f)) return null;
    const m = /WASM_SOURCE_HASH = '([0-9a-f]+)'/.exec(readFileSync(f, 'utf8'));
    return m ? m[1] : null;
  });
  if (!existsSync(wasmOut) || !existsSync(sharedWasmOut) || hashes[0] !== hashes[1]) return null;
  return hashes[0];
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', ...opts });
}

/** A rustc that has the wasm32 standard library (libcore) installed, or null. */
function hasWasmTarget(rustc) {
  const r = run(rustc, ['--print', 'target-libdir', '--target', TARGET]);
  if (r.error || r.status !== 0) return false;
  const dir = r.stdout.trim();
  if (!dir || !existsSync(dir)) return false;
  return readdirSync(dir).some((f) => f.startsWith('libcore-') && f.endsWith('.rlib'));
}

function findToolchain() {
  if (hasWasmTarget('rustc')) return { cargo: 'cargo', env: {}, label: 'rustc on PATH' };
  if (existsSync('/usr/bin/rustc') && existsSync('/usr/bin/cargo') && hasWasmTarget('/usr/bin/rustc')) {
    return {
      cargo: '/usr/bin/cargo',
      env: { RUSTC: '/usr/bin/rustc' },
      label: '/usr/bin/rustc + /usr/bin/cargo',
    };
  }
  return null;
}

const hash = sourceHash();
if (!force && generatedHash() === hash) {
  log('kernels up to date (sources unchanged)');
  process.exit(0);
}

const tc = findToolchain();
if (!tc) {
  process.stderr.write(
    [
      '[build-wasm] No Rust toolchain with the wasm32-unknown-unknown target was found.',
      '  Checked: `rustc` on PATH, then /usr/bin/rustc (+ /usr/bin/cargo).',
      '  Install one of:',
      '    Debian/Ubuntu:  apt-get install -y rustc cargo libstd-rust-dev-wasm32 lld',
      '    rustup:         rustup target add wasm32-unknown-unknown',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

/** Runs `cargo build --release` for the wasm target into `targetDir`; resolves to the module's bytes. */
function cargoBuild(label, targetDir, rustflags) {
  const env = { ...process.env, ...tc.env, CARGO_TARGET_DIR: targetDir };
  // The private build's flags come from rust/.cargo/config.toml; an inherited RUSTFLAGS would silently replace
  // them (and drop simd128). The shared build passes its complete list instead.
  delete env.RUSTFLAGS;
  delete env.CARGO_ENCODED_RUSTFLAGS;
  if (rustflags) env.CARGO_ENCODED_RUSTFLAGS = rustflags.join('\x1f');
  return new Promise((resolve, reject) => {
    const child = spawn(tc.cargo, ['build', '--release', '--target', TARGET], {
      cwd: crate,
      env,
      stdio: 'inherit',
    });
    child.on('error', (e) => reject(new Error(`${label}: ${e.message}`)));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${label}: cargo build exited with ${code}`));
      const bytes = readFileSync(join(targetDir, TARGET, 'release', 'mnemo_kernels.wasm'));
      if (!WebAssembly.validate(bytes))
        return reject(new Error(`${label}: the module does not validate in this Node`));
      resolve(bytes);
    });
  });
}

/** Minimum pages of the shared module's imported `env.memory` (checked to be shared, with a 65536-page maximum). */
function importedMemoryPages(bytes) {
  let pos = 8;
  const u32 = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  const name = () => {
    const n = u32();
    pos += n;
    return bytes.subarray(pos - n, pos).toString('utf8');
  };
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = u32();
    const end = pos + size;
    if (id === 2) {
      // the only import must be the shared memory
      const count = u32();
      const where = `${name()}.${name()}`;
      const kind = bytes[pos++];
      if (count !== 1 || kind !== 2 || where !== 'env.memory') {
        throw new Error(`expected one import, env.memory; got ${count}, the first ${where} (kind ${kind})`);
      }
      const flags = bytes[pos++];
      const min = u32();
      const max = flags & 1 ? u32() : null;
      if (!(flags & 2) || max !== 65536) {
        throw new Error(`env.memory is not shared with max 65536 (flags ${flags}, max ${max})`);
      }
      return min;
    }
    pos = end;
  }
  throw new Error('the shared module imports no memory');
}

log(`building with ${tc.label} (private and shared-memory builds)`);
const started = Date.now();
let bytes;
let sharedBytes;
try {
  [bytes, sharedBytes] = await Promise.all([
    cargoBuild('private build', join(crate, 'target'), null),
    cargoBuild('shared build', join(crate, 'target', 'shared'), SHARED_RUSTFLAGS),
  ]);
} catch (e) {
  log(`cargo build failed (${e.message})`);
  process.exit(1);
}
const sharedExports = WebAssembly.Module.exports(new WebAssembly.Module(sharedBytes)).map((e) => e.name);
for (const name of ['__stack_pointer', '__heap_base', 'mk_attention_heads']) {
  if (!sharedExports.includes(name)) {
    log(`the shared build does not export ${name}`);
    process.exit(1);
  }
}
const pages = importedMemoryPages(sharedBytes);
mkdirSync(dirname(wasmOut), { recursive: true });
mkdirSync(dirname(tsOut), { recursive: true });
writeFileSync(wasmOut, bytes);
writeFileSync(sharedWasmOut, sharedBytes);
const header = '// Generated by scripts/build-wasm.mjs from packages/kernels/rust. Do not edit.';
writeFileSync(
  tsOut,
  [
    header,
    `export const WASM_SOURCE_HASH = '${hash}';`,
    `export const WASM_BASE64 =\n  '${bytes.toString('base64')}';`,
    '',
  ].join('\n'),
);
writeFileSync(
  sharedTsOut,
  [
    `${header} Shared-memory build.`,
    `export const WASM_SOURCE_HASH = '${hash}';`,
    "/** Minimum pages of the imported shared memory (its data and the first instance's stack end below it). */",
    `export const WASM_SHARED_MEMORY_PAGES = ${pages};`,
    `export const WASM_SHARED_BASE64 =\n  '${sharedBytes.toString('base64')}';`,
    '',
  ].join('\n'),
);
log(
  `wrote ${relative(pkg, wasmOut)} (${bytes.length} bytes), ${relative(pkg, sharedWasmOut)} ` +
    `(${sharedBytes.length} bytes) and their src/generated/*.ts in ${Date.now() - started} ms`,
);
