// Generation speed on the reference shape (57 characters, LSTM(128), 60-character windows), from
// random weights (speed does not depend on them), on either engine:
//   - one stream, window mode (the reference: every character predicted from the last 60
//     characters, re-read from a zero state), through the library's generate() exactly as
//     `charlstm generate` runs it (chunks, turns of the event loop), at temperature 0.5;
//   - one stream, stateful (the state carried from character to character), the same way;
//   - the four after-epoch temperatures advanced together as one batch (generateWindow, as
//     `charlstm train` prints its samples), counting the characters of all four streams.
//
//   node --import tsx bench/generate-bench.ts [--engine wasm|native] [--chars N]   prints chars/s
//
// bench/bench.ts reports these next to TF.js's one window-mode stream (bench/tfjs-train.ts).

import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

import { REFERENCE } from '../src/defaults.ts';
import { kernelFactory } from '../src/engine/kernels.ts';
import type { EngineKind } from '../src/engine/types.ts';
import { generate, type GenerateMode } from '../src/generate/generate.ts';
import { generateWindow } from '../src/generate/window.ts';
import { CharModel } from '../src/model/char-model.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';

/** 57 characters, the size of the reference corpus's vocabulary. */
export const BENCH_VOCAB = [...'\n !"\'(),-.0123456789:;=?[]_abcdefghijklmnopqrstuvwxyzäæéë'];

/** A 60-character prompt (one full window) in BENCH_VOCAB. */
const PROMPT = 'the meaning of life is '.repeat(3).slice(0, REFERENCE.maxlen);

/** The reference shape over BENCH_VOCAB, and the metadata a model of it is saved with. */
export const BENCH_SHAPE = { vocabSize: BENCH_VOCAB.length, units: REFERENCE.units };
export const BENCH_META = {
  vocab: BENCH_VOCAB,
  lowercase: true,
  maxlen: REFERENCE.maxlen,
  step: REFERENCE.stride,
  units: REFERENCE.units,
  training: {},
};

/** A reference-shape model with Keras-initialised random weights on the given engine. */
export async function benchModel(engine: EngineKind = 'wasm', seed = 1): Promise<CharModel> {
  const kernels = await kernelFactory(engine);
  return CharModel.fromParts(
    initParameters(BENCH_SHAPE, new Rng(seed)),
    { formatVersion: 1, ...BENCH_META },
    kernels,
  );
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Characters per second of one stream through generate() in `mode`: the median of `runs` timed
 * generations of `chars` characters each, after a short warm-up.
 */
export async function benchStream(
  mode: GenerateMode,
  engine: EngineKind,
  chars: number,
  runs = 3,
): Promise<number> {
  const model = await benchModel(engine);
  const once = async (n: number): Promise<number> => {
    const t0 = performance.now();
    let got = 0;
    for await (const chunk of generate(model, {
      prompt: PROMPT,
      length: n,
      temperature: 0.5,
      mode,
      seed: 1,
      chunkChars: 4096, // as the CLI asks
    })) {
      got += chunk.length;
    }
    return (got * 1000) / (performance.now() - t0);
  };
  await once(Math.max(20, Math.floor(chars / 20)));
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) rates.push(await once(chars));
  return median(rates);
}

/**
 * Characters per second, all streams counted, of the four reference temperatures advanced
 * together as one batch in window mode (`chars` characters per stream).
 */
export async function benchFourTemperatures(
  engine: EngineKind,
  chars: number,
  runs = 3,
): Promise<number> {
  const model = await benchModel(engine);
  const temps = REFERENCE.temperatures;
  const rng = new Rng(3);
  const once = (n: number): number => {
    const t0 = performance.now();
    generateWindow(model, {
      prompts: temps.map(() => PROMPT),
      samplers: temps.map((temperature) => new Sampler({ temperature })),
      length: n,
      rng,
    });
    return (n * temps.length * 1000) / (performance.now() - t0);
  };
  once(Math.max(20, Math.floor(chars / 20)));
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) rates.push(once(chars));
  return median(rates);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      engine: { type: 'string', default: 'wasm' },
      chars: { type: 'string', default: '400' },
    },
  });
  const engine = values.engine === 'native' ? 'native' : 'wasm';
  const chars = Number(values.chars);
  const w = await benchStream('window', engine, chars);
  process.stdout.write(`${engine}: window mode, one stream: ${w.toFixed(0)} chars/s\n`);
  const f = await benchFourTemperatures(engine, chars);
  process.stdout.write(
    `${engine}: window mode, 4 temperatures as one batch: ${f.toFixed(0)} chars/s\n`,
  );
  const s = await benchStream('stateful', engine, chars * 100);
  process.stdout.write(`${engine}: stateful, one stream: ${s.toFixed(0)} chars/s\n`);
}
