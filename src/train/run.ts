import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadCorpus } from '../corpus/corpus.ts';
import { Vocabulary } from '../data/vocabulary.ts';
import { makeWindows } from '../data/windows.ts';
import { SHARDS } from '../engine/gradient-engine.ts';
import { REFERENCE } from '../defaults.ts';
import { UserError } from '../errors.ts';
import { initParameters } from '../model/init.ts';
import { Parameters, type ModelShape } from '../model/params.ts';
import { Rng } from '../sampling/rng.ts';
import { progressCallback, samplesCallback, saveCallback } from './callbacks.ts';
import { Trainer } from './trainer.ts';
import type { ModelMeta } from '../checkpoint/model-format.ts';

// The whole reference run, as `charlstm train` does it: corpus → vocabulary → windows → fresh
// model → training loop with progress, samples and saving as callbacks.

export interface TrainRunOptions {
  corpus: string;
  out?: string;
  epochs: number;
  batchSize: number;
  lr: number;
  units: number;
  maxlen: number;
  step: number;
  seed?: number;
  threads?: number;
  temperatures: number[];
  sampleLength: number;
  lowercase: boolean;
  dryRun?: boolean;
  overwrite?: boolean;
}

export function modelSummary(shape: ModelShape, maxlen: number): string {
  const { vocabSize: V, units: H } = shape;
  const lstm = 4 * (V * H + H * H + H);
  const dense = H * V + V;
  const rows = [
    ['Layer (type)', 'Output shape', 'Param #'],
    [`lstm (LSTM, input (None, ${maxlen}, ${V}))`, `(None, ${H})`, lstm.toLocaleString('en-US')],
    ['dense (Dense, softmax)', `(None, ${V})`, dense.toLocaleString('en-US')],
  ];
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(w[i]!)).join('   ').trimEnd();
  const rule = '-'.repeat(line(rows[0]!).length);
  return [line(rows[0]!), rule, line(rows[1]!), line(rows[2]!), rule, `Total params: ${Parameters.size(shape).toLocaleString('en-US')}`].join('\n');
}

const out = (s: string): void => {
  process.stdout.write(s);
};

export async function runTrain(opts: TrainRunOptions): Promise<void> {
  const corpus = await loadCorpus(opts.corpus, { lowercase: opts.lowercase });
  const vocab = Vocabulary.fromText(corpus.text);
  const tokens = vocab.encode(corpus.text);
  if (tokens.length < opts.maxlen + 1) {
    throw new UserError(
      `corpus ${corpus.name} has ${tokens.length} characters; training needs at least maxlen + 1 = ${opts.maxlen + 1}`,
    );
  }
  const windows = makeWindows(tokens, opts.maxlen, opts.step);
  out(`corpus length: ${tokens.length}\nunique characters: ${vocab.size}\nsequences: ${windows.count}\n`);
  const shape = { vocabSize: vocab.size, units: opts.units };
  if (opts.dryRun) {
    out(`\n${modelSummary(shape, opts.maxlen)}\n`);
    return;
  }

  const dir = opts.out ?? path.join('models', corpus.name);
  if (existsSync(path.join(dir, 'model.json')) && !opts.overwrite) {
    throw new UserError(`${dir} already holds a model; choose another --out folder, or pass --overwrite to replace it`);
  }
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  out(`seed: ${seed}\n`);
  // one root seed → independent streams for the initial weights, the shuffles and the samples
  const root = new Rng(seed);
  const initRng = new Rng(root.nextU32());
  const shuffleRng = new Rng(root.nextU32());
  const sampleRng = new Rng(root.nextU32());
  const params = initParameters(shape, initRng);
  const threads = opts.threads ?? Math.min(SHARDS, (await import('node:os')).availableParallelism());

  const meta = (): Omit<ModelMeta, 'formatVersion' | 'weightsSha256'> => ({
    vocab: [...vocab.chars],
    lowercase: opts.lowercase,
    maxlen: opts.maxlen,
    step: opts.step,
    units: opts.units,
    training: {
      corpus: corpus.name,
      source: corpus.source,
      epochs: trainer.epoch,
      batchSize: opts.batchSize,
      optimizer: 'rmsprop',
      learningRate: opts.lr,
      rho: trainer.config.rho,
      epsilon: trainer.config.epsilon,
      seed,
      loss: trainer.history.map((h) => h.loss),
      seqPerSec: trainer.history.map((h) => Math.round(h.seqPerSec)),
    },
  });
  const trainer: Trainer = new Trainer({
    params,
    windows,
    shuffleRng,
    config: {
      batchSize: opts.batchSize,
      epochs: opts.epochs,
      learningRate: opts.lr,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads,
    },
    callbacks: [
      progressCallback(process.stderr),
      saveCallback(dir, meta),
      samplesCallback({
        tokens,
        vocab,
        meta: () => ({ ...meta(), formatVersion: 1 }),
        temperatures: opts.temperatures,
        length: opts.sampleLength,
        rng: sampleRng,
        write: out,
      }),
    ],
  });

  // Ctrl-C: finish the batch in flight and stop; the model saved after the last whole epoch stays.
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\nstopping after this batch (Ctrl-C again to quit at once); the last saved epoch is kept\n');
    trainer.requestStop();
  };
  process.on('SIGINT', onSigint);
  try {
    await trainer.fit();
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (trainer.epoch > 0) out(`model saved to ${dir} (${trainer.epoch} epoch${trainer.epoch === 1 ? '' : 's'})\n`);
  else out('stopped before the first epoch ended: nothing saved\n');
  if (interrupts > 0) process.exitCode = 130;
}
