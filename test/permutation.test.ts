// Each epoch's window order without a materialised array (src/data/permutation.ts): a keyed
// bijection of [0, n) read one position at a time; windows without an array of their starts
// (src/data/windows.ts); and the trainer's use of both, old checkpoints (no `order` in their
// state) keeping the Fisher–Yates shuffle they were trained with.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_PERMUTATION_SIZE, Permutation, ROUNDS } from '../src/data/permutation.ts';
import { gatherBatch, makeWindows, startOf } from '../src/data/windows.ts';
import { UserError } from '../src/errors.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Trainer, type TrainerState } from '../src/train/trainer.ts';

const order = (p: Permutation): number[] => Array.from({ length: p.size }, (_, k) => p.indexAt(k));
const key = (seed: number): Uint32Array => {
  const r = new Rng(seed);
  return Uint32Array.from({ length: ROUNDS }, () => r.nextU32());
};

describe('Permutation', () => {
  it('is a bijection of [0, n) for every n, small, odd, powers of two and one past them', () => {
    const sizes = [1, 2, 3, 5, 7, 1000, 65_537, 100_003];
    for (let k = 1; k <= 17; k++) sizes.push(2 ** k, 2 ** k + 1);
    for (const n of sizes) {
      for (const seed of n > 10_000 ? [1] : [1, 2, 3]) {
        const seen = new Uint8Array(n);
        for (const i of order(new Permutation(n, key(seed)))) {
          assert.ok(Number.isInteger(i) && i >= 0 && i < n, `n ${n}: ${i} out of range`);
          assert.equal(seen[i], 0, `n ${n}, seed ${seed}: ${i} twice`);
          seen[i] = 1;
        }
      }
    }
  });

  it('works up to 2^32 elements: positions land in range, distinct, without any array', () => {
    for (const n of [MAX_PERMUTATION_SIZE, 3_000_000_001, 2 ** 31 + 1]) {
      const p = new Permutation(n, key(4));
      const got = [0, 1, 2, 12_345, n - 2, n - 1].map((k) => p.indexAt(k));
      for (const i of got) assert.ok(Number.isInteger(i) && i >= 0 && i < n, `${n}: ${i}`);
      assert.equal(new Set(got).size, got.length);
    }
  });

  it('is fixed for a key, and draw takes its key from the Rng (ROUNDS words)', () => {
    assert.deepEqual(order(new Permutation(1000, key(7))), order(new Permutation(1000, key(7))));
    const a = new Rng(7);
    const drawn = Permutation.draw(1000, a);
    assert.deepEqual(order(drawn), order(new Permutation(1000, key(7))));
    const b = new Rng(7);
    for (let r = 0; r < ROUNDS; r++) b.nextU32();
    assert.deepEqual(a.getState(), b.getState()); // nothing else drawn
  });

  it('different keys give different orders, none the identity', () => {
    const orders = [1, 2, 3, 4, 5, 6, 7, 8].map((s) => order(new Permutation(1000, key(s))));
    const identity = Array.from({ length: 1000 }, (_, i) => i);
    for (let i = 0; i < orders.length; i++) {
      assert.notDeepEqual(orders[i], identity);
      for (let j = 0; j < i; j++) {
        const same = orders[i]!.filter((v, k) => orders[j]![k] === v).length;
        assert.ok(same < 10, `keys ${i + 1} and ${j + 1} agree at ${same} of 1000 positions`);
      }
    }
  });

  it('spreads every element evenly over the positions, and reaches every order of 3', () => {
    // 2,000 seeded keys; each element's position in 10 buckets should be ~200 each. Σ chi-square
    // over the 100 elements has 900 degrees of freedom (mean 900, sd 42): a poor mixer (a
    // rotation, a few rounds) gives thousands.
    const n = 100;
    const keys = 2000;
    const counts = new Float64Array(n * 10); // [element][bucket]
    const rng = new Rng(11);
    for (let t = 0; t < keys; t++) {
      const p = Permutation.draw(n, rng);
      for (let k = 0; k < n; k++) counts[p.indexAt(k) * 10 + Math.floor((k * 10) / n)]!++;
    }
    const expected = keys / 10;
    let chi2 = 0;
    let worst = 0;
    for (const c of counts) {
      chi2 += (c - expected) ** 2 / expected;
      worst = Math.max(worst, Math.abs(c - expected));
    }
    assert.ok(chi2 < 900 + 5 * 42, `chi-square ${chi2.toFixed(0)} over 900 degrees of freedom`);
    assert.ok(worst < 75, `an element's bucket is off by ${worst} of ${expected}`); // ~5.3 sd
    // the 6 orders of 3 elements, each near 1/6 of 6,000 keys
    const seen = new Map<string, number>();
    const r3 = new Rng(12);
    for (let t = 0; t < 6000; t++) {
      const o = order(Permutation.draw(3, r3)).join('');
      seen.set(o, (seen.get(o) ?? 0) + 1);
    }
    assert.equal(seen.size, 6, [...seen.keys()].join(' '));
    for (const [o, c] of seen) assert.ok(c > 700 && c < 1300, `order ${o}: ${c} of 6000`);
  });

  it('refuses a bad size, key or position, naming the value', () => {
    assert.throws(() => new Permutation(-1, key(1)), /got -1/);
    assert.throws(() => new Permutation(2 ** 32 + 1, key(1)), /got 4294967297/);
    assert.throws(() => new Permutation(1.5, key(1)), /got 1.5/);
    assert.throws(() => new Permutation(10, [1, 2]), /6 words, got 2/);
    const p = new Permutation(10, key(1));
    assert.throws(() => p.indexAt(10), /\[0, 10\), got 10/);
    assert.throws(() => p.indexAt(-1), /got -1/);
    assert.equal(new Permutation(0, key(1)).size, 0);
  });
});

describe('windows without a start array', () => {
  it('window i starts at i × stride; gatherBatch reads an order function', () => {
    const tokens = Int32Array.from({ length: 40 }, (_, i) => i);
    const w = makeWindows(tokens, 5, 3);
    assert.equal(w.count, 12); // ceil((40 − 5) / 3)
    assert.equal('starts' in w, false); // nothing of size count
    assert.deepEqual(
      Array.from({ length: w.count }, (_, i) => startOf(w, i)),
      [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33],
    );
    const x = new Int32Array(2 * 5);
    const y = new Int32Array(2);
    const picked = [11, 4, 7];
    assert.equal(
      gatherBatch(w, (k) => picked[k]!, 1, 3, x, y),
      2,
    );
    assert.deepEqual([...x], [12, 13, 14, 15, 16, 21, 22, 23, 24, 25]);
    assert.deepEqual([...y], [17, 26]);
    // an explicit list (a sample) is read instead of the grid
    const s = { ...w, starts: Int32Array.of(33, 6), count: 2 };
    assert.deepEqual([startOf(s, 0), startOf(s, 1)], [33, 6]);
  });
});

describe('the trainer’s epoch order', () => {
  // Tokens 0, 1, 2, … so a batch row's first token is its window's start; stride 3: start / 3 is
  // the window's index. A stand-in engine records them (the loss and gradient do not matter here).
  const N = 160;
  const tokens = Int32Array.from({ length: N }, (_, i) => i);
  const windows = makeWindows(tokens, 5, 3); // 52 windows, batches of 7: 8 per epoch
  const count = windows.count;

  function trainer(record: number[][], stopAfter?: number): Trainer {
    const t: Trainer = new Trainer({
      params: initParameters({ vocabSize: 4, units: 4 }, new Rng(1)),
      windows,
      shuffleRng: new Rng(2),
      config: { batchSize: 7, epochs: 3, learningRate: 0.01, rho: 0.9, epsilon: 1e-7, threads: 0 },
      engine: {
        threads: 0,
        engine: 'wasm',
        precision: 'fp32',
        async lossAndGrads(_p, { x, rows, steps }, out) {
          record.push(Array.from({ length: rows }, (_, b) => x[b * steps]! / 3));
          out.fill(0);
          return 1;
        },
        async close() {},
      },
      callbacks:
        stopAfter === undefined
          ? []
          : [{ onBatchEnd: (e) => void (e.step === stopAfter && t.requestStop()) }],
    });
    return t;
  }
  const epochs = (record: number[][]): number[][] => {
    const flat = record.flat();
    return [0, 1, 2].map((e) => flat.slice(e * count, (e + 1) * count));
  };

  it('new runs: epoch e reads Permutation.draw(count, shuffle generator) position by position', async () => {
    const record: number[][] = [];
    const t = trainer(record);
    await t.fit();
    const r = new Rng(2);
    const expected = [0, 1, 2].map(() => order(Permutation.draw(count, r)));
    assert.deepEqual(epochs(record), expected);
    for (const e of expected)
      assert.deepEqual(
        [...e].sort((a, b) => a - b),
        [...Array(count).keys()],
      );
    assert.equal(t.getState().order, 'feistel');
  });

  it('new runs resume mid-epoch on the same order', async () => {
    const whole: number[][] = [];
    await trainer(whole).fit();
    const first: number[][] = [];
    const a = trainer(first, 3);
    await a.fit();
    const state = JSON.parse(JSON.stringify(a.getState())) as TrainerState;
    assert.equal(state.order, 'feistel');
    const rest: number[][] = [];
    const b = trainer(rest);
    b.setState(state);
    await b.fit();
    assert.deepEqual([...first, ...rest], whole);
  });

  it('a checkpoint from before the permutation (no `order`) resumes with its Fisher–Yates shuffle', async () => {
    const first: number[][] = [];
    const a = trainer(first, 3);
    await a.fit();
    // what the old code saved 3 batches in: epochRng the generator before the epoch's shuffle
    const old = JSON.parse(JSON.stringify(a.getState())) as TrainerState;
    delete old.order;
    const rest: number[][] = [];
    const b = trainer(rest);
    b.setState(old);
    await b.fit();
    // the old loop: every epoch, the identity array shuffled by the shuffle generator
    const r = new Rng(2);
    const shuffled = [0, 1, 2].map(() => [
      ...r.shuffle(Int32Array.from({ length: count }, (_, i) => i)),
    ]);
    assert.deepEqual(rest.flat(), shuffled.flat().slice(3 * 7));
    assert.equal('order' in b.getState(), false); // and it stays an old-order run
    // an order this code does not know is refused, not guessed
    assert.throws(
      () => trainer([]).setState({ ...old, order: 'other' as 'feistel' }),
      (e: unknown) => e instanceof UserError && /unknown window order "other"/.test(e.message),
    );
  });
});
