import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubError, ModelIdError } from './errors';
import { downloadGgufFile, parseGgufRef, pickGgufFile } from './gguf';
import { type FakeHub, startFakeHub } from './testing';

describe('GGUF references', () => {
  it('parses a quant tag or a file path, with an optional revision', () => {
    expect(parseGgufRef('bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M')).toEqual({
      repo: 'bartowski/Llama-3.2-1B-Instruct-GGUF',
      quant: 'Q4_K_M',
    });
    expect(parseGgufRef('acme/m@v2:q8_0')).toEqual({ repo: 'acme/m', revision: 'v2', quant: 'q8_0' });
    expect(parseGgufRef('acme/m/sub/model-Q4_0.gguf')).toEqual({
      repo: 'acme/m',
      file: 'sub/model-Q4_0.gguf',
    });
    expect(parseGgufRef('acme/m@main/model.GGUF')).toEqual({
      repo: 'acme/m',
      revision: 'main',
      file: 'model.GGUF',
    });
    for (const bad of [
      'acme/m',
      'acme:Q4',
      'model.gguf',
      './x/y/z.gguf',
      'acme/m/../x.gguf',
      'acme/m:',
      'C:\\m\\x.gguf',
    ])
      expect(parseGgufRef(bad), bad).toBeNull();
  });

  it('picks the one file of a quant tag, and says which exist otherwise', () => {
    const files = [
      'README.md',
      'Model-Q4_K_M.gguf',
      'Model-Q4_K_S.gguf',
      'Model-Q8_0.gguf',
      'mmproj-Model-Q8_0.gguf',
      'big/Model-Q6_K-00001-of-00002.gguf',
      'big/Model-Q6_K-00002-of-00002.gguf',
      'Model-f16.gguf',
    ];
    const ref = { repo: 'acme/m' };
    expect(pickGgufFile(files, { ...ref, quant: 'q4_k_m' })).toBe('Model-Q4_K_M.gguf');
    expect(pickGgufFile(files, { ...ref, quant: 'Q8_0' })).toBe('Model-Q8_0.gguf');
    expect(pickGgufFile(files, { ...ref, quant: 'F16' })).toBe('Model-f16.gguf');
    expect(pickGgufFile(files, { ...ref, file: 'Model-Q4_K_S.gguf' })).toBe('Model-Q4_K_S.gguf');
    expect(() => pickGgufFile(files, { ...ref, quant: 'Q4' })).toThrow(
      /no GGUF file for quant "Q4".*Model-Q4_K_M\.gguf/,
    );
    expect(() => pickGgufFile(files, { ...ref, quant: 'Q6_K' })).toThrow(/split GGUF model/);
    expect(() => pickGgufFile(files, { ...ref, file: 'nope.gguf' })).toThrow(HubError);
    expect(() => pickGgufFile(['a-Q4_0.gguf', 'b-Q4_0.gguf'], { ...ref, quant: 'Q4_0' })).toThrow(
      /2 GGUF files for quant "Q4_0" \(a-Q4_0\.gguf, b-Q4_0\.gguf\)/,
    );
  });
});

describe('downloadGgufFile against a local fake hub', () => {
  let hub: FakeHub;
  let tmp: string;
  let env: Record<string, string>;
  const q4 = new Uint8Array(3000).fill(4);
  const q8 = new Uint8Array(5000).fill(8);
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'mnemo-hub-gguf-'));
    hub = await startFakeHub({
      repos: [
        {
          id: 'acme/tiny-GGUF',
          files: [
            { path: 'README.md', content: '# tiny' },
            { path: 'tiny-Q4_K_M.gguf', content: q4, lfs: true },
            { path: 'tiny-Q8_0.gguf', content: q8, lfs: true },
          ],
        },
      ],
    });
    env = { HF_HOME: tmp, HF_ENDPOINT: hub.url };
  });
  afterAll(async () => {
    await hub.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('downloads only the file a quant tag names, then finds it offline', async () => {
    const r = await downloadGgufFile('acme/tiny-GGUF:Q4_K_M', { env });
    expect(r.file).toBe('tiny-Q4_K_M.gguf');
    expect(r.downloaded).toEqual(['tiny-Q4_K_M.gguf']);
    expect(new Uint8Array(await readFile(r.path))).toEqual(q4);
    const fetched = hub.contentRequests().map((q) => q.file ?? q.url);
    expect(fetched.some((p) => p.includes('Q8_0'))).toBe(false);
    const offline = await downloadGgufFile('acme/tiny-GGUF:q4_k_m', { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(offline.path).toBe(r.path);
    expect(offline.fromCache).toBe(true);
    await expect(
      downloadGgufFile('acme/tiny-GGUF:Q8_0', { env: { ...env, HF_HUB_OFFLINE: '1' } }),
    ).rejects.toThrow(/no GGUF file for quant "Q8_0"/);
  });

  it('downloads a file named by its path, and names the files when the quant is not there', async () => {
    const r = await downloadGgufFile('acme/tiny-GGUF/tiny-Q8_0.gguf', { env });
    expect(new Uint8Array(await readFile(r.path))).toEqual(q8);
    await expect(downloadGgufFile('acme/tiny-GGUF:Q5_K_M', { env })).rejects.toThrow(
      /no GGUF file for quant "Q5_K_M"; its GGUF files: tiny-Q4_K_M\.gguf, tiny-Q8_0\.gguf/,
    );
    await expect(downloadGgufFile('acme/tiny-GGUF', { env })).rejects.toBeInstanceOf(ModelIdError);
  });
});
