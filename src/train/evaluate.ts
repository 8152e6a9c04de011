import {
  makeWindows,
  splitWindows,
  startOf,
  tokenSource,
  type TokenIds,
  type TokenSource,
  type Windows,
} from '../data/windows.ts';
import { DEFAULT_VAL_SPLIT, VALIDATION } from '../defaults.ts';
import { UserError } from '../errors.ts';
import { createKernels, resolveEngine } from '../engine/kernels.ts';
import { LstmCore } from '../engine/lstm-core.ts';
import type { EngineKind } from '../engine/types.ts';
import type { Parameters } from '../model/params.ts';
import { Rng } from '../sampling/rng.ts';

// Held-out loss: each window's next character predicted from its maxlen characters from a zero
// state (the way window-mode generation uses a model), mean negative log-likelihood in nats.
// Probabilities are clipped at 1e-7 as the training loss is.
// evaluateStateful reads held-out text as a carried stream instead (the way stateful generation
// and stateful training use a model).

export interface Evaluation {
  loss: number; // nats per character
  bpc: number; // bits per character
  perplexity: number;
  windows: number;
}

/** An inference core for `params` on the fastest engine (or the one asked for). */
async function inferenceCore(
  params: Parameters,
  maxB: number,
  maxT: number,
  engine: EngineKind | 'auto' = 'auto',
): Promise<LstmCore> {
  const kernels = await createKernels(await resolveEngine(engine));
  const core = new LstmCore(params.shape, { maxB, maxT, training: false }, kernels);
  core.setParams(params.flat);
  return core;
}

/**
 * `count` distinct integers of [0, population), sorted, each subset equally likely: Vitter's
 * sequential Algorithm A ("Faster methods for random sampling", 1984), which walks the population
 * once and draws one uniform per chosen index, so only the sample's array is ever allocated.
 * Deterministic for an Rng's state (plain IEEE arithmetic, the same on every machine).
 */
export function sortedSample(population: number, count: number, rng: Rng): Float64Array {
  if (!(Number.isInteger(count) && count >= 0 && count <= population)) {
    throw new RangeError(`a sample of ${count} from ${population} is impossible`);
  }
  const out = new Float64Array(count); // indices past 2^31: a 4 GiB corpus held out in part
  let left = population; // indices not yet passed over
  let skipped = population - count; // of those, how many the sample will not take
  let at = 0; // the next index to consider
  for (let k = 0; k < count - 1; k++) {
    // skip s indices with P(s ≥ j) = Π_{i<j} (skipped - i) / (left - i), then take the next one
    const v = rng.next();
    let quot = skipped / left;
    while (quot > v) {
      at++;
      skipped--;
      left--;
      quot *= skipped / left;
    }
    out[k] = at++;
    left--;
  }
  if (count > 0) out[count - 1] = at + Math.floor(left * rng.next()); // the last: uniform over the rest
  return out;
}

/**
 * The Rng that picks a run's validation sample: a stream of its own, keyed by the run's seed
 * through a fixed mix (XOR with 'val\0', a bijection of the 32-bit seeds), so the streams of
 * seedStreams (src/train/run-setup.ts) draw exactly what they drew before it existed.
 */
export function validationSampleRng(seed: number): Rng {
  return new Rng((seed ^ 0x76616c00) >>> 0);
}

/** When a run's validation scores a sample, and how large (VALIDATION in src/defaults.ts). */
export interface SampleRule {
  sample: number; // windows in the sample
  above: number; // held-out windows beyond which the sample replaces the full set
}

/**
 * The sample rule of a run: VALIDATION's, or for tests only, `override` (the internal environment
 * variable CHARLSTM_VAL_SAMPLE=N, read by runTrain and documented nowhere else): a sample of N
 * beyond 2N held-out windows, so a test's small corpus can take the sampled path.
 */
export function sampleRule(override?: string): SampleRule {
  const n = override ? Number(override) : NaN;
  if (!(Number.isInteger(n) && n >= 1))
    return { sample: VALIDATION.sample, above: VALIDATION.sampleAbove };
  return { sample: n, above: 2 * n };
}

/** Whether validation of `heldOut` windows scores a sample under `rule` (never with `full`). */
export function samplesValidation(heldOut: number, rule: SampleRule, full = false): boolean {
  return !full && heldOut > rule.above && rule.sample < heldOut;
}

/**
 * The windows a run's validation scores at every epoch end: all of `val` (the same object, so
 * the figures are exactly today's) unless `samplesValidation`, then the `rule.sample` of them
 * picked by the run's seed (validationSampleRng), in their order in the text. The same seed gives
 * the same windows, so every epoch, and a resumed run, scores the same positions. `stride` stays
 * the held-out grid's: the sample is a subset of its windows.
 */
export function validationWindows(
  val: Windows,
  opts: { seed: number; full?: boolean; rule: SampleRule },
): Windows {
  if (!samplesValidation(val.count, opts.rule, opts.full)) return val;
  const picked = sortedSample(val.count, opts.rule.sample, validationSampleRng(opts.seed));
  for (let i = 0; i < picked.length; i++) picked[i] = startOf(val, picked[i]!); // index → start
  return { ...val, starts: picked, count: picked.length };
}

/**
 * The standard error of a sample's mean loss against the mean over all `heldOut` windows, for a
 * per-window spread (standard deviation) `spread`: spread / √n, times the finite-population
 * correction √(1 − n / N) of sampling without replacement.
 */
export function sampleStandardError(sample: number, heldOut: number, spread: number): number {
  return (spread / Math.sqrt(sample)) * Math.sqrt(1 - sample / heldOut);
}

export async function evaluate(
  params: Parameters,
  windows: Windows,
  opts: { batch?: number; engine?: EngineKind | 'auto' } = {},
): Promise<Evaluation> {
  const batch = opts.batch ?? 128;
  const T = windows.maxlen;
  const V = params.shape.vocabSize;
  const core = await inferenceCore(params, batch, T, opts.engine);
  const x = new Int32Array(batch * T);
  const target = new Int32Array(batch);
  const ids = new Int32Array(T + 1); // one read a window: its T inputs and the character after
  let sum = 0;
  for (let from = 0; from < windows.count; from += batch) {
    const n = Math.min(batch, windows.count - from);
    for (let b = 0; b < n; b++) {
      windows.tokens.read(startOf(windows, from + b), T + 1, ids);
      x.set(ids.subarray(0, T), b * T);
      target[b] = ids[T]!;
    }
    const probs = core.predict(x, n, T);
    for (let b = 0; b < n; b++) {
      const p = probs[b * V + target[b]!]!;
      sum -= Math.log(Math.max(p, 1e-7));
    }
  }
  const loss = windows.count > 0 ? sum / windows.count : NaN;
  return { loss, bpc: loss / Math.LN2, perplexity: Math.exp(loss), windows: windows.count };
}

const STATEFUL_BLOCK = 4096;

/**
 * Held-out loss of `text` read as streams with the state carried from character to character:
 * every character after the first is predicted from all before it in its stream. The text is cut
 * into `streams` contiguous pieces run side by side (one batch row each) for speed; each piece
 * starts from the zero state, so this is the one-stream loss up to those few cold starts.
 */
export async function evaluateStateful(
  params: Parameters,
  text: TokenIds | TokenSource,
  opts: { streams?: number; engine?: EngineKind | 'auto' } = {},
): Promise<Evaluation> {
  const tokens = tokenSource(text);
  const R = Math.max(1, Math.min(opts.streams ?? 32, Math.floor((tokens.length - 1) / 2)));
  const len = Math.floor(tokens.length / R); // characters per stream; len - 1 targets each
  const V = params.shape.vocabSize;
  const core = await inferenceCore(params, R, 1, opts.engine);
  core.resetState(R);
  const input = new Int32Array(R);
  // the streams read STATEFUL_BLOCK steps at a time: block [R, STATEFUL_BLOCK + 1], row r holding
  // stream r's characters i0 .. i0 + STATEFUL_BLOCK (the last one the next block's first input)
  const B = STATEFUL_BLOCK;
  const block = new Int32Array(R * (B + 1));
  let sum = 0;
  for (let i0 = 0; i0 < len - 1; i0 += B) {
    const steps = Math.min(B, len - 1 - i0);
    for (let r = 0; r < R; r++) tokens.read(r * len + i0, steps + 1, block, r * (B + 1));
    for (let i = 0; i < steps; i++) {
      for (let r = 0; r < R; r++) input[r] = block[r * (B + 1) + i]!;
      const probs = core.step(input, R);
      for (let r = 0; r < R; r++)
        sum -= Math.log(Math.max(probs[r * V + block[r * (B + 1) + i + 1]!]!, 1e-7));
    }
  }
  const count = R * (len - 1);
  const loss = count > 0 ? sum / count : NaN;
  return { loss, bpc: loss / Math.LN2, perplexity: Math.exp(loss), windows: count };
}

export interface ScoreTextOptions {
  /** Score the text's last `valSplit` (the held-out part of a run with that split). */
  valSplit?: number;
  /** Score every position of the whole text instead (each after its first maxlen characters). */
  all?: boolean;
  /** Score every `every`-th character of the scored part (1: all of them; train's validation uses its step). */
  every?: number;
  /** Read the scored part as carried streams instead of 60-character windows from a zero state. */
  stateful?: boolean;
  engine?: EngineKind | 'auto';
}

export interface TextScore extends Evaluation {
  /** Characters in the scored part (the held-out text, or the whole text after maxlen). */
  span: number;
}

/**
 * The loss of a model on encoded text, with the protocol of the README's tables: each scored
 * character predicted from the `maxlen` characters before it from a zero state (or, `stateful`,
 * the scored part read as carried streams). With the split and step of a training run, this is
 * exactly that run's reported validation loss.
 */
export async function scoreText(
  params: Parameters,
  text: TokenIds | TokenSource,
  maxlen: number,
  opts: ScoreTextOptions = {},
): Promise<TextScore> {
  const tokens = tokenSource(text);
  const every = opts.every ?? 1;
  const windows = opts.all
    ? makeWindows(tokens, maxlen, every)
    : splitWindows(tokens, { maxlen, stride: every, valSplit: opts.valSplit ?? DEFAULT_VAL_SPLIT })
        .val!;
  if (windows.count === 0) {
    throw new UserError(
      `the text has ${tokens.length} characters: nothing to score after the first ${maxlen}`,
    );
  }
  const span = windows.tokens.length - maxlen;
  if (opts.stateful) {
    // the scored part itself, as the carried streams of evaluateStateful
    const e = await evaluateStateful(params, windows.tokens.subarray(maxlen), opts);
    return { ...e, span };
  }
  return { ...(await evaluate(params, windows, opts)), span };
}

/** "every character", "every 3rd character": which characters a scoring stride scores. */
export function everyNth(n: number): string {
  if (n === 1) return 'every character';
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] ?? 'th');
  return `every ${n}${suffix} character`;
}
