// Inverted dropout masks drawn from a counter-based hash instead of a sequential generator: the
// mask of one unit depends only on (key, layer, step, batch row, unit). So a batch's masks are the
// same whichever thread or shard computes which rows, and a resumed run redraws exactly the masks
// the uninterrupted run would have drawn (the trainer derives `key` from the seed and the optimizer
// step). Kept units are scaled by 1/(1-rate), so inference needs no dropout at all.

/** A 32-bit integer finaliser (lowbias32, Chris Wellons' hash prospector): full avalanche. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The key of one optimizer step's masks. */
export function dropoutKey(seed: number, iteration: number): number {
  return mix32((seed >>> 0) ^ mix32(iteration + 0x632be5ab));
}

/**
 * mask[(t·n + b)·H + j] for steps t0..T-1, rows b < n (batch rows row0 + b), units j < H:
 * 0 with probability `rate`, else 1/(1-rate).
 */
export function dropoutMask(
  mask: Float32Array,
  rate: number,
  key: number,
  layer: number,
  t0: number,
  T: number,
  n: number,
  row0: number,
  H: number,
): void {
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${rate}`);
  // drop when the hash, read as unsigned, falls below rate·2³². The loop compares in the signed
  // domain (u - 2³¹ ↔ (u ^ 0x80000000) | 0) so every value stays a small integer for the JIT.
  const below = Math.floor(rate * 4294967296) - 2147483648;
  const keep = 1 / (1 - rate);
  const layerKey = mix32(key ^ Math.imul(layer + 1, 0x9e3779b9));
  for (let t = t0; t < T; t++) {
    const stepKey = mix32(layerKey ^ Math.imul(t + 1, 0x85ebca6b));
    for (let b = 0; b < n; b++) {
      const rowKey = mix32(stepKey ^ Math.imul(row0 + b + 1, 0xc2b2ae35)) | 0;
      const base = (t * n + b) * H;
      for (let j = 0; j < H; j++) {
        let x = (rowKey + Math.imul(j, 0x27d4eb2f)) | 0;
        x ^= x >>> 16;
        x = Math.imul(x, 0x7feb352d);
        x ^= x >>> 15;
        x = Math.imul(x, 0x846ca68b);
        x ^= x >>> 16;
        mask[base + j] = ((x ^ 0x80000000) | 0) < below ? 0 : keep;
      }
    }
  }
}
