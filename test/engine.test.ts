// The WebAssembly engine against TensorFlow.js (same weights → same outputs and gradients, 1e-4
// relative), against finite differences, and for determinism across thread counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelModule } from '../src/engine/kernels.ts';
import { LstmCore } from '../src/engine/lstm-core.ts';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { InlineEngine } from '../src/engine/inline-engine.ts';
import { Parameters, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { randomParams } from './helpers/tfjs-oracle.ts';
import { assertMatchesTfjs, relErr } from './helpers/compare.ts';

await kernelModule();

function randomBatch(rng: Rng, V: number, B: number, T: number): { x: Int32Array; y: Int32Array } {
  return {
    x: Int32Array.from({ length: B * T }, () => rng.int(V)),
    y: Int32Array.from({ length: B }, () => rng.int(V)),
  };
}

const SHAPES: { name: string; shape: ModelShape; B: number; T: number }[] = [
  { name: 'tiny', shape: { vocabSize: 5, units: 4 }, B: 3, T: 4 },
  { name: 'odd vocab, odd batch', shape: { vocabSize: 13, units: 12 }, B: 7, T: 9 },
  { name: 'wide', shape: { vocabSize: 30, units: 40 }, B: 10, T: 20 },
  { name: 'reference', shape: { vocabSize: 57, units: 128 }, B: 16, T: 60 },
];

for (const { name, shape, B, T } of SHAPES) {
  test(`forward and gradients equal TF.js: ${name} (V=${shape.vocabSize} H=${shape.units} B=${B} T=${T})`, async () => {
    const rng = new Rng(42);
    const params = randomParams(shape, rng);
    const { x, y } = randomBatch(rng, shape.vocabSize, B, T);

    await assertMatchesTfjs(params, x, y, B, T);
  });
}

// The native engine against the oracle itself, not only against the WebAssembly engine.
const { nativeAvailable, nativeUnavailableReason } = await import('../src/engine/native.ts');
for (const { name, shape, B, T } of SHAPES) {
  test(
    `native engine: forward and gradients equal TF.js: ${name}`,
    { skip: nativeAvailable() ? false : `native engine unavailable: ${nativeUnavailableReason()}` },
    async () => {
      const rng = new Rng(43);
      const params = randomParams(shape, rng);
      const { x, y } = randomBatch(rng, shape.vocabSize, B, T);
      await assertMatchesTfjs(params, x, y, B, T, 'native');
    },
  );
}

test('gradients match central finite differences of the loss (tiny model)', async () => {
  const shape = { vocabSize: 5, units: 4 };
  const B = 3;
  const T = 5;
  const rng = new Rng(7);
  const params = randomParams(shape, rng);
  const { x, y } = randomBatch(rng, 5, B, T);
  const engine = await InlineEngine.create({ shape, maxBatch: B, maxT: T, threads: 0 });
  const grads = new Parameters(shape);
  await engine.lossAndGrads(params.flat, { x, y, rows: B, steps: T, scoring: 'last' }, grads.flat);
  const scratch = new Parameters(shape);
  const lossAt = async (p: Float32Array): Promise<number> =>
    engine.lossAndGrads(p, { x, y, rows: B, steps: T, scoring: 'last' }, scratch.flat);
  const eps = 1e-2;
  let checked = 0;
  for (let i = 0; i < params.flat.length; i++) {
    const g = grads.flat[i]!;
    const p = params.flat.slice();
    p[i] = params.flat[i]! + eps;
    const up = await lossAt(p);
    p[i] = params.flat[i]! - eps;
    const down = await lossAt(p);
    const fd = (up - down) / (2 * eps);
    assert.ok(
      Math.abs(fd - g) <= 2e-3 + 2e-2 * Math.abs(g),
      `param ${i}: analytic ${g} vs numeric ${fd}`,
    );
    if (Math.abs(g) > 1e-2) checked++;
  }
  assert.ok(checked > 20, `only ${checked} gradients were large enough to check`);
});

test('the same batch gives bit-identical gradients with 0, 1 and 2 threads', async () => {
  const shape = { vocabSize: 11, units: 8 };
  const B = 9;
  const T = 6;
  const rng = new Rng(3);
  const params = randomParams(shape, rng);
  const { x, y } = randomBatch(rng, 11, B, T);
  const results: Float32Array[] = [];
  const losses: number[] = [];
  for (const threads of [0, 1, 2]) {
    const engine = await createEngine({ shape, maxBatch: B, maxT: T, threads });
    const out = new Float32Array(params.flat.length);
    losses.push(
      await engine.lossAndGrads(params.flat, { x, y, rows: B, steps: T, scoring: 'last' }, out),
    );
    results.push(out);
    await engine.close();
  }
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
  assert.equal(losses[1], losses[0]);
  assert.equal(losses[2], losses[0]);
});

test('stateful steps equal a window forward from a zero state', () => {
  const shape = { vocabSize: 9, units: 8 };
  const rng = new Rng(5);
  const params = randomParams(shape, rng);
  const T = 7;
  const x = Int32Array.from({ length: 2 * T }, () => rng.int(9));
  const core = new LstmCore(shape, { maxB: 2, maxT: T, training: false });
  core.setParams(params.flat);
  const window = core.predict(x, 2, T).slice();
  core.resetState(2);
  let last = new Float32Array(0);
  for (let t = 0; t < T; t++) last = core.step([x[t]!, x[T + t]!], 2).slice();
  assert.deepEqual(last, window);
});

test('sequence mode scores every position: equal to the sum of last-step losses over all prefixes', () => {
  // From a zero state, the state after t+1 steps depends only on the first t+1 tokens, so scoring
  // every position of a window equals scoring each prefix on its own. Compares loss and gradient.
  const shape = { vocabSize: 7, units: 8 };
  const B = 3;
  const T = 6;
  const rng = new Rng(21);
  const params = randomParams(shape, rng);
  const x = Int32Array.from({ length: B * T }, () => rng.int(7));
  const y = Int32Array.from({ length: B * T }, () => rng.int(7)); // [b][t]
  const core = new LstmCore(shape, { maxB: B, maxT: T, training: true });
  core.setParams(params.flat);
  const loss = core.lossAndGrads({ x, y, rows: B, steps: T, scoring: 'every', scale: 1 });
  const grads = core.grads.slice();
  let sum = 0;
  const acc = new Float64Array(grads.length);
  for (let t = 1; t <= T; t++) {
    const xp = new Int32Array(B * t);
    const yp = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      xp.set(x.subarray(b * T, b * T + t), b * t);
      yp[b] = y[b * T + t - 1]!;
    }
    sum += core.lossAndGrads({ x: xp, y: yp, rows: B, steps: t, scoring: 'last', scale: 1 });
    core.grads.forEach((g, i) => (acc[i]! += g));
  }
  assert.ok(Math.abs(loss - sum) < 1e-4 * Math.abs(sum), `loss ${loss} vs ${sum}`);
  assert.ok(
    relErr(grads, Float32Array.from(acc)) < 1e-5,
    `gradient differs: ${relErr(grads, Float32Array.from(acc))}`,
  );
});
