import {
  gatherBatch,
  gatherStreams,
  makeStreams,
  type Streams,
  type Windows,
} from '../data/windows.ts';
import { Permutation } from '../data/permutation.ts';
import { fromBase64, toBase64 } from '../checkpoint/base64.ts';
import { dropoutKey } from '../engine/dropout.ts';
import { createEngine } from '../engine/gradient-engine.ts';
import type { Batch, EngineKind, GradientEngine, Precision } from '../engine/types.ts';
import { UserError } from '../errors.ts';
import { stateSize, type Parameters } from '../model/params.ts';
import type { Rng, RngState } from '../sampling/rng.ts';
import { Adam } from './adam.ts';
import { RmsProp, type Optimizer, type RmsPropConfig } from './rmsprop.ts';
import { learningRateAt, type Schedule } from './schedule.ts';

// The training loop: a new order of the windows every epoch (as Keras's fit shuffles), cut into
// batches, get the mean loss and its gradient from the engine, step RMSprop. Everything else
// (progress, samples, validation, saving, checkpoints) hangs off callbacks.
// In stateful mode there is no shuffle: batch k is the k-th slice of batchSize contiguous streams,
// and the LSTM state is carried from batch to batch (zeroed at each epoch's start).
//
// The epoch's order is a keyed permutation (src/data/permutation.ts), read one position at a
// time, never an array of every window index: its key is drawn from the shuffle generator at the
// epoch's start. Checkpoints from before it (TrainerState without `order`) keep the Fisher–Yates
// shuffle of a materialised array they were trained with.
//
// The loop's whole position is plain data (TrainerState): the epoch, the batch within it, the
// shuffle generator's state at the start of the epoch (the order is re-drawn from it), the
// optimizer's state. Restoring it continues bit for bit as if the run had never stopped.

export interface TrainerConfig extends RmsPropConfig {
  batchSize: number;
  epochs: number; // the epoch number to stop after (1-based, inclusive)
  threads: number; // worker threads for the engine (0: none)
  /** kernels: WebAssembly, the native AVX2 addon, or 'auto' (native when built and supported) */
  engine?: EngineKind | 'auto';
  /** the products' arithmetic: 'fp32' (when undefined), 'bf16' or 'auto' (resolvePrecision) */
  precision?: Precision | 'auto';
  clip?: number; // clip the gradient's global L2 norm to this (none when undefined)
  schedule?: Schedule; // learning-rate schedule (constant when undefined)
  timeBudget?: number; // stop after this much training time (this process)
  /**
   * 'last' (the reference): score the character after each window; 'sequence': every position;
   * 'stateful': every position of contiguous streams, the state carried between batches.
   */
  mode?: TrainMode;
  /** dropout rate on every LSTM layer's output (0 or undefined: none) */
  dropout?: number;
  /** seed of the dropout masks (each step's masks are keyed by it and the optimizer step) */
  dropoutSeed?: number;
  /** 'rmsprop' (the reference; rho and epsilon as configured) or 'adam' (β 0.9, 0.999) */
  optimizer?: 'rmsprop' | 'adam';
}

export type TrainMode = 'last' | 'sequence' | 'stateful';

export interface BatchEndEvent {
  epoch: number; // 1-based
  epochs: number;
  step: number; // 1-based within the epoch
  steps: number;
  batchLoss: number;
  epochLoss: number; // sample-weighted mean so far this epoch (what Keras's progress bar shows)
  seen: number; // windows trained on so far this epoch
  total: number; // windows in an epoch
  seqPerSec: number; // this epoch so far (this process)
  elapsedMs: number; // this epoch so far (this process)
  learningRate: number;
}

export interface EpochEndEvent {
  epoch: number;
  epochs: number;
  loss: number; // sample-weighted mean training loss of the epoch
  sequences: number;
  seconds: number;
  seqPerSec: number;
  learningRate: number;
  valLoss?: number; // filled in by a validation callback
  valBpc?: number;
  valPerplexity?: number;
  /** stateful mode: held-out loss of the text read as one carried stream (nats) */
  valStatefulLoss?: number;
}

export interface DivergenceEvent {
  epoch: number;
  step: number;
  loss: number;
  learningRateScale: number; // after lowering
}

export interface TrainCallback {
  onTrainBegin?(trainer: Trainer): void | Promise<void>;
  onEpochBegin?(epoch: number, trainer: Trainer): void | Promise<void>;
  onBatchEnd?(event: BatchEndEvent, trainer: Trainer): void | Promise<void>;
  onEpochEnd?(event: EpochEndEvent, trainer: Trainer): void | Promise<void>;
  onDivergence?(event: DivergenceEvent, trainer: Trainer): void | Promise<void>;
  /** `stopped`: the loop ended before `epochs` (a stop request or the time budget). */
  onTrainEnd?(history: EpochEndEvent[], trainer: Trainer, stopped: boolean): void | Promise<void>;
}

/** Everything needed to continue training exactly where it stopped (besides the weights). */
export interface TrainerState {
  epoch: number; // epochs completed
  step: number; // batches completed within epoch + 1
  epochRng: RngState; // shuffle generator state before this epoch's order was drawn
  shuffleRng: RngState; // shuffle generator now
  /**
   * How an epoch's order is drawn from epochRng: 'feistel' (every run since the permutation came)
   * a Permutation keyed by the generator's next ROUNDS words; absent (older checkpoints) a
   * Fisher–Yates shuffle of the array of every window index, so they resume exactly as before.
   */
  order?: 'feistel';
  lossSum: number; // Σ loss·n over this epoch's batches so far
  seen: number;
  iterations: number; // optimizer steps taken in all
  learningRateScale: number; // lowered by the divergence guard
  history: EpochEndEvent[];
  trainSeconds: number; // training time of all processes so far
  /** stateful mode: the carried LSTM state, h and c [batchSize][L][H], float32 in base64 */
  carried?: { h: string; c: string };
}

export interface TrainerOptions {
  params: Parameters;
  windows: Windows;
  config: TrainerConfig;
  shuffleRng: Rng;
  callbacks?: TrainCallback[];
  engine?: GradientEngine; // for tests: an engine built by the caller
}

/** Global L2 norm of a gradient, accumulated in float64 in index order. */
export function gradNorm(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

export class Trainer {
  readonly params: Parameters;
  readonly windows: Windows;
  readonly config: TrainerConfig;
  readonly optimizer: Optimizer;
  readonly shuffleRng: Rng;
  history: EpochEndEvent[] = [];
  epoch = 0; // epochs completed
  step = 0; // batches completed in the current epoch
  private epochRng: RngState;
  private orderKind: 'feistel' | 'fisher-yates' = 'feistel'; // TrainerState.order
  private lossSum = 0;
  private seen = 0;
  learningRateScale = 1;
  private trainSecondsBefore = 0; // from earlier processes (resume)
  private startedAt = 0;
  private readonly callbacks: TrainCallback[];
  private engine: GradientEngine | undefined;
  private stopRequested = false;
  /**
   * Why the last fit() ended before its `epochs`: 'requested' (requestStop(), an early stop
   * included) or 'budget' (the time budget ran out); undefined when it ran every epoch.
   */
  stopReason: 'budget' | 'requested' | undefined;
  private untimedDepth = 0; // nesting of untimed() calls in progress
  private pausedAt = 0; // when the clock was stopped by untimed() (0: running)
  /** stateful mode: the streams, and the state carried between batches [batchSize][L][H] */
  readonly streams: Streams | undefined;
  readonly carried: { h: Float32Array; c: Float32Array } | undefined;

  constructor(opts: TrainerOptions) {
    this.params = opts.params;
    this.windows = opts.windows;
    this.config = { ...opts.config };
    const size = opts.params.flat.length;
    this.optimizer =
      opts.config.optimizer === 'adam'
        ? new Adam(size, { learningRate: opts.config.learningRate, epsilon: opts.config.epsilon })
        : new RmsProp(size, opts.config);
    this.shuffleRng = opts.shuffleRng;
    this.epochRng = this.shuffleRng.getState();
    this.callbacks = opts.callbacks ?? [];
    this.engine = opts.engine;
    if (this.config.mode === 'stateful') {
      const { batchSize } = this.config;
      this.streams = makeStreams(this.windows.tokens, batchSize, this.windows.maxlen);
      if (this.streams.steps < 1) {
        throw new UserError(
          `stateful mode needs at least ${batchSize} × ${this.windows.maxlen} + 1 training characters (batch size × window), got ${this.windows.tokens.length}`,
        );
      }
      const floats = batchSize * stateSize(this.params.shape);
      this.carried = { h: new Float32Array(floats), c: new Float32Array(floats) };
    }
  }

  /** Sequences (windows, or stream slices in stateful mode) in one epoch. */
  get sequencesPerEpoch(): number {
    return this.streams ? this.streams.steps * this.streams.rows : this.windows.count;
  }

  get stepsPerEpoch(): number {
    return this.streams
      ? this.streams.steps
      : Math.ceil(this.windows.count / this.config.batchSize);
  }

  /** Training time so far, all processes of this run together. */
  get trainSeconds(): number {
    return (
      this.trainSecondsBefore +
      (this.startedAt ? ((this.pausedAt || performance.now()) - this.startedAt) / 1000 : 0)
    );
  }

  /**
   * Run `work` (an evaluation, say) off the training clock: its duration counts neither towards
   * trainSeconds nor towards the time budget. Nested calls (a callback's own untimed work inside
   * the callbacks, which run untimed) stop the clock once.
   */
  async untimed<R>(work: () => Promise<R>): Promise<R> {
    if (this.untimedDepth++ > 0) {
      try {
        return await work();
      } finally {
        this.untimedDepth--;
      }
    }
    const t0 = performance.now();
    this.pausedAt = t0;
    try {
      return await work();
    } finally {
      this.untimedDepth--;
      this.pausedAt = 0;
      if (this.startedAt) this.startedAt += performance.now() - t0;
    }
  }

  /** Ask the loop to stop after the batch in flight; fit() then returns normally. */
  requestStop(): void {
    this.stopRequested = true;
  }

  get stopping(): boolean {
    return this.stopRequested;
  }

  getState(): TrainerState {
    return {
      epoch: this.epoch,
      step: this.step,
      epochRng: [...this.epochRng] as RngState,
      shuffleRng: this.shuffleRng.getState(),
      ...(this.orderKind === 'feistel' && { order: 'feistel' as const }),
      lossSum: this.lossSum,
      seen: this.seen,
      iterations: this.optimizer.iterations,
      learningRateScale: this.learningRateScale,
      history: this.history.map((h) => ({ ...h })),
      trainSeconds: this.trainSeconds,
      ...(this.carried && {
        carried: { h: toBase64(this.carried.h), c: toBase64(this.carried.c) },
      }),
    };
  }

  setState(s: TrainerState): void {
    if (s.order !== undefined && s.order !== 'feistel')
      throw new UserError(`checkpoint has an unknown window order ${JSON.stringify(s.order)}`);
    this.orderKind = s.order ?? 'fisher-yates';
    this.epoch = s.epoch;
    this.step = s.step;
    this.epochRng = [...s.epochRng] as RngState;
    this.shuffleRng.setState(s.shuffleRng);
    this.lossSum = s.lossSum;
    this.seen = s.seen;
    this.optimizer.iterations = s.iterations;
    this.learningRateScale = s.learningRateScale;
    this.history = s.history.map((h) => ({ ...h }));
    this.trainSecondsBefore = s.trainSeconds;
    if (this.carried) {
      if (!s.carried) throw new UserError('checkpoint has no carried state for stateful mode');
      fromBase64(s.carried.h, this.carried.h);
      fromBase64(s.carried.c, this.carried.c);
    }
  }

  /** The learning rate for the next step. */
  learningRate(): number {
    const total = this.config.epochs * this.stepsPerEpoch;
    const done = this.epoch * this.stepsPerEpoch + this.step;
    const budget = this.config.timeBudget;
    const progress = budget ? this.trainSeconds / budget : done / total;
    return (
      this.learningRateScale *
      learningRateAt(
        this.config.schedule,
        this.config.learningRate,
        done,
        this.stepsPerEpoch,
        progress,
      )
    );
  }

  /**
   * Run every callback, off the training clock: validation, samples, saving and checkpoints count
   * neither towards trainSeconds nor towards the time budget, which measure training alone.
   */
  private async emit(call: (cb: TrainCallback) => void | Promise<void> | undefined): Promise<void> {
    await this.untimed(async () => {
      for (const cb of this.callbacks) await call(cb);
    });
  }

  private overBudget(): boolean {
    const budget = this.config.timeBudget;
    return budget !== undefined && this.trainSeconds >= budget;
  }

  async fit(): Promise<EpochEndEvent[]> {
    const { batchSize, epochs, clip } = this.config;
    const { maxlen: T, count } = this.windows;
    const total = this.sequencesPerEpoch;
    const { streams, carried } = this;
    const dropout = this.config.dropout ?? 0;
    const ownsEngine = !this.engine;
    this.engine ??= await createEngine({
      shape: this.params.shape,
      maxBatch: batchSize,
      maxT: T,
      threads: this.config.threads,
      engine: this.config.engine ?? 'wasm',
      precision: this.config.precision ?? 'fp32',
    });
    const engine = this.engine;
    const x = new Int32Array(batchSize * T);
    const scoring =
      this.config.mode === 'sequence' || this.config.mode === 'stateful' ? 'every' : 'last';
    const everyStep = scoring === 'every';
    const y = new Int32Array(everyStep ? batchSize * T : batchSize);
    const grads = new Float32Array(this.params.flat.length);
    let order = (k: number): number => k; // position in the epoch → window index
    let shuffled: Int32Array | undefined; // [count] only for a checkpoint from before (orderKind)
    const steps = this.stepsPerEpoch;
    // The divergence guard's snapshot: the whole state before the last batch whose loss was finite
    // (its weights gave that finite loss; the step taken from them may be what diverged). Rolling
    // back undoes that batch entirely (weights, moments, iteration count, its share of the epoch's
    // loss, the carried state) so that it is trained again, at the lower rate.
    const goodParams = this.params.flat.slice();
    const goodMs = this.optimizer.state.slice();
    const good = { epoch: this.epoch, step: this.step, lossSum: 0, seen: 0, iterations: 0 };
    good.iterations = this.optimizer.iterations;
    const goodCarried = carried && { h: carried.h.slice(), c: carried.c.slice() };
    const batchCarried = carried && { h: carried.h.slice(), c: carried.c.slice() }; // before this batch
    this.startedAt = performance.now();
    this.stopReason = undefined;
    const stop = (): void => {
      this.stopReason = this.stopRequested ? 'requested' : 'budget';
    };
    try {
      await this.emit((cb) => cb.onTrainBegin?.(this));
      while (this.epoch < epochs) {
        if (this.stopRequested || this.overBudget()) {
          stop();
          break;
        }
        const epoch = this.epoch + 1;
        if (this.step === 0) {
          this.epochRng = this.shuffleRng.getState();
          this.lossSum = 0;
          this.seen = 0;
          carried?.h.fill(0); // every epoch's streams start from the zero state
          carried?.c.fill(0);
        } else {
          this.shuffleRng.setState(this.epochRng); // re-draw the interrupted epoch's order
        }
        if (!streams && this.orderKind === 'feistel') {
          const perm = Permutation.draw(count, this.shuffleRng);
          order = (k) => perm.indexAt(k);
        } else if (!streams) {
          const a = (shuffled ??= new Int32Array(count));
          for (let i = 0; i < count; i++) a[i] = i;
          this.shuffleRng.shuffle(a);
          order = (k) => a[k]!;
        }
        await this.emit((cb) => cb.onEpochBegin?.(epoch, this));
        const start = performance.now();
        const seenBefore = this.seen;
        while (this.step < steps) {
          if (this.stopRequested || this.overBudget()) break;
          const from = this.step * batchSize;
          const n = streams
            ? gatherStreams(streams, this.step, x, y)
            : gatherBatch(
                this.windows,
                order,
                from,
                Math.min(from + batchSize, count),
                x,
                y,
                scoring,
              );
          if (batchCarried) {
            batchCarried.h.set(carried!.h);
            batchCarried.c.set(carried!.c);
          }
          const batch: Batch = {
            x,
            y,
            rows: n,
            steps: T,
            scoring,
            ...(dropout > 0 && {
              dropout: {
                rate: dropout,
                key: dropoutKey(this.config.dropoutSeed ?? 0, this.optimizer.iterations),
              },
            }),
            ...(carried && { state: carried }),
          };
          const loss = await engine.lossAndGrads(this.params.flat, batch, grads);
          const norm = gradNorm(grads);
          if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
            const failedStep = this.step + 1;
            // roll back to before the last good batch, halve the learning rate
            this.params.flat.set(goodParams);
            this.optimizer.state.set(goodMs);
            this.optimizer.iterations = good.iterations;
            const sameEpoch = good.epoch === this.epoch; // never undo across an epoch's end
            if (sameEpoch) {
              this.step = good.step;
              this.lossSum = good.lossSum;
              this.seen = good.seen;
            }
            const restore = sameEpoch ? goodCarried : batchCarried;
            if (restore) {
              carried!.h.set(restore.h);
              carried!.c.set(restore.c);
            }
            this.learningRateScale /= 2;
            if (this.learningRateScale < 1e-6) {
              throw new UserError(
                'training diverged again and again (non-finite loss); try a lower --lr or --clip',
              );
            }
            const event = {
              epoch,
              step: failedStep,
              loss,
              learningRateScale: this.learningRateScale,
            };
            await this.emit((cb) => cb.onDivergence?.(event, this));
            continue; // from the snapshot's batch again, at the lower rate
          }
          goodParams.set(this.params.flat);
          goodMs.set(this.optimizer.state);
          Object.assign(good, {
            epoch: this.epoch,
            step: this.step,
            lossSum: this.lossSum,
            seen: this.seen,
            iterations: this.optimizer.iterations,
          });
          if (goodCarried) {
            goodCarried.h.set(batchCarried!.h);
            goodCarried.c.set(batchCarried!.c);
          }
          if (clip !== undefined && norm > clip) {
            const s = clip / norm;
            for (let i = 0; i < grads.length; i++) grads[i] = grads[i]! * s;
          }
          const lr = this.learningRate();
          this.optimizer.step(this.params.flat, grads, lr);
          this.step++;
          this.lossSum += loss * n;
          this.seen += n;
          const elapsedMs = performance.now() - start;
          const event: BatchEndEvent = {
            epoch,
            epochs,
            step: this.step,
            steps,
            batchLoss: loss,
            epochLoss: this.lossSum / this.seen,
            seen: this.seen,
            total,
            seqPerSec: ((this.seen - seenBefore) / elapsedMs) * 1000,
            elapsedMs,
            learningRate: lr,
          };
          await this.emit((cb) => cb.onBatchEnd?.(event, this));
        }
        if (this.step < steps) {
          stop(); // stopped mid-epoch: the epoch does not count as done
          break;
        }
        const seconds = (performance.now() - start) / 1000;
        this.epoch = epoch;
        this.step = 0;
        const event: EpochEndEvent = {
          epoch,
          epochs,
          loss: this.lossSum / this.seen,
          sequences: this.seen,
          seconds,
          seqPerSec: (this.seen - seenBefore) / seconds,
          learningRate: this.learningRate(),
        };
        this.history.push(event);
        await this.emit((cb) => cb.onEpochEnd?.(event, this));
      }
      await this.emit((cb) => cb.onTrainEnd?.(this.history, this, this.stopReason !== undefined));
    } finally {
      this.trainSecondsBefore = this.trainSeconds;
      this.startedAt = 0;
      if (ownsEngine) {
        await engine.close();
        this.engine = undefined;
      }
    }
    return this.history;
  }
}
