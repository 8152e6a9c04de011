import { DECODING, REFERENCE } from '../defaults.ts';
import { UserError, show } from '../errors.ts';
import type { UnknownPolicy } from '../data/vocabulary.ts';
import type { CharModel } from '../model/char-model.ts';
import { Rng, checkSeed } from '../sampling/rng.ts';
import { Sampler, randomSeed, samplerFrom } from '../sampling/sampler.ts';
import {
  BeamSearch,
  checkBeamWidth,
  checkCount,
  checkStops,
  sampleSeed,
  stopAt,
  type FinishReason,
} from './decoding.ts';
import { batcherFor, nextTurn } from './batcher.ts';
import { StatefulStream } from './stateful.ts';
import { checkLength, preparePrompt, windowSteps } from './window.ts';

export { preparePrompt } from './window.ts';
export { nextTurn } from './batcher.ts';
export { sampleSeed, type FinishReason } from './decoding.ts';

// The library's generation API: one stream of text from a prompt, in either mode, as an async
// iterable of text chunks. Chunks end after `chunkChars` characters or `chunkMs` milliseconds,
// whichever comes first, and the generator waits for a turn of the event loop between chunks, so
// a server running many streams stays responsive and a cancelled stream (AbortSignal, or leaving
// a `for await` loop) stops within one chunk and frees its engine core.

export type GenerateMode = 'window' | 'stateful';
export const GENERATE_MODES: readonly GenerateMode[] = ['window', 'stateful'];

export interface GenerateOptions {
  /** The text to continue; lowercased first when the model was trained lowercased. Default ''. */
  prompt?: string;
  /** Characters to generate (0 to MAX_GENERATE_LENGTH); default REFERENCE.sampleLength. */
  length?: number;
  /** Sampling, as for Sampler: with none of them, draws from the model's distribution. */
  temperature?: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  /** Seed of the random draws; a random one when undefined (see Generation.seed). */
  seed?: number;
  /**
   * `window` (the reference: every character predicted from the last maxlen characters, re-read
   * from a zero state; needs a non-empty prompt) or `stateful` (the state carried from character
   * to character; any prompt, empty included). Default: defaultMode(model).
   */
  mode?: GenerateMode;
  /**
   * Prompt characters outside the vocabulary: an error naming them (default), dropped (`skip`),
   * or replaced by the model's unknown symbol (`map`; an error for a model trained without one).
   */
  unknown?: UnknownPolicy;
  /** Stops the generation: the iterator throws the signal's reason within one chunk. */
  signal?: AbortSignal;
  /**
   * Stop sequences: the text ends just before the first occurrence of any of them (which is not
   * included), compared with the text as generated (so lowercased for a lowercase model, as the
   * prompt is). Characters that may begin one are held back until decided. At most
   * DECODING.maxStops, each of 1 to DECODING.maxStopChars characters.
   */
  stop?: string | readonly string[];
  /**
   * Beam search of this width (1 to DECODING.maxBeamWidth; 1 is greedy) instead of sampling:
   * the `length` characters of highest total log-probability found, deterministic (see
   * BeamSearch in decoding.ts). Temperature, top-k, top-p, greedy and seed do not apply. Text
   * is sent as it becomes final: the characters every kept beam shares.
   */
  beam?: number;
  /** Most characters in one chunk (default 64). */
  chunkChars?: number;
  /** A chunk ends once it has taken this long to produce (default 16 ms). */
  chunkMs?: number;
  /**
   * Run in the model's scheduler (default true): generations on one model advance together, one
   * batched step for all (batcher.ts), each giving exactly the text it gives alone. `false`: on a
   * single-row stepper of its own, one step at a time (for comparisons).
   */
  batch?: boolean;
}

/** A running generation: the chunks, and what it was started with. */
export interface Generation extends AsyncIterable<string> {
  readonly mode: GenerateMode;
  readonly seed: number;
  readonly length: number;
  /** The prompt as the model reads it: lowercased if the model is, unknown characters dropped
   * (`unknown: 'skip'`) or replaced by the unknown symbol (`unknown: 'map'`). */
  readonly prompt: string;
  /** The beam width, when it is a beam search. */
  readonly beam: number | undefined;
  /** Why it ended (`length`, or `stop`: a stop sequence met); undefined until it has. */
  readonly finishReason: FinishReason | undefined;
}

const DEFAULT_CHUNK_CHARS = 64;
const DEFAULT_CHUNK_MS = 16;

/**
 * The mode a model generates best in. Every model charlstm trains learns from windows that start
 * at a zero state (the reference's way), so that is `window`.
 */
export function defaultMode(_model: CharModel): GenerateMode {
  return 'window';
}

export function checkMode(mode: unknown): GenerateMode {
  if (mode !== 'window' && mode !== 'stateful') {
    throw new UserError(`mode must be "window" or "stateful", got ${show(mode)}`);
  }
  return mode;
}

function positiveInteger(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`${what} must be an integer >= 1, got ${show(value)}`);
  }
  return value;
}

/**
 * Generate text from a prompt, chunk by chunk. Every option is checked at once (a bad prompt,
 * length or sampling option throws here, before anything runs — a UserError for what a user
 * typed, a RangeError for a bad sampler option); the model runs as the iterable is consumed. The
 * text is the generated continuation only, without the prompt. Deterministic for a given seed,
 * mode and options, whatever the chunk sizes and however the caller paces the iteration.
 */
export function generate(model: CharModel, opts: GenerateOptions = {}): Generation {
  const mode = opts.mode === undefined ? defaultMode(model) : checkMode(opts.mode);
  const length = checkLength(opts.length ?? REFERENCE.sampleLength);
  const prompt = preparePrompt(model, opts.prompt ?? '', opts.unknown);
  const sampler = samplerFrom(opts);
  const seed = checkSeed(opts.seed ?? randomSeed());
  const chunkChars = positiveInteger(opts.chunkChars ?? DEFAULT_CHUNK_CHARS, 'chunkChars');
  const chunkMs = opts.chunkMs ?? DEFAULT_CHUNK_MS;
  if (!(chunkMs >= 0)) throw new RangeError(`chunkMs must be a number >= 0, got ${show(chunkMs)}`);
  const stops =
    opts.stop === undefined ? [] : checkStops(opts.stop).map((s) => model.prepareText(s));
  const beam = opts.beam === undefined ? undefined : checkBeamWidth(opts.beam);
  const { signal } = opts;
  const rng = new Rng(seed);
  if (mode === 'window' && prompt.length === 0) {
    const dropped = opts.prompt ? ' once the characters outside the vocabulary are dropped' : '';
    throw new UserError(
      `prompt is empty${dropped}: window mode needs at least one character (stateful mode can start from none)`,
    );
  }
  const tokens = model.vocab.encode(prompt, 'prompt');
  const job: ChunkJob = {
    model,
    mode,
    prompt,
    tokens,
    sampler,
    rng,
    length,
    chunkChars,
    chunkMs,
    signal,
  };
  const chunks =
    beam !== undefined
      ? beamChunks(job, beam)
      : opts.batch !== false
        ? batchedChunks(job)
        : mode === 'window'
          ? windowChunks(job)
          : statefulChunks(job);
  let started = false;
  let finishReason: FinishReason | undefined;
  return {
    mode,
    seed,
    length,
    prompt,
    beam,
    get finishReason() {
      return finishReason;
    },
    [Symbol.asyncIterator]() {
      if (started) throw new Error('a Generation can be iterated only once');
      started = true;
      return stopAt(chunks(), stops, (reason) => (finishReason = reason));
    },
  };
}

/** generate()'s options with the number of samples. */
export interface SamplesOptions extends GenerateOptions {
  /** Independent samples (1 to DECODING.maxCount, default 1). */
  count?: number;
}

/**
 * `count` independent generations of one request: sample i is exactly generate() with the seed
 * sampleSeed(seed, i) (sample 0: the seed itself), the other options the same; `seed` is drawn
 * at random when undefined. Each is an ordinary Generation, run as its consumer iterates it, so
 * they may run one after the other or side by side. A beam search gives one text: count 1.
 */
export function generateSamples(model: CharModel, opts: SamplesOptions = {}): Generation[] {
  const { count: asked, ...rest } = opts;
  const count = checkCount(asked ?? DECODING.count);
  if (count > 1 && rest.beam !== undefined) {
    throw new UserError(`beam search gives one text: count must be 1 with beam, got ${count}`);
  }
  const seed = checkSeed(rest.seed ?? randomSeed());
  return Array.from({ length: count }, (_, i) =>
    generate(model, { ...rest, seed: sampleSeed(seed, i) }),
  );
}

/** What each way of producing a generation's chunks below starts from (checked by generate()). */
interface ChunkJob {
  model: CharModel;
  mode: GenerateMode;
  prompt: string; // as the model reads it (window mode re-encodes its windows from it)
  tokens: Int32Array; // the prompt encoded
  sampler: Sampler;
  rng: Rng;
  length: number;
  chunkChars: number;
  chunkMs: number;
  signal: AbortSignal | undefined;
}

type Chunks = () => AsyncGenerator<string, void, undefined>;

/** Unread characters a batched stream may hold, in chunks: it waits for its reader beyond that. */
const BATCH_BUFFER_CHUNKS = 4;

/**
 * A stream in the model's scheduler (batcher.ts). Its first chunk is what the tick that drew its
 * first character produced, so that it comes at once; then chunkChars or chunkMs as unbatched.
 */
function batchedChunks(job: ChunkJob): Chunks {
  const { model, mode, tokens: prompt, sampler, rng, length, chunkChars, chunkMs, signal } = job;
  const text = new TokenText(model.vocab.chars);
  return async function* () {
    signal?.throwIfAborted();
    const chunk = Math.min(chunkChars, 65_536);
    const buffer = BATCH_BUFFER_CHUNKS * chunk;
    const stream = batcherFor(model).submit({
      mode,
      prompt,
      sampler,
      rng,
      length,
      chunk,
      chunkMs,
      buffer,
    });
    try {
      const out = new Int32Array(chunk);
      for (let n: number; (n = await stream.read(out, signal)) > 0;) yield text.decode(out, n);
    } finally {
      stream.close();
    }
  };
}

function beamChunks(job: ChunkJob, width: number): Chunks {
  const { model, mode, tokens: prompt, length, chunkChars, chunkMs, signal } = job;
  return async function* () {
    signal?.throwIfAborted();
    const search = new BeamSearch(model, { prompt, length, width, mode });
    try {
      // the search in slices of chunkMs, so that it cannot hold the event loop; after each, the
      // characters every beam shares are final: sent, at most chunkChars to a chunk
      for (let sent = 0; ;) {
        const done = search.advance(performance.now() + chunkMs);
        const settled = search.settledLength();
        for (; sent < settled; sent = Math.min(settled, sent + chunkChars)) {
          yield model.vocab.decode(search.prefix(sent, Math.min(settled, sent + chunkChars)));
        }
        if (done) break;
        await nextTurn();
        signal?.throwIfAborted();
      }
    } finally {
      search.close();
    }
  };
}

function windowChunks(job: ChunkJob): Chunks {
  const { model, prompt, sampler, rng, length, chunkChars, chunkMs, signal } = job;
  return async function* () {
    signal?.throwIfAborted();
    const steps = windowSteps(model, { prompts: [prompt], samplers: [sampler], length, rng });
    let done = 0;
    while (done < length) {
      const deadline = performance.now() + chunkMs;
      let text = ''; // at most chunkChars characters, each costing a window's forward pass
      for (let n = 0; n < chunkChars && done < length; n++) {
        const r = steps.next();
        if (r.done) break;
        text += r.value[0]!;
        done++;
        if (performance.now() >= deadline) break;
      }
      yield text;
      await nextTurn();
      signal?.throwIfAborted();
    }
  };
}

function statefulChunks(job: ChunkJob): Chunks {
  const { model, tokens: prompt, sampler, rng, length, chunkChars, chunkMs, signal } = job;
  const text = new TokenText(model.vocab.chars);
  return async function* () {
    signal?.throwIfAborted();
    const stream = new StatefulStream(model, prompt, sampler, rng, length);
    try {
      // a long prompt is fed in slices too, so that it cannot hold the event loop either
      while (!stream.prime(performance.now() + chunkMs)) {
        await nextTurn();
        signal?.throwIfAborted();
      }
      const out = new Int32Array(chunkChars);
      while (stream.remaining > 0) {
        const n = stream.take(out, chunkChars, performance.now() + chunkMs);
        yield text.decode(out, n);
        await nextTurn();
        signal?.throwIfAborted();
      }
    } finally {
      stream.close();
    }
  };
}

const SLICE = 8192;

/** Token indices to text through a reused buffer of UTF-16 code units (no per-character strings). */
class TokenText {
  private readonly units: Uint16Array[]; // the code units of each vocabulary character
  private buf = new Uint16Array(0);

  constructor(chars: readonly string[]) {
    this.units = chars.map((c) => {
      const u = new Uint16Array(c.length);
      for (let i = 0; i < c.length; i++) u[i] = c.charCodeAt(i);
      return u;
    });
  }

  decode(tokens: Int32Array, n: number): string {
    if (this.buf.length < 2 * n) this.buf = new Uint16Array(2 * n); // a code point is 1 or 2 units
    const { buf, units } = this;
    let len = 0;
    for (let i = 0; i < n; i++) {
      const u = units[tokens[i]!]!;
      if (u.length === 1) buf[len++] = u[0]!;
      else for (let j = 0; j < u.length; j++) buf[len++] = u[j]!;
    }
    // fromCharCode takes the units as arguments, so pass at most SLICE at a time
    if (len <= SLICE)
      return String.fromCharCode.apply(null, buf.subarray(0, len) as unknown as number[]);
    const parts: string[] = [];
    for (let i = 0; i < len; i += SLICE) {
      parts.push(
        String.fromCharCode.apply(
          null,
          buf.subarray(i, Math.min(len, i + SLICE)) as unknown as number[],
        ),
      );
    }
    return parts.join('');
  }
}
