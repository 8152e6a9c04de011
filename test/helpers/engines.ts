// Why a test of the native engine, or of its BF16 products, skips on this machine: one answer for
// every test file (undefined: the test runs).

import { kernelModule, resolveEngine } from '../../src/engine/kernels.ts';
import { bf16UnavailableReason, nativeUnavailableReason } from '../../src/engine/native.ts';

await kernelModule();

/** undefined where `--engine auto` picks the native addon, else why it does not. */
export const NATIVE_SKIP: string | undefined =
  (await resolveEngine('auto')) === 'native'
    ? undefined
    : `native engine unavailable (${nativeUnavailableReason()})`;

/** undefined where the native engine also has AVX512-BF16, else why not. */
export const BF16_SKIP: string | undefined =
  NATIVE_SKIP ??
  (bf16UnavailableReason() ? `BF16 unavailable (${bf16UnavailableReason()})` : undefined);
