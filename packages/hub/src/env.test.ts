import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hfHome, hubCacheDir, hubEndpoint, hubToken, isOffline } from './env';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mnemo-hub-env-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('hubCacheDir', () => {
  it('follows huggingface_hub precedence', () => {
    const all = {
      HF_HUB_CACHE: '/a',
      HUGGINGFACE_HUB_CACHE: '/b',
      HF_HOME: '/c',
      XDG_CACHE_HOME: '/d',
    };
    expect(hubCacheDir(all)).toBe('/a');
    expect(hubCacheDir({ ...all, HF_HUB_CACHE: undefined })).toBe('/b');
    expect(hubCacheDir({ HF_HOME: '/c', XDG_CACHE_HOME: '/d' })).toBe('/c/hub');
    expect(hubCacheDir({ XDG_CACHE_HOME: '/d' })).toBe('/d/huggingface/hub');
    expect(hubCacheDir({})).toBe(join(homedir(), '.cache/huggingface/hub'));
    expect(hubCacheDir({ HF_HUB_CACHE: '~/models', HF_HOME: '' })).toBe(join(homedir(), 'models'));
    expect(hubCacheDir({ HF_HUB_CACHE: '', HF_HOME: '/c' })).toBe('/c/hub');
  });

  it('reads process.env by default', () => {
    vi.stubEnv('HF_HUB_CACHE', '/from/process/env');
    try {
      expect(hubCacheDir()).toBe('/from/process/env');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('hubEndpoint, isOffline', () => {
  it('defaults to huggingface.co and drops trailing slashes', () => {
    expect(hubEndpoint({})).toBe('https://huggingface.co');
    expect(hubEndpoint({ HF_ENDPOINT: 'https://hf-mirror.com/' })).toBe('https://hf-mirror.com');
  });

  it('accepts 1/true/yes/on in any case, and TRANSFORMERS_OFFLINE', () => {
    for (const v of ['1', 'true', 'TRUE', 'yes', 'On']) expect(isOffline({ HF_HUB_OFFLINE: v })).toBe(true);
    for (const v of ['0', 'false', '', 'no']) expect(isOffline({ HF_HUB_OFFLINE: v })).toBe(false);
    expect(isOffline({ TRANSFORMERS_OFFLINE: '1' })).toBe(true);
    expect(isOffline({})).toBe(false);
  });
});

describe('hubToken', () => {
  it('prefers HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then the token file', async () => {
    await writeFile(join(tmp, 'token'), 'hf_fromfile\n');
    expect(hubToken({ HF_HOME: tmp, HF_TOKEN: 'hf_env', HUGGING_FACE_HUB_TOKEN: 'hf_old' })).toBe('hf_env');
    expect(hubToken({ HF_HOME: tmp, HUGGING_FACE_HUB_TOKEN: 'hf_old' })).toBe('hf_old');
    expect(hubToken({ HF_HOME: tmp })).toBe('hf_fromfile');
    expect(hfHome({ HF_HOME: tmp })).toBe(tmp);
  });

  it('honours HF_TOKEN_PATH and returns undefined when nothing is set', async () => {
    const path = join(tmp, 'other-token');
    await writeFile(path, '  custom  \n');
    expect(hubToken({ HF_HOME: join(tmp, 'none'), HF_TOKEN_PATH: path })).toBe('custom');
    expect(hubToken({ HF_HOME: join(tmp, 'none') })).toBeUndefined();
    expect(hubToken({ XDG_CACHE_HOME: join(tmp, 'none') })).toBeUndefined();
  });
});
