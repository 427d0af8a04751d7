import { describe, expect, it } from 'vitest';
import { ConfigReader, readDecoderConfig } from './config';
import { QuantizationConfig } from './quantization';
import { ropeInvFreq } from './rope';

const llama = {
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 100,
};

describe('config parsing', () => {
  it('applies the family defaults', () => {
    const c = readDecoderConfig(new ConfigReader(llama), { rmsNormEps: 1e-6, ropeTheta: 10000 });
    expect(c).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      ropeTraditional: false,
    });
    expect(c.tieWordEmbeddings).toBeUndefined();
  });
  it('names the key at fault', () => {
    expect(() => readDecoderConfig(new ConfigReader({ ...llama, hidden_size: undefined }))).toThrow(
      /missing required key "hidden_size"/,
    );
    expect(() => readDecoderConfig(new ConfigReader({ ...llama, num_key_value_heads: 3 }))).toThrow(
      /multiple of num_key_value_heads/,
    );
    expect(() => readDecoderConfig(new ConfigReader({ ...llama, vocab_size: -1 }))).toThrow(
      /"vocab_size" must be a non-negative integer/,
    );
    expect(() => readDecoderConfig(new ConfigReader({ ...llama, tie_word_embeddings: 'yes' }))).toThrow(
      /tie_word_embeddings/,
    );
  });
});

describe('quantization config', () => {
  it('reads global parameters and per-module overrides', () => {
    const q = QuantizationConfig.parse({
      quantization: {
        group_size: 64,
        bits: 4,
        'model.layers.0.mlp.down_proj': { group_size: 32, bits: 8 },
        lm_head: false,
      },
    })!;
    expect(q.paramsFor('model.layers.1.mlp.down_proj')).toEqual({ bits: 4, groupSize: 64 });
    expect(q.paramsFor('model.layers.0.mlp.down_proj')).toEqual({ bits: 8, groupSize: 32 });
    expect(q.paramsFor('lm_head')).toBe(false);
    expect(QuantizationConfig.parse({})).toBeUndefined();
  });
  it('refuses what MLX does not define', () => {
    expect(() => QuantizationConfig.parse({ quantization: { bits: 7, group_size: 64 } })).toThrow(
      /bits must be one of/,
    );
    expect(() => QuantizationConfig.parse({ quantization: { bits: 4, group_size: 16 } })).toThrow(
      /group_size must be one of/,
    );
    expect(() =>
      QuantizationConfig.parse({ quantization: { bits: 4, group_size: 32, mode: 'mxfp4' } }),
    ).toThrow(/mode "mxfp4"/);
  });
});

describe('rope inverse frequencies', () => {
  it('follows the llama3 scaling rule band by band', () => {
    const scaling = {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    const plain = ropeInvFreq(128, 500000, undefined);
    const scaled = ropeInvFreq(128, 500000, scaling);
    for (let i = 0; i < 64; i++) {
      const wavelen = (2 * Math.PI) / plain[i]!;
      if (wavelen < 8192 / 4) expect(scaled[i]).toBe(plain[i]);
      else if (wavelen > 8192) expect(scaled[i]).toBeCloseTo(plain[i]! / 8, 15);
      else expect(scaled[i]! > plain[i]! / 8 && scaled[i]! < plain[i]!).toBe(true);
    }
  });
  it('refuses unknown scaling types', () => {
    expect(() => ropeInvFreq(64, 10000, { type: 'yarn', factor: 2 })).toThrow(
      /rope_scaling type "yarn" is not supported/,
    );
  });
});
