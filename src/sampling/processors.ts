// Probability processors, in the style of transformers.js logits processors: each one takes a
// distribution over the vocabulary (non-negative, not necessarily summing to exactly 1) and
// returns a new, normalised Float64Array; a list of them is applied in order by
// `applyProcessors`, and then one character is drawn with `sample` (or picked with `argmax`).
// Inputs are never modified.

import { show } from '../errors.ts';
import type { Rng } from './rng.ts';

export type Probs = Float64Array | Float32Array | readonly number[];

export interface Processor {
  /** A short description, e.g. "temperature(0.5)". */
  readonly name: string;
  apply(probs: Probs): Float64Array;
}

/** Check that `probs` is a usable distribution and return its sum. */
export function checkDistribution(probs: Probs, what = 'probabilities'): number {
  if (probs.length === 0) throw new RangeError(`${what}: empty distribution`);
  let total = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    if (!(p >= 0) || p === Infinity)
      throw new RangeError(`${what}: entry ${i} is ${show(p)}, not a finite non-negative number`);
    total += p;
  }
  if (!(total > 0) || !Number.isFinite(total))
    throw new RangeError(`${what}: the entries sum to ${show(total)}, need a positive finite sum`);
  return total;
}

function normalised(w: Float64Array, total: number): Float64Array {
  for (let i = 0; i < w.length; i++) w[i] = w[i]! / total;
  return w;
}

/** The index of the largest entry; ties go to the lowest index. */
export function argmax(probs: Probs): number {
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[best]!) best = i;
  return best;
}

/** Indices sorted by probability, largest first; equal probabilities keep index order. */
function rankOrder(probs: Probs): number[] {
  const idx = Array.from({ length: probs.length }, (_, i) => i);
  return idx.sort((a, b) => probs[b]! - probs[a]! || a - b);
}

export function checkTemperature(t: unknown): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || !(t > 0)) {
    throw new RangeError(`temperature must be a positive finite number, got ${show(t)}`);
  }
  return t;
}

export function checkTopK(k: unknown): number {
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) {
    throw new RangeError(`top-k must be an integer >= 1, got ${show(k)}`);
  }
  return k;
}

export function checkTopP(p: unknown): number {
  if (typeof p !== 'number' || !(p > 0 && p <= 1)) {
    throw new RangeError(`top-p must be a number in (0, 1], got ${show(p)}`);
  }
  return p;
}

/**
 * Reweight by temperature T: p'_i ∝ exp(log(p_i) / T), the reference's formula, computed as
 * exp((log p_i - max_j log p_j) / T) so that no T underflows everything to 0 or gives NaN.
 * Zero stays zero. T = 1 only renormalises; small T tends to the argmax (exactly tied maxima
 * share the mass equally, as they do at every T); large T tends to uniform over the support.
 */
export function temperature(t: number): Processor {
  const T = checkTemperature(t);
  return {
    name: `temperature(${T})`,
    apply(probs) {
      const total = checkDistribution(probs);
      const n = probs.length;
      const w = new Float64Array(n);
      if (T === 1) {
        for (let i = 0; i < n; i++) w[i] = probs[i]!;
        return normalised(w, total);
      }
      let maxLog = -Infinity;
      for (let i = 0; i < n; i++) maxLog = Math.max(maxLog, Math.log(probs[i]!));
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const p = probs[i]!;
        // p = 0: log p = -Infinity, (-Infinity - maxLog) / T = -Infinity, exp = 0. maxLog is finite
        // because checkDistribution saw a positive entry.
        const v = p > 0 ? Math.exp((Math.log(p) - maxLog) / T) : 0;
        w[i] = v;
        sum += v;
      }
      return normalised(w, sum); // sum >= 1: the largest entry contributes exp(0)
    },
  };
}

/** Keep the k most probable entries (ties: lower index first), zero the rest, renormalise. */
export function topK(k: number): Processor {
  const K = checkTopK(k);
  return {
    name: `topK(${K})`,
    apply(probs) {
      checkDistribution(probs);
      const w = new Float64Array(probs.length);
      let sum = 0;
      for (const i of rankOrder(probs).slice(0, K)) {
        w[i] = probs[i]!;
        sum += w[i]!;
      }
      return normalised(w, sum);
    },
  };
}

/** Tolerance for "the cumulative probability reaches p": forgives float32 rounding of the input. */
export const TOP_P_TOLERANCE = 1e-7;

/**
 * Nucleus sampling: keep the smallest set of most probable entries (ties: lower index first)
 * whose probability sums to at least p (within TOP_P_TOLERANCE), zero the rest, renormalise.
 * p = 1 keeps everything.
 */
export function topP(p: number): Processor {
  const P = checkTopP(p);
  return {
    name: `topP(${P})`,
    apply(probs) {
      const total = checkDistribution(probs);
      const w = new Float64Array(probs.length);
      if (P === 1) {
        for (let i = 0; i < probs.length; i++) w[i] = probs[i]!;
        return normalised(w, total);
      }
      let cum = 0;
      for (const i of rankOrder(probs)) {
        w[i] = probs[i]!;
        cum += w[i]!;
        if (cum / total >= P - TOP_P_TOLERANCE) break;
      }
      return normalised(w, cum);
    },
  };
}

/** The argmax as a one-hot distribution (ties: the lowest index). */
export function greedy(): Processor {
  return {
    name: 'greedy()',
    apply(probs) {
      checkDistribution(probs);
      const w = new Float64Array(probs.length);
      w[argmax(probs)] = 1;
      return w;
    },
  };
}

/** Apply the processors in order. With an empty list, returns a normalised copy. */
export function applyProcessors(probs: Probs, list: readonly Processor[]): Float64Array {
  if (list.length === 0) {
    const total = checkDistribution(probs);
    return normalised(Float64Array.from(probs), total);
  }
  let out: Probs = probs;
  for (const proc of list) out = proc.apply(out);
  return out as Float64Array;
}

/**
 * One multinomial draw: with u = rng.next() (uniform in [0, 1)), the first index i whose
 * cumulative sum exceeds u * total. An entry of probability 0 is never returned. Consumes exactly
 * one rng.next().
 */
export function sample(probs: Probs, rng: Rng): number {
  const total = checkDistribution(probs);
  const u = rng.next() * total;
  let cum = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    if (p > 0) {
      cum += p;
      last = i;
      if (cum > u) return i;
    }
  }
  // Only reachable when rounding made u * total equal to total: the last possible entry.
  return last;
}
