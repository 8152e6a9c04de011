// Loads the WebAssembly kernels (assembly/kernels.ts, built to build/kernels.wasm). The module
// is compiled once per thread and instantiated once per engine core: each core owns its memory.

/** What the engine needs of a kernel instance's memory: WebAssembly.Memory, or the native addon's. */
export interface KernelMemory {
  readonly buffer: ArrayBuffer;
  /** Add `pages` 64 KiB pages; returns the previous size in pages. Replaces (detaches) `buffer`. */
  grow(pages: number): number;
}

export interface KernelExports {
  memory: KernelMemory;
  /** C += A·B, A row-major [M×K] */
  gemmNN(
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    M: number,
    N: number,
    K: number,
  ): void;
  /** C += Aᵀ·B, A stored [K×M] */
  gemmTN(
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    M: number,
    N: number,
    K: number,
  ): void;
  /** pack B's first N & ~7 columns into [N/8][K][8] panels */
  packB(b: number, ldb: number, dst: number, K: number, N: number): void;
  /** C += A·B with B packed by packB (its tail columns read from row-major b) */
  gemmNNPacked(
    a: number,
    lda: number,
    bp: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    M: number,
    N: number,
    K: number,
  ): void;
  transpose(src: number, dst: number, rows: number, cols: number): void;
  sigmoidArray(x: number, y: number, n: number): void;
  tanhArray(x: number, y: number, n: number): void;
  /** y[i] = a[i]·b[i], n a multiple of 4 */
  mulArrays(a: number, b: number, y: number, n: number): void;
  gatherRows(
    z: number,
    wx: number,
    bias: number,
    tok: number,
    tokStride: number,
    B: number,
    G: number,
  ): void;
  gatesForward(
    z: number,
    cPrev: number,
    c: number,
    tc: number,
    h: number,
    B: number,
    H: number,
  ): void;
  gatesBackward(
    act: number,
    cPrev: number,
    tc: number,
    dh: number,
    dc: number,
    dz: number,
    B: number,
    H: number,
  ): void;
  scatterRows(
    dwx: number,
    db: number,
    dz: number,
    tok: number,
    tokStride: number,
    B: number,
    G: number,
  ): void;
  softmaxRows(logits: number, bd: number, B: number, V: number): void;
  crossEntropy(
    probs: number,
    y: number,
    dlogits: number,
    B: number,
    V: number,
    scale: number,
  ): number;
  colSum(d: number, db: number, B: number, N: number): void;
}

let compiled: Promise<WebAssembly.Module> | undefined;
let compiledSync: WebAssembly.Module | undefined;

/** The wasm file's location next to this module's package root (same depth from src/ and dist/). */
export const KERNELS_URL = new URL('../../build/kernels.wasm', import.meta.url);

async function readKernelBytes(): Promise<Uint8Array> {
  if (typeof process !== 'undefined' && process.versions?.node) {
    const { readFile } = await import('node:fs/promises');
    try {
      return await readFile(KERNELS_URL);
    } catch {
      throw new Error(`cannot read ${KERNELS_URL.pathname}: run \`npm run build\` first`);
    }
  }
  const res = await fetch(KERNELS_URL);
  return new Uint8Array(await res.arrayBuffer());
}

/** Compile (once) and return the kernels module. */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= readKernelBytes().then((bytes) => {
    compiledSync = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    return compiledSync;
  });
  return compiled;
}

/** Use an already compiled module (a worker receives it from its parent). */
export function setKernelModule(module: WebAssembly.Module): void {
  compiledSync = module;
  compiled = Promise.resolve(module);
}

export function instantiate(module: WebAssembly.Module | undefined = compiledSync): KernelExports {
  if (!module) throw new Error('kernels not loaded: await kernelModule() first');
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(): never {
        throw new Error('wasm kernel abort');
      },
    },
  });
  return instance.exports as unknown as KernelExports;
}
