import { makeWindows, splitWindows, type Windows } from '../data/windows.ts';
import { DEFAULT_VAL_SPLIT } from '../defaults.ts';
import { UserError } from '../errors.ts';
import { createKernels, resolveEngine } from '../engine/kernels.ts';
import { LstmCore } from '../engine/lstm-core.ts';
import type { EngineKind } from '../engine/types.ts';
import type { Parameters } from '../model/params.ts';

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
  let sum = 0;
  for (let from = 0; from < windows.count; from += batch) {
    const n = Math.min(batch, windows.count - from);
    for (let b = 0; b < n; b++) {
      const s = windows.starts[from + b]!;
      x.set(windows.tokens.subarray(s, s + T), b * T);
    }
    const probs = core.predict(x, n, T);
    for (let b = 0; b < n; b++) {
      const s = windows.starts[from + b]!;
      const p = probs[b * V + windows.tokens[s + T]!]!;
      sum -= Math.log(Math.max(p, 1e-7));
    }
  }
  const loss = windows.count > 0 ? sum / windows.count : NaN;
  return { loss, bpc: loss / Math.LN2, perplexity: Math.exp(loss), windows: windows.count };
}

/**
 * Held-out loss of `tokens` read as streams with the state carried from character to character:
 * every character after the first is predicted from all before it in its stream. The text is cut
 * into `streams` contiguous pieces run side by side (one batch row each) for speed; each piece
 * starts from the zero state, so this is the one-stream loss up to those few cold starts.
 */
export async function evaluateStateful(
  params: Parameters,
  tokens: Int32Array,
  opts: { streams?: number; engine?: EngineKind | 'auto' } = {},
): Promise<Evaluation> {
  const R = Math.max(1, Math.min(opts.streams ?? 32, Math.floor((tokens.length - 1) / 2)));
  const len = Math.floor(tokens.length / R); // characters per stream; len - 1 targets each
  const V = params.shape.vocabSize;
  const core = await inferenceCore(params, R, 1, opts.engine);
  core.resetState(R);
  const input = new Int32Array(R);
  let sum = 0;
  for (let i = 0; i < len - 1; i++) {
    for (let r = 0; r < R; r++) input[r] = tokens[r * len + i]!;
    const probs = core.step(input, R);
    for (let r = 0; r < R; r++)
      sum -= Math.log(Math.max(probs[r * V + tokens[r * len + i + 1]!]!, 1e-7));
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
  tokens: Int32Array,
  maxlen: number,
  opts: ScoreTextOptions = {},
): Promise<TextScore> {
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
