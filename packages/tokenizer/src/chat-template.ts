import { Environment, Template } from '@huggingface/jinja';
import { ChatTemplateError } from './errors';
import { specialTokenStrings } from './special-tokens';
import {
  BoundedInterpreter,
  resolveLimits,
  TemplateBudgetError,
  type TemplateLimits,
} from './template-budget';
import type { NamedChatTemplate, TokenizerConfig } from './types';

/** One chat message. `content` may be a string or a list of parts (`{type: "text", text}`, ...). */
export interface ChatMessage {
  role: string;
  content?: string | readonly Record<string, unknown>[] | null;
  [key: string]: unknown;
}

/** A tool, as a JSON-schema-style object (`{type: "function", function: {name, description, parameters}}`). */
export type ChatTool = Record<string, unknown>;

export interface ChatTemplateOptions {
  /** Append the assistant header so the model answers (`add_generation_prompt`). Default `false`. */
  addGenerationPrompt?: boolean;
  /** Tools the model may call; also chooses the `tool_use` template when the config has named templates. */
  tools?: readonly ChatTool[] | null;
  /** Documents for retrieval-augmented templates (`documents`). */
  documents?: readonly Record<string, unknown>[] | null;
  /** Name of the template to use when `chat_template` is a list (`default`, `tool_use`, ...). */
  templateName?: string;
  /**
   * Leave the final message open so the model continues it (transformers' `continue_final_message`): the rendered
   * text ends right after that message's content. Cannot be combined with `addGenerationPrompt`.
   */
  continueFinalMessage?: boolean;
  /** More template variables (`enable_thinking`, `date_string`, ...). Any other option key is passed on too. */
  variables?: Record<string, unknown>;
  /** Time and size budget of this render (default: the template's, see {@link TemplateLimits}). */
  limits?: TemplateLimits;
  [extra: string]: unknown;
}

const KNOWN_OPTIONS = new Set([
  'addGenerationPrompt',
  'tools',
  'documents',
  'templateName',
  'continueFinalMessage',
  'variables',
  'limits',
]);

class RaisedException extends Error {}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's `strftime` in the C locale, for the codes chat templates use. */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const dayOfYear = Math.floor(
    (Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) /
      86_400_000,
  );
  return format.replace(/%[a-zA-Z%]/g, (code) => {
    switch (code) {
      case '%Y':
        return String(date.getFullYear());
      case '%y':
        return pad(date.getFullYear() % 100);
      case '%m':
        return pad(date.getMonth() + 1);
      case '%d':
        return pad(date.getDate());
      case '%e':
        return String(date.getDate()).padStart(2, ' ');
      case '%B':
        return MONTHS[date.getMonth()]!;
      case '%b':
        return MONTHS[date.getMonth()]!.slice(0, 3);
      case '%A':
        return DAYS[date.getDay()]!;
      case '%a':
        return DAYS[date.getDay()]!.slice(0, 3);
      case '%H':
        return pad(date.getHours());
      case '%I':
        return pad(((date.getHours() + 11) % 12) + 1);
      case '%p':
        return date.getHours() < 12 ? 'AM' : 'PM';
      case '%M':
        return pad(date.getMinutes());
      case '%S':
        return pad(date.getSeconds());
      case '%j':
        return pad(dayOfYear + 1, 3);
      case '%%':
        return '%';
      default:
        return code;
    }
  });
}

/** What `@huggingface/jinja`'s Template.render declares before the variables. */
const GLOBALS: Record<string, unknown> = {
  false: false,
  true: true,
  none: null,
  False: false,
  True: true,
  None: null,
  strftime_now: (format: string) => strftime(new Date(), format),
};

/**
 * The chat template(s) of a tokenizer, rendered with `@huggingface/jinja` the way transformers'
 * `apply_chat_template` does: `trim_blocks` and `lstrip_blocks`, the special tokens (`bos_token`, `eos_token`, ...)
 * as variables, `raise_exception` and `strftime_now` available, `tools`/`documents` `none` when not given.
 */
export class ChatTemplate {
  /** Template sources by name; a single-string `chat_template` is named `default`. */
  readonly templates: ReadonlyMap<string, string>;
  private readonly compiled = new Map<string, Template>();

  /**
   * @param source `chat_template` as found in `tokenizer_config.json`: a string or a list of `{name, template}`.
   * @param specialTokens Variables transformers passes from the special-tokens map (`bos_token`, `eos_token`, ...).
   */
  /** The budget of every render unless a render's options say otherwise. */
  readonly limits: TemplateLimits;

  constructor(
    source: string | readonly NamedChatTemplate[] | ReadonlyMap<string, string>,
    readonly specialTokens: Readonly<Record<string, unknown>> = {},
    options: { readonly limits?: TemplateLimits } = {},
  ) {
    this.limits = resolveLimits(options.limits);
    const map = new Map<string, string>();
    if (typeof source === 'string') {
      map.set('default', source);
    } else if (source instanceof Map) {
      for (const [k, v] of source) map.set(k, v);
    } else if (Array.isArray(source)) {
      for (const entry of source as readonly NamedChatTemplate[]) {
        if (
          typeof entry !== 'object' ||
          entry === null ||
          typeof entry.name !== 'string' ||
          typeof entry.template !== 'string'
        ) {
          throw new ChatTemplateError(
            null,
            'chat_template list entries must be {name: string, template: string}',
          );
        }
        map.set(entry.name, entry.template);
      }
    } else {
      throw new ChatTemplateError(null, 'chat_template must be a string or a list of {name, template}');
    }
    if (map.size === 0) throw new ChatTemplateError(null, 'chat_template list is empty');
    this.templates = map;
  }

  /** Names of the available templates. */
  get names(): string[] {
    return [...this.templates.keys()];
  }

  /** Chooses the template as transformers does: the named one, else `tool_use` when tools are given, else `default`. */
  select(templateName?: string, hasTools = false): string {
    if (templateName !== undefined) {
      if (!this.templates.has(templateName)) {
        throw new ChatTemplateError(
          templateName,
          `no template with this name (available: ${this.names.map((n) => JSON.stringify(n)).join(', ')})`,
        );
      }
      return templateName;
    }
    if (hasTools && this.templates.has('tool_use')) return 'tool_use';
    if (this.templates.has('default')) return 'default';
    throw new ChatTemplateError(
      null,
      `several chat templates (${this.names.join(', ')}) and none is named "default": pass templateName`,
    );
  }

  private template(name: string): Template {
    let t = this.compiled.get(name);
    if (t === undefined) {
      try {
        t = new Template(this.templates.get(name)!);
      } catch (e) {
        throw new ChatTemplateError(name, `cannot parse: ${(e as Error).message}`, { cause: e });
      }
      this.compiled.set(name, t);
    }
    return t;
  }

  /** Renders `messages` to the prompt string. */
  render(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const addGenerationPrompt = options.addGenerationPrompt ?? false;
    const continueFinal = options.continueFinalMessage ?? false;
    if (addGenerationPrompt && continueFinal) {
      throw new ChatTemplateError(null, 'addGenerationPrompt and continueFinalMessage cannot both be set');
    }
    const tools = options.tools ?? null;
    const name = this.select(options.templateName, tools !== null);
    const extra: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(options)) if (!KNOWN_OPTIONS.has(k)) extra[k] = v;
    const variables: Record<string, unknown> = {
      ...GLOBALS,
      ...this.specialTokens,
      ...options.variables,
      ...extra,
      messages,
      tools,
      documents: options.documents ?? null,
      add_generation_prompt: addGenerationPrompt,
      raise_exception: (message: unknown) => {
        throw new RaisedException(String(message));
      },
    };
    const limits = resolveLimits({ ...this.limits, ...options.limits });
    variables.range = BoundedInterpreter.range(limits);
    let rendered: string;
    try {
      // As Template.render, with our own globals (its raise_exception cannot be told apart from other errors) and an
      // interpreter that stops at the time and size budget.
      const env = new Environment();
      for (const [k, v] of Object.entries(variables)) env.set(k, v);
      const result = new BoundedInterpreter(env, limits).run(this.template(name).parsed).value;
      if (typeof result !== 'string') throw new Error(`template produced ${typeof result}, not a string`);
      rendered = result;
    } catch (e) {
      if (e instanceof ChatTemplateError) throw e;
      throw new ChatTemplateError(name, renderFailure(e), { cause: e });
    }
    if (continueFinal) rendered = cutAfterFinalMessage(rendered, messages, name);
    return rendered;
  }
}

/** Why a render failed, for the message of its ChatTemplateError. */
function renderFailure(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof RaisedException) return `raise_exception: ${message}`;
  if (e instanceof TemplateBudgetError) return `rendering stopped: ${message}`;
  if (e instanceof RangeError && /Invalid string length|Invalid array length/.test(message))
    return `rendering stopped: it made a value larger than JavaScript can hold (${message})`;
  if (e instanceof RangeError && /call stack/.test(message))
    return `rendering stopped: it recursed too deeply (${message})`;
  return `rendering failed: ${message}`;
}

function finalContent(messages: readonly ChatMessage[], name: string): string {
  const last = messages[messages.length - 1];
  if (last === undefined)
    throw new ChatTemplateError(name, 'continueFinalMessage needs at least one message');
  const content = last.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    for (let i = content.length - 1; i >= 0; i--) {
      const text = content[i]?.text;
      if (typeof text === 'string') return text;
    }
  }
  throw new ChatTemplateError(name, 'continueFinalMessage needs a final message with text content');
}

function cutAfterFinalMessage(rendered: string, messages: readonly ChatMessage[], name: string): string {
  const content = finalContent(messages, name);
  for (const needle of [content, content.trim()]) {
    const at = rendered.lastIndexOf(needle);
    if (at >= 0) return rendered.slice(0, at + needle.length);
  }
  throw new ChatTemplateError(
    name,
    'continueFinalMessage: the final message content is not in the rendered text',
  );
}

/**
 * The chat template(s) of a `tokenizer_config.json` (and optional `special_tokens_map.json`), with the special tokens
 * as variables, or `null` when it has none. Useful when only the config is at hand (no tokenizer.json).
 */
export function chatTemplateFromConfig(
  config: TokenizerConfig,
  specialTokensMap?: Record<string, unknown> | null,
): ChatTemplate | null {
  const source = config.chat_template;
  if (source === undefined || source === null) return null;
  return new ChatTemplate(source, specialTokenStrings(config, specialTokensMap));
}
