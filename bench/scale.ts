// How charlstm's corpus pipeline scales (issue 13): for generated corpora of 1, 10 and 100 MB (and
// 1 GB with --sizes 1,10,100,1000), the real CLI process's
//   1. preparation: `train --dry-run` with an empty cache (builds the token file), in MB/s, and a
//      second dry run that reuses it;
//   2. training: one epoch of about 200 batches (--step chosen for it), its end included
//      (validation, samples, the memorisation report, the saves): wall time, seq/s, peak RSS;
// and the same training run on one corpus of more than 2,000 distinct characters.
//
//   npm run bench:scale [-- --sizes 1,10,100] [--no-write]
// writes docs/scale.json (unless --no-write) and prints a table; `node --import tsx bench/render.ts`
// then renders the README's bench:scale block from it.
//
// The corpora are the Moby-Dick text of the npm dependency (no download), copied until the size
// is reached, each copy in a seeded order of its lines and each line in a seeded case (as is,
// lower, upper, title), so that the file is not one string repeated. The CLI is bin/charlstm.js
// on dist/ compiled from the current src/ (bench/train-rss.ts's buildCli), with a temporary
// CHARLSTM_HOME; peak RSS comes from GNU time where it is installed, else VmHWM polled.

import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { BUILTIN_CORPORA } from '../src/corpus/corpus.ts';
import { CORPUS, REFERENCE } from '../src/defaults.ts';
import {
  int,
  renderScaleSvg,
  SCALE_SVG,
  type ScaleResults,
  type ScaleRun,
  type ScaleTargets,
} from './render.ts';
import { buildCli } from './train-rss.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const MB = 1_000_000; // corpus sizes are decimal megabytes, as MB/s is
const BATCHES = 200; // training batches per measured epoch
const TARGET = { prepareMBps: 50, maxRssMiB: 600, speedWithin: 0.1 };
const WIDE_BYTES = 2 * MB;
const WIDE_POOL = 2_500; // distinct characters the wide corpus draws from

/** mulberry32: a small seeded generator, enough to vary lines, not to be a statistic. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function mobyDickText(): string {
  const npm = BUILTIN_CORPORA['moby-dick']!.npm!;
  const pkg = createRequire(import.meta.url).resolve(`${npm.package}/package.json`);
  return readFileSync(path.join(path.dirname(pkg), npm.file), 'utf8');
}

const title = (s: string): string => s.replace(/\b\p{L}/gu, (c) => c.toUpperCase());

/** Moby-Dick's lines, copy after copy, each copy reordered and recased, to `bytes` bytes of UTF-8. */
export function writeMobyCorpus(file: string, bytes: number, seed = 1): void {
  const lines = mobyDickText().split('\n');
  const rand = rng(seed);
  const fd = openSync(file, 'w');
  try {
    let written = 0;
    while (written < bytes) {
      const order = lines.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const cased = order.map((i) => {
        const line = lines[i]!;
        const r = rand();
        return r < 0.55
          ? line
          : r < 0.75
            ? line.toLowerCase()
            : r < 0.9
              ? title(line)
              : line.toUpperCase();
      });
      let buf = Buffer.from(cased.join('\n') + '\n');
      if (written + buf.length > bytes) {
        buf = buf.subarray(0, bytes - written);
        while (buf.length > 0 && (buf[buf.length - 1]! & 0xc0) === 0x80) buf = buf.subarray(0, -1);
        if (buf.length > 0 && buf[buf.length - 1]! >= 0xc0) buf = buf.subarray(0, -1); // no half character
        if (buf.length === 0) break;
      }
      writeSync(fd, buf);
      written += buf.length;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * About `bytes` of "words" of 1 to 6 characters drawn from WIDE_POOL code points of the Hangul
 * syllables and CJK ideographs (seeded), separated by spaces, a line break every ~12 words.
 */
export function writeWideCorpus(file: string, bytes: number, seed = 2): void {
  const rand = rng(seed);
  const pool: string[] = [];
  const seen = new Set<number>();
  while (pool.length < WIDE_POOL) {
    const cp =
      rand() < 0.5
        ? 0xac00 + Math.floor(rand() * 11172) // Hangul syllables
        : 0x4e00 + Math.floor(rand() * 0x5200); // CJK unified ideographs
    if (!seen.has(cp)) {
      seen.add(cp);
      pool.push(String.fromCodePoint(cp));
    }
  }
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const n = 1 + Math.floor(rand() * 6);
    let w = '';
    for (let i = 0; i < n; i++) w += pool[Math.floor(rand() * pool.length)]!;
    w += rand() < 1 / 12 ? '\n' : ' ';
    parts.push(w);
    size += Buffer.byteLength(w);
  }
  writeFileSync(file, parts.join(''));
}

interface Proc {
  code: number | null;
  output: string;
  seconds: number;
  maxRssMiB: number;
}

/** Run `charlstm ...args` as a user would, timed, with its peak resident memory. */
async function runCli(
  cli: string[],
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<Proc> {
  const timeFile = path.join(cwd, 'time.txt');
  const gnuTime = existsSync('/usr/bin/time');
  const argv = gnuTime
    ? ['/usr/bin/time', '-f', '%M', '-o', timeFile, process.execPath, ...cli, ...args]
    : [process.execPath, ...cli, ...args];
  const t0 = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
  let polled = 0;
  const poll = gnuTime
    ? undefined
    : setInterval(() => {
        const m = /VmHWM:\s+(\d+) kB/.exec(
          (() => {
            try {
              return readFileSync(`/proc/${child.pid!}/status`, 'utf8');
            } catch {
              return '';
            }
          })(),
        );
        if (m) polled = Math.max(polled, Number(m[1]));
      }, 50);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const seconds = (performance.now() - t0) / 1000;
  if (poll) clearInterval(poll);
  const kB = gnuTime ? Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop()) : polled;
  return { code, output, seconds, maxRssMiB: kB / 1024 };
}

function mustSucceed(p: Proc, what: string): Proc {
  if (p.code !== 0)
    throw new Error(
      `${what} exited with ${p.code}:\n${p.output.split('\n').slice(-15).join('\n')}`,
    );
  return p;
}

const num = (s: string): number => Number(s.replace(/,/g, ''));

/** One corpus through the measurements above. */
async function measure(
  cli: string[],
  dir: string,
  corpus: { file: string; label: string; kind: ScaleRun['kind'] },
  withPreparation: boolean,
): Promise<ScaleRun> {
  const home = path.join(dir, `home-${corpus.label}`);
  const env: NodeJS.ProcessEnv = { ...process.env, CHARLSTM_HOME: home, CHARLSTM_DEBUG: '' };
  delete env.CHARLSTM_DATA_DIR;
  const bytes = statSync(corpus.file).size;
  const shown = `<${corpus.label}>`;
  const log = (s: string): void => void process.stderr.write(`  ${corpus.label}: ${s}\n`);

  // a corpus beyond the default --max-corpus-bytes (CORPUS.maxBytes) names its size explicitly, as a
  // user would: training never holds it as one string, so the limit is only a guard
  const limit = bytes > CORPUS.maxBytes ? ['--max-corpus-bytes', String(bytes)] : [];
  // the first dry run reads the text, builds the token file, and says how many characters it has
  const dry = ['train', '--corpus', corpus.file, ...limit, '--dry-run'];
  const first = mustSucceed(await runCli(cli, dry, env, dir), 'the first dry run');
  const chars = /^corpus length: (\d+)$/m.exec(first.output);
  const vocab = /^unique characters: (\d+)$/m.exec(first.output);
  if (!chars || !vocab) throw new Error(`cannot read the dry run's figures:\n${first.output}`);
  const tokenFiles = (): string[] => readdirSync(path.join(home, 'tokens'));
  if (tokenFiles().length !== 1)
    throw new Error(`the dry run left ${tokenFiles().length} token files`);
  const tokenPath = path.join(home, 'tokens', tokenFiles()[0]!);
  const built = statSync(tokenPath).mtimeMs;
  log(`prepared ${int(num(chars[1]!))} characters in ${first.seconds.toFixed(1)} s`);
  let preparation: ScaleRun['preparation'];
  if (withPreparation) {
    const second = mustSucceed(await runCli(cli, dry, env, dir), 'the second dry run');
    if (tokenFiles().length !== 1 || statSync(tokenPath).mtimeMs !== built)
      throw new Error('the second dry run rebuilt the token file instead of reusing it');
    preparation = {
      command: `charlstm train --corpus ${shown}${limit.length ? ` ${limit.join(' ')}` : ''} --dry-run`,
      firstSeconds: first.seconds,
      firstMaxRssMiB: first.maxRssMiB,
      mbPerSec: bytes / MB / first.seconds,
      reuseSeconds: second.seconds,
      reuseMaxRssMiB: second.maxRssMiB,
    };
    log(`reused it in ${second.seconds.toFixed(1)} s`);
  }

  // --step so that the 90% trained on gives about BATCHES batches: chars × 0.9 / step windows
  const step = Math.max(1, Math.round((num(chars[1]!) * 0.9) / (BATCHES * REFERENCE.batchSize)));
  const trainArgs = [
    '--epochs',
    '1',
    '--step',
    String(step),
    '--sample-length',
    '100',
    '--seed',
    '1',
  ];
  const out = path.join(dir, `model-${corpus.label}`);
  const t = await runCli(
    cli,
    ['train', '--corpus', corpus.file, ...limit, ...trainArgs, '--out', out],
    env,
    dir,
  );
  mustSucceed(t, 'charlstm train');
  const generation = await measureGeneration(cli, out, env, dir);
  log(`generated ${int(generation.charsPerSec)} characters/s`);
  rmSync(out, { recursive: true, force: true });
  const epoch = /^Epoch 1\/1: .* - ([\dhms]+) - ([\d,]+) seq\/s$/m.exec(t.output);
  const windows = /training windows: ([\d,]+), validation windows: ([\d,]+)/.exec(t.output);
  const need: [string, RegExp][] = [
    ['validation', /val_loss \d/],
    ['samples', /------ temperature: /],
    ['memorisation report', /copied from the corpus/],
    ['model saved', /model saved to /],
  ];
  const missing = need.filter(([, re]) => !re.test(t.output)).map(([w]) => w);
  if (!epoch || !windows || missing.length > 0)
    throw new Error(`the train run printed no ${missing.join(', ') || 'epoch line'}:\n${t.output}`);
  const trainingWindows = num(windows[1]!);
  const training: ScaleRun['training'] = {
    command: `charlstm train --corpus ${shown}${limit.length ? ` ${limit.join(' ')}` : ''} ${trainArgs.join(' ')} --out <temporary folder>`,
    step,
    trainingWindows,
    validationWindows: num(windows[2]!),
    batches: Math.ceil(trainingWindows / REFERENCE.batchSize),
    wallSeconds: t.seconds,
    seqPerSec: num(epoch[2]!),
    maxRssMiB: t.maxRssMiB,
    covered: need.map(([w]) => w),
  };
  log(
    `trained ${training.batches} batches at ${int(training.seqPerSec)} seq/s, ${t.seconds.toFixed(1)} s, peak ${int(t.maxRssMiB)} MiB`,
  );
  return {
    label: corpus.label,
    kind: corpus.kind,
    bytes,
    chars: num(chars[1]!),
    vocab: num(vocab[1]!),
    ...(preparation && { preparation }),
    training,
    generation,
  };
}

const GENERATE_LENGTHS: [number, number] = [2_000, 200_000];

/** Stateful generation from the model in `out`, characters a second net of the process's start-up. */
async function measureGeneration(
  cli: string[],
  out: string,
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<NonNullable<ScaleRun['generation']>> {
  const args = (length: number): string[] => [
    'generate',
    '--model',
    out,
    '--prompt',
    '',
    '--mode',
    'stateful',
    '--seed',
    '1',
    '--length',
    String(length),
  ];
  const seconds: number[] = [];
  for (const length of GENERATE_LENGTHS) {
    seconds.push(
      mustSucceed(await runCli(cli, args(length), env, dir), 'charlstm generate').seconds,
    );
  }
  const [short, long] = GENERATE_LENGTHS;
  return {
    command: `charlstm generate --model <the trained model> --prompt '' --mode stateful --seed 1 --length N`,
    lengths: GENERATE_LENGTHS,
    seconds: [seconds[0]!, seconds[1]!],
    charsPerSec: (long - short) / (seconds[1]! - seconds[0]!),
  };
}

/** Pass or fail of each target, per row: derived from the runs, as render.ts shows them. */
export function judge(runs: ScaleRun[]): ScaleTargets {
  const moby = runs.filter((r) => r.kind === 'moby-dick');
  const smallest = moby[0]!;
  const largest = moby[moby.length - 1]!;
  return {
    prepareMBps: TARGET.prepareMBps,
    maxRssMiB: TARGET.maxRssMiB,
    speedWithin: TARGET.speedWithin,
    rows: runs.map((r) => ({
      label: r.label,
      ...(r.preparation && { prepare: r.preparation.mbPerSec >= TARGET.prepareMBps }),
      rss: r.training.maxRssMiB < TARGET.maxRssMiB,
      ...(r === largest &&
        largest !== smallest && {
          speed: r.training.seqPerSec >= (1 - TARGET.speedWithin) * smallest.training.seqPerSec,
        }),
    })),
  };
}

function table(r: ScaleResults): string {
  const lines = [
    'corpus         bytes          chars  vocab  prep MB/s  reuse s  train s    seq/s  peak MiB',
  ];
  for (const x of r.runs) {
    const p = x.preparation;
    lines.push(
      [
        x.label.padEnd(10),
        int(x.bytes).padStart(13),
        int(x.chars).padStart(14),
        int(x.vocab).padStart(6),
        (p ? p.mbPerSec.toFixed(1) : '-').padStart(10),
        (p ? p.reuseSeconds.toFixed(1) : '-').padStart(8),
        x.training.wallSeconds.toFixed(1).padStart(8),
        int(x.training.seqPerSec).padStart(8),
        int(x.training.maxRssMiB).padStart(9),
      ].join(' '),
    );
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1,10,100' },
      'no-write': { type: 'boolean', default: false },
    },
  });
  const sizes = values.sizes.split(',').map(Number);
  if (sizes.some((s) => !(s > 0)) || sizes.length === 0)
    throw new Error(`--sizes wants megabytes separated by commas, e.g. 1,10,100: ${values.sizes}`);
  sizes.sort((a, b) => a - b);
  const cpus = os.cpus();
  const loadStart = os.loadavg();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-bench-scale-'));
  try {
    const cli = buildCli(dir);
    const runs: ScaleRun[] = [];
    for (const size of sizes) {
      const label = size >= 1000 ? `${size / 1000} GB` : `${size} MB`;
      const file = path.join(dir, `moby-${size}MB.txt`);
      writeMobyCorpus(file, size * MB);
      runs.push(await measure(cli.argv, dir, { file, label, kind: 'moby-dick' }, true));
      rmSync(file);
    }
    const wide = path.join(dir, 'wide.txt');
    writeWideCorpus(wide, WIDE_BYTES);
    runs.push(
      await measure(cli.argv, dir, { file: wide, label: 'Hangul/CJK', kind: 'wide' }, false),
    );
    const results: ScaleResults = {
      format: 1,
      command: `npm run bench:scale${values.sizes === '1,10,100' ? '' : ` -- --sizes ${values.sizes}`}`,
      machine: {
        cpus: cpus.length,
        model: cpus[0]?.model.trim() ?? 'unknown',
        node: process.version,
        date: new Date().toISOString(),
        loadAverage: { start: loadStart, end: os.loadavg() },
      },
      runner: cli.runner,
      batchSize: REFERENCE.batchSize,
      rssMethod: existsSync('/usr/bin/time') ? 'GNU time (%M)' : 'VmHWM polled every 50 ms',
      runs,
      targets: judge(runs),
    };
    process.stdout.write(table(results) + '\n');
    if (!values['no-write']) {
      mkdirSync(path.join(REPO, 'docs'), { recursive: true });
      writeFileSync(path.join(REPO, 'docs', 'scale.json'), JSON.stringify(results, null, 2) + '\n');
      writeFileSync(path.join(REPO, SCALE_SVG), renderScaleSvg(results));
      process.stderr.write(
        `wrote docs/scale.json and ${SCALE_SVG}; \`node --import tsx bench/render.ts\` renders the README\n`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
