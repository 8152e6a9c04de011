// How much of a generated text is recited from the training text: the longest run copied
// verbatim, and the share of the generated n-character sequences (n = 20) found in the corpus.
// Both work on token indices (code points), with rolling hashes checked exactly on a hit.

export interface MemorisationReport {
  longestCopy: number; // characters
  longestCopyAt: number; // its start in the generated text
  ngram: number;
  ngramsFound: number; // generated n-grams present in the corpus
  ngramsTotal: number;
  shareFound: number; // ngramsFound / ngramsTotal (0 when the text is shorter than n)
}

// Polynomial rolling hash modulo 2^32 (Math.imul); weak against adversaries but only a filter:
// every hit is checked character by character.
const BASE = 0x01000193;

/** Hashes of every length-L window of s: h[i] = hash(s[i..i+L)). */
function windowHashes(s: Int32Array, L: number): Int32Array {
  const n = s.length - L + 1;
  if (n <= 0) return new Int32Array(0);
  let pow = 1; // BASE^(L-1)
  for (let i = 0; i < L - 1; i++) pow = Math.imul(pow, BASE);
  const out = new Int32Array(n);
  let h = 0;
  for (let i = 0; i < L; i++) h = (Math.imul(h, BASE) + s[i]! + 1) | 0;
  out[0] = h;
  for (let i = 1; i < n; i++) {
    h = (h - Math.imul(s[i - 1]! + 1, pow)) | 0;
    h = (Math.imul(h, BASE) + s[i + L - 1]! + 1) | 0;
    out[i] = h;
  }
  return out;
}

/**
 * The corpus's length-L windows in an open-addressing hash table (typed arrays, linear probing):
 * each slot holds a start position; a lookup checks every candidate with the same hash exactly.
 */
class WindowIndex {
  private readonly slots: Int32Array; // start + 1, 0 = empty
  private readonly hashes: Int32Array;
  private readonly mask: number;
  constructor(
    private readonly corpus: Int32Array,
    readonly L: number,
  ) {
    const hs = windowHashes(corpus, L);
    let size = 1;
    while (size < hs.length * 2) size <<= 1;
    this.slots = new Int32Array(size);
    this.hashes = new Int32Array(size);
    this.mask = size - 1;
    for (let i = 0; i < hs.length; i++) {
      const h = hs[i]!;
      let j = h & this.mask;
      while (this.slots[j] !== 0) j = (j + 1) & this.mask;
      this.slots[j] = i + 1;
      this.hashes[j] = h;
    }
  }

  has(s: Int32Array, at: number, hash: number): boolean {
    for (let j = hash & this.mask; this.slots[j] !== 0; j = (j + 1) & this.mask) {
      if (this.hashes[j] !== hash) continue;
      const c = this.slots[j]! - 1;
      let k = 0;
      while (k < this.L && this.corpus[c + k] === s[at + k]) k++;
      if (k === this.L) return true;
    }
    return false;
  }
}

type IndexCache = Map<number, WindowIndex>;

function indexOf(corpus: Int32Array, L: number, cache: IndexCache): WindowIndex {
  let index = cache.get(L);
  if (!index) cache.set(L, (index = new WindowIndex(corpus, L)));
  return index;
}

function anyCopyOfLength(
  generated: Int32Array,
  corpus: Int32Array,
  L: number,
  cache: IndexCache,
): number {
  if (L > generated.length || L > corpus.length) return -1;
  const index = indexOf(corpus, L, cache);
  const hs = windowHashes(generated, L);
  for (let i = 0; i < hs.length; i++) if (index.has(generated, i, hs[i]!)) return i;
  return -1;
}

/** Reports for several texts against one corpus, sharing the corpus indexes between them. */
export function memorisationReports(
  texts: Int32Array[],
  corpus: Int32Array,
  ngram = 20,
): MemorisationReport[] {
  const cache: IndexCache = new Map();
  return texts.map((t) => memorisationReport(t, corpus, ngram, cache));
}

export function memorisationReport(
  generated: Int32Array,
  corpus: Int32Array,
  ngram = 20,
  cache: IndexCache = new Map(),
): MemorisationReport {
  // longest copy: binary search on the length (a copy of length L contains copies of every shorter length)
  let lo = 0;
  let at = 0;
  let hi = Math.min(generated.length, corpus.length);
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const pos = anyCopyOfLength(generated, corpus, mid, cache);
    if (pos >= 0) {
      lo = mid;
      at = pos;
    } else hi = mid - 1;
  }
  let found = 0;
  const total = Math.max(0, generated.length - ngram + 1);
  if (total > 0 && corpus.length >= ngram) {
    const index = indexOf(corpus, ngram, cache);
    const hs = windowHashes(generated, ngram);
    for (let i = 0; i < hs.length; i++) if (index.has(generated, i, hs[i]!)) found++;
  }
  return {
    longestCopy: lo,
    longestCopyAt: at,
    ngram,
    ngramsFound: found,
    ngramsTotal: total,
    shareFound: total ? found / total : 0,
  };
}
