import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

// The web app (web/): `npm run build:web` bundles it, uPlot and the library code it imports from
// ../src (the engine, the model, sampling, training) into web/dist, both wasm builds included, so
// the page fetches nothing but its own files. `npx vite` serves it for development, sending the
// API calls to a `charlstm serve` or a training dashboard ($CHARLSTM_API, default port 8080).

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const stubs = here('./web/src/browser-stubs.ts');
const NODE_ONLY = new Set([here('./src/engine/native.ts'), here('./src/engine/worker-engine.ts')]);

/** Node's built-ins and the Node-only engine modules → browser-stubs.ts (paths never taken). */
function browserStubs(): Plugin {
  return {
    name: 'charlstm-browser-stubs',
    enforce: 'pre',
    resolveId(source, importer) {
      if (source.startsWith('node:')) return stubs;
      if (
        importer &&
        source.startsWith('.') &&
        NODE_ONLY.has(path.resolve(path.dirname(importer), source))
      ) {
        return stubs;
      }
      return null;
    },
  };
}

export default defineConfig({
  root: here('./web/'),
  base: './', // relative asset URLs: the app works under any path prefix
  plugins: [browserStubs()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      onwarn(warning, warn) {
        // the stubs are imported both ways; nothing to split
        if (warning.code !== 'INEFFECTIVE_DYNAMIC_IMPORT') warn(warning);
      },
    },
  },
  worker: { format: 'es', plugins: () => [browserStubs()] },
  server: {
    fs: { allow: [here('./')] }, // ../src and ../build/kernels*.wasm
    proxy: { '/v1': process.env.CHARLSTM_API ?? 'http://127.0.0.1:8080' },
  },
});
