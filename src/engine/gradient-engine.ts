import { InlineEngine } from './inline-engine.ts';
import type { EngineOptions, GradientEngine } from './types.ts';

// The training engines' factory: the interface they share is in types.ts, the shards they cut a
// batch into in shards.ts. worker-engine.ts (Node's worker threads) is imported only when asked
// for, so that this file, and the trainer above it, load in a browser.

/**
 * threads = 0: everything on the calling thread. threads ≥ 1: that many worker threads (one thread
 * still runs in a worker, so the main thread stays free for progress bars and signals).
 */
export async function createEngine(opts: EngineOptions): Promise<GradientEngine> {
  if (opts.threads === 0) return InlineEngine.create(opts);
  const { WorkerEngine } = await import('./worker-engine.ts');
  return WorkerEngine.create(opts);
}
