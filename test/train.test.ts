// `charlstm train` as a real process: the reference figures, a short real run that saves a model
// TF.js can load, reproducibility across runs and thread counts, and refusals of bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { PRESETS } from '../src/train/presets.ts';
import { REFERENCE_SKIP, REPO as repo, charlstm, mobyDick, spawnCharlstm } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-train-'));
const small = path.join(tmp, 'small.txt');
// real English prose from the npm dependency, past the title pages
writeFileSync(small, mobyDick().slice(20_000, 26_000));

test(
  '--dry-run on nietzsche prints the reference figures and a model summary',
  { skip: REFERENCE_SKIP },
  () => {
    const r = charlstm(['train', '--corpus', 'nietzsche', '--dry-run'], { dataDir: true });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^corpus length: 600893$/m);
    assert.match(r.stdout, /^unique characters: 57$/m);
    assert.match(r.stdout, /^sequences: 200278$/m);
    assert.match(r.stdout, /Total params: 102,585/);
  },
);

test('a short run trains, samples at every temperature, and saves a loadable model', async () => {
  const out = path.join(tmp, 'm1');
  const r = charlstm([
    'train',
    '--corpus',
    small,
    '--epochs',
    '2',
    '--units',
    '16',
    '--out',
    out,
    '--seed',
    '11',
    '--sample-length',
    '30',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((r.stdout.match(/--- Generating with seed:/g) ?? []).length, 2);
  for (const t of ['0.2', '0.5', '1', '1.2'])
    assert.match(r.stdout, new RegExp(`------ temperature: ${t}\\n`));
  assert.match(r.stderr, /Epoch 2\/2: loss \d+\.\d{4}/);
  const losses = [...r.stderr.matchAll(/Epoch \d\/2: loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
  assert.equal(losses.length, 2);
  assert.ok(losses[1]! < losses[0]!, `loss should fall: ${losses.join(' → ')}`);
  const { meta, params } = await loadModel(out);
  assert.equal(meta.units, 16);
  assert.equal(meta.maxlen, 60);
  assert.equal(meta.training.epochs, 2);
  // how it was made: the command line as a shell reads it back, and the user's own file
  assert.equal(
    meta.training.command,
    `charlstm train --corpus ${small} --epochs 2 --units 16 --out ${out} --seed 11 --sample-length 30`,
  );
  assert.equal(meta.training.source, small);
  assert.equal(params.shape.units, 16);
});

test('the same seed gives bit-identical weights, with one thread or two', async () => {
  const a = path.join(tmp, 'seed-a');
  const b = path.join(tmp, 'seed-b');
  const common = [
    'train',
    '--corpus',
    small,
    '--epochs',
    '1',
    '--units',
    '8',
    '--seed',
    '3',
    '--sample-length',
    '0',
  ];
  assert.equal(charlstm([...common, '--out', a, '--threads', '1']).code, 0);
  assert.equal(charlstm([...common, '--out', b, '--threads', '2']).code, 0);
  const [ma, mb] = await Promise.all([loadModel(a), loadModel(b)]);
  assert.deepEqual(ma.params.flat, mb.params.flat);
});

test('bad input: one line, exit code 2, nothing overwritten', () => {
  const out = path.join(tmp, 'm1'); // saved by the test above
  const before = readFileSync(path.join(out, 'model.json'), 'utf8');
  const cases: [string[], RegExp][] = [
    [['train', '--corpus', small, '--out', out, '--epochs', '1'], /already holds a model/],
    [['train', '--corpus', path.join(tmp, 'missing.txt')], /not found/],
    [['train', '--corpus', small, '--epochs', '0'], /epochs|count/i],
    [['train', '--corpus', small, '--lr', '-1'], /lr/],
    [['train', '--corpus', small, '--units', '10'], /multiple of 4/],
    [['train', '--corpus', small, '--temperatures', '0.2,abc'], /abc/],
    [['train', '--corpus', small, '--bogus'], /bogus/],
    [['train', '--corpus', small, '--layers', '0'], /'0'.*layers|layers.*'0'|count/],
    [['train', '--corpus', small, '--layers', '9'], /'9'.*1 to 8/],
    [
      ['train', '--corpus', small, '--batch-size', '100000'],
      /needs 21\.1 GiB of engine memory, more than its limit of 4 GiB/,
    ],
    [['train', '--corpus', small, '--dropout', '1'], /'1'.*fraction/],
    [['train', '--corpus', small, '--dropout', '-0.2'], /'-0.2'/],
    [['train', '--corpus', small, '--mode', 'bogus'], /'bogus'.*last, sequence, stateful/],
    [
      ['train', '--corpus', small, '--mode', 'stateful', '--batch-size', '200'],
      /stateful mode needs at least 200 × 60 \+ 1 training characters/,
    ],
  ];
  const tiny = path.join(tmp, 'tiny.txt');
  writeFileSync(tiny, 'too short');
  cases.push([['train', '--corpus', tiny], /needs at least maxlen \+ 1 = 61/]);
  for (const [args, message] of cases) {
    const r = charlstm(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, /^charlstm: error: /);
    assert.match(lines[0]!, message);
  }
  assert.equal(readFileSync(path.join(out, 'model.json'), 'utf8'), before);
  assert.ok(!existsSync(path.join(repo, 'models', 'tiny')));
});

test('--dry-run shows a stacked model with dropout, layer by layer', () => {
  const r = charlstm([
    'train',
    '--corpus',
    small,
    '--dry-run',
    '--layers',
    '2',
    '--units',
    '64',
    '--dropout',
    '0.3',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /lstm \(LSTM, input \(None, 60, \d+\)\)\s+\(None, 60, 64\)/);
  assert.match(r.stdout, /dropout \(Dropout 0\.3\)/);
  assert.match(r.stdout, /lstm_1 \(LSTM\)\s+\(None, 64\)\s+33,024/); // 4·(64·64 + 64·64 + 64)
  const V = Number(/unique characters: (\d+)/.exec(r.stdout)![1]);
  const total = 4 * (V * 64 + 64 * 64 + 64) + 33024 + 64 * V + V;
  assert.match(r.stdout, new RegExp(`Total params: ${total.toLocaleString('en-US')}`));
});

test('--preset ten-minutes sets the recipe, and an explicit option still wins', () => {
  const preset = charlstm(['train', '--corpus', small, '--dry-run', '--preset', 'ten-minutes']);
  assert.equal(preset.code, 0, preset.stderr);
  const { units, dropout } = PRESETS['ten-minutes'];
  assert.match(preset.stdout, new RegExp(`lstm_1 \\(LSTM\\)\\s+\\(None, ${units}\\)`));
  assert.ok(preset.stdout.includes(`dropout_1 (Dropout ${dropout})`), preset.stdout);
  const mine = charlstm([
    'train',
    '--corpus',
    small,
    '--dry-run',
    '--preset',
    'ten-minutes',
    '--units',
    '64',
    '--dropout',
    '0',
  ]);
  assert.equal(mine.code, 0, mine.stderr);
  assert.match(mine.stdout, /lstm_1 \(LSTM\)\s+\(None, 64\)/);
  assert.doesNotMatch(mine.stdout, /Dropout/);
  const bad = charlstm(['train', '--corpus', small, '--preset', 'fast']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'fast'.*ten-minutes/);
});

test('--dashboard serves the live run: history and samples over HTTP', async () => {
  const out = path.join(tmp, 'dash');
  const child = spawnCharlstm(
    [
      'train',
      '--corpus',
      small,
      '--epochs',
      '40',
      '--units',
      '8',
      '--seed',
      '2',
      '--sample-length',
      '20',
      '--out',
      out,
      '--dashboard',
      '--port',
      '0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    const deadline = Date.now() + 60_000;
    let url: string | undefined;
    while (!url && Date.now() < deadline) {
      url = /dashboard: (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(url, `no dashboard address in: ${stderr}`);
    let state: {
      epochs?: { epoch: number; loss: number; valLoss?: number }[];
      samples?: unknown[];
    } = {};
    while (Date.now() < deadline) {
      state = (await (await fetch(`${url}/v1/train/state`)).json()) as typeof state;
      if ((state.epochs?.length ?? 0) >= 2 && (state.samples?.length ?? 0) >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok((state.epochs?.length ?? 0) >= 2, JSON.stringify(state).slice(0, 300));
    assert.ok(Number.isFinite(state.epochs![0]!.loss));
    assert.ok(Number.isFinite(state.epochs![0]!.valLoss), 'validation loss reaches the dashboard');
    assert.ok((state.samples?.length ?? 0) >= 1, 'samples reach the dashboard');
  } finally {
    child.kill('SIGKILL');
  }
});
