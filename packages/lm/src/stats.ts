/** Timing and memory figures of one generation (mlx-lm prints the same). */
export interface GenerationStats {
  /** Tokens in the prompt. */
  promptTokens: number;
  /** Prompt tokens taken from the cache instead of being computed. */
  cachedTokens: number;
  /** Prompt tokens computed per second (cached ones excluded). */
  promptTps: number;
  /** Generated tokens (a stop token included) . */
  generationTokens: number;
  /** Generated tokens per second after the first. */
  generationTps: number;
  /** Milliseconds from the call to the first generated token. */
  timeToFirstTokenMs: number;
  /** Peak resident set size of the process, in MB. */
  peakMemoryMb: number;
}

export function peakMemoryMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function emptyStats(): GenerationStats {
  return {
    promptTokens: 0,
    cachedTokens: 0,
    promptTps: 0,
    generationTokens: 0,
    generationTps: 0,
    timeToFirstTokenMs: 0,
    peakMemoryMb: 0,
  };
}
