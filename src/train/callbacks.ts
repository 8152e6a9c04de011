import cliProgress from 'cli-progress';
import type { ModelMeta } from '../checkpoint/model-format.ts';
import type { Vocabulary } from '../data/vocabulary.ts';
import { kernelModule } from '../engine/kernels.ts';
import { memorisationReports } from '../generate/memorisation.ts';
import { generateWindow } from '../generate/window.ts';
import { CharModel } from '../model/char-model.ts';
import type { Rng } from '../sampling/rng.ts';
import { Sampler } from '../sampling/sampler.ts';
import type { BatchEndEvent, EpochEndEvent, TrainCallback, Trainer } from './trainer.ts';

// What happens around the training loop: a progress bar, the reference's after-epoch samples,
// saving. Each is a TrainCallback; the CLI picks the ones it wants.

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
  logEverySeconds = 10,
): TrainCallback {
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
          : ` - val_loss ${ev.valLoss.toFixed(4)} (${ev.valBpc!.toFixed(3)} bits/char, perplexity ${ev.valPerplexity!.toFixed(2)})` +
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

export interface SampleOptions {
  tokens: Int32Array; // the encoded corpus, to draw seed texts from
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
  return {
    async onEpochEnd(ev: EpochEndEvent, trainer: Trainer) {
      if (opts.length === 0 || opts.temperatures.length === 0) return;
      await kernelModule();
      const meta = opts.meta();
      const model = CharModel.fromParts(trainer.params, meta);
      const maxlen = meta.maxlen;
      // random.randint(0, len(text) - maxlen - 1)
      const start = opts.rng.int(opts.tokens.length - maxlen);
      const seed = opts.vocab.decode(opts.tokens.subarray(start, start + maxlen));
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
      // how much of each sample is recited from the corpus
      const copied = memorisationReports(
        texts.map((t) => opts.vocab.encode(t)),
        opts.tokens,
      );
      opts.write(
        `------ copied from the corpus: ${temps
          .map(
            (t, i) =>
              `T=${t}: longest ${copied[i]!.longestCopy} chars, ${Math.round(copied[i]!.shareFound * 100)}% of 20-char runs`,
          )
          .join('; ')}\n`,
      );
    },
  };
}
