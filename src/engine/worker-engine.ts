import { Worker } from 'node:worker_threads';
import { Parameters, stateSize } from '../model/params.ts';
import {
  kernelModule,
  resolveEngine,
  resolvePrecision,
  wasmVariant,
  type WasmVariant,
} from './kernels.ts';
import { now, type BatchTimes, type WorkerTimes } from './profile.ts';
import {
  SHARDS,
  checkEngineFits,
  combineShards,
  shardCapacity,
  shardJobs,
  type ShardJob,
} from './shards.ts';
import {
  scoredCount,
  type Batch,
  type EngineKind,
  type EngineOptions,
  type GradientEngine,
  type Precision,
} from './types.ts';

// Shards of each batch computed on worker threads, each with its own kernel instance. Shard s runs
// on worker s % threads; results come back per shard and are reduced in shard order here.
//
// The parameters and the shards' gradients travel through shared memory (WorkerSetup.shared)
// instead of in the messages: each batch the parameters are copied once into `params`, which the
// workers read, and each worker writes shard s's gradient into slot s of `grads`, which the main
// thread sums from. No request is in flight while the main thread writes `params` or reads
// `grads` (a batch's requests go out only after the last batch's replies came back), and the
// messages order those accesses. Measured on the reference batch (bench/threads.ts --compare, a
// loaded machine, medians), native, two threads: posting the requests took 0.9-1.7 ms with the
// parameters structured-cloned into each and 0.13-0.18 ms without, the requests' way to the
// workers 0.35-0.68 ms and 0.22-0.25 ms; the whole batch's time did not change measurably
// (300 batches alternating with the cloning engine: ratio of medians 1.007, wasm 0.971).

export interface WorkerRequest {
  /** the whole batch; a carried state comes back in the reply, with the shards' rows updated */
  batch: Batch;
  scale: number; // 1 / the batch's scored characters
  jobs: ShardJob[];
  shards: number[]; // each job's shard index: its gradient goes to that slot of shared.grads
}
export interface WorkerReply {
  losses: number[]; // Σ loss of each job's rows, in the request's order
  state?: { h: Float32Array; c: Float32Array };
  times?: WorkerTimes; // when profiling
}

const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './worker.ts' : './worker.js', import.meta.url);
// Running from TypeScript sources (tests, dev): Node 20 applies no `--import` hooks inside worker
// threads, so the worker registers tsx's loader itself before importing its entry.
function spawnWorker(workerData: unknown): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData });
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

/** What a worker is started with (worker.ts). */
export interface WorkerSetup {
  engine: EngineKind;
  precision: Precision; // of the native instances ('fp32' with engine 'wasm')
  module: WebAssembly.Module; // the compiled wasm kernels (used with engine 'wasm')
  variant: WasmVariant; // which build `module` is
  shape: EngineOptions['shape'];
  maxB: number;
  maxT: number;
  profile: boolean;
  /** params: P floats, the batch's parameters; grads: SHARDS × P floats, slot s shard s's gradient */
  shared: { params: SharedArrayBuffer; grads: SharedArrayBuffer };
}

/**
 * A worker thread stopped while the engine still needed it (it exited, was killed, for example
 * for lack of memory, or threw): the batch it was computing, and every later one, is rejected
 * with this error instead of being waited for forever.
 */
export class WorkerExitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerExitError';
  }
}

interface Pending {
  resolve(reply: WorkerReply): void;
  reject(err: Error): void;
}

export class WorkerEngine implements GradientEngine {
  readonly threads: number;
  readonly engine: EngineKind;
  readonly precision: Precision;
  private readonly workers: Worker[];
  private readonly stateFloatsPerRow: number; // L·H: one row's h (or c) in a carried state
  private readonly pending: (Pending | undefined)[]; // each worker's request in flight
  private failure: WorkerExitError | undefined; // set once a worker has stopped unexpectedly
  private closing = false;
  private readonly profile: boolean;
  // when profiling: each worker's request posted and reply handled (profile.ts's clock)
  private sent: number[] = [];
  private got: number[] = [];
  /** When created with `profile`: the last batch's times (profile.ts), else undefined. */
  lastTimes: BatchTimes | undefined;
  private readonly params: Float32Array; // views of WorkerSetup.shared
  private readonly gradSlots: Float32Array[];

  private constructor(workers: Worker[], engine: EngineKind, setup: WorkerSetup) {
    const shape = setup.shape;
    this.workers = workers;
    this.profile = setup.profile;
    this.params = new Float32Array(setup.shared.params);
    const P = this.params.length;
    this.gradSlots = Array.from(
      { length: SHARDS },
      (_, s) => new Float32Array(setup.shared.grads, s * P * 4, P),
    );
    this.stateFloatsPerRow = stateSize(shape);
    this.threads = workers.length;
    this.engine = engine;
    this.precision = setup.precision;
    this.pending = workers.map(() => undefined);
    workers.forEach((w, i) => {
      w.on('message', (reply: WorkerReply) => {
        if (this.profile) this.got[i] = now();
        const p = this.pending[i];
        this.pending[i] = undefined;
        p?.resolve(reply);
      });
      w.on('error', (err: Error) => {
        this.fail(`training worker thread ${i + 1} of ${workers.length} failed: ${err.message}`);
      });
      w.on('exit', (code: number) => {
        if (this.closing) return;
        this.fail(
          `training worker thread ${i + 1} of ${workers.length} stopped unexpectedly ` +
            `(exit code ${code}; a thread killed for lack of memory ends this way); ` +
            'the batch in progress was not computed',
        );
      });
    });
  }

  /** Reject every request in flight and every later one: the engine cannot go on. */
  private fail(message: string): void {
    this.failure ??= new WorkerExitError(message);
    for (const [i, p] of this.pending.entries()) {
      this.pending[i] = undefined;
      p?.reject(this.failure);
    }
  }

  /** @internal For tests: stop worker `i` from outside, as the system would kill it. */
  async terminateWorkerForTest(i: number): Promise<void> {
    await this.workers[i]!.terminate();
  }

  static async create(opts: EngineOptions): Promise<WorkerEngine> {
    checkEngineFits(opts); // here, as a UserError: a worker's own check would arrive as a plain error
    const module = await kernelModule(); // compiled on this thread whatever the engine, as before
    // with the native engine each worker loads the addon itself (and ignores the module)
    const engine = await resolveEngine(opts.engine);
    const precision = await resolvePrecision(opts.precision, engine);
    const threads = Math.max(1, Math.min(opts.threads, SHARDS));
    const setup: WorkerSetup = {
      engine,
      precision,
      module,
      variant: wasmVariant(),
      shape: opts.shape,
      maxB: shardCapacity(opts.maxBatch),
      maxT: opts.maxT,
      profile: opts.profile ?? false,
      shared: {
        params: new SharedArrayBuffer(Parameters.size(opts.shape) * 4),
        grads: new SharedArrayBuffer(SHARDS * Parameters.size(opts.shape) * 4),
      },
    };
    const workers = Array.from({ length: threads }, () => spawnWorker(setup));
    // surface a worker that fails to start, or stops while starting, instead of hanging
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.once('message', () => resolve());
              w.once('error', reject);
              w.once('exit', (code: number) =>
                reject(
                  new WorkerExitError(
                    `a training worker thread stopped while starting (exit code ${code})`,
                  ),
                ),
              );
            }),
        ),
      );
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
    return new WorkerEngine(workers, engine, setup);
  }

  async lossAndGrads(params: Float32Array, batch: Batch, out: Float32Array): Promise<number> {
    const start = this.profile ? now() : 0;
    const { rows: n, steps: T, state } = batch;
    const scored = scoredCount(batch);
    const jobs = shardJobs(n);
    const perWorker: ShardJob[][] = this.workers.map(() => []);
    jobs.forEach((job, s) => perWorker[s % this.workers.length]!.push(job));
    if (params.length !== this.params.length)
      throw new RangeError(`expected ${this.params.length} parameters, got ${params.length}`);
    this.params.set(params); // the workers read them from here (see the header)
    const calls = this.workers.map((_, i) =>
      perWorker[i]!.length === 0
        ? Promise.resolve<WorkerReply>({ losses: [] })
        : this.call(i, {
            batch: {
              ...batch,
              x: batch.x.subarray(0, n * T),
              y: batch.y.subarray(0, batch.scoring === 'every' ? n * T : n),
            },
            scale: 1 / scored,
            jobs: perWorker[i]!,
            shards: perWorker[i]!.map((_, j) => j * this.workers.length + i),
          }),
    );
    const posted = this.profile ? now() : 0; // postMessage cloned the requests synchronously
    const replies = await Promise.all(calls);
    if (state) {
      // each worker updated its shards' rows of its copy of the state: gather them back
      const per = this.stateFloatsPerRow;
      jobs.forEach((job, s) => {
        const st = replies[s % this.workers.length]!.state!;
        const [a, b] = [job.from * per, job.to * per];
        state.h.set(st.h.subarray(a, b), a);
        state.c.set(st.c.subarray(a, b), a);
      });
    }
    // back into shard order; shard s's gradient is in its slot
    const results = jobs.map((_, s) => ({
      loss: replies[s % this.workers.length]!.losses[Math.floor(s / this.workers.length)]!,
      grads: this.gradSlots[s]!,
    }));
    if (!this.profile) return combineShards(results, out, scored);
    const gathered = now();
    const loss = combineShards(results, out, scored);
    this.lastTimes = {
      start,
      posted,
      sent: this.sent.slice(),
      got: this.got.slice(),
      gathered,
      combined: now(),
      workers: replies.map((r) => r.times!),
    };
    return loss;
  }

  private call(i: number, req: WorkerRequest): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('the engine was closed'));
    return new Promise((resolve, reject) => {
      this.pending[i] = { resolve, reject };
      if (this.profile) this.sent[i] = now();
      this.workers[i]!.postMessage(req);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
