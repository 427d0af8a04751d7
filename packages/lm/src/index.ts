export {
  type CachePromptOptions,
  type ContextOptions,
  type FinishReason,
  type GenerateOptions,
  type GenerationChunk,
  type GenerationResult,
  isLocalModelReference,
  LM,
  type LoadOptions,
  type PromptInput,
  type PromptOptions,
  promptCacheModel,
} from './lm';
export { logprobsOf, logSumExp, type StepLogprobs, type TokenLogprob } from './logprobs';
export { PromptCache, type PromptTemplateUse } from './prompt-cache';
export { Random } from './random';
export {
  argmax,
  type LogitsProcessor,
  type LogitsProcessorOptions,
  makeLogitsProcessors,
  makeSampler,
  type Sampler,
  type SamplerOptions,
} from './sampler';
export type { GenerationStats } from './stats';
export {
  DEFAULT_PREFILL_STEP_SIZE,
  generateStep,
  type PrefillOptions,
  prefill,
  type Step,
  type StepOptions,
} from './step';
export { StopStrings } from './stop';
