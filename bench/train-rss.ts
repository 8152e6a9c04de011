// Peak resident memory (and the epoch's speed) of a real `charlstm train` process, run as a user
// runs it, through whole epochs: training, validation, the four samples, the memorisation report
// and the saves of the model, its best copy and the checkpoint.
//
//   node --import tsx bench/train-rss.ts [--chars N] [--epochs E]        prints one JSON object
//
// The CLI is the compiled one (`bin/charlstm.js` on dist/), built from the current src/ into a
// temporary folder, so that neither a stale dist/ nor tsx's loader (about 70 MB more: every worker
// thread loads it too) is measured; where the compiler fails it falls back to
// `node --import tsx src/cli/main.ts` and says so. The corpus is nietzsche from
// $CHARLSTM_DATA_DIR (else ../shared/corpora beside the repository), else Moby-Dick from its npm
// package (no network either way), cut to its first N characters when N is smaller. The process
// gets a temporary CHARLSTM_HOME and --out. Peak RSS comes from GNU time (`/usr/bin/time`, the
// kernel's maximum for the process and its threads), else from polling /proc/<pid>/status's
// VmHWM (the same counter, read every 50 ms).

import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { loadCorpus } from '../src/corpus/corpus.ts';
import { DEFAULT_VAL_SPLIT, REFERENCE } from '../src/defaults.ts';
import type { TrainProcessResult } from './render.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/** The data folder holding nietzsche.txt: $CHARLSTM_DATA_DIR, else ../shared/corpora beside the repo. */
export function benchDataDir(): string | undefined {
  const env = process.env.CHARLSTM_DATA_DIR;
  if (env) return env;
  const shared = path.resolve(REPO, '../shared/corpora');
  return existsSync(shared) ? shared : undefined;
}

/** nietzsche when the data folder has it, else moby-dick (from its npm package), with why. */
export function benchCorpusChoice(): { name: string; dataDir?: string; fallback?: string } {
  const dataDir = benchDataDir();
  if (dataDir && existsSync(path.join(dataDir, 'nietzsche.txt')))
    return { name: 'nietzsche', dataDir };
  return {
    name: 'moby-dick',
    fallback: `nietzsche.txt is not in ${dataDir ?? '$CHARLSTM_DATA_DIR (unset) nor ../shared/corpora'}; Moby-Dick from its npm package instead`,
  };
}

/** The compiled CLI in a temporary package folder, or undefined when the compiler fails. */
export function buildCli(dir: string): { argv: string[]; runner: TrainProcessResult['runner'] } {
  const pkg = path.join(dir, 'pkg');
  mkdirSync(path.join(pkg, 'bin'), { recursive: true });
  const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  const res = spawnSync(
    process.execPath,
    [tsc, '-p', path.join(REPO, 'tsconfig.build.json'), '--outDir', path.join(pkg, 'dist')],
    { encoding: 'utf8', cwd: REPO },
  );
  const main = path.join(pkg, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) {
    process.stderr.write(
      `  (compiling the CLI failed, measuring it under tsx: ${(res.stdout + res.stderr).trim().split('\n')[0]})\n`,
    );
    return { argv: ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')], runner: 'tsx' };
  }
  // the layout of an installed package: dist/ beside build/ (kernels.wasm, the native addon) and
  // node_modules/ (Moby-Dick, commander, …); compiled modules find them at the same relative paths
  writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(path.join(REPO, 'build'), path.join(pkg, 'build'));
  symlinkSync(path.join(REPO, 'node_modules'), path.join(pkg, 'node_modules'));
  copyFileSync(path.join(REPO, 'bin', 'charlstm.js'), path.join(pkg, 'bin', 'charlstm.js'));
  return { argv: [path.join(pkg, 'bin', 'charlstm.js')], runner: 'compiled' };
}

function readVmHWM(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface TrainProcessOptions {
  /** Characters of the corpus to train on (its first ones); the whole corpus when larger. */
  chars: number;
  epochs: number;
}

/** Run the CLI once as described above and report what it took. Throws when the run fails. */
export async function measureTrainProcess(opts: TrainProcessOptions): Promise<TrainProcessResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-bench-train-'));
  try {
    const choice = benchCorpusChoice();
    const raw = await loadCorpus(choice.name, {
      lowercase: false,
      progress: false,
      ...(choice.dataDir !== undefined && { dataDir: choice.dataDir }),
    });
    const whole = opts.chars >= raw.text.length;
    const text = whole ? raw.text : raw.text.slice(0, opts.chars);
    let corpusArg = choice.name;
    if (!whole) {
      corpusArg = path.join(dir, `${choice.name}-first-${text.length}.txt`);
      writeFileSync(corpusArg, text);
    }
    const cli = buildCli(dir);
    const out = path.join(dir, 'model');
    const args = ['train', '--corpus', corpusArg, '--epochs', String(opts.epochs), '--seed', '1'];
    args.push('--out', out);
    const env: NodeJS.ProcessEnv = { ...process.env, CHARLSTM_HOME: path.join(dir, 'home') };
    delete env.CHARLSTM_DATA_DIR;
    if (whole && choice.dataDir !== undefined) env.CHARLSTM_DATA_DIR = choice.dataDir;
    const timeFile = path.join(dir, 'time.txt');
    const gnuTime = existsSync('/usr/bin/time');
    const argv = gnuTime
      ? ['/usr/bin/time', '-f', '%M', '-o', timeFile, process.execPath, ...cli.argv, ...args]
      : [process.execPath, ...cli.argv, ...args];

    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    let polled = 0;
    const poll = gnuTime
      ? undefined
      : setInterval(() => {
          polled = Math.max(polled, readVmHWM(child.pid!) ?? 0);
        }, 50);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const wallSeconds = (performance.now() - t0) / 1000;
    if (poll) clearInterval(poll);
    if (code !== 0) {
      throw new Error(
        `charlstm train exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
      );
    }
    const maxRssKB = gnuTime
      ? Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop())
      : polled;
    if (!(maxRssKB > 0)) throw new Error('no peak RSS reading from the train process');

    // what the run printed (results on stdout, the epoch lines on stderr): it must have done
    // every part of an epoch's end that is claimed
    const printed = stdout + stderr;
    const need: [string, RegExp][] = [
      ['validation', /val_loss \d/],
      ['samples', /------ temperature: /],
      ['memorisation report', /copied from the corpus/],
      ['model saved', /model saved to /],
      ['best model saved', /saved to .*best/],
    ];
    const missing = need.filter(([, re]) => !re.test(printed)).map(([what]) => what);
    if (missing.length > 0)
      throw new Error(`the train run printed no ${missing.join(', ')}; output:\n${printed}`);
    const num = (s: string): number => Number(s.replace(/,/g, ''));
    const windows = /training windows: ([\d,]+), validation windows: ([\d,]+)/.exec(printed);
    const engine = /^engine: (.*)$/m.exec(printed);
    const epochs = [...printed.matchAll(/^Epoch (\d+)\/\d+: .* - ([\dhms]+) - ([\d,]+) seq\/s$/gm)];
    if (!windows || !engine || epochs.length !== opts.epochs)
      throw new Error(`cannot read the train run's figures from its output:\n${printed}`);
    const seconds = (s: string): number => {
      const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s)!;
      return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
    };
    const shown = [
      'charlstm train --corpus',
      whole ? choice.name : `<the first ${text.length} characters of ${choice.name}>`,
      ...args.slice(3, -2),
      '--out <temporary folder>',
    ].join(' ');
    return {
      command: shown,
      runner: cli.runner,
      corpus: {
        name: choice.name,
        chars: text.length,
        whole,
        ...(choice.fallback !== undefined && { fallback: choice.fallback }),
      },
      epochs: opts.epochs,
      valSplit: DEFAULT_VAL_SPLIT,
      trainingWindows: num(windows[1]!),
      validationWindows: num(windows[2]!),
      batchSize: REFERENCE.batchSize,
      engine: engine[1]!,
      epochSeconds: epochs.map((m) => seconds(m[2]!)),
      seqPerSec: epochs.map((m) => num(m[3]!)),
      wallSeconds,
      maxRssMiB: maxRssKB / 1024,
      rssMethod: gnuTime ? 'GNU time (%M)' : 'VmHWM polled every 50 ms',
      covered: need.map(([what]) => what),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      chars: { type: 'string', default: '100000' },
      epochs: { type: 'string', default: '1' },
    },
  });
  const r = await measureTrainProcess({
    chars: Number(values.chars),
    epochs: Number(values.epochs),
  });
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
}
