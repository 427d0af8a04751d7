#!/usr/bin/env node
// A checkpoint larger than one wasm32 instance (4 GiB) loads and runs when its weights are sharded over threads.
//
// Writes a synthetic Llama checkpoint in f16 (hidden 4096, 32/8 heads, MLP 14336, vocab 32000; 10 layers: about
// 4.9 GB / 4.55 GiB, random weights), then with @mnemo/models' `loadModel(dir, { backend })`:
//   1. threads = 1: loading must fail with a WasmCapacityError that names the thread count needed;
//   2. threads = 2: loads, prefills a short prompt and decodes a few tokens greedily; prints memory per instance;
//   3. (--verify) threads = 3: the same tokens and bit-identical logits.
// The checkpoint is deleted afterwards unless --keep. Needs about 5 GB of disk and 6 GB of RAM per run.
//
// Usage (after building the packages it imports):
//   pnpm turbo run build --filter=@mnemo/models --filter=@mnemo/kv-cache --filter=@mnemo/tensor
//   node packages/tensor/scripts/large-model.mjs [--dir /tmp/mnemo-large] [--layers 10] [--tokens 4] [--verify] [--keep]
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createWasmBackend, f32ToF16, WasmCapacityError } from '../dist/index.js';

const { makeCaches } = await import(new URL('../../kv-cache/dist/index.js', import.meta.url).href);
const { loadModel } = await import(new URL('../../models/dist/index.js', import.meta.url).href);

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: join(tmpdir(), 'mnemo-large-model') },
    layers: { type: 'string', default: '10' },
    tokens: { type: 'string', default: '4' },
    verify: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'skip-one': { type: 'boolean', default: false },
  },
});

const GiB = 2 ** 30;
const fmt = (n) => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);
const log = (s) => process.stdout.write(`${s}\n`);

const cfg = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: Number(values.layers),
  num_attention_heads: 32,
  num_key_value_heads: 8,
  hidden_act: 'silu',
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  max_position_embeddings: 4096,
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  bos_token_id: 1,
  eos_token_id: 2,
};

/** Tensor names and shapes in file order. */
function tensors() {
  const h = cfg.hidden_size;
  const kv = (h / cfg.num_attention_heads) * cfg.num_key_value_heads;
  const f = cfg.intermediate_size;
  const out = [['model.embed_tokens.weight', [cfg.vocab_size, h]]];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [h]],
      [`${p}.self_attn.q_proj.weight`, [h, h]],
      [`${p}.self_attn.k_proj.weight`, [kv, h]],
      [`${p}.self_attn.v_proj.weight`, [kv, h]],
      [`${p}.self_attn.o_proj.weight`, [h, h]],
      [`${p}.post_attention_layernorm.weight`, [h]],
      [`${p}.mlp.gate_proj.weight`, [f, h]],
      [`${p}.mlp.up_proj.weight`, [f, h]],
      [`${p}.mlp.down_proj.weight`, [h, f]],
    );
  }
  out.push(['model.norm.weight', [h]], ['lm_head.weight', [cfg.vocab_size, h]]);
  return out;
}

/** Writes the checkpoint as safetensors shards of at most ~2 GB plus an index; returns the weight bytes. */
function writeCheckpoint(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  // A pool of random f16 values (uniform ±0.03: activations stay tame through the layers); each tensor reads it from
  // its own offset. Norm weights are 1.
  const poolLen = (32 << 20) + 4096;
  const pool = new Float32Array(poolLen);
  let s = 12345;
  for (let i = 0; i < poolLen; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pool[i] = (s / 2 ** 31 - 1) * 0.03;
  }
  const poolBytes = new Uint8Array(f32ToF16(pool).buffer);
  const ones = new Uint8Array(f32ToF16(new Float32Array(cfg.hidden_size).fill(1)).buffer);
  const list = tensors();
  const shards = [];
  let cur = [];
  let curBytes = 0;
  for (const [name, shape] of list) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    if (curBytes + bytes > 2e9 && cur.length) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push([name, shape, bytes]);
    curBytes += bytes;
  }
  shards.push(cur);
  const weightMap = {};
  let total = 0;
  shards.forEach((items, si) => {
    const file = `model-${String(si + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const header = {};
    let off = 0;
    for (const [name, shape, bytes] of items) {
      header[name] = { dtype: 'F16', shape, data_offsets: [off, off + bytes] };
      off += bytes;
      weightMap[name] = file;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
    const fd = openSync(join(dir, file), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    let k = 0;
    for (const [, shape, bytes] of items) {
      if (shape.length === 1) writeSync(fd, ones);
      else {
        let left = bytes;
        let at = ((k++ * 7919) % 4096) * 2;
        while (left > 0) {
          const n = Math.min(left, poolBytes.length - at);
          writeSync(fd, poolBytes, at, n);
          left -= n;
          at = 0;
        }
      }
      total += bytes;
    }
    closeSync(fd);
  });
  writeFileSync(
    join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }),
  );
  return total;
}

function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Loads with `threads` threads, prefills, decodes; returns tokens and a hash of every logits row. */
async function run(threads) {
  const backend = await createWasmBackend({ threads });
  try {
    let t0 = performance.now();
    const { model } = await loadModel(values.dir, { backend });
    log(`  threads ${threads}: loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    for (const m of backend.instanceMemory())
      log(
        `    instance ${m.instance} (${m.instance === 0 ? 'calling thread' : `worker ${m.instance}`}): ` +
          `${fmt(m.weightBytes)} of weights, ${fmt(m.allocatedBytes)} allocated, memory ${fmt(m.memoryBytes)}`,
      );
    const caches = makeCaches(model.numLayers, { backend, ...model.cacheShape });
    const hash = createHash('sha256');
    const logits = new Float32Array(model.vocabSize);
    const prompt = Int32Array.from([1, 450, 4996, 17354, 1701]);
    t0 = performance.now();
    backend.read(model.forward(prompt, caches), logits);
    const prefill = performance.now() - t0;
    hash.update(new Uint8Array(logits.buffer));
    const tokens = [argmax(logits)];
    const times = [];
    const one = new Int32Array(1);
    for (let i = 1; i < Number(values.tokens); i++) {
      one[0] = tokens[tokens.length - 1];
      t0 = performance.now();
      backend.read(model.forward(one, caches), logits);
      times.push(performance.now() - t0);
      hash.update(new Uint8Array(logits.buffer));
      tokens.push(argmax(logits));
    }
    const decode = times.length ? times.reduce((a, b) => a + b, 0) / times.length : 0;
    log(
      `    prefill of ${prompt.length} tokens ${prefill.toFixed(0)} ms; decode ${decode.toFixed(0)} ms/token; ` +
        `tokens [${tokens.join(', ')}]`,
    );
    const peak = process.memoryUsage();
    log(`    process rss ${fmt(peak.rss)}, array buffers ${fmt(peak.arrayBuffers)}`);
    for (const c of caches) c.free();
    model.free();
    return { tokens, digest: hash.digest('hex') };
  } finally {
    backend.dispose();
  }
}

const dir = values.dir;
let t = performance.now();
if (!existsSync(join(dir, 'model.safetensors.index.json'))) {
  log(`writing a ${cfg.num_hidden_layers}-layer f16 Llama checkpoint to ${dir} ...`);
  const total = writeCheckpoint(dir);
  log(
    `  ${fmt(total)} of weights (${(total / 1e9).toFixed(2)} GB) in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
} else log(`using the checkpoint in ${dir}`);
try {
  if (!values['skip-one']) {
    log('threads 1 (one wasm32 instance):');
    t = performance.now();
    try {
      await run(1);
      log('  UNEXPECTED: loaded in one instance');
      process.exitCode = 1;
    } catch (e) {
      if (!(e instanceof WasmCapacityError)) throw e;
      log(
        `  refused after ${((performance.now() - t) / 1000).toFixed(1)} s, needing ${e.neededThreads} threads:`,
      );
      log(`  ${e.message}`);
    }
  }
  log('threads 2:');
  const two = await run(2);
  if (values.verify) {
    log('threads 3:');
    const three = await run(3);
    const same = two.digest === three.digest && two.tokens.join() === three.tokens.join();
    log(`  tokens and logits bitwise identical to threads 2: ${same ? 'yes' : 'NO'}`);
    if (!same) process.exitCode = 1;
  }
} finally {
  if (!values.keep) {
    rmSync(dir, { recursive: true, force: true });
    log(`deleted ${dir}`);
  }
}
