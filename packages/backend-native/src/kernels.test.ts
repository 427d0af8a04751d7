import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The C kernel tests (native/test/kernel_test.c): on this machine every ISA level it runs against the scalar
// definition, and on arm64 (cross-compiled, under qemu-aarch64) NEON and NEON dotprod against it. Both print a hash of
// every scalar result, which must be equal: then x86-64 and arm64 give bitwise the same results.
const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'kernel-test.mjs');

function kernelTest(arch: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [script, '--arch', arch], { encoding: 'utf8', timeout: 900_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function hash(out: string): string | undefined {
  return /^hash ([0-9a-f]{16})$/m.exec(out)?.[1];
}

function has(cmd: string): boolean {
  return spawnSync(cmd, ['--version'], { encoding: 'utf8' }).status === 0;
}

const x86 = process.arch === 'x64';
// CI installs the cross compiler and qemu (scripts/setup.sh); elsewhere the arm64 half needs them too.
const armTools = x86 && has('aarch64-linux-gnu-gcc') && has('qemu-aarch64');
const required = process.env.CI !== undefined && process.env.CI !== 'false';

describe('C kernel tests', () => {
  let hostHash: string | undefined;
  it(`every ISA level of this ${process.arch} CPU matches the scalar definition bit for bit`, () => {
    const r = kernelTest(process.arch);
    expect(r.out).toMatch(/all ok/);
    expect(r.status).toBe(0);
    hostHash = hash(r.out);
    expect(hostHash).toBeDefined();
  }, 900_000);

  it.skipIf(!armTools && !required)(
    'arm64 NEON and dotprod under qemu match the scalar definition, and x86-64 bit for bit',
    () => {
      expect(
        armTools,
        'aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)',
      ).toBe(true);
      const r = kernelTest('arm64');
      expect(r.out).toMatch(/levels compared with scalar: neon dotprod/);
      expect(r.out).toMatch(/all ok/);
      expect(r.status).toBe(0);
      expect(hash(r.out)).toBe(hostHash);
    },
    900_000,
  );
});
