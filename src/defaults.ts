// The one source of truth for the reference pipeline's values (Deep Learning with Python, 8.1).
// Every command, the library API and the checkpoint format read their defaults from here.

export const REFERENCE = {
  maxlen: 60, // characters in one input window
  stride: 3, // a new window every `stride` characters (the notebook's `step`; the flag --step)
  units: 128, // LSTM units
  batchSize: 128,
  epochs: 59, // the notebook's `for epoch in range(1, 60)`
  learningRate: 0.01, // RMSprop(lr=0.01)
  rho: 0.9, // Keras RMSprop default
  epsilon: 1e-7, // Keras RMSprop default
  temperatures: [0.2, 0.5, 1.0, 1.2] as readonly number[],
  sampleLength: 400, // characters generated per temperature after each epoch
  lowercase: true,
} as const;

/** The held-out fraction of a new run (the corpus's end) unless --val-split or --preset reference
 * says otherwise; also what `charlstm eval` scores of a model trained without a split. */
export const DEFAULT_VAL_SPLIT = 0.1;

/** A training run's settings beyond the reference's, each off unless asked for (one layer, no
 * dropout, a constant rate); src/train/settings.ts declares every setting with its default. */
export const TRAINING = {
  corpus: 'nietzsche',
  layers: 1,
  dropout: 0,
  schedule: { kind: 'constant' },
  mode: 'last',
  optimizer: 'rmsprop',
  engine: 'auto', // the fastest kernels available
  precision: 'fp32', // the products' arithmetic ('bf16': AVX512-BF16 on the native engine only)
} as const;

/**
 * A run's validation at every epoch end (validationWindows, src/train/evaluate.ts): beyond
 * `sampleAbove` held-out windows it scores a seeded sample of `sample` of them, the same ones every
 * epoch, instead of all (--val-full); below, every one, exactly as before there was a sample.
 */
export const VALIDATION = {
  // The per-window loss's standard deviation, in nats. Measured on nietzsche's held-out 10% (every
  // character, 60,090 windows) with LSTM(128): 1.47 at a mean of 1.57 after 3 epochs, 1.61 at 1.55
  // after 7, growing as the model learns; 2 is the conservative figure the sample is sized with.
  lossSpread: 2,
  // (2 / 0.005)² = 160,000 windows: a standard error of about ±0.005 nats against the full mean
  // (less with the finite-population correction), ~17 s per epoch at the ~9,000 windows/s that
  // scoring all 3.3 million windows of a 10 MB held-out part (~360 s) ran at.
  sample: 160_000,
  // Sampling pays only when it skips most of the windows: up to twice the sample, all are scored.
  sampleAbove: 320_000,
} as const;

/** Reading corpora (src/corpus/): bounds, so that no input can grow memory or hang forever. */
export const CORPUS = {
  // The largest corpus read, file or download (--max-corpus-bytes): 4 GiB. A corpus is never one
  // string (V8's limit is 2^29 - 24 UTF-16 units): it is streamed into a file of ids, and a run
  // reads its windows from there (src/corpus/prepare.ts, token-source.ts); 4 GiB keeps every
  // character position and window index below 2^32 (the window order, the memorisation index).
  maxBytes: 4 * 1024 * 1024 * 1024,
  // A prepared corpus whose ids take at most this many bytes (1, 2 or 4 a character) is read into
  // memory for a run; a larger one stays in its token file and each batch's windows are read from
  // it (src/corpus/token-source.ts), so a run's memory does not grow with the corpus.
  idsInMemoryBytes: 128 * 1024 * 1024,
  connectTimeoutMs: 30_000, // a download's server must answer (send its headers) within this
  idleTimeoutMs: 60_000, // and then never go this long without sending a byte
} as const;

/** The after-epoch memorisation report (src/generate/memorisation.ts): its index of the training
 * text is built once per run and never holds more than `indexBytes` of typed arrays, building
 * included; up to indexBytes / 16 characters (4 Mi at 64 MiB) it is an exact suffix array. */
export const MEMORISATION = {
  indexBytes: 64 * 1024 * 1024,
  ngram: 20, // the report's "share of 20-char runs"; the sampled index finds all runs this long
  maxCandidates: 4096, // corpus positions checked per generated position (more: figures inexact)
} as const;

/** Where downloaded corpora and other caches live (`$CHARLSTM_HOME`, default ~/.cache/charlstm). */
export const ENV_HOME = 'CHARLSTM_HOME';
/** A folder searched first for `<name>.txt` when a built-in corpus is asked for. */
export const ENV_DATA_DIR = 'CHARLSTM_DATA_DIR';

/** `charlstm serve` and buildServer (src/server/app.ts). */
export const SERVER = {
  port: 8080,
  host: '127.0.0.1', // loopback only unless asked
  maxLength: 10_000, // the longest generation one request may ask for (characters)
  // generations running at once, streamed or not; one more gets 429. Batched, a stream costs a
  // row of a step (src/generate/batcher.ts), so 64 clients that never read leave room for others
  maxStreams: 256,
  bodyLimit: 64 * 1024, // the largest request body accepted (bytes); larger ones get 413
  // A client that stops reading: once the socket takes no more (its kernel buffers are full) for
  // this long, its event stream is cut and its slot freed (src/server/sse.ts).
  writeStallMs: 5_000,
  timeLimitMs: 60_000, // the longest one generation may run, streamed or not; then it is stopped
  // Fastify's: the whole request (headers and body) must arrive within requestTimeoutMs (slow
  // senders), an idle keep-alive connection closes after keepAliveTimeoutMs, and a socket with no
  // traffic either way closes after connectionTimeoutMs, kept above timeLimitMs since a whole
  // (not streamed) answer writes nothing until it is done.
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  connectionTimeoutMs: 75_000,
  shutdownGraceMs: 10_000, // SIGTERM: streams in progress may finish for this long, then end
} as const;

/** Generation when the caller names no temperature: the CLI's `generate`, the HTTP API and the
 * web app agree on it (the middle of the reference's four, 0.2, 0.5, 1.0 and 1.2). The library's
 * Sampler with no options keeps the model's own distribution (temperature 1). */
export const GENERATE = {
  temperature: 0.5,
  unknown: 'error', // prompt characters the model never saw: named in an error (--unknown)
} as const;

/** Decoding beyond one sampled stream (src/generate/decoding.ts): the bounds the library, the
 * CLI (--stop, --count, --beam) and the API (stop, n, beam_width) share. */
export const DECODING = {
  maxStops: 8, // stop sequences per generation
  maxStopChars: 100, // characters in one stop sequence
  count: 1, // samples when none is asked for
  maxCount: 64, // samples per request (each one ordinary generation: n × length characters)
  maxBeamWidth: 32, // beams kept after every character (width steps, or window rows, a character)
} as const;

/** The live training view (`charlstm train --dashboard`). */
export const DASHBOARD = {
  port: 8081,
  host: '127.0.0.1', // loopback only unless asked
  maxClients: 16, // open event streams (pages); one more gets 503
  snapshotBatchPoints: 2_000, // the batch points a page gets when it connects (evenly thinned)
  snapshotSamples: 20, // and the last this many epochs' samples
} as const;
