import { describe, expect, it } from 'vitest';
import { isSelected, matchesPattern } from './patterns';

describe('matchesPattern (fnmatch)', () => {
  it('matches like fnmatch: * crosses folders, ?, sets, trailing slash', () => {
    expect(matchesPattern('config.json', '*.json')).toBe(true);
    expect(matchesPattern('sub/x.json', '*.json')).toBe(true);
    expect(matchesPattern('x.jsonl', '*.json')).toBe(false);
    expect(matchesPattern('original/consolidated.pth', 'original/**')).toBe(true);
    expect(matchesPattern('original/params.json', 'original/')).toBe(true);
    expect(matchesPattern('model-00001-of-00002.safetensors', 'model-0000?-of-*.safetensors')).toBe(true);
    expect(matchesPattern('a.txt', '[ab].txt')).toBe(true);
    expect(matchesPattern('c.txt', '[!ab].txt')).toBe(true);
    expect(matchesPattern('a.txt', '[!ab].txt')).toBe(false);
    expect(matchesPattern('a+b(1).json', 'a+b(1).json')).toBe(true);
    expect(matchesPattern('axjson', 'a.json')).toBe(false);
  });
});

describe('isSelected', () => {
  it('takes what a model needs by default', () => {
    for (const f of [
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'model-00001-of-00002.safetensors',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer.model',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'merges.txt',
      'vocab.json',
      'qwen.tiktoken',
      'chat_template.jinja',
    ]) {
      expect(isSelected(f), f).toBe(true);
    }
  });

  it('skips other formats, docs and original/ by default', () => {
    for (const f of [
      'pytorch_model.bin',
      'model.pt',
      'model.gguf',
      'flax_model.msgpack',
      'tf_model.h5',
      'onnx/model.onnx',
      'README.md',
      '.gitattributes',
      'original/params.json',
      'original/tokenizer.model',
    ]) {
      expect(isSelected(f), f).toBe(false);
    }
  });

  it('gives explicit allowPatterns what they ask, with no default ignores', () => {
    expect(isSelected('pytorch_model.bin', { allowPatterns: ['*.bin'] })).toBe(true);
    expect(isSelected('original/params.json', { allowPatterns: ['*.json'] })).toBe(true);
    expect(
      isSelected('original/params.json', { allowPatterns: ['*.json'], ignorePatterns: ['original/*'] }),
    ).toBe(false);
    expect(isSelected('config.json', { ignorePatterns: ['config.json'] })).toBe(false);
  });
});
