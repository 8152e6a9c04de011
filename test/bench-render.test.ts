import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  BLOCK_NAMES,
  SCALE_BLOCK,
  gflops,
  int,
  readBlock,
  readScale,
  readmeBlocks,
  renderBlocks,
  renderIntro,
  renderPerformance,
  renderScale,
  renderScaleSvg,
  renderTargets,
  renderPreset,
  renderBf16Loss,
  replaceBlocks,
  times,
  type BenchResults,
  type PresetResults,
  type ScaleResults,
} from '../bench/render.ts';
import { judge } from '../bench/scale.ts';

// bench/render.ts turns docs/bench-latest.json into the README's bench blocks; these tests feed
// it a small fixture (test/fixtures/bench-results.json) whose figures are known.

const fixture = (): BenchResults =>
  JSON.parse(
    readFileSync(new URL('./fixtures/bench-results.json', import.meta.url), 'utf8'),
  ) as BenchResults;

test('numbers are grouped and ratios rounded the same way everywhere', () => {
  assert.equal(int(4311.4), '4,311');
  assert.equal(int(1234567.5), '1,234,568');
  assert.equal(int(58.3), '58');
  assert.equal(gflops(101.9), '102');
  assert.equal(gflops(8.26), '8.3');
  assert.equal(times(4311.4 / 2752.1), '1.57×');
  assert.equal(times(3.14), '3.1×');
  assert.equal(times(4311.4 / 49), '88×');
  assert.throws(() => int(Number.NaN), RangeError);
  assert.throws(() => times(undefined as unknown as number), RangeError);
});

test('the Performance block shows every measured figure, with ratios derived from them', () => {
  const md = renderPerformance(fixture());
  // what measured it, where the figures are, and how busy the machine was
  assert.match(md, /`npm run bench -- --write`/);
  assert.match(md, /\[`docs\/bench-latest\.json`\]\(docs\/bench-latest\.json\)/);
  assert.match(md, /on 2026-11-27: 2 × AMD EPYC \(CPU family 26, AVX2\/FMA\), Node 20\.20\.2/);
  assert.match(md, /load average 0\.52 when it began and 1\.96 when it ended/);
  // training, each engine, and the ratios
  assert.match(
    md,
    /\| training, native AVX2 engine, 2 threads \(the default here\) \| \*\*4,311 seq\/s\*\* \| 102 GFLOP\/s; 1\.57× one thread; 88× TF\.js WebAssembly \|/,
  );
  assert.match(md, /\| training, native AVX2 engine, 1 thread \| 2,752 seq\/s \| 65 GFLOP\/s \|/);
  assert.match(
    md,
    /\| training, WebAssembly engine, 2 threads \| 1,360 seq\/s \| 32 GFLOP\/s; 1\.40× one thread; 28× TF\.js WebAssembly \|/,
  );
  assert.match(md, /TensorFlow\.js 4\.22\.0, WebAssembly backend \| 49 seq\/s/);
  assert.match(md, /TensorFlow\.js 4\.22\.0, pure-JS backend \| 10 seq\/s/);
  // the native kernel is timed, not assumed
  assert.match(
    md,
    /\[64×128\]·\[128×512\].* \| 85 GFLOP\/s \(native\), 32 \(WebAssembly\) \| .*unpacked: 70 \(native\), 18 \(WebAssembly\) \|/,
  );
  assert.match(md, /WebAssembly reaches 37% of the native FP32 rate/);
  // the targets: the fixture's figures miss all three
  assert.match(
    md,
    /Targets \(issue 16\): reference training on the native engine \(FP32\), 2 threads, 4,311 seq\/s against 8,000: \*\*not met\*\*; on the WebAssembly engine, 2 threads, 1,360 seq\/s against 3,500: \*\*not met\*\*; the ten-minute model, 25,600 scored characters\/s against 45,000: \*\*not met\*\*\. Where one is missed/,
  );
  // generation like for like: one stream against TF.js's one stream; the batch separately
  assert.match(
    md,
    /\| generation, window mode, one stream \| 1,631 chars\/s \(native\), 1,421 \(WebAssembly\) \| TF\.js WebAssembly, one stream the same way: 58 chars\/s; charlstm native is 28× as fast \|/,
  );
  assert.match(
    md,
    /4 sample temperatures as one batch \| 5,760 chars\/s \(native\), 2,035 \(WebAssembly\) \| .*3\.5× one stream/,
  );
  assert.match(md, /stateful, one stream \| 65,649 chars\/s \(native\), 62,616 \(WebAssembly\)/);
  assert.match(
    md,
    /ten-minute model .* \| 300 ms \| native, 2 threads: 25,600 scored characters a second/,
  );
  // the real train process
  assert.match(
    md,
    /peak resident memory of `charlstm train --corpus nietzsche --epochs 1 --seed 1 --out <temporary folder>` \| 322 MiB \| .*validation, samples, memorisation report, model saved, best model saved/,
  );
  assert.match(
    md,
    /\| the same run \| 43 s of training at 4,185 seq\/s \| 180,250 training and 20,028 validation windows; 48 s for the whole process/,
  );
  assert.doesNotMatch(md, /a `--quick` run|load average reached|undefined|NaN/);
});

test('BF16 products and the relaxed-SIMD build get their rows, ratios and verdicts', () => {
  const r = fixture();
  const rate = (seqPerSec: number) => ({
    seqPerSec,
    gflops: (seqPerSec * r.train.flopPerSeq) / 1e9,
  });
  r.train.bf16_1 = rate(6000);
  r.train.bf16_2 = rate(9000);
  r.train.wasmVariant = 'relaxed-simd';
  r.train.simd128_1 = rate(1000);
  r.train.simd128_2 = rate(1250);
  r.kernel.packed.nativeBf16 = 340;
  r.kernel.packed.wasmSimd128 = 28;
  r.tenMinuteModel.precision = 'bf16';
  r.tenMinuteModel.fp32MsPerBatch = 300;
  r.tenMinuteModel.msPerBatch = 150;
  const md = renderPerformance(r);
  assert.match(
    md,
    /\| training, native engine, BF16 products \(`--precision bf16`\), 2 threads \| \*\*9,000 seq\/s\*\* \| 213 GFLOP\/s; 2\.1× FP32's; 1\.50× one thread; 184× TF\.js WebAssembly \|/,
  );
  assert.match(
    md,
    /\| training, native engine, FP32, 2 threads \(the default here\) \| 4,311 seq\/s \|/,
  );
  assert.match(
    md,
    /\| training, WebAssembly engine \(relaxed SIMD\), 2 threads \| 1,360 seq\/s \| 32 GFLOP\/s; 1\.09× the SIMD128 build's; 1\.40× one thread/,
  );
  assert.match(md, /SIMD128 build \(where relaxed SIMD is missing\), 2 threads \| 1,250 seq\/s/);
  assert.match(
    md,
    /\| 340 GFLOP\/s \(native BF16\), 85 \(native FP32\), 32 \(WebAssembly, relaxed SIMD\), 28 \(WebAssembly, SIMD128\) \|/,
  );
  assert.match(md, /the product runs 4\.0× as fast as in FP32/);
  assert.match(
    md,
    /\| 150 ms \| native, BF16 products \(the preset's `--precision auto` here\), 2 threads: 51,200 scored characters a second; FP32: 300 ms/,
  );
  assert.match(md, /BF16 products\), 2 threads, 9,000 seq\/s against 8,000: \*\*met\*\*/);
  assert.match(md, /the ten-minute model, 51,200 scored characters\/s against 45,000: \*\*met\*\*/);
  assert.match(md, /1,360 seq\/s against 3,500: \*\*not met\*\*/);
  assert.match(renderIntro(r), /184× on the native one with BF16 products/);
});

test('the scored-characters target is judged on the model the issue set it for, where measured', () => {
  const r = fixture();
  r.tenMinuteModel.layers = 2;
  r.tenMinuteModel.units = 384;
  r.tenMinuteModel.msPerBatch = 200;
  r.tenMinuteModel.filed = { layers: 2, units: 256, dropout: 0.3, msPerBatch: 96 };
  const targets = renderTargets(r)!;
  assert.match(
    targets,
    /the ten-minute model as the issue found it \(2 × LSTM\(256\), dropout 0\.3\), 80,000 scored characters\/s against 45,000: \*\*met\*\* \(the preset now spends that speed on 2 × LSTM\(384\): 38,400\)/,
  );
  r.tenMinuteModel.filed.msPerBatch = 200;
  assert.match(renderTargets(r)!, /38,400 scored characters\/s against 45,000: \*\*not met\*\*/);
});

test('the intro sentence quotes the same run', () => {
  const intro = renderIntro(fixture());
  assert.equal(
    intro,
    "On the 2-core development machine, training the reference model runs 28× as fast as TensorFlow.js's WebAssembly backend (4.22.0) on the WebAssembly engine and 88× on the native one; one epoch of a real `charlstm train` on nietzsche took 43 s of training at 4,185 seq/s ([Performance](#performance) has the figures and how they were measured).",
  );
});

test('a machine without the native engine, a run without TF.js or the train process, renders what was measured', () => {
  const r = fixture();
  delete r.train.native1;
  delete r.train.native2;
  delete r.kernel.packed.native;
  delete r.kernel.unpacked.native;
  delete r.generate.oneStream.native;
  delete r.generate.fourTemperatures.native;
  delete r.generate.stateful.native;
  delete r.tfjs;
  delete r.trainProcess;
  r.train.defaultEngine = 'wasm';
  r.tenMinuteModel.engine = 'wasm';
  r.nativeUnavailable = 'disabled by CHARLSTM_NO_NATIVE';
  r.quick = true;
  r.machine.loadAverage.end = [3.1, 2, 1];
  const { intro, performance } = renderBlocks(r);
  assert.doesNotMatch(performance, /native AVX2|\(native\)|TensorFlow|peak resident/);
  assert.match(performance, /The native engine was not measured: disabled by CHARLSTM_NO_NATIVE\./);
  assert.match(
    performance,
    /\| training, WebAssembly engine, 2 threads \(the default here\) \| \*\*1,360 seq\/s\*\* \| 32 GFLOP\/s; 1\.40× one thread \|/,
  );
  assert.match(performance, /a `--quick` run/);
  assert.match(performance, /The load average reached 3\.10 on 2 cores: other work was running/);
  assert.match(performance, /Two threads train 1\.40× as fast as one, not 2×\./);
  assert.match(intro, /runs at 1,360 sequences a second on the WebAssembly engine \(/);
});

test('a train run on the fallback corpus says so', () => {
  const r = fixture();
  r.trainProcess!.corpus = {
    name: 'moby-dick',
    chars: 100000,
    whole: false,
    fallback: 'nietzsche.txt is not in /nowhere; Moby-Dick from its npm package instead',
  };
  const { intro, performance } = renderBlocks(r);
  assert.match(
    intro,
    /one epoch of a real `charlstm train` on the first 100,000 characters of moby-dick took/,
  );
  assert.match(
    performance,
    /The train run used moby-dick: nietzsche\.txt is not in \/nowhere; Moby-Dick from its npm package instead\./,
  );
});

test('the PyTorch anchor: its best setting, the others, the ratios; or why it was skipped', () => {
  const r = fixture();
  r.pytorch = {
    version: '1.13.0a0',
    blas: 'OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64',
    blasCore: 'Haswell',
    ompWaitPolicy: 'PASSIVE',
    settings: [
      { torchThreads: 1, blasThreads: 1, seqPerSec: 1820.7, msPerBatch: [70.3] },
      { torchThreads: 2, blasThreads: 2, seqPerSec: 2236.5, msPerBatch: [57.2] },
      { torchThreads: 1, blasThreads: 2, seqPerSec: 2155.6, msPerBatch: [59.4] },
    ],
    best: 1,
    tenMinuteMsPerBatch: 322.8,
  };
  const md = renderPerformance(r);
  assert.match(
    md,
    /\| training, PyTorch 1\.13\.0a0, `nn\.LSTM` on OpenBLAS 0\.3\.21 \(Haswell kernels\) \| 2,237 seq\/s \| the best of the threads timed \(ATen \+ OpenBLAS\): 2 \+ 2; 1 \+ 1: 1,821 seq\/s, 1 \+ 2: 2,156; OMP_WAIT_POLICY=PASSIVE \|/,
  );
  // 4311.4 / 2236.5 and 1360 / 2236.5, after the TF.js ratio
  assert.match(
    md,
    /\*\*4,311 seq\/s\*\* \| 102 GFLOP\/s; 1\.57× one thread; 88× TF\.js WebAssembly; 1\.93× PyTorch \|/,
  );
  assert.match(
    md,
    /1,360 seq\/s \| 32 GFLOP\/s; 1\.40× one thread; 28× TF\.js WebAssembly; 0\.61× PyTorch \|/,
  );
  assert.match(md, /25,600 scored characters a second; PyTorch at its best threads: 323 ms \|/);
  assert.doesNotMatch(md, /PyTorch was not measured/);
  delete r.pytorch.tenMinuteMsPerBatch;
  assert.doesNotMatch(renderPerformance(r), /PyTorch at its best/);

  r.pytorch = {
    skipped: 'no Python with PyTorch (import torch) found: python3: No module named torch',
  };
  const skipped = renderPerformance(r);
  assert.match(
    skipped,
    /\n\nPyTorch was not measured: no Python with PyTorch \(import torch\) found: python3: No module named torch\.\n/,
  );
  assert.doesNotMatch(skipped, /\| training, PyTorch|× PyTorch|PyTorch at its best/);
  assert.doesNotMatch(renderPerformance(fixture()), /PyTorch/, 'absent: the bench did not look');
});

test('a figure missing from the JSON is an error, not a blank or "undefined" in the README', () => {
  const r = fixture();
  delete (r.train.wasm2 as Partial<BenchResults['train']['wasm2']>).seqPerSec;
  assert.throws(() => renderBlocks(r), RangeError);
  const s = fixture();
  (s.tenMinuteModel as { msPerBatch?: number }).msPerBatch = undefined;
  assert.throws(() => renderBlocks(s), RangeError);
});

test('replaceBlocks rewrites only what lies between the markers, and refuses a broken README', () => {
  const readme = [
    '# x',
    'before',
    '<!-- bench:intro:start -->',
    'old intro',
    '<!-- bench:intro:end -->',
    'middle',
    '<!-- bench:performance:start -->',
    'old table',
    '| 1 | 2 |',
    '<!-- bench:performance:end -->',
    'after',
    '',
  ].join('\n');
  const blocks = { intro: 'NEW INTRO', performance: 'NEW\nTABLE' };
  const out = replaceBlocks(readme, blocks);
  assert.equal(
    out,
    [
      '# x',
      'before',
      '<!-- bench:intro:start -->',
      'NEW INTRO',
      '<!-- bench:intro:end -->',
      'middle',
      '<!-- bench:performance:start -->',
      'NEW',
      'TABLE',
      '<!-- bench:performance:end -->',
      'after',
      '',
    ].join('\n'),
  );
  assert.equal(replaceBlocks(out, blocks), out, 'idempotent');
  assert.equal(readBlock(out, 'performance'), 'NEW\nTABLE');
  const without = readme.replace('<!-- bench:intro:end -->\n', '');
  assert.throws(() => replaceBlocks(without, blocks), /bench:intro:end/);
  const twice = readme + '<!-- bench:intro:start -->\n';
  assert.throws(() => replaceBlocks(twice, blocks), /once each/);
  const reversed = readme
    .replace('<!-- bench:intro:start -->', '@@')
    .replace('<!-- bench:intro:end -->', '<!-- bench:intro:start -->')
    .replace('@@', '<!-- bench:intro:end -->');
  assert.throws(() => replaceBlocks(reversed, blocks), /before/);
  const unknown = readme + '<!-- bench:other:start -->\n<!-- bench:other:end -->\n';
  assert.throws(() => replaceBlocks(unknown, blocks), /unknown bench blocks: other/);
});
test("the README's bench blocks are exactly what docs/bench-latest.json renders to", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const latest = JSON.parse(
    readFileSync(new URL('../docs/bench-latest.json', import.meta.url), 'utf8'),
  ) as BenchResults;
  const blocks = renderBlocks(latest);
  for (const name of BLOCK_NAMES) {
    assert.equal(
      readBlock(readme, name),
      blocks[name],
      `README's bench:${name} block differs from docs/bench-latest.json: run npm run bench -- --write`,
    );
  }
});

// bench/scale.ts's results (docs/scale.json) render to the README's bench:scale block; the fixture
// (test/fixtures/scale-results.json) has one target met and one missed in each column
const scaleFixture = (): ScaleResults =>
  JSON.parse(
    readFileSync(new URL('./fixtures/scale-results.json', import.meta.url), 'utf8'),
  ) as ScaleResults;

test('the scale block shows each corpus, each figure and each target met or missed', () => {
  const md = renderScale(scaleFixture());
  assert.match(md, /^Measured by `npm run bench:scale`, which wrote \[`docs\/scale\.json`\]/);
  assert.match(
    md,
    /on 2026-12-03: 2 × AMD EPYC, Node 20\.20\.2; load average 2\.02 when it began and 3\.45/,
  );
  assert.match(md, /one epoch of about 199 batches of 128 .* by GNU time \(%M\)\./);
  const table = md.split('\n').filter((l) => l.startsWith('| '));
  assert.deepEqual(table, [
    '| corpus | characters | vocabulary | preparation | reuse | train process | speed | peak memory |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    '| 1 MB | 987,792 | 57 | 3.2 MB/s (**miss**) | 0.2 s | 6.0 s, 199 batches | 5,607 seq/s | 288 MiB (pass) |',
    '| 100 MB | 98,781,696 | 57 | 63 MB/s (pass) | 0.6 s | 22 s, 200 batches | 4,200 seq/s (**miss**) | 713 MiB (**miss**) |',
    '| Hangul/CJK | 782,475 | 2,502 | – | – | 15 s, 197 batches | 1,867 seq/s | 465 MiB (pass) |',
  ]);
  assert.match(
    md,
    /Targets \(issue 13\): preparation at 50 MB\/s or more: missed at 1 MB; peak memory of `charlstm train` under 600 MiB at every size: missed at 100 MB; training at 100 MB within 10% of the speed at 1 MB: 4,200 against 5,607 seq\/s, missed\./,
  );
  assert.match(md, /The 1 GB corpus .* is not run by default, for the minutes/);
  assert.match(md, /\n!\[Peak memory and training speed [^\]]*\]\(docs\/scale\.svg\)$/);
  assert.match(
    md,
    /The Hangul\/CJK corpus has 2,502 distinct characters: .* 1,867 seq\/s \(0\.33× the 1 MB speed\)\./,
  );
});

test("docs/scale.svg plots each Moby-Dick corpus's peak memory and speed against the targets", () => {
  const svg = renderScaleSvg(scaleFixture());
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="720" height="250"/);
  assert.equal(svg.match(/<circle /g)!.length, 4); // 1 MB and 100 MB, in each of the two panels
  for (const figure of ['288', '713', '5,607', '4,200'])
    assert.match(svg, new RegExp(`>${figure}</text>`));
  assert.doesNotMatch(svg, />465</, 'the Hangul/CJK corpus is not on the size axis');
  assert.match(svg, /target: under 600 MiB/);
  assert.match(svg, /within 10% of 1 MB/);
  assert.match(svg, />1 MB<\/text>[^]*>100 MB<\/text>/);
  assert.doesNotMatch(svg, /NaN|undefined/);
});

test("the scale targets are judged from the runs' figures, as the fixture records them", () => {
  const r = scaleFixture();
  assert.deepEqual(judge(r.runs), r.targets);
  r.runs[1]!.training.seqPerSec = 0.9 * 5607; // exactly 10% slower: within
  r.runs[1]!.training.maxRssMiB = 599.9;
  r.runs[0]!.preparation!.mbPerSec = 50;
  assert.deepEqual(
    judge(r.runs).rows.map((x) => [x.prepare, x.rss, x.speed]),
    [
      [true, true, undefined],
      [true, true, true],
      [undefined, true, undefined],
    ],
  );
});

test('a scale run that meets every target, 1 GB included, says so and nothing else', () => {
  const r = scaleFixture();
  r.runs[1]!.label = '1 GB';
  r.runs[1]!.bytes = 1e9;
  r.runs[1]!.training.maxRssMiB = 512;
  r.runs[1]!.training.seqPerSec = 5500;
  r.runs[0]!.preparation!.mbPerSec = 55;
  r.targets = judge(r.runs);
  const md = renderScale(r);
  assert.match(
    md,
    /preparation at 50 MB\/s or more: met at every size; peak memory .*: met at every size; training at 1 GB within 10% of the speed at 1 MB: 5,500 against 5,607 seq\/s, met\./,
  );
  assert.doesNotMatch(md, /\*\*miss\*\*|holds every id|not run by default|undefined|NaN/);
});

test('a figure missing from docs/scale.json is an error, not a blank in the README', () => {
  const r = scaleFixture();
  delete (r.runs[0]!.training as Partial<ScaleResults['runs'][number]['training']>).seqPerSec;
  assert.throws(() => renderScale(r), RangeError);
  const s = scaleFixture();
  s.targets.rows.pop();
  assert.throws(() => renderScale(s), /no row for Hangul\/CJK/);
});

test("the README's bench:scale block is exactly what docs/scale.json renders to", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const latest = JSON.parse(
    readFileSync(new URL('../docs/bench-latest.json', import.meta.url), 'utf8'),
  ) as BenchResults;
  const blocks = readmeBlocks(latest, readScale());
  assert.equal(
    readBlock(readme, SCALE_BLOCK),
    blocks[SCALE_BLOCK],
    "README's bench:scale block differs from docs/scale.json: run node --import tsx bench/render.ts",
  );
  assert.equal(replaceBlocks(readme, blocks), readme);
});

test('the preset block: a row per corpus, the target judged on the model a Nietzsche run ends with', () => {
  const run = (corpus: string, loss: number, best: number): PresetResults => ({
    preset: 'ten-minutes',
    command: `charlstm train --corpus ${corpus} --preset ten-minutes --seed 1 --out <out>/model`,
    machine: {
      cpus: 2,
      model: 'AMD EPYC',
      node: 'v20.20.2',
      date: '2026-12-03T19:00:00.000Z',
      loadAverageMedian: 1.04,
      loadAverageMax: 2.2,
    },
    training: { trainSeconds: 600, wallSeconds: 640, epochs: 3, seqPerSec: [] },
    final: { command: 'charlstm eval', corpus, scored: 60090, loss, bpc: loss / Math.LN2 },
    best: { command: 'charlstm eval', corpus, scored: 60090, loss: best, bpc: best / Math.LN2 },
  });
  const md = renderPreset([run('nietzsche', 1.2471, 1.2466), run('moby-dick', 1.31, 1.305)]);
  assert.match(
    md,
    /\| nietzsche \| `charlstm train --corpus nietzsche --preset ten-minutes --seed 1 --out <out>\/model` \| 3 \| 1\.247 nats \(1\.799 bits\/char\) \| 1\.247 nats \(1\.798 bits\/char\) \| 1\.0, 2\.2 \|/,
  );
  assert.match(md, /\| moby-dick \| .* \| 1\.310 nats/);
  assert.match(
    md,
    /at most 1\.25 nats on nietzsche in ten minutes; the model the run ends with: 1\.247, \*\*met\*\*/,
  );
  assert.match(renderPreset([run('nietzsche', 1.2601, 1.25)]), /1\.260, \*\*not met\*\*/);
});

test('the bf16-loss block: each epoch in both precisions and the 0.01 verdict', () => {
  const base = {
    format: 1 as const,
    command: 'npx tsx bench/bf16-probe.ts --loss nietzsche --epochs 2 --write',
    train: 'charlstm train --corpus nietzsche ... --precision fp32|bf16 --out DIR',
    date: '2026-12-03T19:00:00.000Z',
    machine: {
      cpu: 'AMD EPYC',
      cores: 2,
      node: 'v20.20.2',
      loadAverage: { start: [0.5], end: [1.5] },
    },
    fp32: [
      { loss: 1.9, valLoss: 1.7 },
      { loss: 1.6, valLoss: 1.55 },
    ],
    tolerance: 0.01,
  };
  const md = renderBf16Loss({
    ...base,
    bf16: [
      { loss: 1.905, valLoss: 1.71 },
      { loss: 1.597, valLoss: 1.54 },
    ],
  });
  assert.match(md, /\| 1 \| 1\.9000 \| 1\.9050 \| \+0\.0050 \| 1\.7000 \| 1\.7100 \|/);
  assert.match(md, /\| 2 \| 1\.6000 \| 1\.5970 \| −0\.0030 \|/);
  assert.match(
    md,
    /largest per-epoch difference of the training loss is 0\.0050: \*\*within 0\.01\*\*/,
  );
  const far = renderBf16Loss({ ...base, bf16: [base.fp32[0]!, { loss: 1.62, valLoss: 1.6 }] });
  assert.match(far, /is 0\.0200: \*\*outside 0\.01\*\*/);
  assert.throws(() => renderBf16Loss({ ...base, bf16: [base.fp32[0]!] }), /different epoch counts/);
});
