import { resolveModel } from '../checkpoint/builtin-models.ts';
import { MODEL_JSON, loadModel, type ModelMeta } from '../checkpoint/model-format.ts';
import { REFERENCE } from '../defaults.ts';
import { Vocabulary } from '../data/vocabulary.ts';
import {
  instantiate,
  kernelFactory,
  kernelModule,
  resolveEngine,
  type KernelExports,
} from '../engine/kernels.ts';
import { LstmCore } from '../engine/lstm-core.ts';
import { checkCoreFits } from '../engine/memory.ts';
import type { EngineKind } from '../engine/types.ts';
import { UserError } from '../errors.ts';
import { Parameters, layerCount, stateSize } from './params.ts';

// A trained model ready for inference: weights, metadata, vocabulary, and one inference-only
// LstmCore (created on first use, so that holding a CharModel costs no wasm memory until it is
// asked something). Everything here reads windows from a zero state, as the reference does,
// except `stepper()`, which carries the LSTM state from one character to the next.
//
// Steppers share one more core (one row). Each stepper keeps its own h and c; the core holds the
// state of the stepper that used it last, and a stepper whose state is elsewhere swaps it in
// (one copy of 2H floats each way) only when another stepper has used the core since. So any
// number of interleaved streams cost one core, and a single stream never copies.

/**
 * Threads of a loaded model's cores on the native engine: 2 splits each product of a step whose
 * weights pass 1 MiB (e.g. 256 × 1024) between the caller and a helper thread
 * (native/kernels.cc, "A second thread"), with the same bits as 1; smaller products (the
 * reference shape's) stay on the caller's thread. What it gains is measured by
 * bench/load-test.ts (docs/load-test.json, the README's load-test block).
 */
export type GenerationThreads = 1 | 2;

/** Two on Node where this machine has two cores or more (the helper sleeps between steps). */
export async function defaultGenerationThreads(): Promise<GenerationThreads> {
  if (typeof process === 'undefined' || !process.versions?.node) return 1;
  return (await import('node:os')).availableParallelism() >= 2 ? 2 : 1;
}

/** Rows the first core holds: one per temperature of the reference's after-epoch samples. */
const DEFAULT_MAX_BATCH = REFERENCE.temperatures.length;

export class CharModel {
  readonly params: Parameters;
  readonly meta: ModelMeta;
  readonly vocab: Vocabulary;
  /** Characters in one input window (the model's training window). */
  readonly maxlen: number;
  private batchCore: LstmCore | undefined; // for predictTokens(), see core()
  private readonly tokens: Int32Array; // scratch for predict(): one window [maxlen]
  private stepCore: LstmCore | undefined; // shared by all steppers, one row
  private stepOwner: StatefulStepper | undefined; // whose state the step core holds
  private rowsCore: LstmCore | undefined; // batched steps of many streams (batchStepCore)
  private prefillRows: LstmCore | undefined; // their prompts before they join (prefillCore)
  private zeroProbs: Float32Array | undefined; // the distribution at the zero state, softmax(dense bias)

  private constructor(params: Parameters, meta: ModelMeta, where?: string) {
    const { vocabSize: V, units: H } = params.shape;
    if (meta.vocab.length !== V) {
      throw new RangeError(
        `model metadata has ${meta.vocab.length} characters but the weights have V=${V}`,
      );
    }
    if (meta.units !== H) {
      throw new RangeError(`model metadata says units=${meta.units} but the weights have H=${H}`);
    }
    if ((meta.layers ?? 1) !== layerCount(params.shape)) {
      throw new RangeError(
        `model metadata says layers=${meta.layers ?? 1} but the weights have L=${layerCount(params.shape)}`,
      );
    }
    if (!(Number.isInteger(meta.maxlen) && meta.maxlen > 0)) {
      throw new RangeError(`model metadata maxlen must be a positive integer, got ${meta.maxlen}`);
    }
    // the first inference core must fit (a UserError naming the sizes and the limit, not a
    // failed allocation later)
    checkCoreFits(
      params.shape,
      { maxB: DEFAULT_MAX_BATCH, maxT: meta.maxlen, training: false },
      { where, advice: 'this model cannot be run here: its maxlen, units or layers are too large' },
    );
    this.params = params;
    this.meta = meta;
    this.vocab = new Vocabulary(meta.vocab, meta.unknown);
    this.maxlen = meta.maxlen;
    this.tokens = new Int32Array(meta.maxlen);
  }

  /**
   * Load a model folder written by saveModel, or a built-in model by name (`moby-dick`; see
   * resolveModel); every problem with it is a UserError naming the file.
   * `engine`: the kernels that run it ('auto', the default, takes the native addon when built).
   */
  static async load(
    nameOrDir: string,
    opts: { engine?: EngineKind | 'auto'; threads?: GenerationThreads } = {},
  ): Promise<CharModel> {
    const dir = await resolveModel(nameOrDir);
    const [{ params, meta }] = await Promise.all([loadModel(dir), kernelModule()]);
    const model = new CharModel(params, meta, `${dir}/${MODEL_JSON}`);
    const make = await kernelFactory(await resolveEngine(opts.engine ?? 'auto'));
    const threads = opts.threads ?? (await defaultGenerationThreads());
    model.kernels =
      threads === 1
        ? make
        : () => {
            const k = make();
            k.setThreads?.(threads); // native only: the wasm kernels run on the caller's thread
            return k;
          };
    return model;
  }

  /** Makes the kernel instance of each new core (default: a fresh WebAssembly instance). */
  private kernels: () => KernelExports = () => instantiate();

  /**
   * Wrap weights already in memory (e.g. from the training loop). The weights are copied into the
   * engine when it is first used; call `syncParams()` after changing `params` in place.
   * The wasm kernels must be compiled (`await kernelModule()`) before the first prediction.
   */
  static fromParts(params: Parameters, meta: ModelMeta, kernels?: () => KernelExports): CharModel {
    const model = new CharModel(params, meta);
    if (kernels) model.kernels = kernels;
    return model;
  }

  /** Push the current `params` into the engine (after the training loop updated them in place). */
  syncParams(): void {
    this.batchCore?.setParams(this.params.flat);
    this.stepCore?.setParams(this.params.flat);
    this.rowsCore?.setParams(this.params.flat);
    this.prefillRows?.setParams(this.params.flat);
    this.zeroProbs = undefined;
  }

  /** Lowercase text when the model was trained on lowercased text, as training did to its corpus. */
  prepareText(text: string): string {
    return this.meta.lowercase ? text.toLowerCase() : text;
  }

  /**
   * The next-character distribution [V] after the last `maxlen` characters of `text` (all of it
   * when shorter), from a zero state. `text` is used as given (see prepareText); a character
   * outside the vocabulary is a UserError naming it. Returns a fresh array.
   */
  predict(text: string): Float32Array {
    const all = this.vocab.encode(text); // checks every character, not only the window's
    if (all.length === 0) throw new UserError('text is empty: need at least one character');
    const T = Math.min(all.length, this.maxlen);
    this.tokens.set(all.subarray(all.length - T));
    return this.predictTokens(this.tokens, 1, T).slice();
  }

  /**
   * Next-character probabilities after each of n windows x [n×T] of token indices, from a zero
   * state. Returns a view [n×V] into engine memory, valid until the next call on this model.
   * Grows the engine when n exceeds its batch capacity.
   */
  predictTokens(x: Int32Array, n: number, T: number): Float32Array {
    if (T > this.maxlen) throw new RangeError(`window of ${T} exceeds maxlen ${this.maxlen}`);
    return this.core(n).predict(x, n, T);
  }

  /**
   * A stateful stepper for one stream: it starts from the zero state and carries h and c from
   * one character to the next, so each new character costs one LSTM step however long the text
   * is. Steppers are independent of each other and of predict(). `release()` when done.
   */
  stepper(): StatefulStepper {
    return new StatefulStepper(this);
  }

  /**
   * @internal The step core, holding `s`'s state: the previous holder's state is parked in that
   * stepper first, and `s`'s is loaded.
   */
  stepCoreFor(s: StatefulStepper): LstmCore {
    let core = this.stepCore;
    if (!core) {
      core = new LstmCore(this.params.shape, { maxB: 1, maxT: 1, training: false }, this.kernels());
      core.setParams(this.params.flat);
      this.stepCore = core;
    }
    if (this.stepOwner !== s) {
      this.stepOwner?.park(core);
      s.unpark(core);
      this.stepOwner = s;
    }
    return core;
  }

  /**
   * @internal The core of batched stateful steps (the scheduler in generate/batcher.ts): one time
   * step for up to `rows` streams at once, each row carrying its own h and c. Made on first use,
   * and replaced by a larger one (state not carried: the caller moves it) when `rows` exceeds its
   * capacity. Each row's arithmetic is the single-row step's: every kernel computes a row from that
   * row alone, summing in the same order whatever the batch (test/batching.test.ts checks it).
   */
  batchStepCore(rows: number): LstmCore {
    return (this.rowsCore = this.rowsCoreOf(this.rowsCore, rows));
  }

  /**
   * @internal A second such core, for the prompts of streams about to join the batch (the
   * scheduler's prefill), so that feeding them leaves the batch core's rows alone.
   */
  prefillCore(rows: number): LstmCore {
    return (this.prefillRows = this.rowsCoreOf(this.prefillRows, rows));
  }

  private rowsCoreOf(have: LstmCore | undefined, rows: number): LstmCore {
    if (have && rows <= have.cap.maxB) return have;
    const maxB = Math.max(rows, 8, 2 * (have?.cap.maxB ?? 0));
    const core = new LstmCore(
      this.params.shape,
      { maxB, maxT: 1, training: false },
      this.kernels(),
    );
    core.setParams(this.params.flat);
    return core;
  }

  /** @internal Whether the step core holds `s`'s state. */
  holdsStateOf(s: StatefulStepper): boolean {
    return this.stepOwner === s;
  }

  /** @internal `s` is released: the step core's state belongs to nobody. */
  forget(s: StatefulStepper): void {
    if (this.stepOwner === s) this.stepOwner = undefined;
  }

  /**
   * The next-character distribution [V] at the zero state, before any input: softmax of the dense
   * bias (h = 0). Shared and read-only; recomputed after syncParams().
   */
  zeroStateProbs(): Float32Array {
    if (this.zeroProbs) return this.zeroProbs;
    const bd = this.params.denseBias;
    let mx = -Infinity;
    for (let v = 0; v < bd.length; v++) mx = Math.max(mx, bd[v]!);
    const e = new Float64Array(bd.length);
    let sum = 0;
    for (let v = 0; v < bd.length; v++) sum += e[v] = Math.exp(bd[v]! - mx);
    this.zeroProbs = Float32Array.from(e, (x) => x / sum);
    return this.zeroProbs;
  }

  /** An inference core holding at least n rows, created (or replaced by a larger one) on demand. */
  private core(n: number): LstmCore {
    if (this.batchCore && n <= this.batchCore.cap.maxB) return this.batchCore;
    const maxB = Math.max(n, DEFAULT_MAX_BATCH, 2 * (this.batchCore?.cap.maxB ?? 0));
    const core = new LstmCore(
      this.params.shape,
      { maxB, maxT: this.maxlen, training: false },
      this.kernels(),
    );
    core.setParams(this.params.flat);
    this.batchCore = core;
    return core;
  }
}

/**
 * One stream of stateful generation on a core of its own (see CharModel.stepper). The
 * distributions it returns are views into engine memory, valid until its next call.
 */
export class StatefulStepper {
  private h: Float32Array; // the state while another stepper holds the core [L×H]
  private c: Float32Array;
  private released = false;
  private readonly token = new Int32Array(1);

  constructor(readonly model: CharModel) {
    const size = stateSize(model.params.shape);
    this.h = new Float32Array(size);
    this.c = new Float32Array(size);
  }

  /** @internal Save this stepper's state from the core (another stepper takes it). */
  park(core: LstmCore): void {
    ({ h: this.h, c: this.c } = core.getState(1));
  }

  /** @internal Load this stepper's state into the core. */
  unpark(core: LstmCore): void {
    core.setState(this.h, this.c);
  }

  private core(): LstmCore {
    if (this.released) throw new Error('this stepper was released');
    return this.model.stepCoreFor(this);
  }

  /** Back to the zero state; returns the distribution there (see CharModel.zeroStateProbs). */
  reset(): Float32Array {
    this.core().resetState(1);
    return this.model.zeroStateProbs();
  }

  /** Feed one token index; returns the next-character distribution [V]. */
  step(token: number): Float32Array {
    this.token[0] = token;
    return this.core().step(this.token, 1);
  }

  /**
   * Feed tokens one after the other from the current state; returns the distribution after the
   * last one (the current state's when `tokens` is empty and the state is zero).
   */
  feed(tokens: ArrayLike<number>): Float32Array {
    let probs: Float32Array | undefined;
    for (let i = 0; i < tokens.length; i++) probs = this.step(tokens[i]!);
    return probs ?? this.model.zeroStateProbs();
  }

  /** A copy of the carried state: h and c, each [L×H] (layer by layer, bottom first). */
  getState(): { h: Float32Array; c: Float32Array } {
    if (this.released) throw new Error('this stepper was released');
    if (this.model.holdsStateOf(this)) return this.core().getState(1);
    return { h: this.h.slice(), c: this.c.slice() };
  }

  setState(h: Float32Array, c: Float32Array): void {
    const size = stateSize(this.model.params.shape);
    if (h.length !== size || c.length !== size) {
      throw new RangeError(
        `state must be two arrays of ${size} floats, got ${h.length} and ${c.length}`,
      );
    }
    this.core().setState(h, c);
  }

  /** The stepper cannot be used afterwards. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.model.forget(this);
  }
}
