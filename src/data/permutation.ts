// Each epoch's window order without materialising it: a keyed bijection of [0, n) evaluated one
// position at a time, so an epoch over a billion windows needs a few words of memory instead of a
// 4-byte-per-window shuffled array.
//
// A Feistel network on `bits`-bit integers (2^bits the smallest power of two ≥ n) with
// cycle-walking (Black & Rogaway, "Ciphers with arbitrary finite domains", 2002): encrypt k, and
// while the result lies in [n, 2^bits) encrypt again. Each Feistel round is a bijection, so the
// network is one of 2^bits values, and the walk from k < n ends inside [0, n) (the cycle through k
// comes back to k); the walks of distinct k end at distinct values, so the whole is a bijection of
// [0, n). As 2^bits < 2n, a walk takes fewer than 2 encryptions on average.
//
// Quality, honestly: this is a pseudo-random permutation, not a uniform draw over all n! orders.
// A key is ROUNDS 32-bit words, so at most 2^(32·ROUNDS) of the n! orders can ever occur (for
// n ≥ 35, n! > 2^192 already), and the round function is a fast integer mixer (murmur3's
// finaliser), not a cryptographic one. What it gives: a fixed order for a key, unrelated orders for
// different keys, every window exactly once per epoch, and each window's position spread evenly
// over the epoch (test/permutation.test.ts measures that) — what shuffling for SGD needs. Luby and
// Rackoff's bound asks for 4 rounds with random round functions; 6 give a margin for the mixer.

import type { Rng } from '../sampling/rng.ts';

/** Feistel rounds, and so the 32-bit words of a key. */
export const ROUNDS = 6;

/** The largest n: the network works on at most 32-bit integers. */
export const MAX_PERMUTATION_SIZE = 2 ** 32;

/** murmur3's 32-bit finaliser: a bijection of the 32-bit integers in which every bit avalanches. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Permutation {
  readonly size: number; // n
  private readonly key: Uint32Array; // [ROUNDS] one word per round
  // The halves: an integer of the domain is hi·2^lo + low with `lo` low bits. A round maps
  // (L: a bits, R: b bits) to (R, L ⊕ F(R)), so the widths swap every round (an even count of
  // rounds ends on the starting split). For odd `bits` the halves differ by one bit.
  private readonly bits: number;
  private readonly lowBits: number;

  /** The bijection of [0, size) for `key` (ROUNDS 32-bit words; the same key, the same order). */
  constructor(size: number, key: ArrayLike<number>) {
    if (!(Number.isInteger(size) && size >= 0 && size <= MAX_PERMUTATION_SIZE))
      throw new RangeError(
        `permutation size must be an integer from 0 to 2^32, got ${String(size)}`,
      );
    if (key.length !== ROUNDS)
      throw new RangeError(`a permutation key has ${ROUNDS} words, got ${key.length}`);
    this.size = size;
    this.key = Uint32Array.from(key);
    let bits = 0;
    while (2 ** bits < size) bits++;
    this.bits = bits;
    this.lowBits = bits >>> 1;
  }

  /** A permutation of [0, size) keyed by ROUNDS words drawn from `rng` (advancing it by that many). */
  static draw(size: number, rng: Rng): Permutation {
    const key = new Uint32Array(ROUNDS);
    for (let r = 0; r < ROUNDS; r++) key[r] = rng.nextU32();
    return new Permutation(size, key);
  }

  /** The element at position k of the order, k in [0, size). O(1) memory, ~2 encryptions on average. */
  indexAt(k: number): number {
    if (!(Number.isInteger(k) && k >= 0 && k < this.size))
      throw new RangeError(`position must be an integer in [0, ${this.size}), got ${String(k)}`);
    let x = k;
    do x = this.encrypt(x);
    while (x >= this.size);
    return x;
  }

  /** One pass of the network over [0, 2^bits): 32-bit integer arithmetic throughout. */
  private encrypt(x: number): number {
    const key = this.key;
    let b = this.lowBits; // width of R
    let a = this.bits - b; // width of L
    for (let r = 0; r < ROUNDS; r++) {
      const R = x & ((1 << b) - 1); // b ≤ 16, so every mask and shift fits 32 bits
      const L = x >>> b;
      const f = fmix32(R ^ key[r]!) & ((1 << a) - 1); // F(R) cut to L's width
      x = ((R << a) | (L ^ f)) >>> 0; // (R, L ⊕ F(R)): R now holds the high b bits
      const t = a;
      a = b;
      b = t;
    }
    return x;
  }
}
