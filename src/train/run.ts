import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { saveModel, type ModelMeta } from '../checkpoint/model-format.ts';
import { acquireRunLock } from '../checkpoint/run-lock.ts';
import { loadCheckpoint, saveCheckpoint } from '../checkpoint/train-checkpoint.ts';
import { loadCorpus } from '../corpus/corpus.ts';
import { REFERENCE } from '../defaults.ts';
import { Vocabulary } from '../data/vocabulary.ts';
import { makeWindows, splitWindows } from '../data/windows.ts';
import { resolveEngine } from '../engine/kernels.ts';
import { SHARDS, checkEngineFits } from '../engine/shards.ts';
import type { EngineKind } from '../engine/types.ts';
import { WorkerExitError } from '../engine/worker-engine.ts';
import { UserError } from '../errors.ts';
import { initParameters } from '../model/init.ts';
import { Parameters, layerCount, lstmLayerName, type ModelShape } from '../model/params.ts';
import type { RngState } from '../sampling/rng.ts';
import { progressCallback, samplesCallback } from './callbacks.ts';
import { evaluate, evaluateStateful, everyNth } from './evaluate.ts';
import { seedStreams, trainedModelMeta, type RunDescription } from './run-setup.ts';
import type { Schedule } from './schedule.ts';
import { Trainer, type TrainCallback, type TrainerState, type TrainMode } from './trainer.ts';

// The whole run, as `charlstm train` does it: corpus → vocabulary → windows (training and
// held-out) → fresh or resumed model → training loop with progress, validation, samples,
// saving and checkpoints as callbacks.

/** Everything that defines a run; stored in every checkpoint so that --resume needs nothing else. */
export interface TrainRunConfig {
  corpus: string;
  maxCorpusBytes?: number; // the largest corpus read (default CORPUS.maxBytes in defaults.ts)
  out?: string;
  epochs: number;
  batchSize: number;
  lr: number;
  units: number;
  layers?: number; // stacked LSTM layers (default 1)
  dropout?: number; // dropout rate on every LSTM layer's output (default 0)
  optimizer?: 'rmsprop' | 'adam'; // default rmsprop (the reference)
  maxlen: number;
  step: number;
  seed?: number;
  temperatures: number[];
  sampleLength: number;
  lowercase: boolean;
  valSplit: number; // fraction of the corpus's end held out (0: none, as the reference)
  earlyStop?: number; // epochs without a better validation loss before stopping
  checkpointEvery?: number; // batches between checkpoints (also at every epoch end)
  clip?: number;
  schedule?: Schedule;
  timeBudget?: number; // seconds of training
  mode?: TrainMode; // 'last' (the reference), 'sequence' (score every position) or 'stateful'
}

export interface TrainRunOptions extends TrainRunConfig {
  /** serve a live view of the run (the web app's dashboard) on host:port */
  dashboard?: { port: number; host: string };
  threads?: number;
  engine?: EngineKind | 'auto';
  dryRun?: boolean;
  overwrite?: boolean;
  resume?: string; // a run folder with a checkpoint
  /** extra callbacks (dashboard) */
  callbacks?: TrainCallback[];
  /** options given explicitly on the command line (they override a resumed run's) */
  explicit?: ReadonlySet<string>;
}

interface RunState {
  config: TrainRunConfig & { seed: number };
  corpusSha256: string;
  trainer: TrainerState;
  sampleRng: RngState;
  best: { valLoss: number; epoch: number } | null;
  sinceBest: number;
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

export async function runTrain(opts: TrainRunOptions): Promise<void> {
  let resumed: RunState | undefined;
  let resumedParams: Float32Array | undefined;
  let resumedOptimizerState: Float32Array | undefined;
  let config: TrainRunConfig = opts;
  if (opts.resume) {
    const ckpt = await loadCheckpoint(opts.resume);
    resumed = ckpt.state as unknown as RunState;
    resumedParams = ckpt.params;
    resumedOptimizerState = ckpt.optimizerState;
    // the stored configuration, except what the user overrides now
    const override: Partial<TrainRunConfig> = {};
    for (const key of [
      'epochs',
      'timeBudget',
      'earlyStop',
      'checkpointEvery',
      'sampleLength',
    ] as const) {
      if (opts.explicit?.has(key)) (override as Record<string, unknown>)[key] = opts[key];
    }
    config = { ...resumed.config, ...override, out: opts.resume };
  }

  const corpus = await loadCorpus(config.corpus, {
    lowercase: config.lowercase,
    ...(config.maxCorpusBytes !== undefined && { maxBytes: config.maxCorpusBytes }),
  });
  const corpusSha256 = createHash('sha256').update(corpus.text).digest('hex');
  if (resumed && resumed.corpusSha256 !== corpusSha256) {
    throw new UserError(
      `corpus ${config.corpus} is not the text the checkpoint in ${opts.resume} was trained on`,
    );
  }
  const vocab = Vocabulary.fromText(corpus.text);
  const tokens = vocab.encode(corpus.text);
  if (tokens.length < config.maxlen + 1) {
    throw new UserError(
      `corpus ${corpus.name} has ${tokens.length} characters; training needs at least maxlen + 1 = ${config.maxlen + 1}`,
    );
  }
  const all = makeWindows(tokens, config.maxlen, config.step);
  out(
    `corpus length: ${tokens.length}\nunique characters: ${vocab.size}\nsequences: ${all.count}\n`,
  );
  const { train, val } = splitWindows(tokens, config);
  if (val) {
    out(
      `training windows: ${train.count}, validation windows: ${val.count} (the last ${Math.round(config.valSplit * 100)}% held out)\n` +
        `validation scores ${everyNth(config.step).replace('character', 'held-out character')} (--step), ` +
        `${val.count} of ${val.tokens.length - config.maxlen}, each from the ${config.maxlen} before it; ` +
        `\`charlstm eval\` scores every one\n`,
    );
  }
  const layers = config.layers ?? 1;
  const dropout = config.dropout ?? 0;
  const shape: ModelShape = {
    vocabSize: vocab.size,
    units: config.units,
    ...(layers > 1 && { layers }),
  };
  // a shape that cannot fit the engine's memory is refused now, before the weights are drawn
  checkEngineFits({ shape, maxBatch: config.batchSize, maxT: config.maxlen, threads: 0 });
  if (opts.dryRun) {
    out(`\n${modelSummary(shape, config.maxlen, dropout)}\n`);
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
  if (lock.tookOver) process.stderr.write(`${dir}: ${lock.tookOver}\n`);
  const seed = resumed?.config.seed ?? config.seed ?? Math.floor(Math.random() * 2 ** 31);
  const runConfig = { ...config, out: dir, seed };
  out(
    resumed
      ? `resuming ${dir} at epoch ${resumed.trainer.epoch + 1}, batch ${resumed.trainer.step + 1} (seed ${seed})\n`
      : `seed: ${seed}\n`,
  );
  const { init: initRng, shuffle: shuffleRng, sample: sampleRng, dropoutSeed } = seedStreams(seed);
  const params = resumedParams
    ? new Parameters(shape, resumedParams)
    : initParameters(shape, initRng);
  const threads =
    opts.threads ?? Math.min(SHARDS, (await import('node:os')).availableParallelism());
  const engine = await resolveEngine(opts.engine ?? 'auto');
  out(
    `engine: ${engine === 'native' ? 'native (AVX2/FMA)' : 'WebAssembly SIMD'}, ${threads} thread${threads === 1 ? '' : 's'}\n`,
  );
  let best = resumed?.best ?? null;
  let sinceBest = resumed?.sinceBest ?? 0;

  const description: RunDescription = {
    corpus: corpus.name,
    source: corpus.source,
    vocab,
    lowercase: config.lowercase,
    maxlen: config.maxlen,
    stride: config.step,
    units: config.units,
    layers,
    batchSize: config.batchSize,
    optimizer: config.optimizer ?? 'rmsprop',
    learningRate: config.lr,
    seed,
    valSplit: config.valSplit,
    mode: config.mode ?? 'last',
    dropout,
  };
  const meta = (): Omit<ModelMeta, 'formatVersion' | 'weightsSha256'> =>
    trainedModelMeta(description, trainer);
  // Every save after training steps goes through here first (the checkpoint is written before
  // model.json), so this is where weights that are no longer finite are refused, not saved.
  const checkpoint = async (): Promise<void> => {
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
      best,
      sinceBest,
    };
    await saveCheckpoint(dir, {
      state: state as unknown as Record<string, unknown>,
      params: params.flat,
      optimizerState: trainer.optimizer.state,
    });
  };
  // the checkpoint first, then model.json: every state a kill can leave on disk is resumable
  const saveResumable = async (): Promise<void> => {
    await checkpoint();
    await saveModel(dir, params, meta());
  };

  const callbacks: TrainCallback[] = [];
  if (val) {
    callbacks.push({
      async onEpochEnd(ev) {
        const e = await evaluate(params, val);
        ev.valLoss = e.loss;
        ev.valBpc = e.bpc;
        ev.valPerplexity = e.perplexity;
        if (config.mode === 'stateful') {
          // the held-out text itself (from the cut), read as carried streams
          ev.valStatefulLoss = (
            await evaluateStateful(params, val.tokens.subarray(config.maxlen))
          ).loss;
        }
      },
    });
  }
  callbacks.push(progressCallback(process.stderr));
  // After an epoch, in this order, so that every state on disk is resumable: validation, the
  // best model (best/), samples, the checkpoint, and only then the last model (model.json), so a
  // kill between any two of them leaves a checkpoint at least as new as model.json.
  callbacks.push({
    async onEpochEnd(ev, t) {
      if (ev.valLoss !== undefined) {
        if (!best || ev.valLoss < best.valLoss) {
          best = { valLoss: ev.valLoss, epoch: ev.epoch };
          sinceBest = 0;
          await saveModel(path.join(dir, 'best'), params, meta());
        } else {
          sinceBest++;
          if (config.earlyStop !== undefined && sinceBest >= config.earlyStop) {
            process.stderr.write(
              `early stop: no better validation loss for ${sinceBest} epochs (best ${best.valLoss.toFixed(4)} at epoch ${best.epoch})\n`,
            );
            t.requestStop();
          }
        }
      }
    },
  });
  let dashboard: import('../server/dashboard.ts').Dashboard | undefined;
  if (opts.dashboard) {
    const { startDashboard } = await import('../server/dashboard.ts');
    dashboard = await startDashboard(opts.dashboard);
    process.stderr.write(`dashboard: ${dashboard.url}\n`);
    callbacks.push(dashboard.callback); // after validation, which fills in the epoch's valLoss
  }
  callbacks.push(
    samplesCallback({
      tokens,
      vocab,
      meta: () => ({ ...meta(), formatVersion: 1 }),
      temperatures: config.temperatures,
      length: config.sampleLength,
      rng: sampleRng,
      write: out,
      ...(dashboard && { onSamples: dashboard.recordSamples }),
    }),
  );
  callbacks.push({
    async onBatchEnd(ev) {
      if (config.checkpointEvery && ev.step % config.checkpointEvery === 0 && ev.step < ev.steps)
        await checkpoint();
    },
    async onEpochEnd() {
      await saveResumable(); // the checkpoint, then the last epoch's model
    },
    onDivergence(ev) {
      process.stderr.write(
        `loss became ${ev.loss} at epoch ${ev.epoch}, batch ${ev.step}: rolled back to the last good weights; learning rate now ×${ev.learningRateScale}\n`,
      );
    },
    async onTrainEnd(_history, t, stopped) {
      if (stopped && t.step > 0) {
        // stopped mid-epoch (Ctrl-C, time budget): keep the work, resumable
        if (val && interrupts === 0) {
          // the time budget ended the run: validate the model it ends with (a cosine schedule's
          // best), and keep it as the best when it is
          const e = await evaluate(params, val);
          process.stderr.write(
            `stopped in epoch ${t.epoch + 1}: val_loss ${e.loss.toFixed(4)} (${e.bpc.toFixed(3)} bits/char, perplexity ${e.perplexity.toFixed(2)})\n`,
          );
          if (!best || e.loss < best.valLoss) {
            best = { valLoss: e.loss, epoch: t.epoch + 1 };
            await saveModel(path.join(dir, 'best'), params, meta());
          }
        }
        await saveResumable();
      }
    },
  });
  callbacks.push(...(opts.callbacks ?? []));

  const trainer: Trainer = new Trainer({
    params,
    windows: train,
    shuffleRng,
    config: {
      batchSize: config.batchSize,
      epochs: config.epochs,
      learningRate: config.lr,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads,
      engine,
      ...(config.clip !== undefined && { clip: config.clip }),
      ...(config.schedule !== undefined && { schedule: config.schedule }),
      ...(config.timeBudget !== undefined && { timeBudget: config.timeBudget }),
      mode: config.mode ?? 'last',
      dropout,
      dropoutSeed,
      optimizer: config.optimizer ?? 'rmsprop',
    },
    callbacks,
  });
  if (resumed && resumedOptimizerState) {
    trainer.setState(resumed.trainer);
    if (resumedOptimizerState.length !== trainer.optimizer.state.length) {
      throw new UserError(`the checkpoint in ${opts.resume} holds optimizer state of another size`);
    }
    trainer.optimizer.state.set(resumedOptimizerState);
    sampleRng.setState(resumed.sampleRng);
  }

  // Ctrl-C, or SIGTERM (kill, systemd, Docker, CI): finish the batch in flight, save a checkpoint
  // and the model, exit with 128 + the signal's number. A second signal quits at once.
  let interrupts = 0;
  let signalExit = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts++;
    signalExit ||= signal === 'SIGTERM' ? 143 : 130;
    if (interrupts > 1) process.exit(signalExit);
    const again = signal === 'SIGINT' ? 'Ctrl-C' : 'a second signal';
    process.stderr.write(
      `\n${signal === 'SIGINT' ? '' : `${signal}: `}stopping after this batch and saving (${again} to quit at once; the last checkpoint is kept)\n`,
    );
    trainer.requestStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await trainer.fit();
  } catch (err) {
    // a worker thread that died (killed for memory, say) took only the batch in flight with it:
    // keep everything before that batch, resumable, and say so
    if (err instanceof WorkerExitError && (trainer.epoch > 0 || trainer.step > 0)) {
      await saveResumable();
      throw new UserError(
        `${err.message}; the work before that batch is saved: resume with charlstm train --resume ${dir}`,
        1,
      );
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await dashboard?.close();
    lock.release();
  }
  const where =
    trainer.step > 0
      ? `epoch ${trainer.epoch + 1}, batch ${trainer.step}`
      : `${trainer.epoch} epoch${trainer.epoch === 1 ? '' : 's'}`;
  if (trainer.epoch > 0 || trainer.step > 0) out(`model saved to ${dir} (${where})\n`);
  else out('stopped before the first batch: nothing saved\n');
  if (best)
    out(
      `best validation loss ${best.valLoss.toFixed(4)} (${(best.valLoss / Math.LN2).toFixed(3)} bits/char) at epoch ${best.epoch}, saved to ${path.join(dir, 'best')}\n`,
    );
  if (
    trainer.epoch < config.epochs &&
    !(config.earlyStop !== undefined && sinceBest >= config.earlyStop)
  ) {
    const budgetEnded =
      config.timeBudget !== undefined &&
      interrupts === 0 &&
      trainer.trainSeconds >= config.timeBudget;
    out(
      budgetEnded
        ? `resume with: charlstm train --resume ${dir} --time-budget SECONDS (more than the ${config.timeBudget} s spent: the budget counts the whole run)\n`
        : `resume with: charlstm train --resume ${dir}\n`,
    );
  }
  if (interrupts > 0) process.exitCode = signalExit;
}
