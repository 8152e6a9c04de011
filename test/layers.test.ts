// Stacked layers, dropout and carried state (the training modes beyond the reference): stacked
// models against TensorFlow.js, every new path against finite differences, and the invariants
// that make runs reproducible (masks independent of sharding, state carried exactly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dropoutKey, dropoutMask } from '../src/engine/dropout.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { LstmCore, type CoreBatch } from '../src/engine/lstm-core.ts';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { nativeAvailable } from '../src/engine/native.ts';
import { Parameters, stateSize, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { randomParams } from './helpers/tfjs-oracle.ts';
import { assertMatchesTfjs, relErr } from './helpers/compare.ts';

await kernelModule();

const tokens = (rng: Rng, V: number, n: number): Int32Array =>
  Int32Array.from({ length: n }, () => rng.int(V));

for (const { shape, B, T } of [
  { shape: { vocabSize: 7, units: 4, layers: 2 }, B: 3, T: 5 },
  { shape: { vocabSize: 13, units: 12, layers: 3 }, B: 5, T: 8 },
  { shape: { vocabSize: 30, units: 32, layers: 2 }, B: 9, T: 20 },
] satisfies { shape: ModelShape; B: number; T: number }[]) {
  test(`stacked layers: forward and gradients equal TF.js (V=${shape.vocabSize} H=${shape.units} L=${shape.layers} B=${B} T=${T})`, async () => {
    const rng = new Rng(11);
    const params = randomParams(shape, rng);
    const x = tokens(rng, shape.vocabSize, B * T);
    const y = tokens(rng, shape.vocabSize, B);
    await assertMatchesTfjs(params, x, y, B, T);
  });
}

/** Central differences of `lossAt` against the analytic gradient, over every parameter. */
function checkFiniteDifferences(
  params: Parameters,
  analytic: Float32Array,
  lossAt: (p: Float32Array) => number,
): void {
  const eps = 1e-2;
  let checked = 0;
  for (let i = 0; i < params.flat.length; i++) {
    const g = analytic[i]!;
    const p = params.flat.slice();
    p[i] = params.flat[i]! + eps;
    const up = lossAt(p);
    p[i] = params.flat[i]! - eps;
    const down = lossAt(p);
    const fd = (up - down) / (2 * eps);
    assert.ok(
      Math.abs(fd - g) <= 2e-3 + 2e-2 * Math.abs(g),
      `param ${i}: analytic ${g} vs numeric ${fd}`,
    );
    if (Math.abs(g) > 1e-2) checked++;
  }
  assert.ok(checked > 40, `only ${checked} gradients were large enough to check`);
}

for (const everyStep of [false, true]) {
  test(`2 layers with dropout and a carried state: gradients match finite differences (${everyStep ? 'every position' : 'last character'})`, () => {
    const shape = { vocabSize: 5, units: 4, layers: 2 };
    const B = 3;
    const T = 5;
    const L = 2;
    const rng = new Rng(everyStep ? 8 : 9);
    const params = randomParams(shape, rng);
    const x = tokens(rng, 5, B * T);
    const y = tokens(rng, 5, everyStep ? B * T : B);
    const h0 = Float32Array.from({ length: B * L * 4 }, () => rng.uniform(-0.5, 0.5));
    const c0 = Float32Array.from({ length: B * L * 4 }, () => rng.uniform(-1, 1));
    const core = new LstmCore(shape, { maxB: B, maxT: T, training: true });
    // the same masks on every evaluation (same key), a fresh copy of the initial state each time
    const pass = (p: Float32Array): { loss: number; grads: Float32Array; opts: CoreBatch } => {
      core.setParams(p);
      const opts: CoreBatch = {
        x,
        y,
        rows: B,
        steps: T,
        scoring: everyStep ? 'every' : 'last',
        scale: 1,
        dropout: { rate: 0.3, key: 1234, row0: 0 },
        state: { h: h0.slice(), c: c0.slice() },
      };
      const loss = core.lossAndGrads(opts);
      return { loss, grads: core.grads.slice(), opts };
    };
    const { grads, opts } = pass(params.flat);
    assert.notDeepEqual(opts.state!.h, h0, 'the final state is written back');
    checkFiniteDifferences(params, grads, (p) => pass(p).loss);
  });
}

test('dropout masks: the rate is kept, a key names one mask, and rows do not depend on how the batch is cut', () => {
  const H = 64;
  const T = 10;
  const n = 8;
  const a = new Float32Array(T * n * H);
  dropoutMask(a, 0.25, 99, 0, 0, T, n, 0, H);
  const dropped = a.filter((v) => v === 0).length / a.length;
  assert.ok(Math.abs(dropped - 0.25) < 0.02, `dropped ${dropped}`);
  assert.ok(a.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-7));
  const again = new Float32Array(T * n * H);
  dropoutMask(again, 0.25, 99, 0, 0, T, n, 0, H);
  assert.deepEqual(again, a);
  const other = new Float32Array(T * n * H);
  dropoutMask(other, 0.25, 100, 0, 0, T, n, 0, H);
  assert.notDeepEqual(other, a);
  const layer1 = new Float32Array(T * n * H);
  dropoutMask(layer1, 0.25, 99, 1, 0, T, n, 0, H);
  assert.notDeepEqual(layer1, a);
  // rows 5..7 drawn as a shard of their own (row0 = 5) equal rows 5..7 of the whole batch
  const shard = new Float32Array(T * 3 * H);
  dropoutMask(shard, 0.25, 99, 0, 0, T, 3, 5, H);
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < 3; b++) {
      const want = a.subarray((t * n + 5 + b) * H, (t * n + 6 + b) * H);
      const got = shard.subarray((t * 3 + b) * H, (t * 3 + b + 1) * H);
      assert.deepEqual(got, want);
    }
  }
  assert.notEqual(dropoutKey(1, 1), dropoutKey(1, 2));
  assert.notEqual(dropoutKey(1, 1), dropoutKey(2, 1));
});

test('dropout rate 0 is the plain pass; a positive rate changes the loss', () => {
  const shape = { vocabSize: 6, units: 8, layers: 2 };
  const rng = new Rng(4);
  const params = randomParams(shape, rng);
  const x = tokens(rng, 6, 2 * 4);
  const y = tokens(rng, 6, 2 * 4);
  const core = new LstmCore(shape, { maxB: 2, maxT: 4, training: true });
  core.setParams(params.flat);
  const batch = { x, y, rows: 2, steps: 4, scoring: 'every', scale: 1 } as const;
  const plain = core.lossAndGrads(batch);
  const plainGrads = core.grads.slice();
  const zero = core.lossAndGrads({ ...batch, dropout: { rate: 0, key: 5, row0: 0 } });
  assert.equal(zero, plain);
  assert.deepEqual(core.grads, plainGrads);
  const dropped = core.lossAndGrads({ ...batch, dropout: { rate: 0.5, key: 5, row0: 0 } });
  assert.notEqual(dropped, plain);
});

test('a carried state continues exactly: two segments of 4 steps score like one window of 8', () => {
  const shape = { vocabSize: 9, units: 8, layers: 2 };
  const B = 2;
  const rng = new Rng(6);
  const params = randomParams(shape, rng);
  const x = tokens(rng, 9, B * 8); // [b][t]
  const y = tokens(rng, 9, B * 8);
  const core = new LstmCore(shape, { maxB: B, maxT: 8, training: true });
  core.setParams(params.flat);
  const whole = core.lossAndGrads({ x, y, rows: B, steps: 8, scoring: 'every', scale: 1 });
  const half = (a: Int32Array, k: number): Int32Array =>
    Int32Array.from({ length: B * 4 }, (_, i) => a[Math.floor(i / 4) * 8 + k * 4 + (i % 4)]!);
  const state = { h: new Float32Array(B * 2 * 8), c: new Float32Array(B * 2 * 8) };
  const halfBatch = (k: number): CoreBatch => ({
    x: half(x, k),
    y: half(y, k),
    rows: B,
    steps: 4,
    scoring: 'every',
    scale: 1,
    state,
  });
  const first = core.lossAndGrads(halfBatch(0));
  const second = core.lossAndGrads(halfBatch(1));
  assert.ok(Math.abs(first + second - whole) < 1e-4 * whole, `${first} + ${second} vs ${whole}`);
  // the state after 8 steps equals stepping the inference core through the same 8 characters
  const inf = new LstmCore(shape, { maxB: B, maxT: 1, training: false });
  inf.setParams(params.flat);
  inf.resetState(B);
  for (let t = 0; t < 8; t++) inf.step([x[t]!, x[8 + t]!], B);
  const stepped = inf.getState(B);
  assert.ok(relErr(state.h, stepped.h) < 1e-5, `h differs by ${relErr(state.h, stepped.h)}`);
  assert.ok(relErr(state.c, stepped.c) < 1e-5, `c differs by ${relErr(state.c, stepped.c)}`);
});

/** One every-position batch with dropout and a carried state (h 0.2, c -0.1) through an engine. */
async function stackedBatch(
  shape: ModelShape,
  B: number,
  T: number,
  seed: number,
  engine: { threads: number; engine?: 'wasm' | 'native' },
): Promise<{ loss: number; grads: Float32Array; h: Float32Array; c: Float32Array }> {
  const rng = new Rng(seed);
  const params = randomParams(shape, rng);
  const x = tokens(rng, shape.vocabSize, B * T);
  const y = tokens(rng, shape.vocabSize, B * T);
  const e = await createEngine({ shape, maxBatch: B, maxT: T, ...engine });
  const grads = new Float32Array(params.flat.length);
  const floats = B * stateSize(shape);
  const state = { h: new Float32Array(floats).fill(0.2), c: new Float32Array(floats).fill(-0.1) };
  const loss = await e.lossAndGrads(
    params.flat,
    { x, y, rows: B, steps: T, scoring: 'every', dropout: { rate: 0.25, key: 77 }, state },
    grads,
  );
  await e.close();
  return { loss, grads, ...state };
}

test('stacked layers with dropout give bit-identical gradients with 0, 1 and 2 threads', async () => {
  const shape = { vocabSize: 11, units: 8, layers: 2 };
  const runs = [];
  for (const threads of [0, 1, 2]) runs.push(await stackedBatch(shape, 9, 6, 3, { threads }));
  for (const r of runs.slice(1)) {
    assert.equal(r.loss, runs[0]!.loss);
    assert.deepEqual(r.grads, runs[0]!.grads);
    assert.deepEqual(r.h, runs[0]!.h);
    assert.deepEqual(r.c, runs[0]!.c);
  }
});

test(
  'the native engine agrees with WebAssembly on stacked layers with dropout and a carried state',
  { skip: !nativeAvailable() && 'native engine not built' },
  async () => {
    const shape = { vocabSize: 23, units: 16, layers: 2 };
    const w = await stackedBatch(shape, 6, 12, 12, { threads: 2, engine: 'wasm' });
    const n = await stackedBatch(shape, 6, 12, 12, { threads: 2, engine: 'native' });
    assert.ok(Math.abs(w.loss - n.loss) < 1e-5 * w.loss);
    assert.ok(relErr(n.grads, w.grads) < 1e-4, `gradients differ by ${relErr(n.grads, w.grads)}`);
    assert.ok(relErr(n.h, w.h) < 1e-5);
    assert.ok(relErr(n.c, w.c) < 1e-5);
  },
);

test('a stacked model generates: stepping one character at a time equals a window from a zero state', async () => {
  const { CharModel } = await import('../src/model/char-model.ts');
  const shape = { vocabSize: 6, units: 8, layers: 3 };
  const params = randomParams(shape, new Rng(31));
  const meta = {
    formatVersion: 1,
    vocab: [...'abcde '],
    lowercase: false,
    maxlen: 10,
    step: 3,
    units: 8,
    layers: 3,
    training: {},
  };
  const model = CharModel.fromParts(params, meta);
  const text = 'abc de eab';
  const window = model.predict(text);
  const stepper = model.stepper();
  const stepped = stepper.feed(model.vocab.encode(text)).slice();
  assert.ok(relErr(stepped, window) < 1e-6);
  const { h, c } = stepper.getState();
  assert.equal(h.length, 3 * 8);
  // a second stepper interleaved does not disturb the first one's state
  const other = model.stepper();
  other.feed(model.vocab.encode('eeee'));
  assert.deepEqual(stepper.getState().h, h);
  stepper.setState(h, c);
  assert.throws(() => stepper.setState(h.subarray(0, 8), c.subarray(0, 8)), /24 floats/);
});

test('the stateful held-out loss is the mean loss of reading the text as one carried stream', async () => {
  const { evaluateStateful } = await import('../src/train/evaluate.ts');
  const shape = { vocabSize: 7, units: 8, layers: 2 };
  const params = randomParams(shape, new Rng(40));
  const text = tokens(new Rng(41), 7, 50);
  const core = new LstmCore(shape, { maxB: 1, maxT: 1, training: false });
  core.setParams(params.flat);
  core.resetState(1);
  let sum = 0;
  for (let i = 0; i + 1 < text.length; i++)
    sum -= Math.log(core.step([text[i]!], 1)[text[i + 1]!]!);
  const one = await evaluateStateful(params, text, { streams: 1, engine: 'wasm' });
  assert.equal(one.windows, 49);
  assert.ok(Math.abs(one.loss - sum / 49) < 1e-6, `${one.loss} vs ${sum / 49}`);
  // cut into 5 streams: 5 pieces of 10 characters, 9 predictions each, every piece from a zero state
  const five = await evaluateStateful(params, text, { streams: 5, engine: 'wasm' });
  assert.equal(five.windows, 45);
  assert.notEqual(five.loss, one.loss);
});
