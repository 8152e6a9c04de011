// A run reads its ids through a TokenSource: an array in memory (MemoryTokens) or positional
// reads of the prepared token file (FileTokens, for corpora beyond CORPUS.idsInMemoryBytes). The
// two must give the same ids everywhere a run reads them, and so the same run, bit for bit.

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { encodeIn, prepareCorpus, type PreparedCorpus } from '../src/corpus/prepare.ts';
import { encodedTokens, FileTokens, openTokens } from '../src/corpus/token-source.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import {
  gatherBatch,
  gatherStreams,
  makeStreams,
  MemoryTokens,
  splitWindows,
} from '../src/data/windows.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { MemorisationIndex } from '../src/generate/memorisation.ts';
import { Rng } from '../src/sampling/rng.ts';
import { evaluate, evaluateStateful, scoreText } from '../src/train/evaluate.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';
import { randomCharModel } from './helpers/models.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-tokens-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const text = mobyDick().slice(50_000, 70_000);
const corpusFile = path.join(tmp, 'corpus.txt');
writeFileSync(corpusFile, text);

let prepared: PreparedCorpus;
let file: FileTokens;
let memory: MemoryTokens;
async function sources(): Promise<void> {
  prepared ??= await prepareCorpus(corpusFile, { home: path.join(tmp, 'home') });
  file ??= FileTokens.open(prepared.tokens);
  memory ??= new MemoryTokens(prepared.tokens.readCompact());
}
after(() => file?.close());

describe('FileTokens reads what the array holds', () => {
  it('reads, subarrays, ranges and the threshold', async () => {
    await sources();
    assert.equal(file.length, memory.length);
    assert.equal(file.length, [...text.toLowerCase()].length);
    const rng = new Rng(3);
    for (let k = 0; k < 200; k++) {
      const count = rng.int(100);
      const start = rng.int(file.length - count);
      const a = new Int32Array(count + 2);
      const b = new Int32Array(count + 2);
      file.read(start, count, a, 1);
      memory.read(start, count, b, 1);
      assert.deepEqual(a, b);
      assert.deepEqual(
        a.subarray(1, count + 1),
        Int32Array.from(memory.ids.subarray(start, start + count)),
      );
    }
    const fs = file.subarray(1000, 1100);
    const ms = memory.subarray(1000, 1100);
    assert.equal(fs.length, 100);
    const a = new Int32Array(10);
    const b = new Int32Array(10);
    fs.subarray(50).read(40, 10, a);
    ms.subarray(50).read(40, 10, b);
    assert.deepEqual(a, b);
    assert.throws(() => fs.read(95, 6, new Int32Array(6)), RangeError);
    assert.throws(() => ms.read(95, 6, new Int32Array(6)), RangeError);
    assert.equal(file.subarray(file.length - 5, file.length + 9).length, 5); // clamped
    const bytes = prepared.tokens.length * prepared.tokens.bytesPerId;
    assert.ok(openTokens(prepared.tokens, bytes) instanceof MemoryTokens);
    assert.ok(openTokens(prepared.tokens, bytes - 1) instanceof FileTokens);
  });

  it('gatherBatch and gatherStreams give the same batches', async () => {
    await sources();
    for (const scoring of ['last', 'every'] as const) {
      const wf = splitWindows(file, { maxlen: 40, stride: 3, valSplit: 0.1 }).train;
      const wm = splitWindows(memory, { maxlen: 40, stride: 3, valSplit: 0.1 }).train;
      const order = (k: number): number => (k * 7919) % wf.count;
      const got = [new Int32Array(32 * 40), new Int32Array(32 * 40)];
      const want = [new Int32Array(32 * 40), new Int32Array(32 * 40)];
      assert.equal(gatherBatch(wf, order, 100, 132, got[0]!, got[1]!, scoring), 32);
      gatherBatch(wm, order, 100, 132, want[0]!, want[1]!, scoring);
      assert.deepEqual(got, want);
      assert.ok(got[0]!.some((id) => id !== 0));
    }
    const sf = makeStreams(file, 16, 30);
    const sm = makeStreams(memory, 16, 30);
    for (const k of [0, 7, sf.steps - 1]) {
      const got = [new Int32Array(16 * 30), new Int32Array(16 * 30)];
      const want = [new Int32Array(16 * 30), new Int32Array(16 * 30)];
      gatherStreams(sf, k, got[0]!, got[1]!);
      gatherStreams(sm, k, want[0]!, want[1]!);
      assert.deepEqual(got, want);
    }
  });

  it('validation, stateful validation and scoreText give the same losses', async () => {
    await sources();
    await kernelModule();
    const model = randomCharModel({ vocab: [...prepared.vocab.chars], units: 8, maxlen: 20 });
    const params = model.params;
    const vf = splitWindows(file, { maxlen: 20, stride: 5, valSplit: 0.2 }).val!;
    const vm = splitWindows(memory, { maxlen: 20, stride: 5, valSplit: 0.2 }).val!;
    const e = await evaluate(params, vf, { engine: 'wasm' });
    assert.equal(e.loss, (await evaluate(params, vm, { engine: 'wasm' })).loss);
    assert.ok(Number.isFinite(e.loss) && e.windows === vm.count);
    // streams longer than the block evaluateStateful reads at a time (4,096 steps)
    const sf = await evaluateStateful(params, file, { streams: 3, engine: 'wasm' });
    const sm = await evaluateStateful(params, memory.ids, { streams: 3, engine: 'wasm' });
    assert.equal(sf.loss, sm.loss);
    assert.equal(sf.windows, 3 * (Math.floor(file.length / 3) - 1));
    const vocab = new Vocabulary(prepared.vocab.chars);
    const mapped = encodedTokens(prepared, vocab, 'corpus', 'error');
    const held = encodeIn(prepared, vocab, 'corpus', 'error');
    const got = await scoreText(params, mapped, 20, { every: 3, engine: 'wasm' });
    const want = await scoreText(params, held, 20, { every: 3, engine: 'wasm' });
    assert.equal(got.loss, want.loss);
    assert.equal(got.span, want.span);
  });

  it('the memorisation index finds the same copies', async () => {
    await sources();
    const generated = (from: number, n: number): Int32Array => {
      const out = new Int32Array(n);
      memory.read(from, n, out);
      out[n >> 1] = (out[n >> 1]! + 1) % prepared.vocab.size; // one changed character
      return out;
    };
    const texts = [generated(100, 300), generated(17_000, 400), new Int32Array(50).fill(1)];
    for (const budgetBytes of [undefined, 8192]) {
      const a = MemorisationIndex.build(file, { ...(budgetBytes && { budgetBytes }) });
      const b = MemorisationIndex.build(memory, { ...(budgetBytes && { budgetBytes }) });
      assert.equal(a.kind, budgetBytes ? 'sampled' : 'suffix-array');
      assert.equal(a.describe(), b.describe());
      for (const g of texts) assert.deepEqual(a.report(g), b.report(g));
      assert.ok(a.report(texts[0]!).longestCopy >= 150);
    }
  });
});

/** Everything a run writes that depends on its ids: its output less timings, the weights. */
function runOutput(out: string, r: { stdout: string; stderr: string }) {
  const files: Record<string, string> = {};
  for (const name of readdirSync(out).sort()) {
    if (name.endsWith('.bin')) files[name] = readFileSync(path.join(out, name)).toString('base64');
  }
  const epochs = r.stderr.split('\n').filter((line) => /^Epoch \d+\/\d+: /.test(line));
  const text = [r.stdout, ...epochs].join('\n').replaceAll(out, 'OUT');
  return { text: text.replace(/ - [^-]*(seq\/s|\ds)\b/g, ''), epochs: epochs.length, files };
}

describe('a run from the token file is the run from memory', () => {
  for (const mode of ['last', 'stateful'] as const) {
    it(`--mode ${mode}: the same output, losses and weights`, () => {
      const runs = ['0', ''].map((inMemory) => {
        const out = path.join(tmp, `run-${mode}-${inMemory || 'memory'}`);
        const r = charlstm(
          [
            'train',
            '--corpus',
            corpusFile,
            '--units',
            '8',
            '--maxlen',
            '20',
            '--batch-size',
            '16',
            '--epochs',
            '2',
            '--seed',
            '7',
            '--mode',
            mode,
            '--sample-length',
            '30',
            '--temperatures',
            '0.5',
            '--val-split',
            '0.2',
            '--out',
            out,
          ],
          { env: { CHARLSTM_IDS_IN_MEMORY: inMemory, CHARLSTM_VAL_SAMPLE: '200' } },
        );
        assert.equal(r.code, 0, r.stderr);
        return runOutput(out, r);
      });
      assert.equal(runs[0]!.epochs, 2);
      assert.match(runs[0]!.text, /val_loss \d\.\d{4}/);
      assert.match(runs[0]!.text, /copied from the corpus/);
      assert.ok(Object.keys(runs[0]!.files).length > 0);
      assert.deepEqual(runs[0], runs[1]);
    });
  }
});
