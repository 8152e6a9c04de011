import { gatherBatch, type Windows } from '../data/windows.ts';
import { createEngine, type GradientEngine } from '../engine/gradient-engine.ts';
import type { Parameters } from '../model/params.ts';
import type { Rng } from '../sampling/rng.ts';
import { RmsProp, type RmsPropConfig } from './rmsprop.ts';

// The training loop: shuffle the windows every epoch (as Keras's fit does), cut them into
// batches, get the mean loss and its gradient from the engine, step RMSprop. Everything else
// (progress, samples, saving) hangs off callbacks.

export interface TrainerConfig extends RmsPropConfig {
  batchSize: number;
  epochs: number; // the epoch number to stop after (1-based, inclusive)
  threads: number; // worker threads for the engine (0: none)
}

export interface BatchEndEvent {
  epoch: number; // 1-based
  epochs: number;
  step: number; // 1-based within the epoch
  steps: number;
  batchLoss: number;
  epochLoss: number; // sample-weighted mean so far this epoch (what Keras's progress bar shows)
  seen: number; // windows trained on so far this epoch
  total: number; // windows in an epoch
  seqPerSec: number; // this epoch so far
  elapsedMs: number; // this epoch so far
}

export interface EpochEndEvent {
  epoch: number;
  epochs: number;
  loss: number; // sample-weighted mean training loss of the epoch
  sequences: number;
  seconds: number;
  seqPerSec: number;
}

export interface TrainCallback {
  onTrainBegin?(trainer: Trainer): void | Promise<void>;
  onEpochBegin?(epoch: number, trainer: Trainer): void | Promise<void>;
  onBatchEnd?(event: BatchEndEvent, trainer: Trainer): void | Promise<void>;
  onEpochEnd?(event: EpochEndEvent, trainer: Trainer): void | Promise<void>;
  onTrainEnd?(history: EpochEndEvent[], trainer: Trainer): void | Promise<void>;
}

export interface TrainerOptions {
  params: Parameters;
  windows: Windows;
  config: TrainerConfig;
  shuffleRng: Rng;
  callbacks?: TrainCallback[];
  /** Epochs already completed (a model trained further starts after them). */
  initialEpoch?: number;
  engine?: GradientEngine; // for tests: an engine built by the caller
}

export class Trainer {
  readonly params: Parameters;
  readonly windows: Windows;
  readonly config: TrainerConfig;
  readonly optimizer: RmsProp;
  readonly shuffleRng: Rng;
  readonly history: EpochEndEvent[] = [];
  epoch: number; // epochs completed
  private readonly callbacks: TrainCallback[];
  private engine: GradientEngine | undefined;
  private stopRequested = false;

  constructor(opts: TrainerOptions) {
    this.params = opts.params;
    this.windows = opts.windows;
    this.config = { ...opts.config };
    this.optimizer = new RmsProp(opts.params.flat.length, opts.config);
    this.shuffleRng = opts.shuffleRng;
    this.callbacks = opts.callbacks ?? [];
    this.epoch = opts.initialEpoch ?? 0;
    this.engine = opts.engine;
  }

  /** Ask the loop to stop after the batch in flight; fit() then returns normally. */
  requestStop(): void {
    this.stopRequested = true;
  }

  get stopping(): boolean {
    return this.stopRequested;
  }

  private async emit(call: (cb: TrainCallback) => void | Promise<void> | undefined): Promise<void> {
    for (const cb of this.callbacks) await call(cb);
  }

  async fit(): Promise<EpochEndEvent[]> {
    const { batchSize, epochs } = this.config;
    const { maxlen: T, count } = this.windows;
    const ownsEngine = !this.engine;
    this.engine ??= await createEngine({
      shape: this.params.shape,
      maxBatch: batchSize,
      maxT: T,
      threads: this.config.threads,
    });
    const engine = this.engine;
    const x = new Int32Array(batchSize * T);
    const y = new Int32Array(batchSize);
    const grads = new Float32Array(this.params.flat.length);
    const order = new Int32Array(count);
    const steps = Math.ceil(count / batchSize);
    try {
      await this.emit((cb) => cb.onTrainBegin?.(this));
      while (this.epoch < epochs && !this.stopRequested) {
        const epoch = this.epoch + 1;
        await this.emit((cb) => cb.onEpochBegin?.(epoch, this));
        for (let i = 0; i < count; i++) order[i] = i;
        this.shuffleRng.shuffle(order);
        const start = performance.now();
        let lossSum = 0;
        let seen = 0;
        for (let step = 0; step < steps && !this.stopRequested; step++) {
          const from = step * batchSize;
          const n = gatherBatch(this.windows, order, from, Math.min(from + batchSize, count), x, y);
          const loss = await engine.lossAndGrads(this.params.flat, x, y, n, T, grads);
          this.optimizer.step(this.params.flat, grads);
          lossSum += loss * n;
          seen += n;
          const elapsedMs = performance.now() - start;
          const event: BatchEndEvent = {
            epoch,
            epochs,
            step: step + 1,
            steps,
            batchLoss: loss,
            epochLoss: lossSum / seen,
            seen,
            total: count,
            seqPerSec: (seen / elapsedMs) * 1000,
            elapsedMs,
          };
          await this.emit((cb) => cb.onBatchEnd?.(event, this));
        }
        if (seen < count) break; // stopped mid-epoch: the epoch does not count as done
        const seconds = (performance.now() - start) / 1000;
        this.epoch = epoch;
        const event: EpochEndEvent = {
          epoch,
          epochs,
          loss: lossSum / seen,
          sequences: seen,
          seconds,
          seqPerSec: seen / seconds,
        };
        this.history.push(event);
        await this.emit((cb) => cb.onEpochEnd?.(event, this));
      }
      await this.emit((cb) => cb.onTrainEnd?.(this.history, this));
    } finally {
      if (ownsEngine) {
        await engine.close();
        this.engine = undefined;
      }
    }
    return this.history;
  }
}
