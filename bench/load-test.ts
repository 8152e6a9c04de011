// npm run load-test [-- --mode window|stateful] [--connections 50] [--duration 20] [--length 100]
//
// `charlstm serve` under load, on this machine only (127.0.0.1): a reference-shape model (57
// characters, LSTM(128), random weights) saved to a temporary folder, served by a real
// `charlstm serve` process; then autocannon sends POST /v1/generate from `connections` clients
// for `duration` seconds, twice. Prints latency (p50, p99), requests/s and characters/s of each
// run, and the server's resident memory after each run (its growth between the runs shows a
// leak). Fails (exit code 1) on any failed request: an error, a timeout or a non-2xx answer.
// Bounded: each run stops after `duration` seconds, and the server is stopped at the end.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import autocannon from 'autocannon';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { BENCH_VOCAB } from './generate-bench.ts';
import { REFERENCE } from '../src/defaults.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'window' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '20' },
    length: { type: 'string', default: '100' },
  },
});
const connections = Number(args.connections);
const duration = Number(args.duration);
const length = Number(args.length);
const mode = args.mode;
if (mode !== 'window' && mode !== 'stateful')
  throw new Error(`--mode must be window or stateful, got ${mode}`);
for (const [k, v] of Object.entries({ connections, duration, length })) {
  if (!(Number.isInteger(v) && v > 0 && v <= 10_000))
    throw new Error(`--${k} must be an integer from 1 to 10000`);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

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

/** Start `charlstm serve` on a free loopback port; resolves with its address. */
async function startServer(modelDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'serve',
      '--model',
      modelDir,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--max-streams',
      String(connections * 2),
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
        throw new Error('charlstm serve did not start');
      out += chunk;
    }
  } finally {
    clearTimeout(deadline);
  }
  const url = /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  if (!url) throw new Error(`unexpected first line from charlstm serve: ${out}`);
  return { child, url };
}

interface RunFigures {
  p50: number;
  p99: number;
  requestsPerSec: number;
  charsPerSec: number;
  ok: number;
  failed: number;
  rssMB: number | undefined;
}

async function run(url: string, pid: number): Promise<RunFigures> {
  const result = await autocannon({
    url: `${url}/v1/generate`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'the meaning of life is ', length, temperature: 0.5, mode }),
    connections,
    duration,
    timeout: 30,
  });
  const ok = result['2xx'];
  return {
    p50: result.latency.p50,
    p99: result.latency.p99,
    requestsPerSec: ok / duration,
    charsPerSec: (ok * length) / duration,
    ok,
    failed: result.errors + result.timeouts + result.non2xx,
    rssMB: await rssMB(pid),
  };
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-load-'));
let server: { child: ChildProcess; url: string } | undefined;
try {
  const modelDir = path.join(tmp, 'reference-shape');
  const shape = { vocabSize: BENCH_VOCAB.length, units: REFERENCE.units };
  await saveModel(modelDir, initParameters(shape, new Rng(1)), {
    vocab: BENCH_VOCAB,
    lowercase: true,
    maxlen: REFERENCE.maxlen,
    step: REFERENCE.stride,
    units: REFERENCE.units,
    training: {},
  });
  server = await startServer(modelDir);
  const pid = server.child.pid!;
  const before = await rssMB(pid);
  process.stdout.write(
    `charlstm serve at ${server.url} (pid ${pid}, RSS ${before?.toFixed(0)} MB): ${connections} clients, ` +
      `${duration} s per run, POST /v1/generate length ${length}, ${mode} mode\n`,
  );
  const runs: RunFigures[] = [];
  for (let i = 1; i <= 2; i++) {
    const r = await run(server.url, pid);
    runs.push(r);
    process.stdout.write(
      `run ${i}: ${r.ok} ok, ${r.failed} failed; latency p50 ${r.p50} ms, p99 ${r.p99} ms; ` +
        `${r.requestsPerSec.toFixed(1)} requests/s, ${r.charsPerSec.toFixed(0)} chars/s; ` +
        `server RSS ${r.rssMB?.toFixed(0)} MB\n`,
    );
  }
  const [a, b] = runs as [RunFigures, RunFigures];
  if (a.rssMB !== undefined && b.rssMB !== undefined) {
    process.stdout.write(
      `server RSS growth from run 1 to run 2: ${(b.rssMB - a.rssMB).toFixed(1)} MB\n`,
    );
  }
  const failed = a.failed + b.failed;
  if (failed > 0) {
    process.stderr.write(`load test: ${failed} failed requests\n`);
    process.exitCode = 1;
  }
} finally {
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGTERM');
    await once(server.child, 'exit');
  }
  await rm(tmp, { recursive: true, force: true });
}
