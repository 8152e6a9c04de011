// `charlstm eval`: a saved model scored on a text. Its figure with a run's split and step is the
// validation loss that run reported (to 1e-6), its default (every held-out character) agrees with
// a naive per-window computation through the public CharModel, and bad input is one line.
// Also: the training clock (and so --time-budget) counts training alone, not the callbacks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import { makeWindows } from '../src/data/windows.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { initParameters } from '../src/model/init.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Trainer } from '../src/train/trainer.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-eval-'));
const text = mobyDick().slice(30_000, 42_000);
const corpus = path.join(tmp, 'corpus.txt');
writeFileSync(corpus, text);
const model = path.join(tmp, 'model');

interface EvalJson {
  scored: number;
  span: number;
  loss: number;
  bpc: number;
  perplexity: number;
  every: number;
  valSplit?: number;
}
function evalJson(...args: string[]): EvalJson {
  const r = charlstm(['eval', '--model', model, '--corpus', corpus, '--json', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as EvalJson;
}

test('a short run to score (2 epochs, the last 20% held out, step 3)', () => {
  const r = charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '2',
    '--units',
    '16',
    '--seed',
    '5',
    '--sample-length',
    '0',
    '--val-split',
    '0.2',
    '--out',
    model,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /validation scores every 3rd held-out character \(--step\), 800 of 2400, each from the 60 before it/,
  );
  // 800 held-out windows are far below the sample threshold (VALIDATION): every one is scored
  assert.doesNotMatch(r.stdout, /seeded sample/);
});

test("eval with the run's split and --every = its step is the run's validation loss", async () => {
  const { meta } = await loadModel(model);
  const valLoss = meta.training.valLoss as number[];
  const e = evalJson('--every', '3'); // the split comes from the model (0.2)
  assert.equal(e.valSplit, 0.2);
  assert.equal(e.scored, 800);
  assert.ok(Math.abs(e.loss - valLoss[1]!) < 1e-6, `${e.loss} vs ${valLoss[1]}`);
  assert.ok(Math.abs(e.bpc - e.loss / Math.LN2) < 1e-12);
  // best/ holds the better of the two epochs, with its own figure
  const best = await loadModel(path.join(model, 'best'));
  const r = charlstm([
    'eval',
    '--model',
    path.join(model, 'best'),
    '--corpus',
    corpus,
    '--every',
    '3',
    '--json',
  ]);
  const b = JSON.parse(r.stdout) as EvalJson;
  assert.ok(Math.abs(b.loss - Math.min(...valLoss)) < 1e-6, `${b.loss} vs ${valLoss.join(', ')}`);
  assert.equal(
    (best.meta.training.valLoss as number[]).length,
    valLoss.indexOf(Math.min(...valLoss)) + 1,
  );
});

test('by default every held-out character is scored, as a naive per-window loop computes it', async () => {
  const e = evalJson();
  assert.equal(e.span, 2400);
  assert.equal(e.scored, 2400);
  await kernelModule();
  const m = await CharModel.load(model);
  const chars = [...text.toLowerCase()];
  const cut = chars.length - 2400;
  let sum = 0;
  for (let i = cut; i < chars.length; i++) {
    const probs = m.predict(chars.slice(i - 60, i).join(''));
    sum -= Math.log(Math.max(probs[m.vocab.chars.indexOf(chars[i]!)]!, 1e-7));
  }
  assert.ok(Math.abs(e.loss - sum / 2400) < 1e-5, `${e.loss} vs ${sum / 2400}`);
  assert.ok(Math.abs(e.perplexity - Math.exp(e.loss)) < 1e-9);
});

test('--all scores the whole text, --stateful reads it as streams; the plain output says which', () => {
  const all = evalJson('--all', '--every', '7');
  assert.equal(all.span, text.length - 60);
  assert.equal(all.scored, Math.ceil((text.length - 60) / 7));
  const stateful = evalJson('--stateful');
  assert.ok(Number.isFinite(stateful.loss) && stateful.loss > 0);
  assert.notEqual(stateful.loss, evalJson().loss);
  const plain = charlstm(['eval', '--model', model, '--corpus', corpus, '--val-split', '0.1']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(
    plain.stdout,
    /^corpus, the last 10% \(1,200 characters\): every character scored \(1,200\), each from the 60 before it from a zero state\nloss \d\.\d{4} nats\/char, \d\.\d{3} bits\/char, perplexity \d+\.\d\d\n$/,
  );
});

test('bad input: one line naming the problem, exit code 2', () => {
  const other = path.join(tmp, 'other.txt');
  writeFileSync(other, `${text.slice(0, 500)} 0123 ☃`);
  const cases: [string[], RegExp][] = [
    [['--all', '--val-split', '0.1'], /--all or --val-split, not both/],
    [['--stateful', '--every', '3'], /--stateful scores every character; --every 3/],
    [['--val-split', '0'], /--val-split 0 leaves nothing to score/],
    [['--every', '0'], /--every/],
    [['--corpus', other], /outside the model's vocabulary: .*"☃"/],
    [['--model', path.join(tmp, 'missing')], /missing/],
  ];
  for (const [args, message] of cases) {
    const r = charlstm(['eval', '--model', model, '--corpus', corpus, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^charlstm: error: /);
    assert.match(lines[0]!, message);
  }
});

test('the training clock and the time budget count training alone, not the callbacks', async () => {
  await kernelModule();
  const tokens = Vocabulary.fromText(text).encode(text);
  const params = initParameters({ vocabSize: new Set(text).size, units: 8 }, new Rng(1));
  const pause = 60; // ms spent in a callback after every batch, as a slow save would
  let batches = 0;
  let untimedInside = 0;
  const trainer: Trainer = new Trainer({
    params,
    windows: makeWindows(tokens, 20, 7),
    shuffleRng: new Rng(2),
    config: {
      batchSize: 16,
      epochs: 1000,
      learningRate: 0.01,
      rho: 0.9,
      epsilon: 1e-7,
      threads: 0,
      timeBudget: 0.3,
    },
    callbacks: [
      {
        async onBatchEnd() {
          batches++;
          await new Promise((r) => setTimeout(r, pause));
          // a callback's own untimed work inside the untimed callbacks stops the clock once
          const before = trainer.trainSeconds;
          await trainer.untimed(() => new Promise((r) => setTimeout(r, 5)));
          untimedInside += trainer.trainSeconds - before;
        },
      },
    ],
  });
  const t0 = performance.now();
  await trainer.fit();
  const wall = (performance.now() - t0) / 1000;
  assert.ok(trainer.trainSeconds >= 0.3, `stopped early: ${trainer.trainSeconds} s`);
  // were the pauses counted, the 0.3 s budget would end after at most 5 batches
  assert.ok(batches > 5, `${batches} batches`);
  assert.ok(wall >= trainer.trainSeconds + (batches * pause) / 1000 - 0.05, `${wall} s wall`);
  assert.ok(trainer.trainSeconds < 0.3 + 0.25, `${trainer.trainSeconds} s of training`);
  assert.equal(untimedInside, 0);
});

test('a diverging batch is undone whole: weights, moments, iteration count and its share of the loss', async () => {
  const tokens = Vocabulary.fromText(text).encode(text);
  const V = new Set(text).size;
  // A stand-in engine: the loss is a function of the batch's tokens and of the weights' first
  // entry (so a step that "diverges" can be recognised), the gradient a fixed small vector.
  function fakeEngine(nanAtCall: number | undefined, calls: { iteration: number; x0: number }[]) {
    return {
      threads: 0,
      engine: 'wasm' as const,
      precision: 'fp32' as const,
      async lossAndGrads(
        p: Float32Array,
        { x, rows: n, steps: T }: { x: Int32Array; rows: number; steps: number },
        out: Float32Array,
      ) {
        calls.push({ iteration: trainer.optimizer.iterations, x0: x[0]! * 1000 + x[1]! });
        out.fill(0.01);
        if (calls.length === nanAtCall) return NaN;
        let sum = 0;
        for (let i = 0; i < n * T; i++) sum += x[i]!;
        return 1 + sum / (n * T * V) + 0 * p[0]!;
      },
      async close() {},
    };
  }
  let trainer!: Trainer;
  const run = async (nanAtCall?: number) => {
    const calls: { iteration: number; x0: number }[] = [];
    trainer = new Trainer({
      params: initParameters({ vocabSize: V, units: 4 }, new Rng(1)),
      windows: makeWindows(tokens, 20, 50),
      shuffleRng: new Rng(2),
      config: {
        batchSize: 16,
        epochs: 1,
        learningRate: 0.01,
        rho: 0.9,
        epsilon: 1e-7,
        threads: 0,
        optimizer: 'adam',
      },
      engine: fakeEngine(nanAtCall, calls),
    });
    const history = await trainer.fit();
    return {
      calls,
      history,
      iterations: trainer.optimizer.iterations,
      scale: trainer.learningRateScale,
    };
  };
  const clean = await run();
  const diverged = await run(6); // the 6th batch's loss is NaN: the 5th batch's step is undone
  assert.equal(diverged.scale, 0.5);
  assert.equal(diverged.calls.length, clean.calls.length + 2); // the 5th batch, then the 6th, again
  // the 5th batch comes again, at the iteration count it had the first time (Adam's bias correction)
  assert.deepEqual(diverged.calls[6], clean.calls[4]);
  assert.deepEqual(diverged.calls[7], clean.calls[5]);
  assert.equal(diverged.iterations, clean.iterations);
  // each batch counts once in the epoch's loss, whatever was undone
  assert.equal(diverged.history[0]!.loss, clean.history[0]!.loss);
  assert.equal(diverged.history[0]!.sequences, clean.history[0]!.sequences);
});
