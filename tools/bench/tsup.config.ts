import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    main: 'src/main.ts',
    'child-mnemo': 'src/child-mnemo.ts',
    'child-peer': 'src/child-peer.ts',
    kv: 'src/kv.ts',
    'kv-child': 'src/kv-child.ts',
  },
  format: ['esm'],
  dts: false,
  clean: true,
  sourcemap: true,
  target: 'node20',
});
