// Stateful generation speed: one stream on the reference shape (57 characters, LSTM(128)), from
// random weights, through the library's generate() exactly as `charlstm generate --mode stateful`
// runs it (chunks, turns of the event loop), at the CLI's default temperature.
//
//   node --import tsx bench/generate-bench.ts [chars]     prints chars/s
//
// benchStateful() is what bench/bench.ts reports.

import { fileURLToPath } from 'node:url';

import { REFERENCE } from '../src/defaults.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { generate } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';

/** 57 characters, the size of the reference corpus's vocabulary. */
export const BENCH_VOCAB = [...'\n !"\'(),-.0123456789:;=?[]_abcdefghijklmnopqrstuvwxyzäæéë'];

/** A reference-shape model with Keras-initialised random weights (speed does not depend on them). */
export function benchModel(seed = 1): CharModel {
  const shape = { vocabSize: BENCH_VOCAB.length, units: REFERENCE.units };
  return CharModel.fromParts(initParameters(shape, new Rng(seed)), {
    formatVersion: 1,
    vocab: BENCH_VOCAB,
    lowercase: true,
    maxlen: REFERENCE.maxlen,
    step: REFERENCE.step,
    units: REFERENCE.units,
    training: {},
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Characters per second of one stateful stream: the median of `runs` timed generations of
 * `chars` characters each, after a short warm-up.
 */
export async function benchStateful(chars = 100_000, runs = 3): Promise<number> {
  await kernelModule();
  const model = benchModel();
  const once = async (n: number): Promise<number> => {
    const t0 = performance.now();
    let got = 0;
    for await (const chunk of generate(model, {
      prompt: 'the meaning of life is ',
      length: n,
      temperature: 0.5,
      mode: 'stateful',
      seed: 1,
      chunkChars: 4096, // as the CLI asks
    })) {
      got += chunk.length;
    }
    return (got * 1000) / (performance.now() - t0);
  };
  await once(5_000);
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) rates.push(await once(chars));
  return median(rates);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const chars = Number(process.argv[2] ?? 100_000);
  const rate = await benchStateful(chars);
  process.stdout.write(`stateful generation, one stream: ${rate.toFixed(0)} chars/s\n`);
}
