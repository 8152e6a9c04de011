import { kernelFactory, resolveEngine, resolvePrecision } from './kernels.ts';
import { LstmCore } from './lstm-core.ts';
import {
  SHARDS,
  checkEngineFits,
  combineShards,
  runShard,
  shardCapacity,
  shardJobs,
} from './shards.ts';
import {
  scoredCount,
  type Batch,
  type EngineKind,
  type EngineOptions,
  type GradientEngine,
  type Precision,
} from './types.ts';

/**
 * All shards on the calling thread, one core. Used for tests, tiny models and the browser (the
 * page trains on it inside its own Web Worker).
 */
export class InlineEngine implements GradientEngine {
  readonly threads = 1;
  readonly engine: EngineKind;
  readonly precision: Precision;
  private readonly core: LstmCore;
  private readonly shardGrads: Float32Array[];

  private constructor(core: LstmCore, engine: EngineKind, precision: Precision) {
    this.core = core;
    this.engine = engine;
    this.precision = precision;
    this.shardGrads = Array.from({ length: SHARDS }, () => new Float32Array(core.grads.length));
  }

  static async create(opts: EngineOptions): Promise<InlineEngine> {
    checkEngineFits(opts);
    const engine = await resolveEngine(opts.engine);
    const precision = await resolvePrecision(opts.precision, engine);
    const kernels = (await kernelFactory(engine, precision))();
    return new InlineEngine(
      new LstmCore(
        opts.shape,
        { maxB: shardCapacity(opts.maxBatch), maxT: opts.maxT, training: true },
        kernels,
      ),
      engine,
      precision,
    );
  }

  async lossAndGrads(params: Float32Array, batch: Batch, out: Float32Array): Promise<number> {
    const scored = scoredCount(batch);
    this.core.setParams(params);
    const results = shardJobs(batch.rows).map((job, s) => {
      const loss = runShard(this.core, job, batch, 1 / scored);
      const grads = this.shardGrads[s]!;
      grads.set(this.core.grads);
      return { loss, grads };
    });
    return combineShards(results, out, scored);
  }

  async close(): Promise<void> {}
}
