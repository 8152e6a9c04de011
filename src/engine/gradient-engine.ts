import type { ModelShape } from '../model/params.ts';
import { UserError } from '../errors.ts';
import { instantiate, kernelModule, type KernelExports } from './kernels.ts';
import { LstmCore, type PassOptions } from './lstm-core.ts';
import { checkCoreFits } from './memory.ts';
import { layerCount } from '../model/params.ts';

// Loss and gradients of one training batch, data-parallel over a FIXED number of shards.
// The batch is always cut into SHARDS row ranges whatever the thread count, each shard's gradient
// is computed alone, and the shard gradients are summed in shard order on the calling thread. So
// one thread and two threads perform the same float operations in the same order: the same seed
// gives bit-identical weights at any thread count.

export const SHARDS = 2;

/** Which kernels run the model: the WebAssembly module, or the native addon (AVX2/FMA, x86-64). */
export type EngineKind = 'wasm' | 'native';

export interface GradientEngine {
  readonly threads: number;
  readonly engine: EngineKind;
  /**
   * Mean loss over the n windows x [n×T] (targets y [n]); writes the gradient of the mean loss,
   * in Parameters.flat layout, to `out`.
   */
  lossAndGrads(
    params: Float32Array,
    x: Int32Array,
    y: Int32Array,
    n: number,
    T: number,
    out: Float32Array,
    everyStep?: boolean,
    opts?: BatchOptions,
  ): Promise<number>;
  close(): Promise<void>;
}

/** The optional parts of one batch (see LstmCore's PassOptions), for the whole batch. */
export interface BatchOptions {
  /** dropout on every layer's output; masks are keyed by `key` and the batch row */
  dropout?: { rate: number; key: number };
  /** carried state, h and c each [n][L][H]: read as the initial state, overwritten with the final */
  state?: { h: Float32Array; c: Float32Array };
}

export interface EngineOptions {
  shape: ModelShape;
  maxBatch: number;
  maxT: number;
  threads: number; // 0: no worker threads; otherwise the number of worker threads
  /** 'wasm' (the default), 'native' (an error when unavailable) or 'auto' (native when available). */
  engine?: EngineKind | 'auto';
}

/**
 * Throw a UserError when the cores of a training engine with these options would not fit in a
 * kernel instance's memory (each core holds one shard of the batch); see checkCoreFits.
 */
export function checkEngineFits(opts: EngineOptions): void {
  checkCoreFits(
    opts.shape,
    { maxB: shardCapacity(opts.maxBatch), maxT: opts.maxT, training: true },
    {
      batchSize: opts.maxBatch,
      advice: 'lower --batch-size, --maxlen, --units or --layers',
    },
  );
}

/** The engine an EngineOptions.engine choice gives on this machine. */
export async function resolveEngine(choice: EngineKind | 'auto' = 'wasm'): Promise<EngineKind> {
  if (choice === 'wasm') return 'wasm';
  const inNode = typeof process !== 'undefined' && Boolean(process.versions?.node);
  if (!inNode && choice === 'auto') return 'wasm'; // browsers: WebAssembly only
  const { nativeAvailable, nativeUnavailableReason } = await import('./native.ts');
  if (nativeAvailable()) return 'native';
  if (choice === 'auto') return 'wasm';
  throw new UserError(
    `native engine unavailable: ${nativeUnavailableReason() ?? 'unknown reason'}`,
  );
}

/** A fresh kernel instance of the given kind (on this thread). */
export async function createKernels(kind: EngineKind): Promise<KernelExports> {
  if (kind === 'native') {
    const { requireNativeKernels } = await import('./native.ts');
    return requireNativeKernels();
  }
  return instantiate(await kernelModule());
}

export interface ShardJob {
  from: number; // first row of the batch
  to: number; // one past the last row
}

export function shardJobs(n: number, shards = SHARDS): ShardJob[] {
  const jobs: ShardJob[] = [];
  for (let s = 0; s < shards; s++) {
    const from = Math.floor((s * n) / shards);
    const to = Math.floor(((s + 1) * n) / shards);
    if (to > from) jobs.push({ from, to });
  }
  return jobs;
}

/** Rows per shard at most, for sizing the per-shard cores. */
export function shardCapacity(maxBatch: number): number {
  return Math.ceil(maxBatch / SHARDS);
}

/**
 * Run one shard on a core; returns Σ loss of its rows and leaves its gradient in core.grads.
 * everyStep (sequence mode): y holds a target per position, [n×T], and all are scored.
 * A carried state in `opts` is the whole batch's; the shard reads and writes its own rows.
 */
export function runShard(
  core: LstmCore,
  job: ShardJob,
  x: Int32Array,
  y: Int32Array,
  T: number,
  scale: number,
  everyStep = false,
  opts: BatchOptions = {},
): number {
  const n = job.to - job.from;
  const ys = everyStep ? y.subarray(job.from * T, job.to * T) : y.subarray(job.from, job.to);
  const pass: PassOptions = {};
  if (opts.dropout) pass.dropout = { ...opts.dropout, row0: job.from };
  if (opts.state) {
    const per = layerCount(core.shape) * core.shape.units; // floats of one row's state
    pass.state = {
      h: opts.state.h.subarray(job.from * per, job.to * per),
      c: opts.state.c.subarray(job.from * per, job.to * per),
    };
  }
  return core.lossAndGrads(x.subarray(job.from * T, job.to * T), ys, n, T, scale, everyStep, pass);
}

/** What one shard gives back: Σ loss of its rows and its gradient. */
export interface ShardResult {
  loss: number;
  grads: Float32Array;
}

/**
 * The batch from its shards, taken in shard order: the gradient summed into `out` (reduceShards)
 * and the mean loss over the `scored` characters. Both engines end here, so one thread and two
 * add the same numbers in the same order.
 */
export function combineShards(results: ShardResult[], out: Float32Array, scored: number): number {
  reduceShards(
    results.map((r) => r.grads),
    out,
  );
  let loss = 0;
  for (const r of results) loss += r.loss;
  return loss / scored;
}

/** Sum shard gradients in shard order: out = ((g0 + g1) + g2) … in float32. */
export function reduceShards(grads: Float32Array[], out: Float32Array): void {
  const first = grads[0];
  if (!first) throw new Error('no shard gradients');
  out.set(first);
  for (let s = 1; s < grads.length; s++) {
    const g = grads[s]!;
    for (let i = 0; i < out.length; i++) out[i] = out[i]! + g[i]!;
  }
}

/** All shards on the calling thread, one core. Used for tests, tiny models and the browser. */
export class InlineEngine implements GradientEngine {
  readonly threads = 1;
  readonly engine: EngineKind;
  private readonly core: LstmCore;
  private readonly shardGrads: Float32Array[];

  private constructor(core: LstmCore, engine: EngineKind) {
    this.core = core;
    this.engine = engine;
    this.shardGrads = Array.from({ length: SHARDS }, () => new Float32Array(core.grads.length));
  }

  static async create(opts: EngineOptions): Promise<InlineEngine> {
    checkEngineFits(opts);
    await kernelModule(); // compiled on this thread whatever the engine, as before (CharModel uses it)
    const engine = await resolveEngine(opts.engine);
    const kernels = await createKernels(engine);
    return new InlineEngine(
      new LstmCore(
        opts.shape,
        { maxB: shardCapacity(opts.maxBatch), maxT: opts.maxT, training: true },
        kernels,
      ),
      engine,
    );
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
    this.core.setParams(params);
    const results = shardJobs(n).map((job, s) => {
      const loss = runShard(this.core, job, x, y, T, 1 / scored, everyStep, opts);
      const grads = this.shardGrads[s]!;
      grads.set(this.core.grads);
      return { loss, grads };
    });
    return combineShards(results, out, scored);
  }

  async close(): Promise<void> {}
}

/**
 * threads = 0: everything on the calling thread. threads ≥ 1: that many worker threads (one thread
 * still runs in a worker, so the main thread stays free for progress bars and signals).
 */
export async function createEngine(opts: EngineOptions): Promise<GradientEngine> {
  if (opts.threads === 0) return InlineEngine.create(opts);
  const { WorkerEngine } = await import('./worker-engine.ts');
  return WorkerEngine.create(opts);
}
