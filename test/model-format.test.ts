import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  CHARLSTM_VERSION,
  FORMAT_VERSION,
  loadModel,
  modelJson,
  saveModel,
  type ModelMeta,
} from '../src/checkpoint/model-format.ts';
import { UserError } from '../src/errors.ts';
import { Parameters, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';

const pkg = JSON.parse(await fs.readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function randomParams(shape: ModelShape, seed: number, scale = 0.3): Parameters {
  const p = new Parameters(shape);
  const rng = new Rng(seed);
  for (let i = 0; i < p.flat.length; i++) p.flat[i] = rng.uniform(-scale, scale);
  return p;
}

function vocabOf(V: number): string[] {
  // Include characters outside the BMP and ones JSON must escape.
  const special = ['\n', '"', '\\', '😀', 'é', ' '];
  const out = special.slice(0, Math.min(V, special.length));
  for (let cp = 0x61; out.length < V; cp++) out.push(String.fromCodePoint(cp));
  return out;
}

function metaFor(
  V: number,
  H: number,
  maxlen: number,
): Omit<ModelMeta, 'formatVersion' | 'weightsSha256'> {
  return {
    vocab: vocabOf(V),
    lowercase: true,
    maxlen,
    step: 3,
    units: H,
    training: {
      lr: 0.01,
      batchSize: 128,
      epochs: 2,
      seed: 1,
      corpus: 'nietzsche',
      loss: [2.5, 1.9],
    },
  };
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

let root: string;
let counter = 0;
const freshDir = () => path.join(root, `m${counter++}`);

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'charlstm-model-format-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

// The tests poke at raw model.json contents.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type RawJson = Record<string, any>;

async function readJson(dir: string): Promise<RawJson> {
  return JSON.parse(await fs.readFile(path.join(dir, 'model.json'), 'utf8')) as RawJson;
}

/** A tfjs IOHandler that reads our folder, so the test needs no tfjs-node. */
function folderHandler(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = await readJson(dir);
      const group = json.weightsManifest[0];
      const buf = await fs.readFile(path.join(dir, group.paths[0]));
      const weightData = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
      return {
        modelTopology: json.modelTopology,
        weightSpecs: group.weights,
        weightData,
        format: json.format,
        generatedBy: json.generatedBy,
        userDefinedMetadata: json.userDefinedMetadata,
      };
    },
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** A plain scalar LSTM + dense softmax forward over a sequence of character indices. */
function referenceForward(p: Parameters, seq: number[]): number[] {
  const { vocabSize: V, units: H } = p.shape;
  const G = 4 * H;
  let h = new Array<number>(H).fill(0);
  let c = new Array<number>(H).fill(0);
  for (const x of seq) {
    const z = new Array<number>(G);
    for (let g = 0; g < G; g++) {
      let s = p.bias[g]! + p.kernel[x * G + g]!; // one-hot x: row x of the kernel
      for (let k = 0; k < H; k++) s += h[k]! * p.recurrentKernel[k * G + g]!;
      z[g] = s;
    }
    const h2 = new Array<number>(H);
    const c2 = new Array<number>(H);
    for (let j = 0; j < H; j++) {
      const i = sigmoid(z[j]!);
      const f = sigmoid(z[H + j]!);
      const cc = Math.tanh(z[2 * H + j]!);
      const o = sigmoid(z[3 * H + j]!);
      c2[j] = f * c[j]! + i * cc;
      h2[j] = o * Math.tanh(c2[j]!);
    }
    h = h2;
    c = c2;
  }
  const logits = new Array<number>(V);
  for (let v = 0; v < V; v++) {
    let s = p.denseBias[v]!;
    for (let k = 0; k < H; k++) s += h[k]! * p.denseKernel[k * V + v]!;
    logits[v] = s;
  }
  const m = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - m));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / total);
}

const SHAPES = [
  { V: 7, H: 5, maxlen: 10 },
  { V: 57, H: 128, maxlen: 60 },
];

describe('saveModel / loadModel', () => {
  for (const { V, H, maxlen } of SHAPES) {
    it(`round-trips V=${V}, H=${H}, maxlen=${maxlen} bit-exactly`, async () => {
      const dir = freshDir();
      const params = randomParams({ vocabSize: V, units: H }, V * 1000 + H);
      // Special values survive too.
      params.flat[0] = -0;
      params.flat[1] = 1e-40; // subnormal
      const meta = metaFor(V, H, maxlen);
      await saveModel(dir, params, meta);
      const loaded = await loadModel(dir);
      assert.deepEqual(loaded.params.shape, { vocabSize: V, units: H });
      assert.deepEqual(bits(loaded.params.flat), bits(params.flat));
      assert.equal(loaded.params.flat.byteOffset, 0);
      assert.equal(loaded.params.flat.buffer.byteLength, params.flat.byteLength); // its own copy
      const sha = createHash('sha256').update(new Uint8Array(params.flat.buffer)).digest('hex');
      assert.deepEqual(loaded.meta, { formatVersion: FORMAT_VERSION, ...meta, weightsSha256: sha });
    });
  }

  it('writes a TF.js layers model.json', async () => {
    const dir = freshDir();
    const params = randomParams({ vocabSize: 7, units: 5 }, 1);
    await saveModel(dir, params, metaFor(7, 5, 10));
    const json = await readJson(dir);
    assert.equal(json.format, 'layers-model');
    assert.equal(CHARLSTM_VERSION, pkg.version);
    assert.equal(json.generatedBy, `charlstm ${pkg.version}`);
    const [lstm, dense] = json.modelTopology.config.layers;
    assert.equal(json.modelTopology.class_name, 'Sequential');
    assert.equal(lstm.class_name, 'LSTM');
    assert.deepEqual(lstm.config.batch_input_shape, [null, 10, 7]);
    assert.equal(lstm.config.units, 5);
    assert.equal(lstm.config.activation, 'tanh');
    assert.equal(lstm.config.recurrent_activation, 'sigmoid');
    assert.equal(lstm.config.unit_forget_bias, true);
    assert.equal(lstm.config.use_bias, true);
    assert.equal(lstm.config.return_sequences, false);
    assert.equal(lstm.config.kernel_initializer.class_name, 'GlorotUniform');
    assert.equal(lstm.config.recurrent_initializer.class_name, 'Orthogonal');
    assert.equal(lstm.config.bias_initializer.class_name, 'Zeros');
    assert.equal(dense.class_name, 'Dense');
    assert.equal(dense.config.units, 7);
    assert.equal(dense.config.activation, 'softmax');
    const sha = createHash('sha256').update(new Uint8Array(params.flat.buffer)).digest('hex');
    assert.deepEqual(json.weightsManifest, [
      {
        paths: [`weights.${sha.slice(0, 12)}.bin`],
        weights: [
          { name: 'lstm/kernel', shape: [7, 20], dtype: 'float32' },
          { name: 'lstm/recurrent_kernel', shape: [5, 20], dtype: 'float32' },
          { name: 'lstm/bias', shape: [20], dtype: 'float32' },
          { name: 'dense/kernel', shape: [5, 7], dtype: 'float32' },
          { name: 'dense/bias', shape: [7], dtype: 'float32' },
        ],
      },
    ]);
    assert.equal(json.userDefinedMetadata.formatVersion, FORMAT_VERSION);
    assert.equal(json.userDefinedMetadata.weightsSha256, sha);
    assert.deepEqual(json.userDefinedMetadata.vocab, vocabOf(7));
    const weightsName = `weights.${sha.slice(0, 12)}.bin`;
    const bytes = await fs.readFile(path.join(dir, weightsName));
    assert.equal(bytes.length, Parameters.size({ vocabSize: 7, units: 5 }) * 4);
    assert.equal(bytes.readFloatLE(8), params.flat[2]); // little-endian float32, in flat order
  });

  it('modelJson checks that metadata and weights agree', () => {
    const params = new Parameters({ vocabSize: 7, units: 5 });
    assert.throws(
      () => modelJson(params, metaFor(8, 5, 10), 'w.bin'),
      /8 vocabulary characters.*V=7/,
    );
    assert.throws(() => modelJson(params, metaFor(7, 6, 10), 'w.bin'), /units=6.*H=5/);
  });

  it('keeps one weights file after saving twice, and cleans up leftovers', async () => {
    const dir = freshDir();
    const shape = { vocabSize: 7, units: 5 };
    await saveModel(dir, randomParams(shape, 1), metaFor(7, 5, 10));
    await saveModel(dir, randomParams(shape, 1), metaFor(7, 5, 10)); // same bytes
    let files = (await fs.readdir(dir)).sort();
    assert.equal(files.length, 2, files.join(', '));
    const p2 = randomParams(shape, 2);
    // Leftovers of an interrupted save by a process no longer running: temp files. A weights
    // file no model of ours listed is not ours to remove (see the last test).
    await fs.writeFile(path.join(dir, 'weights.0123456789ab.bin.tmp-99999999-deadbeef'), 'x');
    await fs.writeFile(path.join(dir, 'model.json.tmp-99999999-deadbeef'), '{');
    await fs.writeFile(path.join(dir, 'weights.0123456789ab.bin'), 'x');
    await fs.writeFile(path.join(dir, 'notes.txt'), 'mine');
    await saveModel(dir, p2, metaFor(7, 5, 10));
    files = (await fs.readdir(dir)).sort();
    const json = await readJson(dir);
    assert.deepEqual(
      files,
      [
        json.weightsManifest[0].paths[0],
        'model.json',
        'notes.txt',
        'weights.0123456789ab.bin',
      ].sort(),
    );
    assert.deepEqual(bits((await loadModel(dir)).params.flat), bits(p2.flat));
  });

  it('an interrupted save (new weights written, model.json not yet replaced) leaves the old model', async () => {
    const dir = freshDir();
    const shape = { vocabSize: 7, units: 5 };
    const p1 = randomParams(shape, 1);
    await saveModel(dir, p1, metaFor(7, 5, 10));
    // Simulate the state just before the commit point of a second save.
    const p2 = randomParams(shape, 2);
    const sha2 = createHash('sha256').update(new Uint8Array(p2.flat.buffer)).digest('hex');
    await fs.writeFile(
      path.join(dir, `weights.${sha2.slice(0, 12)}.bin`),
      new Uint8Array(p2.flat.buffer),
    );
    await fs.writeFile(path.join(dir, 'model.json.tmp-99-00000000'), '{"half": ');
    assert.deepEqual(bits((await loadModel(dir)).params.flat), bits(p1.flat));
  });

  it('creates nested folders', async () => {
    const dir = path.join(freshDir(), 'a', 'b');
    await saveModel(dir, randomParams({ vocabSize: 7, units: 5 }, 3), metaFor(7, 5, 10));
    await loadModel(dir);
  });
});

describe('loadModel errors', () => {
  const shape = { vocabSize: 7, units: 5 };
  const saved = async () => {
    const dir = freshDir();
    await saveModel(dir, randomParams(shape, 4), metaFor(7, 5, 10));
    const json = await readJson(dir);
    return { dir, json, weights: path.join(dir, json.weightsManifest[0].paths[0] as string) };
  };
  const rejects = (p: Promise<unknown>, re: RegExp) =>
    assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
      assert.match(e.message, re);
      return true;
    });
  const writeJson = (dir: string, v: unknown) =>
    fs.writeFile(path.join(dir, 'model.json'), JSON.stringify(v));
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it('missing folder', async () => {
    const dir = path.join(root, 'nope');
    await rejects(loadModel(dir), new RegExp(`^model folder not found: ${esc(dir)}$`));
  });

  it('missing model.json', async () => {
    const dir = freshDir();
    await fs.mkdir(dir);
    await rejects(
      loadModel(dir),
      new RegExp(`model.json not found: ${esc(path.join(dir, 'model.json'))}`),
    );
  });

  it('model.json that is not JSON', async () => {
    const { dir } = await saved();
    await fs.writeFile(path.join(dir, 'model.json'), '{"format": "layers-model", ');
    await rejects(
      loadModel(dir),
      new RegExp(`${esc(path.join(dir, 'model.json'))}: not valid JSON`),
    );
  });

  it('not a charlstm model (no formatVersion)', async () => {
    const { dir, json } = await saved();
    delete json.userDefinedMetadata.formatVersion;
    await writeJson(dir, json);
    await rejects(loadModel(dir), /model\.json: not a charlstm model.*format version 1/);
    await writeJson(dir, { format: 'layers-model', modelTopology: {} });
    await rejects(loadModel(dir), /not a charlstm model/);
    await writeJson(dir, [1, 2]);
    await rejects(loadModel(dir), /model\.json: not a model/);
  });

  it('unknown formatVersion', async () => {
    const { dir, json } = await saved();
    json.userDefinedMetadata.formatVersion = 2;
    await writeJson(dir, json);
    await rejects(
      loadModel(dir),
      /unsupported charlstm model format version 2; this charlstm reads format version 1/,
    );
  });

  it('bad metadata and manifest', async () => {
    const { dir, json } = await saved();
    const tryWith = async (edit: (j: RawJson) => void, re: RegExp) => {
      const j = structuredClone(json);
      edit(j);
      await writeJson(dir, j);
      await rejects(loadModel(dir), re);
    };
    await tryWith((j) => (j.userDefinedMetadata.vocab[2] = 'ab'), /vocab" entry 2 is "ab"/);
    await tryWith(
      (j) => (j.userDefinedMetadata.vocab[2] = j.userDefinedMetadata.vocab[1]),
      /repeats/,
    );
    await tryWith(
      (j) => (j.userDefinedMetadata.units = 6),
      /shape \[7,20\], expected \[7,24\].*H=6/,
    );
    await tryWith((j) => j.userDefinedMetadata.vocab.push('z'), /expected \[8,20\].*V=8/);
    await tryWith(
      (j) => (j.userDefinedMetadata.maxlen = 0),
      /"maxlen" must be a positive integer, got 0/,
    );
    await tryWith((j) => (j.userDefinedMetadata.lowercase = 'yes'), /"lowercase"/);
    await tryWith((j) => (j.weightsManifest[0].paths = ['../elsewhere.bin']), /plain file name/);
    await tryWith((j) => j.weightsManifest[0].weights.pop(), /expected 5 weights/);
  });

  it('missing weights file', async () => {
    const { dir, weights } = await saved();
    await fs.rm(weights);
    await rejects(loadModel(dir), new RegExp(`weights file not found: ${esc(weights)}`));
  });

  it('truncated weights file', async () => {
    const { dir, weights } = await saved();
    const bytes = await fs.readFile(weights);
    await fs.writeFile(weights, bytes.subarray(0, bytes.length - 3));
    const n = Parameters.size(shape) * 4;
    await rejects(
      loadModel(dir),
      new RegExp(`${esc(weights)} has the wrong size: expected ${n} bytes .*got ${n - 3}`),
    );
  });

  it('flipped byte: checksum error', async () => {
    const { dir, weights } = await saved();
    const bytes = await fs.readFile(weights);
    bytes[100] = bytes[100]! ^ 0x01;
    await fs.writeFile(weights, bytes);
    await rejects(
      loadModel(dir),
      new RegExp(`weights file ${esc(weights)} is corrupt: its sha256 is [0-9a-f]{64}`),
    );
  });
});

describe('TF.js reads the saved model', () => {
  for (const { V, H, maxlen } of SHAPES) {
    it(`tf.loadLayersModel: V=${V}, H=${H}, maxlen=${maxlen}`, async () => {
      const dir = freshDir();
      const params = randomParams({ vocabSize: V, units: H }, 77 + V);
      await saveModel(dir, params, metaFor(V, H, maxlen));
      const model = await tf.loadLayersModel(folderHandler(dir));
      try {
        assert.deepEqual(
          model.layers.map((l) => l.name),
          ['lstm', 'dense'],
        );
        const lstm = model.getLayer('lstm');
        const cfg = lstm.getConfig();
        assert.equal(cfg.recurrentActivation, 'sigmoid');
        assert.equal(cfg.activation, 'tanh');
        assert.equal(cfg.units, H);
        assert.equal(model.getLayer('dense').getConfig().activation, 'softmax');
        assert.deepEqual(model.inputs[0]!.shape, [null, maxlen, V]);
        assert.equal(
          (model.getUserDefinedMetadata() as Record<string, unknown>).formatVersion,
          FORMAT_VERSION,
        );

        // Every weight tensor equals ours, bit for bit.
        const ours = [
          params.kernel,
          params.recurrentKernel,
          params.bias,
          params.denseKernel,
          params.denseBias,
        ];
        const theirs = model.getWeights();
        assert.equal(theirs.length, 5);
        for (const [i, t] of theirs.entries()) {
          const d = t.dataSync() as Float32Array;
          assert.deepEqual(bits(d), bits(ours[i]!), `weight ${i}`);
        }

        // predict on one-hot input equals the scalar forward.
        const rng = new Rng(5);
        for (let trial = 0; trial < 2; trial++) {
          const seq = Array.from({ length: maxlen }, () => rng.int(V));
          const x = new Float32Array(maxlen * V);
          seq.forEach((c, t) => (x[t * V + c] = 1));
          const out = tf.tidy(() =>
            (model.predict(tf.tensor3d(x, [1, maxlen, V])) as tf.Tensor).dataSync(),
          );
          const want = referenceForward(params, seq);
          assert.equal(out.length, V);
          let maxErr = 0;
          for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs(out[v]! - want[v]!));
          assert.ok(maxErr < 1e-5, `max |tfjs - reference| = ${maxErr}`);
        }
      } finally {
        model.dispose();
      }
    });
  }

  it('tf.loadLayersModel: a stacked model trained with dropout (3 × LSTM(8), dropout 0.3)', async () => {
    const dir = freshDir();
    const V = 9;
    const H = 8;
    const shape = { vocabSize: V, units: H, layers: 3 };
    const params = randomParams(shape, 5);
    const meta = { ...metaFor(V, H, 6), layers: 3 };
    meta.training = { ...meta.training, dropout: 0.3 };
    await saveModel(dir, params, meta);
    const loaded = await loadModel(dir);
    assert.equal(loaded.meta.layers, 3);
    assert.deepEqual(loaded.params.flat, params.flat);
    const model = await tf.loadLayersModel(folderHandler(dir));
    try {
      assert.deepEqual(
        model.layers.map((l) => l.name),
        ['lstm', 'dropout', 'lstm_1', 'dropout_1', 'lstm_2', 'dropout_2', 'dense'],
      );
      assert.equal(model.getLayer('dropout_1').getConfig().rate, 0.3);
      assert.equal(model.getLayer('lstm').getConfig().returnSequences, true);
      assert.equal(model.getLayer('lstm_2').getConfig().returnSequences, false);
      const theirs = model.getWeights();
      const ours = params.views();
      assert.equal(theirs.length, ours.length);
      for (const [i, t] of theirs.entries()) {
        assert.deepEqual(bits(t.dataSync() as Float32Array), bits(ours[i]!), `weight ${i}`);
      }
      // predictions equal our engine's (dropout is the identity at inference)
      const { CharModel } = await import('../src/model/char-model.ts');
      const { kernelModule } = await import('../src/engine/kernels.ts');
      await kernelModule();
      const ourModel = CharModel.fromParts(loaded.params, loaded.meta);
      const seq = Int32Array.from([1, 4, 0, 8, 2, 2]);
      const x = new Float32Array(6 * V);
      seq.forEach((c, t) => (x[t * V + c] = 1));
      const out = tf.tidy(() => (model.predict(tf.tensor3d(x, [1, 6, V])) as tf.Tensor).dataSync());
      const want = ourModel.predictTokens(seq, 1, 6);
      let maxErr = 0;
      for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs(out[v]! - want[v]!));
      assert.ok(maxErr < 1e-5, `max |tfjs - ours| = ${maxErr}`);
    } finally {
      model.dispose();
    }
  });

  it('a model whose metadata disagrees with its weights about the layers is refused', async () => {
    const dir = freshDir();
    const params = randomParams({ vocabSize: 5, units: 4, layers: 2 }, 6);
    await saveModel(dir, params, { ...metaFor(5, 4, 6), layers: 2 });
    const file = path.join(dir, 'model.json');
    const json = JSON.parse(await fs.readFile(file, 'utf8'));
    json.userDefinedMetadata.layers = 1;
    await fs.writeFile(file, JSON.stringify(json));
    await assert.rejects(
      loadModel(dir),
      (e: unknown) => e instanceof UserError && /expected 5 weights/.test((e as Error).message),
    );
  });

  it('a save removes only the files the replaced model lists, never a foreign weights file', async () => {
    // issue 11 item 2: `mkdir d; echo keep > d/weights.deadbeef0000.bin; charlstm train … --out d`
    const dir = freshDir();
    const foreign = path.join(dir, 'weights.deadbeef0000.bin');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(foreign, 'keep\n');
    const shape = { vocabSize: 7, units: 5 };
    await saveModel(dir, randomParams(shape, 1), metaFor(7, 5, 10)); // a folder with no model
    assert.equal(await fs.readFile(foreign, 'utf8'), 'keep\n');
    const first = (await readJson(dir)).weightsManifest[0].paths[0] as string;

    await saveModel(dir, randomParams(shape, 2), metaFor(7, 5, 10)); // replaces that model
    const second = (await readJson(dir)).weightsManifest[0].paths[0] as string;
    assert.notEqual(second, first);
    assert.deepEqual(
      (await fs.readdir(dir)).sort(),
      ['model.json', second, 'weights.deadbeef0000.bin'].sort(),
      "the replaced model's own weights file is gone, the foreign one stays",
    );
    assert.equal(await fs.readFile(foreign, 'utf8'), 'keep\n');
  });
});
