import { Worker } from 'node:worker_threads';
import { kernelModule } from './kernels.ts';
import { SHARDS, reduceShards, shardCapacity, shardJobs, type EngineOptions, type GradientEngine, type ShardJob } from './gradient-engine.ts';

// Shards of each batch computed on worker threads, each with its own wasm instance. Shard s runs
// on worker s % threads; results come back per shard and are reduced in shard order here.

export interface WorkerRequest {
  params: Float32Array;
  x: Int32Array;
  y: Int32Array;
  T: number;
  scale: number;
  jobs: ShardJob[];
}
export interface WorkerReply {
  results: { loss: number; grads: Float32Array }[];
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

export class WorkerEngine implements GradientEngine {
  readonly threads: number;
  private readonly workers: Worker[];

  private constructor(workers: Worker[]) {
    this.workers = workers;
    this.threads = workers.length;
  }

  static async create(opts: EngineOptions): Promise<WorkerEngine> {
    const module = await kernelModule();
    const threads = Math.max(1, Math.min(opts.threads, SHARDS));
    const workers = Array.from(
      { length: threads },
      () => spawnWorker({ module, shape: opts.shape, maxB: shardCapacity(opts.maxBatch), maxT: opts.maxT }),
    );
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
    return new WorkerEngine(workers);
  }

  async lossAndGrads(params: Float32Array, x: Int32Array, y: Int32Array, n: number, T: number, out: Float32Array): Promise<number> {
    const jobs = shardJobs(n);
    const perWorker: ShardJob[][] = this.workers.map(() => []);
    jobs.forEach((job, s) => perWorker[s % this.workers.length]!.push(job));
    const replies = await Promise.all(
      this.workers.map((w, i) =>
        perWorker[i]!.length === 0
          ? Promise.resolve<WorkerReply>({ results: [] })
          : this.call(w, { params, x: x.subarray(0, n * T), y: y.subarray(0, n), T, scale: 1 / n, jobs: perWorker[i]! }),
      ),
    );
    // back into shard order
    const grads: Float32Array[] = [];
    let loss = 0;
    jobs.forEach((_, s) => {
      const r = replies[s % this.workers.length]!.results[Math.floor(s / this.workers.length)]!;
      loss += r.loss;
      grads.push(r.grads);
    });
    reduceShards(grads, out);
    return loss / n;
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
