import { createProgressBar } from '@mnemo/hub';
import { LM } from '@mnemo/lm';
import type { Command } from 'commander';
import { intArg } from './options';

/** Flags choosing how a command computes. */
export interface ComputeFlags {
  backend?: string;
  threads?: number;
  int8Activations?: boolean;
  ignoreContextLimit?: boolean;
}

/** Adds `--backend`, `--threads` and `--int8-activations` to a command that runs a model. */
export function addComputeFlags(cmd: Command): Command {
  return cmd
    .option(
      '--backend <name>',
      'compute backend (native, wasm, js); default MNEMO_BACKEND, else native where it can run, else wasm',
    )
    .option('--threads <n>', 'threads to compute with (default MNEMO_THREADS or every core)', intArg(1, 64))
    .option(
      '--int8-activations',
      'faster 4-/8-bit quantized matmuls: round activations to int8 (close to, not bit-identical with, the exact path)',
    )
    .option(
      '--ignore-context-limit',
      "run past the model's context (max_position_embeddings): longer prompts and caches, generation past it",
    );
}

/** Loads a model for a command, drawing a download progress bar on a TTY. */
export async function loadLM(model: string, f: ComputeFlags): Promise<LM> {
  const bar = createProgressBar(process.stderr);
  try {
    return await LM.load(model, {
      ...(f.backend ? { backendName: f.backend } : {}),
      ...(f.threads !== undefined ? { threads: f.threads } : {}),
      ...(f.int8Activations ? { int8Activations: true } : {}),
      hub: { onProgress: bar.update },
    });
  } finally {
    bar.done();
  }
}

/** One line naming the backend a model runs on, e.g. `Backend: native (avx512vnni, 2 threads, numerics native-f32)`. */
export function backendLine(lm: LM): string {
  const b = lm.backend as { name: string; isa?: unknown; threads?: unknown };
  const parts: string[] = [];
  if (typeof b.isa === 'string') parts.push(b.isa);
  if (typeof b.threads === 'number') parts.push(`${b.threads} thread${b.threads === 1 ? '' : 's'}`);
  parts.push(`numerics ${lm.numerics}`);
  return `Backend: ${b.name} (${parts.join(', ')})\n`;
}

/** A one-line bar for prompt processing, on a TTY only; returns the callback and a closer. */
export function prefillProgress(label = 'Processing prompt'): {
  onPrefill?: (done: number, total: number) => void;
  done: () => void;
} {
  if (!process.stderr.isTTY) return { done: () => {} };
  let drawn = false;
  let last = 0;
  const t0 = performance.now();
  return {
    onPrefill: (done, total) => {
      const now = performance.now();
      if (total < 64 || (now - last < 100 && done < total)) return;
      last = now;
      drawn = true;
      const width = 30;
      const filled = Math.round((done / total) * width);
      const tps = done / Math.max(1e-3, (now - t0) / 1000);
      process.stderr.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} tokens, ${tps.toFixed(1)} tok/s`,
      );
    },
    done: () => {
      if (drawn) process.stderr.write('\n');
    },
  };
}
