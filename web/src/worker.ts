import {
  FORMAT_VERSION,
  jsonFromText,
  modelFiles,
  readModel,
  type ModelMeta,
} from '../../src/checkpoint/model-json.ts';
import { Vocabulary } from '../../src/data/vocabulary.ts';
import { makeWindows } from '../../src/data/windows.ts';
import { REFERENCE } from '../../src/defaults.ts';
import { InlineEngine } from '../../src/engine/inline-engine.ts';
import { engineLabel, kernelModule } from '../../src/engine/kernels.ts';
import { UserError } from '../../src/errors.ts';
import { generate as generateText, nextTurn } from '../../src/generate/generate.ts';
import { generateWindow } from '../../src/generate/window.ts';
import { CharModel } from '../../src/model/char-model.ts';
import { initParameters } from '../../src/model/init.ts';
import { Sampler } from '../../src/sampling/sampler.ts';
import {
  checkTextLength,
  seedStreams,
  trainedModelMeta,
  type RunDescription,
} from '../../src/train/run-setup.ts';
import { checkSettings } from '../../src/train/settings.ts';
import { Trainer } from '../../src/train/trainer.ts';
import type {
  FromWorker,
  GenerateSettings,
  ModelInfo,
  ToWorker,
  TrainSettings,
} from './worker-protocol.ts';

// The engine in the page: a Web Worker that loads a saved model (model.json + weights chosen by
// the user; the library's readModel checks them), trains a small model on pasted text (the
// library's Trainer on an InlineEngine: the same WebAssembly kernels as in Node, the relaxed-SIMD
// build where the browser has it, on this one thread), generates (the library's generate(), stopped through an AbortSignal) and saves (the
// library's modelFiles). Long loops pause every ~50 ms for one macrotask so that a "stop" message
// gets through.

const scope = self as unknown as {
  postMessage(message: FromWorker, options?: { transfer?: Transferable[] }): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};
const post = (m: FromWorker, transfer: Transferable[] = []): void =>
  scope.postMessage(m, { transfer });

const BREATHE_MS = 50;
const SAMPLE_TEMPERATURE = 0.5;
const CHUNK_CHARS = 4096; // chunks end by time (BREATHE_MS / 2), this only bounds them

let model: CharModel | undefined;
let source = '';
let busy: 'train' | 'generate' | undefined;
let trainer: Trainer | undefined;
let generation: AbortController | undefined;

function info(m: CharModel, from: string): ModelInfo {
  return {
    source: from,
    vocab: [...m.vocab.chars],
    lowercase: m.meta.lowercase,
    maxlen: m.maxlen,
    units: m.meta.units,
    parameters: m.params.flat.length,
  };
}

async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  const byName = new Map(msg.files.map((f) => [f.name, f.bytes]));
  const { params, meta } = await readModel(jsonFromText(msg.json, msg.jsonName), {
    where: msg.jsonName,
    weights: (paths) =>
      paths.map((p) => {
        // one weights file chosen under another name still fits a model that names one file
        const bytes =
          byName.get(p) ??
          (paths.length === 1 && msg.files.length === 1 ? msg.files[0]!.bytes : undefined);
        if (!bytes)
          throw new UserError(
            `${msg.jsonName} needs the weights file ${p}: choose it together with ${msg.jsonName}`,
          );
        return { name: p, bytes: new Uint8Array(bytes) };
      }),
  });
  await kernelModule();
  model = CharModel.fromParts(params, meta);
  source = msg.jsonName;
  post({ type: 'loaded', info: info(model, source) });
}

async function train(s: TrainSettings): Promise<void> {
  const text = s.lowercase ? s.text.toLowerCase() : s.text;
  // the form's values, checked by the parsers `charlstm train` uses for the same settings
  checkSettings(
    {
      units: s.units,
      maxlen: s.maxlen,
      stride: s.stride,
      batchSize: s.batchSize,
      epochs: s.epochs,
      learningRate: s.learningRate,
    },
    {
      maxlen: 'window length',
      stride: 'step',
      batchSize: 'batch size',
      learningRate: 'learning rate',
    },
  );
  const vocab = Vocabulary.fromText(text);
  const tokens = vocab.encode(text);
  checkTextLength('the text', tokens.length, s.maxlen, 'window length');
  const windows = makeWindows(tokens, s.maxlen, s.stride);
  const shape = { vocabSize: vocab.size, units: s.units };
  // one root seed → the initial weights, the shuffles and the samples, as `charlstm train` does
  const { init: initRng, shuffle: shuffleRng, sample: sampleRng } = seedStreams(s.seed);
  const params = initParameters(shape, initRng);
  post({
    type: 'corpus',
    characters: tokens.length,
    vocabSize: vocab.size,
    sequences: windows.count,
    parameters: params.flat.length,
  });
  const engine = await InlineEngine.create({
    shape,
    maxBatch: s.batchSize,
    maxT: s.maxlen,
    threads: 0,
  });
  const run: RunDescription = {
    corpus: 'text given in the browser',
    vocab,
    lowercase: s.lowercase,
    maxlen: s.maxlen,
    stride: s.stride,
    units: s.units,
    layers: 1,
    batchSize: s.batchSize,
    optimizer: 'rmsprop',
    learningRate: s.learningRate,
    seed: s.seed,
  };
  const meta = (): ModelMeta => ({ formatVersion: FORMAT_VERSION, ...trainedModelMeta(run, t) });
  let lastPost = -Infinity;
  let lastBreath = performance.now();
  let lastSeqPerSec = 0;
  const t: Trainer = new Trainer({
    params,
    windows,
    shuffleRng,
    engine,
    config: {
      batchSize: s.batchSize,
      epochs: s.epochs,
      learningRate: s.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads: 0,
    },
    callbacks: [
      {
        onBatchEnd: async (ev) => {
          const now = performance.now();
          lastSeqPerSec = ev.seqPerSec;
          if (now - lastPost >= BREATHE_MS || ev.step === ev.steps || ev.step === 1) {
            lastPost = now;
            post({
              type: 'batch',
              batch: {
                epoch: ev.epoch,
                epochs: ev.epochs,
                step: ev.step,
                steps: ev.steps,
                iteration: (ev.epoch - 1) * ev.steps + ev.step,
                loss: ev.batchLoss,
                epochLoss: ev.epochLoss,
                seqPerSec: ev.seqPerSec,
              },
            });
          }
          if (now - lastBreath >= BREATHE_MS) {
            await nextTurn();
            lastBreath = performance.now();
          }
        },
        onEpochEnd: (ev, tr) => {
          let sample = '';
          if (s.sampleLength > 0) {
            const m = CharModel.fromParts(tr.params, meta());
            const start = sampleRng.int(tokens.length - s.maxlen);
            const seed = vocab.decode(tokens.subarray(start, start + s.maxlen));
            const [out] = generateWindow(m, {
              prompts: [seed],
              samplers: [new Sampler({ temperature: SAMPLE_TEMPERATURE })],
              length: s.sampleLength,
              rng: sampleRng,
            });
            sample = seed + (out ?? '');
          }
          post({
            type: 'epoch',
            epoch: ev.epoch,
            epochs: ev.epochs,
            loss: ev.loss,
            seconds: ev.seconds,
            seqPerSec: ev.seqPerSec,
            sample,
          });
        },
      },
    ],
  });
  trainer = t;
  try {
    await t.fit();
  } finally {
    trainer = undefined;
    await engine.close();
  }
  // sequences per second over the whole run (whole epochs; the last batch rate if none ended)
  const seqs = t.history.reduce((n, h) => n + h.sequences, 0);
  const secs = t.history.reduce((n, h) => n + h.seconds, 0);
  const seqPerSec = secs > 0 ? seqs / secs : lastSeqPerSec;
  await kernelModule();
  model = CharModel.fromParts(params, meta());
  source = 'trained here';
  post({
    type: 'trained',
    info: info(model, source),
    stopped: t.epoch < s.epochs,
    seqPerSec,
    engine: await engineLabel(engine.engine),
  });
}

async function generate(g: GenerateSettings): Promise<void> {
  if (!model) throw new UserError('no model yet: load a saved model or train one first');
  const t0 = performance.now();
  const stop = new AbortController();
  const chunks = generateText(model, {
    prompt: g.prompt,
    length: g.length,
    temperature: g.temperature,
    topK: g.topK,
    topP: g.topP,
    seed: g.seed,
    signal: stop.signal,
    chunkChars: CHUNK_CHARS,
    chunkMs: BREATHE_MS / 2,
  });
  generation = stop;
  let n = 0;
  try {
    for await (const text of chunks) {
      n += [...text].length; // characters, not UTF-16 units
      post({ type: 'text', id: g.id, text });
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
  } finally {
    generation = undefined;
  }
  post({
    type: 'generated',
    id: g.id,
    characters: n,
    seconds: (performance.now() - t0) / 1000,
    stopped: stop.signal.aborted,
  });
}

async function exportModel(): Promise<void> {
  if (!model) throw new UserError('no model to save: train one first');
  const files = await modelFiles(model.params, model.meta);
  const weights = files.weights.slice().buffer; // a copy: the transfer detaches what it sends

  const json = new TextEncoder().encode(files.json).buffer;
  post(
    {
      type: 'exported',
      files: [
        { name: 'model.json', bytes: json },
        { name: files.weightsName, bytes: weights },
      ],
    },
    [json, weights],
  );
}

const message = (err: unknown): string =>
  err instanceof UserError || err instanceof RangeError
    ? err.message
    : `internal error: ${(err as Error).message ?? String(err)}`;

scope.onmessage = (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  const run = (
    during: 'load' | 'train' | 'generate' | 'export',
    job: () => Promise<void>,
    mark?: 'train' | 'generate',
  ): void => {
    if (busy) {
      post({
        type: 'error',
        during,
        message: `busy: ${busy === 'train' ? 'training' : 'generating'}; stop it first`,
      });
      return;
    }
    busy = mark;
    job()
      .catch((err: unknown) => post({ type: 'error', during, message: message(err) }))
      .finally(() => {
        if (mark) busy = undefined;
      });
  };
  switch (msg.type) {
    case 'stop':
      trainer?.requestStop();
      generation?.abort();
      return;
    case 'load':
      run('load', () => load(msg));
      return;
    case 'train':
      run('train', () => train(msg.settings), 'train');
      return;
    case 'generate':
      run('generate', () => generate(msg.settings), 'generate');
      return;
    case 'export':
      run('export', exportModel);
      return;
  }
};

post({ type: 'ready' });
