import { loadModel, type ModelMeta } from '../checkpoint/model-format.ts';
import { REFERENCE } from '../defaults.ts';
import { Vocabulary } from '../data/vocabulary.ts';
import { kernelModule } from '../engine/kernels.ts';
import { LstmCore } from '../engine/lstm-core.ts';
import { UserError } from '../errors.ts';
import { Parameters } from './params.ts';

// A trained model ready for inference: weights, metadata, vocabulary, and one inference-only
// LstmCore (created on first use, so that holding a CharModel costs no wasm memory until it is
// asked something). Everything here reads windows from a zero state, as the reference does.

/** Rows the first core holds: one per temperature of the reference's after-epoch samples. */
const DEFAULT_MAX_BATCH = REFERENCE.temperatures.length;

export class CharModel {
  readonly params: Parameters;
  readonly meta: ModelMeta;
  readonly vocab: Vocabulary;
  /** Characters in one input window (the model's training window). */
  readonly maxlen: number;
  private core: LstmCore | undefined;
  private readonly tokens: Int32Array; // scratch for predict(): one window [maxlen]

  private constructor(params: Parameters, meta: ModelMeta) {
    const { vocabSize: V, units: H } = params.shape;
    if (meta.vocab.length !== V) {
      throw new RangeError(
        `model metadata has ${meta.vocab.length} characters but the weights have V=${V}`,
      );
    }
    if (meta.units !== H) {
      throw new RangeError(`model metadata says units=${meta.units} but the weights have H=${H}`);
    }
    if (!(Number.isInteger(meta.maxlen) && meta.maxlen > 0)) {
      throw new RangeError(`model metadata maxlen must be a positive integer, got ${meta.maxlen}`);
    }
    this.params = params;
    this.meta = meta;
    this.vocab = new Vocabulary(meta.vocab);
    this.maxlen = meta.maxlen;
    this.tokens = new Int32Array(meta.maxlen);
  }

  /** Load a model folder written by saveModel; every problem with it is a UserError naming the file. */
  static async load(dir: string): Promise<CharModel> {
    const [{ params, meta }] = await Promise.all([loadModel(dir), kernelModule()]);
    return new CharModel(params, meta);
  }

  /**
   * Wrap weights already in memory (e.g. from the training loop). The weights are copied into the
   * engine when it is first used; call `syncParams()` after changing `params` in place.
   * The wasm kernels must be compiled (`await kernelModule()`) before the first prediction.
   */
  static fromParts(params: Parameters, meta: ModelMeta): CharModel {
    return new CharModel(params, meta);
  }

  /** Push the current `params` into the engine (after the training loop updated them in place). */
  syncParams(): void {
    this.core?.setParams(this.params.flat);
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
    return this.engine(n).predict(x, n, T);
  }

  /** An inference core holding at least n rows, created (or replaced by a larger one) on demand. */
  private engine(n: number): LstmCore {
    if (this.core && n <= this.core.cap.maxB) return this.core;
    const maxB = Math.max(n, DEFAULT_MAX_BATCH, 2 * (this.core?.cap.maxB ?? 0));
    const core = new LstmCore(this.params.shape, { maxB, maxT: this.maxlen, training: false });
    core.setParams(this.params.flat);
    this.core = core;
    return core;
  }
}
