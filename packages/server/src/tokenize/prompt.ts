/**
 * Request bodies → prompt token ids (in the tokenizer worker, before a request queues, so lengths are checked first). Chat requests
 * are rendered with the model's chat template; completions are raw text (with the tokenizer's BOS rules) or ids.
 * Anthropic `cache_control` marks become prompt lengths: where the rendered conversation stands right after the marked
 * block, found with a sentinel rendered in its place.
 */
import { type ChatMessage, ChatTemplateError, type Tokenizer } from '@mnemo/tokenizer';
import { commonPrefix } from '../cache/prefix';
import { HttpError } from '../http/errors';

export type TextContent =
  | string
  | readonly { readonly type: 'text'; readonly text: string }[]
  | null
  | undefined;

export function textOf(content: TextContent, join = ''): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join(join);
}

function render(tokenizer: Tokenizer, messages: readonly ChatMessage[]): string {
  if (!tokenizer.hasChatTemplate)
    throw new HttpError(
      400,
      'this model has no chat template: use /v1/completions with a raw prompt',
      'no_chat_template',
    );
  try {
    return tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  } catch (e) {
    if (e instanceof ChatTemplateError)
      throw new HttpError(
        400,
        `the chat template refused the messages: ${e.message}`,
        'invalid_messages',
        'messages',
      );
    throw e;
  }
}

function encodeRendered(tokenizer: Tokenizer, text: string): number[] {
  return tokenizer.encode(text, { addSpecialTokens: false });
}

/** OpenAI chat messages → ids (`developer` is a system message). */
export function chatTokens(
  tokenizer: Tokenizer,
  messages: readonly { role: string; content?: TextContent }[],
): number[] {
  const chat: ChatMessage[] = messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: textOf(m.content),
  }));
  return encodeRendered(tokenizer, render(tokenizer, chat));
}

/** A completions prompt → ids; ids are checked against the vocabulary. */
export function completionTokens(
  tokenizer: Tokenizer,
  vocabSize: number,
  prompt: string | readonly string[] | readonly number[] | readonly (readonly number[])[],
): number[] {
  if (typeof prompt === 'string') return tokenizer.encode(prompt);
  const first = prompt[0];
  if (typeof first === 'string') return tokenizer.encode(first);
  const ids = (Array.isArray(first) ? first : prompt) as readonly number[];
  for (const t of ids)
    if (t >= vocabSize)
      throw new HttpError(
        400,
        `token id ${t} is outside the vocabulary (${vocabSize})`,
        'invalid_token',
        'prompt',
      );
  return [...ids];
}

type Block = { readonly type: 'text'; readonly text: string; readonly cache_control?: unknown };
export type AnthropicContent = string | readonly Block[];

const SENTINEL = '\u{10FFFD}mnemo-cache-breakpoint\u{10FFFD}';
/** Blocks of one message are joined with this (the chat template sees one string per message). */
const BLOCK_JOIN = '\n\n';

/** Anthropic system + messages → ids, and the prompt length at each `cache_control` mark (at most 4). */
export function anthropicTokens(
  tokenizer: Tokenizer,
  system: AnthropicContent | undefined,
  messages: readonly { role: string; content: AnthropicContent }[],
): { tokens: number[]; breakpoints: number[] } {
  const parts: { role: string; blocks: readonly Block[] }[] = [];
  const blocks = (c: AnthropicContent): readonly Block[] =>
    typeof c === 'string' ? [{ type: 'text', text: c }] : c;
  if (system !== undefined && textOf(blocks(system) as Block[]) !== '')
    parts.push({ role: 'system', blocks: blocks(system) });
  for (const m of messages) parts.push({ role: m.role, blocks: blocks(m.content) });
  const toChat = (mark?: { part: number; block: number }): ChatMessage[] =>
    parts.map((p, i) => ({
      role: p.role,
      content: p.blocks
        .map((b, j) => (mark && mark.part === i && mark.block === j ? b.text + SENTINEL : b.text))
        .join(BLOCK_JOIN),
    }));
  const tokens = encodeRendered(tokenizer, render(tokenizer, toChat()));
  const marks: { part: number; block: number }[] = [];
  parts.forEach((p, i) => {
    p.blocks.forEach((b, j) => {
      if (b.cache_control) marks.push({ part: i, block: j });
    });
  });
  if (marks.length > 4)
    throw new HttpError(
      400,
      `at most 4 blocks may have cache_control, found ${marks.length}`,
      null,
      'cache_control',
    );
  const breakpoints: number[] = [];
  for (const mark of marks) {
    const rendered = render(tokenizer, toChat(mark));
    const at = rendered.indexOf(SENTINEL);
    if (at < 0) continue; // the template does not show this text verbatim: nothing is known to be shared
    const prefix = encodeRendered(tokenizer, rendered.slice(0, at));
    const n = commonPrefix(prefix, tokens);
    if (n > 0) breakpoints.push(n);
  }
  return { tokens, breakpoints };
}
