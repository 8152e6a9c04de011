import { stateSize } from '../model/params.ts';
import type { LstmCore } from './lstm-core.ts';
import { checkCoreFits } from './memory.ts';
import type { Batch, EngineOptions } from './types.ts';

// Loss and gradients of one training batch, data-parallel over a FIXED number of shards.
// The batch is always cut into SHARDS row ranges whatever the thread count, each shard's gradient
// is computed alone, and the shard gradients are summed in shard order on the calling thread. So
// one thread and two threads perform the same float operations in the same order: the same seed
// gives bit-identical weights at any thread count. Both engines (inline-engine.ts on the calling
// thread, worker-engine.ts on worker threads) run their shards through here.

export const SHARDS = 2;

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

/**
 * Run one shard of `batch` on a core; returns Σ loss of its rows and leaves its gradient (of
 * scale · Σ loss) in core.grads. A carried state is the whole batch's; the shard reads and writes
 * its own rows.
 */
export function runShard(core: LstmCore, job: ShardJob, batch: Batch, scale: number): number {
  const { x, y, steps: T, scoring } = batch;
  const per = stateSize(core.shape); // floats of one row's h (or c)
  return core.lossAndGrads({
    x: x.subarray(job.from * T, job.to * T),
    y: scoring === 'every' ? y.subarray(job.from * T, job.to * T) : y.subarray(job.from, job.to),
    rows: job.to - job.from,
    steps: T,
    scoring,
    scale,
    ...(batch.dropout && { dropout: { ...batch.dropout, row0: job.from } }),
    ...(batch.state && {
      state: {
        h: batch.state.h.subarray(job.from * per, job.to * per),
        c: batch.state.c.subarray(job.from * per, job.to * per),
      },
    }),
  });
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
