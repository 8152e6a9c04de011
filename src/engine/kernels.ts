import { UserError } from '../errors.ts';
import type { NativeInstance } from './native.ts';
import type { EngineKind } from './types.ts';

// The kernels and the one place that chooses and loads them. KernelExports below is the contract
// both implementations keep (assembly/kernels.ts, built to build/kernels.wasm, and the native
// addon native/kernels.cc): the same functions, arguments and results (equal within float
// rounding; test/native.test.ts compares the two). Everything above the kernels asks this file for a kernel instance:
// training (InlineEngine, the worker threads), inference (CharModel) and evaluation. The wasm
// module is compiled once per thread and instantiated once per core: each core owns its memory.
// The native addon is reached through a dynamic import of ./native.ts (Node only; the web build
// stubs it), so this file loads in a browser.

/** What the engine needs of a kernel instance's memory: WebAssembly.Memory, or the native addon's. */
export interface KernelMemory {
  readonly buffer: ArrayBuffer;
  /** Add `pages` 64 KiB pages; returns the previous size in pages. Replaces (detaches) `buffer`. */
  grow(pages: number): number;
}

/**
 * One kernel instance. Every pointer argument is a byte address into `memory` (laid out by
 * LstmCore through arena.ts, sized by memory.ts), every count a number of floats; matrices are
 * row-major float32 with an explicit row stride (lda, ldb, ldc, in floats). Products accumulate
 * (`C +=`): callers zero C for a plain product. A step's gate buffer z is [B×G], G = 4H, column
 * blocks i, f, c, o (Keras order); H is a multiple of 4. Element-wise functions work in groups
 * of 4 (n rounded up to a multiple of 4). Sums over rows run in row order, so results never
 * depend on timing. An access outside memory traps (wasm) or throws a RangeError (native).
 */
export interface KernelExports {
  memory: KernelMemory;
  /** C[M×N] += A·B; A row-major [M×K] (A[i,k] = a[i·lda + k]), B row-major [K×N] */
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
  /** C[M×N] += Aᵀ·B; A stored transposed [K×M] (A[i,k] = a[k·lda + i]), e.g. hᵀ·dz */
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
  /** Pack the first N & ~7 columns of B [K×N] into column panels [N/8][K][8] at dst */
  packB(b: number, ldb: number, dst: number, K: number, N: number): void;
  /** C[M×N] += A·B as gemmNN, B's first N & ~7 columns from packB's panels `bp`, the rest from b */
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
  /** dst [cols×rows] = srcᵀ, src row-major [rows×cols] */
  transpose(src: number, dst: number, rows: number, cols: number): void;
  /** y[i] = σ(x[i]) (Cephes-style range reduction and polynomial, ~1e-7 relative; for tests) */
  sigmoidArray(x: number, y: number, n: number): void;
  /** y[i] = tanh(x[i]) (a polynomial near zero, the exp form elsewhere; for tests) */
  tanhArray(x: number, y: number, n: number): void;
  /** y[i] = a[i]·b[i] (a dropout mask applied; y may be a), n a multiple of 4 */
  mulArrays(a: number, b: number, y: number, n: number): void;
  /** z[b,:] = bias + Wx[tok[b·tokStride], :] for b < B: the one-hot input product as a row gather */
  gatherRows(
    z: number,
    wx: number,
    bias: number,
    tok: number,
    tokStride: number,
    B: number,
    G: number,
  ): void;
  /**
   * In place z [B×G] → activations σ(i), σ(f), tanh(c̃), σ(o); then, all [B×H]:
   * c = f ⊙ cPrev + i ⊙ c̃, tc = tanh(c), h = o ⊙ tc
   */
  gatesForward(
    z: number,
    cPrev: number,
    c: number,
    tc: number,
    h: number,
    B: number,
    H: number,
  ): void;
  /**
   * Backward through one step's gates: from the activations act [B×G], cPrev, tc = tanh(c), the
   * gradient dh reaching h and dc reaching c (from the step after), writes dz [B×G] (the
   * pre-activations' gradient) and replaces dc with the gradient reaching cPrev
   */
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
  /** dWx[tok[b·tokStride], :] += dz[b, :] and db += Σ_b dz[b, :], rows in b order */
  scatterRows(
    dwx: number,
    db: number,
    dz: number,
    tok: number,
    tokStride: number,
    B: number,
    G: number,
  ): void;
  /** In place logits [B×V] + bd → softmax probabilities */
  softmaxRows(logits: number, bd: number, B: number, V: number): void;
  /**
   * Categorical cross-entropy of probs [B×V] against targets y [B] (int32), probabilities
   * clipped to [1e-7, 1 - 1e-7] as Keras does: writes dlogits = (p - onehot(y))·scale and
   * returns Σ loss (float64)
   */
  crossEntropy(
    probs: number,
    y: number,
    dlogits: number,
    B: number,
    V: number,
    scale: number,
  ): number;
  /** db[v] += Σ_b d[b, v] over d [B×N], rows in b order */
  colSum(d: number, db: number, B: number, N: number): void;
}

/** The kernel functions by name: what an instance of either implementation exports besides memory. */
export const KERNEL_FUNCTIONS = [
  'gemmNN',
  'gemmTN',
  'packB',
  'gemmNNPacked',
  'transpose',
  'sigmoidArray',
  'tanhArray',
  'mulArrays',
  'gatherRows',
  'gatesForward',
  'gatesBackward',
  'scatterRows',
  'softmaxRows',
  'crossEntropy',
  'colSum',
] as const satisfies readonly (keyof Omit<KernelExports, 'memory'>)[];

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

/** The kernels an EngineOptions.engine choice gives on this machine ('wasm' when undefined). */
export async function resolveEngine(choice: EngineKind | 'auto' = 'wasm'): Promise<EngineKind> {
  if (choice === 'wasm') return 'wasm';
  const inNode = typeof process !== 'undefined' && Boolean(process.versions?.node);
  if (!inNode && choice === 'auto') return 'wasm'; // browsers: WebAssembly only
  const { nativeAvailable, nativeUnavailableReason } = await import('./native.ts');
  if (nativeAvailable()) return 'native';
  if (choice === 'auto') return 'wasm';
  throw new UserError(
    `native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`,
  );
}

/**
 * A maker of fresh kernel instances of the given kind on this thread, each with its own memory.
 * The wasm module is compiled first whatever the kind: inference cores made without a factory
 * (CharModel.fromParts, LstmCore's default) run on it.
 */
export async function kernelFactory(kind: EngineKind): Promise<() => KernelExports> {
  const module = await kernelModule();
  if (kind === 'wasm') return () => instantiate(module);
  const { createNativeInstance, nativeUnavailableReason } = await import('./native.ts');
  return () => {
    const inst = createNativeInstance();
    if (!inst) {
      throw new Error(
        `native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`,
      );
    }
    return nativeKernels(inst);
  };
}

/** One fresh kernel instance of the given kind (on this thread). */
export async function createKernels(kind: EngineKind): Promise<KernelExports> {
  return (await kernelFactory(kind))();
}

/** The addon's instance as KernelExports: its memory behind KernelMemory, its functions as they are. */
function nativeKernels(inst: NativeInstance): KernelExports {
  let buffer = inst.buffer;
  const memory: KernelMemory = {
    get buffer(): ArrayBuffer {
      return buffer;
    },
    grow(pages: number): number {
      const before = buffer.byteLength / 65536;
      buffer = inst.grow(pages, buffer);
      return before;
    },
  };
  const kernels: Record<string, unknown> = { memory };
  for (const name of KERNEL_FUNCTIONS) kernels[name] = inst[name];
  return kernels as unknown as KernelExports;
}
