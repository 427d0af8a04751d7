import { InvalidArgumentError } from 'commander';

/** Parsers for numeric flags: each refuses what it cannot use, naming the value. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

export function floatArg(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** Reads the prompt: `-` means standard input. */
export async function readPrompt(value: string): Promise<string> {
  if (value !== '-') return value;
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A file name argument: an empty value is refused (`--prompt-cache-file ''` used to mean "no file" silently). */
export function fileArg(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('A file name is needed.');
  return value;
}
