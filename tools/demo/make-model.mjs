// Writes a deterministic synthetic Llama checkpoint in the Hugging Face layout (config.json, model.safetensors,
// tokenizer.json, tokenizer_config.json with a chat template, generation_config.json). Its weights come from a seeded
// generator, so every run (and every machine) produces the same bytes. The tokenizer is the byte-level one of the
// synthetic fixtures: one token per UTF-8 byte, <s> 256, </s> 257, <|system|> 258, <|user|> 259, <|assistant|> 260.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '@mnemo/safetensors';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, '..', '..', 'fixtures', 'synthetic', 'llama-f32');

export const DEMO_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 264,
  hidden_size: 512,
  intermediate_size: 1536,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 4096,
  tie_word_embeddings: false,
  bos_token_id: 256,
  eos_token_id: 257,
  torch_dtype: 'float32',
};

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Gaussian-ish values (sum of uniforms) with standard deviation `std`. */
function tensor(next, n, std) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() + next() + next() - 1.5) * 2 * std;
  return out;
}

export async function makeDemoModel(dir) {
  if (existsSync(join(dir, 'model.safetensors'))) return dir;
  mkdirSync(dir, { recursive: true });
  const c = DEMO_CONFIG;
  const next = rng(20261127);
  const h = c.hidden_size;
  const hd = h / c.num_attention_heads;
  const kv = c.num_key_value_heads * hd;
  const tensors = [];
  const add = (name, shape, std, ones = false) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = ones ? new Float32Array(n).fill(1) : tensor(next, n, std);
    tensors.push({ name, dtype: 'F32', shape, data: new Uint8Array(data.buffer) });
  };
  add('model.embed_tokens.weight', [c.vocab_size, h], 1);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [h], 0, true);
    add(`${p}.self_attn.q_proj.weight`, [h, h], 1 / Math.sqrt(h));
    add(`${p}.self_attn.k_proj.weight`, [kv, h], 1 / Math.sqrt(h));
    add(`${p}.self_attn.v_proj.weight`, [kv, h], 1 / Math.sqrt(h));
    add(`${p}.self_attn.o_proj.weight`, [h, h], 1 / Math.sqrt(h));
    add(`${p}.post_attention_layernorm.weight`, [h], 0, true);
    add(`${p}.mlp.gate_proj.weight`, [c.intermediate_size, h], 1 / Math.sqrt(h));
    add(`${p}.mlp.up_proj.weight`, [c.intermediate_size, h], 1 / Math.sqrt(h));
    add(`${p}.mlp.down_proj.weight`, [h, c.intermediate_size], 1 / Math.sqrt(c.intermediate_size));
  }
  add('model.norm.weight', [h], 0, true);
  add('lm_head.weight', [c.vocab_size, h], 1 / Math.sqrt(h));
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(c, null, 2)}\n`);
  writeFileSync(
    join(dir, 'generation_config.json'),
    `${JSON.stringify({ bos_token_id: 256, eos_token_id: 257 }, null, 2)}\n`,
  );
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixture, f), join(dir, f));
  return dir;
}
