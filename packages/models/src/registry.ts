import { gemma } from './architectures/gemma';
import { llama } from './architectures/llama';
import { mistral } from './architectures/mistral';
import { phi3 } from './architectures/phi3';
import { qwen2 } from './architectures/qwen2';
import { qwen3 } from './architectures/qwen3';
import { ModelLoadError } from './errors';
import { type ArchitecturePlugin, PLUGIN_API_VERSION } from './model';

/** Architectures by `model_type`. Built-ins register through the same `register` third-party plugins use. */
export class ArchitectureRegistry {
  private readonly byType = new Map<string, ArchitecturePlugin>();

  /** Registers `plugin` for each of its model types; a later registration replaces an earlier one. */
  register(plugin: ArchitecturePlugin): this {
    if (plugin.apiVersion !== PLUGIN_API_VERSION) {
      throw new TypeError(
        `architecture plugin "${plugin.name}" implements plugin API ${String(plugin.apiVersion)}; this mnemo supports ${PLUGIN_API_VERSION}`,
      );
    }
    if (
      !Array.isArray(plugin.modelTypes) ||
      plugin.modelTypes.length === 0 ||
      typeof plugin.create !== 'function'
    ) {
      throw new TypeError(`architecture plugin "${plugin.name}" needs modelTypes and create()`);
    }
    for (const t of plugin.modelTypes) this.byType.set(t, plugin);
    return this;
  }

  has(modelType: string): boolean {
    return this.byType.has(modelType);
  }

  get(modelType: string): ArchitecturePlugin {
    const p = this.byType.get(modelType);
    if (!p) {
      throw new ModelLoadError(
        `unknown model_type "${modelType}" (supported: ${this.modelTypes().join(', ')}; register a plugin for others)`,
      );
    }
    return p;
  }

  modelTypes(): string[] {
    return [...this.byType.keys()].sort();
  }
}

/** The built-in architectures. */
export const BUILTIN_ARCHITECTURES: readonly ArchitecturePlugin[] = [
  llama,
  mistral,
  qwen2,
  qwen3,
  phi3,
  gemma,
];

/** A registry holding the built-ins, for callers that add their own plugins. */
export function createRegistry(): ArchitectureRegistry {
  const r = new ArchitectureRegistry();
  for (const p of BUILTIN_ARCHITECTURES) r.register(p);
  return r;
}

/** The process-wide default registry (built-ins plus whatever `registerArchitecture` added). */
export const defaultRegistry: ArchitectureRegistry = createRegistry();

export function registerArchitecture(plugin: ArchitecturePlugin): void {
  defaultRegistry.register(plugin);
}
