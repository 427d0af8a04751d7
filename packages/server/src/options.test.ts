import { describe, expect, it } from 'vitest';
import { defaultCacheRoot, parseBytes, resolveOptions } from './options';

describe('options', () => {
  it('default to loopback, the user cache folder and bounded limits', () => {
    const o = resolveOptions({ model: '/models/Llama-3.2-1B/' });
    expect(o.host).toBe('127.0.0.1');
    expect(o.modelId).toBe('Llama-3.2-1B');
    expect(o.cacheDir).toBe(`${defaultCacheRoot()}/prompt-caches`);
    expect(o.maxQueue).toBe(64);
    expect(o.maxBodyBytes).toBe(4 << 20);
  });

  it('follow XDG_CACHE_HOME', () => {
    expect(defaultCacheRoot({ XDG_CACHE_HOME: '/var/cache/me' })).toBe('/var/cache/me/mnemo');
    expect(defaultCacheRoot({ XDG_CACHE_HOME: 'relative' })).toMatch(/\/\.cache\/mnemo$/); // not absolute: ignored
  });

  it('refuse what cannot be used, naming it', () => {
    expect(() => resolveOptions({ model: '' })).toThrow(/model/);
    expect(() => resolveOptions({ model: 'm', port: 70000 })).toThrow(
      /port must be an integer from 0 to 65535/,
    );
    expect(() => resolveOptions({ model: 'm', cacheRedis: 'http://x' })).toThrow(/redis:\/\//);
    expect(() => resolveOptions({ model: 'm', apiKey: '' })).toThrow(/apiKey/);
    expect(() => resolveOptions({ model: 'm', logLevel: 'loud' })).toThrow(/logLevel/);
  });

  it('parse sizes', () => {
    expect(parseBytes('512m')).toBe(512 << 20);
    expect(parseBytes('10G')).toBe(10 * 2 ** 30);
    expect(parseBytes('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('4096')).toBe(4096);
    expect(() => parseBytes('lots')).toThrow(/not a size/);
  });
});
