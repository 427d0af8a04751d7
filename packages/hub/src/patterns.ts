/**
 * Which files of a repo to fetch. Patterns are matched against the whole repo path with `fnmatch` rules, like the
 * `allow_patterns` / `ignore_patterns` of `huggingface_hub`: `*` matches any run of characters, `/` included (so
 * `*.json` also matches `sub/x.json`; `**` means the same), `?` one character, `[abc]` / `[!abc]` a set. A
 * pattern ending in `/` matches everything under that folder.
 */

/** What a model needs to run: config, safetensors weights, tokenizer files and chat templates. */
export const DEFAULT_ALLOW_PATTERNS: readonly string[] = [
  '*.json',
  '*.safetensors',
  'tokenizer.model',
  '*.tiktoken',
  '*.txt',
  '*.jinja',
];

/** Other weight formats and the `original/` checkpoint some repos carry; skipped unless asked for. */
export const DEFAULT_IGNORE_PATTERNS: readonly string[] = [
  '*.bin',
  '*.pt',
  '*.pth',
  '*.gguf',
  '*.msgpack',
  '*.h5',
  '*.onnx',
  '*.ot',
  'original/**',
];

const cache = new Map<string, RegExp>();

function toRegExp(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re) return re;
  const p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let src = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') src += '.*';
    else if (c === '?') src += '.';
    else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) src += '\\[';
      else {
        let set = p.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        src += `[${set}]`;
        i = end;
      }
    } else src += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  re = new RegExp(`^${src}$`, 's');
  cache.set(pattern, re);
  return re;
}

/** Whether `path` matches one `fnmatch` pattern. */
export function matchesPattern(path: string, pattern: string): boolean {
  return toRegExp(pattern).test(path);
}

export interface FileSelection {
  /** Patterns a file must match (any of them). Default: `DEFAULT_ALLOW_PATTERNS`. */
  allowPatterns?: readonly string[];
  /**
   * Patterns that exclude a file (any of them). Default: `DEFAULT_IGNORE_PATTERNS` when `allowPatterns` is not
   * given, none when it is (asking for `*.bin` or `original/**` explicitly gets them).
   */
  ignorePatterns?: readonly string[];
}

/** Whether a repo path is selected by `allowPatterns` and not excluded by `ignorePatterns`. */
export function isSelected(path: string, selection: FileSelection = {}): boolean {
  const allow = selection.allowPatterns ?? DEFAULT_ALLOW_PATTERNS;
  const ignore = selection.ignorePatterns ?? (selection.allowPatterns ? [] : DEFAULT_IGNORE_PATTERNS);
  return allow.some((p) => matchesPattern(path, p)) && !ignore.some((p) => matchesPattern(path, p));
}
