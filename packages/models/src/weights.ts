import { type FileIdentity, sameIdentity } from '@mnemo/files';
import type { Backend, DType, GgmlBlockType, ScaleDType, Tensor, Weight } from '@mnemo/tensor';
import { ggmlRowBytes, isGgmlBlockType, toFloat32 } from '@mnemo/tensor';
import { DigestCache } from './digest-cache';
import { ModelLoadError } from './errors';
import type { WeightDigest } from './fingerprint';
import type { QuantizationConfig } from './quantization';

/** The part of a checkpoint reader weight loading needs (`@mnemo/safetensors`' `Checkpoint` has it). */
export interface TensorSource {
  names(): string[];
  has(name: string): boolean;
  info(name: string): {
    readonly dtype: string;
    readonly shape: readonly number[];
    /** The file holding the tensor, and where: lets a {@link DigestCache} remember its digest. */
    readonly file?: string;
    readonly byteOffset?: number;
    readonly byteLength?: number;
  };
  read(name: string): Promise<Uint8Array>;
  /** The identity of one of the source's files, now, from its open handle. */
  identity?(file: string): Promise<FileIdentity>;
  /**
   * Optional: where `name`'s bytes lie in an open file (descriptor valid while loading, absolute position), or
   * undefined when they are not stored as read (e.g. converted on reading). Used only through a digesting source's
   * {@link DigestingSource.locate}, so that the digest still covers every byte.
   */
  fileRange?(name: string): FileRangeInfo | undefined;
  /**
   * Optional (a {@link DigestingSource} has it): where `name`'s bytes lie in an open file, for a backend that reads
   * them itself (`uploadFromFile`, ...), once they are accounted for; undefined when the tensor must be read.
   */
  locate?(name: string): Promise<FileRangeInfo | undefined>;
}

/** Where a tensor's bytes lie in an open file. */
export interface FileRangeInfo {
  readonly fd: number;
  readonly position: number;
  readonly byteLength: number;
}

/** A {@link TensorSource} that adds every tensor it reads to a {@link WeightDigest}. */
export interface DigestingSource extends TensorSource {
  /**
   * After loading: refuses the load if a file whose remembered digests were used changed while it was read
   * (ModelLoadError), and remembers the digests computed (best effort).
   */
  finish(): Promise<void>;
  /**
   * Where `name`'s bytes lie in its open file, for a backend to read them itself, after adding every byte of them to
   * the digest (read through a bounded buffer, or a remembered digest of the unchanged file). The file must then stay
   * unchanged until `finish()`, which refuses the load otherwise. Undefined when the source cannot say (or cannot
   * check its files' identities): read the tensor instead.
   */
  locate(name: string): Promise<FileRangeInfo | undefined>;
}

/**
 * Wraps a source so that every tensor read is added to `digest`, every byte of it: the weights' identity covers
 * exactly what the architecture loaded, whatever names or wrappers a plugin uses on top. With a `cache`, a tensor of a
 * file verified unchanged since it was hashed (see {@link DigestCache}) takes its remembered digest instead of being
 * hashed again; call `finish()` once the model is loaded.
 */
export function digestingSource(
  source: TensorSource,
  digest: WeightDigest,
  cache?: DigestCache,
): DigestingSource {
  const identities = new Map<string, Promise<FileIdentity>>();
  const remembered = new Set<string>();
  const identity = (file: string): Promise<FileIdentity> => {
    let id = identities.get(file);
    if (id === undefined) {
      id = source.identity!(file);
      identities.set(file, id);
    }
    return id;
  };
  return {
    names: () => source.names(),
    has: (name) => source.has(name),
    info: (name) => source.info(name),
    identity: source.identity ? (file) => source.identity!(file) : undefined,
    read: async (name) => {
      const info = source.info(name);
      const placed =
        cache && source.identity && info.file !== undefined && info.byteOffset !== undefined
          ? { file: info.file, byteOffset: info.byteOffset }
          : undefined;
      if (placed === undefined) {
        const bytes = await source.read(name);
        digest.add(name, info.dtype, info.shape, bytes);
        return bytes;
      }
      // The identity is taken before the bytes are read; finish() checks it again after everything was read.
      const id = await identity(placed.file);
      const bytes = await source.read(name);
      const key = DigestCache.tensorKey(name, info.dtype, info.shape, placed.byteOffset, bytes.byteLength);
      const known = await cache!.lookup(placed.file, id, key);
      if (known !== undefined) {
        digest.set(name, known);
        remembered.add(placed.file);
      } else await cache!.record(placed.file, id, key, digest.add(name, info.dtype, info.shape, bytes));
      return bytes;
    },
    locate: async (name) => {
      const info = source.info(name);
      if (!source.fileRange || !source.identity || info.file === undefined) return undefined;
      const file = info.file;
      // The identity is taken before the bytes are hashed; the backend reads them again afterwards, so the file must
      // be the same in finish() (whether its digest was remembered or computed here).
      const id = await identity(file);
      const r = source.fileRange(name);
      if (r === undefined) return undefined;
      const key =
        cache && info.byteOffset !== undefined
          ? DigestCache.tensorKey(name, info.dtype, info.shape, info.byteOffset, r.byteLength)
          : undefined;
      const known = key === undefined ? undefined : await cache!.lookup(file, id, key);
      if (known !== undefined) digest.set(name, known);
      else {
        const hex = await digest.addFromFile(name, info.dtype, info.shape, r.byteLength, r.fd, r.position);
        if (key !== undefined) await cache!.record(file, id, key, hex);
      }
      remembered.add(file);
      return r;
    },
    finish: async () => {
      if (!source.identity) return;
      for (const [file, before] of identities) {
        const now = await source.identity(file);
        if (remembered.has(file) && !sameIdentity(now, await before))
          throw new ModelLoadError(`${file} changed while the model was being loaded; load it again`);
      }
      if (cache) await cache.save((file) => source.identity!(file));
    },
  };
}

/** A backend that decodes GGML blocks straight from a file (the native backend). */
interface GgmlFileUpload {
  uploadGgmlFromFile(
    type: GgmlBlockType,
    shape: readonly [rows: number, cols: number],
    src: { readonly fd: number; readonly position: number },
  ): Weight;
}

const DTYPES: Readonly<Record<string, DType>> = {
  F32: 'f32',
  F16: 'f16',
  BF16: 'bf16',
  U32: 'u32',
  I32: 'i32',
  U8: 'u8',
};

/**
 * Loads named tensors from a checkpoint into a backend, checking every dtype and shape against what the config
 * implies. This is what an architecture's `create` receives; errors name the tensor and what was expected.
 */
export class Weights {
  private readonly used = new Set<string>();

  constructor(
    readonly source: TensorSource,
    readonly backend: Backend,
    readonly quantization: QuantizationConfig | undefined,
  ) {}

  has(name: string): boolean {
    return this.source.has(name);
  }

  /** Names present in the checkpoint that no load call has read (reported by `unused()` after loading). */
  unused(): string[] {
    return this.source.names().filter((n) => !this.used.has(n));
  }

  /** A vector or matrix converted to f32 (norm weights, biases). */
  async f32(name: string, shape: readonly number[]): Promise<Tensor> {
    const { dtype, bytes } = await this.raw(name, shape, ['f32', 'f16', 'bf16']);
    return this.backend.upload(
      'f32',
      shape,
      dtype === 'f32' ? bytes : toFloat32(dtype as 'f16' | 'bf16', bytes),
    );
  }

  /** The values of a vector or matrix (f32/f16/bf16) as a new host Float32Array, for weights computed at load time. */
  async hostF32(name: string, shape: readonly number[]): Promise<Float32Array> {
    const { dtype, bytes } = await this.raw(name, shape, ['f32', 'f16', 'bf16']);
    if (dtype !== 'f32') return toFloat32(dtype as 'f16' | 'bf16', bytes);
    return new Float32Array(bytes.slice().buffer);
  }

  /** An optional f32 tensor (e.g. a bias): `undefined` when absent. */
  async optionalF32(name: string, shape: readonly number[]): Promise<Tensor | undefined> {
    return this.has(name) ? this.f32(name, shape) : undefined;
  }

  /**
   * The weight of a linear (or embedding) module `prefix` with shape `[rows, cols]`: quantized when
   * `prefix.scales` exists, GGML blocks when `prefix.weight` is a GGML block type (GGUF), else dense f32/f16/bf16
   * kept in its stored dtype.
   */
  async linear(prefix: string, rows: number, cols: number): Promise<Weight> {
    const [w] = await this.linearSplit(prefix, [rows], cols);
    return w!;
  }

  /**
   * A linear module whose rows are several fused matrices (phi3's `qkv_proj`, `gate_up_proj`): returns one weight per
   * entry of `rowSplits`, in order.
   */
  async linearSplit(prefix: string, rowSplits: readonly number[], cols: number): Promise<Weight[]> {
    const rows = rowSplits.reduce((a, b) => a + b, 0);
    const weightName = `${prefix}.weight`;
    const stored = this.has(weightName) ? this.source.info(weightName).dtype : undefined;
    if (stored !== undefined && isGgmlBlockType(stored)) {
      const info = this.source.info(weightName);
      if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== cols)
        throw new ModelLoadError(
          `tensor "${weightName}" has shape [${info.shape.join(', ')}]; expected [${rows}, ${cols}]`,
        );
      this.used.add(weightName);
      const rowBytes = ggmlRowBytes(stored, cols);
      const backend = this.backend as Backend & Partial<GgmlFileUpload>;
      const at = backend.uploadGgmlFromFile ? await this.source.locate?.(weightName) : undefined;
      if (at !== undefined) {
        let r0 = 0;
        return rowSplits.map((n) => {
          const src = { fd: at.fd, position: at.position + r0 * rowBytes };
          r0 += n;
          return backend.uploadGgmlFromFile!(stored, [n, cols], src);
        });
      }
      const bytes = await this.source.read(weightName);
      let r0 = 0;
      return rowSplits.map((n) => {
        const part = bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes);
        r0 += n;
        return this.backend.uploadGgml(stored, [n, cols], part);
      });
    }
    const scalesName = `${prefix}.scales`;
    if (!this.has(scalesName)) {
      const direct = this.backend.uploadFromFile
        ? await this.located(`${prefix}.weight`, [rows, cols], ['f32', 'f16', 'bf16'])
        : undefined;
      if (direct) {
        const rowBytes = direct.byteLength / rows;
        let r0 = 0;
        return rowSplits.map((n) => {
          const src = { fd: direct.fd, position: direct.position + r0 * rowBytes };
          r0 += n;
          return this.backend.uploadFromFile!(direct.dtype, [n, cols], src);
        });
      }
      const { dtype, bytes } = await this.raw(`${prefix}.weight`, [rows, cols], ['f32', 'f16', 'bf16']);
      const rowBytes = (bytes.byteLength / rows) | 0;
      let r0 = 0;
      return rowSplits.map((n) => {
        const part = bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes);
        r0 += n;
        return this.backend.upload(dtype, [n, cols], part);
      });
    }
    const params = this.quantization?.paramsFor(prefix);
    if (!params) {
      throw new ModelLoadError(
        `${scalesName} exists but config.json has no quantization parameters for "${prefix}" (add a "quantization" section)`,
      );
    }
    const { bits, groupSize } = params;
    if ((cols * bits) % 32 !== 0 || cols % groupSize !== 0) {
      throw new ModelLoadError(
        `${prefix}: ${cols} columns cannot be quantized with ${bits} bits in groups of ${groupSize}`,
      );
    }
    const words = (cols * bits) / 32;
    const groups = cols / groupSize;
    const p = this.backend.uploadQuantizedFromFile
      ? await this.located(`${prefix}.weight`, [rows, words], ['u32'])
      : undefined;
    const s = p && (await this.located(scalesName, [rows, groups], ['f32', 'f16', 'bf16']));
    const b = s && (await this.located(`${prefix}.biases`, [rows, groups], ['f32', 'f16', 'bf16']));
    if (p && s && b) {
      if (s.dtype !== b.dtype)
        throw new ModelLoadError(`${prefix}: scales are ${s.dtype} but biases are ${b.dtype}`);
      const spec = { bits, groupSize, scaleDtype: s.dtype as ScaleDType };
      const sRow = s.byteLength / rows;
      let r0 = 0;
      return rowSplits.map((n) => {
        const at = (x: { fd: number; position: number }, rowBytes: number) => ({
          fd: x.fd,
          position: x.position + r0 * rowBytes,
        });
        const w = this.backend.uploadQuantizedFromFile!(
          spec,
          [n, cols],
          at(p, words * 4),
          at(s, sRow),
          at(b, sRow),
        );
        r0 += n;
        return w;
      });
    }
    const packed = await this.raw(`${prefix}.weight`, [rows, words], ['u32']);
    const scales = await this.raw(scalesName, [rows, groups], ['f32', 'f16', 'bf16']);
    const biases = await this.raw(`${prefix}.biases`, [rows, groups], ['f32', 'f16', 'bf16']);
    if (scales.dtype !== biases.dtype) {
      throw new ModelLoadError(`${prefix}: scales are ${scales.dtype} but biases are ${biases.dtype}`);
    }
    const spec = { bits, groupSize, scaleDtype: scales.dtype as ScaleDType };
    const pRow = words * 4;
    const sRow = (scales.bytes.byteLength / rows) | 0;
    let r0 = 0;
    return rowSplits.map((n) => {
      const w = this.backend.uploadQuantized(
        spec,
        [n, cols],
        packed.bytes.subarray(r0 * pRow, (r0 + n) * pRow),
        scales.bytes.subarray(r0 * sRow, (r0 + n) * sRow),
        biases.bytes.subarray(r0 * sRow, (r0 + n) * sRow),
      );
      r0 += n;
      return w;
    });
  }

  /**
   * Where `name`'s bytes lie in its file (checked like {@link raw}), when the source can say (its digest then already
   * covers them): for backends that read tensors straight from files. Undefined when the tensor must be read.
   */
  async located(
    name: string,
    shape: readonly number[],
    dtypes: readonly DType[],
  ): Promise<{ dtype: DType; fd: number; position: number; byteLength: number } | undefined> {
    if (!this.source.locate) return undefined;
    const dtype = this.check(name, shape, dtypes);
    const at = await this.source.locate(name);
    return at === undefined ? undefined : { dtype, ...at };
  }

  /** The dtype of `name` after checking it exists with `shape` and one of `dtypes`; marks it used. */
  private check(name: string, shape: readonly number[], dtypes: readonly DType[]): DType {
    if (!this.source.has(name)) throw new ModelLoadError(`checkpoint is missing tensor "${name}"`);
    const info = this.source.info(name);
    const dtype = DTYPES[info.dtype];
    if (!dtype || !dtypes.includes(dtype)) {
      throw new ModelLoadError(
        `tensor "${name}" has dtype ${info.dtype}; expected one of ${dtypes.join(', ')}`,
      );
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(
        `tensor "${name}" has shape [${info.shape.join(', ')}]; expected [${shape.join(', ')}]`,
      );
    }
    this.used.add(name);
    return dtype;
  }

  /** Raw bytes of `name`, checked to have `shape` and one of `dtypes`. */
  async raw(
    name: string,
    shape: readonly number[],
    dtypes: readonly DType[],
  ): Promise<{ dtype: DType; bytes: Uint8Array }> {
    const dtype = this.check(name, shape, dtypes);
    return { dtype, bytes: await this.source.read(name) };
  }
}
