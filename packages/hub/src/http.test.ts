import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntryNotFoundError, HubConnectionError, RepoNotFoundError } from './errors';
import { createHubFetch } from './http';
import { type FakeHub, startFakeHub } from './testing';

let hub: FakeHub;
let other: FakeHub;
beforeAll(async () => {
  hub = await startFakeHub({ tokens: ['tok'] });
  other = await startFakeHub({ tokens: ['tok'] });
});
afterAll(async () => {
  await hub.close();
  await other.close();
});

const ctx = () => ({ endpoint: hub.url, repo: 'acme/tiny', revision: 'main', token: 'tok' });

describe('createHubFetch', () => {
  it('adds the token for the Hub origin only', async () => {
    const f = createHubFetch(ctx());
    await (await f(`${hub.url}/api/models/acme/tiny`)).text();
    await (await f(`${other.url}/api/models/acme/tiny`)).text().catch(() => {});
    expect(hub.requests.at(-1)?.authorization).toBe('Bearer tok');
    expect(other.requests.at(-1)?.authorization).toBeUndefined();
  });

  it('maps EntryNotFound and RepoNotFound', async () => {
    const f = createHubFetch({ ...ctx(), token: undefined });
    const missing = await f(`${hub.url}/acme/tiny/resolve/main/sub/no%20such.json`).catch((e) => e);
    expect(missing).toBeInstanceOf(EntryNotFoundError);
    expect(missing.message).toMatch(
      /File "sub\/no such\.json" not found in "acme\/tiny" at revision main \(HTTP 404 EntryNotFound/,
    );
    expect(missing.file).toBe('sub/no such.json');
    const repo = await f(`${hub.url}/api/models/acme/none`).catch((e) => e);
    expect(repo).toBeInstanceOf(RepoNotFoundError);
  });

  it('turns network failures into HubConnectionError naming the cause', async () => {
    const dead = await startFakeHub();
    await dead.close();
    const f = createHubFetch({ ...ctx(), endpoint: dead.url });
    const err = await f(`${dead.url}/api/models/acme/tiny`).catch((e) => e);
    expect(err).toBeInstanceOf(HubConnectionError);
    expect(err.message).toMatch(
      /Could not reach the Hugging Face Hub at http:\/\/127\.0\.0\.1:\d+: fetch failed: .*ECONNREFUSED/,
    );
  });

  it('passes an aborted signal through as is', async () => {
    const ac = new AbortController();
    ac.abort();
    const f = createHubFetch({ ...ctx(), signal: ac.signal });
    const err = await f(`${hub.url}/api/models/acme/tiny`).catch((e) => e);
    expect(err).not.toBeInstanceOf(HubConnectionError);
    expect(err.name).toBe('AbortError');
  });
});
