import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { KernelExports, KernelMemory } from './kernels.ts';

// The optional native engine: the same kernels as build/kernels.wasm, compiled for x86-64 with
// AVX2 + FMA as a Node addon (native/kernels.cc, built by `npm run build:native` to
// build/Release/charlstm_native.node). Each call of loadNativeKernels() makes one kernel instance
// with its own memory, exactly like instantiate() does for the wasm module; each worker thread
// loads the addon for itself. When the addon is missing, does not load, or the CPU lacks
// AVX2/FMA, loadNativeKernels() returns undefined and callers use the WebAssembly engine.
// CHARLSTM_NO_NATIVE=1 in the environment hides the addon (forces the WebAssembly engine).

/** Where `npm run build:native` leaves the addon (same depth from src/ and dist/). */
export const NATIVE_ADDON_URL = new URL(
  '../../build/Release/charlstm_native.node',
  import.meta.url,
);

type KernelFunctions = Omit<KernelExports, 'memory'>;

interface NativeInstance extends KernelFunctions {
  /** The instance's memory as it is now. */
  buffer: ArrayBuffer;
  /** Grow by `pages` 64 KiB pages; detaches `old` (the current buffer) and returns the new one. */
  grow(pages: number, old: ArrayBuffer): ArrayBuffer;
}

interface NativeAddon {
  supported: boolean;
  reason?: string;
  create?(pages: number): NativeInstance;
}

const FUNCTIONS = [
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
] as const satisfies readonly (keyof KernelFunctions)[];

let addon: NativeAddon | undefined;
let failure: string | undefined;

function loadAddon(): NativeAddon | undefined {
  if (addon || failure) return addon;
  try {
    if (typeof process === 'undefined' || !process.versions?.node)
      throw new Error('not running on Node');
    if (process.env.CHARLSTM_NO_NATIVE && process.env.CHARLSTM_NO_NATIVE !== '0') {
      throw new Error('disabled by CHARLSTM_NO_NATIVE');
    }
    const require = createRequire(import.meta.url);
    const loaded = require(fileURLToPath(NATIVE_ADDON_URL)) as NativeAddon;
    if (!loaded.supported || typeof loaded.create !== 'function') {
      throw new Error(loaded.reason ?? 'the native engine does not support this CPU');
    }
    addon = loaded;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    failure =
      e.code === 'MODULE_NOT_FOUND' ? 'native engine not built' : (e.message ?? String(err));
  }
  return addon;
}

/** Whether loadNativeKernels() would succeed on this thread. */
export function nativeAvailable(): boolean {
  return loadAddon() !== undefined;
}

/** Why the native engine is unavailable (undefined when it is available). */
export function nativeUnavailableReason(): string | undefined {
  loadAddon();
  return addon ? undefined : failure;
}

/**
 * A fresh native kernel instance (one page of memory, like the wasm module's initial memory), or
 * undefined when the native engine is unavailable. Never throws.
 */
export function loadNativeKernels(): KernelExports | undefined {
  const lib = loadAddon();
  if (!lib?.create) return undefined;
  let inst: NativeInstance;
  try {
    inst = lib.create(1);
  } catch (err) {
    failure = (err as Error).message;
    return undefined;
  }
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
  const kernels = { memory } as KernelExports;
  for (const name of FUNCTIONS) (kernels as unknown as Record<string, unknown>)[name] = inst[name];
  return kernels;
}

/** loadNativeKernels(), or an error saying why the native engine is unavailable. */
export function requireNativeKernels(): KernelExports {
  const k = loadNativeKernels();
  if (!k)
    throw new Error(`native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`);
  return k;
}
