// node --import tsx bench/preset.ts [--preset ten-minutes] [--corpus nietzsche] [--seed 1] [-- TRAIN OPTIONS]
//
// The figure a user of `charlstm train --preset NAME` gets, measured the way a user gets it: the
// real CLI trains (its own time budget, validation, samples and saving included, the budget
// counting training alone), then `charlstm eval` scores the model it ends with, and the best one
// kept, on every held-out character (each predicted from the 60 before it, from a zero state).
// Writes docs/preset-<name>.json (docs/preset-<name>-<corpus>.json for another corpus): the
// commands, the eval figures, the training figures from the model's metadata, and the machine's
// load while it ran; `node --import tsx bench/render.ts` renders the README's bench:preset block
// from the ten-minutes preset's files.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PRESETS } from '../src/train/presets.ts';

const { values: args, positionals: extra } = parseArgs({
  allowPositionals: true, // after --: more train options (e.g. a short smoke run)
  options: {
    preset: { type: 'string', default: 'ten-minutes' },
    corpus: { type: 'string', default: 'nietzsche' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
// before minutes of training: a name charlstm train would refuse
if (!Object.hasOwn(PRESETS, args.preset)) {
  throw new Error(`unknown preset ${args.preset}: ${Object.keys(PRESETS).join(', ')}`);
}
const repo = fileURLToPath(new URL('..', import.meta.url));
const shared = path.resolve(repo, '../shared/corpora');
const dataDir = process.env.CHARLSTM_DATA_DIR ?? (existsSync(shared) ? shared : undefined);
const env = { ...process.env, ...(dataDir && { CHARLSTM_DATA_DIR: dataDir }) };
const cli = [path.join(repo, 'src', 'cli', 'main.ts')];
const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-preset-'));
// trained in `dir` to a folder named after the corpus: the command the model records is then
// the one a user types for a built-in model (pretrained/: `--out nietzsche`)
const model = path.join(dir, args.corpus);
const trainArgs = [
  'train',
  '--corpus',
  args.corpus,
  '--preset',
  args.preset,
  '--seed',
  args.seed,
  '--out',
  args.corpus,
  ...extra,
];

// the load average every 10 s while training: the machine is shared, so say how busy it was
const loads: number[] = [];
const probe = setInterval(() => loads.push(os.loadavg()[0]!), 10_000);
process.stderr.write(`$ charlstm ${trainArgs.join(' ')}\n`);
const t0 = performance.now();
const code = await new Promise<number | null>((resolve) => {
  // tsx by its location: the child's working folder has no node_modules
  const tsx = import.meta.resolve('tsx');
  const child = spawn(process.execPath, ['--import', tsx, ...cli, ...trainArgs], {
    cwd: dir,
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  child.on('exit', resolve);
});
clearInterval(probe);
const wallSeconds = (performance.now() - t0) / 1000;
if (code !== 0) throw new Error(`charlstm train exited with ${code}`);

function evaluate(which: string): Record<string, unknown> {
  const evalArgs = ['eval', '--model', which, '--corpus', args.corpus, '--json'];
  const r = spawnSync(process.execPath, ['--import', 'tsx', ...cli, ...evalArgs], {
    cwd: repo,
    env,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`charlstm eval failed: ${r.stderr}`);
  const figures = JSON.parse(r.stdout) as Record<string, unknown>;
  delete figures.model; // a temporary path
  return { command: `charlstm ${evalArgs.join(' ').replace(dir, '<out>')}`, ...figures };
}

const meta = JSON.parse(readFileSync(path.join(model, 'model.json'), 'utf8')) as {
  userDefinedMetadata: { training: Record<string, unknown> };
};
const training = meta.userDefinedMetadata.training;
const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const result = {
  preset: args.preset,
  command: `charlstm ${trainArgs.join(' ').replace(dir, '<out>')}`,
  machine: {
    cpus: os.availableParallelism(),
    model: os.cpus()[0]?.model.trim(),
    node: process.version,
    date: new Date().toISOString(),
    loadAverageMedian: median(loads),
    loadAverageMax: loads.length ? Math.max(...loads) : null,
  },
  training: {
    trainSeconds: training.trainSeconds,
    wallSeconds: Math.round(wallSeconds),
    epochs: training.epochs,
    loss: training.loss,
    valLoss: training.valLoss,
    seqPerSec: training.seqPerSec,
  },
  final: evaluate(model),
  best: evaluate(path.join(model, 'best')),
};
const file =
  args.out ??
  path.join(
    repo,
    'docs',
    `preset-${args.preset}${args.corpus === 'nietzsche' ? '' : `-${args.corpus}`}.json`,
  );
writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
process.stderr.write(`wrote ${path.relative(repo, file)}; the model is in ${model}\n`);
