// Stands in, in the browser build, for Node's built-in modules and for the library modules that
// only work in Node (src/engine/native.ts: the native addon; src/engine/worker-engine.ts: worker
// threads). The modules the page uses also hold Node-only paths — saving and loading model
// folders, reading the wasm file from disk, other engines — that the page never takes; calling
// one of these says plainly that it is not for the browser. vite.config.ts routes the imports here.

function unavailable(name: string): () => never {
  return () => {
    throw new Error(`${name} is not available in the browser`);
  };
}

// node:crypto, node:fs, node:fs/promises, node:path, node:url, node:module, node:v8
export const createHash = unavailable('createHash');
export const randomBytes = unavailable('randomBytes');
export const constants = {};
export const readFile = unavailable('readFile');
export const writeFile = unavailable('writeFile');
export const open = unavailable('open');
export const rm = unavailable('rm');
export const rename = unavailable('rename');
export const mkdir = unavailable('mkdir');
export const readdir = unavailable('readdir');
export const stat = unavailable('stat');
export const join = unavailable('path.join');
export const dirname = unavailable('path.dirname');
export const resolve = unavailable('path.resolve');
export const fileURLToPath = unavailable('fileURLToPath');
export const createRequire = unavailable('createRequire');
export const setFlagsFromString = unavailable('setFlagsFromString'); // node:v8 (kernels.ts)

// src/engine/native.ts
export const nativeAvailable = (): boolean => false;
export const nativeUnavailableReason = (): string => 'the native engine does not run in a browser';
export const bf16UnavailableReason = (): string => 'the native engine does not run in a browser';
export const createNativeInstance = (): undefined => undefined;
export const nativeAddonInfo = (): undefined => undefined;

// src/engine/worker-engine.ts (the page trains on an InlineEngine inside its own Web Worker)
export class WorkerEngine {
  static create(): never {
    throw new Error('worker threads are not available in the browser');
  }
}

export default {};
