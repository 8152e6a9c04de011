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
// This module is pure (no Node.js APIs): the browser's Web Worker (web/src/worker.ts) bundles it
// and opens and saves models through the same functions as Node. The files themselves are
// handled in model-format.ts (`saveModel` / `loadModel`) in Node, and by the page in a browser.

import { UserError } from '../errors.ts';
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
  /** The vocabulary entry that the characters outside it were trained as (--max-vocab,
   * --min-count); absent: the model has no unknown symbol. */
  unknown?: string;
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
    ...(meta.unknown !== undefined && { unknown: meta.unknown }),
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

export const isObject = (v: unknown): v is Record<string, unknown> =>
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
  const { vocab, unknown, lowercase, maxlen, step, units, layers, training, weightsSha256 } = md;
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
  if (unknown !== undefined && (typeof unknown !== 'string' || !seen.has(unknown))) {
    throw bad(
      `metadata "unknown" must be one of the "vocab" characters, got ${JSON.stringify(unknown)}`,
    );
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
    ...(unknown !== undefined && { unknown: unknown as string }),
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

/** `text` parsed as JSON; anything else is a UserError naming `where`. */
export function jsonFromText(text: string, where = MODEL_JSON): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UserError(`${where}: not valid JSON (${(err as Error).message})`);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The float32 little-endian bytes of `a` (a view of `a` itself on little-endian machines). */
export function toLittleEndianBytes(a: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) dv.setFloat32(i * 4, a[i]!, true);
  return out;
}

/** A fresh Float32Array read from float32 little-endian bytes. */
export function fromLittleEndianBytes(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes);
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  }
  return out;
}

/**
 * The sha256 (64 hex digits) of some bytes, or undefined where none can be computed (a page
 * outside a secure context has no WebCrypto): then nothing is checked and no checksum written.
 */
export type Sha256 = (bytes: Uint8Array) => string | undefined | Promise<string | undefined>;

/** sha256 through WebCrypto (browsers, Node): the default wherever no faster hash is passed. */
export const webCryptoSha256: Sha256 = async (bytes) => {
  if (!globalThis.crypto?.subtle) return undefined;
  const data =
    bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : bytes.slice();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
};

/** One weights file of a model: its name as error messages show it, and its bytes. */
export interface WeightsFile {
  name: string;
  bytes: Uint8Array;
}

export interface ReadModelOptions {
  /** model.json as error messages name it (a path in Node, the chosen file's name in a page). */
  where?: string;
  /** The files the manifest names (`paths`, in order): read from a folder, or picked by a user. */
  weights: (paths: string[]) => WeightsFile[] | Promise<WeightsFile[]>;
  sha256?: Sha256;
}

/**
 * A model from a parsed `model.json` and its weights files, with every check: the metadata and
 * manifest (parseModelJson), the weights' total size for the shape (vocabulary, units, layers),
 * and their sha256 against the one model.json records. Throws UserError naming the file.
 */
export async function readModel(json: unknown, opts: ReadModelOptions): Promise<SavedModel> {
  const where = opts.where ?? MODEL_JSON;
  const { meta, shape, weightPaths } = parseModelJson(json, where);
  const files = await opts.weights(weightPaths);
  const bytes = concatBytes(files.map((f) => f.bytes));
  const weightsWhere = files.map((f) => f.name).join(' + ');
  const expectedBytes = Parameters.size(shape) * 4;
  if (bytes.length !== expectedBytes) {
    throw new UserError(
      `weights file ${weightsWhere} has the wrong size: expected ${expectedBytes} bytes ` +
        `(V=${shape.vocabSize}, H=${shape.units}, L=${layerCount(shape)}), got ${bytes.length}`,
    );
  }
  if (meta.weightsSha256 !== undefined) {
    const sha = await (opts.sha256 ?? webCryptoSha256)(bytes);
    if (sha !== undefined && sha !== meta.weightsSha256) {
      const jsonName = where.split(/[/\\]/).pop(); // the file's own name, whatever its folder
      throw new UserError(
        `weights file ${weightsWhere} is corrupt: its sha256 is ${sha}, ${jsonName} expects ${meta.weightsSha256}`,
      );
    }
  }
  return { params: new Parameters(shape, fromLittleEndianBytes(bytes)), meta };
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A model as the two files of its folder. */
export interface ModelFiles {
  /** The text of model.json. */
  json: string;
  /** `weights.<first 12 hex of sha256>.bin` (`weights.bin` when no sha256 could be computed). */
  weightsName: string;
  /** The weights file's bytes: on little-endian machines a view of `params.flat`, not a copy. */
  weights: Uint8Array;
  sha256?: string;
}

/**
 * The files that save `params` with `meta`: the weights as float32 little-endian bytes, named
 * after their sha256, which model.json records (any checksum in `meta` was of another file).
 */
export async function modelFiles(
  params: Parameters,
  meta: Omit<ModelMeta, 'formatVersion'>,
  sha256: Sha256 = webCryptoSha256,
): Promise<ModelFiles> {
  const weights = toLittleEndianBytes(params.flat);
  const sha = await sha256(weights);
  const weightsName = sha === undefined ? 'weights.bin' : weightsFileName(sha);
  const saved: Omit<ModelMeta, 'formatVersion'> = { ...meta };
  delete saved.weightsSha256;
  if (sha !== undefined) saved.weightsSha256 = sha;
  const json = modelJson(params, saved, weightsName);
  return {
    json: JSON.stringify(json, null, 1) + '\n',
    weightsName,
    weights,
    ...(sha !== undefined && { sha256: sha }),
  };
}
