import type { ModelMeta } from '../checkpoint/model-format.ts';
import type { Vocabulary } from '../data/vocabulary.ts';
import type { Precision } from '../engine/types.ts';
import { REFERENCE } from '../defaults.ts';
import { UserError } from '../errors.ts';
import { Rng } from '../sampling/rng.ts';
import type { Trainer, TrainMode } from './trainer.ts';

// The two pieces of a run that `charlstm train` (src/train/run.ts) and the browser's in-page
// training (web/src/worker.ts) must do alike: how one seed becomes the run's random streams, and
// what a saved model records about its training. No Node.js imports: the web worker bundles it.

export interface SeedStreams {
  init: Rng; // the initial weights
  shuffle: Rng; // each epoch's window order
  sample: Rng; // the samples printed after each epoch
  dropoutSeed: number; // keys the dropout masks (src/engine/dropout.ts)
}

/** One root seed → independent streams, drawn in this order (changing it changes every run). */
export function seedStreams(seed: number): SeedStreams {
  const root = new Rng(seed);
  const init = new Rng(root.nextU32());
  const shuffle = new Rng(root.nextU32());
  const sample = new Rng(root.nextU32());
  return { init, shuffle, sample, dropoutSeed: root.nextU32() };
}

/**
 * Training needs one window and the character after it: `what` (the corpus as the user knows
 * it) has `characters` characters, and `maxlenName` is the window length's name where it was set.
 */
export function checkTextLength(
  what: string,
  characters: number,
  maxlen: number,
  maxlenName = 'maxlen',
): void {
  if (characters < maxlen + 1) {
    throw new UserError(
      `${what} has ${characters} characters; training needs at least ${maxlenName} + 1 = ${maxlen + 1}`,
    );
  }
}

/** What a run is, as far as its saved model tells. */
export interface RunDescription {
  corpus: string; // the corpus's name
  source?: string; // where it was read from (absent for built-in corpora)
  command?: string; // the command line of the process that saved it
  initFrom?: string; // the model it was fine-tuned from (`--init-from`): a built-in name or a folder
  vocab: Vocabulary;
  lowercase: boolean;
  maxlen: number;
  stride: number; // a new window every `stride` characters (saved as `step`)
  units: number;
  layers: number;
  batchSize: number;
  optimizer: 'rmsprop' | 'adam';
  learningRate: number;
  seed: number;
  valSplit?: number;
  mode?: TrainMode;
  dropout?: number;
  /** the products' arithmetic this process trained with (a resumed run's may differ by epoch) */
  precision?: Precision;
}

/** The metadata saved beside the weights, as of the trainer's progress now. */
export function trainedModelMeta(
  run: RunDescription,
  trainer: Trainer,
): Omit<ModelMeta, 'formatVersion' | 'weightsSha256'> {
  return {
    vocab: [...run.vocab.chars],
    ...(run.vocab.unknownSymbol !== undefined && { unknown: run.vocab.unknownSymbol }),
    lowercase: run.lowercase,
    maxlen: run.maxlen,
    step: run.stride,
    units: run.units,
    ...(run.layers > 1 && { layers: run.layers }),
    training: {
      corpus: run.corpus,
      ...(run.source !== undefined && { source: run.source }),
      ...(run.command !== undefined && { command: run.command }),
      ...(run.initFrom !== undefined && { initFrom: run.initFrom }),
      epochs: trainer.epoch,
      batchSize: run.batchSize,
      optimizer: run.optimizer,
      learningRate: run.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      seed: run.seed,
      ...(run.valSplit !== undefined && { valSplit: run.valSplit }),
      ...(run.mode !== undefined && { mode: run.mode }),
      ...(run.dropout !== undefined && { dropout: run.dropout }),
      ...(run.precision !== undefined && { precision: run.precision }),
      loss: trainer.history.map((h) => h.loss),
      ...(run.valSplit !== undefined && {
        valLoss: trainer.history.map((h) => h.valLoss ?? null),
      }),
      seqPerSec: trainer.history.map((h) => Math.round(h.seqPerSec)),
      trainSeconds: Math.round(trainer.trainSeconds),
    },
  };
}
