// Sanity checks of the TF.js oracle itself against a plain float64 scalar LSTM written here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Parameters,
  WEIGHT_NAMES,
  weightShapes,
  type ModelShape,
  type WeightName,
} from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { KERAS_EPSILON, randomParams, tfForward, tfLossAndGrads } from './helpers/tfjs-oracle.ts';

type Weights64 = Record<WeightName, Float64Array>;

/** Views into a float64 copy of the flat parameter vector, in the same order as Parameters. */
function views64(shape: ModelShape, flat: Float64Array): Weights64 {
  const shapes = weightShapes(shape);
  let offset = 0;
  const out = {} as Weights64;
  for (const name of WEIGHT_NAMES) {
    const n = shapes[name].reduce((a, b) => a * b, 1);
    out[name] = flat.subarray(offset, offset + n);
    offset += n;
  }
  assert.equal(offset, flat.length);
  return out;
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/** Plain scalar forward: [B, V] softmax probabilities after the last step, in float64. */
function scalarForward(
  shape: ModelShape,
  flat: Float64Array,
  x: Int32Array,
  B: number,
  T: number,
): Float64Array {
  const { vocabSize: V, units: H } = shape;
  const w = views64(shape, flat);
  const G = 4 * H;
  const probs = new Float64Array(B * V);
  const z = new Float64Array(G);
  for (let b = 0; b < B; b++) {
    const h = new Float64Array(H);
    const c = new Float64Array(H);
    for (let t = 0; t < T; t++) {
      const tok = x[b * T + t]!;
      for (let j = 0; j < G; j++) {
        let s = w.kernel[tok * G + j]! + w.bias[j]!;
        for (let k = 0; k < H; k++) s += h[k]! * w.recurrentKernel[k * G + j]!;
        z[j] = s;
      }
      for (let k = 0; k < H; k++) {
        const ig = sigmoid(z[k]!);
        const fg = sigmoid(z[H + k]!);
        const gg = Math.tanh(z[2 * H + k]!);
        const og = sigmoid(z[3 * H + k]!);
        c[k] = fg * c[k]! + ig * gg;
        h[k] = og * Math.tanh(c[k]!);
      }
    }
    let max = -Infinity;
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      let s = w.denseBias[v]!;
      for (let k = 0; k < H; k++) s += h[k]! * w.denseKernel[k * V + v]!;
      logits[v] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let v = 0; v < V; v++) sum += logits[v] = Math.exp(logits[v]! - max);
    for (let v = 0; v < V; v++) probs[b * V + v] = logits[v]! / sum;
  }
  return probs;
}

/** Keras categorical cross-entropy (clip at 1e-7), mean over the batch, in float64. */
function scalarLoss(
  shape: ModelShape,
  flat: Float64Array,
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
): number {
  const V = shape.vocabSize;
  const p = scalarForward(shape, flat, x, B, T);
  let loss = 0;
  for (let b = 0; b < B; b++) {
    const pb = Math.min(Math.max(p[b * V + y[b]!]!, KERAS_EPSILON), 1 - KERAS_EPSILON);
    loss -= Math.log(pb);
  }
  return loss / B;
}

function randomTokens(rng: Rng, n: number, V: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(V);
  return a;
}

test('tfForward matches a plain scalar LSTM forward within 1e-5', async () => {
  const rng = new Rng(1234);
  for (const [shape, B, T] of [
    [{ vocabSize: 7, units: 6 }, 4, 10],
    [{ vocabSize: 5, units: 3 }, 3, 4],
    [{ vocabSize: 11, units: 16 }, 2, 25],
  ] as const) {
    const params = randomParams(shape, rng);
    const x = randomTokens(rng, B * T, shape.vocabSize);
    const got = await tfForward(params, x, B, T);
    const want = scalarForward(shape, Float64Array.from(params.flat), x, B, T);
    assert.equal(got.length, B * shape.vocabSize);
    let maxErr = 0;
    for (let i = 0; i < got.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i]! - want[i]!));
    assert.ok(
      maxErr < 1e-5,
      `V=${shape.vocabSize} H=${shape.units}: max |tf - scalar| = ${maxErr}`,
    );
    for (let b = 0; b < B; b++) {
      let s = 0;
      for (let v = 0; v < shape.vocabSize; v++) s += got[b * shape.vocabSize + v]!;
      assert.ok(Math.abs(s - 1) < 1e-5, `row ${b} sums to ${s}`);
    }
  }
});

test('tfForward uses the sigmoid recurrent activation, not hard_sigmoid', async () => {
  // Large gate pre-activations make sigmoid and hard_sigmoid (clip(0.2z+0.5, 0, 1)) differ a lot.
  const rng = new Rng(99);
  const shape = { vocabSize: 4, units: 2 };
  const params = randomParams(shape, rng, 4);
  const x = randomTokens(rng, 2 * 6, 4);
  const got = await tfForward(params, x, 2, 6);
  const want = scalarForward(shape, Float64Array.from(params.flat), x, 2, 6);
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5);
});

test('tfLossAndGrads matches central finite differences on V=5, H=3, T=4, B=3', async () => {
  const shape = { vocabSize: 5, units: 3 };
  const B = 3;
  const T = 4;
  const rng = new Rng(42);
  const params = randomParams(shape, rng);
  const x = randomTokens(rng, B * T, shape.vocabSize);
  const y = randomTokens(rng, B, shape.vocabSize);

  const { loss, grads } = await tfLossAndGrads(params, x, y, B, T);
  assert.ok(grads instanceof Parameters);
  assert.deepEqual(grads.shape, shape);

  const flat = Float64Array.from(params.flat);
  const loss64 = scalarLoss(shape, flat, x, y, B, T);
  assert.ok(Math.abs(loss - loss64) < 1e-5, `loss tf=${loss} scalar=${loss64}`);

  const eps = 1e-5;
  let checked = 0;
  let maxRel = 0;
  const failures: string[] = [];
  for (const name of WEIGHT_NAMES) {
    const g = grads.get(name);
    // Index of this weight's block inside the flat vector.
    const base =
      g.byteOffset / Float32Array.BYTES_PER_ELEMENT -
      grads.flat.byteOffset / Float32Array.BYTES_PER_ELEMENT;
    for (let i = 0; i < g.length; i++) {
      const k = base + i;
      const orig = flat[k]!;
      flat[k] = orig + eps;
      const lp = scalarLoss(shape, flat, x, y, B, T);
      flat[k] = orig - eps;
      const lm = scalarLoss(shape, flat, x, y, B, T);
      flat[k] = orig;
      const fd = (lp - lm) / (2 * eps);
      const an = g[i]!;
      if (Math.abs(fd) > 1e-4 || Math.abs(an) > 1e-4) {
        const rel = Math.abs(an - fd) / Math.max(Math.abs(an), Math.abs(fd));
        maxRel = Math.max(maxRel, rel);
        checked++;
        if (rel > 1e-3)
          failures.push(`${name}[${i}]: tf=${an} fd=${fd} rel=${rel.toExponential(2)}`);
      } else if (Math.abs(an - fd) > 1e-6) {
        failures.push(
          `${name}[${i}]: tf=${an} fd=${fd} (small entry, abs diff ${Math.abs(an - fd)})`,
        );
      }
    }
  }
  assert.deepEqual(failures, [], `gradient mismatches (max rel ${maxRel})`);
  // The tiny model has 5*12 + 3*12 + 12 + 3*5 + 5 = 128 weights; only rows of unseen tokens are zero.
  assert.ok(checked > 60, `only ${checked} gradient entries were large enough to check`);
});

test('tfLossAndGrads: zero gradient for kernel rows of tokens absent from x, exact loss formula', async () => {
  const shape = { vocabSize: 6, units: 4 };
  const rng = new Rng(7);
  const params = randomParams(shape, rng);
  const B = 2;
  const T = 3;
  const x = Int32Array.from([0, 1, 2, 2, 1, 0]); // tokens 3, 4, 5 never appear
  const y = Int32Array.from([3, 5]);
  const { loss, grads } = await tfLossAndGrads(params, x, y, B, T);
  const G = 4 * shape.units;
  for (const tok of [3, 4, 5]) {
    for (let j = 0; j < G; j++) assert.equal(grads.kernel[tok * G + j], 0);
  }
  const probs = await tfForward(params, x, B, T);
  const want = -(Math.log(probs[0 * 6 + 3]!) + Math.log(probs[1 * 6 + 5]!)) / 2;
  assert.ok(Math.abs(loss - want) < 1e-5, `loss ${loss} vs -mean(log p[y]) ${want}`);
  // Dense bias gradient of softmax + CE is mean(p - onehot(y)).
  for (let v = 0; v < 6; v++) {
    const want = (probs[v]! - (v === 3 ? 1 : 0) + probs[6 + v]! - (v === 5 ? 1 : 0)) / 2;
    assert.ok(
      Math.abs(grads.denseBias[v]! - want) < 1e-6,
      `denseBias[${v}] ${grads.denseBias[v]} vs ${want}`,
    );
  }
});

test('tfForward rejects malformed inputs', async () => {
  const params = new Parameters({ vocabSize: 3, units: 2 });
  await assert.rejects(tfForward(params, Int32Array.from([0, 1, 2]), 2, 2), RangeError);
  await assert.rejects(tfForward(params, Int32Array.from([0, 3]), 1, 2), RangeError);
  await assert.rejects(
    tfLossAndGrads(params, Int32Array.from([0, 1]), Int32Array.from([0, 1]), 1, 2),
    RangeError,
  );
});
