// npm run bench [-- --json] [--quick] [--no-tfjs-cpu]
//
// Measures, in one process run so that every figure shares the machine's state:
//   - training throughput of our engine (reference shapes: batch 128, 60 steps, 128 units,
//     57 characters) at 1 and 2 worker threads: the median of several timed windows after a warm-up;
//   - the same model on TensorFlow.js's WebAssembly and pure-JS backends (short runs);
//   - reference-style generation (re-reading the 60-character window for every character), the
//     four temperatures advanced together as one batch, and TF.js's generation for comparison;
//   - GFLOP/s reached, against our kernel's single-thread GFLOP/s on the recurrent product shape;
//   - peak resident memory of a real `charlstm train` process on the reference configuration.
// The machine is shared and noisy: compare ratios measured in the same run, and quote medians.

import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  createEngine,
  resolveEngine,
  SHARDS,
  type EngineKind,
} from '../src/engine/gradient-engine.ts';
import { instantiate, kernelModule } from '../src/engine/kernels.ts';
import { initParameters } from '../src/model/init.ts';
import { CharModel } from '../src/model/char-model.ts';
import { generateWindow } from '../src/generate/window.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { RmsProp } from '../src/train/rmsprop.ts';
import { REFERENCE } from '../src/defaults.ts';

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    'no-tfjs-cpu': { type: 'boolean', default: false },
    'no-tfjs': { type: 'boolean', default: false },
    'no-rss': { type: 'boolean', default: false },
  },
});

const V = 57;
const H = REFERENCE.units;
const T = REFERENCE.maxlen;
const B = REFERENCE.batchSize;
/** multiply-adds of one training sequence ×2: forward h·Wh, backward dz·Whᵀ and hᵀ·dz, every step */
const FLOP_PER_SEQ = 3 * 2 * H * 4 * H * T + 3 * 2 * H * V;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const log = (msg: string): void => {
  if (!args.json) process.stderr.write(msg + '\n');
};

async function benchTrain(
  engineKind: EngineKind,
  threads: number,
  windows: number,
  batchesPerWindow: number,
): Promise<number> {
  const rng = new Rng(1);
  const params = initParameters({ vocabSize: V, units: H }, rng);
  const opt = new RmsProp(params.flat.length, { learningRate: 0.01, rho: 0.9, epsilon: 1e-7 });
  const engine = await createEngine({
    shape: params.shape,
    maxBatch: B,
    maxT: T,
    threads,
    engine: engineKind,
  });
  const x = Int32Array.from({ length: B * T }, () => rng.int(V));
  const y = Int32Array.from({ length: B }, () => rng.int(V));
  const grads = new Float32Array(params.flat.length);
  const batch = async (): Promise<void> => {
    await engine.lossAndGrads(params.flat, x, y, B, T, grads);
    opt.step(params.flat, grads);
  };
  for (let i = 0; i < 3; i++) await batch(); // warm-up: JIT tiers, page faults
  const rates: number[] = [];
  for (let w = 0; w < windows; w++) {
    const t0 = performance.now();
    for (let i = 0; i < batchesPerWindow; i++) await batch();
    rates.push((batchesPerWindow * B * 1000) / (performance.now() - t0));
  }
  await engine.close();
  return median(rates);
}

function benchKernelPeak(): number {
  // our gemm on the recurrent product's shape, one thread: [64×128]·[128×512]
  const k = instantiate();
  k.memory.grow(64);
  const M = 64;
  const K = H;
  const N = 4 * H;
  const f = new Float32Array(k.memory.buffer);
  for (let i = 16384; i < f.length; i++) f[i] = ((i % 13) - 6) * 0.01;
  const a = 65536;
  const b = a + M * K * 4;
  const c = b + K * N * 4;
  const rates: number[] = [];
  for (let r = 0; r < 15; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) k.gemmNN(a, K, b, N, c, N, M, N, K);
    rates.push((2 * M * N * K * 100) / ((performance.now() - t0) * 1e6));
  }
  return median(rates);
}

async function benchGenerate(chars: number, engineKind: EngineKind): Promise<number> {
  await kernelModule();
  const rng = new Rng(3);
  const vocab = Array.from({ length: V }, (_, i) => String.fromCodePoint(32 + i));
  const params = initParameters({ vocabSize: V, units: H }, rng);
  const kernels =
    engineKind === 'native'
      ? (await import('../src/engine/native.ts')).requireNativeKernels
      : undefined;
  const model = CharModel.fromParts(
    params,
    {
      formatVersion: 1,
      vocab,
      lowercase: true,
      maxlen: T,
      step: 3,
      units: H,
      training: {},
    },
    kernels,
  );
  const seed = vocab.join('').slice(0, T);
  const temps = REFERENCE.temperatures;
  const run = (n: number): number => {
    const t0 = performance.now();
    generateWindow(model, {
      seeds: temps.map(() => seed),
      samplers: temps.map((temperature) => new Sampler({ temperature })),
      length: n,
      rng,
    });
    return (n * temps.length * 1000) / (performance.now() - t0);
  };
  run(20);
  return median([run(chars), run(chars), run(chars)]);
}

function benchTrainRss(): { maxRssMB: number; seqPerSec: number } | undefined {
  // a real CLI training process on the reference configuration, stopped after a few hundred steps
  const repo = fileURLToPath(new URL('..', import.meta.url));
  const res = spawnSync(process.execPath, ['--import', 'tsx', 'bench/train-rss.ts'], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (res.status !== 0) {
    log(`  (peak RSS run failed: ${res.stderr.trim().split('\n').pop()})`);
    return undefined;
  }
  return JSON.parse(res.stdout.trim().split('\n').pop()!) as {
    maxRssMB: number;
    seqPerSec: number;
  };
}

const quick = args.quick;
const results: Record<string, unknown> = {
  machine: {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    node: process.version,
    date: new Date().toISOString(),
  },
  shapes: { batch: B, steps: T, units: H, vocab: V, shards: SHARDS },
};

log('charlstm bench — reference configuration (batch 128, 60 steps, 128 units, 57 characters)');
await kernelModule();
const kernelGflops = benchKernelPeak();
log(`kernel: gemm 64×128·128×512, one thread: ${kernelGflops.toFixed(1)} GFLOP/s`);
const windows = quick ? 3 : 5;
const perWindow = quick ? 3 : 6;
const wasm1 = await benchTrain('wasm', 1, windows, perWindow);
log(`charlstm wasm, 1 thread: ${wasm1.toFixed(0)} seq/s`);
const wasm2 = await benchTrain('wasm', 2, windows, perWindow);
log(`charlstm wasm, 2 threads: ${wasm2.toFixed(0)} seq/s`);
const hasNative = (await resolveEngine('auto')) === 'native';
const native1 = hasNative ? await benchTrain('native', 1, windows, perWindow * 2) : undefined;
if (native1) log(`charlstm native, 1 thread: ${native1.toFixed(0)} seq/s`);
const native2 = hasNative ? await benchTrain('native', 2, windows, perWindow * 2) : undefined;
if (native2) log(`charlstm native, 2 threads: ${native2.toFixed(0)} seq/s`);
// the default engine's figures
const ours1 = native1 ?? wasm1;
const ours2 = native2 ?? wasm2;
const genWasm = await benchGenerate(quick ? 100 : 400, 'wasm');
log(
  `charlstm generation, WebAssembly (window mode, 4 temperatures as one batch): ${genWasm.toFixed(0)} chars/s`,
);
const genNative = hasNative ? await benchGenerate(quick ? 100 : 400, 'native') : undefined;
if (genNative) log(`charlstm generation, native: ${genNative.toFixed(0)} chars/s`);
const gen = genNative ?? genWasm;
const { benchStateful } = await import('./generate-bench.ts');
const stateful = await benchStateful();
log(`charlstm stateful generation, one stream: ${stateful.toFixed(0)} chars/s`);

let tfWasm: number | undefined;
let tfCpu: number | undefined;
let tfGen: number | undefined;
if (!args['no-tfjs']) {
  const { benchTfjs, benchTfjsGenerate } = await import('./tfjs-train.ts');
  tfWasm = (await benchTfjs({ backend: 'wasm', batches: quick ? 1 : 3 })).seqPerSec;
  log(`TF.js wasm: ${tfWasm.toFixed(1)} seq/s`);
  tfGen = (await benchTfjsGenerate({ backend: 'wasm', chars: quick ? 20 : 50 })).charsPerSec;
  log(`TF.js wasm generation: ${tfGen.toFixed(0)} chars/s`);
  if (!args['no-tfjs-cpu']) {
    tfCpu = (await benchTfjs({ backend: 'cpu', batches: 1 })).seqPerSec;
    log(`TF.js cpu: ${tfCpu.toFixed(1)} seq/s`);
  }
}
const rss = args['no-rss'] ? undefined : benchTrainRss();
if (rss)
  log(
    `charlstm train process: peak RSS ${rss.maxRssMB.toFixed(0)} MB (${rss.seqPerSec.toFixed(0)} seq/s)`,
  );

const epochSeconds = (rate: number): number => 200278 / rate;
Object.assign(results, {
  train: {
    wasm1: { seqPerSec: wasm1, gflops: (wasm1 * FLOP_PER_SEQ) / 1e9 },
    wasm2: { seqPerSec: wasm2, gflops: (wasm2 * FLOP_PER_SEQ) / 1e9 },
    native1: native1 && { seqPerSec: native1, gflops: (native1 * FLOP_PER_SEQ) / 1e9 },
    native2: native2 && { seqPerSec: native2, gflops: (native2 * FLOP_PER_SEQ) / 1e9 },
    defaultEngine: hasNative ? 'native' : 'wasm',
    charlstm1: { seqPerSec: ours1, gflops: (ours1 * FLOP_PER_SEQ) / 1e9 },
    charlstm2: {
      seqPerSec: ours2,
      gflops: (ours2 * FLOP_PER_SEQ) / 1e9,
      epochSeconds: epochSeconds(ours2),
    },
    threadScaling: ours2 / ours1,
    tfjsWasm: tfWasm,
    tfjsCpu: tfCpu,
    speedupVsTfjsWasm: tfWasm ? ours2 / tfWasm : undefined,
    speedupVsTfjsCpu: tfCpu ? ours2 / tfCpu : undefined,
  },
  kernel: { gemmGflopsOneThread: kernelGflops, peakTwoThreads: 2 * kernelGflops },
  generate: {
    windowWasm: genWasm,
    windowNative: genNative,
    charlstmCharsPerSec: gen,
    statefulOneStream: stateful,
    tfjsWasmCharsPerSec: tfGen,
  },
  memory: rss,
});

if (args.json) {
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
} else {
  const fmt = (v: number | undefined, d = 0): string => (v === undefined ? '—' : v.toFixed(d));
  const gf = (r: number | undefined): string =>
    r === undefined ? '' : `${fmt((r * FLOP_PER_SEQ) / 1e9, 1)} GFLOP/s`;
  const rows: [string, string, string][] = [
    ['training, WebAssembly, 1 thread', `${fmt(wasm1)} seq/s`, gf(wasm1)],
    [
      'training, WebAssembly, 2 threads',
      `${fmt(wasm2)} seq/s`,
      `${gf(wasm2)}; ${fmt(wasm2 / wasm1, 2)}× 1 thread; ${tfWasm ? `${fmt(wasm2 / tfWasm)}× TF.js wasm` : ''}`,
    ],
    ['training, native AVX2, 1 thread', `${fmt(native1)} seq/s`, gf(native1)],
    [
      'training, native AVX2, 2 threads',
      `${fmt(native2)} seq/s`,
      native2
        ? `${gf(native2)}; ${fmt(native2 / native1!, 2)}× 1 thread; epoch ${fmt(epochSeconds(native2))} s`
        : '',
    ],
    [
      'training, TF.js wasm',
      `${fmt(tfWasm, 1)} seq/s`,
      tfWasm ? `charlstm is ${fmt(ours2 / tfWasm)}×` : '',
    ],
    [
      'training, TF.js cpu',
      `${fmt(tfCpu, 1)} seq/s`,
      tfCpu ? `charlstm is ${fmt(ours2 / tfCpu)}×` : '',
    ],
    [
      'kernel gemm 64×128·128×512',
      `${fmt(kernelGflops, 1)} GFLOP/s`,
      'one thread; ×2 for two cores',
    ],
    ['generation, window mode, 4 temps batched, wasm', `${fmt(genWasm)} chars/s`, ''],
    ['generation, window mode, 4 temps batched, native', `${fmt(genNative)} chars/s`, ''],
    ['generation, stateful, one stream', `${fmt(stateful)} chars/s`, ''],
    [
      'generation, TF.js wasm',
      `${fmt(tfGen)} chars/s`,
      tfGen ? `charlstm is ${fmt(gen / tfGen)}×` : '',
    ],
    ['peak RSS, charlstm train', rss ? `${fmt(rss.maxRssMB)} MB` : '—', ''],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  process.stdout.write(
    `\n| ${'measure'.padEnd(w0)} | ${'value'.padEnd(w1)} | notes |\n|${'-'.repeat(w0 + 2)}|${'-'.repeat(w1 + 2)}|---|\n`,
  );
  for (const [a, b, c] of rows)
    process.stdout.write(`| ${a.padEnd(w0)} | ${b.padEnd(w1)} | ${c} |\n`);
  process.stdout.write(
    `\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}\n`,
  );
}
