import { UserError } from '../errors.ts';
import { Parameters, layerCount, type ModelShape } from '../model/params.ts';
import { ARENA_ALIGN, ARENA_BASE } from './arena.ts';
import type { CoreCapacity } from './types.ts';

// How much kernel memory one LstmCore needs, known before anything is allocated, so that a shape
// too large for the engine (`--batch-size 1e9`, `maxlen: 1e9` in a model.json, huge --units or
// --layers) is refused up front with the sizes and the limit, instead of failing inside
// WebAssembly.Memory.grow. The native addon takes the same 32-bit addresses as the wasm kernels,
// so the same limit holds for both. LstmCore checks that its layout matches this count.

/** The most memory one kernel instance can address: 65536 pages of 64 KiB (4 GiB). */
export const CORE_MEMORY_LIMIT = 65536 * 65536;

/**
 * The bytes of kernel memory a core of this shape and capacity lays out (the arena's top: the
 * module's first page plus every buffer, each rounded up to 64 bytes), before rounding to pages.
 * Mirrors the reservations of LstmCore's constructor.
 */
export function coreBytes(shape: ModelShape, cap: CoreCapacity): number {
  const { vocabSize: V, units: H } = shape;
  const G = 4 * H;
  const L = layerCount(shape);
  const { maxB: B, maxT: T, training } = cap;
  const r = (n: number) => Math.ceil((n * 4) / ARENA_ALIGN) * ARENA_ALIGN;
  const P = Parameters.size(shape);
  const steps = training ? T : 1;
  const slots = training ? T + 1 : 2;
  let top = ARENA_BASE + 2 * r(P);
  for (let l = 0; l < L; l++) {
    if (l > 0) top += r(H * G) + 2 * r(G * H);
    top += 3 * r(G * H);
    top += r(steps * B * G) + r(slots * B * H) + r(steps * B * H) + r(slots * B * H);
    if (training) top += 2 * r(T * B * H);
  }
  const headRows = training ? B * T : B;
  top += r(V * H) + r(B * T) + r(headRows);
  if (training) top += r(T * B * G);
  top += 2 * r(B * H) + 2 * r(headRows * V);
  if (training) top += r(B * T * H);
  return top;
}

/** The memory a core of this layout occupies once grown: whole 64 KiB pages. */
export function corePages(bytes: number): number {
  return Math.ceil(bytes / 65536);
}

/** "4 GiB", "1.5 TiB", "812 MiB": a byte count for a message. */
export function formatMemory(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = u === 0 || v >= 100 || Number.isInteger(v) ? 0 : 1;
  return `${v.toFixed(digits)} ${units[u]}`;
}

/** What the sizes in a refusal are called where they came from (options or a model file). */
export interface CoreSizeContext {
  /** Put before the message, e.g. the model file. */
  where?: string;
  /** The batch size asked for, when a core holds only a shard of it. */
  batchSize?: number;
  /** How to get under the limit, e.g. "lower --batch-size, --maxlen, --units or --layers". */
  advice?: string;
}

/**
 * Throw a UserError (exit code 2) when a core of this shape and capacity would not fit in one
 * kernel instance's memory; the message names the sizes, the memory needed and the limit.
 */
export function checkCoreFits(
  shape: ModelShape,
  cap: CoreCapacity,
  ctx: CoreSizeContext = {},
): void {
  const bytes = corePages(coreBytes(shape, cap)) * 65536;
  if (Number.isFinite(bytes) && bytes <= CORE_MEMORY_LIMIT) return;
  const batch =
    ctx.batchSize !== undefined && ctx.batchSize !== cap.maxB
      ? `batch size ${ctx.batchSize} (${cap.maxB} rows per engine core)`
      : `batch ${cap.maxB}`;
  const sizes =
    `${cap.training ? 'training' : 'inference'} with units ${shape.units}, ` +
    `layers ${layerCount(shape)}, vocabulary ${shape.vocabSize}, window (maxlen) ${cap.maxT}, ${batch}`;
  const advice = ctx.advice ?? 'lower the batch size, maxlen, units or layers';
  throw new UserError(
    `${ctx.where ? `${ctx.where}: ` : ''}${sizes} needs ${formatMemory(bytes)} of engine memory, ` +
      `more than its limit of ${formatMemory(CORE_MEMORY_LIMIT)} (${CORE_MEMORY_LIMIT} bytes); ${advice}`,
  );
}
