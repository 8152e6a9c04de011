import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MEMORISATION } from '../src/defaults.ts';
import {
  MemorisationIndex,
  memorisationReport,
  suffixArray,
  type MemorisationReport,
} from '../src/generate/memorisation.ts';
import { Rng } from '../src/sampling/rng.ts';

const enc = (s: string): Int32Array => Int32Array.from([...s].map((c) => c.codePointAt(0)!));

/** The same figures the slow, obvious way. */
function naive(
  gen: string,
  corpus: string,
  n: number,
): { longest: number; found: number; total: number } {
  let longest = 0;
  for (let i = 0; i < gen.length; i++) {
    for (let j = i + longest + 1; j <= gen.length; j++) {
      if (corpus.includes(gen.slice(i, j))) longest = j - i;
      else break;
    }
  }
  let found = 0;
  const total = Math.max(0, gen.length - n + 1);
  for (let i = 0; i < total; i++) if (corpus.includes(gen.slice(i, i + n))) found++;
  return { longest, found, total };
}

test('finds the longest copied run and the share of copied 20-grams', () => {
  const corpus = 'the quick brown fox jumps over the lazy dog while the cat sleeps soundly';
  const gen = 'xx jumps over the lazy dog whilst yy the cat sleeps';
  const r = memorisationReport(enc(gen), enc(corpus), 20);
  const e = naive(gen, corpus, 20);
  assert.equal(r.longestCopy, e.longest);
  assert.equal(
    gen.slice(r.longestCopyAt, r.longestCopyAt + r.longestCopy),
    'x jumps over the lazy dog whil',
  ); // "fox jumps" gives the x
  assert.equal(r.ngramsFound, e.found);
  assert.equal(r.ngramsTotal, e.total);
});

test('agrees with the naive computation on random texts over a small alphabet', () => {
  const rng = new Rng(5);
  const alpha = 'abc ';
  for (let trial = 0; trial < 20; trial++) {
    const corpus = Array.from({ length: 400 }, () => alpha[rng.int(4)]).join('');
    const start = rng.int(300);
    const gen =
      Array.from({ length: 10 }, () => alpha[rng.int(4)]).join('') +
      corpus.slice(start, start + 30 + rng.int(40)) +
      'zz';
    const r = memorisationReport(enc(gen), enc(corpus), 8);
    const e = naive(gen, corpus, 8);
    assert.equal(r.longestCopy, e.longest, `trial ${trial}`);
    assert.equal(r.ngramsFound, e.found, `trial ${trial}`);
  }
});

test('nothing copied, and texts shorter than n', () => {
  const r = memorisationReport(enc('zzzz'), enc('abcabc'), 20);
  assert.equal(r.longestCopy, 0);
  assert.equal(r.ngramsTotal, 0);
  assert.equal(r.shareFound, 0);
});

// ---- The report as it was computed before the bounded index (cc4fff0), kept verbatim as the
// reference: one hash table over the whole corpus per length probed, checked exactly on a hit.

const BASE = 0x01000193;
function windowHashes(s: Int32Array, L: number): Int32Array {
  const n = s.length - L + 1;
  if (n <= 0) return new Int32Array(0);
  let pow = 1;
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
class WindowIndex {
  private readonly slots: Int32Array;
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
function anyCopyOfLength(g: Int32Array, corpus: Int32Array, L: number, cache: IndexCache): number {
  if (L > g.length || L > corpus.length) return -1;
  const index = indexOf(corpus, L, cache);
  const hs = windowHashes(g, L);
  for (let i = 0; i < hs.length; i++) if (index.has(g, i, hs[i]!)) return i;
  return -1;
}
function referenceReport(
  generated: Int32Array,
  corpus: Int32Array,
  ngram: number,
  cache: IndexCache = new Map(),
): Omit<MemorisationReport, 'longestExact' | 'shareExact'> {
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

// ---- Seeded texts: words of made-up syllables (so phrases recur, as in prose) and samples that
// mix such words with runs copied from the corpus, of lengths on both sides of 20.

const SYLLABLES = [
  'th',
  'e',
  'an',
  'd ',
  'of',
  ' ',
  'in',
  'g',
  're',
  'a',
  'st',
  ', ',
  'o',
  'u',
  'l',
];
function prose(rng: Rng, n: number): Int32Array {
  const words = Array.from({ length: 300 }, () =>
    Array.from({ length: 1 + rng.int(4) }, () => SYLLABLES[rng.int(SYLLABLES.length)]).join(''),
  );
  const out = new Int32Array(n);
  let i = 0;
  while (i < n) {
    // Zipf-like: a few words most of the time
    const w = words[Math.floor(words.length * rng.next() ** 3)]! + ' ';
    for (let c = 0; c < w.length && i < n; c++) out[i++] = w.charCodeAt(c);
  }
  return out;
}
function sample(rng: Rng, corpus: Int32Array, n: number): Int32Array {
  const out = new Int32Array(n);
  const filler = prose(rng, n);
  let i = 0;
  while (i < n) {
    if (rng.next() < 0.5) {
      const len = [5, 12, 19, 20, 21, 30, 60, 150][rng.int(8)]!;
      const from = rng.int(corpus.length - len);
      for (let c = 0; c < len && i < n; c++) out[i++] = corpus[from + c]!;
    } else {
      const len = 1 + rng.int(30);
      for (let c = 0; c < len && i < n; c++, i++) out[i] = filler[i]!;
    }
  }
  return out;
}
const figures = (
  r: MemorisationReport,
): Omit<MemorisationReport, 'longestExact' | 'shareExact'> => ({
  longestCopy: r.longestCopy,
  longestCopyAt: r.longestCopyAt,
  ngram: r.ngram,
  ngramsFound: r.ngramsFound,
  ngramsTotal: r.ngramsTotal,
  shareFound: r.shareFound,
});

test('the suffix array sorts every suffix', () => {
  const rng = new Rng(3);
  for (const n of [0, 1, 2, 17, 300]) {
    const text = Int32Array.from({ length: n }, () => rng.int(n % 2 ? 3 : 40));
    const naive = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
      for (let t = 0; ; t++) {
        if (a + t === n) return -1;
        if (b + t === n) return 1;
        if (text[a + t] !== text[b + t]) return text[a + t]! - text[b + t]!;
      }
    });
    assert.deepEqual([...suffixArray(text)], naive, `n = ${n}`);
  }
  assert.deepEqual([...suffixArray(Int32Array.from([5, 5, 5, 5]))], [3, 2, 1, 0]);
});

test('under the budget: exactly the figures of the reference computation', () => {
  const rng = new Rng(13);
  for (let trial = 0; trial < 6; trial++) {
    const corpus = prose(rng, 2_000 + rng.int(30_000));
    const index = MemorisationIndex.build(corpus);
    assert.equal(index.kind, 'suffix-array');
    assert.equal(index.bytes, 4 * corpus.length);
    const cache: IndexCache = new Map();
    for (let s = 0; s < 5; s++) {
      const g = sample(rng, corpus, [0, 7, 60, 400, 400][s]!);
      for (const n of [MEMORISATION.ngram, 8]) {
        const r = index.report(g, n);
        assert.deepEqual(figures(r), referenceReport(g, corpus, n, n === 8 ? new Map() : cache));
        assert.ok(r.longestExact && r.shareExact);
      }
    }
  }
  // a sample copied whole, and one from another alphabet
  const corpus = prose(rng, 5_000);
  const whole = corpus.slice(100, 500);
  assert.deepEqual(figures(memorisationReport(whole, corpus)), referenceReport(whole, corpus, 20));
  const other = Int32Array.from({ length: 50 }, (_, i) => 0x4e00 + (i % 7));
  assert.deepEqual(figures(memorisationReport(other, corpus)), referenceReport(other, corpus, 20));
});

test('over the budget: the index stays within it, and its figures are bounded by the exact ones', () => {
  const rng = new Rng(29);
  const corpus = prose(rng, 3_000_000); // 3 M characters, 12 MB as Int32
  const exact = MemorisationIndex.build(corpus); // a suffix array: 48 MB to build, under 64 MiB
  assert.equal(exact.kind, 'suffix-array');
  const samples = Array.from({ length: 8 }, () => sample(rng, corpus, 400));
  // 2 MiB: every 12th position, 9-grams, so every copy of 20+ characters is found
  // 256 KiB: every 92nd position, 8-grams, copies of 99+ characters
  for (const [budget, stride, exactFrom] of [
    [2 * 2 ** 20, 12, 20],
    [256 * 1024, 92, 99],
  ] as const) {
    const index = MemorisationIndex.build(corpus, { budgetBytes: budget });
    assert.equal(index.kind, 'sampled');
    assert.ok(index.bytes <= budget, `${index.bytes} bytes, budget ${budget}`);
    assert.ok(index.bytes > budget / 3, `${index.bytes} bytes: the budget is used`);
    assert.equal(index.exactFrom, exactFrom);
    assert.match(
      index.describe(),
      new RegExp(`1 position in ${stride} .*copies of ${exactFrom}\\+`),
    );
    let longCopies = 0;
    for (const g of samples) {
      const e = exact.matchLengths(g).ms;
      const { ms, capped } = index.matchLengths(g);
      assert.equal(capped, false);
      // never over: every hit is checked; exact wherever the copy is exactFrom long or more
      for (let i = 0; i < g.length; i++) {
        assert.ok(ms[i]! <= e[i]!, `position ${i}: ${ms[i]} > ${e[i]}`);
        if (e[i]! >= exactFrom) assert.equal(ms[i], e[i], `position ${i}`);
        if (e[i]! >= exactFrom) longCopies++;
      }
      const r = index.report(g);
      const x = exact.report(g);
      assert.equal(r.shareExact, exactFrom <= 20);
      if (r.shareExact) assert.equal(r.ngramsFound, x.ngramsFound);
      // the stated tolerance: between the 20-grams inside copies of exactFrom+ and the exact count
      const floor = [...e.subarray(0, x.ngramsTotal)].filter((m) => m >= exactFrom).length;
      assert.ok(r.ngramsFound >= floor && r.ngramsFound <= x.ngramsFound);
      assert.equal(r.longestExact, x.longestCopy >= exactFrom);
      if (r.longestExact) {
        assert.equal(r.longestCopy, x.longestCopy);
        assert.equal(r.longestCopyAt, x.longestCopyAt);
      } else assert.ok(r.longestCopy <= x.longestCopy);
    }
    assert.ok(longCopies > 100, 'the samples hold copies the sampled index must find');
  }
});

test('the suffix array is chosen while it fits the budget, building included', () => {
  const corpus = prose(new Rng(2), 1000);
  let max = 0;
  for (const c of corpus) max = Math.max(max, c);
  const need = 16 * 1000 + 4 * (max + 2);
  assert.equal(MemorisationIndex.build(corpus, { budgetBytes: need }).kind, 'suffix-array');
  assert.equal(MemorisationIndex.build(corpus, { budgetBytes: need - 1 }).kind, 'sampled');
});

test('a k-gram repeated beyond maxCandidates makes the figures inexact, not wrong', () => {
  const corpus = Int32Array.from({ length: 5000 }, (_, i) => 97 + (i % 2)); // abab...
  const index = MemorisationIndex.build(corpus, { budgetBytes: 4096, maxCandidates: 16 });
  const g = corpus.slice(0, 300);
  const r = index.report(g);
  assert.equal(r.longestExact, false);
  assert.equal(r.shareExact, false);
  assert.ok(r.longestCopy <= 300 && r.ngramsFound <= r.ngramsTotal);
  const roomy = MemorisationIndex.build(corpus, { budgetBytes: 4096, maxCandidates: 10_000 });
  assert.deepEqual(figures(roomy.report(g)), referenceReport(g, corpus, 20));
});
