// Fine-tuning (issue 14 part 2): `charlstm train --init-from MODEL` starts from a trained model's
// weights and architecture with a new optimizer state; characters of the new text that the model
// never saw are appended to its vocabulary (src/data/vocabulary.ts extendVocabulary) and get the
// weights a fresh model would draw for them (src/model/extend.ts), the old ones kept bit for bit.
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import { loadModel } from '../src/checkpoint/model-format.ts';
import {
  UNKNOWN_SYMBOL,
  Vocabulary,
  countChars,
  extendVocabulary,
} from '../src/data/vocabulary.ts';
import { UserError } from '../src/errors.ts';
import { extendParameters } from '../src/model/extend.ts';
import { glorotUniform } from '../src/model/init.ts';
import { Parameters } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { seedStreams } from '../src/train/run-setup.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';
import { ensureCpuBackend } from './helpers/tfjs-oracle.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-finetune-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const U = UNKNOWN_SYMBOL;
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe('extendVocabulary: the model keeps its ids, the new characters come after', () => {
  const base = new Vocabulary([' ', 'a', 'c', 't']);

  it('appends the new characters in code-point order, the model order untouched', () => {
    const { vocab, added } = extendVocabulary(base, countChars('zebra cat — ä'));
    assert.deepEqual(added, ['b', 'e', 'r', 'z', 'ä', '—']);
    assert.deepEqual(vocab.chars, [' ', 'a', 'c', 't', 'b', 'e', 'r', 'z', 'ä', '—']);
    assert.equal(vocab.unknownSymbol, undefined);
  });

  it('a text with nothing new gives the model vocabulary itself', () => {
    const { vocab, added } = extendVocabulary(base, countChars('a cat'), { maxVocab: 4 });
    assert.deepEqual(vocab.chars, base.chars);
    assert.equal(vocab.unknownSymbol, undefined);
    assert.deepEqual(added, []);
  });

  it('--min-count and --max-vocab limit only the new characters; the dropped map to a new U+FFFD', () => {
    // new: b ×3, e ×2, z ×1 (the model's own ' ' and 'a' are rarer still, and kept)
    const counts = countChars('bbb ee z a');
    const min = extendVocabulary(base, counts, { minCount: 2 });
    assert.deepEqual(min.added, ['b', 'e', U]);
    assert.equal(min.vocab.unknownSymbol, U);
    // at most 6: the 4 of the model, b, and the symbol
    const max = extendVocabulary(base, counts, { maxVocab: 6 });
    assert.deepEqual(max.vocab.chars, [' ', 'a', 'c', 't', 'b', U]);
    assert.equal(max.vocab.tokenOf('z'), 5);
  });

  it('a model with an unknown symbol maps the dropped ones to its own, and room goes to characters', () => {
    const limited = new Vocabulary([' ', 'a', U], U);
    const { vocab, added } = extendVocabulary(limited, countChars('bbb ee z a'), { maxVocab: 5 });
    assert.deepEqual(added, ['b', 'e']);
    assert.deepEqual(vocab.chars, [' ', 'a', U, 'b', 'e']);
    assert.equal(vocab.unknownSymbol, U);
    assert.equal(vocab.tokenOf('z'), 2);
    // no room at all: every new character is the model's symbol
    const none = extendVocabulary(limited, countChars('bz'), { maxVocab: 3 });
    assert.deepEqual(none.vocab.chars, [' ', 'a', U]);
  });

  it('a --max-vocab below the model size is refused, naming both', () => {
    assert.throws(
      () => extendVocabulary(base, countChars('xyz'), { maxVocab: 4 }, 'moby-dick'),
      (err: unknown) =>
        err instanceof UserError &&
        err.message ===
          '--max-vocab 4 is below the 4 characters of moby-dick, which are always kept, plus the unknown symbol: give at least 5',
    );
    assert.throws(() => extendVocabulary(base, countChars('a'), { maxVocab: 3 }), UserError);
  });
});

describe('extendParameters: old weights bit for bit, new ones as a fresh model draws them', () => {
  const shape = { vocabSize: 5, units: 4, layers: 2 };
  const old = new Parameters(shape);
  const r = new Rng(3);
  for (let i = 0; i < old.flat.length; i++) old.flat[i] = r.uniform(-1, 1);
  const before = old.flat.slice();
  const added = 3;
  const V = 5;
  const V2 = 8;
  const H = 4;
  const G = 4 * H;
  const ext = extendParameters(old, added, new Rng(11));

  it('has the extended shape and leaves its input alone', () => {
    assert.deepEqual(ext.shape, { vocabSize: V2, units: H, layers: 2 });
    assert.deepEqual(bits(old.flat), bits(before));
  });

  it('copies every old weight bit for bit', () => {
    assert.deepEqual(bits(ext.kernel.subarray(0, V * G)), bits(old.kernel));
    for (const l of [0, 1]) {
      assert.deepEqual(bits(ext.lstm[l]!.recurrentKernel), bits(old.lstm[l]!.recurrentKernel));
      assert.deepEqual(bits(ext.lstm[l]!.bias), bits(old.lstm[l]!.bias));
    }
    assert.deepEqual(bits(ext.lstm[1]!.kernel), bits(old.lstm[1]!.kernel));
    for (let h = 0; h < H; h++) {
      assert.deepEqual(
        bits(ext.denseKernel.subarray(h * V2, h * V2 + V)),
        bits(old.denseKernel.subarray(h * V, (h + 1) * V)),
      );
    }
    assert.deepEqual(bits(ext.denseBias.subarray(0, V)), bits(old.denseBias));
  });

  it('draws the new rows, then the new dense columns row by row, with the fresh fans; new biases 0', () => {
    const rng = new Rng(11);
    const rows = new Float32Array(added * G);
    glorotUniform(rows, V2, G, rng);
    const columns = new Float32Array(H * added);
    glorotUniform(columns, H, V2, rng);
    assert.deepEqual(bits(ext.kernel.subarray(V * G)), bits(rows));
    for (let h = 0; h < H; h++) {
      assert.deepEqual(
        bits(ext.denseKernel.subarray(h * V2 + V, (h + 1) * V2)),
        bits(columns.subarray(h * added, (h + 1) * added)),
      );
    }
    assert.deepEqual([...ext.denseBias.subarray(V)], [0, 0, 0]);
    // the limits are a fresh model's: sqrt(6 / (V' + 4H)) and sqrt(6 / (H + V'))
    const kernelLimit = Math.sqrt(6 / (V2 + G));
    assert.ok(rows.every((x) => Math.abs(x) <= kernelLimit));
    assert.ok(rows.some((x) => Math.abs(x) > kernelLimit / 2));
    const denseLimit = Math.sqrt(6 / (H + V2));
    assert.ok(columns.every((x) => Math.abs(x) <= denseLimit));
  });
});

// ---- the command line ------------------------------------------------------------------------

// the model's text: real prose (lowercased by training); the new text: other prose with three
// characters the model never saw ('þ' for "th", 'ü' for "ou", and a rare 'ß'), and no others
const prose = mobyDick().toLowerCase();
const baseText = prose.slice(30_000, 42_000);
const known = new Set(baseText);
const newText = [...prose.slice(60_000, 72_000)]
  .filter((c) => known.has(c))
  .join('')
  .replaceAll('th', 'þ')
  .replaceAll('ou', 'ü')
  .replace(/ss/g, (m, at: number) => (at % 7 === 0 ? 'ß' : m));
const baseCorpus = path.join(tmp, 'base.txt');
const newCorpus = path.join(tmp, 'new.txt');
const baseDir = path.join(tmp, 'base');
const SMALL = ['--units', '16', '--maxlen', '12', '--batch-size', '32', '--sample-length', '0'];
const FT = ['train', '--corpus', newCorpus, '--init-from', baseDir, '--sample-length', '0'];

function ok(args: string[]): string {
  const r = charlstm(args, { timeout: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function refused(args: string[], message: string): void {
  const r = charlstm(args, { timeout: 60_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `charlstm: error: ${message}\n`);
}

describe('charlstm train --init-from', () => {
  let baseVocab: string[] = [];
  before(async () => {
    writeFileSync(baseCorpus, baseText);
    writeFileSync(newCorpus, newText);
    ok([
      'train',
      '--corpus',
      baseCorpus,
      ...SMALL,
      '--layers',
      '2',
      '--epochs',
      '1',
      '--seed',
      '1',
      '--out',
      baseDir,
    ]);
    baseVocab = (await loadModel(baseDir)).meta.vocab;
    for (const c of ['þ', 'ü', 'ß']) assert.ok(!baseVocab.includes(c), `the base model has ${c}`);
  });

  it('the dry run says what it starts from', () => {
    const out = ok([...FT, '--dry-run']);
    assert.ok(
      out.includes(
        `\nstarting from ${baseDir} (2 × LSTM(16), ${baseVocab.length} characters; 3 new characters: "ß", "ü", "þ")\n`,
      ),
      out,
    );
    assert.match(out, new RegExp(`lstm \\(LSTM, input \\(None, 12, ${baseVocab.length + 3}\\)\\)`));
    const limited = ok([...FT, '--dry-run', '--min-count', '3']);
    assert.match(
      limited,
      /; 2 new characters: "ü", "þ"; 1 rarer one maps to the unknown symbol "�" \(new\)\)\n/,
    );
  });

  it('starts from the model: old weights bit for bit, new ones from the run seed', async () => {
    // a learning rate so small that no float32 weight moves (bar those exactly 0): what is saved
    // after one epoch is the starting point
    const dir = path.join(tmp, 'frozen');
    ok([...FT, '--epochs', '1', '--seed', '5', '--lr', '1e-30', '--val-split', '0', '--out', dir]);
    const [base, tuned] = await Promise.all([loadModel(baseDir), loadModel(dir)]);
    assert.deepEqual(tuned.meta.vocab, [...baseVocab, 'ß', 'ü', 'þ']);
    assert.equal(tuned.meta.units, 16);
    assert.equal(tuned.meta.layers, 2);
    assert.equal(tuned.meta.maxlen, 12);
    const want = extendParameters(base.params, 3, seedStreams(5).init);
    const views = tuned.params.views();
    want.views().forEach((w, i) => {
      const got = views[i]!;
      const isBias = i === 2 || i === 5 || i === views.length - 1;
      if (!isBias) assert.deepEqual(bits(got), bits(w), `weight ${i}`);
      // a bias entry at 0 (the new dense ones) picks up ~1e-30 from the update
      else for (let j = 0; j < w.length; j++) assert.ok(Math.abs(got[j]! - w[j]!) < 1e-20);
    });
  });

  it('trains: the held-out loss on the new text falls, and the model records where it started', async () => {
    const dir = path.join(tmp, 'tuned');
    ok([...FT, '--epochs', '3', '--seed', '5', '--out', dir]);
    const { meta } = await loadModel(dir);
    const valLoss = meta.training.valLoss as number[];
    assert.equal(valLoss.length, 3);
    assert.ok(valLoss[2]! < valLoss[0]!, `val loss ${valLoss.join(', ')}`);
    assert.equal(meta.training.initFrom, path.resolve(baseDir));
    assert.match(String(meta.training.command), / --init-from /);
    // and eval scores the new text with it (every character is in its vocabulary)
    const r = charlstm(['eval', '--model', dir, '--corpus', newCorpus, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((JSON.parse(r.stdout) as { loss: number }).loss > 0);
  });

  it('a checkpoint of a fine-tuned run resumes exactly, without --init-from', async () => {
    const whole = path.join(tmp, 'whole');
    const parts = path.join(tmp, 'parts');
    ok([...FT, '--epochs', '2', '--seed', '8', '--out', whole]);
    ok([...FT, '--epochs', '1', '--seed', '8', '--out', parts]);
    const resumed = ok(['train', '--resume', parts, '--epochs', '2']);
    assert.match(resumed, /resuming .* at epoch 2/);
    const [a, b] = await Promise.all([loadModel(whole), loadModel(parts)]);
    assert.deepEqual(bits(b.params.flat), bits(a.params.flat));
    assert.deepEqual(b.meta.vocab, a.meta.vocab);
    assert.equal(b.meta.training.initFrom, path.resolve(baseDir));
  });

  it('refuses conflicts with the model, naming both values', () => {
    const from = `--init-from ${baseDir}`;
    refused(
      [...FT, '--units', '32', '--dry-run'],
      `--units 32 conflicts with ${from}, whose units is 16: a fine-tuned model keeps its architecture (leave --units out)`,
    );
    refused(
      [...FT, '--layers', '1', '--dry-run'],
      `--layers 1 conflicts with ${from}, whose layers is 2: a fine-tuned model keeps its architecture (leave --layers out)`,
    );
    refused(
      [...FT, '--maxlen', '40', '--dry-run'],
      `--maxlen 40 conflicts with ${from}, whose maxlen is 12: a fine-tuned model keeps its architecture (leave --maxlen out)`,
    );
    refused(
      [...FT, '--no-lowercase', '--dry-run'],
      `--no-lowercase conflicts with ${from}, which was trained on lowercased text (leave --no-lowercase out)`,
    );
    refused(
      [...FT, '--resume', baseDir],
      `${from} cannot be combined with --resume ${baseDir}: a resumed run's weights come from its checkpoint`,
    );
    refused(
      [...FT, '--max-vocab', '10', '--dry-run'],
      `--max-vocab 10 is below the ${baseVocab.length} characters of ${baseDir}, which are always kept, plus the unknown symbol: give at least ${baseVocab.length + 1}`,
    );
    // the same values as the model's are no conflict
    ok([...FT, '--units', '16', '--layers', '2', '--maxlen', '12', '--dry-run']);
  });

  it('starts from a built-in model by its name, and records the name', async () => {
    const small = path.join(tmp, 'small.txt');
    writeFileSync(small, newText.slice(0, 1500));
    const dir = path.join(tmp, 'from-builtin');
    const args = ['train', '--corpus', small, '--init-from', 'moby-dick', '--sample-length', '0'];
    const out = ok([...args, '--epochs', '1', '--val-split', '0', '--seed', '3', '--out', dir]);
    // Moby-Dick's text has curly quotes only: the straight ones of the new text are new to it
    assert.match(
      out,
      /\nstarting from moby-dick \(2 × LSTM\(256\), 57 characters; \d+ new characters?: /,
    );
    const { meta } = await loadModel(dir);
    assert.equal(meta.training.initFrom, 'moby-dick');
    assert.equal(meta.units, 256);
    assert.equal(meta.layers, 2);
  });

  it('a fine-tuned model loads in TF.js, with the extended vocabulary as its input and output', async () => {
    await ensureCpuBackend();
    const dir = path.join(tmp, 'tuned');
    const json = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8')) as {
      modelTopology: object;
      weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
    };
    const group = json.weightsManifest[0]!;
    const buf = await fs.readFile(path.join(dir, group.paths[0]!));
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: group.weights,
        weightData: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength),
      }),
    );
    try {
      const V = baseVocab.length + 3;
      assert.deepEqual(model.inputs[0]!.shape, [null, 12, V]);
      assert.deepEqual(model.outputs[0]!.shape, [null, V]);
      const { params } = await loadModel(dir);
      const theirs = model.getWeights();
      const ours = params.views();
      assert.equal(theirs.length, ours.length);
      theirs.forEach((t, i) =>
        assert.deepEqual(bits(t.dataSync() as Float32Array), bits(ours[i]!)),
      );
    } finally {
      model.dispose();
    }
  });
});
