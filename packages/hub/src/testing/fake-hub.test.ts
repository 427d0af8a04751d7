import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeHub, gitBlobSha1, sha256Hex, startFakeHub, tinyRepo, tinySafetensors } from './fake-hub';

let hub: FakeHub;
beforeAll(async () => {
  hub = await startFakeHub({ treePageSize: 3 });
});
afterAll(async () => {
  await hub.close();
});

describe('fake hub routes', () => {
  it('serves model info with the commit sha', async () => {
    const res = await fetch(`${hub.url}/api/models/acme/tiny/revision/main?expand=sha`);
    const info = (await res.json()) as { sha: string; id: string };
    expect(info).toMatchObject({ id: 'acme/tiny', sha: hub.sha('acme/tiny') });
  });

  it('pages the tree, with sizes, oids and lfs', async () => {
    type Entry = {
      type: string;
      path: string;
      size: number;
      oid: string;
      lfs?: { oid: string; size: number };
    };
    const all: Entry[] = [];
    let url: string | undefined = `${hub.url}/api/models/acme/tiny/tree/main?recursive=true&expand=false`;
    while (url) {
      const res: Response = await fetch(url);
      all.push(...((await res.json()) as Entry[]));
      url = /<([^>]+)>; rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    }
    expect(all.map((e) => e.path)).toContain('original');
    const weights = all.find((e) => e.path === 'model.safetensors')!;
    const bytes = hub.file('acme/tiny', 'model.safetensors');
    expect(weights.lfs).toMatchObject({ oid: sha256Hex(bytes), size: bytes.length });
    const config = all.find((e) => e.path === 'config.json')!;
    expect(config.oid).toBe(gitBlobSha1(hub.file('acme/tiny', 'config.json')));
    expect(config.lfs).toBeUndefined();
  });

  it('answers the Range probe with 206 + Content-Range + ETag, and redirects LFS files', async () => {
    const probe = await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`, {
      headers: { range: 'bytes=0-0' },
    });
    expect(probe.status).toBe(206);
    expect(probe.headers.get('content-range')).toBe(
      `bytes 0-0/${hub.file('acme/tiny', 'config.json').length}`,
    );
    expect(probe.headers.get('etag')).toBe(`"${gitBlobSha1(hub.file('acme/tiny', 'config.json'))}"`);
    const redirect = await fetch(`${hub.url}/acme/tiny/resolve/main/model.safetensors`, {
      redirect: 'manual',
    });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('x-linked-etag')).toBe(
      `"${sha256Hex(hub.file('acme/tiny', 'model.safetensors'))}"`,
    );
    const body = await fetch(`${hub.url}/acme/tiny/resolve/main/model.safetensors`);
    expect(new Uint8Array(await body.arrayBuffer())).toEqual(hub.file('acme/tiny', 'model.safetensors'));
  });

  it('holds a dropAfterBytes connection after its bytes until dropHeld()', async () => {
    hub.fault('config.json', { dropAfterBytes: 10, times: 1 });
    try {
      const res = await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`);
      const reader = res.body!.getReader();
      let got = 0;
      while (got < 10) {
        const chunk = await reader.read();
        expect(chunk.done).toBe(false);
        got += chunk.value!.length;
      }
      expect(got).toBe(10);
      expect(hub.dropHeld()).toBe(1);
      await expect(reader.read()).rejects.toThrow();
      expect(hub.dropHeld()).toBe(0);
    } finally {
      hub.clearFaults();
    }
  });

  it('gives Hub error codes', async () => {
    const entry = await fetch(`${hub.url}/acme/tiny/resolve/main/nope.json`);
    expect([entry.status, entry.headers.get('x-error-code')]).toEqual([404, 'EntryNotFound']);
    const rev = await fetch(`${hub.url}/api/models/acme/tiny/revision/nope`);
    expect([rev.status, rev.headers.get('x-error-code')]).toEqual([404, 'RevisionNotFound']);
    const repo = await fetch(`${hub.url}/api/models/acme/none`);
    expect([repo.status, repo.headers.get('x-error-code')]).toEqual([401, 'RepoNotFound']);
    const range = await fetch(`${hub.url}/acme/tiny/resolve/main/config.json`, {
      headers: { range: 'bytes=99999-' },
    });
    expect(range.status).toBe(416);
  });

  it('serves paths-info with lastCommit', async () => {
    const res = await fetch(`${hub.url}/api/models/acme/tiny/paths-info/main`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ paths: ['config.json'], expand: true }),
    });
    const [entry] = (await res.json()) as { path: string; lastCommit: { id: string } }[];
    expect(entry).toMatchObject({ path: 'config.json', lastCommit: { id: hub.sha('acme/tiny') } });
  });

  it('builds a valid safetensors file for the tiny repo', () => {
    const st = tinySafetensors(4);
    const n = Number(new DataView(st.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(st.subarray(8, 8 + n)));
    expect(header.w).toEqual({ dtype: 'F32', shape: [4], data_offsets: [0, 16] });
    expect(st.length).toBe(8 + n + 16);
    expect(tinyRepo().files.map((f) => f.path)).toContain('pytorch_model.bin');
  });
});
