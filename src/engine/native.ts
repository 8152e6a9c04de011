import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Precision } from './types.ts';

// The optional native engine: the same kernels as build/kernels.wasm, compiled for x86-64 with
// AVX2 + FMA as a Node-API addon (native/kernels.cc). This file finds and loads the addon; each
// call of createNativeInstance() makes one kernel instance with its own memory, which kernels.ts
// (the one place that chooses kernels) wraps as KernelExports, exactly as it instantiates the
// wasm module; each worker thread loads the addon for itself. When the addon is missing, does not
// load, or the CPU lacks AVX2/FMA, the native engine is unavailable and 'auto' takes WebAssembly.
// CHARLSTM_NO_NATIVE=1 in the environment hides the addon (forces the WebAssembly engine).
// An instance is FP32 or BF16 (AVX512-BF16 products, native/kernels.cc), fixed when it is made;
// the addon reports whether this CPU and OS run BF16, and CHARLSTM_NO_BF16=1 hides it (as if not).
//
// Where the addon comes from, first found first (nativeAddonInfo() says which one loaded):
//   1. build/Release/charlstm_native.node: built from source on this machine by
//      `npm run build:native` (`node native/build.mjs` in an installed package), so a
//      developer's fresh build always wins over a packaged binary;
//   2. prebuilds/<platform>-<arch>/charlstm_native.node: the binary the package ships for this
//      platform (made by `npm pack`'s prepack script, native/prebuild.mjs). The addon uses
//      Node-API only, so one binary serves every Node version from 20 on.
// A candidate that exists but fails to load (say, a prebuilt binary that needs a newer C library
// than this system's) is passed over for the next one; the reasons are kept for the message.

/** Where `npm run build:native` leaves the addon (same depth from src/ and dist/). */
export const NATIVE_ADDON_URL = new URL(
  '../../build/Release/charlstm_native.node',
  import.meta.url,
);

/** Where the package carries its prebuilt addon for a platform (same depth from src/ and dist/). */
export function prebuiltAddonUrl(
  platform: string = process.platform,
  arch: string = process.arch,
): URL {
  return new URL(`../../prebuilds/${platform}-${arch}/charlstm_native.node`, import.meta.url);
}

/** Which addon file the native engine runs on. */
export interface NativeAddonInfo {
  /** 'source': built on this machine (build/Release); 'prebuilt': shipped in the package */
  origin: 'source' | 'prebuilt';
  /** the file's path */
  path: string;
}

/**
 * One kernel instance as the addon makes it: the functions of KernelExports (kernels.ts) by name,
 * and its memory as a buffer that grow() replaces.
 */
export interface NativeInstance {
  readonly [kernel: string]: unknown;
  /** The instance's memory as it is now. */
  readonly buffer: ArrayBuffer;
  /** Grow by `pages` 64 KiB pages; detaches `old` (the current buffer) and returns the new one. */
  grow(pages: number, old: ArrayBuffer): ArrayBuffer;
}

interface NativeAddon {
  supported: boolean;
  reason?: string;
  /** AVX512-BF16 (with AVX-512 F/BW/VL and the OS saving zmm state): create(…, 'bf16') works */
  bf16?: boolean;
  create?(pages: number, precision?: Precision): NativeInstance;
}

let addon: NativeAddon | undefined;
let addonInfo: NativeAddonInfo | undefined;
let failure: string | undefined;

function loadAddon(): NativeAddon | undefined {
  if (addon || failure) return addon;
  try {
    if (typeof process === 'undefined' || !process.versions?.node)
      throw new Error('not running on Node');
    if (process.env.CHARLSTM_NO_NATIVE && process.env.CHARLSTM_NO_NATIVE !== '0') {
      throw new Error('disabled by CHARLSTM_NO_NATIVE');
    }
    const platform = `${process.platform}-${process.arch}`;
    const candidates: NativeAddonInfo[] = [
      { origin: 'source', path: fileURLToPath(NATIVE_ADDON_URL) },
      { origin: 'prebuilt', path: fileURLToPath(prebuiltAddonUrl()) },
    ];
    const require = createRequire(import.meta.url);
    const errors: string[] = [];
    for (const candidate of candidates) {
      if (!existsSync(candidate.path)) continue;
      let loaded: NativeAddon;
      try {
        loaded = require(candidate.path) as NativeAddon;
      } catch (err) {
        const what = candidate.origin === 'source' ? 'the addon built here' : 'the prebuilt addon';
        errors.push(`${what} does not load (${(err as Error).message.split('\n')[0]})`);
        continue;
      }
      if (!loaded.supported || typeof loaded.create !== 'function') {
        // the CPU's verdict: another build of the same kernels would give the same one
        throw new Error(loaded.reason ?? 'the native engine does not support this CPU');
      }
      addon = loaded;
      addonInfo = candidate;
      return addon;
    }
    throw new Error(
      errors.length > 0
        ? errors.join('; ')
        : `no prebuilt addon for ${platform} in this package, and none ` +
            'built from source (`npm run build:native`, or `node native/build.mjs` in the installed ' +
            'package, builds it with node-gyp and a C++ compiler)',
    );
  } catch (err) {
    failure = (err as Error).message ?? String(err);
  }
  return addon;
}

/** Which addon file the native engine runs on, or undefined when it is unavailable. */
export function nativeAddonInfo(): NativeAddonInfo | undefined {
  loadAddon();
  return addonInfo;
}

/** Whether the addon loads on this thread (createNativeInstance() then makes instances). */
export function nativeAvailable(): boolean {
  return loadAddon() !== undefined;
}

/** Why the native engine is unavailable (undefined when it is available). */
export function nativeUnavailableReason(): string | undefined {
  loadAddon();
  return addon ? undefined : failure;
}

/** Why BF16 instances cannot be made here (undefined when they can). */
export function bf16UnavailableReason(): string | undefined {
  const lib = loadAddon();
  if (!lib) return `the native engine is unavailable (${failure ?? 'unknown reason'})`;
  if (process.env.CHARLSTM_NO_BF16 && process.env.CHARLSTM_NO_BF16 !== '0')
    return 'disabled by CHARLSTM_NO_BF16';
  return lib.bf16 ? undefined : 'this CPU (or its OS) lacks AVX512-BF16';
}

/**
 * A fresh native kernel instance (one page of memory, like the wasm module's initial memory) of
 * the given precision, or undefined when the native engine is unavailable (nativeUnavailableReason()
 * says why) or, for 'bf16', BF16 is (bf16UnavailableReason()). Never throws.
 */
export function createNativeInstance(precision: Precision = 'fp32'): NativeInstance | undefined {
  const lib = loadAddon();
  if (!lib?.create) return undefined;
  if (precision === 'bf16' && bf16UnavailableReason()) return undefined;
  try {
    return lib.create(1, precision);
  } catch (err) {
    failure = (err as Error).message;
    return undefined;
  }
}
