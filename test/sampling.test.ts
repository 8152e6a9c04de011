import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Rng } from '../src/sampling/rng.ts';
import {
  applyProcessors,
  argmax,
  greedy,
  sample,
  temperature,
  topK,
  topP,
  type Processor,
} from '../src/sampling/processors.ts';
import { makeSampler, Sampler } from '../src/sampling/sampler.ts';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `index ${i}: ${a[i]} vs ${b[i]} (tol ${tol})`);
  }
};
const sum = (a: ArrayLike<number>) => Array.from(a).reduce((s, x) => s + x, 0);

describe('sample', () => {
  const probs = Float64Array.from([0.1, 0.2, 0.3, 0.4]);

  it('reproduces the same sequence for the same seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const sa = Array.from({ length: 200 }, () => sample(probs, a));
    const sb = Array.from({ length: 200 }, () => sample(probs, b));
    assert.deepEqual(sa, sb);
    const c = new Rng(43);
    const sc = Array.from({ length: 200 }, () => sample(probs, c));
    assert.notDeepEqual(sa, sc);
  });

  it('draws the first index whose cumulative sum exceeds u * total', () => {
    // Recompute each draw by hand from the same stream of uniforms.
    const cum = [0.1, 0.1 + 0.2, 0.1 + 0.2 + 0.3, 0.1 + 0.2 + 0.3 + 0.4];
    const total = cum[3]!;
    const us = new Rng(7);
    const expected: number[] = [];
    for (let n = 0; n < 50; n++) {
      const u = us.next() * total;
      expected.push(cum.findIndex((c) => c > u));
    }
    const rng = new Rng(7);
    const got = Array.from({ length: 50 }, () => sample(probs, rng));
    assert.deepEqual(got, expected);
    // And pinned, so a change in Rng or in the draw shows up.
    const pinned = new Rng(7);
    const first10 = Array.from({ length: 10 }, () => sample(probs, pinned));
    assert.deepEqual(first10, expected.slice(0, 10));
    assert.deepEqual(first10, PINNED_SEED7);
  });

  it('consumes exactly one rng.next() per draw', () => {
    const a = new Rng(3);
    const b = new Rng(3);
    sample(probs, a);
    b.next();
    assert.deepEqual(a.getState(), b.getState());
  });

  it('never returns an index of zero probability', () => {
    const p = Float64Array.from([0, 0.5, 0, 0, 0.25, 0, 0.25, 0]);
    const rng = new Rng(1);
    for (let n = 0; n < 20000; n++) {
      const i = sample(p, rng);
      assert.ok(p[i]! > 0, `drew index ${i}`);
    }
    // u = 0 and u just below 1 (via a fake rng) land on nonzero entries too.
    const fake = (u: number) => ({ next: () => u }) as unknown as Rng;
    assert.equal(sample(p, fake(0)), 1);
    assert.equal(sample(p, fake(1 - 2 ** -53)), 6);
    assert.equal(sample(Float64Array.from([0, 0, 1]), fake(0)), 2);
  });

  it('accepts unnormalised and float32 distributions', () => {
    const fake = (u: number) => ({ next: () => u }) as unknown as Rng;
    assert.equal(sample([2, 6], fake(0.2)), 0); // 0.2 * 8 = 1.6 < 2
    assert.equal(sample([2, 6], fake(0.25)), 1); // 0.25 * 8 = 2, not > 2
    assert.equal(sample(Float32Array.from([0.25, 0.75]), fake(0.3)), 1);
  });

  it('matches the distribution over 10^5 draws', () => {
    const rng = new Rng(2024);
    const N = 100000;
    const counts = new Array<number>(probs.length).fill(0);
    for (let n = 0; n < N; n++) counts[sample(probs, rng)]!++;
    for (let i = 0; i < probs.length; i++) {
      const p = probs[i]!;
      const sd = Math.sqrt(N * p * (1 - p));
      assert.ok(
        Math.abs(counts[i]! - N * p) < 4 * sd,
        `index ${i}: ${counts[i]} vs ${N * p} ± ${sd}`,
      );
    }
  });

  it('rejects bad distributions', () => {
    const rng = new Rng(0);
    assert.throws(() => sample([], rng), /empty/);
    assert.throws(() => sample([0, 0], rng), /sum to 0/);
    assert.throws(() => sample([0.5, NaN], rng), /entry 1 is NaN/);
    assert.throws(() => sample([0.5, -0.1], rng), /entry 1 is -0\.1/);
    assert.throws(() => sample([Infinity, 1], rng), /entry 0 is Infinity/);
  });
});

// sample([0.1, 0.2, 0.3, 0.4], new Rng(7)) ten times.
const PINNED_SEED7 = [1, 2, 2, 2, 3, 2, 2, 1, 3, 1];

describe('temperature', () => {
  it('T = 1 is the identity (up to normalisation)', () => {
    const p = Float64Array.from([0.1, 0.2, 0.3, 0.4]);
    close(temperature(1).apply(p), p, 0);
    close(temperature(1).apply([1, 2, 3, 4]), p, 1e-15);
    const q = Float64Array.from([0.05, 0.15, 0.0, 0.8]);
    close(temperature(1).apply(q), q, 0);
  });

  it('T = 0.5 gives the normalised squares', () => {
    const out = temperature(0.5).apply([0.2, 0.3, 0.5]);
    const sq = [0.04, 0.09, 0.25];
    const s = sum(sq);
    close(
      out,
      sq.map((x) => x / s),
      1e-15,
    );
    assert.ok(Math.abs(sum(out) - 1) < 1e-15);
  });

  it('T = 2 gives the normalised square roots', () => {
    const out = temperature(2).apply([0.2, 0.3, 0.5]);
    const r = [0.2, 0.3, 0.5].map(Math.sqrt);
    const s = sum(r);
    close(
      out,
      r.map((x) => x / s),
      1e-15,
    );
  });

  it('tiny T gives the argmax, never NaN', () => {
    for (const T of [1e-6, 1e-12, 1e-300, Number.MIN_VALUE]) {
      const out = temperature(T).apply([0.2, 0.3, 0.5, 0.0, 0.49]);
      assert.deepEqual(Array.from(out), [0, 0, 1, 0, 0], `T=${T}`);
    }
    // A near tie still resolves once T is well below the log-ratio (here 2e-7).
    assert.deepEqual(Array.from(temperature(1e-12).apply([0.4999999, 0.5])), [0, 1]);
    // Tiny probabilities that the reference's exp(log p / T) would underflow to 0/0.
    const out = temperature(0.01).apply([1e-300, 3e-300, 2e-300]);
    assert.ok(out.every((x) => Number.isFinite(x)));
    assert.equal(argmax(out), 1);
    assert.ok(out[1]! > 0.999999);
  });

  it('exactly tied maxima share the mass at every T', () => {
    close(temperature(1e-9).apply([0.4, 0.2, 0.4]), [0.5, 0, 0.5], 0);
  });

  it('keeps zeros at zero and tends to uniform over the support for large T', () => {
    const out = temperature(1e12).apply([0.7, 0, 0.2, 0.1]);
    assert.equal(out[1], 0);
    close([out[0]!, out[2]!, out[3]!], [1 / 3, 1 / 3, 1 / 3], 1e-9);
    const out2 = temperature(0.3).apply(Float32Array.from([0, 0.6, 0, 0.4]));
    assert.equal(out2[0], 0);
    assert.equal(out2[2], 0);
    assert.ok(out2.every((x) => !Number.isNaN(x)));
  });

  it('does not modify its input', () => {
    const p = Float64Array.from([0.2, 0.3, 0.5]);
    temperature(0.5).apply(p);
    assert.deepEqual(Array.from(p), [0.2, 0.3, 0.5]);
  });

  it('rejects a T that is not a positive finite number, naming it', () => {
    for (const [T, shown] of [
      [0, '0'],
      [-1, '-1'],
      [NaN, 'NaN'],
      [Infinity, 'Infinity'],
      ['0.5', '"0.5"'],
    ] as const) {
      assert.throws(
        () => temperature(T as number),
        (e: unknown) => e instanceof RangeError && e.message.includes(shown),
        `T=${String(T)}`,
      );
    }
  });
});

describe('topK', () => {
  it('keeps the k most probable and renormalises', () => {
    close(topK(2).apply([0.1, 0.4, 0.2, 0.3]), [0, 0.4 / 0.7, 0, 0.3 / 0.7]);
    close(topK(10).apply([0.1, 0.4, 0.2, 0.3]), [0.1, 0.4, 0.2, 0.3]);
  });

  it('breaks ties by the lower index', () => {
    close(topK(2).apply([0.3, 0.2, 0.3, 0.2]), [0.5, 0, 0.5, 0]);
    close(topK(3).apply([0.3, 0.2, 0.3, 0.2]), [0.375, 0.25, 0.375, 0]);
    close(topK(1).apply([0.25, 0.25, 0.25, 0.25]), [1, 0, 0, 0]);
  });

  it('topK(1) equals greedy', () => {
    const rng = new Rng(5);
    for (let n = 0; n < 100; n++) {
      const p = Float64Array.from({ length: 9 }, () => Math.floor(rng.next() * 5));
      if (sum(p) === 0) continue;
      assert.deepEqual(Array.from(topK(1).apply(p)), Array.from(greedy().apply(p)));
    }
  });

  it('rejects k that is not an integer >= 1, naming it', () => {
    for (const k of [0, -2, 1.5, NaN]) {
      assert.throws(
        () => topK(k),
        (e: unknown) => e instanceof RangeError && e.message.includes(String(k)),
      );
    }
  });
});

describe('topP', () => {
  const p = [0.5, 0.3, 0.15, 0.05];

  it('keeps the smallest set reaching p', () => {
    close(topP(0.8).apply(p), [0.625, 0.375, 0, 0]);
    close(topP(0.81).apply(p), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]);
    close(topP(0.5).apply(p), [1, 0, 0, 0]);
    close(topP(0.1).apply(p), [1, 0, 0, 0]);
    close(topP(0.96).apply(p), p);
    close(topP(1).apply(p), p);
  });

  it('works on the same values in float32 and in any order', () => {
    close(topP(0.8).apply(Float32Array.from(p)), [0.625, 0.375, 0, 0], 1e-7);
    close(topP(0.8).apply([0.05, 0.3, 0.15, 0.5]), [0, 0.375, 0, 0.625]);
  });

  it('p = 1 keeps even tiny entries', () => {
    close(topP(1).apply([1 - 1e-12, 1e-12]), [1 - 1e-12, 1e-12], 0);
  });

  it('rejects p outside (0, 1], naming it', () => {
    for (const v of [0, -0.5, 1.01, NaN]) {
      assert.throws(
        () => topP(v),
        (e: unknown) => e instanceof RangeError && e.message.includes(String(v)),
      );
    }
  });
});

describe('greedy and applyProcessors', () => {
  it('greedy is the one-hot argmax, lowest index on ties', () => {
    assert.deepEqual(Array.from(greedy().apply([0.2, 0.5, 0.3])), [0, 1, 0]);
    assert.deepEqual(Array.from(greedy().apply([0.4, 0.2, 0.4])), [1, 0, 0]);
  });

  it('applies a list in order; an empty list normalises a copy', () => {
    const p = [0.1, 0.2, 0.3, 0.4];
    const list: Processor[] = [temperature(0.5), topK(2)];
    const byHand = topK(2).apply(temperature(0.5).apply(p));
    assert.deepEqual(Array.from(applyProcessors(p, list)), Array.from(byHand));
    close(applyProcessors([1, 3], []), [0.25, 0.75], 0);
  });
});

describe('Sampler', () => {
  const p = Float64Array.from([0.05, 0.1, 0.15, 0.3, 0.4]);

  it('composes temperature, top-k, top-p in that fixed order', () => {
    const s = makeSampler({ topP: 0.9, topK: 3, temperature: 0.5 });
    assert.deepEqual(
      s.processors.map((x) => x.name),
      ['temperature(0.5)', 'topK(3)', 'topP(0.9)'],
    );
    const byHand = topP(0.9).apply(topK(3).apply(temperature(0.5).apply(p)));
    assert.deepEqual(Array.from(s.distribution(p)), Array.from(byHand));
    // The order matters here: top-p before temperature would keep more entries.
    assert.equal(Array.from(byHand).filter((x) => x > 0).length, 2);
  });

  it('draws with the seeded rng exactly as sample() does', () => {
    const s = makeSampler({ temperature: 0.8 });
    const a = new Rng(11);
    const b = new Rng(11);
    const q = temperature(0.8).apply(p);
    for (let n = 0; n < 100; n++) assert.equal(s.next(p, a), sample(q, b));
  });

  it('with no options draws from the distribution unchanged', () => {
    const s = new Sampler();
    assert.equal(s.processors.length, 0);
    const a = new Rng(9);
    const b = new Rng(9);
    for (let n = 0; n < 100; n++) assert.equal(s.next(p, a), sample(p, b));
  });

  it('greedy takes the argmax and leaves the rng alone', () => {
    const s = makeSampler({ greedy: true, temperature: 2 });
    const rng = new Rng(1);
    const before = rng.getState();
    assert.equal(s.next(p, rng), 4);
    assert.deepEqual(rng.getState(), before);
  });

  it('rejects bad options, naming the value', () => {
    assert.throws(() => makeSampler({ temperature: 0 }), /temperature.*0/);
    assert.throws(() => makeSampler({ temperature: -3 }), /-3/);
    assert.throws(() => makeSampler({ topK: 2.5 }), /top-k.*2\.5/);
    assert.throws(() => makeSampler({ topP: 1.5 }), /top-p.*1\.5/);
    assert.throws(() => makeSampler({ greedy: 'yes' as unknown as boolean }), /greedy.*"yes"/);
    assert.throws(
      () => makeSampler({ temprature: 1 } as never),
      /unknown sampler option "temprature"/,
    );
  });
});
