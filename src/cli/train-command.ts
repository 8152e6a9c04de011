import { Command, InvalidArgumentError, Option } from 'commander';

import { CORPUS, DEFAULT_VAL_SPLIT, REFERENCE } from '../defaults.ts';
import type { TrainRunOptions } from '../train/run.ts';
import {
  integerIn,
  parseCount,
  parseFraction,
  parsePort,
  parsePositive,
  parseSeed,
} from './options.ts';

// `charlstm train`: the reference pipeline (Deep Learning with Python 8.1) end to end, with every
// default taken from src/defaults.ts.

/** What commander hands the action: the run's options, some still in their command-line form. */
interface TrainFlags extends Omit<
  TrainRunOptions,
  'valSplit' | 'schedule' | 'dashboard' | 'explicit' | 'callbacks'
> {
  valSplit?: number; // undefined: DEFAULT_VAL_SPLIT, or 0 with --preset reference
  preset?: string;
  lrSchedule?: string;
  dashboard?: boolean;
  port: number;
  host: string;
}

/**
 * Named sets of options; an option given explicitly on the command line wins over its preset.
 *   reference: exactly the notebook (no validation split).
 *   ten-minutes: the recipe that reached the lowest held-out loss in ten minutes of training on
 *     the 2-core development machine (see bench/modes.ts and the README's table).
 */
const PRESETS: Record<string, Partial<TrainFlags>> = {
  default: {},
  reference: { valSplit: 0 },
  'ten-minutes': {
    mode: 'sequence',
    layers: 2,
    units: 256,
    dropout: 0.3,
    lr: 0.007,
    lrSchedule: 'cosine',
    clip: 5,
    timeBudget: 600,
  },
};

function parsePreset(text: string): string {
  if (!Object.hasOwn(PRESETS, text)) {
    throw new InvalidArgumentError(
      'Presets: reference (the notebook exactly: no validation), ten-minutes (2 × LSTM(256), dropout 0.3, every position, cosine lr 0.007, clip 5, 600 s of training), default.',
    );
  }
  return text;
}

function parseTemperatures(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) {
    throw new InvalidArgumentError(
      'Give a comma-separated list of positive numbers, e.g. 0.2,0.5,1.0,1.2.',
    );
  }
  return parts.map((p) => {
    try {
      return parsePositive(p);
    } catch {
      throw new InvalidArgumentError(
        `The temperature ${JSON.stringify(p)} is not a positive number.`,
      );
    }
  });
}

function parseUnits(text: string): number {
  const n = parseCount(text);
  if (n % 4 !== 0 || n > 4096)
    throw new InvalidArgumentError('units must be a multiple of 4, at most 4096.');
  return n;
}

const parseThreads = integerIn('threads', 0, 64);
const parseSampleLength = integerIn('The sample length', 0, 1_000_000);

function parseLayers(text: string): number {
  const n = parseCount(text);
  if (n > 8) throw new InvalidArgumentError('layers must be an integer from 1 to 8.');
  return n;
}

export function trainCommand(): Command {
  return new Command('train')
    .description(
      'train a model on a corpus, printing samples after every epoch (the reference pipeline)',
    )
    .option(
      '-c, --corpus <spec>',
      'built-in name (nietzsche, moby-dick), text file or http(s) URL',
      'nietzsche',
    )
    .option(
      '--max-corpus-bytes <n>',
      `the largest corpus read, file, pipe or download (default ${CORPUS.maxBytes}: 512 MiB)`,
      integerIn('The corpus size limit', 1, Number.MAX_SAFE_INTEGER),
    )
    .option(
      '-o, --out <dir>',
      'model folder, saved after every epoch (default: models/<corpus name>)',
    )
    .option('-e, --epochs <n>', 'epochs to train', parseCount, REFERENCE.epochs)
    .option('--batch-size <n>', 'windows per batch', parseCount, REFERENCE.batchSize)
    .option('--lr <x>', 'RMSprop learning rate', parsePositive, REFERENCE.learningRate)
    .option('--units <n>', 'LSTM units (a multiple of 4)', parseUnits, REFERENCE.units)
    .option('--layers <n>', 'stacked LSTM layers', parseLayers, 1)
    .option(
      '--dropout <rate>',
      "dropout on every LSTM layer's output while training (0: none, the reference)",
      parseFraction,
      0,
    )
    .option('--maxlen <n>', 'characters in an input window', parseCount, REFERENCE.maxlen)
    .option('--step <n>', 'a new window every <n> characters', parseCount, REFERENCE.step)
    .option(
      '--seed <n>',
      'seed for initial weights, shuffling and samples (default: random, printed)',
      parseSeed,
    )
    .option('--threads <n>', 'worker threads (default: one per core, at most 2)', parseThreads)
    .option('--temperatures <list>', 'sampling temperatures after each epoch', parseTemperatures, [
      ...REFERENCE.temperatures,
    ])
    .option(
      '--sample-length <n>',
      'characters generated per temperature after each epoch',
      parseSampleLength,
      REFERENCE.sampleLength,
    )
    .option('--no-lowercase', 'keep the corpus as written (the reference lowercases it)')
    .option('--dry-run', 'print the corpus figures and the model summary, then exit')
    .option('--overwrite', 'replace a model already in the output folder')
    .option(
      '--val-split <f>',
      `hold out the last fraction f of the corpus for validation (default ${DEFAULT_VAL_SPLIT}; 0: none)`,
      parseFraction,
    )
    .option(
      '--preset <name>',
      'reference: exactly the notebook (no validation split); ten-minutes: the best recipe for 10 minutes of training',
      parsePreset,
    )
    .option('--early-stop <n>', 'stop after n epochs without a better validation loss', parseCount)
    .option(
      '--checkpoint-every <n>',
      'also save a resumable checkpoint every n batches',
      parseCount,
    )
    .option('--clip <norm>', "clip the gradient's global norm", parsePositive)
    .option('--lr-schedule <s>', 'constant, cosine, or step[:EPOCHS[:FACTOR]]', 'constant')
    .option(
      '--time-budget <seconds>',
      'stop after this much training time (resumable)',
      parsePositive,
    )
    .addOption(
      new Option(
        '--mode <mode>',
        'last: score the character after each window (the reference); sequence: score every position; ' +
          'stateful: every position of --batch-size contiguous streams, the state carried between batches',
      )
        .choices(['last', 'sequence', 'stateful'])
        .default('last'),
    )
    .addOption(
      new Option('--optimizer <name>', 'rmsprop (the reference) or adam (β 0.9, 0.999)')
        .choices(['rmsprop', 'adam'])
        .default('rmsprop'),
    )
    .addOption(
      new Option(
        '--engine <kind>',
        'kernels: wasm, native (AVX2 addon, when built), auto = the fastest available',
      )
        .choices(['auto', 'wasm', 'native'])
        .default('auto'),
    )
    .option('--dashboard', 'serve a live view of the run in the browser (loss, speed, samples)')
    .option('--port <n>', 'the dashboard port (0: any free port)', parsePort, 8081)
    .option('--host <host>', 'the dashboard address', '127.0.0.1')
    .option('--resume <dir>', 'continue the run saved in <dir> exactly where it stopped')
    .action(async function (this: Command, flags: TrainFlags) {
      const [{ runTrain }, { parseSchedule }] = await Promise.all([
        import('../train/run.ts'),
        import('../train/schedule.ts'),
      ]);
      const explicit = new Set(
        Object.keys(flags).filter((k) => this.getOptionValueSource(k) === 'cli'),
      );
      // the preset's values, except where the command line gave the option
      for (const [key, value] of Object.entries(PRESETS[flags.preset ?? 'default']!)) {
        if (!explicit.has(key)) (flags as unknown as Record<string, unknown>)[key] = value;
      }
      const valSplit = flags.valSplit ?? DEFAULT_VAL_SPLIT;
      const { dashboard, port, host, ...rest } = flags;
      await runTrain({
        ...rest,
        valSplit,
        schedule: parseSchedule(flags.lrSchedule ?? 'constant'),
        ...(dashboard && { dashboard: { port, host } }),
        explicit,
      });
    });
}
