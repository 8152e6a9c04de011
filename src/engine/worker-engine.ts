import { Worker } from 'node:worker_threads';
import { kernelModule } from './kernels.ts';
import {
  SHARDS,
  combineShards,
  resolveEngine,
  shardCapacity,
  shardJobs,
  type BatchOptions,
  type EngineKind,
  type EngineOptions,
  type GradientEngine,
  type ShardJob,
  type ShardResult,
} from './gradient-engine.ts';

// Shards of each batch computed on worker threads, each with its own wasm instance. Shard s runs
// on worker s % threads; results come back per shard and are reduced in shard order here.

export interface WorkerRequest {
  params: Float32Array;
  x: Int32Array;
  y: Int32Array;
  T: number;
  scale: number;
  everyStep: boolean;
  jobs: ShardJob[];
  /** the whole batch's options; a carried state comes back in the reply, the shards' rows only */
  opts: BatchOptions;
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

export class WorkerEngine implements GradientEngine {
  readonly threads: number;
  readonly engine: EngineKind;
  private readonly workers: Worker[];
  private readonly stateFloatsPerRow: number; // L·H: one row's h (or c) in a carried state

  private constructor(workers: Worker[], engine: EngineKind, shape: EngineOptions['shape']) {
    this.workers = workers;
    this.stateFloatsPerRow = (shape.layers ?? 1) * shape.units;
    this.threads = workers.length;
    this.engine = engine;
  }

  static async create(opts: EngineOptions): Promise<WorkerEngine> {
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
    // surface a worker that fails to start instead of hanging on the first batch
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once('message', () => resolve());
            w.once('error', reject);
          }),
      ),
    );
    return new WorkerEngine(workers, engine, opts.shape);
  }

  async lossAndGrads(
    params: Float32Array,
    x: Int32Array,
    y: Int32Array,
    n: number,
    T: number,
    out: Float32Array,
    everyStep = false,
    opts: BatchOptions = {},
  ): Promise<number> {
    const scored = everyStep ? n * T : n;
    const jobs = shardJobs(n);
    const perWorker: ShardJob[][] = this.workers.map(() => []);
    jobs.forEach((job, s) => perWorker[s % this.workers.length]!.push(job));
    const replies = await Promise.all(
      this.workers.map((w, i) =>
        perWorker[i]!.length === 0
          ? Promise.resolve<WorkerReply>({ results: [] })
          : this.call(w, {
              params,
              x: x.subarray(0, n * T),
              y: y.subarray(0, everyStep ? n * T : n),
              T,
              scale: 1 / scored,
              everyStep,
              jobs: perWorker[i]!,
              opts,
            }),
      ),
    );
    if (opts.state) {
      // each worker updated its shards' rows of its copy of the state: gather them back
      const per = this.stateFloatsPerRow;
      jobs.forEach((job, s) => {
        const st = replies[s % this.workers.length]!.state!;
        const [a, b] = [job.from * per, job.to * per];
        opts.state!.h.set(st.h.subarray(a, b), a);
        opts.state!.c.set(st.c.subarray(a, b), a);
      });
    }
    // back into shard order
    const results = jobs.map(
      (_, s) => replies[s % this.workers.length]!.results[Math.floor(s / this.workers.length)]!,
    );
    return combineShards(results, out, scored);
  }

  private call(w: Worker, req: WorkerRequest): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      const onMessage = (reply: WorkerReply): void => {
        w.off('error', onError);
        resolve(reply);
      };
      const onError = (err: Error): void => {
        w.off('message', onMessage);
        reject(err);
      };
      w.once('message', onMessage);
      w.once('error', onError);
      w.postMessage(req);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
