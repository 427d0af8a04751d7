import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Backend, createBackend } from '@mnemo/tensor';
import { compareWithReference, type ReferenceCase, syntheticGguf } from '@mnemo/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hfTensorName } from './gguf';
import { type LoadedModel, loadModel } from './load';
import { loadNativeBackend } from './native';
import { greedy, teacherForced } from './testing/greedy';

const dir = syntheticGguf();

/** The weight fixtures: one per GGML type, the Q4_K_M-style mix and the qwen2 file with a tied Q8_0 head. */
const MODEL_FILES = [
  'llama-q4_0',
  'llama-q4_1',
  'llama-q5_0',
  'llama-q5_1',
  'llama-q8_0',
  'llama-q2_k',
  'llama-q3_k',
  'llama-q4_k',
  'llama-q5_k',
  'llama-q6_k',
  'llama-q4_k_m',
  'qwen2-q8_0',
];

interface LlamaCppPosition {
  readonly pos: number;
  readonly forced: number;
  readonly forced_logprob: number;
  readonly top: ReadonlyArray<readonly [number, number]>;
}

interface Expected {
  readonly config: Record<string, unknown>;
  readonly tensor_types: Record<string, string>;
  readonly cases: readonly (ReferenceCase & {
    readonly llamacpp: { readonly positions: readonly LlamaCppPosition[] };
  })[];
}

/** Accuracy of one file, printed as a table after the run (for the record). */
const accuracy: string[] = [];
afterAll(() => {
  if (accuracy.length > 0) process.stdout.write(`\n${accuracy.join('\n')}\n`);
});

describe('GGUF tensor names', () => {
  it('maps llama.cpp names to Hugging Face ones', () => {
    expect(hfTensorName('token_embd.weight', 'llama')).toBe('model.embed_tokens.weight');
    expect(hfTensorName('output_norm.weight', 'llama')).toBe('model.norm.weight');
    expect(hfTensorName('output.weight', 'llama')).toBe('lm_head.weight');
    expect(hfTensorName('blk.11.attn_q.bias', 'qwen2')).toBe('model.layers.11.self_attn.q_proj.bias');
    expect(hfTensorName('blk.0.ffn_norm.weight', 'llama')).toBe(
      'model.layers.0.post_attention_layernorm.weight',
    );
    expect(hfTensorName('blk.0.attn_k_norm.weight', 'qwen3')).toBe('model.layers.0.self_attn.k_norm.weight');
    expect(hfTensorName('blk.3.ffn_up.weight', 'phi3')).toBe('model.layers.3.mlp.gate_up_proj.weight');
    expect(hfTensorName('blk.3.ffn_up.weight', 'llama')).toBe('model.layers.3.mlp.up_proj.weight');
    expect(hfTensorName('blk.3.attn_qkv.weight', 'phi3')).toBe('model.layers.3.self_attn.qkv_proj.weight');
    expect(hfTensorName('blk.0.something_new.weight', 'llama')).toBe('blk.0.something_new.weight');
  });
});

// Both compute backends: WASM (its GGML block kernels) and native (the blocks decoded into its affine panels).
for (const backendName of ['wasm', 'native'] as const) {
  describe(`GGUF weight fixtures on the exact path (${backendName} backend) against float64`, () => {
    let backend: Backend;
    beforeAll(async () => {
      await loadNativeBackend();
      backend = await createBackend({ backend: backendName, threads: backendName === 'wasm' ? 1 : 2 });
    });
    afterAll(() => backend?.dispose());

    for (const name of MODEL_FILES) {
      it(`${name}: config from the metadata, every greedy token within 2e-3 of the oracle`, async () => {
        const expected = JSON.parse(readFileSync(join(dir, `${name}.expected.json`), 'utf8')) as Expected;
        const loaded: LoadedModel = await loadModel(join(dir, `${name}.gguf`), { backend });
        try {
          const c = loaded.config;
          const want = expected.config;
          for (const key of [
            'model_type',
            'vocab_size',
            'hidden_size',
            'intermediate_size',
            'num_hidden_layers',
            'num_attention_heads',
            'num_key_value_heads',
            'tie_word_embeddings',
          ])
            expect(c[key], key).toBe(want[key]);
          expect(c.rope_theta).toBe(want.rope_theta);
          expect(Math.abs((c.rms_norm_eps as number) - (want.rms_norm_eps as number))).toBeLessThan(1e-9);
          expect(loaded.gguf?.tensorTypes).toEqual(expected.tensor_types);
          let steps = 0;
          let worst = 0;
          for (const [i, kase] of expected.cases.entries()) {
            const r = greedy(backend, loaded.model, kase.prompt_tokens, kase.steps.length);
            const { problems, compared } = compareWithReference(kase, r);
            expect(problems, `case ${i}`).toEqual([]);
            expect(compared).toBeGreaterThan(0);
            steps += compared;
          }
          // Teacher-forced over the oracle's greedy tokens: every reference top-5 logprob at every step.
          for (const kase of expected.cases) {
            const ids = [...kase.prompt_tokens, ...kase.steps.map((s) => s.token)];
            const lps = teacherForced(backend, loaded.model, ids);
            kase.steps.forEach((step, k) => {
              const lp = lps[kase.prompt_tokens.length - 1 + k]!;
              for (const [id, want] of step.top) worst = Math.max(worst, Math.abs(lp[id]! - want));
            });
          }
          accuracy.push(
            `${backendName} ${name}: ${steps} greedy steps match; max |Δlogprob| over the reference top-5, teacher-forced: ${worst.toExponential(2)}`,
          );
          expect(worst).toBeLessThan(2e-3);
        } finally {
          loaded.model.free();
        }
      });
    }
  });

  describe(`GGUF weight fixtures with int8 activations (${backendName} backend), teacher-forced, against llama.cpp`, () => {
    let backend: Backend;
    beforeAll(async () => {
      await loadNativeBackend();
      backend = await createBackend({
        backend: backendName,
        threads: backendName === 'wasm' ? 1 : 2,
        int8Activations: true,
      });
    });
    afterAll(() => backend?.dispose());

    for (const name of MODEL_FILES) {
      it(`${name}: distributions within llama.cpp's own distance from the oracle`, async () => {
        const expected = JSON.parse(readFileSync(join(dir, `${name}.expected.json`), 'utf8')) as Expected;
        const loaded = await loadModel(join(dir, `${name}.gguf`), { backend });
        try {
          let vsPeer = 0;
          let vsPeerTop1 = 0;
          let vsOracle = 0;
          let peerVsOracle = 0;
          let agree = 0;
          let positions = 0;
          for (const kase of expected.cases) {
            // llama.cpp was teacher-forced over the oracle's first 16 greedy tokens
            const ids = [...kase.prompt_tokens, ...kase.steps.slice(0, 16).map((s) => s.token)];
            const lps = teacherForced(backend, loaded.model, ids);
            kase.steps.slice(0, 16).forEach((step, k) => {
              const lp = lps[kase.prompt_tokens.length - 1 + k]!;
              for (const [id, want] of step.top) vsOracle = Math.max(vsOracle, Math.abs(lp[id]! - want));
            });
            for (const p of kase.llamacpp.positions) {
              const lp = lps[p.pos]!;
              positions++;
              for (const [id, want] of [...p.top, [p.forced, p.forced_logprob] as const])
                vsPeer = Math.max(vsPeer, Math.abs(lp[id]! - want));
              vsPeerTop1 = Math.max(vsPeerTop1, Math.abs(lp[p.top[0]![0]]! - p.top[0]![1]));
              let best = 0;
              for (let i = 1; i < lp.length; i++) if (lp[i]! > lp[best]!) best = i;
              if (best === p.top[0]![0]) agree++;
              const oracle = kase.steps[p.pos - (kase.prompt_tokens.length - 1)];
              if (oracle)
                for (const [id, want] of oracle.top) {
                  const peer = p.top.find(([i]) => i === id);
                  if (peer) peerVsOracle = Math.max(peerVsOracle, Math.abs(peer[1] - want));
                }
            }
          }
          accuracy.push(
            `${backendName} ${name} int8: vs llama.cpp top5+forced ${vsPeer.toFixed(3)}, top1 ${vsPeerTop1.toFixed(3)}, argmax ${agree}/${positions}; vs oracle top5 ${vsOracle.toFixed(3)} (llama.cpp vs oracle ${peerVsOracle.toFixed(3)})`,
          );
          // Rounding activations to 8 bits moves logprobs by llama.cpp's own amount (0.1–0.7 on these random models):
          // no farther from the float64 oracle than llama.cpp is (blocks of 32 even for the K-quants, where llama.cpp
          // rounds per 256), and within the two roundings' distance of llama.cpp. A decoder bug moves them by nats.
          expect(vsOracle).toBeLessThan(1.5 * peerVsOracle + 0.05);
          expect(vsPeer).toBeLessThan(2 * peerVsOracle + 0.1);
          // (each backend's f32 order differs, and a rounding to 8 bits near a half step amplifies that: the native
          // and WASM backends land on either side of 0.4 for Q6_K, both within llama.cpp's own distance)
          expect(vsPeerTop1).toBeLessThan(Math.max(0.4, peerVsOracle));
          expect(agree).toBeGreaterThanOrEqual(positions - 8);
        } finally {
          loaded.model.free();
        }
      });
    }
  });
}
