// How much of a generated text is recited from the training text: the longest run copied
// verbatim, and the share of the generated n-character sequences (n = 20) found in the corpus.
// Both work on token indices (code points or vocabulary ids).
//
// The corpus is indexed once per run (MemorisationIndex.build), in at most a fixed number of bytes
// (MEMORISATION.indexBytes), whatever the corpus's size:
// - a small corpus (16 bytes a character fit the budget while building) gets a suffix array, and
//   the figures are exact;
// - a larger one gets a table of the k-grams starting at every s-th position, s chosen so the
//   table fits. Every hit is checked against the text and extended both ways to a maximal match,
//   so nothing is ever over-counted, and a copy of at least `exactFrom` = k + s - 1 characters
//   always contains a whole indexed k-gram, so it is always found. Shorter copies may be missed:
//   the figures are then lower bounds, and the report says so.
// Both reduce to the matching statistics ms[i]: the longest prefix of generated[i..] found in
// the corpus (exactly, or a lower bound equal to it wherever it is at least exactFrom).

import { MemoryTokens, type TokenSource } from '../data/windows.ts';
import { MEMORISATION } from '../defaults.ts';

export interface MemorisationReport {
  longestCopy: number; // characters
  longestCopyAt: number; // its start in the generated text
  ngram: number;
  ngramsFound: number; // generated n-grams present in the corpus
  ngramsTotal: number;
  shareFound: number; // ngramsFound / ngramsTotal (0 when the text is shorter than n)
  longestExact: boolean; // false: longestCopy is a lower bound (the true one is below exactFrom)
  shareExact: boolean; // false: ngramsFound is a lower bound (n is below exactFrom)
}

/** The training text as token ids; any typed array of them (1, 2 or 4 bytes per id). */
export type TokenText = Readonly<ArrayLike<number>>;

/**
 * A corpus too large to hold (a TokenSource that is not in memory: a run's token file) read
 * through a few cached pages of ids: the index's build walks it in order, and a look-up reads
 * the few places its hits point to and the matches around them.
 */
class PagedText {
  private readonly pages = new Map<number, Int32Array>(); // page number → its ids, oldest first

  constructor(
    private readonly source: TokenSource,
    private readonly pageIds = 1 << 16,
    private readonly maxPages = 16,
  ) {}

  get length(): number {
    return this.source.length;
  }

  at(i: number): number | undefined {
    if (!(i >= 0 && i < this.source.length)) return undefined;
    const n = Math.floor(i / this.pageIds);
    let page = this.pages.get(n);
    if (!page) {
      if (this.pages.size >= this.maxPages) this.pages.delete(this.pages.keys().next().value!);
      const from = n * this.pageIds;
      page = new Int32Array(Math.min(this.pageIds, this.source.length - from));
      this.source.read(from, page.length, page);
      this.pages.set(n, page);
    }
    return page[i - n * this.pageIds];
  }
}

/** What the index reads: the ids in memory, or pages of a source that is not. */
type Corpus = TokenText | PagedText;
const idAt = (c: Corpus, i: number): number | undefined =>
  c instanceof PagedText ? c.at(i) : c[i];

/** A source in memory as its array; any other source paged (never read whole). */
function corpusOf(corpus: TokenText | TokenSource): Corpus {
  if (corpus instanceof MemoryTokens) return corpus.ids;
  if ('read' in corpus) return new PagedText(corpus);
  return corpus;
}

/** Every id of `c` in an array (a corpus small enough for the suffix array). */
function inMemory(c: Corpus): TokenText {
  if (!(c instanceof PagedText)) return c;
  const ids = new Int32Array(c.length);
  for (let i = 0; i < ids.length; i++) ids[i] = c.at(i)!;
  return ids;
}

export interface MemorisationIndexOptions {
  /** the most bytes of typed arrays the index holds, while building too */
  budgetBytes?: number;
  /** corpus positions checked per generated position; beyond it the figures are inexact */
  maxCandidates?: number;
  /** the copy length the sampled index must always find when it can (the report's n) */
  target?: number;
}

const SA_BYTES_PER_CHAR = 16; // while building: suffixes, ranks, the next ranks, counts (Int32)
const MIN_K = 8; // shorter k-grams are too common: every look-up would check thousands of hits
const MAX_K = 16;

/** The corpus index the report runs against: build it once, ask it for any number of texts. */
export abstract class MemorisationIndex {
  abstract readonly kind: 'suffix-array' | 'sampled';
  /** bytes of the typed arrays it keeps (the corpus itself not counted: it is the caller's) */
  abstract readonly bytes: number;
  /** copies at least this long are always found (1 when every copy is) */
  abstract readonly exactFrom: number;

  protected constructor(readonly corpus: Corpus) {}

  /**
   * Picks the exact suffix array when it fits the budget, the sampled table otherwise. A source
   * that is not in memory (a large run's token file) is read in pages, never held.
   */
  static build(
    text: TokenText | TokenSource,
    opts: MemorisationIndexOptions = {},
  ): MemorisationIndex {
    const budget = opts.budgetBytes ?? MEMORISATION.indexBytes;
    const maxCandidates = opts.maxCandidates ?? MEMORISATION.maxCandidates;
    const corpus = corpusOf(text);
    // the length alone rules a large corpus out before any id is read
    if (SA_BYTES_PER_CHAR * corpus.length <= budget) {
      const held = inMemory(corpus);
      if (suffixArrayBuildBytes(held) <= budget) return new SuffixArrayIndex(held);
    }
    return new SampledIndex(corpus, budget, opts.target ?? MEMORISATION.ngram, maxCandidates);
  }

  /**
   * ms[i]: the longest prefix of generated[i..] found in the corpus, exact wherever it is at
   * least exactFrom (a lower bound below that); `capped`: some look-up stopped at maxCandidates.
   */
  abstract matchLengths(generated: Int32Array): { ms: Int32Array; capped: boolean };

  report(generated: Int32Array, ngram: number = MEMORISATION.ngram): MemorisationReport {
    const { ms, capped } = this.matchLengths(generated);
    let longest = 0;
    let at = 0;
    for (let i = 0; i < ms.length; i++) {
      if (ms[i]! > longest) {
        longest = ms[i]!;
        at = i; // the first start of the longest copy
      }
    }
    const total = Math.max(0, generated.length - ngram + 1);
    let found = 0;
    for (let i = 0; i < total; i++) if (ms[i]! >= ngram) found++;
    return {
      longestCopy: longest,
      longestCopyAt: at,
      ngram,
      ngramsFound: found,
      ngramsTotal: total,
      shareFound: total ? found / total : 0,
      longestExact: !capped && (this.exactFrom <= 1 || longest >= this.exactFrom),
      shareExact: !capped && ngram >= this.exactFrom,
    };
  }

  /** One line for the log: what it holds, its size, which figures are exact. */
  abstract describe(): string;
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function suffixArrayBuildBytes(corpus: TokenText): number {
  let max = 0;
  for (let i = 0; i < corpus.length; i++) if (corpus[i]! > max) max = corpus[i]!;
  return SA_BYTES_PER_CHAR * corpus.length + 4 * (max + 2); // + the first pass's counts per id
}

/** Every suffix of the corpus in sorted order: exact matching statistics by binary search. */
class SuffixArrayIndex extends MemorisationIndex {
  readonly kind = 'suffix-array';
  readonly exactFrom = 1;
  private readonly sa: Int32Array;
  declare readonly corpus: TokenText;
  get bytes(): number {
    return this.sa.byteLength;
  }

  constructor(corpus: TokenText) {
    super(corpus);
    this.sa = suffixArray(corpus);
  }

  describe(): string {
    return `a suffix array of the ${this.corpus.length} training characters (${mib(this.bytes)}): exact`;
  }

  matchLengths(g: Int32Array): { ms: Int32Array; capped: boolean } {
    const { sa, corpus } = this;
    const N = corpus.length;
    const ms = new Int32Array(g.length);
    // the suffixes in sa[lo..hi) all start with g[i..i+l); they are sorted by their character at
    // offset l (a suffix that ends there first), so the next character narrows them by bisection
    const key = (j: number, l: number): number => (sa[j]! + l < N ? corpus[sa[j]! + l]! : -1);
    for (let i = 0; i < g.length; i++) {
      let lo = 0;
      let hi = N;
      let l = 0;
      while (i + l < g.length) {
        const c = g[i + l]!;
        let a = lo;
        let b = hi;
        while (a < b) {
          const m = (a + b) >>> 1;
          if (key(m, l) < c) a = m + 1;
          else b = m;
        }
        let e = a;
        b = hi;
        while (e < b) {
          const m = (e + b) >>> 1;
          if (key(m, l) <= c) e = m + 1;
          else b = m;
        }
        if (a === e) break;
        lo = a;
        hi = e;
        l++;
      }
      ms[i] = l;
    }
    return { ms, capped: false };
  }
}

/**
 * Prefix doubling (Manber–Myers) with counting sorts: O(N log L) for a longest repeat L, in four
 * Int32Arrays of N (the ranks, the next ranks, the counts, the result) plus one count per id.
 */
export function suffixArray(text: TokenText): Int32Array {
  const N = text.length;
  const sa = new Int32Array(N);
  if (N === 0) return sa;
  let max = 0;
  for (let i = 0; i < N; i++) if (text[i]! > max) max = text[i]!;
  let rank = new Int32Array(N);
  {
    const count = new Int32Array(max + 2);
    for (let i = 0; i < N; i++) count[text[i]! + 1]!++;
    for (let c = 1; c < count.length; c++) count[c]! += count[c - 1]!;
    for (let i = 0; i < N; i++) sa[count[text[i]!]!++] = i;
    let r = 0;
    for (let j = 0; j < N; j++) {
      if (j > 0 && text[sa[j]!] !== text[sa[j - 1]!]) r++;
      rank[sa[j]!] = r;
    }
    if (r === N - 1) return sa;
  }
  let tmp = new Int32Array(N);
  const count = new Int32Array(N);
  for (let h = 1; ; h <<= 1) {
    // by the second key (rank[i + h], none first), then stably by the first (rank[i])
    let p = 0;
    for (let i = N - h; i < N; i++) tmp[p++] = i;
    for (let j = 0; j < N; j++) if (sa[j]! >= h) tmp[p++] = sa[j]! - h;
    count.fill(0);
    for (let i = 0; i < N; i++) count[rank[i]!]!++;
    for (let c = 1; c < N; c++) count[c]! += count[c - 1]!;
    for (let j = N - 1; j >= 0; j--) sa[--count[rank[tmp[j]!]!]!] = tmp[j]!;
    const second = (i: number): number => (i + h < N ? rank[i + h]! : -1);
    let r = 0;
    tmp[sa[0]!] = 0; // tmp now holds the next ranks
    for (let j = 1; j < N; j++) {
      const x = sa[j]!;
      const y = sa[j - 1]!;
      if (rank[x] !== rank[y] || second(x) !== second(y)) r++;
      tmp[x] = r;
    }
    [rank, tmp] = [tmp, rank];
    if (r === N - 1 || h >= N) return sa;
  }
}

// Polynomial hash modulo 2^32 (Math.imul), then a murmur3 finaliser so the low bits pick buckets
// evenly; only a filter: every hit is checked character by character.
const BASE = 0x01000193;
function kgramHash(s: Corpus, at: number, k: number): number {
  let h = 0;
  for (let i = 0; i < k; i++) h = (Math.imul(h, BASE) + idAt(s, at + i)! + 1) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The k-grams at positions 0, s, 2s, ... in buckets by hash: `start` [buckets + 1] offsets into
 * `pos` [entries] (positions ascending within a bucket). At most budget / 8 entries, so
 * s = ceil(positions / capacity), and k = target + 1 - s within [8, 16], which keeps
 * exactFrom = k + s - 1 at the target (20) as long as s ≤ 13.
 */
class SampledIndex extends MemorisationIndex {
  readonly kind = 'sampled';
  readonly stride: number;
  readonly k: number;
  readonly exactFrom: number;
  private readonly start: Int32Array;
  private readonly pos: Uint32Array; // positions up to 2^32 - 1 (CORPUS.maxBytes: 4 GiB)
  private readonly mask: number;
  get bytes(): number {
    return this.start.byteLength + this.pos.byteLength;
  }

  constructor(
    corpus: Corpus,
    budget: number,
    target: number,
    private readonly maxCandidates: number,
  ) {
    super(corpus);
    const N = corpus.length;
    if (N > 2 ** 32)
      throw new RangeError(`a memorisation index holds up to 2^32 characters, not ${N}`);
    const capacity = Math.floor((budget - 4) / 8);
    if (capacity < 1) throw new RangeError(`a memorisation index needs more than ${budget} bytes`);
    const s = Math.max(1, Math.ceil((N - MIN_K + 1) / capacity));
    const k = Math.min(MAX_K, Math.max(MIN_K, target + 1 - s));
    this.stride = s;
    this.k = k;
    this.exactFrom = k + s - 1;
    const entries = N >= k ? Math.floor((N - k) / s) + 1 : 0;
    let buckets = 1;
    while (buckets * 2 <= Math.max(1, entries)) buckets *= 2;
    this.mask = buckets - 1;
    this.start = new Int32Array(buckets + 1);
    this.pos = new Uint32Array(entries);
    const { start, pos, mask } = this;
    for (let e = 0; e < entries; e++) start[(kgramHash(corpus, e * s, k) & mask) + 1]!++;
    for (let b = 1; b <= buckets; b++) start[b]! += start[b - 1]!;
    // fill each bucket from its end, positions descending, so that start[b] ends at its beginning
    for (let b = 0; b < buckets; b++) start[b] = start[b + 1]!;
    for (let e = entries - 1; e >= 0; e--) {
      pos[--start[kgramHash(corpus, e * s, k) & mask]!] = e * s;
    }
  }

  describe(): string {
    const s = this.stride;
    return (
      `${s === 1 ? 'every position' : `1 position in ${s}`} of the ${this.corpus.length} training characters (${mib(this.bytes)}): ` +
      `copies of ${this.exactFrom}+ characters are always found, shorter ones may be missed (figures marked ≥)`
    );
  }

  matchLengths(g: Int32Array): { ms: Int32Array; capped: boolean } {
    const { corpus, k, start, pos, mask } = this;
    const N = corpus.length;
    const ms = new Int32Array(g.length);
    let capped = false;
    // diagonal (corpus - generated offset) -> where the last maximal match found on it ends: a
    // later hit on the same diagonal before that end lies inside that match
    const ends = new Map<number, number>();
    for (let j = 0; j + k <= g.length; j++) {
      const b = kgramHash(g, j, k) & mask;
      let checked = 0;
      for (let e = start[b]!; e < start[b + 1]!; e++) {
        if (++checked > this.maxCandidates) {
          capped = true;
          break;
        }
        const p = pos[e]!;
        let t = 0;
        while (t < k && idAt(corpus, p + t) === g[j + t]) t++;
        if (t < k) continue;
        const d = p - j;
        if ((ends.get(d) ?? -1) > j) continue;
        let a = j; // extend to the maximal match g[a..z) = corpus[a + d..z + d)
        while (a > 0 && a + d > 0 && g[a - 1] === idAt(corpus, a + d - 1)) a--;
        let z = j + k;
        while (z < g.length && z + d < N && g[z] === idAt(corpus, z + d)) z++;
        ends.set(d, z);
        for (let i = a; i < z; i++) if (z - i > ms[i]!) ms[i] = z - i;
      }
    }
    return { ms, capped };
  }
}

/** One text against a corpus indexed for it alone (tests, one-off use); a run builds the index once. */
export function memorisationReport(
  generated: Int32Array,
  corpus: TokenText | TokenSource,
  ngram: number = MEMORISATION.ngram,
  opts: MemorisationIndexOptions = {},
): MemorisationReport {
  return MemorisationIndex.build(corpus, { target: ngram, ...opts }).report(generated, ngram);
}
