// Comparing our engine with a reference (TensorFlow.js, another engine) within a tolerance.
import assert from 'node:assert/strict';
import { InlineEngine } from '../../src/engine/inline-engine.ts';
import { createKernels } from '../../src/engine/kernels.ts';
import type { EngineKind } from '../../src/engine/types.ts';
import { LstmCore } from '../../src/engine/lstm-core.ts';
import { Parameters } from '../../src/model/params.ts';
import { tfForward, tfLossAndGrads } from './tfjs-oracle.ts';

/** max |a-b| / (max |b| over the tensor): a relative error that is not blown up by tiny entries */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * Our forward pass (inference core) and our loss and every weight's gradient (training engine,
 * the reference mode: the character after each window) equal TF.js's within 1e-4 relative, on
 * the WebAssembly kernels or (engine 'native') the native addon's.
 */
export async function assertMatchesTfjs(
  params: Parameters,
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
  engine: EngineKind = 'wasm',
): Promise<void> {
  const { shape } = params;
  const core = new LstmCore(
    shape,
    { maxB: B, maxT: T, training: false },
    await createKernels(engine),
  );
  core.setParams(params.flat);
  const ours = core.predict(x, B, T).slice();
  const theirs = await tfForward(params, x, B, T);
  assert.ok(relErr(ours, theirs) < 1e-4, `probabilities differ: ${relErr(ours, theirs)}`);

  const training = await InlineEngine.create({ shape, maxBatch: B, maxT: T, threads: 0, engine });
  const grads = new Parameters(shape);
  const loss = await training.lossAndGrads(
    params.flat,
    { x, y, rows: B, steps: T, scoring: 'last' },
    grads.flat,
  );
  const ref = await tfLossAndGrads(params, x, y, B, T);
  assert.ok(Math.abs(loss - ref.loss) / ref.loss < 1e-4, `loss ${loss} vs ${ref.loss}`);
  const names = ['kernel', 'recurrent kernel', 'bias'];
  const L = params.lstm.length;
  const ourViews = grads.views();
  ref.grads.views().forEach((want, i) => {
    const e = relErr(ourViews[i]!, want);
    const what =
      i < 3 * L
        ? `LSTM layer ${Math.floor(i / 3)} ${names[i % 3]}`
        : `dense ${i === 3 * L ? 'kernel' : 'bias'}`;
    assert.ok(e < 1e-4, `gradient of the ${what} differs from TF.js: relative error ${e}`);
  });
}
