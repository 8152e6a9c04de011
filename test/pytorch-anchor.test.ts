import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  SCRIPT,
  benchPytorch,
  defaultPythons,
  parseProbe,
  parseRun,
  scriptEnv,
  unfairBlas,
} from '../bench/pytorch.ts';

// bench/pytorch.ts without a PyTorch: the script's output is parsed from fixed lines, and the
// Python it spawns is a shell script standing in for one (no torch needed, nothing timed).

const OPENBLAS = {
  openblas: true,
  library: '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so',
  config: 'OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64',
  core: 'Haswell',
};
const REFERENCE_BLAS = { openblas: false, library: '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3' };
const probe = (blas: object): string =>
  JSON.stringify({ torch: '1.13.0a0', python: '3.11.2', blas });
const run = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  torch: '1.13.0a0',
  python: '3.11.2',
  blas: OPENBLAS,
  quick: true,
  ompWaitPolicy: 'PASSIVE',
  shape: { batch: 128, steps: 60, units: 128, vocab: 57 },
  warmupMs: 70.2,
  train: [
    { torchThreads: 1, blasThreads: 1, seqPerSec: 1820.7, msPerBatch: [66.07, 70.3, 71.13] },
    { torchThreads: 2, blasThreads: 2, seqPerSec: 2236.5, msPerBatch: [105.75, 46.16, 57.23] },
    { torchThreads: 1, blasThreads: 2, seqPerSec: 2550.2, msPerBatch: [81.02, 43.07, 50.19] },
  ],
  best: 2,
  tenMinuteModel: { layers: 2, units: 256, msPerBatch: 322.76 },
  ...over,
});

test('a full run line becomes the anchor: every setting, the best, the ten-minute batch', () => {
  const anchor = parseRun('some warning on stdout\n' + JSON.stringify(run()) + '\n');
  assert.deepEqual(anchor, {
    version: '1.13.0a0',
    blas: OPENBLAS.config,
    blasCore: 'Haswell',
    ompWaitPolicy: 'PASSIVE',
    settings: [
      { torchThreads: 1, blasThreads: 1, seqPerSec: 1820.7, msPerBatch: [66.07, 70.3, 71.13] },
      { torchThreads: 2, blasThreads: 2, seqPerSec: 2236.5, msPerBatch: [105.75, 46.16, 57.23] },
      { torchThreads: 1, blasThreads: 2, seqPerSec: 2550.2, msPerBatch: [81.02, 43.07, 50.19] },
    ],
    best: 2,
    tenMinuteMsPerBatch: 322.76,
  });
  assert.equal(
    parseRun(JSON.stringify(run({ tenMinuteModel: null }))).tenMinuteMsPerBatch,
    undefined,
  );
});

test('a malformed run line is an error naming what is wrong', () => {
  assert.throws(() => parseRun('Traceback ...\n'), /printed no JSON line: "Traceback \.\.\."/);
  assert.throws(() => parseRun('[1, 2]'), /not an object/);
  const noRate = run();
  (noRate.train as Record<string, unknown>[])[1]!.seqPerSec = null;
  assert.throws(() => parseRun(JSON.stringify(noRate)), /no valid seqPerSec: null/);
  assert.throws(
    () => parseRun(JSON.stringify(run({ best: 0 }))),
    /best setting \(0\) is not its fastest/,
  );
  assert.throws(() => parseRun(JSON.stringify(run({ best: 3 }))), /no valid best: 3/);
  assert.throws(() => parseRun(JSON.stringify(run({ train: [] }))), /no valid train/);
  assert.throws(() => parseRun(JSON.stringify(run({ blas: REFERENCE_BLAS }))), /not OpenBLAS/);
});

test('a torch on the reference BLAS is an unfair anchor, and says which library it found', () => {
  const p = parseProbe(probe(REFERENCE_BLAS));
  assert.deepEqual(p, { torch: '1.13.0a0', python: '3.11.2', blas: REFERENCE_BLAS });
  assert.equal(
    unfairBlas(p),
    'PyTorch 1.13.0a0 runs its products on the BLAS at /usr/lib/x86_64-linux-gnu/blas/libblas.so.3, ' +
      'not OpenBLAS; the reference BLAS is about ten times slower, which would make an unfair ' +
      'anchor (Debian: install libopenblas0-pthread)',
  );
  assert.match(
    unfairBlas(parseProbe(probe({ openblas: false, library: null })))!,
    /on no BLAS library we could find/,
  );
  assert.equal(unfairBlas(parseProbe(probe(OPENBLAS))), undefined);
  assert.throws(() => parseProbe(probe({ openblas: true, library: 'x' })), /no valid config/);
});

test('the Pythons tried: $CHARLSTM_PYTHON alone, else python3 and then the system one', () => {
  assert.deepEqual(defaultPythons({ CHARLSTM_PYTHON: '/opt/py/bin/python' }), [
    '/opt/py/bin/python',
  ]);
  assert.deepEqual(defaultPythons({}), ['python3', '/usr/bin/python3']);
});

test("OpenBLAS chooses its own kernels: the script's environment has no OPENBLAS_CORETYPE", () => {
  assert.deepEqual(
    scriptEnv({ OPENBLAS_CORETYPE: 'Haswell', PATH: '/bin', OMP_WAIT_POLICY: 'x' }),
    {
      PATH: '/bin',
      OMP_WAIT_POLICY: 'x',
    },
  );
});

/** A stand-in Python: logs its arguments, answers --probe with `probeLine` and a run with `runLine`. */
function fakePython(
  dir: string,
  name: string,
  probeLine: string,
  runLine: string,
  code = 0,
): string {
  const file = path.join(dir, name);
  const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      `echo "$* \${OPENBLAS_CORETYPE-(no OPENBLAS_CORETYPE)}" >> ${quote(path.join(dir, 'calls.log'))}`,
      `if [ "$2" = --probe ]; then echo ${quote(probeLine)}; exit 0; fi`,
      `echo ${quote(runLine)}`,
      `echo 'RuntimeError: stand-in failure' >&2`,
      `exit ${code}`,
      '',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
  return file;
}

test('benchPytorch skips with the reason, and times nothing, when no Python has a fair torch', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-pytorch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const missing = path.join(dir, 'no-such-python');
  const none = await benchPytorch({ pythons: [missing] });
  assert.ok('skipped' in none);
  assert.match(
    none.skipped,
    /^no Python with PyTorch \(import torch\) found: .*no-such-python: spawn .* ENOENT$/,
  );

  const noTorch = path.join(dir, 'python-without-torch');
  writeFileSync(
    noTorch,
    '#!/bin/sh\necho "ModuleNotFoundError: No module named \'torch\'" >&2\nexit 1\n',
  );
  chmodSync(noTorch, 0o755);
  const reference = fakePython(dir, 'python-reference-blas', probe(REFERENCE_BLAS), 'unused');
  const skipped = await benchPytorch({ pythons: [noTorch, reference] });
  assert.deepEqual(skipped, { skipped: unfairBlas(parseProbe(probe(REFERENCE_BLAS))) });
  // the reference-BLAS torch was probed, never run: a full run there takes ten times as long
  assert.equal(
    readFileSync(path.join(dir, 'calls.log'), 'utf8'),
    `${SCRIPT} --probe (no OPENBLAS_CORETYPE)\n`,
  );
});

test('benchPytorch runs the script under the first Python with torch and returns its figures', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'charlstm-pytorch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = fakePython(dir, 'python-openblas', probe(OPENBLAS), JSON.stringify(run()));
  const saved = process.env.OPENBLAS_CORETYPE;
  process.env.OPENBLAS_CORETYPE = 'Haswell';
  t.after(() => {
    if (saved === undefined) delete process.env.OPENBLAS_CORETYPE;
    else process.env.OPENBLAS_CORETYPE = saved;
  });
  const anchor = await benchPytorch({ pythons: [path.join(dir, 'absent'), good], quick: true });
  assert.deepEqual(anchor, parseRun(JSON.stringify(run())));
  assert.equal(
    readFileSync(path.join(dir, 'calls.log'), 'utf8'),
    `${SCRIPT} --probe (no OPENBLAS_CORETYPE)\n${SCRIPT} --quick (no OPENBLAS_CORETYPE)\n`,
  );

  const failing = fakePython(dir, 'python-failing', probe(OPENBLAS), 'partial output', 1);
  assert.deepEqual(await benchPytorch({ pythons: [failing] }), {
    skipped: `bench/pytorch-train.py failed under ${failing}: RuntimeError: stand-in failure`,
  });
  const garbled = fakePython(dir, 'python-garbled', probe(OPENBLAS), '{"torch": "1.13"}');
  const g = await benchPytorch({ pythons: [garbled] });
  assert.ok('skipped' in g);
  assert.match(g.skipped, /no valid blas: undefined/);
});
