import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { kernelFactory, type KernelExports } from '../src/engine/kernels.ts';
import { generate } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Parameters } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { BF16_SKIP, NATIVE_SKIP } from './helpers/engines.ts';

// A native instance's second thread (native/kernels.cc, "A second thread"; CharModel.load's
// `threads`): gemmNNPacked split between two threads writes exactly the bits one thread writes,
// for every split the kernel can choose (ragged rows and columns, K past one panel, both
// precisions), and a model loaded with two threads generates the text it generates with one.

/** C = C0 + A·B by gemmNNPacked on a fresh instance with `threads` threads; returns C. */
function packedProduct(
  make: () => KernelExports,
  threads: 1 | 2,
  M: number,
  N: number,
  K: number,
  seed: number,
): Float32Array {
  const k = make();
  k.setThreads!(threads);
  const rng = new Rng(seed);
  const floats = (n: number): Float32Array =>
    Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
  const a = floats(M * K);
  const b = floats(K * N);
  const c0 = floats(M * N);
  const bytes = (a.length + 2 * b.length + c0.length) * 4;
  k.memory.grow(Math.ceil(bytes / 65536) + 1);
  const f32 = new Float32Array(k.memory.buffer);
  const pa = 0;
  const pb = pa + a.length;
  const pbp = pb + b.length; // packB's panels (K · (N & ~7) floats)
  const pc = pbp + b.length;
  f32.set(a, pa);
  f32.set(b, pb);
  f32.set(c0, pc);
  k.packB(pb * 4, N, pbp * 4, K, N);
  k.gemmNNPacked(pa * 4, K, pbp * 4, pb * 4, N, pc * 4, N, M, N, K);
  const c = new Float32Array(k.memory.buffer, pc * 4, M * N).slice();
  k.setThreads!(1); // the helper ends now, not at garbage collection
  return c;
}

/** Index of the first element whose bits differ, or -1. */
function firstDifference(x: Float32Array, y: Float32Array): number {
  const a = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const b = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}

// [M, N, K]: one row to a ragged batch; N a multiple of the chunks, ragged (past the packed
// panels); K inside one panel and across two. All but the last have the 2^18 weights
// (N·K) that the kernel splits at (native/kernels.cc, SPLIT_MIN_WEIGHTS).
const SHAPES: [number, number, number][] = [
  [1, 1024, 256],
  [5, 1024, 512],
  [64, 1024, 256],
  [67, 1000, 300],
  [13, 520, 512],
  [64, 512, 128], // not split: still right
];

describe('generation on two threads', { skip: NATIVE_SKIP }, () => {
  for (const precision of ['fp32', 'bf16'] as const) {
    const skip = precision === 'bf16' ? BF16_SKIP : undefined;
    it(
      `gemmNNPacked on two threads is one thread's, bit for bit (${precision})`,
      { skip },
      async () => {
        const make = await kernelFactory('native', precision);
        for (const [i, [M, N, K]] of SHAPES.entries()) {
          const one = packedProduct(make, 1, M, N, K, i + 1);
          const two = packedProduct(make, 2, M, N, K, i + 1);
          assert.equal(firstDifference(two, one), -1, `${M}×${N}×${K}: element differs`);
          // and the product is a product: not C0 left alone
          const untouched = packedProduct(make, 1, M, N, 1, i + 1);
          assert.notEqual(firstDifference(one, untouched), -1);
        }
      },
    );
  }

  it('setThreads takes 1 or 2 only', async () => {
    const k = (await kernelFactory('native'))();
    assert.throws(() => k.setThreads!(3 as 2), /threads must be 1 or 2/);
    assert.throws(() => k.setThreads!(0 as 1), /threads must be 1 or 2/);
  });

  describe('a model loaded with threads: 2', () => {
    let dir: string;
    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('generates, in both modes and in a batch, the text it generates with one thread', async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'charlstm-threads-'));
      // 2 × LSTM(256): every step's products are large enough to split, one row or many
      const vocab = [...' .,abcdefghijklmnopqrstuvwxyz'];
      const params = new Parameters({ vocabSize: vocab.length, units: 256, layers: 2 });
      const rng = new Rng(3);
      for (let i = 0; i < params.flat.length; i++) params.flat[i] = rng.uniform(-0.3, 0.3);
      const meta = {
        vocab,
        lowercase: true,
        maxlen: 12,
        step: 3,
        units: 256,
        layers: 2,
        training: {},
      };
      await saveModel(dir, params, meta);
      const texts = async (threads: 1 | 2): Promise<string[]> => {
        const model = await CharModel.load(dir, { threads });
        const out: string[] = [];
        for (const mode of ['stateful', 'window'] as const) {
          let s = '';
          for await (const c of generate(model, {
            prompt: 'the sea was ',
            length: 120,
            temperature: 0.8,
            seed: 11,
            mode,
          }))
            s += c;
          out.push(s);
        }
        // eight windows at once (predictTokens' batched products)
        const x = Int32Array.from({ length: 8 * 12 }, (_, i) => (i * 5) % vocab.length);
        out.push(Array.from(model.predictTokens(x, 8, 12), (p) => p.toString(16)).join());
        return out;
      };
      const one = await texts(1);
      const two = await texts(2);
      assert.equal(one[0]!.length, 120);
      assert.notEqual(one[0], one[1]); // the two modes are different computations
      assert.deepEqual(two, one);
    });
  });
});
