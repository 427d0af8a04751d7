import { ModelLoadError } from './errors';

/** `config.json` as parsed JSON. */
export type RawConfig = Readonly<Record<string, unknown>>;

/** Typed readers over a raw config that name the key and the file on error. */
export class ConfigReader {
  constructor(
    readonly raw: RawConfig,
    readonly source = 'config.json',
  ) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  int(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new ModelLoadError(
        v === undefined
          ? `${this.source}: missing required key "${key}"`
          : `${this.source}: "${key}" must be a non-negative integer, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  }

  positiveInt(key: string, fallback?: number): number {
    const v = this.int(key, fallback);
    if (v === 0) throw new ModelLoadError(`${this.source}: "${key}" must be positive, got 0`);
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new ModelLoadError(
        v === undefined
          ? `${this.source}: missing required key "${key}"`
          : `${this.source}: "${key}" must be a finite number, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') throw new ModelLoadError(`${this.source}: "${key}" must be true or false`);
    return v;
  }

  str(key: string, fallback?: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'string') throw new ModelLoadError(`${this.source}: "${key}" must be a string`);
    return v;
  }

  object(key: string): RawConfig | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v))
      throw new ModelLoadError(`${this.source}: "${key}" must be an object`);
    return v as RawConfig;
  }
}

/** Hyperparameters every Llama-family decoder has, with each family's defaults applied by its architecture file. */
export interface DecoderConfig {
  readonly modelType: string;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RawConfig | undefined;
  /** Adjacent-pair RoPE (mlx `rope_traditional`); rotate-half otherwise. */
  readonly ropeTraditional: boolean;
  readonly maxPositionEmbeddings: number;
  /** `tie_word_embeddings` when the config sets it; otherwise decided by whether `lm_head.weight` exists. */
  readonly tieWordEmbeddings: boolean | undefined;
  /** Sliding attention window, 0 for none. */
  readonly slidingWindow: number;
}

/** Reads the fields shared by the Llama family; `defaults` holds the family's own defaults. */
export function readDecoderConfig(
  c: ConfigReader,
  defaults: { rmsNormEps?: number; ropeTheta?: number; tieWordEmbeddings?: boolean } = {},
): DecoderConfig {
  const hiddenSize = c.positiveInt('hidden_size');
  const numHeads = c.positiveInt('num_attention_heads');
  const numKvHeads = c.positiveInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelLoadError(
      `${c.source}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  const headDim = c.has('head_dim') ? c.positiveInt('head_dim') : hiddenSize / numHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelLoadError(
      `${c.source}: head dimension ${headDim} must be an even integer (set "head_dim")`,
    );
  }
  const tie = c.raw.tie_word_embeddings ?? defaults.tieWordEmbeddings;
  if (tie !== undefined && typeof tie !== 'boolean') {
    throw new ModelLoadError(`${c.source}: "tie_word_embeddings" must be true or false`);
  }
  return {
    modelType: c.str('model_type'),
    hiddenSize,
    intermediateSize: c.positiveInt('intermediate_size'),
    numLayers: c.positiveInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: c.positiveInt('vocab_size'),
    rmsNormEps: c.num('rms_norm_eps', defaults.rmsNormEps ?? 1e-6),
    ropeTheta: c.num('rope_theta', defaults.ropeTheta ?? 10000),
    ropeScaling: c.object('rope_scaling'),
    ropeTraditional: c.bool('rope_traditional', false),
    maxPositionEmbeddings: c.int('max_position_embeddings', 4096),
    tieWordEmbeddings: tie,
    slidingWindow: 0,
  };
}
