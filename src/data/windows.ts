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

export interface Windows {
  tokens: TokenIds; // the whole encoded text
  maxlen: number;
  stride: number; // a new window every `stride` characters
  count: number;
  /** [count] start offsets of a set that is not the grid 0, stride, 2·stride, … (a sample) */
  starts?: Int32Array;
}

/** Where window i of `w` starts in `w.tokens`. */
export function startOf(w: Windows, i: number): number {
  return w.starts ? w.starts[i]! : i * w.stride;
}

export function makeWindows(tokens: TokenIds, maxlen: number, stride: number): Windows {
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
  tokens: TokenIds,
  cfg: { maxlen: number; stride: number; valSplit: number },
): { train: Windows; val: Windows | undefined } {
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
  for (let b = 0; b < n; b++) {
    const s = startOf(w, order(from + b));
    x.set(w.tokens.subarray(s, s + T), b * T);
    if (scoring === 'every') y.set(w.tokens.subarray(s + 1, s + T + 1), b * T);
    else y[b] = w.tokens[s + T]!;
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
  tokens: TokenIds;
  rows: number;
  length: number; // characters per stream
  maxlen: number; // T: characters per batch and stream
  steps: number; // batches in one pass over the streams
}

export function makeStreams(tokens: TokenIds, rows: number, maxlen: number): Streams {
  // each stream also needs the target after its last input character
  const length = Math.floor((tokens.length - 1) / rows);
  return { tokens, rows, length, maxlen, steps: Math.floor(length / maxlen) };
}

/** Batch k of the streams: x [rows, T] and the next character at every position y [rows, T]. */
export function gatherStreams(s: Streams, k: number, x: Int32Array, y: Int32Array): number {
  const T = s.maxlen;
  for (let b = 0; b < s.rows; b++) {
    const at = b * s.length + k * T;
    x.set(s.tokens.subarray(at, at + T), b * T);
    y.set(s.tokens.subarray(at + 1, at + T + 1), b * T);
  }
  return s.rows;
}
