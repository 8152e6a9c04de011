// Training users can trust, with real processes: a run killed at any moment and resumed ends
// with exactly the weights of an uninterrupted run; a kill in the middle of a save loses nothing;
// a corrupt checkpoint is refused by name; a diverging run recovers instead of saving garbage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../src/checkpoint/train-checkpoint.ts';
import { Rng } from '../src/sampling/rng.ts';
import { charlstm as run, mobyDick, spawnCharlstm } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-resume-'));
const corpus = path.join(tmp, 'corpus.txt');
// real prose from the npm dependency (no ../shared needed), past the title pages
writeFileSync(corpus, mobyDick().slice(20_000, 40_000));
const RUN = [
  'train',
  '--corpus',
  corpus,
  '--epochs',
  '3',
  '--units',
  '32',
  '--seed',
  '9',
  '--sample-length',
  '20',
  '--checkpoint-every',
  '7',
  '--batch-size',
  '32', // several hundred batches, so that a kill at a random moment lands mid-run
];
// the modes beyond the reference: masks and the carried state must resume exactly too
const STACKED = [
  'train',
  '--corpus',
  corpus,
  '--epochs',
  '6',
  '--units',
  '16',
  '--layers',
  '2',
  '--dropout',
  '0.25',
  '--mode',
  'stateful',
  '--optimizer',
  'adam',
  '--batch-size',
  '8',
  '--seed',
  '4',
  '--sample-length',
  '20',
  '--checkpoint-every',
  '5',
];

function charlstm(args: string[], env: Record<string, string> = {}): ReturnType<typeof run> {
  return run(args, { env, timeout: 120_000 });
}

/**
 * Start a run and SIGKILL it `afterMs` after its first checkpoint appears; asserts that it was the
 * kill that ended it (a run that finished first would make the resume test prove nothing).
 */
async function killAfterFirstCheckpoint(dir: string, afterMs: number, args = RUN): Promise<void> {
  const child = spawnCharlstm([...args, '--out', dir], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  const deadline = Date.now() + 60_000;
  while (
    !existsSync(path.join(dir, 'checkpoint.ckpt')) &&
    Date.now() < deadline &&
    child.exitCode === null
  ) {
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL', `the run ended before the kill ${afterMs} ms in`);
}

const reference = path.join(tmp, 'uninterrupted');
let runMs = 0; // how long the whole run takes on this machine now
test('an uninterrupted run (the reference for the resume tests)', () => {
  const t0 = Date.now();
  const r = charlstm([...RUN, '--out', reference]);
  runMs = Date.now() - t0;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /val_loss \d+\.\d+ \(\d+\.\d+ bits\/char, perplexity/);
});

test('SIGKILL at a random moment, then --resume: bit-identical final weights', async () => {
  // a random moment inside the training, however fast this machine is today: the first
  // checkpoint comes a few batches in, and start-up takes part of the whole run's time
  const delay = new Rng(Date.now() % 100000).int(Math.max(20, Math.round(runMs * 0.3)));
  const dir = path.join(tmp, `killed-${delay}`);
  await killAfterFirstCheckpoint(dir, delay);
  const r = charlstm(['train', '--resume', dir]);
  assert.equal(r.code, 0, `resume after a kill ${delay} ms past the first checkpoint: ${r.stderr}`);
  assert.match(r.stderr, /Epoch 3\/3: loss/, 'the resumed process trained');
  const [a, b] = await Promise.all([loadModel(reference), loadModel(dir)]);
  assert.deepEqual(
    b.params.flat,
    a.params.flat,
    `weights differ after a kill ${delay} ms past the first checkpoint`,
  );
  const [ba, bb] = await Promise.all([
    loadModel(path.join(reference, 'best')),
    loadModel(path.join(dir, 'best')),
  ]);
  assert.deepEqual(bb.params.flat, ba.params.flat);
});

test('stacked layers, dropout, stateful mode, Adam: SIGKILL at a random moment, then --resume: bit-identical', async () => {
  const whole = path.join(tmp, 'stacked-uninterrupted');
  const r0 = charlstm([...STACKED, '--out', whole]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.match(r0.stderr, /stateful val_loss \d+\.\d+/);
  const delay = new Rng(Date.now() % 100000).int(300);
  const dir = path.join(tmp, `stacked-killed-${delay}`);
  await killAfterFirstCheckpoint(dir, delay, STACKED);
  const r = charlstm(['train', '--resume', dir]);
  assert.equal(r.code, 0, `resume after a kill ${delay} ms past the first checkpoint: ${r.stderr}`);
  assert.match(
    r.stderr,
    /Epoch 6\/6/,
    'the kill came before the run ended: the resumed process trained',
  );
  const [a, b] = await Promise.all([loadModel(whole), loadModel(dir)]);
  assert.equal(a.meta.layers, 2);
  assert.deepEqual(
    b.params.flat,
    a.params.flat,
    `weights differ after a kill ${delay} ms past the first checkpoint`,
  );
});

test('SIGKILL in the middle of writing a checkpoint loses nothing and resumes exactly', async () => {
  const dir = path.join(tmp, 'killed-in-save');
  const r1 = charlstm([...RUN, '--out', dir], { CHARLSTM_TEST_KILL_DURING_SAVE: '3' });
  assert.equal(r1.signal, 'SIGKILL');
  assert.ok(
    existsSync(path.join(dir, 'checkpoint.ckpt')),
    'the previous checkpoint is still there',
  );
  const r2 = charlstm(['train', '--resume', dir]);
  assert.equal(r2.code, 0, r2.stderr);
  const [a, b] = await Promise.all([loadModel(reference), loadModel(dir)]);
  assert.deepEqual(b.params.flat, a.params.flat);
});

test('a corrupt checkpoint is refused with its name, and the previous one is kept', () => {
  const dir = path.join(tmp, 'corrupt');
  const r1 = charlstm([...RUN, '--out', dir, '--epochs', '1']);
  assert.equal(r1.code, 0, r1.stderr);
  const file = path.join(dir, 'checkpoint.ckpt');
  const prev = path.join(dir, 'checkpoint.prev.ckpt');
  const prevBytes = readFileSync(prev);
  const bytes = readFileSync(file);
  const mid = bytes.length >> 1;
  bytes[mid] = bytes[mid]! ^ 0xff;
  writeFileSync(file, bytes);
  const r2 = charlstm(['train', '--resume', dir]);
  assert.equal(r2.code, 2);
  assert.equal(r2.stderr.trim().split('\n').length, 1);
  assert.match(
    r2.stderr,
    new RegExp(`checkpoint ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is corrupt`),
  );
  assert.deepEqual(readFileSync(prev), prevBytes, 'the previous checkpoint is untouched');
  // and it is usable: put it back in place and resume from it
  copyFileSync(prev, file);
  const r3 = charlstm(['train', '--resume', dir, '--epochs', '2']);
  assert.equal(r3.code, 0, r3.stderr);
});

test('a checkpoint written before the settings table (config keys lr and step) still resumes', async () => {
  const dir = path.join(tmp, 'old-keys');
  const args = [
    '--units',
    '8',
    '--seed',
    '5',
    '--sample-length',
    '0',
    '--lr',
    '0.02',
    '--step',
    '5',
  ];
  const r1 = charlstm(['train', '--corpus', corpus, '--epochs', '1', ...args, '--out', dir]);
  assert.equal(r1.code, 0, r1.stderr);
  // the same checkpoint as the older charlstm wrote it: lr and step, and its process options
  const file = path.join(dir, 'checkpoint.ckpt');
  const data = decodeCheckpoint(readFileSync(file), file);
  const { learningRate, stride, ...rest } = data.state.config as Record<string, unknown>;
  assert.deepEqual([learningRate, stride], [0.02, 5]);
  const config = { ...rest, lr: learningRate, step: stride, lrSchedule: 'constant', explicit: {} };
  writeFileSync(file, encodeCheckpoint({ ...data, state: { ...data.state, config } }));
  const r2 = charlstm(['train', '--resume', dir, '--epochs', '2']);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /Epoch 2\/2: loss/);
  const { meta } = await loadModel(dir);
  assert.equal(meta.step, 5, 'the stride came from the old checkpoint');
  assert.equal(meta.training.learningRate, 0.02, 'the learning rate came from the old checkpoint');
  assert.equal(meta.training.epochs, 2);
});

test('a diverging run rolls back and lowers the learning rate instead of saving garbage', async () => {
  const dir = path.join(tmp, 'diverge');
  const r = charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '1',
    '--units',
    '8',
    '--seed',
    '9',
    '--sample-length',
    '0',
    '--lr',
    '5e37', // large enough to diverge within the epoch on this text (1e37 to 2e38 do), small enough to recover
    '--out',
    dir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /loss became NaN at epoch 1, batch \d+: rolled back to the last good weights; learning rate now ×0\.5/,
  );
  const { params } = await loadModel(dir);
  assert.ok(params.flat.every(Number.isFinite), 'saved weights are all finite');
});

test('Ctrl-C (SIGINT) saves a checkpoint and the model, then exits cleanly', async () => {
  const dir = path.join(tmp, 'sigint');
  const child = spawnCharlstm([...RUN, '--out', dir, '--checkpoint-every', '1000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!stderr.includes('Epoch 1/3:') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGINT');
  assert.equal(await exited, 130);
  assert.match(stderr, /stopping after this batch and saving/);
  assert.doesNotMatch(stderr, /stopped in epoch/, 'Ctrl-C does not wait for a validation pass');
  assert.ok(existsSync(path.join(dir, 'checkpoint.ckpt')));
  const r = charlstm(['train', '--resume', dir]);
  assert.equal(r.code, 0, r.stderr);
  const [a, b] = await Promise.all([loadModel(reference), loadModel(dir)]);
  assert.deepEqual(b.params.flat, a.params.flat);
});

test('--time-budget stops mid-epoch, validates the model it ends with, and keeps it resumable', async () => {
  const dir = path.join(tmp, 'budget');
  // an epoch of this model takes over a second, so a quarter second's budget ends inside the first
  // (a budget that runs out at an epoch's end stops there, already validated)
  const r = charlstm([
    'train',
    '--corpus',
    corpus,
    '--epochs',
    '5',
    '--units',
    '64',
    '--batch-size',
    '8',
    '--seed',
    '3',
    '--sample-length',
    '0',
    '--time-budget',
    '0.25',
    '--out',
    dir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Epoch 1\/5:/);
  assert.match(r.stderr, /stopped in epoch 1: val_loss \d+\.\d+ \(\d+\.\d+ bits\/char/);
  assert.match(r.stdout, /resume with: charlstm train --resume/);
  const [last, best] = await Promise.all([loadModel(dir), loadModel(path.join(dir, 'best'))]);
  assert.ok(last.params.flat.every(Number.isFinite));
  assert.ok(best.params.flat.every(Number.isFinite));
});

test('a corpus of several files (a folder and a file) resumes exactly, and not once one changed', async () => {
  const docs = path.join(tmp, 'docs');
  mkdirSync(docs);
  const text = mobyDick().slice(20_000, 32_000);
  const two = path.join(docs, 'two.txt');
  writeFileSync(path.join(docs, 'one.txt'), text.slice(0, 4000));
  writeFileSync(two, text.slice(4000, 8000));
  const three = path.join(tmp, 'three.txt');
  writeFileSync(three, text.slice(8000));
  const MULTI = ['train', '--corpus', docs, '--corpus', three, '--epochs', '2', '--units', '16'];
  MULTI.push(
    '--batch-size',
    '32',
    '--seed',
    '6',
    '--sample-length',
    '20',
    '--checkpoint-every',
    '4',
  );
  const whole = path.join(tmp, 'multi-uninterrupted');
  const r0 = charlstm([...MULTI, '--out', whole]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.match(r0.stdout, /^inputs: 3, joined with a blank line/m);
  const dir = path.join(tmp, 'multi-killed');
  const r1 = charlstm([...MULTI, '--out', dir], { CHARLSTM_TEST_KILL_DURING_SAVE: '3' });
  assert.equal(r1.signal, 'SIGKILL');
  // one character of one input changed: the joined text's sha256 no longer matches
  writeFileSync(two, `${text.slice(4000, 7999)}!`);
  const refused = charlstm(['train', '--resume', dir]);
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr,
    `charlstm: error: corpus ${docs}, ${three} is not the text the checkpoint in ${dir} was trained on (an input changed, or a folder or glob finds other files)\n`,
  );
  writeFileSync(two, text.slice(4000, 8000));
  const r2 = charlstm(['train', '--resume', dir]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /Epoch 2\/2: loss/);
  const [a, b] = await Promise.all([loadModel(whole), loadModel(dir)]);
  assert.equal(b.meta.training.corpus, 'docs+three');
  assert.deepEqual(b.params.flat, a.params.flat);
});
