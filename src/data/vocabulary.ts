import { UserError, show } from '../errors.ts';

// chars = sorted(set(text)) in code-point order, as the reference does. Characters are whole
// code points: a character outside the Basic Multilingual Plane is one symbol, never two halves.
//
// A vocabulary may be limited (--max-vocab, --min-count): the rarer characters of the text then
// all stand for one unknown symbol, itself a character (UNKNOWN_SYMBOL) and one entry of `chars`
// in its code-point place. A model records it as `unknown` beside `vocab`; one without has none.

/** What happens to a character outside the vocabulary: an error naming it, dropped, or mapped to
 * the unknown symbol (only a vocabulary that has one can map). */
export type UnknownPolicy = 'error' | 'skip' | 'map';
export const UNKNOWN_POLICIES: readonly UnknownPolicy[] = ['error', 'skip', 'map'];

/** The unknown symbol of a limited vocabulary: U+FFFD REPLACEMENT CHARACTER, '�'. */
export const UNKNOWN_SYMBOL = '\uFFFD';

export interface VocabularyLimits {
  /** At most this many entries, the unknown symbol included (the most frequent characters kept). */
  maxVocab?: number;
  /** Characters seen fewer times than this are mapped to the unknown symbol. */
  minCount?: number;
}

export class Vocabulary {
  readonly chars: readonly string[];
  /** The symbol the characters outside the vocabulary stand for (one of `chars`), if any. */
  readonly unknownSymbol: string | undefined;
  private readonly index: Map<string, number>;

  constructor(chars: readonly string[], unknownSymbol?: string) {
    this.chars = [...chars];
    this.index = new Map(this.chars.map((c, i) => [c, i]));
    if (this.index.size !== this.chars.length)
      throw new RangeError('Vocabulary has a repeated character');
    if (unknownSymbol !== undefined && !this.index.has(unknownSymbol)) {
      throw new RangeError(`the unknown symbol ${show(unknownSymbol)} is not in the vocabulary`);
    }
    this.unknownSymbol = unknownSymbol;
  }

  static fromText(text: string): Vocabulary {
    return Vocabulary.fromCounts(countChars(text));
  }

  /**
   * The vocabulary of a counted text, limited: characters seen fewer than `minCount` times, and
   * all but the `maxVocab` most frequent (ties broken by code point, so the choice is
   * deterministic), stand for UNKNOWN_SYMBOL. The symbol is added only when some character is
   * mapped (a limit that keeps everything gives fromText's vocabulary), and counts toward
   * `maxVocab`. Without limits: fromText's vocabulary.
   */
  static fromCounts(counts: CharCounts, limits: VocabularyLimits = {}): Vocabulary {
    const { maxVocab = Infinity, minCount = 1 } = limits;
    if (!(maxVocab >= 1)) throw new RangeError(`maxVocab must be >= 1, got ${show(maxVocab)}`);
    const all = counts.entries(); // [code point, count], code points ascending
    let kept = ranked(all, minCount).slice(0, maxVocab);
    const symbol = UNKNOWN_SYMBOL.codePointAt(0)!;
    const mapped = kept.length < all.length;
    if (mapped && !kept.includes(symbol)) {
      if (kept.length >= maxVocab) kept = kept.slice(0, maxVocab - 1); // room for the symbol
      kept.push(symbol);
    }
    const chars = kept.sort((a, b) => a - b).map((cp) => String.fromCodePoint(cp));
    return new Vocabulary(chars, mapped ? UNKNOWN_SYMBOL : undefined);
  }

  get size(): number {
    return this.chars.length;
  }

  has(ch: string): boolean {
    return this.index.has(ch);
  }

  indexOf(ch: string): number | undefined {
    return this.index.get(ch);
  }

  /** The index a character is encoded as: its own, else the unknown symbol's (undefined: neither). */
  tokenOf(ch: string): number | undefined {
    const own = this.index.get(ch);
    if (own !== undefined || this.unknownSymbol === undefined) return own;
    return this.index.get(this.unknownSymbol);
  }

  /** The distinct characters of `text` that are not in this vocabulary, in order of appearance. */
  unknown(text: string): string[] {
    const out = new Set<string>();
    for (const ch of text) if (!this.index.has(ch)) out.add(ch);
    return [...out];
  }

  /**
   * `text` with its characters outside the vocabulary named in an error (`what` says whose),
   * dropped, or replaced by the unknown symbol. A text without such characters comes back as it
   * is whatever the policy; `map` with no unknown symbol is an error that suggests `skip`.
   */
  applyUnknown(text: string, policy: UnknownPolicy = 'error', what = 'text'): string {
    if (!UNKNOWN_POLICIES.includes(policy)) {
      throw new UserError(`unknown must be "error", "skip" or "map", got ${show(policy)}`);
    }
    const unknown = this.unknown(text);
    if (unknown.length === 0) return text;
    if (policy !== 'skip') this.refuse(unknown, policy, what);
    const replacement = policy === 'map' ? this.unknownSymbol! : '';
    let out = '';
    for (const ch of text) out += this.index.has(ch) ? ch : replacement;
    return out;
  }

  /**
   * Encode to indices. A character outside the vocabulary is an error that names it, or with
   * `unknown: 'map'` the unknown symbol's index (how a limited vocabulary encodes its corpus).
   */
  encode(text: string, what = 'text', unknown: 'error' | 'map' = 'error'): Int32Array {
    const missing = this.unknown(text);
    if (missing.length > 0) this.refuse(missing, unknown, what);
    const unk = this.unknownSymbol === undefined ? -1 : this.index.get(this.unknownSymbol)!;
    const out = new Int32Array(text.length); // code points <= UTF-16 units
    let n = 0;
    for (const ch of text) out[n++] = this.index.get(ch) ?? unk;
    return n === text.length ? out : out.slice(0, n);
  }

  decode(indices: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < indices.length; i++) s += this.chars[indices[i]!] ?? '';
    return s;
  }

  /** Throws the error for characters outside the vocabulary unless `policy` can map them. */
  private refuse(unknown: string[], policy: 'error' | 'map', what: string): void {
    if (policy === 'map' && this.unknownSymbol !== undefined) return;
    const shown = unknown
      .slice(0, 10)
      .map((c) => JSON.stringify(c))
      .join(', ');
    const more = unknown.length > 10 ? ` and ${unknown.length - 10} more` : '';
    const message = `${what} has characters outside the model's vocabulary: ${shown}${more}`;
    if (policy === 'error') throw new UserError(message);
    throw new UserError(
      `${message}; this model has no unknown symbol to map them to ` +
        '(it was trained without --max-vocab or --min-count): use skip to drop them',
    );
  }
}

/**
 * How often each code point occurs in a text that may come in chunks (a streamed corpus):
 * `add` each chunk in order. A surrogate pair cut between two chunks is still one code point.
 */
export class CharCounts {
  private readonly bmp = new Float64Array(0x10000); // counts of U+0000..U+FFFF by code unit
  private readonly astral = new Map<number, number>();
  private pending = -1; // a high surrogate that ended the last chunk
  /** Characters (code points) counted. */
  total = 0;

  /** Counts made elsewhere (a prepared corpus, src/corpus/prepare.ts): [code point, count]. */
  static fromEntries(entries: Iterable<readonly [number, number]>): CharCounts {
    const counts = new CharCounts();
    for (const [cp, n] of entries) {
      if (cp < 0x10000) counts.bmp[cp] = counts.bmp[cp]! + n;
      else counts.astral.set(cp, (counts.astral.get(cp) ?? 0) + n);
      counts.total += n;
    }
    return counts;
  }

  /** Count the characters of `chunk`, the text after the previous chunk. */
  add(chunk: string): this {
    const { bmp } = this;
    if (chunk.length === 0) return this;
    let i = 0;
    if (this.pending >= 0) {
      const hi = this.pending;
      this.pending = -1;
      const lo = chunk.charCodeAt(0);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        this.addAstral(((hi - 0xd800) << 10) + (lo - 0xdc00) + 0x10000);
        i = 1;
      } else bmp[hi]!++; // a lone surrogate counts as itself, as `for (const ch of text)` reads it
      this.total++;
    }
    const n = chunk.length;
    let total = 0;
    for (; i < n; i++) {
      const c = chunk.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff) {
        if (i + 1 === n) {
          this.pending = c; // the rest of it comes with the next chunk
          break;
        }
        const lo = chunk.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          this.addAstral(((c - 0xd800) << 10) + (lo - 0xdc00) + 0x10000);
          i++;
          total++;
          continue;
        }
      }
      bmp[c]!++;
      total++;
    }
    this.total += total;
    return this;
  }

  /** The text has ended: a high surrogate left over from the last chunk counts as itself. */
  end(): this {
    if (this.pending >= 0) {
      this.bmp[this.pending]!++;
      this.total++;
      this.pending = -1;
    }
    return this;
  }

  /** Times `ch` (one code point) was counted. */
  count(ch: string): number {
    const cp = ch.codePointAt(0)!;
    return cp < 0x10000 ? this.bmp[cp]! : (this.astral.get(cp) ?? 0);
  }

  /** Every counted code point with its count, code points ascending (after `end()`). */
  entries(): [codePoint: number, count: number][] {
    const out: [number, number][] = [];
    for (let cp = 0; cp < 0x10000; cp++) if (this.bmp[cp]! > 0) out.push([cp, this.bmp[cp]!]);
    const astral = [...this.astral.entries()].sort((a, b) => a[0] - b[0]);
    return out.concat(astral);
  }

  /** Distinct code points counted. */
  get distinct(): number {
    let n = this.astral.size;
    for (let cp = 0; cp < 0x10000; cp++) if (this.bmp[cp]! > 0) n++;
    return n;
  }

  /** Characters of the text that `vocab` does not hold (they are encoded as its unknown symbol). */
  mappedBy(vocab: Vocabulary): number {
    let n = 0;
    for (const [cp, count] of this.entries()) if (!vocab.has(String.fromCodePoint(cp))) n += count;
    return n;
  }

  private addAstral(cp: number): void {
    this.astral.set(cp, (this.astral.get(cp) ?? 0) + 1);
  }
}

/**
 * A model's vocabulary extended by a new text's characters (fine-tuning, `train --init-from`):
 * the model's characters keep their ids, in its order, always, whatever the limits; the text's
 * characters it lacks are appended after them in code-point order. The limits apply to those new
 * characters only, as fromCounts applies them to a whole text: --min-count drops the new ones seen
 * fewer than c times, and --max-vocab n keeps the n − (model's size) most frequent (ties by code
 * point). A dropped character is encoded as the unknown symbol: the model's own when it has one
 * (or holds U+FFFD), else UNKNOWN_SYMBOL appended as one more new character, counted in n.
 * `what` names the model in the error for an n too small for the model's characters (and for an
 * unknown symbol, when it has none and the text brings new characters).
 */
export function extendVocabulary(
  base: Vocabulary,
  counts: CharCounts,
  limits: VocabularyLimits = {},
  what = 'the model',
): { vocab: Vocabulary; added: string[] } {
  const missing = counts.entries().filter(([cp]) => !base.has(String.fromCodePoint(cp)));
  const own = base.unknownSymbol ?? (base.has(UNKNOWN_SYMBOL) ? UNKNOWN_SYMBOL : undefined);
  const { maxVocab = Infinity, minCount = 1 } = limits;
  const room = maxVocab - base.size; // new characters that fit, a symbol of our own included
  const least = base.size + (own === undefined && missing.length > 0 ? 1 : 0);
  if (maxVocab < least) {
    throw new UserError(
      `--max-vocab ${maxVocab} is below the ${base.size} characters of ${what}, which are always kept${least > base.size ? ', plus the unknown symbol' : ''}: give at least ${least}`,
    );
  }
  let kept = ranked(missing, minCount).slice(0, room);
  const dropped = kept.length < missing.length;
  const symbol = UNKNOWN_SYMBOL.codePointAt(0)!;
  if (dropped && own === undefined && !kept.includes(symbol)) {
    if (kept.length >= room) kept = kept.slice(0, room - 1); // room for the symbol
    kept.push(symbol);
  }
  const added = kept.sort((a, b) => a - b).map((cp) => String.fromCodePoint(cp));
  const unknown = dropped ? (own ?? UNKNOWN_SYMBOL) : base.unknownSymbol;
  return { vocab: new Vocabulary([...base.chars, ...added], unknown), added };
}

/** Code points seen at least `minCount` times, the most frequent first (ties: code point). */
function ranked(entries: [codePoint: number, count: number][], minCount: number): number[] {
  return entries
    .filter(([, n]) => n >= minCount)
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .map(([cp]) => cp);
}

/** Count the characters of a whole text (see CharCounts for a text in chunks). */
export function countChars(text: string): CharCounts {
  return new CharCounts().add(text).end();
}

/**
 * The dry run's line about a limited vocabulary: "2,417 characters, 1,912 kept, 0.3% of the text
 * mapped to the unknown symbol "�"".
 */
export function describeLimits(counts: CharCounts, vocab: Vocabulary): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const distinct = counts.distinct;
  const kept = vocab.chars.filter((c) => counts.count(c) > 0).length; // as themselves
  const share = counts.total > 0 ? counts.mappedBy(vocab) / counts.total : 0;
  const pct = share > 0 && share < 0.0005 ? 'under 0.1%' : `${(100 * share).toFixed(1)}%`;
  const symbol = vocab.unknownSymbol === undefined ? '' : ` ${JSON.stringify(vocab.unknownSymbol)}`;
  return `${n(distinct)} characters, ${n(kept)} kept, ${pct} of the text mapped to the unknown symbol${symbol}`;
}
