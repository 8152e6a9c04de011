import type { BatchEndEvent, EpochEndEvent, TrainCallback, Trainer } from '../train/trainer.ts';

// The record of a training run for the live dashboard (`charlstm train --dashboard`): a
// TrainCallback that keeps the run as plain data (DashboardState) and tells its listeners about
// each new event. No I/O: the dashboard's routes (routes/train.ts) serve it.
//
// Training must not notice it: per batch the callback does one clock read and a comparison, and
// at most every `minIntervalMs` it keeps a point (a few numbers) and hands it to the listeners.
// Batch points are thinned by half whenever they reach `maxBatchPoints`, so a run of any length
// holds a bounded history.

export interface RunInfo {
  t: number; // ms since the Unix epoch
  epochs: number; // the epoch number the run stops after
  startEpoch: number; // epochs already done when this process started (a resumed run)
  stepsPerEpoch: number;
  sequences: number; // training sequences per epoch (windows, or stream slices when stateful)
  batchSize: number;
  maxlen: number;
  vocabSize: number;
  units: number;
  learningRate: number;
  threads: number;
}

export interface BatchPoint {
  t: number; // ms since the Unix epoch
  iteration: number; // batches since the start of epoch 1: (epoch - 1) · stepsPerEpoch + step
  epoch: number;
  step: number;
  steps: number;
  loss: number; // this batch's loss
  epochLoss: number; // the epoch's running mean
  seqPerSec: number; // this epoch so far
  etaEpoch: number; // seconds left in this epoch
  eta: number; // seconds left in the run
}

export interface EpochPoint {
  t: number;
  iteration: number; // the last batch of the epoch
  epoch: number;
  epochs: number;
  loss: number;
  seconds: number;
  seqPerSec: number;
  valLoss?: number;
  valBpc?: number;
  [key: string]: number | undefined; // any other number an epoch event carries (learningRate…)
}

export interface SampleText {
  temperature: number;
  text: string;
}

export interface EpochSamples {
  t: number;
  epoch: number;
  seed: string;
  texts: SampleText[];
}

export interface TrainEnd {
  t: number;
  stopped: boolean;
  epochs: number; // epochs completed
}

/** Everything recorded so far: what GET /v1/train/state returns. */
export interface DashboardState {
  run: RunInfo | null;
  batches: BatchPoint[];
  epochs: EpochPoint[];
  samples: EpochSamples[];
  end: TrainEnd | null;
}

/** One server-sent event: its name and its JSON data. */
export type DashboardEvent =
  | { type: 'state'; data: DashboardState }
  | { type: 'run'; data: RunInfo }
  | { type: 'batch'; data: BatchPoint }
  | { type: 'epoch'; data: EpochPoint }
  | { type: 'samples'; data: EpochSamples }
  | { type: 'end'; data: TrainEnd };

export interface RecorderOptions {
  /** Keep a batch point at most this often (the first and last batch of an epoch always). */
  minIntervalMs?: number;
  /** Halve the batch points when they reach this many. */
  maxBatchPoints?: number;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Records a training run as plain data and tells listeners about each new event. No I/O. */
export class DashboardRecorder {
  readonly state: DashboardState = { run: null, batches: [], epochs: [], samples: [], end: null };
  private readonly listeners = new Set<(ev: DashboardEvent) => void>();
  private readonly minIntervalMs: number;
  private readonly maxBatchPoints: number;
  private lastPoint = -Infinity; // performance.now() of the last kept batch point
  private stepsPerEpoch = 0;

  constructor(opts: RecorderOptions = {}) {
    this.minIntervalMs = opts.minIntervalMs ?? 100;
    this.maxBatchPoints = opts.maxBatchPoints ?? 20_000;
  }

  /** Call `fn` with every new event until the returned function is called. */
  subscribe(fn: (ev: DashboardEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(ev: DashboardEvent): void {
    for (const fn of this.listeners) fn(ev);
  }

  /** The TrainCallback that feeds this recorder. */
  callback(): TrainCallback {
    return {
      onTrainBegin: (trainer: Trainer) => {
        // the trainer's own counts: a stateful epoch is its streams' length, not windows / batch
        this.stepsPerEpoch = trainer.stepsPerEpoch;
        const run: RunInfo = {
          t: Date.now(),
          epochs: trainer.config.epochs,
          startEpoch: trainer.epoch,
          stepsPerEpoch: this.stepsPerEpoch,
          sequences: trainer.sequencesPerEpoch,
          batchSize: trainer.config.batchSize,
          maxlen: trainer.windows.maxlen,
          vocabSize: trainer.params.shape.vocabSize,
          units: trainer.params.shape.units,
          learningRate: trainer.config.learningRate,
          threads: trainer.config.threads,
        };
        this.state.run = run;
        this.state.end = null;
        this.emit({ type: 'run', data: run });
      },
      onBatchEnd: (ev: BatchEndEvent) => {
        const now = performance.now();
        const edge = ev.step === 1 || ev.step === ev.steps;
        if (!edge && now - this.lastPoint < this.minIntervalMs) return; // the common case: O(1)
        this.lastPoint = now;
        this.recordBatch(ev);
        // Let the event loop answer HTTP requests even when training runs on this thread.
        return yieldToEventLoop();
      },
      onEpochEnd: (ev: EpochEndEvent) => this.recordEpoch(ev),
      onTrainEnd: (history: EpochEndEvent[], trainer: Trainer, stopped?: boolean) => {
        const end: TrainEnd = {
          t: Date.now(),
          stopped: stopped ?? trainer.epoch < trainer.config.epochs,
          epochs: trainer.epoch,
        };
        this.state.end = end;
        this.emit({ type: 'end', data: end });
      },
    };
  }

  private recordBatch(ev: BatchEndEvent): void {
    const steps = ev.steps || this.stepsPerEpoch;
    const rate = ev.seqPerSec > 0 ? ev.seqPerSec : NaN;
    const etaEpoch = (ev.total - ev.seen) / rate;
    const point: BatchPoint = {
      t: Date.now(),
      iteration: (ev.epoch - 1) * steps + ev.step,
      epoch: ev.epoch,
      step: ev.step,
      steps,
      loss: ev.batchLoss,
      epochLoss: ev.epochLoss,
      seqPerSec: ev.seqPerSec,
      etaEpoch: Number.isFinite(etaEpoch) ? etaEpoch : -1,
      eta: Number.isFinite(etaEpoch) ? etaEpoch + ((ev.epochs - ev.epoch) * ev.total) / rate : -1,
    };
    const batches = this.state.batches;
    batches.push(point);
    if (batches.length >= this.maxBatchPoints) {
      // keep every other point (the newest always): the curve keeps its shape at half the size
      let w = 0;
      for (let r = batches.length % 2 === 0 ? 1 : 0; r < batches.length; r += 2)
        batches[w++] = batches[r]!;
      batches.length = w;
    }
    this.emit({ type: 'batch', data: point });
  }

  private recordEpoch(ev: EpochEndEvent): void {
    const point: EpochPoint = {
      t: Date.now(),
      iteration: ev.epoch * (this.stepsPerEpoch || 1),
      epoch: ev.epoch,
      epochs: ev.epochs,
      loss: ev.loss,
      seconds: ev.seconds,
      seqPerSec: ev.seqPerSec,
    };
    // whatever else the event carries (valLoss, valBpc, valPerplexity, learningRate…)
    for (const [k, v] of Object.entries(ev)) {
      if (!(k in point) && typeof v === 'number' && Number.isFinite(v)) point[k] = v;
    }
    this.state.epochs.push(point);
    this.emit({ type: 'epoch', data: point });
  }

  /**
   * The state with at most `maxBatchPoints` batch points (evenly spaced, the newest kept) and
   * the last `maxSamples` epochs' samples: what a page gets when it connects, so that a newcomer
   * costs a bounded write however long the run. Epoch points are one per epoch: all kept.
   */
  snapshot(maxBatchPoints: number, maxSamples: number): DashboardState {
    const { batches, samples } = this.state;
    let kept = batches;
    if (batches.length > maxBatchPoints) {
      kept = [];
      const last = batches.length - 1;
      // maxBatchPoints positions from the oldest to the newest, evenly apart
      for (let i = 0; i < maxBatchPoints; i++) {
        const at = maxBatchPoints === 1 ? last : Math.round((i * last) / (maxBatchPoints - 1));
        kept.push(batches[at]!);
      }
    }
    return {
      ...this.state,
      batches: kept,
      samples: samples.length > maxSamples ? samples.slice(samples.length - maxSamples) : samples,
    };
  }

  /** The after-epoch samples: the seed text and one generated text per temperature. */
  recordSamples(epoch: number, seed: string, texts: readonly SampleText[]): void {
    const rec: EpochSamples = {
      t: Date.now(),
      epoch,
      seed,
      texts: texts.map((s) => ({ temperature: s.temperature, text: s.text })),
    };
    this.state.samples.push(rec);
    this.emit({ type: 'samples', data: rec });
  }
}
