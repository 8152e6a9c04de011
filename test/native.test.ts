// The native engine (native/kernels.cc, AVX2 + FMA) against the WebAssembly one: every kernel on
// random inputs, whole LstmCore losses and gradients, and the engines built on them. Skipped when
// the addon is not built or this CPU lacks AVX2/FMA.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  instantiate,
  kernelFactory,
  resolveEngine,
  type KernelExports,
} from '../src/engine/kernels.ts';
import { LstmCore } from '../src/engine/lstm-core.ts';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { Parameters, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { relErr } from './helpers/compare.ts';
import { NATIVE_SKIP } from './helpers/engines.ts';

const available = NATIVE_SKIP === undefined;
const skipReason = NATIVE_SKIP ?? '';
/** A fresh native kernel instance (called by native tests only, when `available`). */
const loadNative = available
  ? await kernelFactory('native')
  : (): never => {
      throw new Error(skipReason);
    };

/** A test that needs the native engine. */
function ntest(name: string, fn: (t: TestContext) => void | Promise<void>): void {
  test(name, async (t) => {
    if (!available) {
      t.skip(skipReason);
      return;
    }
    await fn(t);
  });
}

/** max |a-b| / max |b|: a relative error that is not blown up by tiny entries */

const PAGES = 96; // 6 MiB besides the first page

/** The same kernel call on a wasm and a native instance whose memories hold the same bytes. */
class Pair {
  readonly wasm: KernelExports = instantiate();
  readonly native: KernelExports = loadNative();
  private top = 65536;

  constructor(readonly rng: Rng) {
    this.wasm.memory.grow(PAGES);
    this.native.memory.grow(PAGES);
  }

  /** n floats (uniform in [lo, hi]) at a fresh 64-byte-aligned address (plus `skew` bytes) in both memories. */
  floats(n: number, lo = -1, hi = 1, skew = 0): number {
    const p = this.alloc(n, skew);
    const values = Float32Array.from({ length: n }, () => this.rng.uniform(lo, hi));
    for (const k of [this.wasm, this.native]) new Float32Array(k.memory.buffer, p, n).set(values);
    return p;
  }

  ints(values: number[]): number {
    const p = this.alloc(values.length);
    for (const k of [this.wasm, this.native])
      new Int32Array(k.memory.buffer, p, values.length).set(values);
    return p;
  }

  alloc(n: number, skew = 0): number {
    const p = this.top + skew;
    this.top = Math.ceil((p + n * 4 + 64) / 64) * 64; // a gap: overruns show as differences
    assert.ok(this.top <= (PAGES + 1) * 65536, 'test memory exhausted');
    return p;
  }

  /** Run f on both instances; returns what each returned. */
  run<R>(f: (k: KernelExports) => R): [R, R] {
    return [f(this.wasm), f(this.native)];
  }

  view(k: KernelExports, p: number, n: number): Float32Array {
    return new Float32Array(k.memory.buffer, p, n);
  }

  /** The region [p, p + n floats) of both memories, within `tol` relative (0: bit-identical). */
  same(p: number, n: number, tol: number, what: string): void {
    const w = this.view(this.wasm, p, n);
    const nv = this.view(this.native, p, n);
    if (tol === 0) assert.deepEqual(nv, w, `${what}: not bit-identical`);
    else assert.ok(relErr(nv, w) <= tol, `${what}: relative error ${relErr(nv, w)}`);
  }

  /** Everything allocated so far (gaps included) within `tol`. */
  all(tol: number, what: string): void {
    this.same(65536, (this.top - 65536) / 4, tol, what);
  }
}

ntest('the native instance has every kernel the wasm module exports', () => {
  const wasm = instantiate();
  const native = loadNative();
  for (const [name, value] of Object.entries(wasm)) {
    if (typeof value === 'function')
      assert.equal(typeof (native as unknown as Record<string, unknown>)[name], 'function', name);
  }
});

ntest('memory grows in 64 KiB pages like WebAssembly.Memory', () => {
  const k = loadNative();
  const first = k.memory.buffer;
  assert.equal(first.byteLength, 65536);
  new Float32Array(first)[100] = 1.5;
  assert.equal(k.memory.grow(3), 1);
  assert.equal(first.byteLength, 0, 'the old buffer is detached');
  const now = new Float32Array(k.memory.buffer);
  assert.equal(now.length * 4, 4 * 65536);
  assert.equal(now[100], 1.5, 'contents are kept');
  assert.ok(
    now.subarray(16384).every((v) => v === 0),
    'new pages are zeroed',
  );
  assert.equal(k.memory.buffer, k.memory.buffer, 'the same buffer until the next grow');
  assert.equal(k.memory.grow(0), 4);
  assert.throws(() => k.memory.grow(70000), RangeError);
});

ntest('kernels check their accesses against the memory', () => {
  const k = loadNative();
  k.memory.grow(1); // 2 pages
  assert.throws(() => k.gemmNN(65536, 128, 65536, 128, 65536, 128, 129, 128, 128), RangeError);
  assert.throws(() => k.colSum(131072 - 8, 65536, 1, 4), RangeError);
  const tok = 65536;
  new Int32Array(k.memory.buffer, tok, 1)[0] = 1 << 20; // a token far outside the table
  assert.throws(
    () => k.gatherRows(65536 + 64, 65536 + 1024, 65536 + 2048, tok, 1, 1, 16),
    RangeError,
  );
  k.gemmNN(65536, 4, 65536, 4, 65536, 4, 0, 4, 4); // empty: no access, no error
});

const GEMMS: { M: number; N: number; K: number }[] = [
  { M: 7, N: 57, K: 13 },
  { M: 1, N: 1, K: 1 },
  { M: 5, N: 9, K: 3 },
  { M: 13, N: 24, K: 300 }, // K longer than one K panel
  { M: 32, N: 512, K: 128 }, // forward recurrent product of a 32-row shard (H = 128)
  { M: 32, N: 128, K: 512 }, // backward dh = dz·Whᵀ
  { M: 32, N: 57, K: 128 }, // logits
  { M: 64, N: 512, K: 128 },
];

for (const { M, N, K } of GEMMS) {
  ntest(`gemmNN and gemmTN equal wasm within 1e-5 (M=${M} N=${N} K=${K})`, () => {
    const pair = new Pair(new Rng(M * 1000 + N + K));
    // A inside a wider matrix (row stride > its width), B and C too; C starts non-zero (C += A·B)
    const lda = K + 3;
    const a = pair.floats(M * lda, -1, 1, 4);
    const b = pair.floats(K * (N + 5));
    const c = pair.floats(M * (N + 2), -1, 1, 8);
    pair.run((k) => k.gemmNN(a, lda, b, N + 5, c, N + 2, M, N, K));
    pair.all(1e-5, 'gemmNN');
    const at = pair.floats(K * (M + 1)); // Aᵀ stored [K×M], row stride M + 1
    const c2 = pair.floats(M * N);
    pair.run((k) => k.gemmTN(at, M + 1, b, N + 5, c2, N, M, N, K));
    pair.all(1e-5, 'gemmTN');
  });
}

ntest('gemmTN equals wasm within 1e-5 on the stacked dWh product (H=128, G=512, K=59·32)', () => {
  const pair = new Pair(new Rng(9));
  const M = 128;
  const N = 512;
  const K = 59 * 32;
  const a = pair.floats(K * M);
  const b = pair.floats(K * N);
  const c = pair.floats(M * N, 0, 0);
  pair.run((k) => k.gemmTN(a, M, b, N, c, N, M, N, K));
  pair.all(1e-5, 'gemmTN');
});

for (const { K, N } of [
  { K: 128, N: 512 },
  { K: 512, N: 128 },
  { K: 13, N: 57 },
  { K: 7, N: 24 },
  { K: 5, N: 6 },
]) {
  ntest(`packB is bit-identical and gemmNNPacked equals wasm within 1e-5 (K=${K} N=${N})`, () => {
    const pair = new Pair(new Rng(K + N));
    const M = 11;
    const ldb = N + 3;
    const b = pair.floats(K * ldb);
    const packed = pair.floats(K * N, 0, 0);
    pair.run((k) => k.packB(b, ldb, packed, K, N));
    pair.same(packed, K * N, 0, 'packB');
    const a = pair.floats(M * K);
    const c = pair.floats(M * N);
    pair.run((k) => k.gemmNNPacked(a, K, packed, b, ldb, c, N, M, N, K));
    pair.all(1e-5, 'gemmNNPacked');
  });
}

ntest('transpose is bit-identical', () => {
  const pair = new Pair(new Rng(2));
  for (const [rows, cols] of [
    [128, 512],
    [7, 57],
    [1, 5],
  ] as const) {
    const src = pair.floats(rows * cols);
    const dst = pair.floats(rows * cols, 0, 0);
    pair.run((k) => k.transpose(src, dst, rows, cols));
  }
  pair.all(0, 'transpose');
});

ntest('sigmoid and tanh equal wasm within 1e-6 (same coverage: n rounded up to 4)', () => {
  const pair = new Pair(new Rng(4));
  for (const n of [1, 3, 4, 5, 8, 13, 37, 64]) {
    for (const [lo, hi] of [
      [-30, 30],
      [-1, 1],
      [-0.1, 0.1],
    ] as const) {
      const x = pair.floats(n + 8, lo, hi);
      const y1 = pair.floats(n + 8, 7, 7);
      const y2 = pair.floats(n + 8, 7, 7);
      pair.run((k) => k.sigmoidArray(x, y1, n));
      pair.run((k) => k.tanhArray(x, y2, n));
    }
  }
  pair.all(1e-6, 'sigmoid/tanh');
  // tanh near zero keeps its relative precision
  const x = pair.floats(64, -1e-3, 1e-3);
  const y = pair.floats(64);
  pair.run((k) => k.tanhArray(x, y, 64));
  const w = pair.view(pair.wasm, y, 64);
  const nat = pair.view(pair.native, y, 64);
  for (let i = 0; i < 64; i++)
    assert.ok(Math.abs(nat[i]! - w[i]!) <= 1e-6 * Math.abs(w[i]!), `tanh(${i})`);
});

for (const { B, H, V } of [
  { B: 5, H: 12, V: 13 }, // H not a multiple of 8: the masked tails
  { B: 16, H: 128, V: 57 },
  { B: 3, H: 4, V: 5 },
]) {
  ntest(
    `gate, gather/scatter, softmax and cross-entropy kernels equal wasm (B=${B} H=${H} V=${V})`,
    () => {
      const rng = new Rng(B * H + V);
      const pair = new Pair(rng);
      const G = 4 * H;
      const tokStride = 3;
      const tok = pair.ints(Array.from({ length: B * tokStride }, () => rng.int(V)));
      const wx = pair.floats(V * G);
      const bias = pair.floats(G);
      const z = pair.floats(B * G, 0, 0);
      pair.run((k) => k.gatherRows(z, wx, bias, tok, tokStride, B, G));
      pair.same(z, B * G, 0, 'gatherRows');
      const zs = pair.floats(B * G, -6, 6);
      const cPrev = pair.floats(B * H, -2, 2);
      const c = pair.floats(B * H, 0, 0);
      const tc = pair.floats(B * H, 0, 0);
      const h = pair.floats(B * H, 0, 0);
      pair.run((k) => k.gatesForward(zs, cPrev, c, tc, h, B, H));
      pair.all(1e-6, 'gatesForward');
      // backward from the forward's activations
      const dh = pair.floats(B * H);
      const dc = pair.floats(B * H);
      const dz = pair.floats(B * G, 0, 0);
      pair.run((k) => k.gatesBackward(zs, cPrev, tc, dh, dc, dz, B, H));
      pair.all(1e-6, 'gatesBackward');
      const dwx = pair.floats(V * G);
      const db = pair.floats(G);
      pair.run((k) => k.scatterRows(dwx, db, dz, tok, tokStride, B, G));
      pair.all(1e-6, 'scatterRows');
      // head
      const logits = pair.floats(B * V, -8, 8);
      const bd = pair.floats(V);
      pair.run((k) => k.softmaxRows(logits, bd, B, V));
      pair.same(logits, B * V, 1e-6, 'softmaxRows');
      const y = pair.ints(Array.from({ length: B }, () => rng.int(V)));
      const dlogits = pair.floats(B * V, 0, 0);
      const [lw, ln] = pair.run((k) => k.crossEntropy(logits, y, dlogits, B, V, 1 / B));
      assert.ok(Math.abs(ln - lw) <= 1e-5 * Math.abs(lw), `crossEntropy loss ${ln} vs ${lw}`);
      pair.same(dlogits, B * V, 1e-6, 'crossEntropy dlogits');
      const dbd = pair.floats(V);
      pair.run((k) => k.colSum(dlogits, dbd, B, V));
      pair.all(1e-5, 'colSum');
    },
  );
}

function randomParams(shape: ModelShape, rng: Rng): Parameters {
  const p = new Parameters(shape);
  for (let i = 0; i < p.flat.length; i++) p.flat[i] = rng.uniform(-0.3, 0.3);
  return p;
}

function randomBatch(rng: Rng, V: number, B: number, T: number): { x: Int32Array; y: Int32Array } {
  return {
    x: Int32Array.from({ length: B * T }, () => rng.int(V)),
    y: Int32Array.from({ length: B }, () => rng.int(V)),
  };
}

for (const { shape, B, T } of [
  { shape: { vocabSize: 13, units: 12 }, B: 7, T: 9 },
  { shape: { vocabSize: 57, units: 128 }, B: 32, T: 60 },
]) {
  ntest(
    `LstmCore on native kernels: loss, gradients and predictions equal wasm within 1e-5 (V=${shape.vocabSize} H=${shape.units} B=${B} T=${T})`,
    () => {
      const rng = new Rng(11);
      const params = randomParams(shape, rng);
      const { x, y } = randomBatch(rng, shape.vocabSize, B, T);
      const cap = { maxB: B, maxT: T, training: true };
      const wasm = new LstmCore(shape, cap, instantiate());
      const native = new LstmCore(shape, cap, loadNative());
      const losses = [wasm, native].map((core) => {
        core.setParams(params.flat);
        return core.lossAndGrads({ x, y, rows: B, steps: T, scoring: 'last', scale: 1 / B });
      });
      assert.ok(
        Math.abs(losses[1]! - losses[0]!) <= 1e-5 * Math.abs(losses[0]!),
        `loss ${losses[1]} vs ${losses[0]}`,
      );
      const gw = new Parameters(shape, wasm.grads.slice());
      const gn = new Parameters(shape, native.grads.slice());
      for (const w of ['kernel', 'recurrentKernel', 'bias', 'denseKernel', 'denseBias'] as const) {
        const e = relErr(gn.get(w), gw.get(w));
        assert.ok(e <= 1e-5, `gradient of ${w}: relative error ${e}`);
      }
      const pw = wasm.predict(x, B, T).slice();
      const pn = native.predict(x, B, T).slice();
      assert.ok(relErr(pn, pw) <= 1e-5, `predictions: relative error ${relErr(pn, pw)}`);
      // stateful steps (generation) after the windows
      const tokens = Array.from({ length: B }, () => rng.int(shape.vocabSize));
      assert.ok(relErr(native.step(tokens, B), wasm.step(tokens, B).slice()) <= 1e-5, 'step');
    },
  );
}

ntest(
  "engine 'native': the same gradients with 0, 1 and 2 threads, and wasm's within 1e-5",
  async () => {
    const shape = { vocabSize: 11, units: 8 };
    const B = 9;
    const T = 6;
    const rng = new Rng(3);
    const params = randomParams(shape, rng);
    const { x, y } = randomBatch(rng, 11, B, T);
    const results: Float32Array[] = [];
    const losses: number[] = [];
    for (const [engine, threads] of [
      ['native', 0],
      ['native', 1],
      ['native', 2],
      ['wasm', 0],
    ] as const) {
      const e = await createEngine({ shape, maxBatch: B, maxT: T, threads, engine });
      assert.equal(e.engine, engine);
      const out = new Float32Array(params.flat.length);
      losses.push(
        await e.lossAndGrads(params.flat, { x, y, rows: B, steps: T, scoring: 'last' }, out),
      );
      results.push(out);
      await e.close();
    }
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
    assert.equal(losses[1], losses[0]);
    assert.equal(losses[2], losses[0]);
    assert.ok(
      relErr(results[0]!, results[3]!) <= 1e-5,
      `native vs wasm: ${relErr(results[0]!, results[3]!)}`,
    );
    assert.ok(Math.abs(losses[0]! - losses[3]!) <= 1e-5 * losses[3]!);
  },
);

test("engine choice: 'auto' gives native exactly when it is available; 'wasm' stays wasm", async () => {
  assert.equal(await resolveEngine('auto'), available ? 'native' : 'wasm');
  assert.equal(await resolveEngine('wasm'), 'wasm');
  assert.equal(await resolveEngine(), 'wasm');
  if (available) assert.equal(await resolveEngine('native'), 'native');
  else await assert.rejects(resolveEngine('native'), /native engine unavailable/);
});
