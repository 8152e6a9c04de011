// Validation that scales: beyond a threshold of held-out windows a run scores a fixed, seeded
// sample of them (src/train/evaluate.ts validationWindows). The sample is a uniform sorted subset,
// the same for a seed (so every epoch, and a resumed run, scores the same positions), its loss is
// exactly the mean over those windows, below the threshold nothing changes, and --val-full and
// `charlstm eval` keep the exact figure. The CLI tests lower the threshold through the internal
// knob CHARLSTM_VAL_SAMPLE=N (a sample of N beyond 2N windows) instead of a big corpus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import { makeWindows, splitWindows, startOf, type Windows } from '../src/data/windows.ts';
import { VALIDATION } from '../src/defaults.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Rng } from '../src/sampling/rng.ts';
import {
  evaluate,
  sampleRule,
  sampleStandardError,
  samplesValidation,
  sortedSample,
  validationSampleRng,
  validationWindows,
} from '../src/train/evaluate.ts';
import { seedStreams } from '../src/train/run-setup.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';

test('sortedSample: distinct sorted indices in range, fixed for a seed, each subset equally likely', () => {
  // pinned: a change here changes the validation figures of every sampled run
  assert.deepEqual([...sortedSample(1000, 8, new Rng(1))], [67, 83, 191, 343, 500, 602, 689, 772]);
  const a = sortedSample(3_312_004, 160_000, new Rng(7));
  assert.deepEqual(a, sortedSample(3_312_004, 160_000, new Rng(7)));
  assert.notDeepEqual(a, sortedSample(3_312_004, 160_000, new Rng(8)));
  assert.equal(a.length, 160_000);
  assert.ok(a[0]! >= 0 && a[a.length - 1]! < 3_312_004);
  for (let i = 1; i < a.length; i++) assert.ok(a[i]! > a[i - 1]!, `not increasing at ${i}`);
  assert.deepEqual([...sortedSample(5, 5, new Rng(1))], [0, 1, 2, 3, 4]);
  assert.deepEqual([...sortedSample(5, 0, new Rng(1))], []);
  assert.deepEqual([...sortedSample(5, 1, new Rng(1))].length, 1);
  assert.throws(() => sortedSample(5, 6, new Rng(1)), RangeError);
  // uniform: each of 12 indices is in a 4-sample a third of the time, each pair 1/11 of those
  const N = 12;
  const n = 4;
  const trials = 30_000;
  const seen = new Array<number>(N).fill(0);
  let firstTwo = 0;
  const rng = new Rng(3);
  for (let t = 0; t < trials; t++) {
    const s = sortedSample(N, n, rng);
    for (const i of s) seen[i]!++;
    if (s[0] === 0 && s[1] === 1) firstTwo++;
  }
  for (const c of seen) assert.ok(Math.abs(c / trials - n / N) < 0.012, `${c / trials}`);
  // P(0 and 1 both in) = C(10, 2) / C(12, 4) = 45 / 495
  assert.ok(Math.abs(firstTwo / trials - 45 / 495) < 0.008, `${firstTwo / trials}`);
});

test("the sample's stream is its own: the run's other seed streams draw what they drew before", () => {
  const streams = seedStreams(5);
  const first = [streams.init, streams.shuffle, streams.sample].map((r) => r.nextU32());
  // pinned: seedStreams(5) is untouched by the sample (a resumed old run stays exact)
  assert.deepEqual(first, [1889847503, 4097504393, 2888250869]);
  assert.notEqual(validationSampleRng(5).nextU32(), new Rng(5).nextU32());
  assert.ok(!first.includes(validationSampleRng(5).nextU32()));
  assert.deepEqual(validationSampleRng(5).getState(), validationSampleRng(5).getState());
  assert.notDeepEqual(validationSampleRng(5).getState(), validationSampleRng(6).getState());
});

test('the rule: VALIDATION by default, all windows up to the threshold, --val-full always all', () => {
  assert.deepEqual(sampleRule(), { sample: VALIDATION.sample, above: VALIDATION.sampleAbove });
  assert.deepEqual(sampleRule(''), sampleRule());
  assert.deepEqual(sampleRule('x'), sampleRule());
  assert.deepEqual(sampleRule('100'), { sample: 100, above: 200 });
  assert.equal(VALIDATION.sample, 160_000);
  // 2 nats of spread over 160,000 windows: ±0.005 nats, a little less with the finite population
  assert.equal(sampleStandardError(160_000, 3_312_004, VALIDATION.lossSpread).toFixed(3), '0.005');
  assert.ok(sampleStandardError(160_000, 3_312_004, 2) < 0.005);
  const rule = sampleRule();
  assert.equal(samplesValidation(VALIDATION.sampleAbove, rule), false);
  assert.equal(samplesValidation(VALIDATION.sampleAbove + 1, rule), true);
  assert.equal(samplesValidation(VALIDATION.sampleAbove + 1, rule, true), false);
});

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-valsample-'));
const text = mobyDick().slice(30_000, 42_000);
const corpus = path.join(tmp, 'corpus.txt');
writeFileSync(corpus, text);

/** The mean loss over `w`'s windows, one window at a time through the public CharModel. */
async function directLoss(dir: string, w: Windows): Promise<number> {
  await kernelModule();
  const m = await CharModel.load(dir);
  let sum = 0;
  const ids = new Int32Array(w.maxlen + 1);
  for (let i = 0; i < w.count; i++) {
    w.tokens.read(startOf(w, i), w.maxlen + 1, ids);
    const probs = m.predictTokens(ids.subarray(0, w.maxlen), 1, w.maxlen);
    sum -= Math.log(Math.max(probs[ids[w.maxlen]!]!, 1e-7));
  }
  return sum / w.count;
}

test('validationWindows: the same object below the threshold, else the seeded sample of it', async () => {
  // a model with random weights to score with (a run stopped before its first batch ends)
  const model = path.join(tmp, 'untrained');
  const r = charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '1',
    '--units',
    '8',
    '--seed',
    '1',
    '--sample-length',
    '0',
    '--time-budget',
    '0.01',
    '--out',
    model,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const { params, meta } = await loadModel(model);
  const tokens = new Vocabulary(meta.vocab).encode(text.toLowerCase());
  const val = splitWindows(tokens, { maxlen: 60, stride: 3, valSplit: 0.2 }).val!;
  assert.equal(val.count, 800);
  // below the threshold (and with --val-full) validation scores exactly what it scored before
  assert.equal(validationWindows(val, { seed: 5, rule: sampleRule() }), val);
  assert.equal(validationWindows(val, { seed: 5, full: true, rule: sampleRule('100') }), val);
  const s = validationWindows(val, { seed: 5, rule: sampleRule('100') });
  assert.equal(s.count, 100);
  assert.equal(s.tokens, val.tokens);
  assert.deepEqual(s.starts, validationWindows(val, { seed: 5, rule: sampleRule('100') }).starts);
  const index = sortedSample(800, 100, validationSampleRng(5));
  assert.deepEqual(
    [...s.starts!],
    [...index].map((i) => startOf(val, i)),
  );
  // the sample's windows are held-out windows: targets after the cut, on the held-out grid
  for (const start of s.starts!) assert.equal(start % 3, 0);
  // evaluate over the sample is the mean over exactly those windows
  const e = await evaluate(params, s);
  assert.equal(e.windows, 100);
  const direct = await directLoss(model, s);
  assert.ok(Math.abs(e.loss - direct) < 1e-5, `${e.loss} vs ${direct}`);
  assert.ok(Math.abs(e.loss - (await evaluate(params, val)).loss) > 1e-6, 'the sample is a part');
  assert.equal(
    validationWindows(makeWindows(tokens, 60, 1), { seed: 5, rule: sampleRule('100') }).count,
    100,
  );
});

interface EvalJson {
  scored: number;
  loss: number;
}
function evalJson(dir: string): EvalJson {
  const r = charlstm(['eval', '--model', dir, '--corpus', corpus, '--every', '3', '--json'], {
    env: { CHARLSTM_VAL_SAMPLE: '100' }, // eval never samples, knob or not
  });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as EvalJson;
}

const train = (out: string, ...args: string[]) =>
  charlstm(
    [
      'train',
      '--corpus',
      corpus,
      '--units',
      '16',
      '--seed',
      '5',
      '--sample-length',
      '0',
      '--val-split',
      '0.2',
      '--out',
      out,
      ...args,
    ],
    { env: { CHARLSTM_VAL_SAMPLE: '100' } },
  );

test('a sampled run: said once, the same windows every epoch and across a resume, best/ chosen on them', async () => {
  const dir = path.join(tmp, 'sampled');
  const first = train(dir, '--epochs', '1');
  assert.equal(first.code, 0, first.stderr);
  const line =
    /validation scores a seeded sample of 100 of 800 held-out windows \(±0\.187 nats\), the same ones every epoch, and the best model \(best\/\) is chosen on it; --val-full scores all of them\n/;
  assert.match(first.stdout, line);
  assert.equal(first.stdout.match(/seeded sample/g)!.length, 1);
  // the epoch's line says its figure is the sample's, once
  assert.match(
    first.stderr,
    /Epoch 1\/1: loss \d\.\d{4} - val_loss \d\.\d{4} \(\d\.\d{3} bits\/char, perplexity \d+\.\d\d, on a sample of 100 windows\) - /,
  );
  assert.equal(first.stderr.match(/on a sample of/g)!.length, 1);
  assert.match(
    first.stdout,
    /best validation loss \d\.\d{4} \(\d\.\d{3} bits\/char, on the sample\)/,
  );
  const epoch1 = path.join(tmp, 'sampled-epoch1');
  cpSync(dir, epoch1, { recursive: true });
  const second = charlstm(['train', '--resume', dir, '--epochs', '2'], {
    env: { CHARLSTM_VAL_SAMPLE: '100' },
  });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, line);

  const { meta } = await loadModel(dir);
  const valLoss = meta.training.valLoss as number[];
  assert.equal(valLoss.length, 2);
  const tokens = new Vocabulary(meta.vocab).encode(text.toLowerCase());
  const val = splitWindows(tokens, { maxlen: 60, stride: 3, valSplit: 0.2 }).val!;
  const sample = validationWindows(val, { seed: 5, rule: sampleRule('100') });
  // each epoch's figure is the mean over the seed's 100 windows, computed directly
  for (const [epoch, at] of [
    [0, epoch1],
    [1, dir],
  ] as const) {
    const direct = await directLoss(at, sample);
    assert.ok(
      Math.abs(valLoss[epoch]! - direct) < 1e-5,
      `epoch ${epoch + 1}: ${valLoss[epoch]} vs ${direct}`,
    );
    // and not the figure over every held-out window, which `charlstm eval` still gives
    const exact = evalJson(at);
    assert.equal(exact.scored, 800);
    assert.ok(Math.abs(exact.loss - (await directLoss(at, val))) < 1e-5);
    assert.ok(Math.abs(exact.loss - valLoss[epoch]!) > 1e-6);
  }
  // best/ is the epoch with the lower sampled loss
  const best = await loadModel(path.join(dir, 'best'));
  assert.equal(
    (best.meta.training.valLoss as number[]).length,
    valLoss.indexOf(Math.min(...valLoss)) + 1,
  );
});

test('--val-full scores every held-out window, knob or not, and says nothing of a sample', async () => {
  const dir = path.join(tmp, 'full');
  const r = train(dir, '--epochs', '1', '--val-full');
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /seeded sample|on the sample/);
  assert.doesNotMatch(r.stderr, /on a sample/);
  assert.match(r.stderr, /val_loss \d\.\d{4} \(\d\.\d{3} bits\/char, perplexity \d+\.\d\d\) - /);
  assert.match(r.stdout, /validation scores every 3rd held-out character \(--step\), 800 of 2400/);
  const valLoss = (await loadModel(dir)).meta.training.valLoss as number[];
  const exact = evalJson(dir);
  assert.ok(Math.abs(exact.loss - valLoss[0]!) < 1e-6, `${exact.loss} vs ${valLoss[0]}`);
  // resumable, and kept by a resume that does not repeat it
  const again = charlstm(['train', '--resume', dir, '--epochs', '2'], {
    env: { CHARLSTM_VAL_SAMPLE: '100' },
  });
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /seeded sample/);
  const after = (await loadModel(dir)).meta.training.valLoss as number[];
  assert.ok(Math.abs(evalJson(dir).loss - after[1]!) < 1e-6);
});
