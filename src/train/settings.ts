import {
  CORPUS,
  DASHBOARD,
  DEFAULT_VAL_SPLIT,
  REFERENCE,
  TRAINING,
  VALIDATION,
} from '../defaults.ts';
import {
  ValueError,
  integerIn,
  parseCount,
  parseFraction,
  parsePort,
  parsePositive,
  parseSeed,
} from '../values.ts';
import { UserError, show } from '../errors.ts';
import { parseSchedule } from './schedule.ts';
import { describePreset } from './presets.ts';

// Every option of `charlstm train`, once: its name (the one name from the command line to the
// checkpoint), flag, default (from src/defaults.ts), parser, help text and choices. Two kinds:
// run settings, which define the run (stored in its checkpoint, so that --resume needs nothing
// else; `resumable` ones a --resume may change), and `process` options, which say how this one
// process runs it (threads, kernels, the dashboard; never stored). Derived from it: the commander
// options (src/cli/train-command.ts), TrainRunConfig, the resume overrides and the presets'
// type (src/train/presets.ts). The table's order is the order of `charlstm train --help`.

/** One option. `T`: its value: the parser's result, one of the choices, a string, or a boolean for
 * a flag without a value. */
export interface Setting<T = unknown> {
  flags: string; // commander's spelling: '-e, --epochs <n>', '--no-lowercase', '--dry-run'
  help: string;
  parse?: (text: string) => T; // throws a ValueError (src/values.ts) saying what the value must be
  choices?: readonly T[];
  default?: T;
  /**
   * How --help shows the default: commander's `(default: …)` unless a string is given here, or
   * `false` where the help text already says it (the default then applies after the preset).
   */
  helpDefault?: string | false;
  resumable?: true; // a --resume may change it
  process?: true; // not a run setting: how this process runs, never stored
}

/** A row's value type, read from its declaration. */
type ValueOf<S> = S extends { parse: (text: string) => infer T }
  ? T
  : S extends { choices: readonly (infer C)[] }
    ? C
    : S extends { flags: `${string}<${string}...>` } // repeatable: every value, in order
      ? string[]
      : S extends { flags: `${string}<${string}>` }
        ? string
        : boolean;

// Keeps each row's own type (its value type, whether it has a default) for the derived types,
// and checks its default against its value type.
const setting = <const S extends Setting>(s: S & { default?: ValueOf<S> }): S => s;

function parseUnits(text: string): number {
  const n = parseCount(text);
  if (n % 4 !== 0 || n > 4096) throw new ValueError('units must be a multiple of 4, at most 4096.');
  return n;
}

function parseLayers(text: string): number {
  const n = parseCount(text);
  if (n > 8) throw new ValueError('layers must be an integer from 1 to 8.');
  return n;
}

function parseTemperatures(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) {
    throw new ValueError('Give a comma-separated list of positive numbers, e.g. 0.2,0.5,1.0,1.2.');
  }
  return parts.map((p) => {
    try {
      return parsePositive(p);
    } catch {
      throw new ValueError(`The temperature ${JSON.stringify(p)} is not a positive number.`);
    }
  });
}

/** The presets' names (their values: src/train/presets.ts, which must define exactly these). */
export const PRESET_NAMES = ['default', 'reference', 'ten-minutes'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

function parsePreset(text: string): PresetName {
  if (!(PRESET_NAMES as readonly string[]).includes(text)) {
    const list = PRESET_NAMES.map((n) => `${n} (${describePreset(n)})`).join(', ');
    throw new ValueError(`Presets: ${list}.`);
  }
  return text as PresetName;
}

export const TRAIN_OPTIONS = {
  corpus: setting({
    // variadic: repeated (--corpus a --corpus b), or several after one flag (a shell's glob);
    // a checkpoint from before holds one string, which loadCorpus takes as well
    flags: '-c, --corpus <spec...>',
    help: 'built-in name (nietzsche, moby-dick), text file, folder, glob or http(s) URL; several: repeat the flag or separate them with commas',
    default: [TRAINING.corpus],
    helpDefault: JSON.stringify(TRAINING.corpus),
  }),
  maxCorpusBytes: setting({
    flags: '--max-corpus-bytes <n>', // none: CORPUS.maxBytes, loadCorpus's own bound
    help: `the largest corpus read, file, pipe or download (default ${CORPUS.maxBytes}: ${CORPUS.maxBytes / 2 ** 30} GiB)`,
    parse: integerIn('The corpus size limit', 1, Number.MAX_SAFE_INTEGER),
  }),
  out: setting({
    flags: '-o, --out <dir>',
    help: 'model folder, saved after every epoch (default: models/<corpus name>)',
  }),
  initFrom: setting({
    // not resumable: a resumed run's weights and vocabulary come from its checkpoint
    flags: '--init-from <model>',
    help: 'fine-tune: start from this model (a folder or a built-in name), its architecture and weights; characters of the corpus it never saw extend its vocabulary',
  }),
  epochs: setting({
    flags: '-e, --epochs <n>',
    help: 'epochs to train',
    parse: parseCount,
    default: REFERENCE.epochs,
    resumable: true,
  }),
  batchSize: setting({
    flags: '--batch-size <n>',
    help: 'windows per batch',
    parse: parseCount,
    default: REFERENCE.batchSize,
  }),
  learningRate: setting({
    flags: '--lr <x>',
    help: 'RMSprop learning rate',
    parse: parsePositive,
    default: REFERENCE.learningRate,
  }),
  units: setting({
    flags: '--units <n>',
    help: 'LSTM units (a multiple of 4)',
    parse: parseUnits,
    default: REFERENCE.units,
  }),
  layers: setting({
    flags: '--layers <n>',
    help: 'stacked LSTM layers',
    parse: parseLayers,
    default: TRAINING.layers,
  }),
  dropout: setting({
    flags: '--dropout <rate>',
    help: "dropout on every LSTM layer's output while training (0: none, the reference)",
    parse: parseFraction,
    default: TRAINING.dropout,
  }),
  maxlen: setting({
    flags: '--maxlen <n>',
    help: 'characters in an input window',
    parse: parseCount,
    default: REFERENCE.maxlen,
  }),
  stride: setting({
    flags: '--step <n>', // the notebook's name; the model's metadata keeps it as `step`
    help: 'a new window every <n> characters',
    parse: parseCount,
    default: REFERENCE.stride,
  }),
  seed: setting({
    flags: '--seed <n>', // none: drawn at random and printed
    help: 'seed for initial weights, shuffling and samples (default: random, printed)',
    parse: parseSeed,
  }),
  threads: setting({
    flags: '--threads <n>', // none: min(SHARDS, the machine's cores)
    help: 'worker threads (default: one per core, at most 2)',
    parse: integerIn('threads', 0, 64),
    process: true,
  }),
  temperatures: setting({
    flags: '--temperatures <list>',
    help: 'sampling temperatures after each epoch',
    parse: parseTemperatures,
    default: [...REFERENCE.temperatures],
  }),
  sampleLength: setting({
    flags: '--sample-length <n>',
    help: 'characters generated per temperature after each epoch',
    parse: integerIn('The sample length', 0, 1_000_000),
    default: REFERENCE.sampleLength,
    resumable: true,
  }),
  lowercase: setting({
    flags: '--no-lowercase',
    help: 'keep the corpus as written (the reference lowercases it)',
    default: REFERENCE.lowercase,
    helpDefault: false,
  }),
  maxVocab: setting({
    flags: '--max-vocab <n>', // none: every character of the corpus (src/data/vocabulary.ts)
    help: 'at most n characters in the vocabulary, the unknown symbol "\uFFFD" included: the rarer ones map to it',
    parse: integerIn('The vocabulary size', 2, Number.MAX_SAFE_INTEGER),
  }),
  minCount: setting({
    flags: '--min-count <c>', // none: 1, every character kept
    help: 'characters seen fewer than c times in the corpus map to the unknown symbol "\uFFFD"',
    parse: integerIn('The count', 1, Number.MAX_SAFE_INTEGER),
  }),
  dryRun: setting({
    flags: '--dry-run',
    help: 'print the corpus figures and the model summary, then exit',
    process: true,
  }),
  overwrite: setting({
    flags: '--overwrite',
    help: 'replace a model already in the output folder',
    process: true,
  }),
  valSplit: setting({
    flags: '--val-split <f>',
    help: `hold out the last fraction f of the corpus for validation (default ${DEFAULT_VAL_SPLIT}; 0: none)`,
    parse: parseFraction,
    default: DEFAULT_VAL_SPLIT,
    helpDefault: false,
  }),
  valFull: setting({
    flags: '--val-full', // none: the sample rule of VALIDATION (src/train/evaluate.ts)
    help: `validate on every held-out window (default: a seeded sample of ${VALIDATION.sample.toLocaleString('en-US')}, the same every epoch, when there are more than ${VALIDATION.sampleAbove.toLocaleString('en-US')})`,
    resumable: true,
  }),
  preset: setting({
    flags: '--preset <name>',
    help: 'reference: exactly the notebook (no validation split); ten-minutes: the best recipe for 10 minutes of training',
    parse: parsePreset,
    process: true,
  }),
  earlyStop: setting({
    flags: '--early-stop <n>',
    help: 'stop after n epochs without a better validation loss',
    parse: parseCount,
    resumable: true,
  }),
  checkpointEvery: setting({
    flags: '--checkpoint-every <n>', // checkpoints come at every epoch end too
    help: 'also save a resumable checkpoint every n batches',
    parse: parseCount,
    resumable: true,
  }),
  clip: setting({
    flags: '--clip <norm>',
    help: "clip the gradient's global norm",
    parse: parsePositive,
  }),
  schedule: setting({
    flags: '--lr-schedule <s>', // parseSchedule's error is a UserError: one line, exit code 2
    help: 'constant, cosine, or step[:EPOCHS[:FACTOR]]',
    parse: parseSchedule,
    default: TRAINING.schedule,
    helpDefault: JSON.stringify(TRAINING.schedule.kind),
  }),
  timeBudget: setting({
    flags: '--time-budget <seconds>',
    help: 'stop after this much training time (resumable)',
    parse: parsePositive,
    resumable: true,
  }),
  mode: setting({
    flags: '--mode <mode>',
    help:
      'last: score the character after each window (the reference); sequence: score every position; ' +
      'stateful: every position of --batch-size contiguous streams, the state carried between batches',
    choices: ['last', 'sequence', 'stateful'],
    default: TRAINING.mode,
  }),
  optimizer: setting({
    flags: '--optimizer <name>',
    help: 'rmsprop (the reference) or adam (β 0.9, 0.999)',
    choices: ['rmsprop', 'adam'],
    default: TRAINING.optimizer,
  }),
  engine: setting({
    flags: '--engine <kind>',
    help: 'kernels: wasm, native (AVX2 addon, when built), auto = the fastest available',
    choices: ['auto', 'wasm', 'native'],
    default: TRAINING.engine,
    process: true,
  }),
  // A run setting, stored in the checkpoint: BF16 rounding changes every step's arithmetic, so a
  // --resume continues with the precision the run had (bit for bit where the machine can run it);
  // resumable, so that a run started in bf16 can go on as fp32 on a machine without AVX512-BF16.
  precision: setting({
    flags: '--precision <p>',
    help:
      'training arithmetic: fp32, bf16 (native engine with AVX512-BF16: the matrix products take ' +
      'bfloat16 operands, FP32 accumulation; weights and optimizer stay FP32), auto = bf16 where available',
    choices: ['fp32', 'bf16', 'auto'],
    default: TRAINING.precision,
    resumable: true,
  }),
  dashboard: setting({
    flags: '--dashboard',
    help: 'serve a live view of the run in the browser (loss, speed, samples)',
    process: true,
  }),
  port: setting({
    flags: '--port <n>',
    help: 'the dashboard port (0: any free port)',
    parse: parsePort,
    default: DASHBOARD.port,
    process: true,
  }),
  host: setting({
    flags: '--host <host>',
    help: 'the dashboard address',
    default: DASHBOARD.host,
    process: true,
  }),
  resume: setting({
    flags: '--resume <dir>',
    help: 'continue the run saved in <dir> exactly where it stopped',
    process: true,
  }),
};

type Options = typeof TRAIN_OPTIONS;
type Keys<Where> = { [K in keyof Options]: Options[K] extends Where ? K : never }[keyof Options];
type RunKeys = Exclude<keyof Options, Keys<{ process: true }>>;
type ProcessKeys = Keys<{ process: true }>;
// every option with a default always has a value; the others may be absent
type Values<K extends keyof Options> = {
  [P in K & Keys<{ default: unknown }>]: ValueOf<Options[P]>;
} & { [P in Exclude<K, Keys<{ default: unknown }>>]?: ValueOf<Options[P]> };

/** Everything that defines a run; stored in every checkpoint so that --resume needs nothing else. */
export type TrainRunConfig = Values<RunKeys>;
/** How this process runs it (`charlstm train`'s other options). */
export type TrainProcessOptions = Values<ProcessKeys>;
export type RunSettingName = RunKeys;

export const RUN_SETTINGS = Object.keys(TRAIN_OPTIONS).filter(
  (k) => !(TRAIN_OPTIONS[k as keyof Options] as Setting).process,
) as RunSettingName[];

/** The settings a --resume may change; the rest come from the checkpoint. */
export const RESUMABLE = RUN_SETTINGS.filter((k) => (TRAIN_OPTIONS[k] as Setting).resumable);

/** The run settings out of a larger object (a run's options), in the table's order. */
export function runSettings(from: TrainRunConfig): TrainRunConfig {
  const config: Record<string, unknown> = {};
  for (const key of RUN_SETTINGS) if (from[key] !== undefined) config[key] = from[key];
  return config as TrainRunConfig;
}

/** Keys a checkpoint written before the settings table used for the same settings. */
const OLD_NAMES: Record<string, RunSettingName> = { lr: 'learningRate', step: 'stride' };

/**
 * A checkpoint's stored configuration as a TrainRunConfig: old keys renamed (`lr`, `step`),
 * settings it predates given their defaults, anything else (what older versions stored of the
 * process's options) dropped.
 */
export function storedConfig(stored: Record<string, unknown>): TrainRunConfig & { seed: number } {
  const renamed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(stored)) renamed[OLD_NAMES[key] ?? key] = value;
  const config: Record<string, unknown> = {};
  for (const key of RUN_SETTINGS) {
    const value = renamed[key] ?? (TRAIN_OPTIONS[key] as Setting).default;
    if (value !== undefined) config[key] = value;
  }
  return config as TrainRunConfig & { seed: number };
}

/** What a --resume takes from the command line instead of the checkpoint: the resumable
 * settings given there explicitly. */
export function resumeOverrides(
  given: Partial<TrainRunConfig>,
  explicit: ReadonlySet<string> = new Set(),
): Partial<TrainRunConfig> {
  const overrides: Record<string, unknown> = {};
  for (const key of RESUMABLE) if (explicit.has(key)) overrides[key] = given[key];
  return overrides;
}

/**
 * Run settings given as values rather than command-line text (the web app's form), each checked
 * by its row's parser exactly as its flag would be. A bad one is a UserError naming the setting
 * (`labels` gives the form's words for it) and the value.
 */
export function checkSettings(
  given: Partial<Record<RunSettingName, number | string>>,
  labels: Partial<Record<RunSettingName, string>> = {},
): void {
  for (const [key, value] of Object.entries(given) as [RunSettingName, number | string][]) {
    const parse = (TRAIN_OPTIONS[key] as Setting).parse;
    try {
      parse?.(String(value));
    } catch (err) {
      if (!(err instanceof ValueError)) throw err;
      throw new UserError(`${labels[key] ?? key} ${show(value)} is invalid: ${err.message}`);
    }
  }
}
