import {
  FORMAT_VERSION,
  modelJson,
  parseModelJson,
  weightsFileName,
  type ModelMeta,
} from '../../src/checkpoint/model-format.ts';
import { Vocabulary } from '../../src/data/vocabulary.ts';
import { makeWindows } from '../../src/data/windows.ts';
import { REFERENCE } from '../../src/defaults.ts';
import { InlineEngine } from '../../src/engine/gradient-engine.ts';
import { kernelModule } from '../../src/engine/kernels.ts';
import { UserError } from '../../src/errors.ts';
import { generateWindow, textSteps } from '../../src/generate/window.ts';
import { CharModel } from '../../src/model/char-model.ts';
import { initParameters } from '../../src/model/init.ts';
import { Parameters } from '../../src/model/params.ts';
import { Rng } from '../../src/sampling/rng.ts';
import { Sampler } from '../../src/sampling/sampler.ts';
import { Trainer } from '../../src/train/trainer.ts';
import type {
  FromWorker,
  GenerateSettings,
  ModelInfo,
  ToWorker,
  TrainSettings,
} from './worker-protocol.ts';

// The engine in the page: a Web Worker that loads a saved model (model.json + weights chosen by
// the user), trains a small model on pasted text (the library's Trainer on an InlineEngine: the
// same WebAssembly kernels as in Node, on this one thread), and generates. Long loops pause every
// ~50 ms for one macrotask so that a "stop" message gets through.

const scope = self as unknown as {
  postMessage(message: FromWorker, options?: { transfer?: Transferable[] }): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};
const post = (m: FromWorker, transfer: Transferable[] = []): void =>
  scope.postMessage(m, { transfer });

const BREATHE_MS = 50;
const SAMPLE_TEMPERATURE = 0.5;

// A macrotask without setTimeout's clamping: lets queued messages (stop) be handled.
const channel = new MessageChannel();
const waiting: (() => void)[] = [];
channel.port1.onmessage = () => waiting.shift()?.();
const breathe = (): Promise<void> =>
  new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(null);
  });

let model: CharModel | undefined;
let source = '';
let busy: 'train' | 'generate' | undefined;
let trainer: Trainer | undefined;
let stopGeneration = false;

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

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function floatsFromBytes(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
  else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  }
  return out;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string | undefined> {
  if (!globalThis.crypto?.subtle) return undefined; // not a secure context: no check possible
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  let json: unknown;
  try {
    json = JSON.parse(msg.json);
  } catch (err) {
    throw new UserError(`${msg.jsonName}: not valid JSON (${(err as Error).message})`);
  }
  const { meta, shape, weightPaths } = parseModelJson(json, msg.jsonName);
  const byName = new Map(msg.files.map((f) => [f.name, f.bytes]));
  const parts = weightPaths.map((p) => {
    // one weights file chosen under another name still fits a model that names one file
    const bytes =
      byName.get(p) ??
      (weightPaths.length === 1 && msg.files.length === 1 ? msg.files[0]!.bytes : undefined);
    if (!bytes)
      throw new UserError(
        `${msg.jsonName} needs the weights file ${p}: choose it together with ${msg.jsonName}`,
      );
    return new Uint8Array(bytes);
  });
  const size = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const expected = Parameters.size(shape) * 4;
  if (size !== expected) {
    throw new UserError(
      `weights file ${weightPaths.join(' + ')} has the wrong size: expected ${expected} bytes (V=${shape.vocabSize}, H=${shape.units}), got ${size}`,
    );
  }
  if (meta.weightsSha256 !== undefined) {
    const sha = await sha256Hex(bytes);
    if (sha !== undefined && sha !== meta.weightsSha256) {
      throw new UserError(
        `weights file ${weightPaths.join(' + ')} is corrupt: its sha256 is ${sha}, ${msg.jsonName} expects ${meta.weightsSha256}`,
      );
    }
  }
  await kernelModule();
  model = CharModel.fromParts(new Parameters(shape, floatsFromBytes(bytes)), meta);
  source = msg.jsonName;
  post({ type: 'loaded', info: info(model, source) });
}

async function train(s: TrainSettings): Promise<void> {
  const text = s.lowercase ? s.text.toLowerCase() : s.text;
  if (!(Number.isInteger(s.units) && s.units >= 4 && s.units % 4 === 0)) {
    throw new UserError(`units must be a positive multiple of 4, got ${s.units}`);
  }
  for (const [name, v] of [
    ['window length', s.maxlen],
    ['step', s.step],
    ['batch size', s.batchSize],
    ['epochs', s.epochs],
  ] as const) {
    if (!(Number.isInteger(v) && v >= 1))
      throw new UserError(`${name} must be a positive integer, got ${v}`);
  }
  if (!(s.learningRate > 0 && Number.isFinite(s.learningRate))) {
    throw new UserError(`learning rate must be a positive number, got ${s.learningRate}`);
  }
  const vocab = Vocabulary.fromText(text);
  const tokens = vocab.encode(text);
  if (tokens.length < s.maxlen + 1) {
    throw new UserError(
      `the text has ${tokens.length} characters; training needs at least window length + 1 = ${s.maxlen + 1}`,
    );
  }
  const windows = makeWindows(tokens, s.maxlen, s.step);
  const shape = { vocabSize: vocab.size, units: s.units };
  // one root seed → the initial weights, the shuffles and the samples, as `charlstm train` does
  const root = new Rng(s.seed);
  const initRng = new Rng(root.nextU32());
  const shuffleRng = new Rng(root.nextU32());
  const sampleRng = new Rng(root.nextU32());
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
  const meta = (): ModelMeta => ({
    formatVersion: FORMAT_VERSION,
    vocab: [...vocab.chars],
    lowercase: s.lowercase,
    maxlen: s.maxlen,
    step: s.step,
    units: s.units,
    training: {
      corpus: 'text given in the browser',
      epochs: t.epoch,
      batchSize: s.batchSize,
      optimizer: 'rmsprop',
      learningRate: s.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      seed: s.seed,
      loss: t.history.map((h) => h.loss),
      seqPerSec: t.history.map((h) => Math.round(h.seqPerSec)),
    },
  });
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
            await breathe();
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
  post({ type: 'trained', info: info(model, source), stopped: t.epoch < s.epochs, seqPerSec });
}

async function generate(g: GenerateSettings): Promise<void> {
  if (!model) throw new UserError('no model yet: load a saved model or train one first');
  const t0 = performance.now();
  const steps = textSteps(model, {
    prompt: g.prompt,
    length: g.length,
    temperature: g.temperature,
    ...(g.topK !== undefined ? { topK: g.topK } : {}),
    ...(g.topP !== undefined ? { topP: g.topP } : {}),
    seed: g.seed,
  });
  stopGeneration = false;
  let chunk = '';
  let n = 0;
  let last = performance.now();
  for (const ch of steps) {
    chunk += ch;
    n++;
    const now = performance.now();
    if (now - last >= BREATHE_MS / 2) {
      post({ type: 'text', id: g.id, text: chunk });
      chunk = '';
      await breathe();
      last = performance.now();
      if (stopGeneration) break;
    }
  }
  if (chunk) post({ type: 'text', id: g.id, text: chunk });
  post({
    type: 'generated',
    id: g.id,
    characters: n,
    seconds: (performance.now() - t0) / 1000,
    stopped: stopGeneration,
  });
}

async function exportModel(): Promise<void> {
  if (!model) throw new UserError('no model to save: train one first');
  const bytes = new Uint8Array(model.params.flat.slice().buffer); // little-endian on every browser platform
  const sha = await sha256Hex(bytes);
  const weightsName = sha ? weightsFileName(sha) : 'weights.bin';
  const meta: ModelMeta = { ...model.meta };
  delete meta.weightsSha256; // a loaded model's checksum was of its own file
  if (sha) meta.weightsSha256 = sha;
  const json = modelJson(model.params, meta, weightsName);
  const jsonBytes = new TextEncoder().encode(JSON.stringify(json, null, 1) + '\n').buffer;
  post(
    {
      type: 'exported',
      files: [
        { name: 'model.json', bytes: jsonBytes },
        { name: weightsName, bytes: bytes.buffer },
      ],
    },
    [jsonBytes, bytes.buffer],
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
      stopGeneration = true;
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
