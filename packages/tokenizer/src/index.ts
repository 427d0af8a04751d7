export {
  type ChatMessage,
  ChatTemplate,
  type ChatTemplateOptions,
  type ChatTool,
  chatTemplateFromConfig,
} from './chat-template';
export { cleanUpTokenization } from './cleanup';
export {
  createDetokenizer,
  type DetokenizerOptions,
  type DetokenizerSource,
  StreamingDetokenizer,
} from './detokenizer';
export { ChatTemplateError, TokenizerLoadError } from './errors';
export { tokenizerFingerprint } from './fingerprint';
export {
  GGUF_PRE_TOKENIZERS,
  type GgufMetadataLike,
  type GgufTokenizerParts,
  ggufTokenizerParts,
  tokenizerFromGguf,
} from './gguf';
export { byteLevelBpeToTokenizerJson } from './gpt2';
export { loadTokenizer, MAX_TOKENIZER_FILE_BYTES } from './load';
export {
  parseSentencePieceModel,
  type SentencePiece,
  type SentencePieceConversionOptions,
  type SentencePieceModel,
  SentencePieceModelType,
  SentencePieceType,
  sentencePieceToTokenizerJson,
} from './sentencepiece';
export { specialTokenStrings } from './special-tokens';
export {
  BoundedInterpreter,
  DEFAULT_TEMPLATE_LIMITS,
  TemplateBudgetError,
  type TemplateLimits,
} from './template-budget';
export {
  createTokenizer,
  type DecodeOptions,
  type EncodeChatOptions,
  type EncodeOptions,
  Tokenizer,
  type TokenizerSources,
} from './tokenizer';
export type {
  AddedTokenJson,
  ModelConfigLike,
  NamedChatTemplate,
  SpecialTokenValue,
  TokenizerConfig,
  TokenizerJson,
} from './types';
