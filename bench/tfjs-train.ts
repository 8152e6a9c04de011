// The TensorFlow.js baseline: the reference model trained and sampled the way the reference
// (Keras lstm_text_generation) does it, on TF.js's wasm or pure-JS cpu backend.
//
//   LSTM(128, recurrentActivation sigmoid) → Dense(57, softmax), RMSprop(0.01),
//   categorical cross-entropy, one-hot input [128, 60, 57], model.trainOnBatch per batch;
//   generation: model.predict on a [1, 60, 57] one-hot window for every character.
//
// Stand-alone:  node --import tsx bench/tfjs-train.ts --backend wasm --batches 3 [--chars 50]
//               [--batch-size 128] [--T 60] [--V 57] [--H 128]      → prints JSON
//
// Notes on the wasm backend in Node (tfjs-backend-wasm 4.22):
//  - the .wasm binaries ship in the package's dist/ folder; we point setWasmPaths at that folder as a
//    plain filesystem path (Emscripten reads it with fs in Node). The default would find it too.
//  - the backend never uses threads in Node: its WASM_HAS_MULTITHREAD_SUPPORT flag is hard-wired to
//    false there (the threaded build needs Blob-URL workers), so it loads the single-threaded SIMD
//    binary and setThreadsCount has no effect. We still call it with the machine's core count, and
//    report the count the backend actually uses.

import * as tf from '@tensorflow/tfjs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Rng } from '../src/sampling/rng.ts';

export type TfjsBackend = 'wasm' | 'cpu';

/** The TF.js release measured (the umbrella package's version). */
export const TFJS_VERSION: string = tf.version.tfjs;

export interface TfjsModelOptions {
  T?: number; // window length, default 60
  V?: number; // vocabulary size, default 57
  H?: number; // LSTM units, default 128
}

export interface TfjsTrainOptions extends TfjsModelOptions {
  backend: TfjsBackend;
  batches: number; // timed batches (after one untimed warm-up batch)
  batchSize?: number; // default 128
  seed?: number; // data seed, default 0
}

export interface TfjsTrainResult {
  backend: string;
  /** batchSize / median batch time. */
  seqPerSec: number;
  /** Wall time of each timed trainOnBatch call, ms. */
  msPerBatch: number[];
  /**
   * Process CPU time (user + system) of each timed batch, ms. Both backends compute on the main
   * thread only, so on a busy shared machine this is a steadier measure than wall time
   * (it slightly over-counts: V8's GC helper threads are included).
   */
  cpuMsPerBatch: number[];
  /** batchSize / median CPU time per batch: the throughput of an otherwise idle core. */
  seqPerSecCpu: number;
  warmupMs: number;
  threads: number;
  batchSize: number;
  T: number;
  V: number;
  H: number;
}

export interface TfjsGenerateOptions extends TfjsModelOptions {
  backend: TfjsBackend;
  chars?: number; // characters to generate, default 50
  temperature?: number; // default 0.5
  seed?: number; // default 0
}

export interface TfjsGenerateResult {
  backend: string;
  /** chars / total generation time (predict + sampling + window update, as the reference loop does). */
  charsPerSec: number;
  /** Wall time of each character, ms. */
  msPerChar: number[];
  /** chars / process CPU time of the whole loop (see TfjsTrainResult.cpuMsPerBatch). */
  charsPerSecCpu: number;
  threads: number;
  chars: number;
}

let wasmThreads = 1;
let wasmConfigured = false;

/** Select (and on first use initialise) a TF.js backend. Returns the thread count it computes with. */
export async function useTfjsBackend(backend: TfjsBackend): Promise<number> {
  tf.enableProdMode(); // mutes the "install tfjs-node" banner; computations are unaffected
  if (backend === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm'); // registers the 'wasm' backend
    if (!wasmConfigured) {
      const require = createRequire(import.meta.url);
      const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
      wasm.setWasmPaths(distDir + path.sep);
      wasm.setThreadsCount(
        typeof os.availableParallelism === 'function'
          ? os.availableParallelism()
          : os.cpus().length,
      );
      wasmConfigured = true;
    }
    if (!(await tf.setBackend('wasm')))
      throw new Error('TF.js could not initialise its wasm backend');
    await tf.ready();
    wasmThreads = wasm.getThreadsCount();
    return wasmThreads;
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('TF.js could not initialise its cpu backend');
  await tf.ready();
  return 1;
}

function buildReferenceModel(T: number, V: number, H: number): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.lstm({ units: H, inputShape: [T, V], recurrentActivation: 'sigmoid' }));
  model.add(tf.layers.dense({ units: V, activation: 'softmax' }));
  return model;
}

function median(a: number[]): number {
  const s = [...a].sort((p, q) => p - q);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Train the reference model on random one-hot data: 1 warm-up batch, then `batches` timed ones. */
export async function benchTfjs(opts: TfjsTrainOptions): Promise<TfjsTrainResult> {
  const { backend, batches, batchSize = 128, T = 60, V = 57, H = 128, seed = 0 } = opts;
  if (!(Number.isInteger(batches) && batches >= 1))
    throw new RangeError(`batches must be a positive integer, got ${batches}`);
  const threads = await useTfjsBackend(backend);
  const rng = new Rng(seed);

  const xData = new Float32Array(batchSize * T * V);
  for (let i = 0; i < batchSize * T; i++) xData[i * V + rng.int(V)] = 1;
  const yData = new Float32Array(batchSize * V);
  for (let b = 0; b < batchSize; b++) yData[b * V + rng.int(V)] = 1;
  const x = tf.tensor3d(xData, [batchSize, T, V]);
  const y = tf.tensor2d(yData, [batchSize, V]);

  const model = buildReferenceModel(T, V, H);
  model.compile({ optimizer: tf.train.rmsprop(0.01), loss: 'categoricalCrossentropy' });
  try {
    let t0 = performance.now();
    await model.trainOnBatch(x, y); // returns after reading the loss back: a full sync point
    const warmupMs = performance.now() - t0;
    const msPerBatch: number[] = [];
    const cpuMsPerBatch: number[] = [];
    for (let i = 0; i < batches; i++) {
      const c0 = process.cpuUsage();
      t0 = performance.now();
      await model.trainOnBatch(x, y);
      msPerBatch.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpuMsPerBatch.push((c.user + c.system) / 1000);
    }
    return {
      backend: tf.getBackend(),
      seqPerSec: (batchSize * 1000) / median(msPerBatch),
      msPerBatch,
      cpuMsPerBatch,
      seqPerSecCpu: (batchSize * 1000) / median(cpuMsPerBatch),
      warmupMs,
      threads,
      batchSize,
      T,
      V,
      H,
    };
  } finally {
    model.optimizer?.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
  }
}

/** Temperature sampling as the reference does it: log(p)/temperature, renormalise, one draw. */
function sampleIndex(p: Float32Array, temperature: number, rng: Rng): number {
  const w = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++)
    sum += w[i] = Math.exp(Math.log(Math.max(p[i]!, 1e-30)) / temperature);
  let u = rng.next() * sum;
  for (let i = 0; i < w.length; i++) {
    u -= w[i]!;
    if (u < 0) return i;
  }
  return w.length - 1;
}

/** Generate `chars` characters the reference way (one predict on a [1, T, V] one-hot window per character). */
export async function benchTfjsGenerate(opts: TfjsGenerateOptions): Promise<TfjsGenerateResult> {
  const { backend, chars = 50, T = 60, V = 57, H = 128, temperature = 0.5, seed = 0 } = opts;
  if (!(Number.isInteger(chars) && chars >= 1))
    throw new RangeError(`chars must be a positive integer, got ${chars}`);
  const threads = await useTfjsBackend(backend);
  const rng = new Rng(seed);
  const model = buildReferenceModel(T, V, H);
  const window: number[] = Array.from({ length: T }, () => rng.int(V));
  const predictNext = async (): Promise<number> => {
    const buf = new Float32Array(T * V);
    for (let t = 0; t < T; t++) buf[t * V + window[t]!] = 1;
    const out = tf.tidy(() => model.predict(tf.tensor3d(buf, [1, T, V])) as tf.Tensor);
    const p = (await out.data()) as Float32Array;
    out.dispose();
    return sampleIndex(p, temperature, rng);
  };
  try {
    await predictNext(); // warm-up, not counted
    const msPerChar: number[] = [];
    const c0 = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < chars; i++) {
      const t0 = performance.now();
      const next = await predictNext();
      window.shift();
      window.push(next);
      msPerChar.push(performance.now() - t0);
    }
    const totalMs = performance.now() - start;
    const c = process.cpuUsage(c0);
    const cpuMs = (c.user + c.system) / 1000;
    return {
      backend: tf.getBackend(),
      charsPerSec: (chars * 1000) / totalMs,
      msPerChar,
      charsPerSecCpu: (chars * 1000) / cpuMs,
      threads,
      chars,
    };
  } finally {
    model.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'wasm' },
      batches: { type: 'string', default: '3' },
      'batch-size': { type: 'string', default: '128' },
      T: { type: 'string', default: '60' },
      V: { type: 'string', default: '57' },
      H: { type: 'string', default: '128' },
      chars: { type: 'string', default: '50' },
    },
  });
  const backend = values.backend;
  if (backend !== 'wasm' && backend !== 'cpu')
    throw new Error(`--backend must be wasm or cpu, got ${backend}`);
  const num = (s: string, name: string): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`--${name} must be a non-negative integer, got ${s}`);
    return n;
  };
  const model = { T: num(values.T, 'T'), V: num(values.V, 'V'), H: num(values.H, 'H') };
  const train = await benchTfjs({
    backend,
    batches: num(values.batches, 'batches'),
    batchSize: num(values['batch-size'], 'batch-size'),
    ...model,
  });
  const chars = num(values.chars, 'chars');
  const generate = chars > 0 ? await benchTfjsGenerate({ backend, chars, ...model }) : null;
  const round = (v: number): number => Math.round(v * 100) / 100;
  console.log(
    JSON.stringify(
      {
        node: process.version,
        cpus: os.cpus().length,
        train: {
          ...train,
          seqPerSec: round(train.seqPerSec),
          msPerBatch: train.msPerBatch.map(round),
          cpuMsPerBatch: train.cpuMsPerBatch.map(round),
          seqPerSecCpu: round(train.seqPerSecCpu),
          warmupMs: round(train.warmupMs),
        },
        generate: generate && {
          ...generate,
          charsPerSec: round(generate.charsPerSec),
          charsPerSecCpu: round(generate.charsPerSecCpu),
          msPerChar: undefined,
          medianMsPerChar: round(median(generate.msPerChar)),
        },
      },
      null,
      2,
    ),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
