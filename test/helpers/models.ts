// A small CharModel with seeded random weights, for tests that need a model but no training.
import { FORMAT_VERSION } from '../../src/checkpoint/model-format.ts';
import { CharModel } from '../../src/model/char-model.ts';
import { Parameters } from '../../src/model/params.ts';
import { Rng } from '../../src/sampling/rng.ts';

/**
 * Weights uniform in [-scale, scale] from `seed`. The default scale, larger than Keras's
 * initialisers give, makes the next-character distributions peaked and different from each other.
 */
export function randomCharModel(opts: {
  vocab: string[];
  units: number;
  maxlen: number;
  seed?: number;
  scale?: number;
  lowercase?: boolean;
}): CharModel {
  const { vocab, units, maxlen, seed = 1, scale = 1.5, lowercase = true } = opts;
  const params = new Parameters({ vocabSize: vocab.length, units });
  const rng = new Rng(seed);
  for (let i = 0; i < params.flat.length; i++) params.flat[i] = rng.uniform(-scale, scale);
  return CharModel.fromParts(params, {
    formatVersion: FORMAT_VERSION,
    vocab,
    lowercase,
    maxlen,
    step: 3,
    units,
    training: {},
  });
}
