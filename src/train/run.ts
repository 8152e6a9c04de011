import { existsSync } from 'node:fs';
import path from 'node:path';
import { builtinModelDir, isBuiltinModel, resolveModel } from '../checkpoint/builtin-models.ts';
import { loadModel, saveModel } from '../checkpoint/model-format.ts';
import { acquireRunLock } from '../checkpoint/run-lock.ts';
import { loadCheckpoint, saveCheckpoint } from '../checkpoint/train-checkpoint.ts';
import { BUILTIN_CORPORA, inputListing } from '../corpus/corpus.ts';
import { prepareCorpus } from '../corpus/prepare.ts';
import { encodedTokens, openTokens } from '../corpus/token-source.ts';
import { REFERENCE, VALIDATION } from '../defaults.ts';
import { Vocabulary, describeLimits, extendVocabulary } from '../data/vocabulary.ts';
import { makeWindows, splitWindows } from '../data/windows.ts';
import { engineLabel, resolveEngine, resolvePrecision } from '../engine/kernels.ts';
import { SHARDS, checkEngineFits } from '../engine/shards.ts';
import { WorkerExitError } from '../engine/worker-engine.ts';
import { UserError } from '../errors.ts';
import { extendParameters } from '../model/extend.ts';
import { initParameters } from '../model/init.ts';
import { Parameters, layerCount, lstmLayerName, type ModelShape } from '../model/params.ts';
import type { RngState } from '../sampling/rng.ts';
import {
  bestModelCallback,
  checkpointCallback,
  divergenceCallback,
  progressCallback,
  samplesCallback,
  stopMidEpochCallback,
  validationCallback,
  type RunContext,
} from './callbacks.ts';
import {
  everyNth,
  sampleRule,
  sampleStandardError,
  samplesValidation,
  validationWindows,
} from './evaluate.ts';
import {
  checkTextLength,
  seedStreams,
  trainedModelMeta,
  type RunDescription,
} from './run-setup.ts';
import {
  resumeOverrides,
  runSettings,
  storedConfig,
  type TrainProcessOptions,
  type TrainRunConfig,
} from './settings.ts';
import { Trainer, type TrainCallback, type TrainerState } from './trainer.ts';

// The whole run, as `charlstm train` does it: corpus → vocabulary → windows (training and
// held-out) → fresh or resumed model → the trainer → its callbacks (src/train/callbacks.ts):
// progress, validation, the best model, samples, checkpoints, the end of a run cut short.

export type { TrainRunConfig } from './settings.ts';

export interface TrainRunOptions
  extends TrainRunConfig, Omit<TrainProcessOptions, 'dashboard' | 'port' | 'host' | 'preset'> {
  /** serve a live view of the run (the web app's dashboard) on host:port */
  dashboard?: { port: number; host: string };
  /** extra callbacks (dashboard) */
  callbacks?: TrainCallback[];
  /** settings given explicitly on the command line (the resumable ones override a resumed run's) */
  explicit?: ReadonlySet<string>;
  /** the command line that started this process, recorded in the saved model ("charlstm train …") */
  command?: string;
}

/** A checkpoint's JSON state. */
interface RunState {
  config: TrainRunConfig & { seed: number };
  corpusSha256: string;
  trainer: TrainerState;
  sampleRng: RngState;
  best: { valLoss: number; epoch: number } | null;
  sinceBest: number;
  /** A fine-tuned run's vocabulary (the model's, extended by the corpus); others: the corpus's. */
  vocab?: { chars: string[]; unknown?: string };
}

/** A run's vocabulary when it is not the corpus's own: a model's to extend (`extend`: the
 * model's name, for errors), or a resumed fine-tuned run's, as its checkpoint holds it. */
interface StartVocabulary {
  vocab: Vocabulary;
  extend?: string;
}

export function modelSummary(shape: ModelShape, maxlen: number, dropout = 0): string {
  const { vocabSize: V, units: H } = shape;
  const L = layerCount(shape);
  const rows = [['Layer (type)', 'Output shape', 'Param #']];
  for (let l = 0; l < L; l++) {
    const D = l === 0 ? V : H;
    const input = l === 0 ? `, input (None, ${maxlen}, ${V})` : '';
    const output = l < L - 1 ? `(None, ${maxlen}, ${H})` : `(None, ${H})`;
    rows.push([
      `${lstmLayerName(l)} (LSTM${input})`,
      output,
      (4 * (D * H + H * H + H)).toLocaleString('en-US'),
    ]);
    if (dropout > 0)
      rows.push([`${l === 0 ? 'dropout' : `dropout_${l}`} (Dropout ${dropout})`, output, '0']);
  }
  rows.push(['dense (Dense, softmax)', `(None, ${V})`, (H * V + V).toLocaleString('en-US')]);
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(w[i]!))
      .join('   ')
      .trimEnd();
  const rule = '-'.repeat(line(rows[0]!).length);
  return [
    line(rows[0]!),
    rule,
    ...rows.slice(1).map(line),
    rule,
    `Total params: ${Parameters.size(shape).toLocaleString('en-US')}`,
  ].join('\n');
}

const out = (s: string): void => {
  process.stdout.write(s);
};
const log = (s: string): void => {
  process.stderr.write(s);
};

/**
 * The corpus → vocabulary → windows part of a run: the ids from the prepared token file, the
 * training and held-out windows, and whether validation samples them; prints the corpus lines.
 */
async function readRunCorpus(
  config: TrainRunConfig,
  resumed: { corpusSha256: string; from: string } | undefined,
  start?: StartVocabulary,
) {
  // a fine-tuned run's limits apply to its new characters only (extendVocabulary): the corpus is
  // prepared whole, then encoded in the extended vocabulary
  const limits = {
    ...(config.maxVocab !== undefined && { maxVocab: config.maxVocab }),
    ...(config.minCount !== undefined && { minCount: config.minCount }),
  };
  // read as a stream into a file of ids (src/corpus/prepare.ts), from the cache when prepared before
  const corpus = await prepareCorpus(config.corpus, {
    lowercase: config.lowercase,
    ...(config.maxCorpusBytes !== undefined && { maxBytes: config.maxCorpusBytes }),
    ...(!start && limits),
  });
  const corpusSha256 = corpus.textSha256; // the text's, as before there was a token file
  if (resumed && resumed.corpusSha256 !== corpusSha256) {
    throw new UserError(
      `corpus ${[config.corpus].flat().join(', ')} is not the text the checkpoint in ${resumed.from} was trained on${corpus.inputs.length > 1 ? ' (an input changed, or a folder or glob finds other files)' : ''}`,
    );
  }
  out(inputListing(corpus)); // several inputs: each with its size
  // --max-vocab / --min-count: the rarer characters are all encoded as one unknown symbol
  const limited = config.maxVocab !== undefined || config.minCount !== undefined;
  const counts = limited && !start ? corpus.counts : undefined;
  const { vocab, added } = !start
    ? { vocab: corpus.vocab, added: [] }
    : start.extend !== undefined
      ? extendVocabulary(start.vocab, corpus.counts, limits, start.extend)
      : { vocab: start.vocab, added: [] }; // resumed: the vocabulary its checkpoint holds
  // in memory when small (1 byte a character up to 256 of them), else read from the token file;
  // a fine-tuned or resumed run reads the corpus's ids mapped to its own vocabulary
  const tokens = start
    ? encodedTokens(corpus, vocab, `corpus ${corpus.name}`, 'map')
    : openTokens(corpus.tokens);
  checkTextLength(`corpus ${corpus.name}`, tokens.length, config.maxlen);
  const all = makeWindows(tokens, config.maxlen, config.stride);
  out(
    `corpus length: ${tokens.length}\nunique characters: ${counts ? counts.distinct : corpus.vocab.size}\nsequences: ${all.count}\n`,
  );
  if (counts) out(`vocabulary: ${vocab.size} (${describeLimits(counts, vocab)})\n`);
  const { train, val } = splitWindows(tokens, config);
  if (val) {
    out(
      `training windows: ${train.count}, validation windows: ${val.count} (the last ${Math.round(config.valSplit * 100)}% held out)\n` +
        `validation scores ${everyNth(config.stride).replace('character', 'held-out character')} (--step), ` +
        `${val.count} of ${val.tokens.length - config.maxlen}, each from the ${config.maxlen} before it; ` +
        `\`charlstm eval\` scores every one\n`,
    );
  }
  // beyond VALIDATION.sampleAbove held-out windows, a fixed seeded sample of them (built below,
  // once the seed is known); CHARLSTM_VAL_SAMPLE is a test-only knob (sampleRule)
  const sampleRules = sampleRule(process.env.CHARLSTM_VAL_SAMPLE);
  const sampled = val !== undefined && samplesValidation(val.count, sampleRules, config.valFull);
  if (val && sampled) {
    const se = sampleStandardError(sampleRules.sample, val.count, VALIDATION.lossSpread);
    out(
      `validation scores a seeded sample of ${sampleRules.sample.toLocaleString('en-US')} of ${val.count.toLocaleString('en-US')} held-out windows (±${se.toFixed(3)} nats), ` +
        `the same ones every epoch, and the best model (best/) is chosen on it; --val-full scores all of them\n`,
    );
  }
  // the corpus's characters the run's vocabulary lacks (fine-tuning's limits): the unknown symbol
  const dropped = start ? corpus.vocab.chars.filter((c) => !vocab.has(c)) : [];
  return { corpus, corpusSha256, vocab, added, dropped, tokens, train, val, sampled, sampleRules };
}

export async function runTrain(opts: TrainRunOptions): Promise<void> {
  if (opts.resume !== undefined && opts.initFrom !== undefined) {
    throw new UserError(
      `--init-from ${opts.initFrom} cannot be combined with --resume ${opts.resume}: a resumed run's weights come from its checkpoint`,
    );
  }
  const ckpt = opts.resume ? await loadCheckpoint(opts.resume) : undefined;
  const resumed = ckpt && (ckpt.state as unknown as RunState);
  // fine-tuning: the model's weights, vocabulary and architecture (which win over the defaults)
  const base = opts.initFrom !== undefined ? await startingModel(opts) : undefined;
  // resumed: the stored settings (old names mapped), except the resumable ones given now
  const config: TrainRunConfig = resumed
    ? {
        ...storedConfig(resumed.config as unknown as Record<string, unknown>),
        ...resumeOverrides(opts, opts.explicit),
        out: opts.resume!,
      }
    : { ...runSettings(opts), ...base?.settings };

  const start: StartVocabulary | undefined = base
    ? { vocab: base.vocab, extend: base.name }
    : resumed?.vocab && { vocab: new Vocabulary(resumed.vocab.chars, resumed.vocab.unknown) };
  const { corpus, corpusSha256, vocab, added, dropped, tokens, train, val, sampled, sampleRules } =
    await readRunCorpus(
      config,
      resumed && { corpusSha256: resumed.corpusSha256, from: opts.resume! },
      start,
    );
  if (base) out(`${startingLine(base, vocab, added, dropped.length)}\n`);
  const shape: ModelShape = {
    vocabSize: vocab.size,
    units: config.units,
    ...(config.layers > 1 && { layers: config.layers }),
  };
  // a shape that cannot fit the engine's memory is refused now, before the weights are drawn
  checkEngineFits({ shape, maxBatch: config.batchSize, maxT: config.maxlen, threads: 0 });
  if (opts.dryRun) {
    out(`\n${modelSummary(shape, config.maxlen, config.dropout)}\n`);
    return;
  }

  const dir = config.out ?? path.join('models', corpus.name);
  if (!resumed && existsSync(path.join(dir, 'model.json')) && !opts.overwrite) {
    throw new UserError(
      `${dir} already holds a model; choose another --out folder, --resume ${dir} to continue it, or --overwrite to replace it`,
    );
  }
  // from here to the exit the folder is this run's: a second run with the same --out is refused
  const lock = acquireRunLock(dir);
  if (lock.tookOver) log(`${dir}: ${lock.tookOver}\n`);
  const seed = resumed?.config.seed ?? config.seed ?? Math.floor(Math.random() * 2 ** 31);
  const runConfig = { ...runSettings(config), out: dir, seed };
  out(
    resumed
      ? `resuming ${dir} at epoch ${resumed.trainer.epoch + 1}, batch ${resumed.trainer.step + 1} (seed ${seed})\n`
      : `seed: ${seed}\n`,
  );
  const { init: initRng, shuffle: shuffleRng, sample: sampleRng, dropoutSeed } = seedStreams(seed);
  const params = ckpt
    ? new Parameters(shape, ckpt.params)
    : base
      ? extendParameters(base.params, added.length, initRng) // src/model/extend.ts: which draws
      : initParameters(shape, initRng);
  const threads =
    opts.threads ?? Math.min(SHARDS, (await import('node:os')).availableParallelism());
  const engine = await resolveEngine(opts.engine ?? 'auto');
  const precision = await resolvePrecision(config.precision, engine);
  out(
    `engine: ${await engineLabel(engine)}, ${threads} thread${threads === 1 ? '' : 's'}, ` +
      `precision ${precision === 'bf16' ? 'bf16 (AVX512-BF16 products, FP32 accumulation)' : 'fp32'}\n`,
  );

  const callbacks: TrainCallback[] = []; // filled below, once the trainer they refer to exists
  const trainer = new Trainer({
    params,
    windows: train,
    shuffleRng,
    config: {
      batchSize: config.batchSize,
      epochs: config.epochs,
      learningRate: config.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads,
      engine,
      precision,
      ...(config.clip !== undefined && { clip: config.clip }),
      schedule: config.schedule,
      ...(config.timeBudget !== undefined && { timeBudget: config.timeBudget }),
      mode: config.mode,
      dropout: config.dropout,
      dropoutSeed,
      optimizer: config.optimizer,
    },
    callbacks,
  });
  if (resumed && ckpt) {
    trainer.setState(resumed.trainer);
    if (ckpt.optimizerState.length !== trainer.optimizer.state.length) {
      throw new UserError(`the checkpoint in ${opts.resume} holds optimizer state of another size`);
    }
    trainer.optimizer.state.set(ckpt.optimizerState);
    sampleRng.setState(resumed.sampleRng);
  }

  const description: RunDescription = {
    corpus: corpus.name,
    // a built-in corpus is known by its name; where this machine keeps it is nobody's business
    ...(!(typeof config.corpus === 'string' ? [config.corpus] : config.corpus).every(
      (spec) => spec in BUILTIN_CORPORA,
    ) && { source: corpus.source }),
    ...(opts.command !== undefined && { command: opts.command }),
    ...(config.initFrom !== undefined && { initFrom: config.initFrom }),
    vocab,
    lowercase: config.lowercase,
    maxlen: config.maxlen,
    stride: config.stride,
    units: config.units,
    layers: config.layers,
    batchSize: config.batchSize,
    optimizer: config.optimizer,
    learningRate: config.learningRate,
    seed,
    valSplit: config.valSplit,
    mode: config.mode,
    dropout: config.dropout,
    precision,
  };
  const run: RunContext = {
    dir,
    params,
    trainer,
    meta: () => trainedModelMeta(description, trainer),
    // Every save after training steps goes through here first (the checkpoint is written before
    // model.json), so this is where weights that are no longer finite are refused, not saved.
    async checkpoint() {
      if (!params.flat.every(Number.isFinite)) {
        throw new UserError(
          `the weights are no longer finite (epoch ${trainer.epoch + (trainer.step > 0 ? 1 : 0)}, batch ${trainer.step}); nothing was saved over the last good model and checkpoint in ${dir}; try a lower --lr or --clip`,
        );
      }
      const state: RunState = {
        config: runConfig,
        corpusSha256,
        trainer: trainer.getState(),
        sampleRng: sampleRng.getState(),
        best: run.best,
        sinceBest: run.sinceBest,
        // a fine-tuned run's vocabulary is the model's extended: --resume encodes the corpus in it
        ...(config.initFrom !== undefined && {
          vocab: {
            chars: [...vocab.chars],
            ...(vocab.unknownSymbol !== undefined && { unknown: vocab.unknownSymbol }),
          },
        }),
      };
      await saveCheckpoint(dir, {
        state: state as unknown as Record<string, unknown>,
        params: params.flat,
        optimizerState: trainer.optimizer.state,
      });
    },
    async saveResumable() {
      await run.checkpoint();
      await saveModel(dir, params, run.meta());
    },
    best: resumed?.best ?? null,
    sinceBest: resumed?.sinceBest ?? 0,
    log,
  };

  let dashboard: import('../server/dashboard.ts').Dashboard | undefined;
  if (opts.dashboard) {
    const { startDashboard } = await import('../server/dashboard.ts');
    dashboard = await startDashboard(opts.dashboard);
    log(`dashboard: ${dashboard.url}\n`);
  }
  // After an epoch, in this order, so that every state on disk is resumable: validation, the
  // best model (best/), samples, the checkpoint, and only then the last model (model.json), so a
  // kill between any two of them leaves a checkpoint at least as new as model.json.
  // the windows validation scores: all of val, or the run's sample (the same for every epoch and
  // every resume: it depends on the seed alone)
  const scored =
    val && validationWindows(val, { seed, full: config.valFull === true, rule: sampleRules });
  if (scored) {
    const statefulFrom = config.mode === 'stateful' ? config.maxlen : undefined; // from the cut
    callbacks.push(validationCallback(params, scored, statefulFrom));
  }
  // an epoch's val_loss from the sample says so (validationWindows lists a sample's starts)
  const valSample = scored?.starts ? scored.count : undefined;
  callbacks.push(
    progressCallback(process.stderr, { ...(valSample !== undefined && { valSample }) }),
    bestModelCallback(run, config.earlyStop),
  );
  if (dashboard) callbacks.push(dashboard.callback); // after validation, which fills in valLoss
  callbacks.push(
    samplesCallback({
      tokens,
      trainTokens: train.tokens, // the report counts copies of the training text, not held-out text
      vocab,
      meta: () => ({ ...run.meta(), formatVersion: 1 }),
      temperatures: config.temperatures,
      length: config.sampleLength,
      rng: sampleRng,
      write: out,
      ...(dashboard && { onSamples: dashboard.recordSamples }),
    }),
    checkpointCallback(run, config.checkpointEvery),
    divergenceCallback(log),
    stopMidEpochCallback(run, scored),
    ...(opts.callbacks ?? []),
  );

  const signals = stopOnSignals(trainer);
  try {
    await trainer.fit();
  } catch (err) {
    // a worker thread that died (killed for memory, say) took only the batch in flight with it:
    // keep everything before that batch, resumable, and say so
    if (err instanceof WorkerExitError && (trainer.epoch > 0 || trainer.step > 0)) {
      await run.saveResumable();
      throw new UserError(
        `${err.message}; the work before that batch is saved: resume with charlstm train --resume ${dir}`,
        1,
      );
    }
    throw err;
  } finally {
    signals.dispose();
    await dashboard?.close();
    lock.release();
  }
  printRunEnd(trainer, run, config, sampled);
  if (signals.exitCode) process.exitCode = signals.exitCode;
}

/**
 * Ctrl-C, or SIGTERM (kill, systemd, Docker, CI): the trainer finishes the batch in flight and the
 * run saves a checkpoint and the model; `exitCode` is then 128 + the signal's number. A second
 * signal quits at once.
 */
function stopOnSignals(trainer: Trainer): { readonly exitCode: number; dispose(): void } {
  let interrupts = 0;
  let exitCode = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts++;
    exitCode ||= signal === 'SIGTERM' ? 143 : 130;
    if (interrupts > 1) process.exit(exitCode);
    const again = signal === 'SIGINT' ? 'Ctrl-C' : 'a second signal';
    log(
      `\n${signal === 'SIGINT' ? '' : `${signal}: `}stopping after this batch and saving (${again} to quit at once; the last checkpoint is kept)\n`,
    );
    trainer.requestStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    get exitCode() {
      return exitCode;
    },
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** The run's last lines: what was saved where, the best model, and how to go on. */
function printRunEnd(
  trainer: Trainer,
  run: RunContext,
  config: TrainRunConfig,
  sampled: boolean,
): void {
  const { dir, best, sinceBest } = run;
  const where =
    trainer.step > 0
      ? `epoch ${trainer.epoch + 1}, batch ${trainer.step}`
      : `${trainer.epoch} epoch${trainer.epoch === 1 ? '' : 's'}`;
  if (trainer.epoch > 0 || trainer.step > 0) out(`model saved to ${dir} (${where})\n`);
  else out('stopped before the first batch: nothing saved\n');
  if (best)
    out(
      `best validation loss ${best.valLoss.toFixed(4)} (${(best.valLoss / Math.LN2).toFixed(3)} bits/char${sampled ? ', on the sample' : ''}) at epoch ${best.epoch}, saved to ${path.join(dir, 'best')}\n`,
    );
  if (
    trainer.epoch < config.epochs &&
    !(config.earlyStop !== undefined && sinceBest >= config.earlyStop)
  ) {
    out(
      trainer.stopReason === 'budget'
        ? `resume with: charlstm train --resume ${dir} --time-budget SECONDS (more than the ${config.timeBudget} s spent: the budget counts the whole run)\n`
        : `resume with: charlstm train --resume ${dir}\n`,
    );
  }
}

/** The model a fine-tuned run starts from (`--init-from`), and the settings it fixes. */
interface StartingModel {
  name: string; // as the user gave it
  params: Parameters;
  vocab: Vocabulary;
  settings: Pick<TrainRunConfig, 'units' | 'layers' | 'maxlen' | 'lowercase' | 'initFrom'>;
}

/**
 * Load `--init-from` (a folder or a built-in name: resolveModel's rule). Its units, layers,
 * maxlen and lowercasing are the run's: one given explicitly with another value is refused,
 * naming both. The run records a built-in model by its name, a folder by its absolute path.
 */
async function startingModel(opts: TrainRunOptions): Promise<StartingModel> {
  const name = opts.initFrom!;
  const dir = await resolveModel(name);
  const { params, meta } = await loadModel(dir);
  const layers = meta.layers ?? 1;
  const explicit = opts.explicit ?? new Set<string>();
  const fixed: [key: 'units' | 'layers' | 'maxlen', model: number, given: number][] = [
    ['units', meta.units, opts.units],
    ['layers', layers, opts.layers],
    ['maxlen', meta.maxlen, opts.maxlen],
  ];
  for (const [key, model, given] of fixed) {
    if (explicit.has(key) && given !== model) {
      throw new UserError(
        `--${key} ${given} conflicts with --init-from ${name}, whose ${key} is ${model}: a fine-tuned model keeps its architecture (leave --${key} out)`,
      );
    }
  }
  if (explicit.has('lowercase') && opts.lowercase !== meta.lowercase) {
    throw new UserError(
      `--no-lowercase conflicts with --init-from ${name}, which was trained on lowercased text (leave --no-lowercase out)`,
    );
  }
  const builtin = isBuiltinModel(name) && path.resolve(dir) === path.resolve(builtinModelDir(name));
  return {
    name,
    params,
    vocab: new Vocabulary(meta.vocab, meta.unknown),
    settings: {
      units: meta.units,
      layers,
      maxlen: meta.maxlen,
      lowercase: meta.lowercase,
      initFrom: builtin ? name : path.resolve(dir),
    },
  };
}

/**
 * "starting from moby-dick (2 × LSTM(256), 57 characters; 3 new characters: "é", "ü", "—")", and
 * with limits "; 4 rarer ones map to the unknown symbol "�" (new)".
 */
function startingLine(
  base: StartingModel,
  vocab: Vocabulary,
  added: readonly string[],
  dropped: number,
): string {
  const { units, layers } = base.settings;
  const symbol = vocab.unknownSymbol;
  const newSymbol = symbol !== undefined && !base.vocab.has(symbol);
  const chars = added.filter((c) => !(newSymbol && c === symbol));
  const shown = chars
    .slice(0, 20)
    .map((c) => JSON.stringify(c))
    .join(', ');
  const more = chars.length > 20 ? ` and ${chars.length - 20} more` : '';
  const news =
    chars.length === 0
      ? 'no new characters'
      : `${chars.length} new character${chars.length === 1 ? '' : 's'}: ${shown}${more}`;
  const mapped =
    dropped > 0
      ? `; ${dropped} rarer one${dropped === 1 ? '' : 's'} map${dropped === 1 ? 's' : ''} to the unknown symbol ${JSON.stringify(symbol)}${newSymbol ? ' (new)' : ''}`
      : '';
  return `starting from ${base.name} (${layers} × LSTM(${units}), ${base.vocab.size} characters; ${news}${mapped})`;
}
