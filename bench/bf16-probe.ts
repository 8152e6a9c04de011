// npx tsx bench/bf16-probe.ts [--windows N]: the native engine's training speed in FP32 and in
// BF16 (--precision bf16), interleaved window by window in one process so that the machine's load
// falls on both alike, and the ratio of medians. Reference shapes (batch 128, 60 steps,
// LSTM(128), 57 characters) at 1 and 2 worker threads, and one batch of the ten-minute model
// (2 × LSTM(256), dropout 0.3, every position scored: the preset's model before issue 16) at 2 threads. Under a minute on 2 cores;
// the full bench (bench/bench.ts) is the record, this is the quick comparison.
//
// npx tsx bench/bf16-probe.ts --loss <corpus> [--epochs 3] [--write]: issue 16's quality check
// instead: `charlstm train` on the corpus (the reference model, seed 1, 2 threads) once with
// --precision fp32 and once with bf16, each epoch's training and validation loss side by side,
// and whether bf16 stays within 0.01 of fp32 (minutes: the two runs one after the other).
// --write records it in docs/bf16-loss.json; `node --import tsx bench/render.ts` renders the
// README's bench:bf16-loss block from it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { REFERENCE } from '../src/defaults.ts';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { resolveEngine, resolvePrecision } from '../src/engine/kernels.ts';
import type { Batch, Precision } from '../src/engine/types.ts';
import { initParameters } from '../src/model/init.ts';
import type { ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { RmsProp } from '../src/train/rmsprop.ts';
import { runMachine } from './machine.ts';
import type { Bf16LossResults } from './render.ts';

const { values: args } = parseArgs({
  options: {
    windows: { type: 'string', default: '5' },
    loss: { type: 'string' },
    epochs: { type: 'string', default: '3' },
    write: { type: 'boolean', default: false },
  },
});
const WINDOWS = Number(args.windows);
const V = 57;
const T = REFERENCE.maxlen;
const B = REFERENCE.batchSize;

interface Config {
  name: string;
  shape: ModelShape;
  threads: number;
  precision: Precision;
  everyStep?: boolean;
  dropout?: number;
  perWindow: number; // batches per timed window
}

async function timer(c: Config): Promise<{ batch(): Promise<void>; close(): Promise<void> }> {
  const rng = new Rng(1);
  const params = initParameters(c.shape, rng);
  const opt = new RmsProp(params.flat.length, { learningRate: 0.01, rho: 0.9, epsilon: 1e-7 });
  const engine = await createEngine({
    shape: c.shape,
    maxBatch: B,
    maxT: T,
    threads: c.threads,
    engine: 'native',
    precision: c.precision,
  });
  const x = Int32Array.from({ length: B * T }, () => rng.int(V));
  const y = Int32Array.from({ length: c.everyStep ? B * T : B }, () => rng.int(V));
  const grads = new Float32Array(params.flat.length);
  let key = 0;
  const batch = async (): Promise<void> => {
    const b: Batch = { x, y, rows: B, steps: T, scoring: c.everyStep ? 'every' : 'last' };
    if (c.dropout) b.dropout = { rate: c.dropout, key: ++key };
    await engine.lossAndGrads(params.flat, b, grads);
    opt.step(params.flat, grads);
  };
  for (let i = 0; i < 3; i++) await batch(); // warm-up
  return { batch, close: () => engine.close() };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** The train flags of the check, the precision's value last. */
const lossFlags = (corpus: string, epochs: number): string[] => [
  '--corpus',
  corpus,
  '--engine',
  'native',
  '--epochs',
  String(epochs),
  '--seed',
  '1',
  '--threads',
  '2',
  '--precision',
];

/** Each epoch's [loss, val_loss] of one `charlstm train` run, in order. */
function trainLosses(corpus: string, precision: Precision, epochs: number): number[][] {
  const out = mkdtempSync(path.join(os.tmpdir(), `bf16-probe-${precision}-`));
  const cli = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const flags = ['--out', out, '--overwrite', ...lossFlags(corpus, epochs), precision];
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, 'train', ...flags], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`charlstm train (${precision}) failed: ${r.stderr}`);
  const lines = r.stderr.matchAll(
    // the epoch lines go to stderr, beside the progress bar
    /Epoch \d+\/\d+: loss ([\d.]+)(?: - val_loss ([\d.]+))?/g,
  );
  return [...lines].map((m) => [Number(m[1]), Number(m[2] ?? NaN)]);
}

function losses(corpus: string, epochs: number): void {
  const loadStart = os.loadavg();
  const fp = trainLosses(corpus, 'fp32', epochs);
  const bf = trainLosses(corpus, 'bf16', epochs);
  let worst = 0;
  fp.forEach(([loss, val], e) => {
    const [bLoss, bVal] = bf[e]!;
    worst = Math.max(worst, Math.abs(bLoss! - loss!));
    console.log(
      `epoch ${e + 1}: loss fp32 ${loss!.toFixed(4)} bf16 ${bLoss!.toFixed(4)} ` +
        `(${(bLoss! - loss!).toFixed(4)}), val_loss fp32 ${val!.toFixed(4)} bf16 ${bVal!.toFixed(4)}`,
    );
  });
  const within = worst <= 0.01 ? 'within' : 'outside';
  console.log(`largest per-epoch loss difference ${worst.toFixed(4)} (${within} 0.01)`);
  if (args.write) {
    const record: Bf16LossResults = {
      format: 1,
      command: `npx tsx bench/bf16-probe.ts --loss ${path.basename(corpus, '.txt')} --epochs ${epochs} --write`,
      train: `charlstm train ${lossFlags(path.basename(corpus, '.txt'), epochs).join(' ')} fp32|bf16 --out DIR`,
      date: new Date().toISOString(),
      machine: runMachine(loadStart),
      fp32: fp.map(([loss, valLoss]) => ({ loss: loss!, valLoss: valLoss! })),
      bf16: bf.map(([loss, valLoss]) => ({ loss: loss!, valLoss: valLoss! })),
      tolerance: 0.01,
    };
    const file = fileURLToPath(new URL('../docs/bf16-loss.json', import.meta.url));
    writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
    console.log(
      'wrote docs/bf16-loss.json; `node --import tsx bench/render.ts` renders the README',
    );
  }
}

async function speed(): Promise<void> {
  const ref: ModelShape = { vocabSize: V, units: REFERENCE.units };
  const ten: ModelShape = { vocabSize: V, units: 256, layers: 2 };
  const configs: Config[] = [];
  for (const threads of [1, 2])
    for (const precision of ['fp32', 'bf16'] as const)
      configs.push({
        name: `reference, ${threads} thread${threads > 1 ? 's' : ''}`,
        shape: ref,
        threads,
        precision,
        perWindow: 8,
      });
  for (const precision of ['fp32', 'bf16'] as const)
    configs.push({
      name: 'ten-minute model, 2 threads',
      shape: ten,
      threads: 2,
      precision,
      everyStep: true,
      dropout: 0.3,
      perWindow: 1,
    });
  const timers = [];
  for (const c of configs) timers.push(await timer(c));
  const ms = configs.map((): number[] => []);
  for (let w = 0; w < WINDOWS; w++)
    for (const [i, c] of configs.entries()) {
      const t0 = performance.now();
      for (let j = 0; j < c.perWindow; j++) await timers[i]!.batch();
      ms[i]!.push((performance.now() - t0) / c.perWindow);
    }
  for (const t of timers) await t.close();
  for (let i = 0; i < configs.length; i += 2) {
    const [f, b] = [median(ms[i]!), median(ms[i + 1]!)];
    const c = configs[i]!;
    const rate = (m: number): string =>
      c.everyStep
        ? `${m.toFixed(0)} ms/batch (${Math.round((B * T * 1000) / m).toLocaleString('en-US')} scored chars/s)`
        : `${Math.round((B * 1000) / m).toLocaleString('en-US')} seq/s`;
    console.log(`${c.name}: fp32 ${rate(f)}, bf16 ${rate(b)}: bf16/fp32 ${(f / b).toFixed(2)}x`);
  }
}

if (
  (await resolveEngine('auto')) !== 'native' ||
  (await resolvePrecision('auto', 'native')) !== 'bf16'
) {
  console.log('needs the native engine with AVX512-BF16');
  process.exit(0);
}
if (args.loss !== undefined) losses(args.loss, Number(args.epochs));
else await speed();
