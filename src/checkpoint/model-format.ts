// A saved model: a folder holding `model.json` and one float32 little-endian weights file, in the
// TensorFlow.js "layers-model" format, so that `tf.loadLayersModel` opens it as an ordinary Keras
// Sequential [LSTM(H), Dense(V, softmax)] — or, for stacked models, [LSTM(H, return_sequences),
// (Dropout,) ..., LSTM(H), (Dropout,) Dense(V, softmax)] — and `tensorflowjs_converter` can turn
// it into a Keras file. Dropout layers (written when the model was trained with dropout) hold no
// weights and are the identity at inference.
//
// Weight names. tfjs-layers matches each manifest entry to a layer weight by the weight's
// unscoped name, "<layer name>/<weight name>", which is what it writes itself when it saves such a
// model ("lstm_LSTM1/kernel", "lstm_LSTM1/recurrent_kernel", "lstm_LSTM1/bias",
// "dense_Dense1/kernel", "dense_Dense1/bias" for auto-named layers). When a name does not match,
// LayersModel.loadWeights drops the second-to-last path part, so the TF 2 Keras spelling
// "lstm/lstm_cell/kernel" loads too, and so does the Keras 3 spelling "lstm/0", "lstm/1", ...
// (through loadLayersModel, from an IOHandler or over http; tf.models.modelFromJSON with a
// manifest only fetches exact names). A name matching no weight is an error. The Keras converter (keras_tfjs_loader) looks up Keras's own names
// ("lstm/lstm_cell/kernel") and retries with the cell part dropped, so it accepts both spellings
// as well. We write the short tfjs spelling with fixed layer names "lstm" (then "lstm_1", ...)
// and "dense": "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias", "dense/kernel", "dense/bias";
// checked by test/model-format.test.ts against tfjs 4.22.
//
// The bytes of the weights file are exactly `params.flat`: Parameters already use the Keras
// layout and order (LSTM kernel [V,4H], recurrent kernel [H,4H], bias [4H], gates i,f,c,o; Dense
// kernel [H,V], bias [V]).
//
// `modelJson` and `parseModelJson` are pure (no Node APIs) so a browser build can use them; the
// file handling lives in `saveModel` / `loadModel`.

import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { UserError, writeFailure } from '../errors.ts';
import {
  Parameters,
  layerCount,
  lstmLayerName,
  weightEntries,
  type ModelShape,
  type WeightName,
} from '../model/params.ts';

/** charlstm's own version of the metadata in `userDefinedMetadata`; bump on incompatible change. */
export const FORMAT_VERSION = 1;

/** The version written into `generatedBy` (kept equal to package.json's by a test). */
export const CHARLSTM_VERSION = '0.1.0';

export const MODEL_JSON = 'model.json';

export interface ModelMeta {
  formatVersion: number;
  /** The vocabulary, in index order; each entry is one code point. */
  vocab: string[];
  lowercase: boolean;
  maxlen: number;
  step: number;
  units: number;
  /** stacked LSTM layers; written only when more than one (older files have one) */
  layers?: number;
  /** Free-form JSON: learning rate, batch size, epochs done, seed, corpus, loss history... */
  training: Record<string, unknown>;
  /** sha256 (hex) of the whole weights file. */
  weightsSha256?: string;
}

export interface SavedModel {
  params: Parameters;
  meta: ModelMeta;
}

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32';
}

/** The Keras weight names (after the layer name) of each weight. */
const KERAS_WEIGHT: Record<WeightName, string> = {
  kernel: 'kernel',
  recurrentKernel: 'recurrent_kernel',
  bias: 'bias',
  denseKernel: 'kernel',
  denseBias: 'bias',
};

const WEIGHTS_FILE_RE = /^weights\.[0-9a-f]{12}\.bin$/;
const TEMP_FILE_RE = /\.tmp-(\d+)-[0-9a-f]{8}$/;

/** The weights file name for these bytes: `weights.<first 12 hex of sha256>.bin`. */
export function weightsFileName(sha256Hex: string): string {
  return `weights.${sha256Hex.slice(0, 12)}.bin`;
}

export function weightSpecs(shape: ModelShape): WeightSpec[] {
  return weightEntries(shape).map((e) => ({
    name: `${e.layer}/${KERAS_WEIGHT[e.name]}`,
    shape: e.shape,
    dtype: 'float32' as const,
  }));
}

const glorotUniform = () => ({ class_name: 'GlorotUniform', config: { seed: null } });

/**
 * The whole `model.json` object: Keras topology, weights manifest pointing at `weightsPath`,
 * and the charlstm metadata in `userDefinedMetadata`.
 */
export function modelJson(
  params: Parameters | ModelShape,
  meta: Omit<ModelMeta, 'formatVersion'>,
  weightsPath: string,
): Record<string, unknown> {
  const shape = params instanceof Parameters ? params.shape : params;
  const { vocabSize: V, units: H } = shape;
  if (meta.vocab.length !== V) {
    throw new RangeError(
      `Model metadata has ${meta.vocab.length} vocabulary characters but the weights have V=${V}`,
    );
  }
  if (meta.units !== H) {
    throw new RangeError(`Model metadata says units=${meta.units} but the weights have H=${H}`);
  }
  const L = layerCount(shape);
  if ((meta.layers ?? 1) !== L) {
    throw new RangeError(
      `Model metadata says layers=${meta.layers ?? 1} but the weights have L=${L}`,
    );
  }
  const rate = typeof meta.training.dropout === 'number' ? meta.training.dropout : 0;
  const lstm = (l: number) => ({
    class_name: 'LSTM',
    config: {
      name: lstmLayerName(l),
      trainable: true,
      ...(l === 0 && { batch_input_shape: [null, meta.maxlen, V] }),
      dtype: 'float32',
      units: H,
      activation: 'tanh',
      // Written out: TF.js's default is hard_sigmoid, Keras 2's is sigmoid.
      recurrent_activation: 'sigmoid',
      use_bias: true,
      kernel_initializer: glorotUniform(),
      recurrent_initializer: { class_name: 'Orthogonal', config: { gain: 1.0, seed: null } },
      bias_initializer: { class_name: 'Zeros', config: {} },
      unit_forget_bias: true,
      kernel_regularizer: null,
      recurrent_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      recurrent_constraint: null,
      bias_constraint: null,
      dropout: 0.0,
      recurrent_dropout: 0.0,
      implementation: 2,
      return_sequences: l < L - 1,
      return_state: false,
      go_backwards: false,
      stateful: false,
      unroll: false,
    },
  });
  const dropout = (l: number) => ({
    class_name: 'Dropout',
    config: {
      name: l === 0 ? 'dropout' : `dropout_${l}`,
      trainable: true,
      dtype: 'float32',
      rate,
      noise_shape: null,
      seed: null,
    },
  });
  const layers: Record<string, unknown>[] = [];
  for (let l = 0; l < L; l++) {
    layers.push(lstm(l));
    if (rate > 0) layers.push(dropout(l));
  }
  const dense = {
    class_name: 'Dense',
    config: {
      name: 'dense',
      trainable: true,
      dtype: 'float32',
      units: V,
      activation: 'softmax',
      use_bias: true,
      kernel_initializer: glorotUniform(),
      bias_initializer: { class_name: 'Zeros', config: {} },
      kernel_regularizer: null,
      bias_regularizer: null,
      activity_regularizer: null,
      kernel_constraint: null,
      bias_constraint: null,
    },
  };
  const userDefinedMetadata: Record<string, unknown> = {
    formatVersion: FORMAT_VERSION,
    vocab: [...meta.vocab],
    lowercase: meta.lowercase,
    maxlen: meta.maxlen,
    step: meta.step,
    units: meta.units,
    ...(L > 1 && { layers: L }),
    training: meta.training,
  };
  if (meta.weightsSha256 !== undefined) userDefinedMetadata.weightsSha256 = meta.weightsSha256;
  return {
    format: 'layers-model',
    generatedBy: `charlstm ${CHARLSTM_VERSION}`,
    convertedBy: null,
    modelTopology: {
      class_name: 'Sequential',
      config: { name: 'sequential', layers: [...layers, dense] },
      keras_version: 'tfjs-layers 4.22.0',
      backend: 'tensor_flow.js',
    },
    weightsManifest: [{ paths: [weightsPath], weights: weightSpecs(shape) }],
    userDefinedMetadata,
  };
}

/** What `parseModelJson` finds in a `model.json`. */
export interface ParsedModelJson {
  meta: ModelMeta;
  shape: ModelShape;
  /** The weights files, in order (charlstm writes one). */
  weightPaths: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v > 0;

/**
 * Validate a parsed `model.json` and pull out the charlstm metadata. `where` names the file in
 * error messages. Throws UserError.
 */
export function parseModelJson(json: unknown, where = MODEL_JSON): ParsedModelJson {
  const bad = (msg: string) => new UserError(`${where}: ${msg}`);
  if (!isObject(json)) throw bad('not a model (expected a JSON object)');
  const md = json.userDefinedMetadata;
  if (!isObject(md) || md.formatVersion === undefined) {
    throw bad(
      `not a charlstm model (no formatVersion in userDefinedMetadata; this charlstm reads format version ${FORMAT_VERSION})`,
    );
  }
  if (md.formatVersion !== FORMAT_VERSION) {
    throw bad(
      `unsupported charlstm model format version ${JSON.stringify(md.formatVersion)}; this charlstm reads format version ${FORMAT_VERSION}`,
    );
  }
  const { vocab, lowercase, maxlen, step, units, layers, training, weightsSha256 } = md;
  if (!Array.isArray(vocab) || vocab.length === 0)
    throw bad('metadata "vocab" must be a non-empty array of characters');
  const seen = new Set<string>();
  for (const [i, ch] of vocab.entries()) {
    if (typeof ch !== 'string' || [...ch].length !== 1) {
      throw bad(`metadata "vocab" entry ${i} is ${JSON.stringify(ch)}, not a single character`);
    }
    if (seen.has(ch)) throw bad(`metadata "vocab" repeats the character ${JSON.stringify(ch)}`);
    seen.add(ch);
  }
  if (typeof lowercase !== 'boolean')
    throw bad(`metadata "lowercase" must be true or false, got ${JSON.stringify(lowercase)}`);
  for (const [k, v] of [
    ['maxlen', maxlen],
    ['step', step],
    ['units', units],
    ['layers', layers ?? 1],
  ] as const) {
    if (!isPositiveInt(v))
      throw bad(`metadata "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (!isObject(training)) throw bad('metadata "training" must be a JSON object');
  if (
    weightsSha256 !== undefined &&
    (typeof weightsSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(weightsSha256))
  ) {
    throw bad(
      `metadata "weightsSha256" must be 64 hex digits, got ${JSON.stringify(weightsSha256)}`,
    );
  }
  const shape: ModelShape = {
    vocabSize: vocab.length,
    units: units as number,
    ...(layers !== undefined && layers !== 1 && { layers: layers as number }),
  };

  const manifest = json.weightsManifest;
  if (!Array.isArray(manifest) || manifest.length === 0) throw bad('no "weightsManifest"');
  const weightPaths: string[] = [];
  const specs: unknown[] = [];
  for (const group of manifest) {
    if (!isObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw bad('"weightsManifest" entries need "paths" and "weights" arrays');
    }
    for (const p of group.paths) {
      if (typeof p !== 'string' || p === '' || p === '.' || p === '..' || /[/\\]/.test(p)) {
        throw bad(
          `weights path ${JSON.stringify(p)} must be a plain file name in the model folder`,
        );
      }
      weightPaths.push(p);
    }
    specs.push(...group.weights);
  }
  if (weightPaths.length === 0) throw bad('"weightsManifest" names no weights file');
  const expected = weightSpecs(shape);
  if (specs.length !== expected.length) {
    throw bad(
      `expected ${expected.length} weights (${expected.map((w) => w.name).join(', ')}), found ${specs.length}`,
    );
  }
  for (const [i, want] of expected.entries()) {
    const got = specs[i];
    if (!isObject(got) || !Array.isArray(got.shape)) throw bad(`weight ${i} has no shape`);
    if (got.dtype !== undefined && got.dtype !== 'float32') {
      throw bad(
        `weight ${JSON.stringify(got.name)} has dtype ${JSON.stringify(got.dtype)}, expected float32`,
      );
    }
    if (got.shape.length !== want.shape.length || got.shape.some((d, j) => d !== want.shape[j])) {
      throw bad(
        `weight ${JSON.stringify(got.name)} has shape ${JSON.stringify(got.shape)}, expected ` +
          `${JSON.stringify(want.shape)} (${want.name}) for V=${shape.vocabSize}, H=${shape.units}, L=${layerCount(shape)}`,
      );
    }
  }
  const meta: ModelMeta = {
    formatVersion: FORMAT_VERSION,
    vocab: vocab as string[],
    lowercase,
    maxlen: maxlen as number,
    step: step as number,
    units: units as number,
    ...(shape.layers !== undefined && { layers: shape.layers }),
    training,
  };
  if (weightsSha256 !== undefined) meta.weightsSha256 = weightsSha256 as string;
  return { meta, shape, weightPaths };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The float32 little-endian bytes of `a`. */
function toLittleEndianBytes(a: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) dv.setFloat32(i * 4, a[i]!, true);
  return out;
}

/** A fresh Float32Array read from float32 little-endian bytes. */
function fromLittleEndianBytes(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  }
  return out;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Write `data` to `dir/name` atomically: temp file, fsync, rename. */
async function writeFileAtomic(
  dir: string,
  name: string,
  data: Uint8Array | string,
): Promise<void> {
  const target = path.join(dir, name);
  const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await fs
    .open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644)
    .catch((err: unknown) => {
      throw writeFailure(err, target, 'the model saved before is kept');
    });
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fs.rm(temp, { force: true }); // a partial file would only eat the space that is left
    throw writeFailure(err, target, 'the model saved before is kept');
  }
  await fh.close();
  try {
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
}

/** Make a directory's entries durable. Some platforms (Windows) cannot fsync a directory. */
async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (
      code !== 'EISDIR' &&
      code !== 'EPERM' &&
      code !== 'EINVAL' &&
      code !== 'EACCES' &&
      code !== 'EBADF'
    )
      throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Save a model to `dir` (created if missing) so that a kill at any moment leaves either the old
 * model or the new one, never a broken one: the weights go to a new content-named file (temp +
 * fsync + rename), then `model.json` is replaced by rename (the commit point), the folder is
 * fsynced, and the weights files the replaced `model.json` listed in its manifest (and the new one
 * does not) are deleted. Nothing else is removed: a `weights.<hex>.bin` this folder held that no
 * model of ours listed stays, and so does a temporary file of a save still running elsewhere
 * (only those of this process or of a process no longer alive go). One writer per folder.
 */
export async function saveModel(
  dir: string,
  params: Parameters,
  meta: Omit<ModelMeta, 'formatVersion' | 'weightsSha256'>,
): Promise<void> {
  const bytes = toLittleEndianBytes(params.flat);
  const sha = sha256Hex(bytes);
  const weightsName = weightsFileName(sha);
  const json = modelJson(params, { ...meta, weightsSha256: sha }, weightsName);
  const text = JSON.stringify(json, null, 1) + '\n';

  await fs.mkdir(dir, { recursive: true });
  const replaced = await manifestWeightFiles(dir); // what the model being replaced uses
  await writeFileAtomic(dir, weightsName, bytes);
  await fsyncDir(dir); // the weights file's name is durable before model.json can point at it
  await writeFileAtomic(dir, MODEL_JSON, text);
  await fsyncDir(dir);

  // Clean up: the replaced model's weights files, and temp files left by an interrupted save.
  for (const name of replaced) {
    if (name !== weightsName) await fs.rm(path.join(dir, name), { force: true });
  }
  for (const entry of await fs.readdir(dir)) {
    const m = TEMP_FILE_RE.exec(entry);
    const ours = entry.startsWith('weights.') || entry.startsWith(`${MODEL_JSON}.`);
    if (m && ours && !processAlive(Number(m[1]))) {
      await fs.rm(path.join(dir, entry), { force: true });
    }
  }
}

/**
 * The weights files named by the manifest of `dir/model.json` (charlstm's own
 * `weights.<12 hex>.bin` names only), or none when there is no readable model there.
 */
async function manifestWeightFiles(dir: string): Promise<string[]> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(path.join(dir, MODEL_JSON), 'utf8'));
  } catch {
    return []; // no model.json, or not one we can read: nothing of a model to replace
  }
  const names: string[] = [];
  const manifest = isObject(json) ? json.weightsManifest : undefined;
  if (!Array.isArray(manifest)) return names;
  for (const group of manifest) {
    if (!isObject(group) || !Array.isArray(group.paths)) continue;
    for (const p of group.paths)
      if (typeof p === 'string' && WEIGHTS_FILE_RE.test(p)) names.push(p);
  }
  return names;
}

/** Whether process `pid` (on this machine) still runs; this process counts as not running. */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return false; // our own leftovers: no save of ours is in flight here
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

async function readOrExplain(file: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${what} not found: ${file}`);
    if (code === 'EISDIR') throw new UserError(`${what} is a folder, not a file: ${file}`);
    if (code === 'EACCES' || code === 'EPERM')
      throw new UserError(`cannot read ${what}: ${file} (permission denied)`);
    throw err;
  }
}

/** Load a model saved by `saveModel`. Every problem with the folder is a UserError naming the file. */
export async function loadModel(dir: string): Promise<SavedModel> {
  let st;
  try {
    st = await fs.stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UserError(`model folder not found: ${dir}`);
    throw err;
  }
  if (!st.isDirectory()) throw new UserError(`not a model folder (it is a file): ${dir}`);

  const jsonFile = path.join(dir, MODEL_JSON);
  const text = (await readOrExplain(jsonFile, MODEL_JSON)).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${jsonFile}: not valid JSON (${(err as Error).message})`);
  }
  const { meta, shape, weightPaths } = parseModelJson(json, jsonFile);

  const parts: Buffer[] = [];
  for (const p of weightPaths) parts.push(await readOrExplain(path.join(dir, p), 'weights file'));
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const weightsWhere = weightPaths.map((p) => path.join(dir, p)).join(' + ');
  const expectedBytes = Parameters.size(shape) * 4;
  if (bytes.length !== expectedBytes) {
    throw new UserError(
      `weights file ${weightsWhere} has the wrong size: expected ${expectedBytes} bytes ` +
        `(V=${shape.vocabSize}, H=${shape.units}, L=${layerCount(shape)}), got ${bytes.length}`,
    );
  }
  if (meta.weightsSha256 !== undefined) {
    const sha = sha256Hex(bytes);
    if (sha !== meta.weightsSha256) {
      throw new UserError(
        `weights file ${weightsWhere} is corrupt: its sha256 is ${sha}, ${MODEL_JSON} expects ${meta.weightsSha256}`,
      );
    }
  }
  return { params: new Parameters(shape, fromLittleEndianBytes(bytes)), meta };
}
