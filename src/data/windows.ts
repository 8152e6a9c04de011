// Training windows exactly as the reference builds them:
//   for i in range(0, len(text) - maxlen, step): x = text[i:i+maxlen], y = text[i+maxlen]
// (the notebook's `step` is `stride` here; the flag --step and the saved key `step` keep it).
// Nothing is one-hot encoded: a window is a start offset into the encoded text, and the engine
// gathers rows of the input kernel instead of multiplying by one-hot vectors. Nor is there an
// array of start offsets: window i starts at i × stride (startOf), so a set of windows costs
// nothing beyond its text; only a set that is not that grid (the seeded validation sample of
// src/train/evaluate.ts) lists its starts.

import type { Batch } from '../engine/types.ts';
import { UserError } from '../errors.ts';

/**
 * An encoded text: one id per character, in the smallest array that holds the vocabulary (1 byte
 * up to 256 characters, 2 up to 65,536, else 4), since a corpus's ids are most of a run's memory.
 */
export type TokenIds = Uint8Array | Uint16Array | Int32Array;

/**
 * Where a run reads its ids from, a few at a time: windows, streams, validation, the samples'
 * seeds and the memorisation index all go through `read`, so a corpus larger than the memory can
 * stay in its token file (FileTokens, src/corpus/token-source.ts: positional reads) while a small
 * one, a test's or the browser's, is an array (MemoryTokens).
 */
export interface TokenSource {
  readonly length: number;
  /** Ids [start, start + count) into `into` from index `at`; RangeError outside 0..length. */
  read(start: number, count: number, into: TokenIds, at?: number): void;
  /** Ids [from, to) as a source of their own, sharing the storage (a typed array's subarray). */
  subarray(from: number, to?: number): TokenSource;
}

/** Ids held in memory. */
export class MemoryTokens implements TokenSource {
  constructor(readonly ids: TokenIds) {}

  get length(): number {
    return this.ids.length;
  }

  read(start: number, count: number, into: TokenIds, at = 0): void {
    checkRange(start, count, this.ids.length);
    into.set(this.ids.subarray(start, start + count), at);
  }

  subarray(from: number, to = this.ids.length): MemoryTokens {
    return new MemoryTokens(this.ids.subarray(from, to));
  }
}

/** Throws unless [start, start + count) lies inside 0..length. */
export function checkRange(start: number, count: number, length: number): void {
  if (!(start >= 0 && count >= 0 && start + count <= length))
    throw new RangeError(`ids ${start} + ${count} are outside 0..${length}`);
}

/** An array of ids as a source (a source as it is). */
export function tokenSource(tokens: TokenIds | TokenSource): TokenSource {
  return ArrayBuffer.isView(tokens) ? new MemoryTokens(tokens) : tokens;
}

export interface Windows {
  tokens: TokenSource; // the whole encoded text
  maxlen: number;
  stride: number; // a new window every `stride` characters
  count: number;
  /** [count] start offsets of a set that is not the grid 0, stride, 2·stride, … (a sample) */
  starts?: Int32Array | Float64Array;
}

/** Where window i of `w` starts in `w.tokens`. */
export function startOf(w: Windows, i: number): number {
  return w.starts ? w.starts[i]! : i * w.stride;
}

export function makeWindows(ids: TokenIds | TokenSource, maxlen: number, stride: number): Windows {
  const tokens = tokenSource(ids);
  if (!(Number.isInteger(maxlen) && maxlen >= 1))
    throw new RangeError(`maxlen must be a positive integer, got ${maxlen}`);
  if (!(Number.isInteger(stride) && stride >= 1))
    throw new RangeError(`stride must be a positive integer, got ${stride}`);
  const span = tokens.length - maxlen;
  const count = span > 0 ? Math.ceil(span / stride) : 0;
  return { tokens, maxlen, stride, count };
}

/**
 * The reference's windows cut at the corpus's last `valSplit`: training windows from the text
 * before the cut, and held-out windows whose targets are the held-out characters at offsets 0,
 * stride, 2·stride, ... from the cut, each read with its maxlen predecessors (which may lie
 * before the cut). So with stride 3 every third held-out character is scored; `charlstm eval`
 * passes stride 1 (or its --every) to score them all.
 */
export function splitWindows(
  ids: TokenIds | TokenSource,
  cfg: { maxlen: number; stride: number; valSplit: number },
): { train: Windows; val: Windows | undefined } {
  const tokens = tokenSource(ids);
  if (cfg.valSplit <= 0)
    return { train: makeWindows(tokens, cfg.maxlen, cfg.stride), val: undefined };
  const cut = Math.floor(tokens.length * (1 - cfg.valSplit));
  if (cut < cfg.maxlen + 1 || cut >= tokens.length) {
    throw new UserError(
      `--val-split ${cfg.valSplit} leaves too little text for training or validation (${tokens.length} characters)`,
    );
  }
  return {
    train: makeWindows(tokens.subarray(0, cut), cfg.maxlen, cfg.stride),
    val: makeWindows(tokens.subarray(cut - cfg.maxlen), cfg.maxlen, cfg.stride),
  };
}

/**
 * Copy the windows `order(from) … order(to − 1)` into `x` ([n, maxlen] token indices) and their
 * targets into `y`: the character after each window, y [n] (the reference), or with scoring
 * 'every' (sequence mode) the next character at every position, y [n, maxlen]
 * (y[b,t] = text[start + t + 1]). Returns n.
 */
export function gatherBatch(
  w: Windows,
  order: (k: number) => number, // position in the epoch → window index (a Permutation's indexAt)
  from: number,
  to: number,
  x: Int32Array,
  y: Int32Array,
  scoring: Batch['scoring'] = 'last',
): number {
  const n = to - from;
  const T = w.maxlen;
  const ids = new Int32Array(T + 1); // one read a window: its T inputs and the target after them
  for (let b = 0; b < n; b++) {
    w.tokens.read(startOf(w, order(from + b)), T + 1, ids);
    x.set(ids.subarray(0, T), b * T);
    if (scoring === 'every') y.set(ids.subarray(1, T + 1), b * T);
    else y[b] = ids[T]!;
  }
  return n;
}

/**
 * Stateful training (truncated backpropagation through time, as char-rnn does it): the text cut
 * into `rows` contiguous streams of `length` characters; batch k holds characters
 * [k·T, (k+1)·T) of every stream, so each row continues where the same row of the previous batch
 * stopped and the LSTM state can be carried from one batch to the next.
 */
export interface Streams {
  tokens: TokenSource;
  rows: number;
  length: number; // characters per stream
  maxlen: number; // T: characters per batch and stream
  steps: number; // batches in one pass over the streams
}

export function makeStreams(ids: TokenIds | TokenSource, rows: number, maxlen: number): Streams {
  const tokens = tokenSource(ids);
  // each stream also needs the target after its last input character
  const length = Math.floor((tokens.length - 1) / rows);
  return { tokens, rows, length, maxlen, steps: Math.floor(length / maxlen) };
}

/** Batch k of the streams: x [rows, T] and the next character at every position y [rows, T]. */
export function gatherStreams(s: Streams, k: number, x: Int32Array, y: Int32Array): number {
  const T = s.maxlen;
  const ids = new Int32Array(T + 1);
  for (let b = 0; b < s.rows; b++) {
    s.tokens.read(b * s.length + k * T, T + 1, ids);
    x.set(ids.subarray(0, T), b * T);
    y.set(ids.subarray(1, T + 1), b * T);
  }
  return s.rows;
}
