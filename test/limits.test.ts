// Sizes the engine cannot hold are refused up front, and a worker thread that stops does not
// leave training waiting (issue 11, items 7 and 8).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { kernelModule } from '../src/engine/kernels.ts';
import { LstmCore } from '../src/engine/lstm-core.ts';
import { CORE_MEMORY_LIMIT, checkCoreFits, coreBytes } from '../src/engine/memory.ts';
import { WorkerEngine, WorkerExitError } from '../src/engine/worker-engine.ts';
import { UserError } from '../src/errors.ts';
import { Parameters, type ModelShape } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { charlstm } from './helpers/cli.ts';

await kernelModule();

const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// a small corpus of real words (a few thousand characters)
const corpus = path.join(dir, 'corpus.txt');
{
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'far'];
  const rng = new Rng(1);
  writeFileSync(corpus, Array.from({ length: 1000 }, () => words[rng.int(words.length)]).join(' '));
}

/** The one-line refusal of a size, exit code 2, no internal error. */
function assertRefused(r: ReturnType<typeof charlstm>, sizes: RegExp): void {
  assert.equal(r.code, 2, `exit code ${r.code}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  const last = lines[lines.length - 1]!;
  assert.match(last, /^charlstm: error: /);
  assert.match(last, sizes);
  assert.match(last, /more than its limit of 4 GiB \(4294967296 bytes\)/);
  assert.doesNotMatch(r.stderr, /internal error|Memory\.grow|RangeError/);
}

test('coreBytes counts exactly what LstmCore lays out (training and inference cores)', () => {
  const shapes: [ModelShape, number, number][] = [
    [{ vocabSize: 5, units: 4 }, 3, 4],
    [{ vocabSize: 13, units: 12, layers: 2 }, 7, 9],
    [{ vocabSize: 57, units: 128, layers: 3 }, 64, 60],
  ];
  for (const [shape, maxB, maxT] of shapes) {
    for (const training of [true, false]) {
      const cap = { maxB, maxT, training };
      const core = new LstmCore(shape, cap); // throws if its layout and coreBytes disagree
      assert.ok(core.params.length === Parameters.size(shape));
      assert.ok(coreBytes(shape, cap) < CORE_MEMORY_LIMIT);
    }
  }
});

test('checkCoreFits refuses a shape over the limit with a UserError naming sizes and limit', () => {
  const shape = { vocabSize: 57, units: 128 };
  checkCoreFits(shape, { maxB: 64, maxT: 60, training: true }); // the reference: fits
  assert.throws(
    () => checkCoreFits(shape, { maxB: 1e9, maxT: 60, training: true }),
    (e: unknown) =>
      e instanceof UserError &&
      e.exitCode === 2 &&
      /units 128, layers 1, vocabulary 57, window \(maxlen\) 60, batch 1000000000 needs [\d.]+ TiB/.test(
        e.message,
      ) &&
      /limit of 4 GiB/.test(e.message),
  );
  // a core is never built over the limit, whoever builds it
  assert.throws(
    () => new LstmCore(shape, { maxB: 6, maxT: 1e9, training: false }),
    (e: unknown) => e instanceof UserError && /window \(maxlen\) 1000000000/.test(e.message),
  );
});

const train = (...args: string[]) =>
  charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '1',
    '--sample-length',
    '0',
    '--out',
    path.join(dir, `out-${Math.random().toString(16).slice(2)}`),
    ...args,
  ]);

test('charlstm train --batch-size 1e9 is refused up front (exit 2, one line, the limit)', () => {
  assertRefused(
    train('--batch-size', '1e9'),
    /batch size 1000000000 \(500000000 rows per engine core\)/,
  );
});

test('charlstm train: --units, or --layers, too large for the batch are refused the same way', () => {
  // (--units and --layers have their own caps, 4096 and 8; within them the memory still counts)
  assertRefused(train('--units', '256', '--batch-size', '16384'), /units 256, layers 1/);
  assertRefused(
    train('--units', '256', '--layers', '8', '--batch-size', '2048'),
    /units 256, layers 8/,
  );
});

test('a model.json with maxlen 1e9 is refused when loaded (predict: exit 2, one line)', () => {
  const model = path.join(dir, 'model');
  const r = charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '1',
    '--units',
    '8',
    '--sample-length',
    '0',
    '--out',
    model,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const file = path.join(model, 'model.json');
  const json = JSON.parse(readFileSync(file, 'utf8'));
  json.userDefinedMetadata.maxlen = 1e9;
  writeFileSync(file, JSON.stringify(json));
  const p = charlstm(['predict', '--model', model, '--text', 'the']);
  assertRefused(p, /model\.json: inference with units 8, .*window \(maxlen\) 1000000000/);
});

/** `promise`, or a failure after `ms` milliseconds: a hang fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

test('a worker thread that stops mid-batch rejects the batch, and every later one, promptly', async () => {
  const shape = { vocabSize: 30, units: 128 };
  const B = 256;
  const T = 100;
  const engine = await WorkerEngine.create({ shape, maxBatch: B, maxT: T, threads: 2 });
  try {
    const rng = new Rng(3);
    const params = new Parameters(shape);
    for (let i = 0; i < params.flat.length; i++) params.flat[i] = rng.uniform(-0.1, 0.1);
    const x = Int32Array.from({ length: B * T }, () => rng.int(shape.vocabSize));
    const y = Int32Array.from({ length: B }, () => rng.int(shape.vocabSize));
    const batch = { x, y, rows: B, steps: T, scoring: 'last' } as const;
    const out = new Float32Array(params.flat.length);
    // a healthy batch first
    assert.ok(Number.isFinite(await engine.lossAndGrads(params.flat, batch, out)));

    const inFlight = engine.lossAndGrads(params.flat, batch, out);
    await engine.terminateWorkerForTest(0); // as the system kills a thread
    await assert.rejects(
      within(inFlight, 10_000, 'the batch in flight'),
      (e: unknown) =>
        e instanceof WorkerExitError && /worker thread 1 of 2 stopped unexpectedly/.test(e.message),
    );
    await assert.rejects(
      within(engine.lossAndGrads(params.flat, batch, out), 2_000, 'a later batch'),
      WorkerExitError,
    );
  } finally {
    await engine.close();
  }
});
