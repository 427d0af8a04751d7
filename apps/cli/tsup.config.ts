import { defineConfig } from 'tsup';

// One self-contained file: every dependency (including the WebAssembly kernels, embedded as base64) is bundled.
export default defineConfig({
  entry: { mnemo: 'src/main.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  clean: true,
  sourcemap: false,
  dts: false,
  splitting: false,
  noExternal: [/.*/],
  esbuildOptions(options) {
    options.conditions = ['mnemo-source', 'import', 'node'];
  },
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __mnemoCreateRequire } from 'node:module';\nconst require = __mnemoCreateRequire(import.meta.url);",
  },
});
