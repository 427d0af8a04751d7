/** Messages between the HTTP side and the tokenizer worker. */
import type { AnthropicContent, TextContent } from './prompt';

export type TokenizeRequest =
  | { readonly op: 'chat'; readonly messages: readonly { role: string; content?: TextContent }[] }
  | {
      readonly op: 'completion';
      readonly prompt: string | readonly string[] | readonly number[] | readonly (readonly number[])[];
      readonly vocabSize: number;
    }
  | {
      readonly op: 'anthropic';
      readonly system: AnthropicContent | undefined;
      readonly messages: readonly { role: string; content: AnthropicContent }[];
    };

export interface Tokenized {
  readonly tokens: number[];
  readonly breakpoints: number[];
}

export type ToTokenizer = TokenizeRequest & { readonly id: number };

export type FromTokenizer =
  | { readonly type: 'ready' }
  | { readonly type: 'fatal'; readonly message: string }
  | { readonly type: 'result'; readonly id: number; readonly result: Tokenized }
  | {
      readonly type: 'error';
      readonly id: number;
      readonly status: number;
      readonly message: string;
      readonly code: string | null;
      readonly param: string | null;
    };
