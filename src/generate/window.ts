import type { UnknownPolicy } from '../data/vocabulary.ts';
import { GENERATE } from '../defaults.ts';
import { UserError, show } from '../errors.ts';
import type { CharModel } from '../model/char-model.ts';
import { Rng } from '../sampling/rng.ts';
import { Sampler, randomSeed, samplerFrom } from '../sampling/sampler.ts';

// Reference-mode generation (Deep Learning with Python 8.1): every new character is predicted
// from the last `maxlen` characters of the text so far, re-read from a zero state, exactly as the
// notebook re-encodes `generated_text` and calls `model.predict` for each character. Several
// streams (the reference's four temperatures) advance together, one engine batch per step.

/** The most characters one call may generate; larger requests are refused as mistakes. */
export const MAX_GENERATE_LENGTH = 10_000_000;

export interface WindowOptions {
  /** One prompt per stream, already prepared (lowercased when the model is); at least one character each. */
  prompts: string[];
  /** One sampler per stream. */
  samplers: Sampler[];
  /** Characters to generate per stream. */
  length: number;
  /** Shared by all streams: at every step the streams draw in stream order. */
  rng: Rng;
  /** Called once per step with the new character of each stream (a fresh array). */
  onChars?: (chars: string[]) => void;
}

export function checkLength(length: unknown): number {
  if (
    typeof length !== 'number' ||
    !Number.isInteger(length) ||
    length < 0 ||
    length > MAX_GENERATE_LENGTH
  ) {
    throw new UserError(
      `length must be an integer from 0 to ${MAX_GENERATE_LENGTH}, got ${show(length)}`,
    );
  }
  return length;
}

/**
 * A seed text as token indices. A character outside the vocabulary, or an empty seed (the
 * reference always starts from at least one character), is a UserError naming `what`.
 */
export function encodeSeed(model: CharModel, text: string, what = 'prompt'): Int32Array {
  const tokens = model.vocab.encode(text, what);
  if (tokens.length === 0) throw new UserError(`${what} is empty: need at least one character`);
  return tokens;
}

/**
 * The last `maxlen` tokens of a growing text, in a buffer of 2·maxlen that is compacted when
 * full, so that appending is O(1) amortised and the window is always one contiguous subarray.
 */
export class TokenWindow {
  private readonly buf: Int32Array;
  private len: number;

  constructor(
    private readonly maxlen: number,
    seed: Int32Array,
  ) {
    this.buf = new Int32Array(2 * maxlen);
    const keep = Math.min(seed.length, maxlen);
    this.buf.set(seed.subarray(seed.length - keep));
    this.len = keep;
  }

  /** Length of the current window: min(maxlen, characters so far). */
  get size(): number {
    return Math.min(this.len, this.maxlen);
  }

  window(): Int32Array {
    return this.buf.subarray(this.len - this.size, this.len);
  }

  push(token: number): void {
    if (this.len === this.buf.length) {
      this.buf.copyWithin(0, this.len - (this.maxlen - 1), this.len); // keep maxlen - 1, then append
      this.len = this.maxlen - 1;
    }
    this.buf[this.len++] = token;
  }
}

/**
 * The generation of `length` characters for each stream, one step at a time: each value is the
 * array of the new characters, one per stream (a fresh array). Arguments are checked at once;
 * the model runs as the iterator is advanced, so a caller can stop early or pause between steps
 * (the CLI yields to the event loop to notice a closed stdout). Deterministic for a given rng
 * state: each step predicts every stream's window, then the streams draw in stream order (a
 * greedy sampler draws nothing).
 *
 * Streams whose windows have the same length go through the engine as one batch. Windows differ
 * only while a seed shorter than maxlen is still growing, so streams with seeds of equal length
 * (or all at least maxlen, as in the reference) are always one batch.
 */
export function windowSteps(
  model: CharModel,
  opts: Omit<WindowOptions, 'onChars'>,
): IterableIterator<string[]> {
  const { prompts, samplers, rng } = opts;
  const length = checkLength(opts.length);
  const S = prompts.length;
  if (S === 0) throw new RangeError('generation needs at least one stream');
  if (samplers.length !== S) {
    throw new RangeError(`generation got ${S} prompts but ${samplers.length} samplers`);
  }
  const windows = prompts.map(
    (prompt, s) =>
      new TokenWindow(
        model.maxlen,
        encodeSeed(model, prompt, S === 1 ? 'prompt' : `seed ${s + 1}`),
      ),
  );
  return steps(model, windows, samplers, rng, length);
}

function* steps(
  model: CharModel,
  windows: TokenWindow[],
  samplers: readonly Sampler[],
  rng: Rng,
  length: number,
): Generator<string[], void, undefined> {
  const { maxlen, vocab } = model;
  const V = vocab.size;
  const S = windows.length;
  const x = new Int32Array(S * maxlen); // one batch of windows [n×W]
  const rows = new Int32Array(S); // the streams in the current batch
  const batched = new Uint8Array(S); // streams already predicted this step
  const probs = new Float32Array(S * V); // every stream's distribution this step [S×V]
  for (let i = 0; i < length; i++) {
    batched.fill(0);
    for (let first = 0; first < S; first++) {
      if (batched[first]) continue;
      const W = windows[first]!.size;
      let n = 0;
      for (let s = first; s < S; s++) {
        const win = windows[s]!;
        if (batched[s] || win.size !== W) continue;
        x.set(win.window(), n * W);
        rows[n++] = s;
        batched[s] = 1;
      }
      const p = model.predictTokens(x, n, W); // [n×V], valid until the next predict
      for (let r = 0; r < n; r++) probs.set(p.subarray(r * V, (r + 1) * V), rows[r]! * V);
    }
    const chars = new Array<string>(S);
    for (let s = 0; s < S; s++) {
      const next = samplers[s]!.next(probs.subarray(s * V, (s + 1) * V), rng);
      windows[s]!.push(next);
      chars[s] = vocab.chars[next]!;
    }
    yield chars;
  }
}

/**
 * Generate `length` characters for each stream and return each stream's generated text (without
 * its seed); `onChars` sees every step's characters as they come. See windowSteps.
 */
export function generateWindow(model: CharModel, opts: WindowOptions): string[] {
  const out = new Array<string>(opts.prompts.length).fill('');
  for (const chars of windowSteps(model, opts)) {
    for (let s = 0; s < chars.length; s++) out[s] += chars[s]!;
    opts.onChars?.(chars);
  }
  return out;
}

export interface GenerateTextOptions {
  /** The text to continue; lowercased first when the model was trained lowercased. Not empty. */
  prompt: string;
  /** Characters to generate (0 to MAX_GENERATE_LENGTH). */
  length: number;
  /** Sampling options, as for Sampler: with none, draws from the model's distribution (T = 1). */
  temperature?: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  /** Seed of the random draws; a random one when undefined. */
  seed?: number;
  /** Prompt characters outside the vocabulary: an error (default), dropped, or mapped (see generate()). */
  unknown?: UnknownPolicy;
  /** Called with each new character as it is produced. */
  onText?: (text: string) => void;
}

/** One stream of reference-mode generation from a prompt, one character per step. */
export function textSteps(
  model: CharModel,
  opts: Omit<GenerateTextOptions, 'onText'>,
): IterableIterator<string> {
  const sampler = samplerFrom(opts);
  const seed = opts.seed ?? randomSeed();
  const it = windowSteps(model, {
    prompts: [preparePrompt(model, opts.prompt, opts.unknown)],
    samplers: [sampler],
    length: opts.length,
    rng: new Rng(seed),
  });
  return (function* () {
    for (const [ch] of it) yield ch!;
  })();
}

/** One stream of reference-mode generation from a prompt; returns the generated text only. */
export function generateText(model: CharModel, opts: GenerateTextOptions): string {
  let text = '';
  for (const ch of textSteps(model, opts)) {
    text += ch;
    opts.onText?.(ch);
  }
  return text;
}

/**
 * The prompt as the model reads it: lowercased when the model is, then its characters outside
 * the vocabulary named in an error, dropped, or mapped to the model's unknown symbol.
 */
export function preparePrompt(
  model: CharModel,
  prompt: string,
  unknown: UnknownPolicy = GENERATE.unknown,
): string {
  return model.vocab.applyUnknown(model.prepareText(prompt), unknown, 'prompt');
}
