// The README's benchmark figures, rendered from docs/bench-latest.json: one source, no number
// typed by hand. `npm run bench -- --write` measures, writes the JSON, and replaces the README's
// marked blocks with renderBlocks() of it:
//
//   <!-- bench:intro:start --> … <!-- bench:intro:end -->              the intro's one sentence
//   <!-- bench:performance:start --> … <!-- bench:performance:end -->  the Performance table
//   <!-- bench:scale:start --> … <!-- bench:scale:end -->              the scale table
//   <!-- bench:pretrained:start --> … <!-- bench:pretrained:end -->    the built-in models
//   <!-- bench:finetune:start --> … <!-- bench:finetune:end -->        fine-tuning against scratch
//   <!-- bench:load-test:start --> … <!-- bench:load-test:end -->      the server under load
//   <!-- bench:preset:start --> … <!-- bench:preset:end -->            the ten-minutes preset's runs
//   <!-- bench:bf16-loss:start --> … <!-- bench:bf16-loss:end -->      BF16 against FP32 loss
// (the scale table from docs/scale.json, which `npm run bench:scale` writes: renderScale(); the
// built-in models from docs/pretrained.json, which `npm run bench:pretrained` writes)
//
// Everything here is pure (test/bench-render.test.ts); ratios are derived from the measured
// figures, never stored.
//
//   node --import tsx bench/render.ts [--check]
// re-renders the README's blocks from the committed docs/bench-latest.json and docs/scale.json
// without measuring anything (after a change to this file), or with --check exits 1 when they
// differ.

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Throughput of a training configuration; gflops counts the matrix products only (see flopPerSeq). */
export interface Rate {
  seqPerSec: number;
  gflops: number;
}

/** A figure on each engine; native is absent where the addon is unavailable. */
export interface EnginePair {
  /** the WebAssembly build the runtime runs best (train.wasmVariant) */
  wasm: number;
  native?: number;
  /** the SIMD128 build, where the relaxed one ran as `wasm` */
  wasmSimd128?: number;
  /** the native engine with BF16 products (--precision bf16), where the CPU has AVX512-BF16 */
  nativeBf16?: number;
}

/** A real `charlstm train` process (bench/train-rss.ts). */
export interface TrainProcessResult {
  /** the command as a user would type it (temporary paths elided) */
  command: string;
  /** 'compiled': bin/charlstm.js on dist/ compiled from src/; 'tsx': src/ under tsx's loader */
  runner: 'compiled' | 'tsx';
  corpus: { name: string; chars: number; whole: boolean; fallback?: string };
  epochs: number;
  valSplit: number;
  trainingWindows: number;
  validationWindows: number;
  batchSize: number;
  /** what the CLI printed, e.g. "native (AVX2/FMA), 2 threads" */
  engine: string;
  /** each epoch's training time and speed as the CLI printed them */
  epochSeconds: number[];
  seqPerSec: number[];
  /** the whole process: start, corpus, every epoch and its end, exit */
  wallSeconds: number;
  maxRssMiB: number;
  rssMethod: string;
  /** the parts of an epoch's end the run was checked to have done */
  covered: string[];
}

/** One (ATen threads, OpenBLAS threads) setting of the PyTorch anchor (bench/pytorch-train.py). */
export interface PytorchSetting {
  /** torch.get_num_threads(): ATen's OpenMP pool */
  torchThreads: number;
  /** openblas_get_num_threads(): the products' own pool */
  blasThreads: number;
  /** batch 128 / the median window's ms per batch */
  seqPerSec: number;
  msPerBatch: number[];
}

/** PyTorch's nn.LSTM on the reference model (bench/pytorch.ts), or why it was not measured. */
export type PytorchAnchor =
  | { skipped: string }
  | {
      /** torch.__version__ */
      version: string;
      /** OpenBLAS's openblas_get_config(), e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
      blas: string;
      /** the kernels OpenBLAS chose for this CPU (openblas_get_corename), e.g. "Haswell" */
      blasCore: string;
      /** libgomp's OMP_WAIT_POLICY in the run (PASSIVE unless the caller set one) */
      ompWaitPolicy: string;
      settings: PytorchSetting[];
      /** the index in settings of the highest seqPerSec */
      best: number;
      /** one batch of the ten-minute model at the best setting, ms; absent when not timed */
      tenMinuteMsPerBatch?: number;
    };

export interface BenchResults {
  format: 1;
  /** the command that wrote the file */
  command: string;
  /** a --quick run: shorter timed runs, a smaller train process */
  quick: boolean;
  machine: {
    cpus: number;
    model: string;
    cpuFamily?: number;
    avx2: boolean;
    fma: boolean;
    avx512bf16?: boolean;
    node: string;
    date: string;
    /** os.loadavg() (1, 5, 15 minutes) when the run began and when it ended */
    loadAverage: { start: number[]; end: number[] };
  };
  shapes: { batch: number; steps: number; units: number; vocab: number; shards: number };
  /** why the native engine was not measured, when it was not */
  nativeUnavailable?: string;
  kernel: {
    /** the product timed: one shard's recurrent step, [M×K]·[K×N] */
    M: number;
    K: number;
    N: number;
    /** GFLOP/s, one thread; packed: B in column panels (packB), as training runs it */
    packed: EnginePair;
    unpacked: EnginePair;
  };
  train: {
    /** FLOP of one training sequence's matrix products (forward, backward, weight gradient) */
    flopPerSeq: number;
    defaultEngine: 'native' | 'wasm';
    /** the WebAssembly build wasm1/wasm2 ran (the best this runtime compiles) */
    wasmVariant?: 'relaxed-simd' | 'simd128';
    wasm1: Rate;
    wasm2: Rate;
    /** the SIMD128 build, timed beside the relaxed one */
    simd128_1?: Rate;
    simd128_2?: Rate;
    /** native, FP32 */
    native1?: Rate;
    native2?: Rate;
    /** native, BF16 products (--precision bf16) */
    bf16_1?: Rate;
    bf16_2?: Rate;
  };
  /** the baseline; absent with --no-tfjs */
  tfjs?: {
    version: string;
    /** threads the wasm backend computes with in Node */
    wasmThreads: number;
    trainWasm: number;
    /** absent with --no-tfjs-cpu */
    trainCpu?: number;
    /** chars/s, one stream, window mode: model.predict on a [1, 60, 57] one-hot per character */
    generateWasmOneStream: number;
  };
  /** the PyTorch anchor; absent when the bench did not look for one, skipped when it found none */
  pytorch?: PytorchAnchor;
  /** chars/s on the reference shape (bench/generate-bench.ts) */
  generate: {
    /** one stream, window mode (every character from the last 60, re-read from a zero state) */
    oneStream: EnginePair;
    /** the four sample temperatures advanced as one batch, window mode; all streams' characters */
    fourTemperatures: EnginePair;
    /** one stream, the state carried from character to character */
    stateful: EnginePair;
  };
  /** one batch of the --preset ten-minutes model on the default engine, two threads */
  tenMinuteModel: {
    engine: 'native' | 'wasm';
    /** as the preset runs it (precision auto); absent in runs before precisions existed: fp32 */
    precision?: 'fp32' | 'bf16';
    /** the same batch in FP32, when `precision` is bf16 */
    fp32MsPerBatch?: number;
    threads: number;
    layers: number;
    units: number;
    dropout: number;
    batch: number;
    steps: number;
    msPerBatch: number;
    /**
     * the preset's model when issue 16 set the scored-characters target (2 × LSTM(256), dropout
     * 0.3), in the same precision; absent in runs before the preset was retuned
     */
    filed?: { layers: number; units: number; dropout: number; msPerBatch: number };
  };
  /** absent with --no-rss */
  trainProcess?: TrainProcessResult;
}

export const BLOCK_NAMES = ['intro', 'performance'] as const;
export type BlockName = (typeof BLOCK_NAMES)[number];

const finite = (v: number): number => {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new RangeError(`bench figure is not a finite number: ${String(v)}`);
  return v;
};

/** 4311.4 → "4,311" */
export function int(v: number): string {
  const s = String(Math.round(finite(v)));
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Two significant figures at most below 10, whole numbers above: 1.567 → "1.6", 85.2 → "85". */
export function gflops(v: number): string {
  return finite(v) >= 10 ? int(v) : v.toFixed(1);
}

/** A ratio: 1.567 → "1.57×", 3.14 → "3.1×", 88.4 → "88×". */
export function times(v: number): string {
  finite(v);
  return `${v >= 10 ? int(v) : v >= 2 ? v.toFixed(1) : v.toFixed(2)}×`;
}

const day = (iso: string): string => iso.slice(0, 10);

/** "5,760 chars/s (native), 2,035 (WebAssembly)" or, without native, "2,035 chars/s (WebAssembly)" */
function pair(p: EnginePair, unit: string): string {
  return p.native !== undefined
    ? `${int(p.native)} ${unit} (native), ${int(p.wasm)} (WebAssembly)`
    : `${int(p.wasm)} ${unit} (WebAssembly)`;
}

function corpusWords(tp: TrainProcessResult): string {
  return tp.corpus.whole
    ? tp.corpus.name
    : `the first ${int(tp.corpus.chars)} characters of ${tp.corpus.name}`;
}

function epochWords(tp: TrainProcessResult): string {
  const s = tp.epochSeconds.map((x) => int(x)).join(', ');
  const r = tp.seqPerSec.map((x) => int(x)).join(', ');
  return `${s} s of training at ${r} seq/s`;
}

/** The intro's sentence. */
export function renderIntro(r: BenchResults): string {
  const t = r.train;
  const parts: string[] = [];
  if (r.tfjs) {
    const vs = `TensorFlow.js's WebAssembly backend (${r.tfjs.version})`;
    const fastest = t.bf16_2 ?? t.native2;
    parts.push(
      fastest
        ? `training the reference model runs ${times(t.wasm2.seqPerSec / r.tfjs.trainWasm)} as fast as ${vs} on the WebAssembly engine and ${times(fastest.seqPerSec / r.tfjs.trainWasm)} on the native one${t.bf16_2 ? ' with BF16 products' : ''}`
        : `training the reference model runs ${times(t.wasm2.seqPerSec / r.tfjs.trainWasm)} as fast as ${vs} on the WebAssembly engine`,
    );
  } else {
    parts.push(
      `training the reference model runs at ${int(t.wasm2.seqPerSec)} sequences a second on the WebAssembly engine${t.native2 ? ` and ${int(t.native2.seqPerSec)} on the native one` : ''}`,
    );
  }
  const tp = r.trainProcess;
  if (tp) {
    parts.push(
      `${tp.epochs === 1 ? 'one epoch' : 'each epoch'} of a real \`charlstm train\` on ${corpusWords(tp)} took ${epochWords(tp)}`,
    );
  }
  return (
    `On the ${r.machine.cpus}-core development machine, ${parts.join('; ')} ` +
    `([Performance](#performance) has the figures and how they were measured).`
  );
}

/** The Performance section's measured part: what was run, the table, what the ratios say. */
export function renderPerformance(r: BenchResults): string {
  const m = r.machine;
  const t = r.train;
  const tf = r.tfjs;
  const load = (xs: number[]): string => finite(xs[0]!).toFixed(2);
  const isa = [m.avx2 && 'AVX2', m.fma && 'FMA'].filter(Boolean).join('/');
  const lines: string[] = [];
  lines.push(
    `Measured by \`npm run bench -- --write\`${r.quick ? ' (a `--quick` run: shorter timed runs)' : ''}, which wrote ` +
      `[\`docs/bench-latest.json\`](docs/bench-latest.json) and this section from it, on ${day(m.date)}: ` +
      `${m.cpus} × ${m.model}${m.cpuFamily !== undefined ? ` (CPU family ${m.cpuFamily}${isa ? `, ${isa}` : ''})` : isa ? ` (${isa})` : ''}, ` +
      `Node ${m.node.replace(/^v/, '')}; load average ${load(m.loadAverage.start)} when it began and ` +
      `${load(m.loadAverage.end)} when it ended. The machine is shared, so read the ratios: they ` +
      `compare figures taken in the same run. Reference configuration: batch ${r.shapes.batch}, ` +
      `${r.shapes.steps} steps, LSTM(${r.shapes.units}), ${r.shapes.vocab} characters; each speed is ` +
      `the median of several timed runs after a warm-up. \`npm run bench\` alone prints the table ` +
      `without writing anything (\`--json\` prints the figures, \`--quick\` makes it shorter).`,
  );
  if (r.nativeUnavailable)
    lines.push('', `The native engine was not measured: ${r.nativeUnavailable}.`);
  const pt = r.pytorch && !('skipped' in r.pytorch) ? r.pytorch : undefined;
  const ptBest = pt && pt.settings[pt.best];
  if (r.pytorch && 'skipped' in r.pytorch)
    lines.push('', `PyTorch was not measured: ${r.pytorch.skipped}.`);
  lines.push('', '| measure | value | notes |', '| --- | --- | --- |');
  const row = (a: string, b: string, c = ''): void => void lines.push(`| ${a} | ${b} | ${c} |`);
  const vsTf = (rate: number): string =>
    (tf ? `; ${times(rate / tf.trainWasm)} TF.js WebAssembly` : '') +
    (ptBest ? `; ${times(rate / ptBest.seqPerSec)} PyTorch` : '');
  const native = t.native1 && t.native2 ? { one: t.native1, two: t.native2 } : undefined;
  const bf16 = t.bf16_1 && t.bf16_2 ? { one: t.bf16_1, two: t.bf16_2 } : undefined;
  const simd128 = t.simd128_1 && t.simd128_2 ? { one: t.simd128_1, two: t.simd128_2 } : undefined;
  const relaxed = t.wasmVariant === 'relaxed-simd';
  if (bf16) {
    row(
      'training, native engine, BF16 products (`--precision bf16`), 2 threads',
      `**${int(bf16.two.seqPerSec)} seq/s**`,
      `${gflops(bf16.two.gflops)} GFLOP/s; ${native ? `${times(bf16.two.seqPerSec / native.two.seqPerSec)} FP32's; ` : ''}${times(bf16.two.seqPerSec / bf16.one.seqPerSec)} one thread${vsTf(bf16.two.seqPerSec)}`,
    );
    row(
      'training, native engine, BF16 products, 1 thread',
      `${int(bf16.one.seqPerSec)} seq/s`,
      `${gflops(bf16.one.gflops)} GFLOP/s`,
    );
  }
  if (native) {
    row(
      `training, native ${bf16 ? 'engine, FP32' : 'AVX2 engine'}, 2 threads${t.defaultEngine === 'native' ? ' (the default here)' : ''}`,
      bf16 ? `${int(native.two.seqPerSec)} seq/s` : `**${int(native.two.seqPerSec)} seq/s**`,
      `${gflops(native.two.gflops)} GFLOP/s; ${times(native.two.seqPerSec / native.one.seqPerSec)} one thread${vsTf(native.two.seqPerSec)}`,
    );
    row(
      `training, native ${bf16 ? 'engine, FP32' : 'AVX2 engine'}, 1 thread`,
      `${int(native.one.seqPerSec)} seq/s`,
      `${gflops(native.one.gflops)} GFLOP/s`,
    );
  }
  const wasmName = `WebAssembly engine${relaxed ? ' (relaxed SIMD)' : ''}`;
  row(
    `training, ${wasmName}, 2 threads${t.defaultEngine === 'wasm' ? ' (the default here)' : ''}`,
    native ? `${int(t.wasm2.seqPerSec)} seq/s` : `**${int(t.wasm2.seqPerSec)} seq/s**`,
    `${gflops(t.wasm2.gflops)} GFLOP/s; ${simd128 ? `${times(t.wasm2.seqPerSec / simd128.two.seqPerSec)} the SIMD128 build's; ` : ''}${times(t.wasm2.seqPerSec / t.wasm1.seqPerSec)} one thread${vsTf(t.wasm2.seqPerSec)}`,
  );
  row(
    `training, ${wasmName}, 1 thread`,
    `${int(t.wasm1.seqPerSec)} seq/s`,
    `${gflops(t.wasm1.gflops)} GFLOP/s`,
  );
  if (simd128) {
    row(
      'training, WebAssembly engine, SIMD128 build (where relaxed SIMD is missing), 2 threads',
      `${int(simd128.two.seqPerSec)} seq/s`,
      `${gflops(simd128.two.gflops)} GFLOP/s; ${times(simd128.two.seqPerSec / simd128.one.seqPerSec)} one thread; 1 thread: ${int(simd128.one.seqPerSec)} seq/s`,
    );
  }
  if (tf) {
    row(
      `training, TensorFlow.js ${tf.version}, WebAssembly backend`,
      `${int(tf.trainWasm)} seq/s`,
      `${tf.wasmThreads === 1 ? 'one thread: the backend has no threads in Node' : `${tf.wasmThreads} threads`}; \`trainOnBatch\` on one-hot input`,
    );
    if (tf.trainCpu !== undefined)
      row(
        `training, TensorFlow.js ${tf.version}, pure-JS backend`,
        `${int(tf.trainCpu)} seq/s`,
        'one thread',
      );
  }
  if (pt && ptBest) {
    const threads = (s: PytorchSetting): string => `${s.torchThreads} + ${s.blasThreads}`;
    const others = pt.settings
      .filter((s) => s !== ptBest)
      .map((s, i) => `${threads(s)}: ${int(s.seqPerSec)}${i === 0 ? ' seq/s' : ''}`)
      .join(', ');
    row(
      `training, PyTorch ${pt.version}, \`nn.LSTM\` on ${pt.blas.split(' ').slice(0, 2).join(' ')} (${pt.blasCore} kernels)`,
      `${int(ptBest.seqPerSec)} seq/s`,
      `the best of the threads timed (ATen + OpenBLAS): ${threads(ptBest)}; ${others}; OMP_WAIT_POLICY=${pt.ompWaitPolicy}`,
    );
  }
  const k = r.kernel;
  const kShape = `[${k.M}×${k.K}]·[${k.K}×${k.N}]`;
  const kernelNames: [keyof EnginePair, string][] = [
    ['nativeBf16', 'native BF16'],
    ['native', bf16 ? 'native FP32' : 'native'],
    ['wasm', relaxed ? 'WebAssembly, relaxed SIMD' : 'WebAssembly'],
    ['wasmSimd128', 'WebAssembly, SIMD128'],
  ];
  const kernelFigures = (e: EnginePair): string[] =>
    kernelNames.flatMap(([key, name]) =>
      e[key] !== undefined ? [`${gflops(e[key])} (${name})`] : [],
    );
  const [firstKernel, ...otherKernels] = kernelFigures(k.packed);
  row(
    `matrix product ${kShape} (one shard's recurrent step), one thread`,
    [firstKernel!.replace(' (', ' GFLOP/s ('), ...otherKernels].join(', '),
    `B packed into column panels, as training runs it; unpacked: ${kernelFigures(k.unpacked).join(', ')}`,
  );
  const g = r.generate;
  const best = (p: EnginePair): number => p.native ?? p.wasm;
  row(
    'generation, window mode, one stream',
    pair(g.oneStream, 'chars/s'),
    tf
      ? `TF.js WebAssembly, one stream the same way: ${int(tf.generateWasmOneStream)} chars/s; charlstm ${g.oneStream.native !== undefined ? 'native' : 'WebAssembly'} is ${times(best(g.oneStream) / tf.generateWasmOneStream)} as fast`
      : '',
  );
  row(
    'generation, window mode, the 4 sample temperatures as one batch',
    pair(g.fourTemperatures, 'chars/s'),
    `the four streams' characters together; ${times(best(g.fourTemperatures) / best(g.oneStream))} one stream`,
  );
  row(
    'generation, stateful, one stream',
    pair(g.stateful, 'chars/s'),
    'the state carried from character to character',
  );
  const tm = r.tenMinuteModel;
  const scored = (tm.batch * tm.steps * 1000) / finite(tm.msPerBatch);
  row(
    `one batch of the ten-minute model (${tm.layers} × LSTM(${tm.units}), dropout ${tm.dropout}, every position scored, batch ${tm.batch})`,
    `${int(tm.msPerBatch)} ms`,
    `${tm.engine === 'native' ? 'native' : 'WebAssembly'}${tm.precision === 'bf16' ? ", BF16 products (the preset's `--precision auto` here)" : ''}, ${tm.threads} threads: ${int(scored)} scored characters a second` +
      (tm.fp32MsPerBatch !== undefined ? `; FP32: ${int(tm.fp32MsPerBatch)} ms` : '') +
      (pt?.tenMinuteMsPerBatch !== undefined
        ? `; PyTorch at its best threads: ${int(pt.tenMinuteMsPerBatch)} ms`
        : ''),
  );
  const tp = r.trainProcess;
  if (tp) {
    row(
      `peak resident memory of \`${tp.command}\``,
      `${int(tp.maxRssMiB)} MiB`,
      `the whole process (both worker threads) through ${tp.epochs === 1 ? 'one epoch' : `${tp.epochs} epochs`} and ${tp.epochs === 1 ? 'its end' : 'their ends'}: ${tp.covered.join(', ')}; ${tp.rssMethod}${tp.runner === 'tsx' ? '; run under tsx, which adds its loader' : ''}`,
    );
    row(
      'the same run',
      epochWords(tp),
      `${int(tp.trainingWindows)} training and ${int(tp.validationWindows)} validation windows; ${int(tp.wallSeconds)} s for the whole process; engine: ${tp.engine}`,
    );
  }
  lines.push('');
  const prose: string[] = [];
  if (k.packed.native !== undefined) {
    prose.push(
      `On the same product WebAssembly reaches ${Math.round((100 * k.packed.wasm) / k.packed.native)}% of the native ` +
        `FP32 rate: its vectors are 128-bit, the native kernel's 256-bit` +
        (relaxed
          ? `; relaxed SIMD's fused multiply-add adds little where multiplies and adds issue on separate pipes, as here ([docs/engine.md](docs/engine.md#matrix-products)).`
          : ', and SIMD128 has no fused multiply-add.'),
    );
    if (k.packed.nativeBf16 !== undefined)
      prose.push(
        `With BF16 operands (AVX512-BF16's \`vdpbf16ps\`: two multiply-adds a lane, FP32 accumulation) ` +
          `the product runs ${times(k.packed.nativeBf16 / k.packed.native)} as fast as in FP32.`,
      );
    if (native)
      prose.push(
        `Two threads train ${times(native.two.seqPerSec / native.one.seqPerSec)} as fast as one (native) and ` +
          `${times(t.wasm2.seqPerSec / t.wasm1.seqPerSec)} (WebAssembly), not 2×.`,
      );
  } else {
    prose.push(
      `Two threads train ${times(t.wasm2.seqPerSec / t.wasm1.seqPerSec)} as fast as one, not 2×.`,
    );
  }
  const busiest = Math.max(finite(m.loadAverage.start[0]!), finite(m.loadAverage.end[0]!));
  if (busiest >= m.cpus)
    prose.push(
      `The load average reached ${busiest.toFixed(2)} on ${m.cpus} cores: other work was running, ` +
        `so a second thread shared its core with it.`,
    );
  prose.push(
    `GFLOP/s count the matrix products of a training sequence (${int(t.flopPerSeq / 1e6)} MFLOP: forward, ` +
      `backward and weight gradient of the recurrent and output layers).`,
  );
  if (tp?.corpus.fallback)
    prose.push(`The train run used ${tp.corpus.name}: ${tp.corpus.fallback}.`);
  lines.push(prose.join(' '));
  const targets = renderTargets(r);
  if (targets) lines.push('', targets);
  return lines.join('\n');
}

/** Issue 16's throughput targets on these 2 cores. */
export const SPEED_TARGETS = {
  /** reference training, native engine at its best precision, 2 threads (seq/s) */
  native: 8000,
  /** reference training, WebAssembly engine, 2 threads (seq/s) */
  wasm: 3500,
  /**
   * the ten-minute preset's model as the issue found it, in the preset's precision (scored
   * characters/s); runs before the retune have only the preset's own model
   */
  tenMinute: 45_000,
};

/** Each target against its figure, met or not; undefined where no figure was measured (no native). */
export function renderTargets(r: BenchResults): string | undefined {
  const t = r.train;
  const best = t.bf16_2 ?? t.native2;
  if (!best) return undefined;
  const tm = r.tenMinuteModel;
  const judged = tm.filed ?? tm;
  const scored = (tm.batch * tm.steps * 1000) / finite(judged.msPerBatch);
  const verdict = (v: number, target: number, unit: string): string =>
    `${int(v)} ${unit} against ${int(target)}: **${v >= target ? 'met' : 'not met'}**`;
  const items = [
    `reference training on the native engine (${t.bf16_2 ? 'BF16 products' : 'FP32'}), 2 threads, ${verdict(best.seqPerSec, SPEED_TARGETS.native, 'seq/s')}`,
    `on the WebAssembly engine, 2 threads, ${verdict(t.wasm2.seqPerSec, SPEED_TARGETS.wasm, 'seq/s')}`,
    tm.filed
      ? `the ten-minute model as the issue found it (${tm.filed.layers} × LSTM(${tm.filed.units}), dropout ${tm.filed.dropout}), ${verdict(scored, SPEED_TARGETS.tenMinute, 'scored characters/s')} (the preset now spends that speed on ${tm.layers} × LSTM(${tm.units}): ${int((tm.batch * tm.steps * 1000) / finite(tm.msPerBatch))})`
      : `the ten-minute model, ${verdict(scored, SPEED_TARGETS.tenMinute, 'scored characters/s')}`,
  ];
  const missed = [
    best.seqPerSec < SPEED_TARGETS.native,
    t.wasm2.seqPerSec < SPEED_TARGETS.wasm,
    scored < SPEED_TARGETS.tenMinute,
  ].some(Boolean);
  return (
    `Targets (issue 16): ${items.join('; ')}.` +
    (missed
      ? ' Where one is missed, [docs/engine.md](docs/engine.md) has the measured ceiling and why.'
      : '')
  );
}

/** `text`, the README block `name`, unless a figure in it failed to render. */
function checked(name: string, text: string): string {
  if (/\bundefined\b|\bNaN\b/.test(text))
    throw new Error(`bench block ${name} rendered an undefined figure:\n${text}`);
  return text;
}

export function renderBlocks(r: BenchResults): Record<BlockName, string> {
  if (r.format !== 1)
    throw new Error(
      `bench results in format ${String(r.format)}, not 1: run npm run bench -- --write`,
    );
  const blocks = { intro: renderIntro(r), performance: renderPerformance(r) };
  for (const [name, text] of Object.entries(blocks)) checked(name, text);
  return blocks;
}

/** One corpus of `npm run bench:scale` (bench/scale.ts): what the real CLI process took. */
export interface ScaleRun {
  /** "1 MB", "100 MB", "Hangul/CJK" */
  label: string;
  /** 'moby-dick': Moby-Dick's lines recased and reordered; 'wide': thousands of distinct characters */
  kind: 'moby-dick' | 'wide';
  bytes: number;
  chars: number;
  /** distinct characters, as the dry run printed them */
  vocab: number;
  /** the two dry runs: the first builds the token file, the second reuses it (absent for 'wide') */
  preparation?: {
    command: string;
    firstSeconds: number;
    firstMaxRssMiB: number;
    mbPerSec: number;
    reuseSeconds: number;
    reuseMaxRssMiB: number;
  };
  /** one epoch of about 200 batches and its end */
  training: {
    command: string;
    step: number;
    trainingWindows: number;
    validationWindows: number;
    batches: number;
    wallSeconds: number;
    seqPerSec: number;
    maxRssMiB: number;
    covered: string[];
  };
  /**
   * `charlstm generate` from the model just trained, stateful, one stream: two lengths, so that
   * the process's start-up and model loading cancel out of charsPerSec
   * ((long − short) / (its seconds − short's seconds))
   */
  generation?: {
    command: string;
    lengths: [number, number];
    seconds: [number, number];
    charsPerSec: number;
  };
}

/** The issue's targets and each row's pass (true) or fail; a key is absent where it does not apply. */
export interface ScaleTargets {
  prepareMBps: number;
  maxRssMiB: number;
  /** the largest Moby-Dick corpus's seq/s within this fraction of the smallest's */
  speedWithin: number;
  rows: { label: string; prepare?: boolean; rss: boolean; speed?: boolean }[];
}

export interface ScaleResults {
  format: 1;
  command: string;
  machine: {
    cpus: number;
    model: string;
    node: string;
    date: string;
    loadAverage: { start: number[]; end: number[] };
  };
  runner: 'compiled' | 'tsx';
  batchSize: number;
  rssMethod: string;
  runs: ScaleRun[];
  targets: ScaleTargets;
}

export const SCALE_BLOCK = 'scale';

const mb = (v: number): string => (finite(v) >= 10 ? int(v) : v.toFixed(1));
const secs = (v: number): string => (finite(v) >= 10 ? int(v) : v.toFixed(1));
const verdict = (ok: boolean | undefined): string =>
  ok === undefined ? '' : ok ? ' (pass)' : ' (**miss**)';

/** The Performance section's scale block: the table of docs/scale.json and the targets, met or missed. */
export function renderScale(r: ScaleResults): string {
  if (r.format !== 1)
    throw new Error(`scale results in format ${String(r.format)}, not 1: run npm run bench:scale`);
  const m = r.machine;
  const t = r.targets;
  const rowOf = (label: string): ScaleTargets['rows'][number] => {
    const row = t.rows.find((x) => x.label === label);
    if (!row) throw new Error(`scale targets have no row for ${label}`);
    return row;
  };
  const wideCorpus = r.runs.find((x) => x.kind === 'wide');
  const lines: string[] = [];
  lines.push(
    `Measured by \`${r.command}\`, which wrote [\`docs/scale.json\`](docs/scale.json), on ${day(m.date)}: ` +
      `${m.cpus} × ${m.model}, Node ${m.node.replace(/^v/, '')}; load average ${finite(m.loadAverage.start[0]!).toFixed(2)} ` +
      `when it began and ${finite(m.loadAverage.end[0]!).toFixed(2)} when it ended. Each size is Moby-Dick's lines, ` +
      `copy after copy in a seeded order and case${wideCorpus ? ` (the ${wideCorpus.label} corpus: seeded words of Hangul syllables and CJK ideographs)` : ''}, ` +
      `and each figure is one real \`charlstm\` process with an empty ` +
      `\`CHARLSTM_HOME\`: preparation is the first \`train --dry-run\` (it builds the token file), reuse the second; ` +
      `training is one epoch of about ${int(r.runs[0]!.training.batches)} batches of ${r.batchSize} (\`--step\` chosen for it) ` +
      `and its end (${r.runs[0]!.training.covered.join(', ')}); peak memory is the whole process's, by ${r.rssMethod}. ` +
      `Preparation's rate counts the whole process, start-up included: the reuse column, a dry run that reads ` +
      `no text, shows what that costs.`,
  );
  lines.push(
    '',
    '| corpus | characters | vocabulary | preparation | reuse | train process | speed | peak memory |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const x of r.runs) {
    const p = x.preparation;
    const v = rowOf(x.label);
    lines.push(
      `| ${x.label} | ${int(x.chars)} | ${int(x.vocab)} | ` +
        `${p ? `${mb(p.mbPerSec)} MB/s${verdict(v.prepare)}` : '–'} | ${p ? `${secs(p.reuseSeconds)} s` : '–'} | ` +
        `${secs(x.training.wallSeconds)} s, ${int(x.training.batches)} batches | ${int(x.training.seqPerSec)} seq/s${verdict(v.speed)} | ` +
        `${int(x.training.maxRssMiB)} MiB${verdict(v.rss)} |`,
    );
  }
  const moby = r.runs.filter((x) => x.kind === 'moby-dick');
  const small = moby[0]!;
  const large = moby[moby.length - 1]!;
  const missed = (key: 'prepare' | 'rss' | 'speed'): string[] =>
    t.rows.filter((x) => x[key] === false).map((x) => x.label);
  const say = (labels: string[]): string =>
    labels.length === 0 ? 'met at every size' : `missed at ${labels.join(', ')}`;
  const prose: string[] = [];
  prose.push(
    `Targets (issue 13): preparation at ${t.prepareMBps} MB/s or more: ${say(missed('prepare'))}; ` +
      `peak memory of \`charlstm train\` under ${t.maxRssMiB} MiB at every size: ${say(missed('rss'))}; ` +
      `training at ${large.label} within ${Math.round(t.speedWithin * 100)}% of the speed at ${small.label}: ` +
      `${int(large.training.seqPerSec)} against ${int(small.training.seqPerSec)} seq/s, ` +
      `${rowOf(large.label).speed === false ? 'missed' : 'met'}.`,
  );
  if (!moby.some((x) => x.bytes >= 1e9))
    prose.push(
      `The 1 GB corpus (\`npm run bench:scale -- --sizes 1,10,100,1000\`) is not run by default, for the ` +
        `minutes its preparation and first dry run take.`,
    );
  const wide = r.runs.find((x) => x.kind === 'wide');
  if (wide)
    prose.push(
      `The ${wide.label} corpus has ${int(wide.vocab)} distinct characters: a model with that vocabulary trains at ` +
        `${int(wide.training.seqPerSec)} seq/s (${times(wide.training.seqPerSec / small.training.seqPerSec)} the ${small.label} speed)` +
        (wide.generation && small.generation
          ? ` and generates at ${int(wide.generation.charsPerSec)} characters/s, against ${int(small.generation.charsPerSec)} ` +
            `for the ${small.label} model's ${int(small.vocab)} (\`${wide.generation.command}\`, stateful, one stream, the ` +
            `difference of ${int(wide.generation.lengths[0])} and ${int(wide.generation.lengths[1])} characters, so start-up cancels).`
          : '.'),
    );
  lines.push('', prose.join(' '));
  lines.push(
    '',
    `![Peak memory and training speed of charlstm train against the corpus's size](${SCALE_SVG})`,
  );
  const text = lines.join('\n');
  return checked(SCALE_BLOCK, text);
}

/** The plot bench/scale.ts writes beside docs/scale.json, and the README's scale block shows. */
export const SCALE_SVG = 'docs/scale.svg';

/**
 * docs/scale.svg: the Moby-Dick corpora's peak memory (with the target) and training speed (with
 * the band the target allows around the smallest corpus's) against the corpus's size, log scale.
 */
export function renderScaleSvg(r: ScaleResults): string {
  const runs = r.runs.filter((x) => x.kind === 'moby-dick');
  if (runs.length === 0) throw new Error('scale results have no Moby-Dick corpus to plot');
  const W = 360; // one panel
  const H = 250;
  const pad = { left: 56, right: 16, top: 34, bottom: 44 };
  const lx = runs.map((x) => Math.log10(finite(x.bytes)));
  const x0 = Math.floor(Math.min(...lx));
  const x1 = Math.max(x0 + 1, Math.ceil(Math.max(...lx)));
  const inset = 24; // the first and last points clear of the axes and their labels
  const sx = (bytes: number, at: number): number =>
    at +
    pad.left +
    inset +
    ((W - pad.left - pad.right - 2 * inset) * (Math.log10(bytes) - x0)) / (x1 - x0);
  const f = (v: number): string => v.toFixed(1);
  const small = runs[0]!.training.seqPerSec;
  const panel = (
    at: number,
    title: string,
    values: number[],
    target: { value: number; label: string; band?: number },
  ): string => {
    const top = Math.max(...values, target.value * (1 + (target.band ?? 0))) * 1.15;
    const sy = (v: number): number => H - pad.bottom - ((H - pad.top - pad.bottom) * v) / top;
    const step = 10 ** Math.floor(Math.log10(top / 2));
    const tick = top / step > 10 ? step * 2 : step;
    let out = `<text x="${at + pad.left}" y="20" font-weight="bold">${title}</text>\n`;
    for (let v = 0; v <= top; v += tick) {
      out += `<line x1="${at + pad.left}" y1="${f(sy(v))}" x2="${at + W - pad.right}" y2="${f(sy(v))}" stroke="#eee"/><text x="${at + pad.left - 6}" y="${f(sy(v) + 4)}" text-anchor="end">${int(v)}</text>\n`;
    }
    for (let e = x0; e <= x1; e++) {
      const label =
        e >= 9 ? `${10 ** (e - 9)} GB` : e >= 6 ? `${10 ** (e - 6)} MB` : `${10 ** (e - 3)} kB`;
      out += `<text x="${f(sx(10 ** e, at))}" y="${H - pad.bottom + 16}" text-anchor="middle">${label}</text>\n`;
    }
    out += `<text x="${at + (W + pad.left - pad.right) / 2}" y="${H - 8}" text-anchor="middle">corpus size</text>\n`;
    if (target.band !== undefined) {
      const hi = sy(target.value * (1 + target.band));
      const lo = sy(target.value * (1 - target.band));
      out += `<rect x="${at + pad.left}" y="${f(hi)}" width="${W - pad.left - pad.right}" height="${f(lo - hi)}" fill="#2ca02c" opacity="0.12"/>\n`;
    } else {
      out += `<line x1="${at + pad.left}" y1="${f(sy(target.value))}" x2="${at + W - pad.right}" y2="${f(sy(target.value))}" stroke="#d62728" stroke-dasharray="4 4"/>\n`;
    }
    // the target's words at the left, above the line or under the band, where no point is
    const below = target.band === undefined ? -4 : 14;
    out += `<text x="${at + pad.left + 4}" y="${f(sy(target.value * (1 - (target.band ?? 0))) + below)}" fill="#666">${target.label}</text>\n`;
    const pts = runs.map((x, i) => [sx(x.bytes, at), sy(values[i]!)] as const);
    out += `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${pts.map(([a, b]) => `${f(a)},${f(b)}`).join(' ')}"/>\n`;
    pts.forEach(([a, b], i) => {
      out += `<circle cx="${f(a)}" cy="${f(b)}" r="3.5" fill="#1f77b4"/><text x="${f(a)}" y="${f(b - 8)}" text-anchor="middle">${int(values[i]!)}</text>\n`;
    });
    return out;
  };
  const t = r.targets;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}" font-family="sans-serif" font-size="12">\n` +
    `<rect width="${2 * W}" height="${H}" fill="white"/>\n` +
    panel(
      0,
      'peak memory of charlstm train (MiB)',
      runs.map((x) => x.training.maxRssMiB),
      { value: t.maxRssMiB, label: `target: under ${t.maxRssMiB} MiB` },
    ) +
    panel(
      W,
      'training speed (sequences/s)',
      runs.map((x) => x.training.seqPerSec),
      {
        value: small,
        label: `within ${Math.round(t.speedWithin * 100)}% of ${runs[0]!.label}`,
        band: t.speedWithin,
      },
    ) +
    '</svg>\n'
  );
}

/** The machine a bench ran on (bench/machine.ts), with its load average when it began and ended. */
export interface RunMachine {
  cpu: string;
  cores: number;
  node: string;
  loadAverage: { start: number[]; end: number[] };
}

/** The built-in models (`npm run bench:pretrained`, bench/pretrained.ts): docs/pretrained.json. */
export interface PretrainedResults {
  format: 1;
  command: string;
  date: string;
  machine: RunMachine;
  models: {
    name: string;
    /** model.json and its weights, as shipped in pretrained/<name>/ */
    bytes: number;
    layers: number;
    units: number;
    characters: number;
    corpus: string;
    /** model.json's training.command */
    trainingCommand: string;
    epochs?: number;
    /** model.json's training.trainSeconds */
    trainSeconds?: number;
    evalCommand: string;
    /** `charlstm eval --json`'s object */
    eval: {
      corpus: string;
      valSplit?: number;
      all?: boolean;
      every: number;
      span: number;
      scored: number;
      loss: number;
      bpc: number;
      perplexity: number;
    };
    evalSeconds: number;
  }[];
}

export const PRETRAINED_BLOCK = 'pretrained';

/** The README's Built-in models table, from docs/pretrained.json. */
export function renderPretrained(r: PretrainedResults): string {
  if (r.format !== 1)
    throw new Error(
      `pretrained results in format ${String(r.format)}, not 1: run npm run bench:pretrained`,
    );
  const lines = [
    '| `--model` | size | layers × units | characters | trained by (its model.json records it) | held-out bits/char |',
    '| --- | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const m of r.models) {
    const took = m.trainSeconds === undefined ? '' : `: ${int(m.trainSeconds)} s of training`;
    lines.push(
      `| \`${m.name}\` | ${(finite(m.bytes) / 1e6).toFixed(1)} MB | ${m.layers} × ${m.units} | ` +
        `${int(m.characters)} | \`${m.trainingCommand}\`${took} | ${finite(m.eval.bpc).toFixed(3)} |`,
    );
  }
  const parts = r.models.map((m) => {
    const part = m.eval.all
      ? 'the whole text'
      : `its last ${+(finite(m.eval.valSplit ?? NaN) * 100).toFixed(4)}%, which training held out`;
    return `\`${m.evalCommand}\` (${m.eval.corpus}: ${part}, ${int(m.eval.scored)} characters scored)`;
  });
  const prose =
    `Measured by \`${r.command}\`, which wrote [\`docs/pretrained.json\`](docs/pretrained.json), ` +
    `on ${day(r.date)}: the size is model.json and its weights, and each held-out figure is ` +
    `${parts.join(' and ')}, every character predicted from the window before it from a zero state.`;
  const text = [...lines, '', prose].join('\n');
  return checked(PRETRAINED_BLOCK, text);
}

/** docs/pretrained.json as committed. */
export const readPretrained = (): PretrainedResults =>
  readDoc<PretrainedResults>('pretrained.json');

/** One run of `npm run load-test` (bench/load-test.ts): `clients` streaming clients. */
export interface LoadTestRun {
  clients: number;
  /** completed requests */
  requests: number;
  failed: number;
  /** characters of the completed requests */
  chars: number;
  /** from the start to the last completion */
  seconds: number;
  charsPerSec: number;
  /** time to first character: from sending a request to its first event with text */
  ttfcMedianMs: number;
  ttfcP99Ms: number;
  serverRssMB: number;
}

/** What one character costs, measured in the load test's own process before its runs (µs). */
export interface Arithmetic {
  /** the batch measured */
  rows: number;
  /** the model's step for one stream alone: a single-row step, or one window from a zero state */
  aloneUs: number;
  /** the same step in a batch of `rows`, per row */
  batchedUs: number;
  /** one draw at the load test's temperature (the Drawer) */
  drawUs: number;
  /** the servers' generation threads (CharModel.load's `threads`; absent in older runs: 1) */
  threads?: number;
  /** with threads 2: the same steps on one thread, measured in the same process */
  oneThread?: { aloneUs: number; batchedUs: number };
}

/** The model a load-test series served. */
export interface LoadTestModel {
  /** 'reference-shape' (random weights), or the built-in or folder name given with --model */
  name: string;
  characters: number;
  units: number;
  layers: number;
  trained: boolean;
}

/** The runs of one mode on one server, batching or not. */
export interface LoadTestSeries {
  model: LoadTestModel;
  mode: 'window' | 'stateful';
  batched: boolean;
  /** characters a request */
  length: number;
  /** seconds of requests per run */
  duration: number;
  command: string;
  date: string;
  loadAverage: { start: number[]; end: number[] };
  arithmetic: Arithmetic;
  runs: LoadTestRun[];
}

/** docs/load-test.json, written by `npm run load-test -- --write`. */
export interface LoadTestResults {
  format: 2;
  machine: { cpu: string; cores: number; node: string };
  prompt: string;
  temperature: number;
  series: LoadTestSeries[];
}

export const LOAD_TEST_BLOCK = 'load-test';

/** Issue 15's target: at `clients` clients, `speedup` times one client's throughput, p99 first character under `p99Ms`. */
const LOAD_TARGET = { clients: 64, speedup: 5, p99Ms: 50 };

/** The README's load-test table, from docs/load-test.json: one table per model and mode measured. */
export function renderLoadTest(r: LoadTestResults): string {
  if (r.format !== 2)
    throw new Error(
      `load-test results in format ${String(r.format)}, not 2: run npm run load-test`,
    );
  const ms = (v: number): string => (finite(v) >= 100 ? int(v) : v.toFixed(1));
  const out: string[] = [];
  const names = [...new Set(r.series.map((s) => s.model.name))];
  for (const [name, mode] of names.flatMap((n) =>
    (['stateful', 'window'] as const).map((m) => [n, m] as const),
  )) {
    const on = r.series.find((s) => s.model.name === name && s.mode === mode && s.batched);
    if (!on) continue;
    const off = r.series.find((s) => s.model.name === name && s.mode === mode && !s.batched);
    const m = on.model;
    const one = on.runs.find((x) => x.clients === 1);
    const head = [
      'clients',
      'chars/s',
      ...(one ? ['× 1 client'] : []),
      'first character: median, p99',
      ...(off ? ['unbatched chars/s', 'unbatched first character', 'batching gain'] : []),
    ];
    const lines = [
      `**${m.trained ? `\`${m.name}\`` : 'Reference shape'}, ${mode} mode**: ${m.layers} × ` +
        `LSTM(${m.units}) over ${m.characters} characters${m.trained ? '' : ' (random weights)'}, ` +
        `${int(on.length)} characters a request.`,
      '',
      `| ${head.join(' | ')} |`,
      `| ${head.map(() => '---:').join(' | ')} |`,
    ];
    for (const run of on.runs) {
      const u = off?.runs.find((x) => x.clients === run.clients);
      const cells = [
        int(run.clients),
        int(run.charsPerSec),
        ...(one ? [times(run.charsPerSec / finite(one.charsPerSec))] : []),
        `${ms(run.ttfcMedianMs)} ms, ${ms(run.ttfcP99Ms)} ms`,
        ...(off
          ? u
            ? [
                int(u.charsPerSec),
                `${ms(u.ttfcMedianMs)} ms, ${ms(u.ttfcP99Ms)} ms`,
                times(run.charsPerSec / finite(u.charsPerSec)),
              ]
            : ['', '', '']
          : []),
      ];
      lines.push(`| ${cells.join(' | ')} |`);
    }
    const t = on.runs.find((x) => x.clients === LOAD_TARGET.clients);
    if (one && t) {
      const speedup = t.charsPerSec / finite(one.charsPerSec);
      const met = speedup >= LOAD_TARGET.speedup && finite(t.ttfcP99Ms) < LOAD_TARGET.p99Ms;
      lines.push(
        '',
        `Target (issue 15) at ${LOAD_TARGET.clients} clients: at least ${LOAD_TARGET.speedup}× one client's ` +
          `throughput with a p99 time to first character under ${LOAD_TARGET.p99Ms} ms. Measured: ` +
          `${times(speedup)} and ${ms(t.ttfcP99Ms)} ms, **${met ? 'met' : 'not met'}**.`,
      );
    }
    const a = on.arithmetic;
    const us = (v: number): string => `${finite(v) >= 10 ? int(v) : v.toFixed(1)} µs`;
    const step = mode === 'stateful' ? 'single-row step' : 'window read from a zero state';
    const threads = a.threads ?? 1;
    const single = a.oneThread;
    lines.push(
      '',
      `What a character costs here (measured in the load test's process before the runs, the ` +
        `products on ${threads === 1 ? 'one thread' : `${threads} threads`} as the servers ran them): alone, a ` +
        `${step} ${us(a.aloneUs)} and a draw ${us(a.drawUs)}; in a batch of ${a.rows}, ` +
        `${us(a.batchedUs)} a row and the same draw. So batching can make at most ` +
        `${times((a.aloneUs + a.drawUs) / (finite(a.batchedUs) + a.drawUs))} the characters a second ` +
        `of one stream computing alone; the rest of any gain over one client is its requests' ` +
        `HTTP and event-loop time, which many clients overlap.` +
        (single
          ? ` On one thread the same steps took ${us(single.aloneUs)} alone and ${us(single.batchedUs)} a ` +
            `row in the batch: the second thread makes them ${times(single.aloneUs / finite(a.aloneUs))} ` +
            `and ${times(single.batchedUs / finite(a.batchedUs))} as fast.`
          : ''),
    );
    const load = (xs: number[]): string => finite(xs[0]!).toFixed(2);
    lines.push(
      '',
      `Measured by \`${on.command}\` on ${day(on.date)} (${r.machine.cores} × ${r.machine.cpu}, ` +
        `Node ${r.machine.node.replace(/^v/, '')}; load average ${load(on.loadAverage.start)} when it ` +
        `began and ${load(on.loadAverage.end)} when it ended; the clients ran on the same machine).`,
    );
    out.push(lines.join('\n'));
  }
  if (out.length === 0) throw new Error('docs/load-test.json has no batched series');
  const intro =
    `\`charlstm serve\`, every client streaming one request after another ` +
    `(prompt "${r.prompt}", temperature ${r.temperature}). Characters/s is the sum over all ` +
    `clients; the first character is timed from sending the request to its first event with ` +
    `text. Unbatched: the same server with \`batch: false\`, each generation on its own single-row stepper.`;
  const text = [intro, ...out].join('\n\n');
  return checked(LOAD_TEST_BLOCK, text);
}

/** docs/load-test.json as committed. */
export const readLoadTest = (): LoadTestResults => readDoc<LoadTestResults>('load-test.json');

/** One run of `npm run bench:finetune` (bench/finetune.ts): a fine-tune or a fresh start. */
export interface FinetuneRun {
  kind: 'finetune' | 'scratch';
  /** the train command, the text and output folder written TEXT and DIR */
  command: string;
  /** the fine-tune's "starting from …" line */
  starting?: string;
  /** model.json's training.trainSeconds, and the whole process (start, corpus, training, saves) */
  trainSeconds: number;
  wallSeconds: number;
  /** where the budget stopped it, as the run printed it: "epoch 2, batch 97" */
  reached: string;
  vocabulary: number;
  /** `charlstm eval --model DIR --corpus TEXT --json`'s object */
  eval: { valSplit?: number; every: number; scored: number; loss: number; bpc: number };
}

/** docs/finetune.json: fine-tuning a pretrained model against training from scratch. */
export interface FinetuneResults {
  format: 1;
  command: string;
  date: string;
  machine: RunMachine;
  model: {
    name: string;
    layers: number;
    units: number;
    maxlen: number;
    characters: number;
    trainingCommand?: string;
  };
  text: { source: string; characters: number };
  /** each run's --time-budget */
  seconds: number;
  /** in the order they ran (alternating) */
  runs: FinetuneRun[];
}

export const FINETUNE_BLOCK = 'finetune';

/** The README's Fine-tuning figures, from docs/finetune.json; the ratio is derived here. */
export function renderFinetune(r: FinetuneResults): string {
  if (r.format !== 1)
    throw new Error(
      `finetune results in format ${String(r.format)}, not 1: run npm run bench:finetune`,
    );
  const of = (kind: FinetuneRun['kind']): FinetuneRun[] => r.runs.filter((x) => x.kind === kind);
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + finite(b), 0) / xs.length;
  const tuned = of('finetune');
  const scratch = of('scratch');
  if (tuned.length === 0 || scratch.length === 0)
    throw new Error('docs/finetune.json needs at least one fine-tune run and one from scratch');
  const label = { finetune: `\`--init-from ${r.model.name}\``, scratch: 'from scratch' };
  const lines = [
    '| start | trained for | reached | held-out loss (nats) | bits/char |',
    '| --- | ---: | --- | ---: | ---: |',
    ...r.runs.map(
      (x) =>
        `| ${label[x.kind]} | ${int(x.trainSeconds)} s | ${x.reached} | ${finite(x.eval.loss).toFixed(4)} | ${finite(x.eval.bpc).toFixed(3)} |`,
    ),
  ];
  const a = mean(tuned.map((x) => x.eval.loss));
  const b = mean(scratch.map((x) => x.eval.loss));
  const first = tuned[0]!;
  const prose =
    `Measured by \`${r.command}\`, which wrote [\`docs/finetune.json\`](docs/finetune.json), on ${day(r.date)} ` +
    `(${r.machine.cores} cores, load average ${r.machine.loadAverage.start[0]!.toFixed(1)} at the start): the first ` +
    `${int(r.text.characters)} characters of ${r.text.source}, its last ${+(finite(first.eval.valSplit ?? NaN) * 100).toFixed(4)}% held out, ` +
    `trained for ${int(r.seconds)} s each way with the same settings and seed (\`${first.command}\`; from scratch ` +
    `\`--units ${r.model.units} --layers ${r.model.layers} --maxlen ${r.model.maxlen}\` instead of \`--init-from\`), the ` +
    `runs alternating, each scored by \`charlstm eval --model DIR --corpus TEXT --json\` (${int(first.eval.scored)} held-out ` +
    `characters, the last model saved). Fine-tuned (${first.starting ?? `starting from ${r.model.name}`}), the runs end at ` +
    `${a.toFixed(4)} nats (${(a / Math.LN2).toFixed(3)} bits/char) on average, against ${b.toFixed(4)} ` +
    `(${(b / Math.LN2).toFixed(3)}) from scratch: the loss from scratch is ${times(b / a)} the fine-tuned one.`;
  const text = [...lines, '', prose].join('\n');
  return checked(FINETUNE_BLOCK, text);
}

/** docs/finetune.json as committed. */
export const readFinetune = (): FinetuneResults => readDoc<FinetuneResults>('finetune.json');

/** One configuration of `npm run bench:threads` (bench/threads.ts): medians over its batches, ms. */
export interface ThreadsConfig {
  engine: 'native' | 'wasm';
  threads: number;
  batches: number;
  /** a whole batch as the trainer runs it: the engine, the bookkeeping and the optimizer */
  wallMs: number;
  seqPerSec: number;
  /** the batches' 10th percentile: the machine's quieter moments (absent in the first runs) */
  p10Ms?: number;
  /** profiled configurations: the main thread's parts */
  main?: {
    post: number; // requests posted: the parameters and the batch structured-cloned
    wait: number; // from then until the last reply's handler ran
    gather: number; // carried state rows copied back (none in the reference mode)
    combine: number; // combineShards: shard gradients summed in shard order, the loss
    bookkeeping: number; // the trainer's gradNorm and the divergence guard's snapshot copies
    optimizer: number; // RMSprop's update
  };
  /** profiled configurations: each worker's parts */
  workers?: {
    toWorker: number; // postMessage called → the worker's handler ran (the clone, the wake-up)
    setParams: number; // weights loaded, transposed and packed
    compute: number; // its shards' LstmCore passes
    phases: Record<'forward' | 'head' | 'backward' | 'weightGrads' | 'dropout' | 'js', number>;
    gradCopy: number; // its shards' gradients copied out of kernel memory for the reply
    fromWorker: number; // replied → the main thread's handler ran
    busy: number; // received → replied
    idle: number; // the batch's wall time less busy
  }[];
  /** profiled configurations: shard 0's and shard 1's pass, whichever worker ran it */
  shardMs?: number[];
  /** the same passes' wait for a CPU (Linux's schedstat; absent elsewhere) and wall less wait */
  shardCpuMs?: number[];
  shardQueuedMs?: number[];
}

/** docs/threads.json: where two worker threads' time goes. */
export interface ThreadsResults {
  format: 1;
  command: string;
  date: string;
  machine: RunMachine;
  topology: {
    threadsPerCore: number;
    coresPerSocket: number;
    l2: string;
    l3: string;
    hypervisor?: string;
    cpu0Siblings?: string;
  };
  /** layers, dropout and scoring: absent in the first runs, which were of the reference model */
  shape: {
    batch: number;
    steps: number;
    units: number;
    vocab: number;
    layers?: number;
    dropout?: number;
    scoring?: 'last' | 'every';
    carried?: boolean;
  };
  windows: number;
  seconds: number;
  /** with the engine's profile on (EngineOptions.profile) */
  profiled: ThreadsConfig[];
  /** the same configurations without it, interleaved with them */
  plain: ThreadsConfig[];
  /** --compare DIR: another checkout's engines, unprofiled, interleaved with the rest */
  compare?: { dir: string; profiled: ThreadsConfig[]; plain: ThreadsConfig[] };
}

export const THREADS_BLOCK = 'threads';

const ms = (v: number): string => (finite(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const pct = (v: number): string => `${Math.round(finite(v) * 100)}%`;
/** a relative change of time: 0.026 → "3% longer", -0.2 → "20% shorter" (noise, when small) */
const longer = (d: number): string =>
  Math.round(finite(d) * 100) >= 0 ? `${pct(d)} longer` : `${pct(-d)} shorter`;

/** docs/engine.md's table of a batch's parts on one and two threads, from docs/threads.json. */
export function renderThreads(r: ThreadsResults): string {
  if (r.format !== 1)
    throw new Error(
      `threads results in format ${String(r.format)}, not 1: run npm run bench:threads`,
    );
  const engines = [...new Set(r.profiled.map((c) => c.engine))];
  const find = (list: ThreadsConfig[], e: string, t: number): ThreadsConfig => {
    const c = list.find((x) => x.engine === e && x.threads === t);
    if (!c) throw new Error(`docs/threads.json has no ${e} run at ${t} thread(s)`);
    return c;
  };
  const cols = engines.flatMap((e) =>
    [1, 2].map((t) => ({ e, t, p: find(r.profiled, e, t), u: find(r.plain, e, t) })),
  );
  const name = (e: string): string => (e === 'native' ? 'native' : 'WebAssembly');
  const threadsWord = (t: number): string => `${t} thread${t > 1 ? 's' : ''}`;
  const lines = [
    `| ms per batch (median) | ${cols.map((c) => `${name(c.e)}, ${threadsWord(c.t)}`).join(' | ')} |`,
    `| --- |${cols.map(() => ' ---: |').join('')}`,
    `| **batch, unprofiled** | ${cols.map((c) => `**${ms(c.u.wallMs)}** (${int(c.u.seqPerSec)} seq/s)`).join(' | ')} |`,
  ];
  type Worker = NonNullable<ThreadsConfig['workers']>[number];
  const row = (label: string, f: (c: ThreadsConfig) => string): void => {
    lines.push(`| ${label} | ${cols.map((c) => f(c.p)).join(' | ')} |`);
  };
  const perWorker =
    (f: (w: Worker) => number) =>
    (c: ThreadsConfig): string =>
      c.workers!.map((w) => ms(f(w))).join(' / ');
  const perShard = (xs: number[] | undefined): string => (xs ? xs.map(ms).join(' / ') : '—');
  if (cols.every((c) => c.u.p10Ms !== undefined))
    lines.push(
      `| batch, unprofiled, fastest tenth (10th percentile) | ${cols.map((c) => ms(c.u.p10Ms!)).join(' | ')} |`,
    );
  row('batch, profiled', (c) => ms(c.wallMs));
  row('main: post the requests (parameters and batch cloned)', (c) => ms(c.main!.post));
  row('main: wait for the replies', (c) => ms(c.main!.wait));
  if (r.shape.carried)
    row("main: the shards' carried state rows copied back", (c) => ms(c.main!.gather));
  row('main: sum the shard gradients (combineShards)', (c) => ms(c.main!.combine));
  row("main: the trainer's gradNorm and snapshot copies", (c) => ms(c.main!.bookkeeping));
  row('main: RMSprop update', (c) => ms(c.main!.optimizer));
  row(
    "worker: the request's way there",
    perWorker((w) => w.toWorker),
  );
  row(
    'worker: setParams (copy, transpose, pack)',
    perWorker((w) => w.setParams),
  );
  row(
    'worker, its passes: forward (h·Wh, gates)',
    perWorker((w) => w.phases.forward),
  );
  row(
    'worker, its passes: softmax head, both ways',
    perWorker((w) => w.phases.head),
  );
  row(
    'worker, its passes: backward through time (dz·Whᵀ, gates)',
    perWorker((w) => w.phases.backward),
  );
  row(
    'worker, its passes: weight gradients (hᵀ·dz, scatter, sums)',
    perWorker((w) => w.phases.weightGrads),
  );
  row(
    'worker, its passes: JavaScript between kernel calls',
    perWorker((w) => w.phases.js),
  );
  row(
    'worker: gradient copied out',
    perWorker((w) => w.gradCopy),
  );
  row(
    "worker: the reply's way back",
    perWorker((w) => w.fromWorker),
  );
  row(
    'worker: idle',
    perWorker((w) => w.idle),
  );
  row("a shard's pass, wall (shard 0 / shard 1)", (c) => perShard(c.shardMs));
  row("a shard's pass, on a CPU (wall less the wait)", (c) => perShard(c.shardCpuMs));
  row("a shard's pass, waiting for a CPU", (c) => perShard(c.shardQueuedMs));

  const mean = (xs: number[]): number => xs.reduce((a, b) => a + finite(b), 0) / xs.length;
  // the main thread's serial work, and each worker's part of a batch that is not its passes
  const serial = (c: ThreadsConfig): number => {
    const m = c.main!;
    return m.post + m.gather + m.combine + m.bookkeeping + m.optimizer;
  };
  const overhead = (c: ThreadsConfig): number =>
    Math.max(...c.workers!.map((w) => w.toWorker + w.setParams + w.gradCopy + w.fromWorker));
  const prose: string[] = [];
  // a load average of one or more at the start: the other core was seldom free for a lone pass
  const busy = r.machine.loadAverage.start[0]! >= 1;
  for (const e of engines) {
    const [p1, p2, u1, u2] = [
      find(r.profiled, e, 1),
      find(r.profiled, e, 2),
      find(r.plain, e, 1),
      find(r.plain, e, 2),
    ];
    const cpu = (c: ThreadsConfig): number[] => c.shardCpuMs ?? c.shardMs!;
    const what = p1.shardCpuMs ? 'CPU time' : 'wall time';
    const together = mean(cpu(p2)) / mean(cpu(p1));
    // a batch on an idle machine, from what each part cost: one thread runs both passes in turn
    const idle1 = serial(p1) + overhead(p1) + cpu(p1).reduce((a, b) => a + b, 0);
    const idle2 = serial(p2) + overhead(p2) + Math.max(...cpu(p2));
    const passLoss = Math.max(...cpu(p2)) - cpu(p1).reduce((a, b) => a + b, 0) / 2;
    const fixedLoss = serial(p2) + overhead(p2) - (serial(p1) + overhead(p1)) / 2;
    const waited = p1.shardQueuedMs && p2.shardQueuedMs;
    prose.push(
      `**${name(e)}.** Here two threads ran a batch ${times(u1.wallMs / u2.wallMs)} as fast as one ` +
        `(unprofiled, medians; ` +
        (u1.p10Ms !== undefined && u2.p10Ms !== undefined
          ? `${times(u1.p10Ms / u2.p10Ms)} at the 10th percentile; `
          : '') +
        `profiled ${times(p1.wallMs / p2.wallMs)}, its batches at two threads ` +
        `${longer(p2.wallMs / u2.wallMs - 1)} than unprofiled ones). A shard's pass took ${ms(mean(cpu(p2)))} ms of ` +
        `${what} when the two ran at once against ${ms(mean(cpu(p1)))} ms alone (${times(together)}).` +
        (waited
          ? ` Waiting for a CPU added ${ms(mean(p1.shardQueuedMs!))} ms a pass at one thread and ` +
            `${ms(mean(p2.shardQueuedMs!))} at two: the machine's other processes.`
          : '') +
        (busy
          ? ' With the machine this busy a pass "alone" shared the cores with other work too, so ' +
            'this ratio understates what two passes cost each other on an idle machine.'
          : '') +
        ` Counted in what each part cost, an idle machine would run a batch in ${ms(idle1)} ms on one ` +
        `thread and ${ms(idle2)} on two, ${times(idle1 / idle2)}` +
        (idle2 > idle1 / 2
          ? `: of the ${ms(idle2 - idle1 / 2)} ms that two threads lose against halving one, ` +
            (passLoss >= 0
              ? `${ms(passLoss)} ms is the passes (running side by side, and the two shards' imbalance) `
              : `the passes gained ${ms(-passLoss)} ms (two at once ran no slower than one alone) `) +
            `and ${ms(fixedLoss)} ms the parts that do not split: `
          : ` (no loss against halving one shows: the passes' CPU time varied by more than that); ` +
            'what does not split is ') +
        `the main thread's serial work (${ms(serial(p2))} ms: posting, summing, bookkeeping, ` +
        `RMSprop) and each worker's own (${ms(overhead(p2))} ms: the messages' ways, setParams, the ` +
        `gradient's copy), together ${pct((serial(p2) + overhead(p2)) / idle2)} of the two-thread batch.`,
    );
  }
  if (r.compare) {
    const parts = r.compare.plain.map((o) => {
      const mine = find(r.plain, o.engine, o.threads);
      return `${name(o.engine)} at ${threadsWord(o.threads)} ${ms(mine.wallMs)} ms against ${ms(o.wallMs)} (${times(o.wallMs / mine.wallMs)})`;
    });
    prose.push(
      `Against the engines of \`${r.compare.dir}\`, unprofiled and interleaved with the rest: ${parts.join('; ')}.`,
    );
  }
  const t = r.topology;
  const load = r.machine.loadAverage;
  const machine =
    `Measured by \`${r.command}\`, which wrote [\`docs/threads.json\`](threads.json), on ${day(r.date)}: ` +
    `${r.machine.cores} × ${r.machine.cpu}${t.hypervisor ? ` (a ${t.hypervisor} guest)` : ''}, Node ` +
    `${r.machine.node.replace(/^v/, '')}, load average ${load.start[0]!.toFixed(2)} when it began and ` +
    `${load.end[0]!.toFixed(2)} when it ended; ${r.windows} windows of each configuration in turn ` +
    `(${int(r.seconds)} s). lscpu reports ${t.threadsPerCore} thread per core and ${t.coresPerSocket} ` +
    `cores, L2 ${t.l2}, L3 ${t.l3}${t.cpu0Siblings === undefined ? '' : `; CPU 0's SMT siblings: ${t.cpu0Siblings}`}. ` +
    `Batches of ${r.shape.batch} windows × ${r.shape.steps} steps, ${r.shape.layers ?? 1} × ` +
    `${r.shape.units} units${r.shape.dropout ? `, dropout ${r.shape.dropout}` : ''}, ` +
    `${r.shape.vocab} characters, ${r.shape.scoring === 'every' ? 'every position' : 'the last character'} scored` +
    `${r.shape.carried ? ', the state carried' : ''}. Two-thread cells of a worker read ` +
    `worker 1 / worker 2; at one thread the worker's rows hold both shards. Every row is wall ` +
    `time (a part is longer when its thread waited for a CPU) except a pass's time on a CPU.`;
  const text = [...lines, '', machine, '', ...prose.flatMap((p) => [p, ''])].join('\n').trimEnd();
  return checked(THREADS_BLOCK, text);
}

/**
 * Every README bench block: renderBlocks of docs/bench-latest.json, the scale block of
 * docs/scale.json, the built-in models' block of docs/pretrained.json and the fine-tuning block
 * of docs/finetune.json, and the load test's block of docs/load-test.json (these three read here
 * unless given).
 */
/** What `charlstm eval --json` reports of a model (the fields the README uses). */
export interface EvalFigures {
  command: string;
  corpus: string;
  scored: number;
  loss: number;
  bpc: number;
}

/** docs/preset-<name>[-<corpus>].json, written by `node --import tsx bench/preset.ts`. */
export interface PresetResults {
  preset: string;
  command: string;
  machine: {
    cpus: number;
    model: string;
    node: string;
    date: string;
    loadAverageMedian: number | null;
    loadAverageMax: number | null;
  };
  training: { trainSeconds: number; wallSeconds: number; epochs: number; seqPerSec: number[] };
  final: EvalFigures;
  best: EvalFigures;
}

export const PRESET_BLOCK = 'preset';

/** Issue 16's quality target for `--preset ten-minutes` on Nietzsche (nats a character). */
export const PRESET_TARGET = { corpus: 'nietzsche', nats: 1.25 };

/** The README's ten-minute preset table: one row per corpus measured, the target's verdict. */
export function renderPreset(runs: PresetResults[]): string {
  if (runs.length === 0) throw new Error('no docs/preset-ten-minutes*.json to render');
  const nats = (e: EvalFigures): string =>
    `${finite(e.loss).toFixed(3)} nats (${finite(e.bpc).toFixed(3)} bits/char)`;
  const lines = [
    '| corpus | command | epochs in the budget | the model it ends with | the best kept (`best/`) | load average (median, max) |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const r of runs) {
    const load = (v: number | null): string => (v === null ? '—' : finite(v).toFixed(1));
    lines.push(
      `| ${r.final.corpus} | \`${r.command}\` | ${int(r.training.epochs)} | ${nats(r.final)} | ${nats(r.best)} | ${load(r.machine.loadAverageMedian)}, ${load(r.machine.loadAverageMax)} |`,
    );
  }
  const t = runs.find((r) => r.final.corpus === PRESET_TARGET.corpus);
  const first = runs[0]!;
  lines.push(
    '',
    `Each run is the real CLI (its ${int(first.training.trainSeconds)} s count training steps alone; ` +
      `validation, samples and saving are off the clock), scored by \`charlstm eval --model DIR ` +
      `--corpus CORPUS --json\` on every held-out character (the last 10%, each from the 60 before ` +
      `it, from a zero state), on ${day(first.machine.date)} (${first.machine.cpus} × ` +
      `${first.machine.model}, Node ${first.machine.node.replace(/^v/, '')}).` +
      (t
        ? ` Target (issue 16): at most ${PRESET_TARGET.nats} nats on ${PRESET_TARGET.corpus} in ten ` +
          `minutes; the model the run ends with: ${finite(t.final.loss).toFixed(3)}, ` +
          `**${t.final.loss <= PRESET_TARGET.nats ? 'met' : 'not met'}**.`
        : ''),
  );
  return checked(PRESET_BLOCK, lines.join('\n'));
}

/** The ten-minutes preset's committed runs: nietzsche first, then any other corpus's. */
export function readPresetRuns(): PresetResults[] {
  const dir = new URL('../docs/', import.meta.url);
  const files = readdirSync(dir)
    .filter((f) => /^preset-ten-minutes(-[a-z0-9-]+)?\.json$/.test(f))
    .sort((a, b) => a.length - b.length || a.localeCompare(b));
  return files.map((f) => readDoc<PresetResults>(f));
}

/** One epoch of a bf16-probe --loss run. */
export interface EpochLoss {
  loss: number;
  valLoss: number;
}

/** docs/bf16-loss.json, written by `npx tsx bench/bf16-probe.ts --loss CORPUS --write`. */
export interface Bf16LossResults {
  format: 1;
  command: string;
  /** the two train runs, the precision left open */
  train: string;
  date: string;
  machine: RunMachine;
  fp32: EpochLoss[];
  bf16: EpochLoss[];
  /** the largest per-epoch difference of the training loss the check allows */
  tolerance: number;
}

export const BF16_LOSS_BLOCK = 'bf16-loss';

/** The README's BF16 quality check: each epoch's losses in both precisions, and the verdict. */
export function renderBf16Loss(r: Bf16LossResults): string {
  if (r.format !== 1) throw new Error(`bf16-loss results in format ${String(r.format)}, not 1`);
  if (r.fp32.length === 0 || r.fp32.length !== r.bf16.length)
    throw new Error('docs/bf16-loss.json: the two runs have different epoch counts');
  const f4 = (v: number): string => finite(v).toFixed(4);
  const lines = [
    '| epoch | loss FP32 | loss BF16 | difference | val_loss FP32 | val_loss BF16 |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  let worst = 0;
  r.fp32.forEach((f, i) => {
    const b = r.bf16[i]!;
    const d = b.loss - f.loss;
    worst = Math.max(worst, Math.abs(d));
    lines.push(
      `| ${i + 1} | ${f4(f.loss)} | ${f4(b.loss)} | ${d >= 0 ? '+' : '−'}${f4(Math.abs(d))} | ${f4(f.valLoss)} | ${f4(b.valLoss)} |`,
    );
  });
  const load = (xs: number[]): string => finite(xs[0]!).toFixed(2);
  lines.push(
    '',
    `The largest per-epoch difference of the training loss is ${f4(worst)}: ` +
      `**${worst <= r.tolerance ? 'within' : 'outside'} ${r.tolerance}** (issue 16). Measured by ` +
      `\`${r.command}\` on ${day(r.date)}: \`${r.train}\`, the two runs one after the other ` +
      `(${r.machine.cores} × ${r.machine.cpu}; load average ${load(r.machine.loadAverage.start)} ` +
      `when it began and ${load(r.machine.loadAverage.end)} when it ended), which wrote ` +
      `[\`docs/bf16-loss.json\`](docs/bf16-loss.json).`,
  );
  return checked(BF16_LOSS_BLOCK, lines.join('\n'));
}

/** docs/bf16-loss.json as committed. */
export const readBf16Loss = (): Bf16LossResults => readDoc<Bf16LossResults>('bf16-loss.json');

export function readmeBlocks(
  latest: BenchResults,
  scale: ScaleResults,
  pretrained: PretrainedResults = readPretrained(),
  finetune: FinetuneResults = readFinetune(),
  loadTest: LoadTestResults = readLoadTest(),
  bf16Loss: Bf16LossResults = readBf16Loss(),
  presetRuns: PresetResults[] = readPresetRuns(),
): Record<string, string> {
  return {
    ...renderBlocks(latest),
    [PRESET_BLOCK]: renderPreset(presetRuns),
    [BF16_LOSS_BLOCK]: renderBf16Loss(bf16Loss),
    [SCALE_BLOCK]: renderScale(scale),
    [PRETRAINED_BLOCK]: renderPretrained(pretrained),
    [FINETUNE_BLOCK]: renderFinetune(finetune),
    [LOAD_TEST_BLOCK]: renderLoadTest(loadTest),
  };
}

/** docs/scale.json as committed. */
export const readScale = (): ScaleResults => readDoc<ScaleResults>('scale.json');

/** A JSON file under docs/, as a bench wrote and the repository holds it. */
export function readDoc<T>(file: string): T {
  const url = new URL(`../docs/${file}`, import.meta.url);
  if (!existsSync(url)) {
    throw new Error(
      `docs/${file} is missing: a README block renders from it (the bench that writes it is named in the README beside the block)`,
    );
  }
  return JSON.parse(readFileSync(url, 'utf8')) as T;
}

const marker = (name: string, end: 'start' | 'end'): string => `<!-- bench:${name}:${end} -->`;

/**
 * `readme` with the text between each block's markers replaced. Every block must appear exactly
 * once, its start before its end, and the README may hold no other bench block.
 */
export function replaceBlocks(readme: string, blocks: Record<string, string>): string {
  const found = [...readme.matchAll(/<!-- bench:([a-z-]+):start -->/g)].map((m) => m[1]!);
  const unknown = found.filter((n) => !Object.hasOwn(blocks, n));
  if (unknown.length > 0) throw new Error(`README has unknown bench blocks: ${unknown.join(', ')}`);
  let out = readme;
  for (const [name, text] of Object.entries(blocks)) {
    const start = marker(name, 'start');
    const end = marker(name, 'end');
    const count = (s: string): number => out.split(s).length - 1;
    if (count(start) !== 1 || count(end) !== 1)
      throw new Error(`README must hold ${start} and ${end} once each`);
    const a = out.indexOf(start) + start.length;
    const b = out.indexOf(end);
    if (b < a) throw new Error(`README has ${end} before ${start}`);
    out = `${out.slice(0, a)}\n${text}\n${out.slice(b)}`;
  }
  return out;
}

/** The text between a block's markers, as replaceBlocks writes it (for checking a README). */
export function readBlock(readme: string, name: string): string | undefined {
  const start = marker(name, 'start');
  const a = readme.indexOf(start);
  const b = readme.indexOf(marker(name, 'end'));
  if (a < 0 || b < 0) return undefined;
  return readme
    .slice(a + start.length, b)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const readmeUrl = new URL('../README.md', import.meta.url);
  const readme = readFileSync(readmeUrl, 'utf8');
  const latest = readDoc<BenchResults>('bench-latest.json');
  const out = replaceBlocks(readme, readmeBlocks(latest, readScale()));
  if (process.argv.includes('--check')) {
    if (out !== readme) {
      process.stderr.write(
        "README.md's bench blocks differ from docs/bench-latest.json and docs/scale.json\n",
      );
      process.exitCode = 1;
    }
  } else if (out !== readme) {
    writeFileSync(readmeUrl, out);
    process.stderr.write(
      "rewrote README.md's bench blocks from docs/bench-latest.json and docs/scale.json\n",
    );
  }
}
