// Which training mode learns fastest per minute? Trains each mode for the same wall-clock budget on
// nietzsche with its last 10% held out, and records the held-out loss against training time.
// Held-out loss: every held-out character predicted from the 60 characters before it, from a zero
// state (the way window-mode generation uses a model); stateful models also report the held-out
// text read as a carried stream. Evaluation time is not counted as training (Trainer.untimed).
//
//   node --import tsx bench/modes.ts [--budget 600] [--modes last,sequence,...] [--out docs/modes]
//   node --import tsx bench/modes.ts --from a.json,b.json --out docs/modes   (no training: merge runs)
//
// Writes <out>.json (the curves), <out>.svg (a plot) and prints a Markdown table.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadCorpus } from '../src/corpus/corpus.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import type { Windows } from '../src/data/windows.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { evaluate, evaluateStateful } from '../src/train/evaluate.ts';
import { Trainer, type TrainMode } from '../src/train/trainer.ts';
import type { Schedule } from '../src/train/schedule.ts';
import { splitWindows } from '../src/data/windows.ts';
import { REFERENCE } from '../src/defaults.ts';
import { PRESETS } from '../src/train/presets.ts';
import type { TrainRunConfig } from '../src/train/settings.ts';

const { values: args } = parseArgs({
  options: {
    budget: { type: 'string', default: '600' },
    modes: { type: 'string', default: 'last,sequence' },
    'eval-every': { type: 'string', default: '60' },
    // no training: table and plot from the JSON of earlier runs (each mode may come from its own run)
    from: { type: 'string' },
    // try another learning rate on the chosen settings (their names say so)
    lr: { type: 'string' },
    out: { type: 'string', default: 'docs/modes' },
  },
});
const budget = Number(args.budget);
const evalEvery = Number(args['eval-every']);

// a mode's recipe, in the names of charlstm train's settings (src/train/settings.ts)
interface Setting {
  name: string;
  mode: TrainMode;
  stride: number;
  batchSize: number;
  learningRate: number;
  units: number;
  layers?: number;
  dropout?: number;
  optimizer?: 'rmsprop' | 'adam';
  schedule?: Schedule;
  clip?: number;
}
// the recipe of `charlstm train --preset ten-minutes`, without its time budget: this bench's
// --budget is the same for every mode
const tenMinutes: Partial<TrainRunConfig> = { ...PRESETS['ten-minutes'] };
delete tenMinutes.timeBudget;
const STACKED: Setting = {
  name: 'sequence: 2 × LSTM(256), dropout 0.3, cosine lr 0.007, clip 5',
  mode: 'sequence',
  stride: REFERENCE.stride,
  batchSize: REFERENCE.batchSize,
  learningRate: REFERENCE.learningRate,
  units: REFERENCE.units,
  ...tenMinutes,
};
const SETTINGS: Record<string, Setting> = {
  last: {
    name: 'reference: LSTM(128), last character, step 3',
    mode: 'last',
    stride: 3,
    batchSize: 128,
    learningRate: 0.01,
    units: 128,
  },
  sequence: {
    name: 'sequence: LSTM(128), every position, step 30',
    mode: 'sequence',
    stride: 30,
    batchSize: 128,
    learningRate: 0.01,
    units: 128,
  },
  big: {
    name: 'sequence: LSTM(256), every position, cosine lr 0.005, clip 5',
    mode: 'sequence',
    stride: 30,
    batchSize: 128,
    learningRate: 0.005,
    units: 256,
    schedule: { kind: 'cosine' },
    clip: 5,
  },
  stacked: STACKED,
  stateful: {
    ...STACKED,
    name: 'stateful: 2 × LSTM(256), dropout 0.3, cosine lr 0.007, clip 5',
    mode: 'stateful', // 128 contiguous streams; stride is unused
  },
  adam: {
    ...STACKED,
    name: 'sequence: 2 × LSTM(256), dropout 0.3, Adam, cosine lr 0.003, clip 5',
    optimizer: 'adam',
    learningRate: 0.003,
  },
};

const repo = fileURLToPath(new URL('..', import.meta.url));
const shared = path.resolve(repo, '../shared/corpora');
const dataDir = process.env.CHARLSTM_DATA_DIR ?? (existsSync(shared) ? shared : undefined);
const corpus = await loadCorpus('nietzsche', { dataDir, progress: false });
const vocab = Vocabulary.fromText(corpus.text);
const tokens = vocab.encode(corpus.text);
const T = REFERENCE.maxlen;
// held-out windows with stride 1: every held-out character is a target
const { val: heldOut } = splitWindows(tokens, { maxlen: T, stride: 1, valSplit: 0.1 });
// every k-th window of a grid is the grid of stride k × stride (heldOut is a grid, without starts)
const every = (w: Windows, k: number): Windows => ({
  ...w,
  stride: w.stride * k,
  count: Math.ceil(w.count / k),
});
const probe = every(heldOut!, 15); // ~4,000 windows for the curve; the full set at the end

const results: {
  setting: Setting;
  curve: { seconds: number; loss: number }[];
  final: number;
  stateful?: number;
  seqPerSec: number;
  charsPerSec: number;
}[] = [];
for (const file of args.from ? args.from.split(',') : []) {
  const earlier = JSON.parse(readFileSync(path.resolve(repo, file), 'utf8')) as {
    budget: number;
    results: typeof results;
  };
  if (earlier.budget !== budget)
    throw new Error(`${file} was run with a ${earlier.budget} s budget, not ${budget}`);
  results.push(...earlier.results);
}
for (const key of args.from ? [] : args.modes.split(',')) {
  const known = SETTINGS[key];
  if (!known) throw new Error(`unknown mode ${key}`);
  const setting = args.lr
    ? {
        ...known,
        learningRate: Number(args.lr),
        name: known.name.replace(/lr [\d.]+/, `lr ${args.lr}`),
      }
    : known;
  const { train } = splitWindows(tokens, { maxlen: T, stride: setting.stride, valSplit: 0.1 });
  const params = initParameters(
    { vocabSize: vocab.size, units: setting.units, layers: setting.layers ?? 1 },
    new Rng(1),
  );
  const curve: { seconds: number; loss: number }[] = [];
  let nextEval = evalEvery;
  const trainer = new Trainer({
    params,
    windows: train,
    shuffleRng: new Rng(2),
    // the budget is wall-clock time of the loop; the periodic evaluations on a sample are off the clock
    config: {
      batchSize: setting.batchSize,
      epochs: 100_000,
      learningRate: setting.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads: 2,
      engine: 'auto',
      mode: setting.mode,
      timeBudget: budget,
      ...(setting.schedule && { schedule: setting.schedule }),
      ...(setting.clip && { clip: setting.clip }),
      ...(setting.dropout && { dropout: setting.dropout, dropoutSeed: 3 }),
      ...(setting.optimizer && { optimizer: setting.optimizer }),
    },
    callbacks: [
      {
        async onBatchEnd(_ev, t) {
          if (t.trainSeconds >= nextEval) {
            const e = await t.untimed(() => evaluate(params, probe));
            curve.push({ seconds: t.trainSeconds, loss: e.loss });
            process.stderr.write(
              `${key}: ${t.trainSeconds.toFixed(0)} s, held-out loss ${e.loss.toFixed(4)} (${e.bpc.toFixed(3)} bits/char)\n`,
            );
            nextEval += evalEvery;
          }
        },
        async onTrainEnd(_h, t) {
          const e = await t.untimed(() => evaluate(params, probe));
          curve.push({ seconds: t.trainSeconds, loss: e.loss });
        },
      },
    ],
  });
  const t0 = performance.now();
  await trainer.fit();
  const windowsTrained =
    trainer.history.reduce((a, h) => a + h.sequences, 0) + trainer.getState().seen;
  const trainMs = trainer.trainSeconds * 1000;
  const full = await evaluate(params, heldOut!);
  const seqPerSec = windowsTrained / (trainMs / 1000);
  // characters scored per second: one per window in the reference mode, every position otherwise
  const charsPerSec = setting.mode === 'last' ? seqPerSec : seqPerSec * T;
  const stateful =
    setting.mode === 'stateful'
      ? (await evaluateStateful(params, heldOut!.tokens.subarray(T))).loss
      : undefined;
  results.push({
    setting,
    curve,
    final: full.loss,
    ...(stateful !== undefined && { stateful }),
    seqPerSec,
    charsPerSec,
  });
  process.stderr.write(
    `${key}: final held-out loss ${full.loss.toFixed(4)} nats (${full.bpc.toFixed(3)} bits/char) on ${full.windows} characters${stateful === undefined ? '' : `; read as a stream ${stateful.toFixed(4)} nats`}; ${((performance.now() - t0) / 1000).toFixed(0)} s wall\n`,
  );
}

mkdirSync(path.dirname(path.resolve(repo, args.out)), { recursive: true });
writeFileSync(
  path.resolve(repo, `${args.out}.json`),
  JSON.stringify({ budget, date: new Date().toISOString(), results }, null, 2),
);

// a small SVG plot: held-out bits per character against training minutes
const W = 640;
const H = 360;
const pad = 50;
const all = results.flatMap((r) => r.curve);
const maxX = budget / 60;
const ys = all.map((p) => p.loss / Math.LN2);
const minY = Math.floor(Math.min(...ys) * 10) / 10 - 0.1;
// the first minute's losses are far above the rest: cap the axis at 2.6 bits and clamp to it
const maxY = Math.min(2.6, Math.ceil(Math.max(...ys) * 10) / 10);
const sx = (m: number): number => pad + ((W - 2 * pad) * m) / maxX;
const sy = (b: number): number =>
  H - pad - ((H - 2 * pad) * (Math.min(b, maxY) - minY)) / (maxY - minY);
const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const fullH = H + 16 * results.length + 8; // the plot, then the legend under it
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${fullH}" font-family="sans-serif" font-size="12">\n<rect width="${W}" height="${fullH}" fill="white"/>\n`;
for (let m = 0; m <= maxX; m += Math.max(1, Math.round(maxX / 10))) {
  svg += `<line x1="${sx(m)}" y1="${H - pad}" x2="${sx(m)}" y2="${pad}" stroke="#eee"/><text x="${sx(m)}" y="${H - pad + 16}" text-anchor="middle">${m}</text>\n`;
}
for (let b = minY; b <= maxY + 1e-9; b += 0.2) {
  svg += `<line x1="${pad}" y1="${sy(b)}" x2="${W - pad}" y2="${sy(b)}" stroke="#eee"/><text x="${pad - 6}" y="${sy(b) + 4}" text-anchor="end">${b.toFixed(1)}</text>\n`;
}
svg += `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">training time (minutes)</text>\n<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">held-out bits per character</text>\n`;
results.forEach((r, i) => {
  const pts = r.curve
    .map((p) => `${sx(p.seconds / 60).toFixed(1)},${sy(p.loss / Math.LN2).toFixed(1)}`)
    .join(' ');
  svg += `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${pts}"/>\n`;
  // the legend goes under the plot, one line a mode
  svg += `<text x="${pad}" y="${H + 10 + 16 * i}" fill="${colors[i % colors.length]}">${r.setting.name}</text>\n`;
});
svg += `<line x1="${pad}" y1="${sy(1.88)}" x2="${W - pad}" y2="${sy(1.88)}" stroke="#999" stroke-dasharray="4 4"/><text x="${W - pad}" y="${sy(1.88) - 4}" text-anchor="end" fill="#666">target 1.88</text>\n</svg>\n`;
writeFileSync(path.resolve(repo, `${args.out}.svg`), svg);
// and a PNG of it for the README, rendered by Debian's chromium when it is installed
const chromium = process.env.CHARLSTM_CHROMIUM ?? '/usr/bin/chromium';
if (existsSync(chromium)) {
  const { chromium: pw } = await import('playwright-core');
  const browser = await pw.launch({ executablePath: chromium });
  const page = await browser.newPage({
    viewport: { width: W, height: fullH },
    deviceScaleFactor: 2,
  });
  await page.setContent(`<body style="margin:0">${svg}</body>`);
  await page.screenshot({ path: path.resolve(repo, `${args.out}.png`) });
  await browser.close();
} else {
  process.stderr.write(`${chromium} is missing: wrote ${args.out}.svg only\n`);
}

const mins = [1, 2, 5, 10].filter((m) => m * 60 <= budget);
process.stdout.write(
  `\n| mode | ${mins.map((m) => `${m} min`).join(' | ')} | final (all held-out chars) | read as a stream | scored chars/s |\n|---|${mins.map(() => '---').join('|')}|---|---|---|\n`,
);
for (const r of results) {
  const at = (m: number): string => {
    // the evaluation nearest to m minutes (they come every --eval-every seconds of training)
    const p = [...r.curve].sort(
      (u, v) => Math.abs(u.seconds - m * 60) - Math.abs(v.seconds - m * 60),
    )[0];
    return p && Math.abs(p.seconds - m * 60) <= evalEvery
      ? `${(p.loss / Math.LN2).toFixed(3)}`
      : '—';
  };
  const stream = r.stateful === undefined ? '—' : `${r.stateful.toFixed(3)} nats`;
  process.stdout.write(
    `| ${r.setting.name} | ${mins.map(at).join(' | ')} | ${r.final.toFixed(3)} nats = ${(r.final / Math.LN2).toFixed(3)} bits | ${stream} | ${Math.round(r.charsPerSec).toLocaleString('en-US')} |\n`,
  );
}
