// npm run load-test [-- --mode stateful|window] [--clients 1,8,64,256] [--duration 8]
//                      [--length 400] [--no-unbatched] [--model NAME] [--write] [--cpu-prof DIR]
//
// `charlstm serve` under load, on this machine only (127.0.0.1): a reference-shape model (57
// characters, LSTM(128), Keras-initialised random weights) saved to a temporary folder, or with
// --model a built-in model or a model folder (e.g. moby-dick, 2 × LSTM(256)), served
// by two real server processes, one batching generations (the default: src/generate/batcher.ts)
// and one running each on its own single-row stepper (`batch: false`). For each number of
// clients, every client streams POST /v1/generate (`stream: true`, `length` characters, a
// 23-character prompt, temperature 0.5, a random seed) one request after the other for
// `duration` seconds; requests still running then are finished and counted. Per run: the
// aggregate characters/s (every completed request's characters over the time to the last
// completion), the time to first character (from sending a request to its first event with text;
// median and p99 over every request) and the server's resident memory after the run. Fails
// (exit code 1) on any failed request.
//
// --write merges the runs into docs/load-test.json (one series per mode and batching, replaced
// when measured again) and `node --import tsx bench/render.ts` renders the README's
// bench:load-test block from it. The issue's target (issue 15): at 64 clients, aggregate
// throughput at least 5 times one client's, with p99 time to first character under 50 ms.
//
// The server processes are this file run with --serve (they build the app with buildServer, so
// that the comparison can switch batching off, which `charlstm serve` does not offer).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { BENCH_META, BENCH_SHAPE } from './generate-bench.ts';
import { resolveModel } from '../src/checkpoint/builtin-models.ts';
import { layerCount } from '../src/model/params.ts';
import type {
  Arithmetic,
  LoadTestModel,
  LoadTestResults,
  LoadTestRun,
  LoadTestSeries,
} from './render.ts';

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'stateful' },
    clients: { type: 'string', default: '1,8,64,256' },
    duration: { type: 'string', default: '8' },
    length: { type: 'string', default: '400' },
    'no-unbatched': { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    serve: { type: 'string' }, // internal: be the server of this model folder
    batch: { type: 'string', default: 'yes' },
    'max-streams': { type: 'string', default: '64' },
    /** a folder: the server processes write V8 CPU profiles there (node --cpu-prof) */
    'cpu-prof': { type: 'string' },
    /** a built-in model's name or a model folder, instead of the reference shape */
    model: { type: 'string' },
    /** the servers' generation threads (CharModel.load's `threads`; default: its default) */
    threads: { type: 'string' },
  },
});

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROMPT = 'the meaning of life is ';
const TEMPERATURE = 0.5;

if (args.serve !== undefined) await serve(args.serve);
else await main();

/** --threads as CharModel.load takes it. */
function threadsOpt(): { threads?: 1 | 2 } {
  if (args.threads === undefined) return {};
  if (args.threads !== '1' && args.threads !== '2')
    throw new Error(`--threads must be 1 or 2, got ${args.threads}`);
  return { threads: Number(args.threads) as 1 | 2 };
}

/** The server process: the model folder served on a free loopback port; prints its address. */
async function serve(dir: string): Promise<void> {
  const { buildServer } = await import('../src/server/app.ts');
  const { loadModels } = await import('../src/server/served-models.ts');
  const app = buildServer({
    models: await loadModels([dir], threadsOpt()),
    maxStreams: Number(args['max-streams']),
    batch: args.batch === 'yes',
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`serving ${address}\n`);
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

/** What the series served: the reference shape (random weights), or the named model. */
async function describeModel(dir: string, name: string | undefined): Promise<LoadTestModel> {
  const { CharModel } = await import('../src/model/char-model.ts');
  const model = await CharModel.load(dir);
  const { shape } = model.params;
  return {
    name: name === undefined ? 'reference-shape' : path.basename(name),
    characters: model.vocab.size,
    units: shape.units,
    layers: layerCount(shape),
    trained: name !== undefined,
  };
}

/** Resident memory of a process, in MB (Linux: /proc/<pid>/status). */
async function rssMB(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

interface Server {
  child: ChildProcess;
  host: string;
  port: number;
}

/** Start this file as a server (batching or not); resolves with its address. */
async function startServer(modelDir: string, batch: boolean, maxStreams: number): Promise<Server> {
  const child = spawn(
    process.execPath,
    [
      ...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`] : []),
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--serve',
      modelDir,
      '--batch',
      batch ? 'yes' : 'no',
      '--max-streams',
      String(maxStreams),
      ...(args.threads !== undefined ? ['--threads', args.threads] : []),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    while (!out.includes('\n')) {
      const [chunk] = (await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')])) as [
        Buffer,
      ];
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error('the load-test server did not start');
      out += chunk;
    }
  } finally {
    clearTimeout(deadline);
  }
  const m = /serving http:\/\/(127\.0\.0\.1):(\d+)/.exec(out);
  if (!m) throw new Error(`unexpected first line from the load-test server: ${out}`);
  return { child, host: m[1]!, port: Number(m[2]) };
}

/** One streamed generation: ms to the first event with text, and the characters the done event counts. */
function streamOnce(
  server: Server,
  agent: http.Agent,
  body: string,
): Promise<{ ttfc: number; chars: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttfc: number | undefined;
    let text = '';
    const req = http.request(
      {
        host: server.host,
        port: server.port,
        path: '/v1/generate',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          if (ttfc === undefined && text.includes('data: {"text":"')) ttfc = performance.now() - t0;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}: ${text}`));
          const done = /event: done\ndata: (.*)\n/.exec(text)?.[1];
          if (!done || ttfc === undefined)
            return reject(new Error(`no done event: ${text.slice(-300)}`));
          resolve({ ttfc, chars: (JSON.parse(done) as { chars: number }).chars });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** `clients` clients streaming one request after another for `duration` seconds. */
async function runLevel(
  server: Server,
  clients: number,
  mode: string,
  length: number,
  duration: number,
): Promise<LoadTestRun> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const ttfcs: number[] = [];
  let chars = 0;
  let failed = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const end = t0 + duration * 1000;
  let last = t0;
  const seeds = new Rng(clients);
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const seed = seeds.nextU32();
        const body = JSON.stringify({
          prompt: PROMPT,
          length,
          temperature: TEMPERATURE,
          mode,
          seed,
          stream: true,
        });
        try {
          const r = await streamOnce(server, agent, body);
          ttfcs.push(r.ttfc);
          chars += r.chars;
          last = performance.now();
        } catch (err) {
          failed++;
          firstError ??= String(err);
        }
      }
    }),
  );
  agent.destroy();
  if (firstError) process.stderr.write(`  first failure: ${firstError}\n`);
  ttfcs.sort((a, b) => a - b);
  const seconds = (last - t0) / 1000;
  return {
    clients,
    requests: ttfcs.length,
    failed,
    chars,
    seconds: Number(seconds.toFixed(3)),
    charsPerSec: Math.round(chars / seconds),
    ttfcMedianMs: Number(quantile(ttfcs, 0.5).toFixed(2)),
    ttfcP99Ms: Number(quantile(ttfcs, 0.99).toFixed(2)),
    serverRssMB: Math.round((await rssMB(server.child.pid!)) ?? NaN),
  };
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}

/**
 * What one character costs in this process, on the model served (its default engine): the
 * model's step alone (stateful: one single-row step; window: one window of maxlen from a zero
 * state), the same in a batch of 64 (per row), and one draw at the load test's temperature. The
 * median of 7 timings each.
 */
async function arithmetic(modelDir: string, mode: 'window' | 'stateful'): Promise<Arithmetic> {
  const { CharModel, defaultGenerationThreads } = await import('../src/model/char-model.ts');
  const { Drawer } = await import('../src/generate/stateful.ts');
  const { Sampler } = await import('../src/sampling/sampler.ts');
  const threads = threadsOpt().threads ?? (await defaultGenerationThreads());
  const B = 64;
  const time = (reps: number, fn: () => void): number => {
    const ts: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) fn();
      ts.push(((performance.now() - t0) * 1000) / reps);
    }
    return median(ts);
  };
  const steps = async (threads: 1 | 2): Promise<{ aloneUs: number; batchedUs: number }> => {
    const model = await CharModel.load(modelDir, { threads });
    const T = model.maxlen;
    const x = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % model.vocab.size);
    if (mode === 'window') {
      return {
        aloneUs: time(200, () => void model.predictTokens(x, 1, T)),
        batchedUs: time(5, () => void model.predictTokens(x, B, T)) / B,
      };
    }
    const s = model.stepper();
    const aloneUs = time(20_000, () => void s.step(3));
    s.release();
    const core = model.batchStepCore(B);
    core.resetState(B);
    return { aloneUs, batchedUs: time(500, () => void core.step(x, B)) / B };
  };
  const served = await steps(threads);
  const single = threads === 2 ? await steps(1) : undefined;
  const model = await CharModel.load(modelDir, { threads: 1 });
  const probs = model.predict(PROMPT);
  const drawer = new Drawer(new Sampler({ temperature: TEMPERATURE }), model.vocab.size);
  const rng = new Rng(1);
  const drawUs = time(20_000, () => void drawer.next(probs, rng));
  const r = (v: number): number => Number(v.toFixed(3));
  return {
    rows: B,
    threads,
    aloneUs: r(served.aloneUs),
    batchedUs: r(served.batchedUs),
    drawUs: r(drawUs),
    ...(single && { oneThread: { aloneUs: r(single.aloneUs), batchedUs: r(single.batchedUs) } }),
  };
}

async function main(): Promise<void> {
  const mode = args.mode;
  if (mode !== 'window' && mode !== 'stateful')
    throw new Error(`--mode must be window or stateful, got ${mode}`);
  const duration = Number(args.duration);
  const length = Number(args.length);
  const levels = args.clients.split(',').map(Number);
  for (const [k, v] of [
    ['duration', duration],
    ['length', length],
    ...levels.map((c) => ['clients', c] as const),
  ] as const) {
    if (!(Number.isInteger(v) && v > 0 && v <= 10_000))
      throw new Error(`--${k} must be an integer from 1 to 10000`);
  }
  const batchings = args['no-unbatched'] ? [true] : [true, false];
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-load-'));
  const servers = new Map<boolean, Server>();
  const loadStart = os.loadavg();
  const series: Omit<LoadTestSeries, 'command' | 'date' | 'loadAverage'>[] = [];
  let failed = 0;
  try {
    let modelDir = path.join(tmp, 'reference-shape');
    if (args.model !== undefined) {
      modelDir = await resolveModel(args.model);
    } else {
      await saveModel(modelDir, initParameters(BENCH_SHAPE, new Rng(1)), BENCH_META);
    }
    const served = await describeModel(modelDir, args.model);
    const maxStreams = 2 * Math.max(...levels);
    const cost = await arithmetic(modelDir, mode);
    process.stdout.write(
      `a character on ${cost.threads} thread(s): alone ${cost.aloneUs} µs, in a batch of ${cost.rows} ` +
        `${cost.batchedUs} µs a row; a draw ${cost.drawUs} µs` +
        (cost.oneThread
          ? ` (one thread: ${cost.oneThread.aloneUs} and ${cost.oneThread.batchedUs} µs)\n`
          : '\n'),
    );
    for (const batch of batchings) {
      servers.set(batch, await startServer(modelDir, batch, maxStreams));
      series.push({
        model: served,
        mode,
        batched: batch,
        length,
        duration,
        arithmetic: cost,
        runs: [],
      });
    }
    process.stdout.write(
      `${served.name}: ${served.characters} characters, ${served.layers} × LSTM(${served.units}); ${mode} mode, ` +
        `${length} characters a request, ${duration} s per run\n`,
    );
    // warm-up (JIT, kernels, connections), not counted; no more clients than the server admits
    const warmClients = Math.min(8, Math.max(...levels));
    for (const batch of batchings) {
      await runLevel(servers.get(batch)!, warmClients, mode, length, 1);
    }
    // the levels in turn, each batched then not, so that the machine's other load hits both alike
    for (const clients of levels) {
      for (const [i, batch] of batchings.entries()) {
        const r = await runLevel(servers.get(batch)!, clients, mode, length, duration);
        series[i]!.runs.push(r);
        failed += r.failed;
        process.stdout.write(
          `${batch ? 'batched  ' : 'unbatched'} ${String(clients).padStart(4)} clients: ` +
            `${r.requests} requests (${r.failed} failed), ${r.charsPerSec} chars/s, ` +
            `first character median ${r.ttfcMedianMs} ms, p99 ${r.ttfcP99Ms} ms; ` +
            `server RSS ${r.serverRssMB} MB\n`,
        );
      }
    }
  } finally {
    for (const s of servers.values()) {
      if (s.child.exitCode === null) {
        s.child.kill('SIGTERM');
        await once(s.child, 'exit');
      }
    }
    await rm(tmp, { recursive: true, force: true });
  }
  if (args.write) {
    const file = path.join(ROOT, 'docs', 'load-test.json');
    const old = existsSync(file)
      ? (JSON.parse(readFileSync(file, 'utf8')) as LoadTestResults)
      : undefined;
    const kept = (old?.format === 2 ? old.series : []).filter(
      (s) =>
        !series.some(
          (n) => n.model.name === s.model.name && n.mode === s.mode && n.batched === s.batched,
        ),
    );
    const command =
      `npm run load-test -- --mode ${mode} --clients ${levels.join(',')} --duration ${duration} ` +
      `--length ${length}${args['no-unbatched'] ? ' --no-unbatched' : ''}` +
      `${args.model !== undefined ? ` --model ${args.model}` : ''} --write`;
    const date = new Date().toISOString();
    const loadAverage = { start: loadStart, end: os.loadavg() };
    for (const s of series) Object.assign(s, { command, date, loadAverage });
    const results: LoadTestResults = {
      format: 2,
      machine: {
        cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
        cores: os.cpus().length,
        node: process.version,
      },
      prompt: PROMPT,
      temperature: TEMPERATURE,
      series: [...kept, ...(series as LoadTestSeries[])],
    };
    writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
    process.stdout.write(
      'wrote docs/load-test.json; `node --import tsx bench/render.ts` renders the README\n',
    );
  }
  if (failed > 0) {
    process.stderr.write(`load test: ${failed} failed requests\n`);
    process.exitCode = 1;
  }
}
