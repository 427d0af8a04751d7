import { inspectPromptCache, summarizeCache } from '@mnemo/kv-cache';
import type { Command } from 'commander';
import { action } from '../errors';

interface InspectFlags {
  json?: boolean;
}

export function registerInspectCache(program: Command): void {
  program
    .command('inspect-cache')
    .description('show a prompt cache file’s metadata and whether it is valid')
    .argument('<file>', 'prompt cache file')
    .option('--json', 'print one JSON object')
    .action(
      action(async (file: string, f: InspectFlags) => {
        const r = await inspectPromptCache(file);
        const info = r.info;
        if (f.json) {
          process.stdout.write(
            `${JSON.stringify({
              file,
              size: r.fileSize,
              valid: r.valid,
              error: r.error ?? null,
              format: info?.format ?? r.metadata.format ?? null,
              format_version: info?.formatVersion ?? r.metadata.format_version ?? null,
              mnemo_version: info?.mnemoVersion ?? null,
              model: info?.model ?? null,
              model_fingerprint: info?.modelFingerprint ?? null,
              tokenizer_fingerprint: info?.tokenizerFingerprint ?? null,
              cached_tokens: info?.tokens.length ?? null,
              tokens: info?.tokens ?? null,
              prompt: info?.prompt ?? null,
              chat_template: info?.chatTemplate ?? null,
              cache: info?.cache ?? null,
              created_at: info?.createdAt ?? null,
            })}\n`,
          );
        } else {
          const lines = [`file: ${file} (${r.fileSize} bytes)`];
          if (info) {
            lines.push(
              `format: ${info.format} v${info.formatVersion} (written by mnemo ${info.mnemoVersion} at ${info.createdAt})`,
              `model: ${info.model || '(not recorded)'}`,
              `model fingerprint: ${info.modelFingerprint}`,
              `tokenizer fingerprint: ${info.tokenizerFingerprint}`,
              `cache: ${info.cache.nLayers} layers: ${summarizeCache(info.cache)}`,
              `cached tokens: ${info.tokens.length}`,
              `prompt: ${JSON.stringify(info.prompt.length > 200 ? `${info.prompt.slice(0, 200)}…` : info.prompt)}`,
              `chat template: ${info.chatTemplate || '(none)'}`,
            );
          } else if (Object.keys(r.metadata).length > 0) {
            lines.push(`metadata keys: ${Object.keys(r.metadata).join(', ')}`);
          }
          lines.push(
            r.valid ? 'verdict: valid' : `verdict: INVALID — ${r.error?.message ?? 'unknown reason'}`,
          );
          process.stdout.write(`${lines.join('\n')}\n`);
        }
        if (!r.valid) process.exitCode = 1;
      }),
    );
}
