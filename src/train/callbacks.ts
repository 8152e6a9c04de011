import cliProgress from 'cli-progress';
import path from 'node:path';
import { saveModel, type ModelMeta } from '../checkpoint/model-format.ts';
import type { Vocabulary } from '../data/vocabulary.ts';
import type { TokenSource, Windows } from '../data/windows.ts';
import { kernelModule } from '../engine/kernels.ts';
import { MemorisationIndex, type TokenText } from '../generate/memorisation.ts';
import { generateWindow } from '../generate/window.ts';
import { CharModel } from '../model/char-model.ts';
import type { Parameters } from '../model/params.ts';
import type { Rng } from '../sampling/rng.ts';
import { Sampler } from '../sampling/sampler.ts';
import { evaluate, evaluateStateful } from './evaluate.ts';
import type { BatchEndEvent, EpochEndEvent, TrainCallback, Trainer } from './trainer.ts';

// What happens around the training loop: a progress bar, validation, the best model and early
// stop, checkpoints, the end of a run cut short, the reference's after-epoch samples. Each is a
// TrainCallback built by a small factory; runTrain (src/train/run.ts) builds them after the
// trainer, in the order they must run, from a RunContext they share.

/** What the callbacks of one `charlstm train` run share. */
export interface RunContext {
  dir: string; // the run's folder: model.json, best/, the checkpoint
  params: Parameters;
  trainer: Trainer;
  /** the saved model's metadata as of the trainer's progress now */
  meta: () => Omit<ModelMeta, 'formatVersion' | 'weightsSha256'>;
  /** the checkpoint alone (it refuses weights that are no longer finite) */
  checkpoint: () => Promise<void>;
  /** the checkpoint, then model.json: every state a kill can leave on disk is resumable */
  saveResumable: () => Promise<void>;
  /** the best validation loss so far and the epochs since (stored in the checkpoint) */
  best: { valLoss: number; epoch: number } | null;
  sinceBest: number;
  log: (text: string) => void; // messages beside the progress (stderr)
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(r).padStart(2, '0')}s`
      : `${r}s`;
}

/**
 * A progress bar on a terminal (step, loss, sequences/s, ETA); where the output is not a terminal
 * (logs, CI) one plain line every `logEverySeconds` instead.
 */
export function progressCallback(
  stream: NodeJS.WriteStream = process.stderr,
  opts: {
    logEverySeconds?: number;
    /** the windows validation scores when they are a sample of the held-out ones */
    valSample?: number;
  } = {},
): TrainCallback {
  const { logEverySeconds = 10, valSample } = opts;
  let bar: cliProgress.SingleBar | undefined;
  let lastLog = 0;
  const tty = Boolean(stream.isTTY);
  const fields = (ev: BatchEndEvent): Record<string, string> => ({
    loss: ev.epochLoss.toFixed(4),
    speed: Math.round(ev.seqPerSec).toLocaleString('en-US'),
    eta: formatDuration((ev.total - ev.seen) / ev.seqPerSec),
  });
  return {
    onEpochBegin(epoch, trainer) {
      const steps = trainer.stepsPerEpoch;
      lastLog = performance.now();
      if (!tty) return;
      bar = new cliProgress.SingleBar(
        {
          stream,
          format: `Epoch ${epoch}/${trainer.config.epochs} [{bar}] {value}/{total} | loss {loss} | {speed} seq/s | ETA {eta}`,
          barsize: 24,
          hideCursor: true,
          clearOnComplete: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(steps, 0, { loss: '-', speed: '-', eta: '-' });
    },
    onBatchEnd(ev) {
      if (bar) {
        bar.update(ev.step, fields(ev));
      } else if (performance.now() - lastLog >= logEverySeconds * 1000) {
        lastLog = performance.now();
        const f = fields(ev);
        stream.write(
          `Epoch ${ev.epoch}/${ev.epochs} step ${ev.step}/${ev.steps} loss ${f.loss} ${f.speed} seq/s ETA ${f.eta}\n`,
        );
      }
    },
    onEpochEnd(ev) {
      bar?.stop();
      bar = undefined;
      const val =
        ev.valLoss === undefined
          ? ''
          : ` - val_loss ${ev.valLoss.toFixed(4)} (${ev.valBpc!.toFixed(3)} bits/char, perplexity ${ev.valPerplexity!.toFixed(2)}${sampleNote(valSample)})` +
            (ev.valStatefulLoss === undefined
              ? ''
              : ` - stateful val_loss ${ev.valStatefulLoss.toFixed(4)} (${(ev.valStatefulLoss / Math.LN2).toFixed(3)} bits/char)`);
      stream.write(
        `Epoch ${ev.epoch}/${ev.epochs}: loss ${ev.loss.toFixed(4)}${val} - ${formatDuration(ev.seconds)} - ${Math.round(ev.seqPerSec).toLocaleString('en-US')} seq/s\n`,
      );
    },
    onTrainEnd() {
      bar?.stop();
      bar = undefined;
    },
  };
}

/** What a validation figure from a sample of the held-out windows says after its perplexity. */
const sampleNote = (windows: number | undefined): string =>
  windows === undefined ? '' : `, on a sample of ${windows.toLocaleString('en-US')} windows`;

export interface SampleOptions {
  tokens: TokenSource; // the encoded corpus, to draw seed texts from
  trainTokens: TokenSource | TokenText; // the text before the validation cut: what the memorisation report indexes
  vocab: Vocabulary;
  meta: () => ModelMeta; // the model's metadata as of now
  temperatures: readonly number[];
  length: number;
  rng: Rng; // seed positions and the draws
  write: (text: string) => void;
  /** Also hand each epoch's samples (without the seed) to someone else, e.g. the dashboard. */
  onSamples?: (epoch: number, seed: string, texts: { temperature: number; text: string }[]) => void;
}

/**
 * After every epoch, as the reference does: a seed of maxlen characters from a random position of
 * the corpus, then `length` characters at each temperature. The temperatures advance together as
 * one engine batch; the first streams live as it is generated, the others print when it is done.
 */
export function samplesCallback(opts: SampleOptions): TrainCallback {
  let index: MemorisationIndex | undefined; // built at the first epoch end, then kept for the run
  return {
    async onEpochEnd(ev: EpochEndEvent, trainer: Trainer) {
      if (opts.length === 0 || opts.temperatures.length === 0) return;
      await kernelModule();
      const meta = opts.meta();
      const model = CharModel.fromParts(trainer.params, meta);
      const maxlen = meta.maxlen;
      // random.randint(0, len(text) - maxlen - 1)
      const start = opts.rng.int(opts.tokens.length - maxlen);
      const seedIds = new Int32Array(maxlen);
      opts.tokens.read(start, maxlen, seedIds);
      const seed = opts.vocab.decode(seedIds);
      opts.write(`--- Generating with seed: ${JSON.stringify(seed)}\n`);
      const temps = opts.temperatures;
      opts.write(`------ temperature: ${temps[0]}\n${seed}`);
      const texts = generateWindow(model, {
        prompts: temps.map(() => seed),
        samplers: temps.map((temperature) => new Sampler({ temperature })),
        length: opts.length,
        rng: opts.rng,
        onChars: (chars) => opts.write(chars[0]!),
      });
      opts.write('\n');
      opts.onSamples?.(
        ev.epoch,
        seed,
        temps.map((temperature, i) => ({ temperature, text: texts[i]! })),
      );
      for (let i = 1; i < temps.length; i++) {
        opts.write(`------ temperature: ${temps[i]}\n${seed}${texts[i]}\n`);
      }
      // how much of each sample is recited from the training text (≥: a lower bound)
      if (!index) {
        index = MemorisationIndex.build(opts.trainTokens);
        if (index.kind !== 'suffix-array')
          opts.write(`------ memorisation index: ${index.describe()}\n`);
      }
      const copied = texts.map((t) => index!.report(opts.vocab.encode(t)));
      opts.write(
        `------ copied from the corpus: ${temps
          .map((t, i) => {
            const r = copied[i]!;
            return `T=${t}: longest ${r.longestExact ? '' : '≥'}${r.longestCopy} chars, ${r.shareExact ? '' : '≥'}${Math.round(r.shareFound * 100)}% of 20-char runs`;
          })
          .join('; ')}\n`,
      );
    },
  };
}

/**
 * After every epoch, the held-out loss into the epoch's event (ev.valLoss, ...), for the
 * callbacks after it. `val`: the windows scored, every held-out one or the run's fixed sample of
 * them (validationWindows, src/train/evaluate.ts), so every epoch scores the same positions;
 * `statefulFrom` (stateful mode): also the held-out text itself, from that offset (the cut), read
 * as carried streams.
 */
export function validationCallback(
  params: Parameters,
  val: Windows,
  statefulFrom?: number,
): TrainCallback {
  return {
    async onEpochEnd(ev) {
      const e = await evaluate(params, val);
      ev.valLoss = e.loss;
      ev.valBpc = e.bpc;
      ev.valPerplexity = e.perplexity;
      if (statefulFrom !== undefined) {
        ev.valStatefulLoss = (
          await evaluateStateful(params, val.tokens.subarray(statefulFrom))
        ).loss;
      }
    },
  };
}

/**
 * After validation: a better loss saves the model to best/; `earlyStop` epochs in a row without
 * one stop the run.
 */
export function bestModelCallback(run: RunContext, earlyStop?: number): TrainCallback {
  return {
    async onEpochEnd(ev, t) {
      if (ev.valLoss === undefined) return;
      if (!run.best || ev.valLoss < run.best.valLoss) {
        run.best = { valLoss: ev.valLoss, epoch: ev.epoch };
        run.sinceBest = 0;
        await saveModel(path.join(run.dir, 'best'), run.params, run.meta());
      } else {
        run.sinceBest++;
        if (earlyStop !== undefined && run.sinceBest >= earlyStop) {
          run.log(
            `early stop: no better validation loss for ${run.sinceBest} epochs (best ${run.best.valLoss.toFixed(4)} at epoch ${run.best.epoch})\n`,
          );
          t.requestStop();
        }
      }
    },
  };
}

/** A checkpoint every `every` batches within an epoch, and at every epoch's end the checkpoint
 * and then the epoch's model. */
export function checkpointCallback(run: RunContext, every?: number): TrainCallback {
  return {
    async onBatchEnd(ev) {
      if (every && ev.step % every === 0 && ev.step < ev.steps) await run.checkpoint();
    },
    async onEpochEnd() {
      await run.saveResumable();
    },
  };
}

/** Says so when the trainer's divergence guard rolled a batch back. */
export function divergenceCallback(log: (text: string) => void): TrainCallback {
  return {
    onDivergence(ev) {
      log(
        `loss became ${ev.loss} at epoch ${ev.epoch}, batch ${ev.step}: rolled back to the last good weights; learning rate now ×${ev.learningRateScale}\n`,
      );
    },
  };
}

/**
 * A run stopped mid-epoch (Ctrl-C, the time budget) keeps its work, resumable. When the time
 * budget ended it and there is a held-out part, the model it ends with (a cosine schedule's best)
 * is validated first (on `val`, the windows the epochs score) and kept as the best when it is; a
 * stop request does not wait for that.
 */
export function stopMidEpochCallback(run: RunContext, val: Windows | undefined): TrainCallback {
  return {
    async onTrainEnd(_history, t, stopped) {
      if (!(stopped && t.step > 0)) return;
      if (val && t.stopReason === 'budget') {
        const e = await evaluate(run.params, val);
        const sample = val.starts ? val.count : undefined; // validationWindows' sample
        run.log(
          `stopped in epoch ${t.epoch + 1}: val_loss ${e.loss.toFixed(4)} (${e.bpc.toFixed(3)} bits/char, perplexity ${e.perplexity.toFixed(2)}${sampleNote(sample)})\n`,
        );
        if (!run.best || e.loss < run.best.valLoss) {
          run.best = { valLoss: e.loss, epoch: t.epoch + 1 };
          await saveModel(path.join(run.dir, 'best'), run.params, run.meta());
        }
      }
      await run.saveResumable();
    },
  };
}
