import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  THREADS_BLOCK,
  readBlock,
  readDoc,
  renderThreads,
  replaceBlocks,
  type ThreadsResults,
} from '../bench/render.ts';
import { createEngine } from '../src/engine/gradient-engine.ts';
import { PHASES } from '../src/engine/profile.ts';
import type { Batch } from '../src/engine/types.ts';
import type { WorkerEngine } from '../src/engine/worker-engine.ts';
import { initParameters } from '../src/model/init.ts';
import { stateSize } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';

// Two worker threads (issue 16 part 3): the engine's opt-in profile (src/engine/profile.ts) and
// the shared parameter and gradient buffers change no number, its stamps describe one batch in
// order, and bench/render.ts renders docs/engine.md's bench:threads block from docs/threads.json
// (a fixture here, test/fixtures/threads-results.json, whose figures are known).

const shape = { vocabSize: 11, units: 8, layers: 2 };
const B = 6;
const T = 5;

/** Two batches in a row, carried state and dropout on: the loss, gradient and final state. */
async function twoBatches(threads: number, profile: boolean) {
  const rng = new Rng(7);
  const params = initParameters(shape, rng);
  const x = Int32Array.from({ length: B * T }, () => rng.int(shape.vocabSize));
  const y = Int32Array.from({ length: B * T }, () => rng.int(shape.vocabSize));
  const per = stateSize(params.shape);
  const state = {
    h: Float32Array.from({ length: B * per }, () => rng.uniform(-0.5, 0.5)),
    c: Float32Array.from({ length: B * per }, () => rng.uniform(-0.5, 0.5)),
  };
  const engine = await createEngine({
    shape: params.shape,
    maxBatch: B,
    maxT: T,
    threads,
    engine: 'wasm',
    ...(profile && { profile }),
  });
  const grads = new Float32Array(params.flat.length);
  const losses: number[] = [];
  try {
    for (let key = 1; key <= 2; key++) {
      const batch: Batch = { x, y, rows: B, steps: T, scoring: 'every', state };
      batch.dropout = { rate: 0.25, key };
      losses.push(await engine.lossAndGrads(params.flat, batch, grads));
      // a step of plain SGD, so that the second batch's parameters differ from the first's
      for (let i = 0; i < grads.length; i++) params.flat[i] = params.flat[i]! - 0.1 * grads[i]!;
    }
    const times = profile ? (engine as unknown as WorkerEngine).lastTimes : undefined;
    return { losses, grads: grads.slice(), h: state.h.slice(), c: state.c.slice(), times };
  } finally {
    await engine.close();
  }
}

test('shared buffers and the profile change no number: 0, 1 and 2 threads agree bit for bit', async () => {
  const inline = await twoBatches(0, false);
  for (const [threads, profile] of [
    [1, false],
    [2, false],
    [2, true],
  ] as const) {
    const r = await twoBatches(threads, profile);
    const what = `${threads} thread(s)${profile ? ', profiled' : ''}`;
    assert.deepEqual(r.losses, inline.losses, what);
    assert.deepEqual(r.grads, inline.grads, what);
    assert.deepEqual(r.h, inline.h, what);
    assert.deepEqual(r.c, inline.c, what);
  }
});

test("a profiled batch's stamps follow one another, and its phases fit in each pass", async () => {
  const { times } = await twoBatches(2, true);
  assert.ok(times, 'lastTimes is set when profiling');
  assert.equal(times.workers.length, 2);
  const skew = 1; // ms: stamps compared across threads come from two threads' clocks
  assert.ok(times.start <= times.posted);
  for (const [i, w] of times.workers.entries()) {
    assert.ok(times.sent[i]! >= times.start && times.sent[i]! <= times.posted);
    assert.ok(w.received >= times.sent[i]! - skew, `worker ${i} received after it was sent`);
    assert.ok(w.paramsSet >= w.received);
    assert.equal(w.shards.length, 1, 'one shard a worker at two threads');
    for (const sh of w.shards) {
      assert.ok(sh.start >= w.paramsSet && sh.computed >= sh.start && sh.end >= sh.computed);
      const pass = sh.computed - sh.start;
      let kernels = 0;
      for (const p of PHASES) {
        assert.ok(sh.phases[p] >= 0, `${p} is not negative`);
        if (p !== 'js') kernels += sh.phases[p];
      }
      assert.ok(sh.phases.forward > 0 && sh.phases.backward > 0 && sh.phases.weightGrads > 0);
      assert.ok(sh.phases.dropout > 0, 'dropout was on');
      assert.ok(kernels <= pass + 1e-6, "the kernels' time fits in the pass");
      assert.ok(Math.abs(kernels + sh.phases.js - pass) < 1e-6, 'js is the rest of the pass');
      if (sh.cpu !== undefined) {
        assert.ok(sh.cpu >= 0 && sh.queued! >= 0);
      }
    }
    assert.ok(w.replied >= w.shards.at(-1)!.end);
    assert.ok(times.got[i]! >= w.replied - skew, `worker ${i}'s reply handled after it was sent`);
    assert.ok(times.gathered >= times.got[i]!);
  }
  assert.ok(times.combined >= times.gathered);
});

const fixture = (): ThreadsResults =>
  JSON.parse(
    readFileSync(new URL('./fixtures/threads-results.json', import.meta.url), 'utf8'),
  ) as ThreadsResults;

test("the threads block shows each part of a batch, and derives the ratios from the JSON's figures", () => {
  const md = renderThreads(fixture());
  assert.match(md, /^\| ms per batch \(median\) \| native, 1 thread \| native, 2 threads \|$/m);
  assert.match(
    md,
    /^\| \*\*batch, unprofiled\*\* \| \*\*35\.5\*\* \(3,606 seq\/s\) \| \*\*19\.0\*\* \(6,737 seq\/s\) \|$/m,
  );
  assert.match(
    md,
    /^\| worker, its passes: forward \(h·Wh, gates\) \| 11\.0 \| 5\.70 \/ 5\.60 \|$/m,
  );
  assert.match(md, /^\| main: RMSprop update \| 0\.30 \| 0\.30 \|$/m);
  assert.match(
    md,
    /^\| a shard's pass, on a CPU \(wall less the wait\) \| 16\.0 \/ 16\.0 \| 16\.8 \/ 16\.4 \|$/m,
  );
  // where it ran, and how busy the machine was
  assert.match(
    md,
    /\[`docs\/threads\.json`\]\(threads\.json\), on 2026-12-03: 2 × AMD EPYC \(a KVM guest\)/,
  );
  assert.match(md, /load average 0\.31 when it began and 1\.94 when it ended/);
  assert.match(md, /1 thread per core and 2 cores/);
  // 35.5 / 19 unprofiled, 36 / 19.5 profiled; 19.5 / 19 − 1 = 2.6%
  assert.match(
    md,
    /two threads ran a batch 1\.87× as fast as one \(unprofiled, medians; 1\.90× at the 10th percentile; profiled 1\.85×, its batches at two threads 3% longer/,
  );
  assert.match(
    md,
    /^\| batch, unprofiled, fastest tenth \(10th percentile\) \| 34\.2 \| 18\.0 \|$/m,
  );
  // mean(16.8, 16.4) / mean(16, 16)
  assert.match(
    md,
    /16\.6 ms of CPU time when the two ran at once against 16\.0 ms alone \(1\.04×\)/,
  );
  // idle machine: 0.8 serial + 0.45 worker + 32 passes; 0.8 + 0.5 + 16.8; the 1.48 ms lost = 0.8 + 0.68
  assert.match(md, /in 33\.3 ms on one thread and 18\.1 on two, 1\.84×: of the 1\.48 ms/);
  assert.match(md, /0\.80 ms is the passes .* and 0\.68 ms the parts that do not split/);
  // the sequential share: (0.8 + 0.5) / 18.1
  assert.match(
    md,
    /\(0\.50 ms: the messages' ways, setParams, the gradient's copy\), together 7% of the two-thread batch\./,
  );
  assert.doesNotMatch(md, /Against the engines of/);
  assert.doesNotMatch(md, /understates/);
  // on a busy machine a lone pass was not alone: the contention figure says it is a lower bound
  const busy = fixture();
  busy.machine.loadAverage.start = [2.5, 2, 1];
  assert.match(renderThreads(busy), /this ratio understates what two passes cost each other/);
  // two threads' passes faster than one's (noise): no negative loss is quoted
  const faster = fixture();
  faster.profiled[1]!.shardCpuMs = [15, 15];
  const md2 = renderThreads(faster);
  assert.match(md2, /16\.3 on two, 2\.0× \(no loss against halving one shows/);
  assert.doesNotMatch(md2, /-\d+\.\d+ ms/);
  // two threads lose against halving, but not in the passes: 15.9 against 16 alone
  const even = fixture();
  even.profiled[1]!.shardCpuMs = [15.9, 15.9];
  const md3 = renderThreads(even);
  assert.match(
    md3,
    /of the 0\.57 ms that two threads lose against halving one, the passes gained 0\.10 ms/,
  );
  assert.doesNotMatch(md3, /-\d+\.\d+ ms/);
});

test('a before/after comparison, when the JSON has one, is rendered as ratios of its medians', () => {
  const r = fixture();
  r.compare = {
    dir: '/tmp/before',
    profiled: [],
    plain: [{ engine: 'native', threads: 2, batches: 70, wallMs: 20.9, seqPerSec: 6124.4 }],
  };
  assert.match(
    renderThreads(r),
    /Against the engines of `\/tmp\/before`, .*: native at 2 threads 19\.0 ms against 20\.9 \(1\.10×\)\./,
  );
});

test('a figure missing from docs/threads.json is an error, not a blank in docs/engine.md', () => {
  const r = fixture();
  delete (r.profiled[1]!.main as Partial<NonNullable<ThreadsResults['profiled'][0]['main']>>)
    .optimizer;
  assert.throws(() => renderThreads(r), /not a finite number|undefined/);
  const noTwo = fixture();
  noTwo.plain = noTwo.plain.filter((c) => c.threads === 1);
  assert.throws(() => renderThreads(noTwo), /no native run at 2 thread/);
});

test("docs/engine.md's bench:threads block is exactly what docs/threads.json renders to", (t) => {
  const doc = readFileSync(new URL('../docs/engine.md', import.meta.url), 'utf8');
  let results: ThreadsResults;
  try {
    results = readDoc<ThreadsResults>('threads.json');
  } catch {
    t.skip('docs/threads.json not written yet (npm run bench:threads)');
    return;
  }
  const block = renderThreads(results);
  assert.equal(readBlock(doc, THREADS_BLOCK), block);
  assert.equal(replaceBlocks(doc, { [THREADS_BLOCK]: block }), doc);
});
