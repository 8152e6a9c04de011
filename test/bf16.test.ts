// Mixed precision on the native engine (--precision bf16, native/kernels.cc's AVX512-BF16
// products): the rounding is round-to-nearest-even, gradients stay within a documented tolerance
// of the FP32 engine and of TF.js, one and two worker threads give the same weights bit for bit,
// and the choice resolves (or fails) as EngineOptions.precision says. Skipped where the addon is
// not built or the CPU (or OS) lacks AVX512-BF16; the wasm-engine error is checked everywhere.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { InlineEngine } from '../src/engine/inline-engine.ts';
import { createKernels, resolvePrecision, type KernelExports } from '../src/engine/kernels.ts';
import type { Batch, Precision } from '../src/engine/types.ts';
import { UserError } from '../src/errors.ts';
import { Parameters, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { RmsProp } from '../src/train/rmsprop.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';
import { relErr } from './helpers/compare.ts';
import { BF16_SKIP } from './helpers/engines.ts';
import { randomParams, tfLossAndGrads } from './helpers/tfjs-oracle.ts';

const skipReason = BF16_SKIP;

/** A test that needs BF16 instances. */
function btest(name: string, fn: (t: TestContext) => void | Promise<void>): void {
  test(name, async (t) => {
    if (skipReason) {
      t.skip(skipReason);
      return;
    }
    await fn(t);
  });
}

// BF16 keeps 8 significant bits: each operand is off by up to 2^-9 ≈ 0.2% relative, and a sum of
// such products by about that much of its largest terms. Measured (max |Δ| / max |reference| per
// weight; V, H, B, T = 13, 32, 8, 12; 57, 128, 16, 20; 20, 64, 12, 30): 1.5e-3 to 5.1e-3 against
// FP32 and against TF.js alike (FP32 itself is within 7e-7 of TF.js); the loss within 1.3e-5
// relative. The tolerances leave about 4× and 10× of room.
const GRAD_TOLERANCE = 2e-2;
const LOSS_TOLERANCE = 1e-4;
// ...and BF16 must not silently be FP32: its gradients differ from FP32's by more than this.
const DIFFERS_FROM_FP32 = 1e-4;

const WEIGHTS = ['kernel', 'recurrent kernel', 'bias'];
function weightName(i: number, L: number): string {
  return i < 3 * L
    ? `LSTM ${Math.floor(i / 3)} ${WEIGHTS[i % 3]}`
    : `dense ${i === 3 * L ? 'kernel' : 'bias'}`;
}

async function gradients(
  shape: ModelShape,
  params: Parameters,
  batch: Batch,
  precision: Precision,
): Promise<{ loss: number; grads: Parameters }> {
  const engine = await InlineEngine.create({
    shape,
    maxBatch: batch.rows,
    maxT: batch.steps,
    threads: 0,
    engine: 'native',
    precision,
  });
  assert.equal(engine.precision, precision);
  const grads = new Parameters(shape);
  const loss = await engine.lossAndGrads(params.flat, batch, grads.flat);
  await engine.close();
  return { loss, grads };
}

/** Every weight's gradient of `a` within `tol` (relErr) of `b`'s; returns the largest error. */
function assertClose(a: Parameters, b: Parameters, tol: number, what: string): number {
  const L = a.lstm.length;
  let worst = 0;
  a.views().forEach((v, i) => {
    const e = relErr(v, b.views()[i]!);
    worst = Math.max(worst, e);
    assert.ok(e < tol, `${what}: gradient of the ${weightName(i, L)} off by ${e}`);
  });
  return worst;
}

// ---- rounding -----------------------------------------------------------------------------

/** Chosen floats and their bf16 under round-to-nearest-even (and what truncation would give). */
const ROUNDING: [value: number, rne: number][] = [
  [1.5, 1.5], // exact
  [1 + 2 ** -8, 1], // a tie, even neighbour below
  [1 + 3 * 2 ** -8, 1 + 2 ** -6], // a tie, even neighbour above (truncation: 1 + 2^-7)
  [-(1 + 3 * 2 ** -8), -(1 + 2 ** -6)], // the same, negative
  [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // just above a tie
  [1 + 2 ** -9, 1], // below half
  [255.5, 256], // a tie at the top of a binade: 255 is odd
  [2 - 2 ** -23, 2], // carries into the exponent
  [1.5 * 2 ** -126, 1.5 * 2 ** -126], // the smallest binade of normals: bf16 has FP32's exponent
];

/** Memory with room, a bf16 instance; floats written at byte address `at`. */
function put(k: KernelExports, at: number, values: ArrayLike<number>): void {
  new Float32Array(k.memory.buffer, at, values.length).set(values);
}
const get = (k: KernelExports, at: number, n: number): Float32Array =>
  new Float32Array(k.memory.buffer, at, n).slice();

btest('A and B are rounded to bf16 to nearest, ties to even, in every product', async () => {
  const k = await createKernels('native', 'bf16');
  k.memory.grow(4);
  const n = ROUNDING.length;
  const values = ROUNDING.map(([v]) => v);
  const want = Float32Array.from(ROUNDING, ([, r]) => r);
  const A = 65536;
  const ONE = A + 4096; // a row of ones: exact in bf16
  const C = A + 8192;
  const BP = A + 12288;
  put(k, ONE, new Float32Array(32).fill(1));
  // A rounded: C[n×1] = A[n×1]·[1] (gemmNN), and Aᵀ stored [1×n] (gemmTN)
  put(k, A, values);
  put(k, C, new Float32Array(n));
  k.gemmNN(A, 1, ONE, 1, C, 1, n, 1, 1);
  assert.deepEqual(get(k, C, n), want, 'gemmNN rounds A');
  put(k, C, new Float32Array(n));
  k.gemmTN(A, n, ONE, 1, C, 1, n, 1, 1);
  assert.deepEqual(get(k, C, n), want, 'gemmTN rounds A');
  // B rounded: C[1×n] = [1]·B[1×n], B unpacked (gemmNN) and packed (packB, gemmNNPacked; the
  // first 16 columns from the panels, the rest from b)
  const wide = Float32Array.from({ length: 32 }, (_, j) => values[j % n]!);
  const wideWant = Float32Array.from({ length: 32 }, (_, j) => want[j % n]!);
  put(k, A, wide);
  put(k, C, new Float32Array(32));
  k.gemmNN(ONE, 1, A, 32, C, 32, 1, 32, 1);
  assert.deepEqual(get(k, C, 32), wideWant, 'gemmNN rounds B');
  put(k, C, new Float32Array(20));
  k.packB(A, 20, BP, 1, 20);
  k.gemmNNPacked(ONE, 1, BP, A, 20, C, 20, 1, 20, 1);
  assert.deepEqual(get(k, C, 20), wideWant.subarray(0, 20), 'gemmNNPacked rounds B');
});

btest('an FP32 instance does not round (the products run the FP32 kernels)', async () => {
  const k = await createKernels('native', 'fp32');
  k.memory.grow(1);
  const values = Float32Array.from(ROUNDING, ([v]) => v);
  put(k, 65536, values);
  put(k, 65536 + 4096, [1]);
  k.gemmNN(65536, 1, 65536 + 4096, 1, 65536 + 8192, 1, values.length, 1, 1);
  assert.deepEqual(get(k, 65536 + 8192, values.length), values);
});

/** x rounded to bfloat16, nearest, ties to even (finite x), as a JS number. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 0) & 0xffff0000;
  return f[0]!;
}

// Shapes that reach every edge of the BF16 products' layout: odd K (a zero-padded last pair), K
// past one 256-deep panel, N past and short of 16-column panels and of the 4-panel block, M
// short of and past the 6-row block, row strides wider than the matrices.
const PRODUCT_SHAPES: [M: number, N: number, K: number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [6, 64, 2],
  [13, 57, 128],
  [64, 128, 57],
  [9, 33, 300],
  [7, 80, 513],
];

btest(
  'gemmNN, gemmTN, gemmNNPacked on bf16: the exact product of the rounded operands, to FP32 summation',
  async () => {
    const k = await createKernels('native', 'bf16');
    k.memory.grow(64);
    const rng = new Rng(17);
    for (const [M, N, K] of PRODUCT_SHAPES) {
      for (const kind of ['NN', 'TN', 'packed'] as const) {
        const pad = 3; // every row stride is 3 floats wider than its matrix
        const [rowsA, colsA] = kind === 'TN' ? [K, M] : [M, K];
        const [lda, ldb, ldc] = [colsA + pad, N + pad, N + pad];
        const A = 65536 + 4; // not 64-byte aligned
        const Bp = A + rowsA * lda * 4 + 68;
        const C = Bp + K * ldb * 4 + 132;
        const P = C + M * ldc * 4 + 64;
        const a = Float32Array.from({ length: rowsA * lda }, () => rng.uniform(-1, 1));
        const b = Float32Array.from({ length: K * ldb }, () => rng.uniform(-1, 1));
        const c = Float32Array.from({ length: M * ldc }, () => rng.uniform(-1, 1));
        put(k, A, a);
        put(k, Bp, b);
        put(k, C, c);
        if (kind === 'NN') k.gemmNN(A, lda, Bp, ldb, C, ldc, M, N, K);
        else if (kind === 'TN') k.gemmTN(A, lda, Bp, ldb, C, ldc, M, N, K);
        else {
          k.packB(Bp, ldb, P, K, N);
          k.gemmNNPacked(A, lda, P, Bp, ldb, C, ldc, M, N, K);
        }
        const got = get(k, C, M * ldc);
        let diff = 0;
        let scale = 0;
        for (let i = 0; i < M; i++)
          for (let j = 0; j < N; j++) {
            let sum = c[i * ldc + j]!;
            for (let q = 0; q < K; q++) {
              const aiq = kind === 'TN' ? a[q * lda + i]! : a[i * lda + q]!;
              sum += bf16(aiq) * bf16(b[q * ldb + j]!);
            }
            diff = Math.max(diff, Math.abs(got[i * ldc + j]! - sum));
            scale = Math.max(scale, Math.abs(sum));
          }
        // the products of bf16 values are exact in FP32; only the order and rounding of the sums differ
        assert.ok(diff / scale < 2e-6, `${kind} ${M}×${N}×${K}: off by ${diff / scale}`);
        for (let i = 0; i < M; i++)
          for (let j = N; j < ldc; j++)
            assert.equal(
              got[i * ldc + j],
              c[i * ldc + j],
              `${kind} ${M}×${N}×${K} wrote past column N`,
            );
      }
    }
  },
);

btest(
  "gatesForward of a bf16 instance (sixteen lanes) is bit-identical to an FP32 instance's",
  async () => {
    const rng = new Rng(23);
    for (const [B, H] of [
      [3, 20], // a masked last group of 4 lanes
      [5, 128],
      [2, 44],
    ] as const) {
      const outs: Float32Array[] = [];
      // pre-activations across both of tanh's branches (|x| < 0.625 and the exp form) and exp's clamp
      const z = Float32Array.from({ length: B * 4 * H }, () => rng.uniform(-12, 12) ** 3 / 144);
      const cPrev = Float32Array.from({ length: B * H }, () => rng.uniform(-3, 3));
      for (const precision of ['fp32', 'bf16'] as const) {
        const k = await createKernels('native', precision);
        k.memory.grow(2);
        const [pz, pc, c, tc, h] = [65536, 98304, 106496, 114688, 122880];
        put(k, pz, z);
        put(k, pc, cPrev);
        k.gatesForward(pz, pc, c, tc, h, B, H);
        outs.push(
          Float32Array.of(
            ...get(k, pz, B * 4 * H),
            ...get(k, c, B * H),
            ...get(k, tc, B * H),
            ...get(k, h, B * H),
          ),
        );
      }
      assert.deepEqual(outs[1], outs[0], `B ${B}, H ${H}`);
    }
  },
);

// ---- gradients ----------------------------------------------------------------------------

for (const [V, H, B, T] of [
  [13, 32, 8, 12],
  [57, 128, 16, 20],
]) {
  btest(
    `bf16 gradients within ${GRAD_TOLERANCE} of FP32 and of TF.js: V ${V}, H ${H}, B ${B}, T ${T}`,
    async () => {
      const shape = { vocabSize: V!, units: H! };
      const rng = new Rng(7);
      const params = randomParams(shape, rng);
      const x = Int32Array.from({ length: B! * T! }, () => rng.int(V!));
      const y = Int32Array.from({ length: B! }, () => rng.int(V!));
      const batch: Batch = { x, y, rows: B!, steps: T!, scoring: 'last' };
      const bf = await gradients(shape, params, batch, 'bf16');
      const fp = await gradients(shape, params, batch, 'fp32');
      const tf = await tfLossAndGrads(params, x, y, B!, T!);
      assert.ok(
        Math.abs(bf.loss - fp.loss) / fp.loss < LOSS_TOLERANCE,
        `loss ${bf.loss} vs ${fp.loss}`,
      );
      assert.ok(
        Math.abs(bf.loss - tf.loss) / tf.loss < LOSS_TOLERANCE,
        `loss ${bf.loss} vs TF.js ${tf.loss}`,
      );
      assertClose(bf.grads, tf.grads, GRAD_TOLERANCE, 'bf16 against TF.js');
      const worst = assertClose(bf.grads, fp.grads, GRAD_TOLERANCE, 'bf16 against FP32');
      assert.ok(worst > DIFFERS_FROM_FP32, `bf16 gradients equal FP32's (${worst}): not rounded?`);
    },
  );
}

btest(
  'bf16 gradients of a stacked model with dropout, every position scored, within tolerance of FP32',
  async () => {
    // the products of layer ≥ 1 (its input product, dWx, the gradient sent down) and the
    // sequence-mode head; TF.js's oracle covers the reference model only
    const shape = { vocabSize: 17, units: 24, layers: 2 };
    const rng = new Rng(11);
    const params = randomParams(shape, rng);
    const [B, T] = [10, 9];
    const x = Int32Array.from({ length: B * T }, () => rng.int(17));
    const y = Int32Array.from({ length: B * T }, () => rng.int(17));
    const batch: Batch = {
      x,
      y,
      rows: B,
      steps: T,
      scoring: 'every',
      dropout: { rate: 0.3, key: 5 },
    };
    const bf = await gradients(shape, params, batch, 'bf16');
    const fp = await gradients(shape, params, batch, 'fp32');
    assert.ok(
      Math.abs(bf.loss - fp.loss) / fp.loss < LOSS_TOLERANCE,
      `loss ${bf.loss} vs ${fp.loss}`,
    );
    const worst = assertClose(bf.grads, fp.grads, GRAD_TOLERANCE, 'bf16 against FP32');
    assert.ok(worst > DIFFERS_FROM_FP32, `bf16 gradients equal FP32's (${worst})`);
  },
);

// ---- threads ------------------------------------------------------------------------------

btest(
  'bf16: 1 and 2 worker threads give bit-identical weights after a few RMSprop steps',
  async () => {
    const shape = { vocabSize: 19, units: 16 };
    const [B, T] = [12, 8];
    const rng = new Rng(3);
    const start = randomParams(shape, rng);
    const batches = Array.from({ length: 4 }, () => ({
      x: Int32Array.from({ length: B * T }, () => rng.int(19)),
      y: Int32Array.from({ length: B }, () => rng.int(19)),
    }));
    const finals: Float32Array[] = [];
    const losses: number[][] = [];
    for (const threads of [1, 2]) {
      const engine = await createEngine({
        shape,
        maxBatch: B,
        maxT: T,
        threads,
        engine: 'native',
        precision: 'bf16',
      });
      assert.equal(engine.precision, 'bf16');
      const params = start.flat.slice();
      const opt = new RmsProp(params.length, { learningRate: 0.01, rho: 0.9, epsilon: 1e-7 });
      const grads = new Float32Array(params.length);
      const seen: number[] = [];
      for (const { x, y } of batches) {
        seen.push(
          await engine.lossAndGrads(params, { x, y, rows: B, steps: T, scoring: 'last' }, grads),
        );
        opt.step(params, grads);
      }
      await engine.close();
      finals.push(params);
      losses.push(seen);
    }
    assert.deepEqual(losses[1], losses[0]);
    assert.deepEqual(finals[1], finals[0]);
    assert.notDeepEqual(finals[0], start.flat, 'the steps changed the weights');
  },
);

// ---- choosing it --------------------------------------------------------------------------

test('resolvePrecision: fp32 by default, auto is fp32 off the native engine, bf16 on wasm a UserError', async () => {
  assert.equal(await resolvePrecision(undefined, 'native'), 'fp32');
  assert.equal(await resolvePrecision('fp32', 'wasm'), 'fp32');
  assert.equal(await resolvePrecision('auto', 'wasm'), 'fp32');
  await assert.rejects(resolvePrecision('bf16', 'wasm'), (err: unknown) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /^precision bf16 needs the native engine with AVX512-BF16.*wasm/);
    return true;
  });
});

btest(
  'resolvePrecision on the native engine: auto is bf16; hidden by CHARLSTM_NO_BF16, auto is fp32 and bf16 an error',
  async () => {
    assert.equal(await resolvePrecision('auto', 'native'), 'bf16');
    assert.equal(await resolvePrecision('bf16', 'native'), 'bf16');
    process.env.CHARLSTM_NO_BF16 = '1';
    try {
      assert.equal(await resolvePrecision('auto', 'native'), 'fp32');
      await assert.rejects(resolvePrecision('bf16', 'native'), (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.equal(
          err.message,
          'precision bf16 unavailable: disabled by CHARLSTM_NO_BF16 (fp32 or auto trains without it)',
        );
        return true;
      });
    } finally {
      delete process.env.CHARLSTM_NO_BF16;
    }
  },
);

function corpusFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-bf16-'));
  const file = path.join(dir, 'text.txt');
  writeFileSync(file, mobyDick().slice(0, 3000));
  return file;
}

test('charlstm train --precision bf16 --engine wasm: one line naming why, exit 2', () => {
  const r = charlstm([
    'train',
    '--corpus',
    corpusFile(),
    '--engine',
    'wasm',
    '--precision',
    'bf16',
    '--epochs',
    '1',
  ]);
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 2, JSON.stringify(r.stderr));
  assert.match(
    lines[0]!,
    /^charlstm: error: precision bf16 needs the native engine.*engine is wasm/,
  );
});

btest(
  'charlstm train --precision bf16: the engine line says so, model.json records it, --resume keeps it',
  () => {
    const corpus = corpusFile();
    const out = path.join(path.dirname(corpus), 'model');
    const common = [
      '--corpus',
      corpus,
      '--out',
      out,
      '--units',
      '16',
      '--batch-size',
      '32',
      '--threads',
      '1',
    ];
    const first = charlstm([
      'train',
      ...common,
      '--engine',
      'native',
      '--precision',
      'bf16',
      '--epochs',
      '1',
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /engine: native .*, 1 thread, precision bf16 \(AVX512-BF16/);
    const meta = () =>
      JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8')).userDefinedMetadata;
    assert.equal(meta().training.precision, 'bf16');
    const resumed = charlstm([
      'train',
      '--resume',
      out,
      '--epochs',
      '2',
      '--engine',
      'native',
      '--threads',
      '1',
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /precision bf16/);
    assert.equal(meta().training.epochs, 2);
    assert.equal(meta().training.precision, 'bf16');
  },
);
