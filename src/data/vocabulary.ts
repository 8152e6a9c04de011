import { UserError } from '../errors.ts';

// chars = sorted(set(text)) in code-point order, as the reference does. Characters are whole
// code points: a character outside the Basic Multilingual Plane is one symbol, never two halves.

export class Vocabulary {
  readonly chars: readonly string[];
  private readonly index: Map<string, number>;

  constructor(chars: readonly string[]) {
    this.chars = [...chars];
    this.index = new Map(this.chars.map((c, i) => [c, i]));
    if (this.index.size !== this.chars.length)
      throw new RangeError('Vocabulary has a repeated character');
  }

  static fromText(text: string): Vocabulary {
    const set = new Set<number>();
    for (const ch of text) set.add(ch.codePointAt(0)!);
    return new Vocabulary([...set].sort((a, b) => a - b).map((cp) => String.fromCodePoint(cp)));
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

  /** The distinct characters of `text` that are not in this vocabulary, in order of appearance. */
  unknown(text: string): string[] {
    const out = new Set<string>();
    for (const ch of text) if (!this.index.has(ch)) out.add(ch);
    return [...out];
  }

  /** Encode to indices; a character outside the vocabulary is an error that names it. */
  encode(text: string, what = 'text'): Int32Array {
    const unknown = this.unknown(text);
    if (unknown.length > 0) {
      const shown = unknown
        .slice(0, 10)
        .map((c) => JSON.stringify(c))
        .join(', ');
      const more = unknown.length > 10 ? ` and ${unknown.length - 10} more` : '';
      throw new UserError(`${what} has characters outside the model's vocabulary: ${shown}${more}`);
    }
    const out: number[] = [];
    for (const ch of text) out.push(this.index.get(ch)!);
    return Int32Array.from(out);
  }

  decode(indices: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < indices.length; i++) s += this.chars[indices[i]!] ?? '';
    return s;
  }
}
