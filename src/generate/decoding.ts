import { DECODING } from '../defaults.ts';
import { UserError, show } from '../errors.ts';
import type { CharModel, StatefulStepper } from '../model/char-model.ts';
import { checkSeed } from '../sampling/rng.ts';

// Decoding beyond one sampled stream: stop sequences (a matcher that holds back what may be the
// start of one), the seeds of n samples drawn from one request's seed, and deterministic beam
// search. generate.ts wires them into the one streaming entry; this file knows nothing of
// chunks' timing or of the event loop.

/** Why a generation ended: it produced `length` characters, or it met one of its stop sequences. */
export type FinishReason = 'length' | 'stop';

/**
 * Stop sequences as given (one string or a list), checked: each non-empty and at most
 * DECODING.maxStopChars characters, at most DECODING.maxStops of them. A UserError otherwise.
 */
export function checkStops(stop: unknown): string[] {
  const list: unknown[] = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop : [stop];
  if (list.length > DECODING.maxStops) {
    throw new UserError(
      `stop takes at most ${DECODING.maxStops} sequences, got ${list.length}: ${show(stop)}`,
    );
  }
  for (const s of list) {
    if (typeof s !== 'string' || s.length === 0 || [...s].length > DECODING.maxStopChars) {
      throw new UserError(
        `a stop sequence must be a string of 1 to ${DECODING.maxStopChars} characters, got ${show(s)}`,
      );
    }
  }
  return list as string[];
}

/**
 * Finds the first occurrence of any of its stop sequences in a text that arrives in pieces.
 * `push` returns the part of the text known to come before any match: it holds back the longest
 * end of the text that is the start of some stop sequence (so at most longest − 1 code units),
 * since the next piece may complete it. Once a match is found, `stopped` is true and the text
 * from the match on is dropped. `flush` returns what is held back when the text has ended.
 * The result does not depend on how the text is cut into pieces.
 */
export class StopMatcher {
  private held = '';
  private done = false;

  constructor(private readonly stops: readonly string[]) {}

  get stopped(): boolean {
    return this.done;
  }

  push(text: string): string {
    if (this.done) return '';
    const buf = this.held + text;
    // the earliest match: every match starts within buf, since the text before it was emitted
    // only once no stop sequence could start there
    let at = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.done = true;
      this.held = '';
      return buf.slice(0, at);
    }
    const keep = this.pendingLength(buf);
    this.held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /** The length of the longest end of `buf` that is a proper start of some stop sequence. */
  private pendingLength(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > best; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}

/**
 * `chunks` cut at the first stop sequence, the match excluded; `finish` hears why it ended (when
 * it ends, not when the consumer leaves early). Leaving `chunks` at a match also ends the
 * generation behind it, so no character after the stop is computed beyond the current chunk.
 */
export async function* stopAt(
  chunks: AsyncIterable<string>,
  stops: readonly string[],
  finish: (reason: FinishReason) => void,
): AsyncGenerator<string, void, undefined> {
  if (stops.length === 0) {
    yield* chunks;
    finish('length');
    return;
  }
  const matcher = new StopMatcher(stops);
  for await (const chunk of chunks) {
    const text = matcher.push(chunk);
    if (text.length > 0) yield text;
    if (matcher.stopped) {
      finish('stop');
      return;
    }
  }
  const rest = matcher.flush();
  if (rest.length > 0) yield rest;
  finish('length');
}

const GOLDEN = 0x9e3779b9; // 2^32 / φ, splitmix's increment

/** murmur3's 32-bit finaliser (splitmix32's output function): a bijection of 32-bit words. */
function mix32(x: number): number {
  let z = x >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * The seed of sample `index` (0, 1, …) of a request whose seed is `seed`: sample 0 uses the seed
 * itself, so one sample is exactly the generation a plain request makes; sample i ≥ 1 uses
 * mix32(seed + i·0x9e3779b9 mod 2^32), the i-th output of splitmix32 started at `seed`. The
 * samples i ≥ 1 of one request have distinct seeds (mix32 is a bijection and the golden
 * increment is odd); one of them equals `seed` itself with probability about 2^-32.
 */
export function sampleSeed(seed: number, index: number): number {
  checkSeed(seed);
  if (!Number.isInteger(index) || index < 0) {
    throw new RangeError(`sample index must be an integer >= 0, got ${show(index)}`);
  }
  if (index === 0) return seed;
  return mix32(seed + Math.imul(index, GOLDEN));
}

/** A sample count from 1 to DECODING.maxCount, else a UserError naming it. */
export function checkCount(count: unknown): number {
  if (
    typeof count !== 'number' ||
    !Number.isInteger(count) ||
    count < 1 ||
    count > DECODING.maxCount
  ) {
    throw new UserError(
      `count (samples) must be an integer from 1 to ${DECODING.maxCount}, got ${show(count)}`,
    );
  }
  return count;
}

/** A beam width from 1 to DECODING.maxBeamWidth, else a UserError naming it. */
export function checkBeamWidth(width: unknown): number {
  if (
    typeof width !== 'number' ||
    !Number.isInteger(width) ||
    width < 1 ||
    width > DECODING.maxBeamWidth
  ) {
    throw new UserError(
      `beam width must be an integer from 1 to ${DECODING.maxBeamWidth}, got ${show(width)}`,
    );
  }
  return width;
}

export interface BeamOptions {
  /** The prompt's token indices (at least one in window mode). */
  prompt: Int32Array;
  /** Characters to produce. */
  length: number;
  /** Beams kept after every character (1 = greedy). */
  width: number;
  mode: 'window' | 'stateful';
}

/**
 * Deterministic beam search for the `length` characters after a prompt with the highest total
 * log-probability under the model, keeping the `width` best prefixes after every character. It
 * scores the model's own distribution: sampling options (temperature, top-k, top-p) and seeds do
 * not apply, so the same prompt, model and width always give the same text.
 *
 * Beams are kept in rank order: total log-probability (a float64 sum of Math.log of the model's
 * float32 probabilities), highest first; equal totals go to the lower parent rank, then the lower
 * character id. So width 1 takes, at every step, the most probable character with ties to the
 * lowest id: greedy decoding. In stateful mode each beam carries its own LSTM state (h, c),
 * copied to the beams it begets; in window mode each beam's last maxlen characters are re-read
 * from a zero state, all beams in one batch. Memory: two Int32Array(length × width) of back
 * pointers, plus one state or window per beam.
 *
 * The search runs in steps (`advance`, until a deadline), so a caller can yield between them,
 * and send the characters all beams already share (`settledLength`, `prefix`) as it goes.
 */
export class BeamSearch {
  readonly width: number;
  private readonly V: number;
  private readonly tokens: Int32Array; // [length × width]: the character each beam ends in
  private readonly parents: Int32Array; // [length × width]: the rank of its parent at t − 1
  private scores = new Float64Array(1); // the current beams' totals, in rank order
  private beams = 1; // beams at the current step (the prompt alone before the first character)
  private t = 0; // characters chosen so far
  private logp: Float64Array; // [beams × V]: each beam's next-character log-probabilities
  // stateful mode: each beam's state after its last character was fed (not yet its own token)
  private states: { h: Float32Array; c: Float32Array }[] = [];
  private stepper: StatefulStepper | undefined; // stateful mode: one, loaded with each beam's state
  // window mode: each beam's last maxlen tokens, [beams × maxlen], `size` of them valid
  private windows: Int32Array = new Int32Array(0);
  private size = 0;
  private settled = 0; // characters every beam is known to share (settledLength)
  private closed = false;

  constructor(
    private readonly model: CharModel,
    private readonly opts: BeamOptions,
  ) {
    const { length, prompt } = opts;
    this.width = checkBeamWidth(opts.width);
    const V = (this.V = model.vocab.size);
    this.tokens = new Int32Array(length * this.width);
    this.parents = new Int32Array(length * this.width);
    this.logp = new Float64Array(this.width * V);
    if (opts.mode === 'window') {
      if (prompt.length === 0) throw new UserError('window-mode beam search needs a prompt');
      const { maxlen } = model;
      this.size = Math.min(prompt.length, maxlen);
      this.windows = prompt.slice(prompt.length - this.size);
      const p = model.predictTokens(this.windows, 1, this.size);
      for (let v = 0; v < V; v++) this.logp[v] = Math.log(p[v]!);
    } else {
      const stepper = (this.stepper = model.stepper());
      const p = prompt.length === 0 ? stepper.reset() : stepper.feed(prompt);
      for (let v = 0; v < V; v++) this.logp[v] = Math.log(p[v]!);
      this.states = [stepper.getState()];
    }
  }

  get done(): boolean {
    return this.t === this.opts.length;
  }

  /** The best total log-probability so far (of `length` characters once done). */
  get logProb(): number {
    return this.t === 0 ? 0 : this.scores[0]!;
  }

  /**
   * Choose characters until done or until `deadline` (performance.now() ms) has passed: at least
   * one per call. Returns `done`.
   */
  advance(deadline = Infinity): boolean {
    if (this.closed) throw new Error('this beam search is closed');
    while (!this.done) {
      this.choose();
      if (!this.done) this.expand();
      if (deadline !== Infinity && performance.now() >= deadline) break;
    }
    return this.done;
  }

  /** The best sequence's token indices, once done. */
  result(): Int32Array {
    if (!this.done) throw new Error('the beam search has not finished');
    return this.prefix(0, this.opts.length);
  }

  /**
   * How many characters at the start every current beam shares: the best sequence begins with
   * them whatever comes next (every later beam descends from a current one), so a stream may
   * send them before the search ends. `length` once done. Walks the beams' lineages back until
   * they meet, never past the last answer: O(width × the characters still open).
   */
  settledLength(): number {
    if (this.done) return (this.settled = this.opts.length);
    const W = this.width;
    let rows = Int32Array.from({ length: this.beams }, (_, k) => k); // lineages at row t
    let up = new Int32Array(W); // their parents, each once
    const seen = new Int32Array(W).fill(-1); // the row t whose parents include rank b
    let n = rows.length;
    for (let t = this.t - 1; t >= this.settled; t--) {
      if (n === 1) return (this.settled = t + 1);
      let m = 0;
      for (let i = 0; i < n; i++) {
        const b = this.parents[t * W + rows[i]!]!;
        if (seen[b] !== t) {
          seen[b] = t;
          up[m++] = b;
        }
      }
      [rows, up] = [up, rows];
      n = m;
    }
    return this.settled;
  }

  /** Characters `from` to `to` (at most the settled length, or `t` of beam 0's lineage). */
  prefix(from: number, to: number): Int32Array {
    const W = this.width;
    const out = new Int32Array(Math.max(0, to - from));
    let k = 0;
    for (let t = this.t - 1; t >= from; t--) {
      if (t < to) out[t - from] = this.tokens[t * W + k]!;
      k = this.parents[t * W + k]!;
    }
    return out;
  }

  /** Release the stepper (an engine core's turn) and drop the beams' states. Idempotent. */
  close(): void {
    this.closed = true;
    this.states = [];
    this.stepper?.release();
    this.stepper = undefined;
  }

  // The top `width` of every (beam, character) extension, in rank order: candidates are visited
  // in tie-break order (parent rank, then character id), so a later one enters only when strictly
  // better than the last kept, and lands after every kept one at least as good.
  private choose(): void {
    const { V, width: W, logp, scores } = this;
    const keptScore = new Float64Array(W);
    const keptParent = new Int32Array(W);
    const keptToken = new Int32Array(W);
    let n = 0;
    for (let b = 0; b < this.beams; b++) {
      const base = scores[b]!; // 0 for the prompt alone
      for (let v = 0; v < V; v++) {
        const s = base + logp[b * V + v]!;
        if (n === W && !(s > keptScore[W - 1]!)) continue;
        let pos = n < W ? n : W - 1;
        while (pos > 0 && keptScore[pos - 1]! < s) {
          keptScore[pos] = keptScore[pos - 1]!;
          keptParent[pos] = keptParent[pos - 1]!;
          keptToken[pos] = keptToken[pos - 1]!;
          pos--;
        }
        keptScore[pos] = s;
        keptParent[pos] = b;
        keptToken[pos] = v;
        if (n < W) n++;
      }
    }
    const row = this.t * W;
    this.tokens.set(keptToken.subarray(0, n), row);
    this.parents.set(keptParent.subarray(0, n), row);
    this.scores = keptScore.subarray(0, n);
    this.beams = n;
    this.t++;
  }

  // Every beam's next-character log-probabilities, after feeding its last character.
  private expand(): void {
    const { V, width: W, model } = this;
    const n = this.beams;
    const row = (this.t - 1) * W;
    if (this.stepper) {
      const { stepper } = this;
      const next: { h: Float32Array; c: Float32Array }[] = [];
      for (let k = 0; k < n; k++) {
        const parent = this.states[this.parents[row + k]!]!; // shared by its children, never written
        stepper.setState(parent.h, parent.c);
        const p = stepper.step(this.tokens[row + k]!);
        for (let v = 0; v < V; v++) this.logp[k * V + v] = Math.log(p[v]!);
        next.push(stepper.getState());
      }
      this.states = next;
      return;
    }
    const { maxlen } = model;
    const old = this.size;
    const size = Math.min(old + 1, maxlen);
    const drop = old + 1 - size; // 1 once the windows are full: the oldest character goes
    const x = new Int32Array(n * size);
    for (let k = 0; k < n; k++) {
      const b = this.parents[row + k]!;
      x.set(this.windows.subarray(b * old + drop, (b + 1) * old), k * size);
      x[k * size + size - 1] = this.tokens[row + k]!;
    }
    const p = model.predictTokens(x, n, size);
    for (let i = 0; i < n * V; i++) this.logp[i] = Math.log(p[i]!);
    this.windows = x;
    this.size = size;
  }
}

/** Beam search to the end, synchronously: the best text and its total log-probability. */
export function beamSearch(
  model: CharModel,
  opts: BeamOptions,
): { tokens: Int32Array; logProb: number } {
  const search = new BeamSearch(model, opts);
  try {
    search.advance();
    return { tokens: search.result(), logProb: search.logProb };
  } finally {
    search.close();
  }
}
