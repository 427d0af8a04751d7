import { ByteFallbackDecoder, type Decoder, SequenceDecoder } from '@huggingface/tokenizers';

/**
 * Fixes applied to a decoder built by `@huggingface/tokenizers`:
 * - `ByteFallback` decodes byte groups with a `TextDecoder` that strips a leading U+FEFF (BOM); the Rust library
 *   keeps it. Use one with `ignoreBOM: true` (as the library's own `ByteLevel` decoder does).
 */
export function fixDecoder(decoder: Decoder | null): void {
  if (decoder instanceof ByteFallbackDecoder) {
    decoder.text_decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  } else if (decoder instanceof SequenceDecoder) {
    for (const d of decoder.decoders) fixDecoder(d);
  }
}
