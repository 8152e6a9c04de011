// A Sampler turns the model's next-character distribution into one character index. The
// processors run in a fixed order:
//
//   1. temperature(T)   reweight (the reference's only knob)
//   2. topK(k)          keep the k most probable
//   3. topP(p)          keep the smallest nucleus reaching p
//   4. draw             one multinomial draw with the seeded Rng,
//                       or, with `greedy`, the argmax (which consumes no random numbers)
//
// Options left undefined are skipped. With no options at all the sampler draws from the model's
// distribution unchanged (temperature 1).

import { show } from '../errors.ts';
import type { Rng } from './rng.ts';
import {
  applyProcessors,
  argmax,
  checkTemperature,
  checkTopK,
  checkTopP,
  greedy,
  sample,
  temperature,
  topK,
  topP,
  type Probs,
  type Processor,
} from './processors.ts';

export interface SamplerOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
}

const KNOWN = new Set(['temperature', 'topK', 'topP', 'greedy']);

export class Sampler {
  readonly options: Readonly<SamplerOptions>;
  /** The processors that run before the draw, in order (greedy's one-hot comes last when set). */
  readonly processors: readonly Processor[];
  readonly greedy: boolean;

  constructor(options: SamplerOptions = {}) {
    if (typeof options !== 'object' || options === null)
      throw new TypeError(`sampler options must be an object, got ${show(options)}`);
    for (const key of Object.keys(options)) {
      if (!KNOWN.has(key)) throw new RangeError(`unknown sampler option ${show(key)}`);
    }
    const list: Processor[] = [];
    const opts: SamplerOptions = {};
    if (options.temperature !== undefined)
      list.push(temperature((opts.temperature = checkTemperature(options.temperature))));
    if (options.topK !== undefined) list.push(topK((opts.topK = checkTopK(options.topK))));
    if (options.topP !== undefined) list.push(topP((opts.topP = checkTopP(options.topP))));
    if (options.greedy !== undefined && typeof options.greedy !== 'boolean') {
      throw new RangeError(`greedy must be true or false, got ${show(options.greedy)}`);
    }
    this.greedy = options.greedy === true;
    if (this.greedy) {
      opts.greedy = true;
      list.push(greedy());
    }
    this.options = Object.freeze(opts);
    this.processors = Object.freeze(list);
  }

  /** The distribution the draw is made from, after all processors. */
  distribution(probs: Probs): Float64Array {
    return applyProcessors(probs, this.processors);
  }

  /** The next character index. Greedy sampling ignores (and does not advance) `rng`. */
  next(probs: Probs, rng: Rng): number {
    if (this.greedy) return argmax(this.distribution(probs));
    return sample(this.distribution(probs), rng);
  }

  toString(): string {
    const parts = this.processors.map((p) => p.name);
    return parts.length > 0 ? parts.join(' → ') : 'temperature(1)';
  }
}

export function makeSampler(options: SamplerOptions = {}): Sampler {
  return new Sampler(options);
}

/**
 * A Sampler from options that may carry other fields or undefined values (CLI flags, request
 * bodies): only the sampling options that are set are passed on.
 */
export function samplerFrom(opts: {
  [K in keyof SamplerOptions]?: SamplerOptions[K] | undefined;
}): Sampler {
  const picked: SamplerOptions = {};
  if (opts.temperature !== undefined) picked.temperature = opts.temperature;
  if (opts.topK !== undefined) picked.topK = opts.topK;
  if (opts.topP !== undefined) picked.topP = opts.topP;
  if (opts.greedy !== undefined) picked.greedy = opts.greedy;
  return new Sampler(picked);
}

/** A seed for the random draws when the caller gave none. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x100000000);
}
