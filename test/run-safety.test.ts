// Runs that meet, and runs that are stopped, with real processes: one run per output folder (a
// second is refused naming the holder, a dead holder's lock is taken over), SIGTERM saves like
// Ctrl-C, and an output folder that cannot be used is refused before the first batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOCK_NAME } from '../src/checkpoint/run-lock.ts';
import { CLI, REPO, charlstm, cliEnv, mobyDick, spawnCharlstm } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-safety-'));
const corpus = path.join(tmp, 'corpus.txt');
writeFileSync(corpus, mobyDick().slice(20_000, 30_000));
// long enough to be caught running: batch 8, many epochs
const LONG = [
  'train',
  '--corpus',
  corpus,
  '--epochs',
  '200',
  '--units',
  '16',
  '--batch-size',
  '8',
  '--seed',
  '1',
  '--sample-length',
  '0',
];

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a second run on the same folder is refused naming the holder; SIGTERM saves and frees it', async () => {
  const dir = path.join(tmp, 'shared-out');
  const child = spawnCharlstm([...LONG, '--out', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  try {
    await until('the first epoch', () => /Epoch 1\/200: loss/.test(stderr));
    const lock = JSON.parse(readFileSync(path.join(dir, LOCK_NAME), 'utf8')) as { pid: number };
    assert.equal(lock.pid, child.pid);
    for (const args of [
      [...LONG, '--out', dir, '--overwrite'],
      ['train', '--resume', dir],
    ]) {
      const r = charlstm(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr.trim(),
        new RegExp(
          `^charlstm: error: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another charlstm run \\(pid ${child.pid} on `,
        ),
      );
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.equal(child.exitCode, null, 'the first run goes on');
    child.kill('SIGTERM');
    const end = await exited;
    assert.equal(end.code, 143, stderr);
    assert.match(stderr, /SIGTERM: stopping after this batch and saving/);
    // mid-epoch it names the batch; a stop that lands on an epoch's end says "(N epochs)"
    assert.match(stdout, /model saved to .* \((epoch \d+, batch \d+|\d+ epochs?)\)/);
    assert.ok(existsSync(path.join(dir, 'checkpoint.ckpt')), 'a resumable checkpoint');
    assert.ok(!existsSync(path.join(dir, LOCK_NAME)), 'the lock is given back');
    // and the folder is free again: the run continues from where SIGTERM stopped it
    const resumed = charlstm(['train', '--resume', dir, '--epochs', '2']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resuming .* at epoch \d+, batch \d+/);
  } finally {
    child.kill('SIGKILL');
  }
});

test("a dead run's lock is taken over and said so", () => {
  const dir = path.join(tmp, 'stale');
  mkdirSync(dir);
  const gone = spawnSync(process.execPath, ['-e', '']).pid!; // a pid whose process has exited
  writeFileSync(
    path.join(dir, LOCK_NAME),
    JSON.stringify({ pid: gone, host: os.hostname(), started: '2026-01-01T00:00:00.000Z' }),
  );
  const r = charlstm([...LONG, '--epochs', '1', '--out', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`took over the lock of a run that is gone \\(pid ${gone},`));
  assert.ok(existsSync(path.join(dir, 'model.json')));
  assert.ok(!existsSync(path.join(dir, LOCK_NAME)));
});

test('an output folder that cannot be used is refused before the first batch', () => {
  const file = path.join(tmp, 'a-file');
  writeFileSync(file, 'keep me');
  const cases: [string, RegExp][] = [
    [file, /--out .*a-file is a file, not a folder/],
    [
      path.join(file, 'model'),
      /--out .*a-file\/model lies under a file|a part of its path is a file/,
    ],
  ];
  for (const [out, message] of cases) {
    const r = charlstm([...LONG, '--out', out]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^charlstm: error: /);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /Epoch 1/, 'refused before training');
  }
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
});

// A small tmpfs in a private mount namespace (unshare: no real mount, gone with the process).
const canMount =
  spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /mnt'], {
    stdio: 'ignore',
  }).status === 0;

test(
  'a full disk: the file is named, exit code 2, no temporary file left, the last save intact',
  { skip: canMount ? false : 'needs unshare -rm and tmpfs (a private mount namespace)' },
  () => {
    const mnt = path.join(tmp, 'small-disk');
    mkdirSync(mnt);
    const out = path.join(mnt, 'model');
    const args = [...LONG, '--epochs', '6', '--checkpoint-every', '5', '--out', out];
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    // 150 kB: the first epoch's model, best/ and checkpoint fit (about 90 kB), later ones do not
    const script =
      `mount -t tmpfs -o size=150k tmpfs ${q(mnt)} && ` +
      `${[process.execPath, ...CLI, ...args].map(q).join(' ')}; code=$?; ` +
      // what is on the small disk when the run has ended, and whether it still loads
      `ls -a ${q(out)}; ${[process.execPath, ...CLI, 'eval', '--model', out, '--corpus', corpus, '--json'].map(q).join(' ')} >/dev/null && echo model-loads; exit $code`;
    const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], {
      cwd: REPO,
      encoding: 'utf8',
      env: cliEnv(),
      timeout: 120_000,
    });
    assert.equal(r.status, 2, r.stderr);
    const error = r.stderr.trim().split('\n').at(-1)!;
    assert.match(
      error,
      /^charlstm: error: cannot save .*small-disk\/model\/\S+: the disk is full \(ENOSPC\); the (previous checkpoint|model saved before) is kept$/,
    );
    const files = r.stdout.split('\n');
    assert.ok(!files.some((f) => /\.tmp/.test(f)), `a temporary file was left: ${files.join(' ')}`);
    assert.ok(files.includes('checkpoint.ckpt'), files.join(' '));
    assert.ok(files.includes('model-loads'), 'the model saved before still loads');
  },
);
