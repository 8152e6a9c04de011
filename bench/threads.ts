// npm run bench:threads [-- --no-write] [--render] [--windows N] [--batches N] [--compare DIR]
//                       [--model reference|ten-minutes|stateful]
//
// Where the second worker thread's time goes (issue 16 part 3). Reference training batches
// (128 windows × 60 steps, 128 units, 57 characters, the last character scored, RMSprop) on each
// engine at 1 and 2 worker threads, every batch timed in its parts by the engine's opt-in profile
// (src/engine/profile.ts): on the main thread, posting the requests (the parameters and the batch
// structured-cloned), waiting, summing the shards' gradients, the optimizer and the trainer's
// per-batch bookkeeping (gradNorm and the divergence guard's snapshot copies, as trainer.ts does
// them); on each worker, the request's way there, setParams, each shard's LstmCore pass by phase,
// the gradient's copy, the reply's way back, and its idle time. The same configurations also run
// unprofiled, so the profile's own cost shows. Configurations take turns window by window, so a
// change in the machine's load falls on all of them; every figure is a median over batches.
//
// One thread computes both shards in turn, each alone on the machine's cores; two threads compute
// one each at the same time: the ratio of a shard's time on two threads to one is what running
// together costs (memory bandwidth, shared cache, or SMT siblings; the JSON records lscpu's
// topology).
//
// Writes docs/threads.json (unless --no-write) and renders docs/engine.md's bench:threads block
// from it (bench/render.ts renderThreads); --render only re-renders the block from the committed
// JSON (after a change to the renderer). --compare DIR also times, unprofiled and interleaved
// with the rest, the engines of another checkout of this repository (DIR/src/engine), for a
// before/after ratio of a change; printed, and kept in the JSON as `compare`. --model ten-minutes
// profiles the ten-minute preset's model (src/train/presets.ts; every position scored)
// instead, into docs/threads-ten-minutes.json, and --model stateful the reference model with every
// position scored and the state carried (the state's copies), into docs/threads-stateful.json;
// nothing renders those two.

import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { REFERENCE } from '../src/defaults.ts';
import { UserError } from '../src/errors.ts';
import type { BatchTimes, WorkerTimes } from '../src/engine/profile.ts';
import { SHARDS } from '../src/engine/shards.ts';
import type { Batch, EngineKind, EngineOptions, GradientEngine } from '../src/engine/types.ts';
import type { WorkerEngine } from '../src/engine/worker-engine.ts';
import { resolveEngine } from '../src/engine/kernels.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { PRESETS } from '../src/train/presets.ts';
import { RmsProp } from '../src/train/rmsprop.ts';
import { gradNorm } from '../src/train/trainer.ts';
import { runMachine } from './machine.ts';
import {
  THREADS_BLOCK,
  readDoc,
  renderThreads,
  replaceBlocks,
  type ThreadsConfig,
  type ThreadsResults,
} from './render.ts';

const { values: args } = parseArgs({
  options: {
    'no-write': { type: 'boolean', default: false },
    windows: { type: 'string', default: '7' },
    batches: { type: 'string', default: '5' },
    compare: { type: 'string' },
    /** only re-render docs/engine.md's block from the committed docs/threads.json */
    render: { type: 'boolean', default: false },
    /** 'reference' (the default) or 'ten-minutes': the preset's model (src/train/presets.ts), every position scored */
    model: { type: 'string', default: 'reference' },
  },
});
const log = (msg: string): void => void process.stderr.write(msg + '\n');
/** A bad flag's value: one line naming it, exit status 2. */
function check(ok: boolean, err: UserError): void {
  if (ok) return;
  log(err.message);
  process.exit(2);
}
const count = (flag: 'windows' | 'batches'): number => {
  const v = Number(args[flag]);
  check(
    Number.isInteger(v) && v >= 1,
    new UserError(`--${flag} must be a whole number ≥ 1, not ${JSON.stringify(args[flag])}`),
  );
  return v;
};
const windows = count('windows');
const perWindow = count('batches');

const V = 57;
const T = REFERENCE.maxlen;
const B = REFERENCE.batchSize;
const MODELS = {
  reference: { units: REFERENCE.units, layers: 1, dropout: 0, scoring: 'last', carried: false },
  'ten-minutes': {
    units: PRESETS['ten-minutes'].units!,
    layers: PRESETS['ten-minutes'].layers!,
    dropout: PRESETS['ten-minutes'].dropout!,
    scoring: 'every',
    carried: false,
  },
  /** the reference model in --mode stateful: every position scored, the state carried */
  stateful: { units: REFERENCE.units, layers: 1, dropout: 0, scoring: 'every', carried: true },
} as const;
check(
  Object.hasOwn(MODELS, args.model),
  new UserError(
    `--model must be reference, ten-minutes or stateful, not ${JSON.stringify(args.model)}`,
  ),
);
const MODEL = MODELS[args.model as keyof typeof MODELS];
const H = MODEL.units;
/** the reference model renders docs/engine.md's block; another writes its own JSON only */
const JSON_FILE = args.model === 'reference' ? 'threads.json' : `threads-${args.model}.json`;

/** the q-th quantile, the nearest sample below */
const quantile = (xs: number[], q: number): number =>
  [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * q)]!;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

type CreateEngine = (opts: EngineOptions) => Promise<GradientEngine>;
type Shard = WorkerTimes['shards'][number];
const SHARD_INDICES = Array.from({ length: SHARDS }, (_, s) => s);

/** One batch's figures, ms: the whole, and (profiled) its parts. */
interface BatchSample {
  wall: number;
  optimizer: number;
  bookkeeping: number;
  times?: BatchTimes;
}

interface Config {
  engine: EngineKind;
  threads: number;
  profiled: boolean;
  label: string;
  samples: BatchSample[];
  batch(): Promise<void>;
  close(): Promise<void>;
}

async function config(
  create: CreateEngine,
  engineKind: EngineKind,
  threads: number,
  profiled: boolean,
  label: string,
): Promise<Config> {
  const rng = new Rng(1);
  const params = initParameters({ vocabSize: V, units: H, layers: MODEL.layers }, rng);
  const P = params.flat.length;
  const opt = new RmsProp(P, { learningRate: 0.001, rho: 0.9, epsilon: 1e-7 });
  const engine = await create({
    shape: params.shape,
    maxBatch: B,
    maxT: T,
    threads,
    engine: engineKind,
    ...(profiled && { profile: true }),
  });
  const x = Int32Array.from({ length: B * T }, () => rng.int(V));
  const y = Int32Array.from({ length: MODEL.scoring === 'every' ? B * T : B }, () => rng.int(V));
  const grads = new Float32Array(P);
  const goodParams = params.flat.slice();
  const goodMs = opt.state.slice();
  const samples: BatchSample[] = [];
  let record = false;
  let key = 0;
  const per = MODEL.layers * H; // one row's h (or c)
  const state = MODEL.carried
    ? { h: new Float32Array(B * per), c: new Float32Array(B * per) }
    : undefined;
  const batch = async (): Promise<void> => {
    const b: Batch = { x, y, rows: B, steps: T, scoring: MODEL.scoring, ...(state && { state }) };
    if (MODEL.dropout > 0) b.dropout = { rate: MODEL.dropout, key: ++key };
    const t0 = performance.now();
    await engine.lossAndGrads(params.flat, b, grads);
    const t1 = performance.now();
    // what trainer.ts does between the engine and the optimizer, every batch
    const norm = gradNorm(grads);
    goodParams.set(params.flat);
    goodMs.set(opt.state);
    const t2 = performance.now();
    opt.step(params.flat, grads);
    const t3 = performance.now();
    if (!Number.isFinite(norm)) throw new Error('the bench batch diverged');
    if (record) {
      const times = profiled ? (engine as unknown as WorkerEngine).lastTimes : undefined;
      samples.push({
        wall: t3 - t0,
        bookkeeping: t2 - t1,
        optimizer: t3 - t2,
        ...(times && { times }),
      });
    }
  };
  for (let i = 0; i < 3; i++) await batch(); // warm-up: JIT tiers, page faults
  record = true;
  return {
    engine: engineKind,
    threads,
    profiled,
    label,
    samples,
    batch,
    close: () => engine.close(),
  };
}

/** The figures of one configuration, medians over its batches (see ThreadsConfig). */
function summarise(c: Config): ThreadsConfig {
  const s = c.samples;
  const wall = median(s.map((b) => b.wall));
  const out: ThreadsConfig = {
    engine: c.engine,
    threads: c.threads,
    batches: s.length,
    wallMs: wall,
    seqPerSec: (B * 1000) / wall,
    p10Ms: quantile(
      s.map((b) => b.wall),
      0.1,
    ),
  };
  if (!c.profiled) return out;
  const ts = s.map((b) => b.times!);
  const m = (f: (t: BatchTimes, i: number) => number): number => median(ts.map(f));
  const lastGot = (t: BatchTimes): number => Math.max(...t.got);
  out.main = {
    post: m((t) => t.posted - t.start),
    wait: m((t) => lastGot(t) - t.posted),
    gather: m((t) => t.gathered - lastGot(t)),
    combine: m((t) => t.combined - t.gathered),
    bookkeeping: median(s.map((b) => b.bookkeeping)),
    optimizer: median(s.map((b) => b.optimizer)),
  };
  out.workers = Array.from({ length: c.threads }, (_, w) => {
    const wt = (t: BatchTimes): WorkerTimes => t.workers[w]!;
    const sum = (t: BatchTimes, f: (sh: Shard) => number): number =>
      wt(t).shards.reduce((a, sh) => a + f(sh), 0);
    const phase = (p: keyof Shard['phases']): number => m((t) => sum(t, (sh) => sh.phases[p]));
    return {
      toWorker: m((t) => wt(t).received - t.sent[w]!),
      setParams: m((t) => wt(t).paramsSet - wt(t).received),
      compute: m((t) => sum(t, (sh) => sh.computed - sh.start)),
      phases: {
        forward: phase('forward'),
        head: phase('head'),
        backward: phase('backward'),
        weightGrads: phase('weightGrads'),
        dropout: phase('dropout'),
        js: phase('js'),
      },
      gradCopy: m((t) => sum(t, (sh) => sh.end - sh.computed)),
      fromWorker: m((t) => t.got[w]! - wt(t).replied),
      busy: m((t) => wt(t).replied - wt(t).received),
      // of the whole batch as the trainer sees it (engine, bookkeeping, optimizer)
      idle: median(s.map((b) => b.wall - (wt(b.times!).replied - wt(b.times!).received))),
    };
  });
  // each shard's pass, whichever worker ran it (shard s is worker s % threads's): wall, on a CPU,
  // and waiting for one
  const shard = (t: BatchTimes, sh: number): Shard =>
    t.workers[sh % c.threads]!.shards[Math.floor(sh / c.threads)]!;
  out.shardMs = SHARD_INDICES.map((sh) => m((t) => shard(t, sh).computed - shard(t, sh).start));
  if (ts[0] && shard(ts[0], 0).cpu !== undefined) {
    out.shardCpuMs = SHARD_INDICES.map((sh) => m((t) => shard(t, sh).cpu!));
    out.shardQueuedMs = SHARD_INDICES.map((sh) => m((t) => shard(t, sh).queued!));
  }
  return out;
}

/** lscpu's view of the cores: are the two "cores" SMT siblings of one physical core? */
function topology(): ThreadsResults['topology'] {
  const r = spawnSync('lscpu', [], { encoding: 'utf8' });
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(r.stdout ?? '')?.[1]?.trim();
  let siblings: string | undefined;
  try {
    siblings = readFileSync(
      '/sys/devices/system/cpu/cpu0/topology/thread_siblings_list',
      'utf8',
    ).trim();
  } catch {
    siblings = undefined;
  }
  return {
    threadsPerCore: Number(field('Thread\\(s\\) per core') ?? NaN),
    coresPerSocket: Number(field('Core\\(s\\) per socket') ?? NaN),
    l2: field('L2 cache') ?? 'unknown',
    l3: field('L3 cache') ?? 'unknown',
    ...(field('Hypervisor vendor') && { hypervisor: field('Hypervisor vendor')! }),
    ...(siblings !== undefined && { cpu0Siblings: siblings }),
  };
}

/** docs/engine.md's bench:threads block rewritten from docs/threads.json. */
function renderDoc(): void {
  const docUrl = new URL('../docs/engine.md', import.meta.url);
  const doc = readFileSync(docUrl, 'utf8');
  const block = renderThreads(readDoc<ThreadsResults>('threads.json'));
  writeFileSync(docUrl, replaceBlocks(doc, { [THREADS_BLOCK]: block }));
}

async function main(): Promise<void> {
  if (args.render) {
    renderDoc();
    return;
  }
  const loadStart = os.loadavg();
  const date = new Date().toISOString();
  const began = performance.now();
  log(`bench:threads: load average ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);
  const { createEngine } = await import('../src/engine/gradient-engine.ts');
  const engines: EngineKind[] =
    (await resolveEngine('auto')) === 'native' ? ['native', 'wasm'] : ['wasm'];
  const configs: Config[] = [];
  for (const e of engines)
    for (const threads of [1, 2])
      for (const profiled of [true, false])
        configs.push(
          await config(createEngine, e, threads, profiled, `${e}${threads}${profiled ? 'p' : ''}`),
        );
  const compared: Config[] = [];
  if (args.compare) {
    const dir = path.resolve(args.compare);
    const other = (await import(path.join(dir, 'src/engine/gradient-engine.ts'))) as {
      createEngine: CreateEngine;
    };
    for (const e of engines)
      for (const threads of [1, 2])
        for (const profiled of [true, false])
          compared.push(
            await config(other.createEngine, e, threads, profiled, `compare ${e}${threads}`),
          );
  }
  const all = [...configs, ...compared];
  for (let w = 0; w < windows; w++) {
    for (const c of all)
      for (let j = 0; j < perWindow * (c.engine === 'native' ? 2 : 1); j++) await c.batch();
    log(`window ${w + 1}/${windows}`);
  }
  for (const c of all) await c.close();
  const results: ThreadsResults = {
    format: 1,
    command: 'npm run bench:threads',
    date,
    machine: runMachine(loadStart),
    topology: topology(),
    shape: {
      batch: B,
      steps: T,
      units: H,
      vocab: V,
      layers: MODEL.layers,
      dropout: MODEL.dropout,
      scoring: MODEL.scoring,
      carried: MODEL.carried,
    },
    windows,
    seconds: (performance.now() - began) / 1000,
    profiled: configs.filter((c) => c.profiled).map(summarise),
    plain: configs.filter((c) => !c.profiled).map(summarise),
    ...(args.compare && {
      compare: {
        dir: args.compare,
        profiled: compared.filter((c) => c.profiled).map(summarise),
        plain: compared.filter((c) => !c.profiled).map(summarise),
      },
    }),
  };
  const text = JSON.stringify(results, null, 2) + '\n';
  if (args.compare) {
    // the parts a change to the messages would move, this tree against the other
    const parts = (c: ThreadsConfig): string => {
      const w = c.workers!;
      const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join('/');
      return (
        `post ${c.main!.post.toFixed(2)}, to worker ${f(w.map((x) => x.toWorker))}, ` +
        `setParams ${f(w.map((x) => x.setParams))}, grad copy ${f(w.map((x) => x.gradCopy))}, ` +
        `back ${f(w.map((x) => x.fromWorker))}, combine ${c.main!.combine.toFixed(2)}`
      );
    };
    for (const c of results.compare!.profiled) {
      const mine = results.profiled.find((p) => p.engine === c.engine && p.threads === c.threads)!;
      log(`${c.engine}, ${c.threads} thread(s), profiled: this tree ${parts(mine)}`);
      log(`${' '.repeat(c.engine.length + 23)}${args.compare}: ${parts(c)}`);
    }
    for (const c of results.compare!.plain) {
      const mine = results.plain.find((p) => p.engine === c.engine && p.threads === c.threads)!;
      log(
        `${c.engine}, ${c.threads} thread(s): this tree ${mine.wallMs.toFixed(2)} ms/batch, ` +
          `${args.compare} ${c.wallMs.toFixed(2)}: ${(c.wallMs / mine.wallMs).toFixed(3)}× faster here`,
      );
    }
  }
  if (args['no-write']) {
    process.stdout.write(text);
    return;
  }
  writeFileSync(new URL(`../docs/${JSON_FILE}`, import.meta.url), text);
  if (JSON_FILE !== 'threads.json') {
    log(`wrote docs/${JSON_FILE} (${results.seconds.toFixed(0)} s)`);
    return;
  }
  renderDoc();
  log(
    `wrote docs/threads.json and docs/engine.md's ${THREADS_BLOCK} block (${results.seconds.toFixed(0)} s)`,
  );
}

await main();
