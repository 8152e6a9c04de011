import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learningRateAt, parseSchedule } from '../src/train/schedule.ts';
import { RmsProp } from '../src/train/rmsprop.ts';
import { UserError } from '../src/errors.ts';

test('schedules: constant, step decay, cosine', () => {
  assert.equal(learningRateAt(parseSchedule('constant'), 0.01, 5000, 100, 0.7), 0.01);
  const step = parseSchedule('step:2:0.5');
  assert.equal(learningRateAt(step, 0.01, 199, 100, 0), 0.01); // epoch 1
  assert.equal(learningRateAt(step, 0.01, 200, 100, 0), 0.005); // epoch 2 starts
  assert.equal(learningRateAt(step, 0.01, 450, 100, 0), 0.0025);
  const cos = parseSchedule('cosine');
  assert.equal(learningRateAt(cos, 0.01, 0, 100, 0), 0.01);
  assert.ok(Math.abs(learningRateAt(cos, 0.01, 0, 100, 0.5) - 0.005) < 1e-15);
  assert.ok(Math.abs(learningRateAt(cos, 0.01, 0, 100, 1)) < 1e-15);
  assert.deepEqual(parseSchedule('step'), { kind: 'step', everyEpochs: 10, gamma: 0.5 });
  assert.throws(
    () => parseSchedule('linear'),
    (e: unknown) => e instanceof UserError && /"linear"/.test(e.message),
  );
  assert.throws(() => parseSchedule('step:0:0.5'), UserError);
});

test('one RMSprop step equals the formula (Keras: eps outside the square root)', () => {
  const cfg = { learningRate: 0.01, rho: 0.9, epsilon: 1e-7 };
  const opt = new RmsProp(4, cfg);
  opt.ms.set([0, 0.5, 2, 1e-9]);
  const w = Float32Array.from([1, -2, 0.5, 3]);
  const g = Float32Array.from([0.3, -0.1, 0, 2e-4]);
  const w0 = Array.from(w);
  const ms0 = Array.from(opt.ms);
  opt.step(w, g);
  for (let i = 0; i < 4; i++) {
    const ms = 0.9 * ms0[i]! + 0.1 * g[i]! ** 2;
    const expect = w0[i]! - (0.01 * g[i]!) / (Math.sqrt(ms) + 1e-7);
    assert.ok(Math.abs(opt.ms[i]! - ms) <= 1e-6 * Math.abs(ms) + 1e-30, `ms[${i}]`);
    assert.ok(Math.abs(w[i]! - expect) <= 1e-6 * Math.abs(expect), `w[${i}]: ${w[i]} vs ${expect}`);
  }
  assert.equal(opt.iterations, 1);
});

test('two Adam steps equal the formula (Keras: bias corrections folded into the rate, eps outside the root)', async () => {
  const { Adam } = await import('../src/train/adam.ts');
  const opt = new Adam(3, { learningRate: 0.002, epsilon: 1e-7 });
  const w = Float32Array.from([1, -2, 0.5]);
  const grads = [Float32Array.from([0.3, -0.1, 0]), Float32Array.from([-0.2, -0.1, 4e-3])];
  const want = Array.from(w, Number);
  const m = [0, 0, 0];
  const v = [0, 0, 0];
  grads.forEach((g, s) => {
    const t = s + 1;
    const lrT = (0.002 * Math.sqrt(1 - 0.999 ** t)) / (1 - 0.9 ** t);
    for (let i = 0; i < 3; i++) {
      m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
      v[i] = 0.999 * v[i]! + 0.001 * g[i]! ** 2;
      want[i] = want[i]! - (lrT * m[i]!) / (Math.sqrt(v[i]!) + 1e-7);
    }
    opt.step(w, g, 0.002);
  });
  for (let i = 0; i < 3; i++)
    assert.ok(
      Math.abs(w[i]! - want[i]!) <= 1e-6 * Math.abs(want[i]!),
      `w[${i}]: ${w[i]} vs ${want[i]}`,
    );
  assert.equal(opt.iterations, 2);
  assert.equal(opt.state.length, 6);
});
