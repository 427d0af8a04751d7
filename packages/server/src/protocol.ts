/**
 * Messages between the HTTP side (main thread) and the model worker, and the layout of the small shared control block
 * both read without messages: the worker publishes its progress there and the HTTP side raises the cancel mark there,
 * so neither depends on the other's event loop being free.
 */

/** Where a prompt's cached prefix came from. */
export type Tier = 'memory' | 'disk' | 'redis';

export interface WorkerInit {
  readonly model: string;
  readonly load: {
    readonly backendName?: string;
    readonly threads?: number;
    readonly int8Activations?: boolean;
  };
  readonly cache: {
    readonly memoryBytes: number;
    /** Folder of the disk tier; null turns it off. */
    readonly dir: string | null;
    readonly diskBytes: number;
    readonly redis: boolean;
    /** Seconds a Redis entry lives; the worker offers an entry again after half of it. */
    readonly redisTtlSeconds: number;
    /** Conversations shorter than this are kept in memory only. */
    readonly minPersistTokens: number;
    readonly blockTokens: number;
  };
  readonly prefillStepSize: number;
  /** The control block (Int32Array view, see `CTL`). */
  readonly ctl: SharedArrayBuffer;
  /** Permits for prefill chunks and decode steps (`ServerOptions.stepGate`, tests only). */
  readonly stepGate?: SharedArrayBuffer;
}

/** Int32 slots of the control block. */
export const CTL = {
  /** Id of the job the HTTP side wants stopped (the worker checks between prefill chunks and decode steps). */
  CANCEL: 0,
  /** Id of the job the worker runs (0 = none). */
  RUNNING: 1,
  /** What the running job does: see `PHASE`. */
  PHASE: 2,
  /** Prompt tokens computed so far by the running job's prefill, and how many it computes in all. */
  PREFILL_DONE: 3,
  PREFILL_TOTAL: 4,
  /** Tokens generated so far by the running job. */
  GENERATED: 5,
  SIZE: 8,
} as const;

export const PHASE = { IDLE: 0, LOOKUP: 1, PREFILL: 2, DECODE: 3, PERSIST: 4 } as const;
export const PHASE_NAMES = ['idle', 'lookup', 'prefill', 'decode', 'persist'] as const;

/** What the worker says about the model once it is loaded. */
export interface ModelInfo {
  readonly dir: string;
  readonly fingerprint: string;
  readonly tokenizerFingerprint: string;
  readonly numerics: string;
  readonly scope: string;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly numLayers: number;
  readonly weightBytes: number;
  readonly modelType: string;
}

export interface JobParams {
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly seed: number | undefined;
  readonly stop: readonly string[];
  /** Top alternatives to report per token; null: no logprobs at all. */
  readonly logprobs: number | null;
  /** Prompt lengths whose prefixes must be persisted (explicit cache breakpoints). */
  readonly persistAt: readonly number[];
}

/** How a prompt's prefix was found, and why more of it was not. */
export interface CacheReport {
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly tier: Tier | 'none';
  /** Tokens each tier could give (null: not asked or turned off). */
  readonly offered: { readonly memory: number; readonly disk: number | null; readonly redis: number | null };
  readonly notes: readonly string[];
}

export interface TokenLogprobOut {
  readonly id: number;
  readonly logprob: number;
}
export interface TokenOut extends TokenLogprobOut {
  readonly top: readonly TokenLogprobOut[];
}

export interface JobResult {
  /** `eos`: an end-of-sequence token; `stop`: a stop string; `length`: max tokens. */
  readonly reason: 'eos' | 'stop' | 'length';
  readonly stopSequence: string | null;
  readonly promptTokens: number;
  readonly cachedTokens: number;
  /** Generated tokens, an end-of-sequence token included. */
  readonly completionTokens: number;
  /** Tokens of explicitly persisted prefixes computed (not read) by this request. */
  readonly persistedTokens: number;
  readonly timeToFirstTokenMs: number;
}

export interface WorkerStats {
  readonly memory: { readonly bytes: number; readonly entries: number };
  readonly disk: { readonly bytes: number; readonly entries: number } | null;
  /** Prompt caches alive in the worker (in the memory tier or in use). */
  readonly liveCaches: number;
  readonly backendBytes: number;
}

export type ToWorker =
  | {
      readonly type: 'job';
      readonly id: number;
      readonly tokens: readonly number[];
      readonly params: JobParams;
    }
  | {
      readonly type: 'redis-reply';
      readonly id: number;
      readonly found: {
        readonly bytes: Uint8Array;
        readonly length: number;
        readonly entryId: string;
      } | null;
      readonly note: string | null;
    }
  | { readonly type: 'stop' };

export type FromWorker =
  | { readonly type: 'ready'; readonly info: ModelInfo; readonly stats: WorkerStats }
  | { readonly type: 'fatal'; readonly message: string }
  | { readonly type: 'start'; readonly id: number; readonly report: CacheReport }
  | {
      readonly type: 'chunk';
      readonly id: number;
      readonly text: string;
      /** The generated token with its logprobs; null for an end-of-sequence token. */
      readonly token: TokenOut | null;
    }
  | { readonly type: 'done'; readonly id: number; readonly result: JobResult }
  | {
      readonly type: 'failed';
      readonly id: number;
      readonly status: number;
      readonly code: string;
      readonly message: string;
    }
  | { readonly type: 'free'; readonly stats: WorkerStats }
  | {
      readonly type: 'redis-get';
      readonly id: number;
      /** Prefix hashes with their lengths, longest first. */
      readonly boundaries: readonly { readonly hash: string; readonly length: number }[];
    }
  | {
      readonly type: 'redis-put';
      readonly entryId: string;
      readonly hashes: readonly string[];
      readonly bytes: Uint8Array;
    }
  | { readonly type: 'redis-del'; readonly entryId: string }
  | {
      readonly type: 'log';
      readonly level: 'debug' | 'info' | 'warn' | 'error';
      readonly msg: string;
      readonly data?: Record<string, unknown>;
    }
  | { readonly type: 'refused'; readonly tier: Tier; readonly code: string };
