import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type GgmlBlockType, ggmlRowBytes } from '@mnemo/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNativeBackend, type NativeBackend } from './index';

// uploadFromFile / uploadQuantizedFromFile give exactly what upload / uploadQuantized give for the same bytes.
describe('native: uploads straight from a file', () => {
  let b: NativeBackend;
  let dir: string;
  let fd: number;
  const bytes = new Uint8Array(70_000).map((_, i) => (i * 2654435761) >>> 24);
  const at = 123; // an odd position
  beforeAll(async () => {
    b = await createNativeBackend({ threads: 2 });
    dir = mkdtempSync(join(tmpdir(), 'mnemo-native-file-'));
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.concat([Buffer.alloc(at), Buffer.from(bytes)]));
    fd = openSync(file, 'r');
  });
  afterAll(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
    b?.dispose();
  });

  it('dense tensors (f16 and bf16 matrices stored as panels, f32 as is) read back and compute as uploaded', () => {
    for (const [dtype, shape] of [
      ['f16', [37, 40]],
      ['bf16', [16, 64]],
      ['f32', [5, 33]],
      ['f16', [100]],
      ['u8', [0]],
    ] as const) {
      const n =
        shape.reduce((a: number, c: number) => a * c, 1) * (dtype === 'f32' ? 4 : dtype === 'u8' ? 1 : 2);
      const want = b.upload(dtype, shape, bytes.subarray(0, n));
      const got = b.uploadFromFile(dtype, shape, { fd, position: at });
      expect(got.shape).toEqual(shape);
      if (shape.length === 2 && dtype !== 'f32') {
        const x = b.upload(
          'f32',
          [3, shape[1]],
          new Float32Array(3 * shape[1]).map((_, i) => Math.sin(i)),
        );
        const y1 = b.alloc('f32', [3, shape[0]]);
        const y2 = b.alloc('f32', [3, shape[0]]);
        b.matmul(y1, x, want);
        b.matmul(y2, x, got);
        expect(b.read(y2)).toEqual(b.read(y1));
        for (const t of [x, y1, y2]) b.free(t);
      }
      expect(b.readBytes(got)).toEqual(b.readBytes(want));
      b.free(want);
      b.free(got);
    }
  });

  it('quantized weights', () => {
    const spec = { bits: 4, groupSize: 32, scaleDtype: 'f16' } as const;
    const rows = 19;
    const cols = 64;
    const pBytes = (rows * cols * 4) / 8;
    const sBytes = rows * (cols / 32) * 2;
    // scales and biases: small finite f16 values
    const f16 = new Uint16Array(sBytes / 2).map((_, i) => 0x2000 + (i % 200));
    const file = join(dir, 'q.bin');
    writeFileSync(
      file,
      Buffer.concat([
        Buffer.from(bytes.subarray(0, pBytes)),
        Buffer.from(f16.buffer),
        Buffer.from(f16.buffer),
      ]),
    );
    const qfd = openSync(file, 'r');
    try {
      const want = b.uploadQuantized(spec, [rows, cols], bytes.subarray(0, pBytes), f16, f16);
      const got = b.uploadQuantizedFromFile(
        spec,
        [rows, cols],
        { fd: qfd, position: 0 },
        { fd: qfd, position: pBytes },
        { fd: qfd, position: pBytes + sBytes },
      );
      const x = b.upload(
        'f32',
        [2, cols],
        new Float32Array(2 * cols).map((_, i) => Math.cos(i)),
      );
      const y1 = b.alloc('f32', [2, rows]);
      const y2 = b.alloc('f32', [2, rows]);
      b.matmul(y1, x, want);
      b.matmul(y2, x, got);
      expect(b.read(y2)).toEqual(b.read(y1));
      expect(b.readBytes(got.packed)).toEqual(b.readBytes(want.packed));
      expect(b.readBytes(got.scales)).toEqual(b.readBytes(want.scales));
      for (const t of [x, y1, y2, want, got]) b.free(t);
    } finally {
      closeSync(qfd);
    }
  });

  it('GGML weights (decoded from the file a few rows at a time) compute and embed as uploaded', () => {
    const file = join(dir, 'ggml.bin');
    // the pseudo-random bytes as blocks (f16 fields that are NaN or inf give NaN outputs, equal on both sides)
    writeFileSync(file, Buffer.concat([Buffer.alloc(at), Buffer.from(bytes)]));
    const gfd = openSync(file, 'r');
    try {
      for (const [type, rows, cols] of [
        ['Q4_K', 21, 256],
        ['Q6_K', 17, 512],
        ['Q8_0', 40, 64],
        ['Q5_0', 3, 96],
      ] as [GgmlBlockType, number, number][]) {
        const n = rows * ggmlRowBytes(type, cols);
        const want = b.uploadGgml(type, [rows, cols], bytes.subarray(0, n));
        const got = b.uploadGgmlFromFile(type, [rows, cols], { fd: gfd, position: at });
        const x = b.upload(
          'f32',
          [5, cols],
          new Float32Array(5 * cols).map((_, i) => Math.sin(i)),
        );
        const y1 = b.alloc('f32', [5, rows]);
        const y2 = b.alloc('f32', [5, rows]);
        b.matmul(y1, x, want);
        b.matmul(y2, x, got);
        expect(b.read(y2), type).toEqual(b.read(y1));
        const e1 = b.alloc('f32', [2, cols]);
        const e2 = b.alloc('f32', [2, cols]);
        const ids = new Int32Array([rows - 1, 0]);
        b.embedding(e1, want, ids);
        b.embedding(e2, got, ids);
        expect(b.read(e2), type).toEqual(b.read(e1));
        // the blocks of a decoded GGML weight are not readable as bytes
        expect(() => b.readBytes(got.blocks)).toThrow(/readBytes: .*GGML weight/);
        for (const t of [x, y1, y2, e1, e2, want, got]) b.free(t);
      }
      const before = b.memoryInUse();
      expect(() => b.uploadGgmlFromFile('Q4_K', [1000, 256], { fd: gfd, position: 0 })).toThrow(
        /uploadGgmlFromFile: .*end of file/,
      );
      expect(() => b.uploadGgmlFromFile('Q4_K', [2, 100], { fd: gfd, position: 0 })).toThrow(RangeError);
      expect(() => b.uploadGgmlFromFile('Q4_2' as GgmlBlockType, [2, 256], { fd: gfd, position: 0 })).toThrow(
        TypeError,
      );
      expect(b.memoryInUse()).toBe(before);
    } finally {
      closeSync(gfd);
    }
  });

  it('a short file, a bad descriptor or position is a RangeError naming the op, and nothing is kept', () => {
    const before = b.memoryInUse();
    expect(() => b.uploadFromFile('f32', [100_000], { fd, position: 0 })).toThrow(
      /uploadFromFile: .*end of file/,
    );
    expect(() => b.uploadFromFile('f16', [200, 200], { fd, position: 0 })).toThrow(RangeError);
    expect(() => b.uploadFromFile('f32', [2], { fd: -1, position: 0 })).toThrow(
      /uploadFromFile: .*file descriptor/,
    );
    expect(() => b.uploadFromFile('f32', [2], { fd: 987654, position: 0 })).toThrow(/uploadFromFile: /);
    expect(() => b.uploadFromFile('f32', [2], { fd, position: 0.5 })).toThrow(/uploadFromFile: .*position/);
    expect(() =>
      b.uploadQuantizedFromFile(
        { bits: 4, groupSize: 32, scaleDtype: 'f16' },
        [1000, 1024],
        { fd, position: 0 },
        { fd, position: 0 },
        { fd, position: 0 },
      ),
    ).toThrow(/uploadQuantizedFromFile: .*end of file/);
    expect(b.memoryInUse()).toBe(before);
  });
});
