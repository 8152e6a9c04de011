import { Worker } from 'node:worker_threads';
import { stateSize } from '../model/params.ts';
import { kernelModule, resolveEngine } from './kernels.ts';
import {
  SHARDS,
  checkEngineFits,
  combineShards,
  shardCapacity,
  shardJobs,
  type ShardJob,
  type ShardResult,
} from './shards.ts';
import {
  scoredCount,
  type Batch,
  type EngineKind,
  type EngineOptions,
  type GradientEngine,
} from './types.ts';

// Shards of each batch computed on worker threads, each with its own kernel instance. Shard s runs
// on worker s % threads; results come back per shard and are reduced in shard order here.

export interface WorkerRequest {
  params: Float32Array;
  /** the whole batch; a carried state comes back in the reply, with the shards' rows updated */
  batch: Batch;
  scale: number; // 1 / the batch's scored characters
  jobs: ShardJob[];
}
export interface WorkerReply {
  results: ShardResult[];
  state?: { h: Float32Array; c: Float32Array };
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
  module: WebAssembly.Module; // the compiled wasm kernels (used with engine 'wasm')
  shape: EngineOptions['shape'];
  maxB: number;
  maxT: number;
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
  private readonly workers: Worker[];
  private readonly stateFloatsPerRow: number; // L·H: one row's h (or c) in a carried state
  private readonly pending: (Pending | undefined)[]; // each worker's request in flight
  private failure: WorkerExitError | undefined; // set once a worker has stopped unexpectedly
  private closing = false;

  private constructor(workers: Worker[], engine: EngineKind, shape: EngineOptions['shape']) {
    this.workers = workers;
    this.stateFloatsPerRow = stateSize(shape);
    this.threads = workers.length;
    this.engine = engine;
    this.pending = workers.map(() => undefined);
    workers.forEach((w, i) => {
      w.on('message', (reply: WorkerReply) => {
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
    const threads = Math.max(1, Math.min(opts.threads, SHARDS));
    const setup: WorkerSetup = {
      engine,
      module,
      shape: opts.shape,
      maxB: shardCapacity(opts.maxBatch),
      maxT: opts.maxT,
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
    return new WorkerEngine(workers, engine, opts.shape);
  }

  async lossAndGrads(params: Float32Array, batch: Batch, out: Float32Array): Promise<number> {
    const { rows: n, steps: T, state } = batch;
    const scored = scoredCount(batch);
    const jobs = shardJobs(n);
    const perWorker: ShardJob[][] = this.workers.map(() => []);
    jobs.forEach((job, s) => perWorker[s % this.workers.length]!.push(job));
    const replies = await Promise.all(
      this.workers.map((_, i) =>
        perWorker[i]!.length === 0
          ? Promise.resolve<WorkerReply>({ results: [] })
          : this.call(i, {
              params,
              batch: {
                ...batch,
                x: batch.x.subarray(0, n * T),
                y: batch.y.subarray(0, batch.scoring === 'every' ? n * T : n),
              },
              scale: 1 / scored,
              jobs: perWorker[i]!,
            }),
      ),
    );
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
    // back into shard order
    const results = jobs.map(
      (_, s) => replies[s % this.workers.length]!.results[Math.floor(s / this.workers.length)]!,
    );
    return combineShards(results, out, scored);
  }

  private call(i: number, req: WorkerRequest): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('the engine was closed'));
    return new Promise((resolve, reject) => {
      this.pending[i] = { resolve, reject };
      this.workers[i]!.postMessage(req);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
