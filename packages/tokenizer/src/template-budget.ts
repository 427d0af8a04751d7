/**
 * Limits for rendering a chat template. A template comes with the model (`tokenizer_config.json`, `chat_template.jinja`)
 * and runs on the user's machine, so it must not be able to run forever or take the process's memory:
 * `{% for i in range(100000000) %}` or nested loops are stopped with a clear error instead.
 *
 * The interpreter of `@huggingface/jinja` is wrapped so that every evaluation step checks, in the same thread:
 * - the time spent (`timeMs`),
 * - the size of the value it produced (`maxChars` for strings, `maxItems` for lists and mappings),
 * - before the filters and methods that can multiply a size or a count in one step (`indent`, `join`, `replace`,
 *   `split`), the size of their result and the number of pieces they make, so no single step allocates much more
 *   than `maxChars` or runs long,
 * - every 256 steps, how much the process's resident memory grew since the render started (`maxMemoryBytes`).
 * `range()` refuses to make more than `maxItems` numbers. A worker thread with V8 `resourceLimits` was considered and
 * measured: V8 aborts the whole process (not just the worker) when a worker reaches its heap limit through a large
 * allocation, so it bounds time but not memory.
 */
import { type Environment, Interpreter } from '@huggingface/jinja';

export interface TemplateLimits {
  /** Most milliseconds one render may take (default 5,000). */
  readonly timeMs?: number;
  /** Longest string a render may produce, as its output or as any value along the way (default 4 Mi characters). */
  readonly maxChars?: number;
  /** Most items of any list or mapping a render builds, and of `range()` (default 100,000). */
  readonly maxItems?: number;
  /** Most growth of the process's resident memory during one render (default 512 MiB). */
  readonly maxMemoryBytes?: number;
}

export const DEFAULT_TEMPLATE_LIMITS: Required<TemplateLimits> = Object.freeze({
  timeMs: 5_000,
  maxChars: 4 * 1024 * 1024,
  maxItems: 100_000,
  maxMemoryBytes: 512 * 1024 * 1024,
});

/** A render went over one of its {@link TemplateLimits}; the message says which. */
export class TemplateBudgetError extends Error {
  override readonly name = 'TemplateBudgetError';
}

/** Checks `limits` and fills in the defaults. */
export function resolveLimits(limits: TemplateLimits | undefined): Required<TemplateLimits> {
  const out = { ...DEFAULT_TEMPLATE_LIMITS, ...limits };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v))
      throw new RangeError(`template limit ${k} must be a positive number, got ${String(v)}`);
  }
  return out;
}

/** The parts of a node this file looks at (the AST types of `@huggingface/jinja` are not all exported). */
interface Node {
  readonly type: string;
  readonly [key: string]: unknown;
}

interface RuntimeValue {
  readonly type: string;
  readonly value: unknown;
}

/** Private methods of `Interpreter` this file calls (present at run time; `private` in the declarations only). */
interface InterpreterInternals {
  applyFilter(operand: RuntimeValue, filter: Node, environment: Environment): RuntimeValue;
  evaluateArguments(
    args: readonly Node[],
    environment: Environment,
  ): [RuntimeValue[], Map<string, RuntimeValue>];
}

/** Resident memory of the process (0 where it cannot be measured, e.g. outside Node: the check is then skipped). */
const rss = (): number =>
  typeof process === 'object' && typeof process.memoryUsage?.rss === 'function'
    ? process.memoryUsage.rss()
    : 0;

function filterName(filter: Node): string | undefined {
  if (filter.type === 'Identifier') return filter.value as string;
  if (filter.type === 'CallExpression') {
    const callee = filter.callee as Node;
    if (callee.type === 'Identifier') return callee.value as string;
  }
  return undefined;
}

function str(v: RuntimeValue | undefined): string | undefined {
  return v?.type === 'StringValue' ? (v.value as string) : undefined;
}

function int(v: RuntimeValue | undefined): number | undefined {
  return v?.type === 'IntegerValue' ? (v.value as number) : undefined;
}

/** Occurrences of `needle` in `s`, counting no further than `enough`. */
function occurrences(s: string, needle: string, enough: number): number {
  if (needle === '') return s.length + 1;
  let n = 0;
  for (let at = s.indexOf(needle); at >= 0 && n < enough; at = s.indexOf(needle, at + needle.length)) n++;
  return n;
}

/** An `Interpreter` that stops a render going over its limits with a {@link TemplateBudgetError}. */
export class BoundedInterpreter extends Interpreter {
  private readonly limits: Required<TemplateLimits>;
  private readonly deadline: number;
  private readonly rssStart: number;
  private steps = 0;

  constructor(env: Environment, limits: Required<TemplateLimits>) {
    super(env);
    this.limits = limits;
    this.deadline = performance.now() + limits.timeMs;
    this.rssStart = rss();
  }

  private get internals(): InterpreterInternals {
    return this as unknown as InterpreterInternals;
  }

  /** A `range()` that refuses to make more numbers than the budget allows (plain numbers in, a list out). */
  static range(limits: Required<TemplateLimits>) {
    return (start: number, stop?: number, step = 1): number[] => {
      if (stop === undefined) {
        stop = start;
        start = 0;
      }
      for (const x of [start, stop, step])
        if (!Number.isSafeInteger(x)) throw new Error(`range() takes integers, got ${String(x)}`);
      if (step === 0) throw new Error('range() step must not be zero');
      const count = Math.max(0, Math.ceil((stop - start) / step));
      if (count > limits.maxItems)
        throw new TemplateBudgetError(
          `range() of ${count} numbers is more than the ${limits.maxItems} a render may make`,
        );
      const out = new Array<number>(count);
      for (let i = 0; i < count; i++) out[i] = start + i * step;
      return out;
    };
  }

  override evaluate(statement: Parameters<Interpreter['evaluate']>[0], environment: Environment) {
    this.tick();
    const node = statement as unknown as Node | undefined;
    let value: RuntimeValue;
    if (node?.type === 'FilterExpression') {
      // As Interpreter.evaluateFilterExpression, with the result's size checked before the filter runs.
      const operand = this.evaluate(node.operand as never, environment) as RuntimeValue;
      this.checkFilter(operand, node.filter as Node, environment);
      value = this.internals.applyFilter(operand, node.filter as Node, environment);
    } else {
      if (node?.type === 'CallExpression') this.checkMethodCall(node, environment);
      value = super.evaluate(statement, environment) as RuntimeValue;
    }
    this.checkSize(value);
    return value as ReturnType<Interpreter['evaluate']>;
  }

  private tick(): void {
    const n = ++this.steps;
    if ((n & 255) !== 0) return;
    if (performance.now() > this.deadline)
      throw new TemplateBudgetError(
        `it ran longer than its ${this.limits.timeMs} ms budget (${n} steps; a loop that does not end?)`,
      );
    const grown = rss() - this.rssStart;
    if (grown > this.limits.maxMemoryBytes)
      throw new TemplateBudgetError(
        `it took ${Math.round(grown / 2 ** 20)} MiB of memory, more than its ${Math.round(this.limits.maxMemoryBytes / 2 ** 20)} MiB budget`,
      );
  }

  private checkSize(v: RuntimeValue): void {
    switch (v?.type) {
      case 'StringValue':
        this.checkChars((v.value as string).length, 'a string');
        break;
      case 'ArrayValue':
      case 'TupleValue':
        this.checkItems((v.value as unknown[]).length);
        break;
      case 'ObjectValue':
      case 'KeywordArgumentsValue':
      case 'NamespaceValue':
        this.checkItems((v.value as Map<string, unknown>).size);
        break;
    }
  }

  private checkChars(n: number, what: string): void {
    if (n > this.limits.maxChars)
      throw new TemplateBudgetError(
        `it made ${what} of ${n} characters, more than its budget of ${this.limits.maxChars}`,
      );
  }

  private checkItems(n: number): void {
    if (n > this.limits.maxItems)
      throw new TemplateBudgetError(
        `it made a list or mapping of ${n} items, more than its budget of ${this.limits.maxItems}`,
      );
  }

  /** Sizes `indent`, `join` and `replace` would produce, refused before they allocate it. */
  private checkFilter(operand: RuntimeValue, filter: Node, environment: Environment): void {
    const name = filterName(filter);
    if (name !== 'indent' && name !== 'join' && name !== 'replace') return;
    const [args, kwargs] =
      filter.type === 'CallExpression'
        ? this.internals.evaluateArguments(filter.args as Node[], environment)
        : [[], new Map<string, RuntimeValue>()];
    const s = str(operand);
    if (name === 'indent' && s !== undefined) {
      const width = Math.max(0, int(args[0] ?? kwargs.get('width')) ?? 4);
      const lines = this.pieces(occurrences(s, '\n', this.limits.maxItems + 1) + 1, '`indent`');
      this.checkChars(s.length + lines * width, '`indent` result');
    } else if (name === 'join') {
      const sep = (str(args[0] ?? kwargs.get('separator')) ?? '').length;
      if (s !== undefined) {
        this.pieces(s.length, '`join`');
        this.checkChars(s.length * (1 + sep), '`join` result');
      } else if (operand?.type === 'ArrayValue' || operand?.type === 'TupleValue') {
        const items = operand.value as RuntimeValue[];
        let total = Math.max(0, items.length - 1) * sep;
        for (const x of items) total += String(x?.value).length;
        this.checkChars(total, '`join` result');
      }
    } else if (name === 'replace' && s !== undefined) this.checkReplace(s, args, kwargs);
  }

  /** `s.replace(old, new)` and `s.split(sep)`: the method forms, checked before they run. */
  private checkMethodCall(node: Node, environment: Environment): void {
    const callee = node.callee as Node;
    if (callee.type !== 'MemberExpression' || callee.computed) return;
    const property = callee.property as Node;
    const method = property.type === 'Identifier' ? property.value : undefined;
    if (method !== 'replace' && method !== 'split') return;
    const s = str(this.evaluate(callee.object as never, environment) as RuntimeValue);
    if (s === undefined) return;
    const [args, kwargs] = this.internals.evaluateArguments(node.args as Node[], environment);
    if (method === 'replace') this.checkReplace(s, args, kwargs);
    else {
      const sep = str(args[0]);
      const enough = this.limits.maxItems + 1;
      let n = 0;
      if (sep === undefined) for (const re = /\S+/g; n < enough && re.exec(s) !== null; ) n++;
      else n = sep === '' ? 0 : occurrences(s, sep, enough) + 1;
      this.pieces(n, '`split`');
    }
  }

  /** Refuses an operation that would make more than `maxItems` pieces (lines, matches, list items). */
  private pieces(n: number, what: string): number {
    if (n > this.limits.maxItems)
      throw new TemplateBudgetError(
        `${what} would make more than ${this.limits.maxItems} pieces, its budget (${n} found so far)`,
      );
    return n;
  }

  private checkReplace(s: string, args: RuntimeValue[], kwargs: Map<string, RuntimeValue>): void {
    const from = str(args[0]);
    const to = str(args[1]);
    if (from === undefined || to === undefined) return;
    const count = int(args[2] ?? kwargs.get('count'));
    const enough = this.limits.maxItems + 1;
    const n = this.pieces(
      occurrences(s, from, count !== undefined && count >= 0 ? Math.min(count, enough) : enough),
      '`replace`',
    );
    this.checkChars(s.length + n * Math.max(0, to.length - from.length), '`replace` result');
  }
}
