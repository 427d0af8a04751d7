/**
 * JSON schemas of the request bodies. Fastify validates every body against these (without type coercion) before a
 * route runs, so a wrong type is a 400 that names the field. Fields the server does not implement are refused where
 * ignoring them would change the answer (n > 1, tools, penalties), and accepted where they do not (user, metadata).
 */

const stop = {
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 1000 },
    { type: 'array', maxItems: 4, items: { type: 'string', minLength: 1, maxLength: 1000 } },
    { type: 'null' },
  ],
} as const;

const sampling = {
  temperature: { anyOf: [{ type: 'number', minimum: 0, maximum: 2 }, { type: 'null' }] },
  top_p: { anyOf: [{ type: 'number', exclusiveMinimum: 0, maximum: 1 }, { type: 'null' }] },
  seed: { anyOf: [{ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, { type: 'null' }] },
  stream: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
  stream_options: {
    anyOf: [{ type: 'object', properties: { include_usage: { type: 'boolean' } } }, { type: 'null' }],
  },
  n: { anyOf: [{ type: 'integer', const: 1 }, { type: 'null' }] },
  presence_penalty: { anyOf: [{ type: 'number', const: 0 }, { type: 'null' }] },
  frequency_penalty: { anyOf: [{ type: 'number', const: 0 }, { type: 'null' }] },
  user: { type: 'string' },
  stop,
} as const;

const maxTokens = { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'null' }] } as const;

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
} as const;

export const chatCompletionSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    model: { type: 'string', minLength: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: textPart }, { type: 'null' }] },
          name: { type: 'string' },
        },
      },
    },
    max_tokens: maxTokens,
    max_completion_tokens: maxTokens,
    logprobs: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
    top_logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 20 }, { type: 'null' }] },
    ...sampling,
    tools: { type: 'array', maxItems: 0 },
    functions: { type: 'array', maxItems: 0 },
    response_format: {
      anyOf: [
        { type: 'object', required: ['type'], properties: { type: { const: 'text' } } },
        { type: 'null' },
      ],
    },
  },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    model: { type: 'string', minLength: 1 },
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
        {
          type: 'array',
          minItems: 1,
          maxItems: 1,
          items: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
        },
      ],
    },
    max_tokens: maxTokens,
    logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 5 }, { type: 'null' }] },
    echo: { anyOf: [{ type: 'boolean', const: false }, { type: 'null' }] },
    best_of: { anyOf: [{ type: 'integer', const: 1 }, { type: 'null' }] },
    suffix: { type: 'null' },
    ...sampling,
  },
} as const;

const cacheControl = {
  type: 'object',
  required: ['type'],
  properties: { type: { const: 'ephemeral' }, ttl: { type: 'string' } },
} as const;

const anthropicText = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' }, cache_control: cacheControl },
} as const;

export const messagesSchema = {
  type: 'object',
  required: ['model', 'messages', 'max_tokens'],
  properties: {
    model: { type: 'string', minLength: 1 },
    max_tokens: { type: 'integer', minimum: 1 },
    system: { anyOf: [{ type: 'string' }, { type: 'array', items: anthropicText }] },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { enum: ['user', 'assistant'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: anthropicText }] },
        },
      },
    },
    stop_sequences: { type: 'array', maxItems: 4, items: { type: 'string', minLength: 1, maxLength: 1000 } },
    temperature: { type: 'number', minimum: 0, maximum: 1 },
    top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    top_k: { type: 'integer', minimum: 0 },
    stream: { type: 'boolean' },
    metadata: { type: 'object' },
    tools: { type: 'array', maxItems: 0 },
  },
} as const;
