import { UserError } from '../errors.ts';
import type { NativeInstance } from './native.ts';
import type { EngineKind, Precision } from './types.ts';

// The kernels and the one place that chooses and loads them. KernelExports below is the contract
// both implementations keep (assembly/kernels.ts, built to build/kernels.wasm and, with relaxed
// SIMD, build/kernels-relaxed.wasm, chosen at load time; and the native addon native/kernels.cc): the same functions, arguments and results (equal within float
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
  /**
   * Pack the first N & ~7 columns of B [K×N] into column panels [N/8][K][8] at dst (a native
   * 'bf16' instance packs bf16 pairs its own way into the same K·(N & ~7) floats; see
   * native/kernels.cc: only gemmNNPacked of the same instance reads them)
   */
  packB(b: number, ldb: number, dst: number, K: number, N: number): void;
  /**
   * C[M×N] += A·B as gemmNN, B's first N & ~7 columns from packB's panels `bp`, the rest from b
   * (b holds all of B: a 'bf16' instance reads its columns from N & ~15 on)
   */
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
  /**
   * Native instances only: 2 gives the instance a helper thread that takes part of each large
   * gemmNNPacked (bit-identical results); 1, the default, ends it.
   */
  setThreads?(threads: 1 | 2): void;
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

/**
 * Which build of assembly/kernels.ts: 'relaxed-simd' (build/kernels-relaxed.wasm: the
 * multiply-adds of the products and gates are `f32x4.relaxed_madd`, an FMA on x86-64 with FMA3
 * and on ARM64) or 'simd128' (build/kernels.wasm: a multiply and an add, for runtimes without
 * relaxed SIMD; every runtime with WebAssembly SIMD runs it).
 */
export type WasmVariant = 'relaxed-simd' | 'simd128';

/** The wasm files' locations next to this module's package root (same depth from src/ and dist/). */
export const KERNELS_URLS: Record<WasmVariant, URL> = {
  'relaxed-simd': new URL('../../build/kernels-relaxed.wasm', import.meta.url),
  simd128: new URL('../../build/kernels.wasm', import.meta.url),
};

// A module of one function (v128, v128, v128 locals) → v128 returning
// f32x4.relaxed_madd(l0, l1, l2): header; type section [() → v128]; function section; code
// section with one body: locals 3 × v128, local.get 0/1/2, 0xfd 0x85 0x02 (relaxed_madd, opcode
// 0x105 as LEB128), end. WebAssembly.validate() accepts it only where relaxed SIMD is enabled.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03,
  0x02, 0x01, 0x00, 0x0a, 0x0f, 0x01, 0x0d, 0x01, 0x03, 0x7b, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02,
  0xfd, 0x85, 0x02, 0x0b,
]);

const inNode = (): boolean => typeof process !== 'undefined' && Boolean(process.versions?.node);

/**
 * Whether this runtime compiles the relaxed build; false when CHARLSTM_NO_RELAXED_SIMD is set
 * (to anything but 0). Node 20 (V8 11.3) has relaxed SIMD behind
 * --experimental-wasm-relaxed-simd: the flag is set here, before anything is compiled, and
 * holds for the whole process, worker threads included. V8 11.4 (Chrome 114, Node 21) and later
 * have it on by default.
 */
async function relaxedSimdAvailable(): Promise<boolean> {
  if (inNode()) {
    const off = process.env.CHARLSTM_NO_RELAXED_SIMD;
    if (off && off !== '0') return false;
  }
  if (WebAssembly.validate(RELAXED_SIMD_PROBE)) return true;
  if (!inNode()) return false;
  const v8 = await import('node:v8'); // dynamic: this file also loads in a browser
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return WebAssembly.validate(RELAXED_SIMD_PROBE);
}

let detected: Promise<WasmVariant> | undefined;
const compiled = new Map<WasmVariant, Promise<WebAssembly.Module>>(); // compiled once per thread
// What kernelModule() gives and instantiate() uses by default: the best variant here, unless
// selectWasmVariant or setKernelModule chose one.
let chosen: WasmVariant | undefined;
let current: { variant: WasmVariant; module: WebAssembly.Module } | undefined;

/** The variant this runtime runs best: 'relaxed-simd' where it compiles, else 'simd128'. */
export function bestWasmVariant(): Promise<WasmVariant> {
  detected ??= relaxedSimdAvailable().then((ok) => (ok ? 'relaxed-simd' : 'simd128'));
  return detected;
}

async function readKernelBytes(variant: WasmVariant): Promise<Uint8Array> {
  const url = KERNELS_URLS[variant];
  if (inNode()) {
    const { readFile } = await import('node:fs/promises');
    try {
      return await readFile(url);
    } catch {
      throw new Error(`cannot read ${url.pathname}: run \`npm run build\` first`);
    }
  }
  const res = await fetch(url);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Compile (once per variant) and return the kernels module: of `variant` when given (the
 * relaxed one fails to compile where bestWasmVariant() is 'simd128'), otherwise of the variant
 * selectWasmVariant chose, or the best one. A call without `variant` also makes its module the
 * one this thread's instances use (instantiate(), wasmVariant()).
 */
export async function kernelModule(variant?: WasmVariant): Promise<WebAssembly.Module> {
  const v = variant ?? chosen ?? (await bestWasmVariant());
  if (v === 'relaxed-simd') await bestWasmVariant(); // sets Node 20's flag first
  let module = compiled.get(v);
  if (!module) {
    module = readKernelBytes(v).then(
      (bytes) => new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>),
    );
    compiled.set(v, module);
  }
  const m = await module;
  if (variant === undefined) current = { variant: v, module: m };
  return m;
}

/**
 * Make kernelModule() (and so every engine created after this on this thread) use `variant`;
 * undefined goes back to the best one. For the bench, which times both variants in one process.
 */
export function selectWasmVariant(variant: WasmVariant | undefined): void {
  chosen = variant;
}

/** Use an already compiled module of `variant` (a worker receives it from its parent). */
export function setKernelModule(module: WebAssembly.Module, variant: WasmVariant): void {
  chosen = variant;
  current = { variant, module };
  compiled.set(variant, Promise.resolve(module));
}

/** The variant of the module this thread's wasm instances use (after kernelModule()). */
export function wasmVariant(): WasmVariant {
  if (!current) throw new Error('kernels not loaded: await kernelModule() first');
  return current.variant;
}

/**
 * How an engine of this kind made now on this thread is named for a user, e.g. on `charlstm
 * train`'s "engine:" line and in the page's training speed.
 */
export async function engineLabel(kind: EngineKind): Promise<string> {
  if (kind === 'native') return 'native (AVX2/FMA)';
  await kernelModule();
  return wasmVariant() === 'relaxed-simd'
    ? 'WebAssembly SIMD (relaxed SIMD, FMA)'
    : 'WebAssembly SIMD (SIMD128)';
}

export function instantiate(
  module: WebAssembly.Module | undefined = current?.module,
): KernelExports {
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
  if (!inNode() && choice === 'auto') return 'wasm'; // browsers: WebAssembly only
  const { nativeAvailable, nativeUnavailableReason } = await import('./native.ts');
  if (nativeAvailable()) return 'native';
  if (choice === 'auto') return 'wasm';
  throw new UserError(
    `native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`,
  );
}

/**
 * The precision an EngineOptions.precision choice gives on `engine` ('fp32' when undefined):
 * 'auto' is 'bf16' only on the native engine where the addon reports AVX512-BF16, 'fp32'
 * otherwise; 'bf16' where it cannot run is a UserError saying why. Training only: inference
 * instances are always FP32.
 */
export async function resolvePrecision(
  choice: Precision | 'auto' = 'fp32',
  engine: EngineKind,
): Promise<Precision> {
  if (choice === 'fp32') return 'fp32';
  if (engine !== 'native') {
    if (choice === 'auto') return 'fp32';
    throw new UserError(
      "precision bf16 needs the native engine with AVX512-BF16, and this run's engine is wasm (--engine native or auto)",
    );
  }
  const { bf16UnavailableReason } = await import('./native.ts');
  const why = bf16UnavailableReason();
  if (why === undefined) return 'bf16';
  if (choice === 'auto') return 'fp32';
  throw new UserError(`precision bf16 unavailable: ${why} (fp32 or auto trains without it)`);
}

/**
 * A maker of fresh kernel instances of the given kind (and, native only, precision) on this
 * thread, each with its own memory. The wasm module is compiled first whatever the kind:
 * inference cores made without a factory (CharModel.fromParts, LstmCore's default) run on it.
 */
export async function kernelFactory(
  kind: EngineKind,
  precision: Precision = 'fp32',
): Promise<() => KernelExports> {
  const module = await kernelModule();
  if (kind === 'wasm') {
    if (precision !== 'fp32') throw new Error(`the wasm kernels have no ${precision} precision`);
    return () => instantiate(module);
  }
  const { createNativeInstance, nativeUnavailableReason, bf16UnavailableReason } =
    await import('./native.ts');
  return () => {
    const inst = createNativeInstance(precision);
    if (!inst) {
      throw new Error(
        precision === 'bf16' && nativeUnavailableReason() === undefined
          ? `bf16 precision unavailable: ${bf16UnavailableReason() ?? 'unknown reason'}`
          : `native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`,
      );
    }
    return nativeKernels(inst);
  };
}

/** One fresh kernel instance of the given kind and precision (on this thread). */
export async function createKernels(
  kind: EngineKind,
  precision: Precision = 'fp32',
): Promise<KernelExports> {
  return (await kernelFactory(kind, precision))();
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
  for (const name of [...KERNEL_FUNCTIONS, 'setThreads']) kernels[name] = inst[name];
  return kernels as unknown as KernelExports;
}
