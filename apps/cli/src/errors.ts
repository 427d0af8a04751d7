/** An error the user can fix; printed as one line without a stack trace. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/** Runs a command action; any error becomes `mnemo: <message>` on stderr and exit code 1 (stack with MNEMO_DEBUG=1). */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      process.stderr.write(`mnemo: ${err.message}\n`);
      if (process.env.MNEMO_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
      process.exitCode = 1;
    }
  };
}
