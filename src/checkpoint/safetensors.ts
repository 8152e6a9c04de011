// A model as a safetensors file with PyTorch's names and layouts (`charlstm export --format
// safetensors`), and back (`charlstm import`), so that the weights can be trained further in
// PyTorch (nn.LSTM + nn.Linear, docs/scale-out.md) and come home bit for bit.
//
// The file: an 8-byte little-endian header length n, n bytes of JSON header (padded with spaces
// to a multiple of 8), then the tensors' bytes; the header maps each tensor name to its dtype,
// shape and [begin, end) byte offsets into the data, and `__metadata__` (string → string) holds
// "charlstm", our ModelMeta as JSON (vocabulary, settings, training record; no weightsSha256,
// which belongs to our own weights file and is recomputed on import), and "format": "pt".
//
// Tensors (float32, little-endian), for layers k = 0..L-1 of H units and V characters:
//   lstm.weight_ih_l{k}  [4H, D_k]   Keras kernel [D_k, 4H] transposed (D_0 = V: one-hot input)
//   lstm.weight_hh_l{k}  [4H, H]     Keras recurrent kernel [H, 4H] transposed
//   lstm.bias_ih_l{k}    [4H]        Keras's one bias
//   lstm.bias_hh_l{k}    [4H]        zeros (Keras has no second bias; PyTorch adds the two)
//   dense.weight         [V, H]      Keras dense kernel [H, V] transposed
//   dense.bias           [V]
// PyTorch's gate order i, f, g, o is Keras's i, f, c, o, so only transposes are needed.
//
// On import, a file trained in PyTorch has two biases: when bias_hh is all zeros bias_ih is kept
// exactly (so our own export round-trips, -0 included); otherwise their float32 sum is the bias.
// Pure (no Node APIs): the browser can use it too.

import { UserError, show } from '../errors.ts';
import { Parameters, layerCount, type ModelShape } from '../model/params.ts';
import {
  fromLittleEndianBytes,
  isObject,
  parseModelJson,
  toLittleEndianBytes,
  weightSpecs,
  type ModelMeta,
  type SavedModel,
} from './model-json.ts';

/** The `__metadata__` key that holds the ModelMeta as JSON. */
export const SAFETENSORS_META_KEY = 'charlstm';

/** Largest header we read: far above any model's (its JSON is names, shapes and the metadata). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One tensor of the file, in PyTorch's terms. */
interface TorchTensor {
  name: string;
  shape: number[];
}

/** The tensors of a model of this shape, in the order the export writes them. */
export function torchTensors(shape: ModelShape): TorchTensor[] {
  const { vocabSize: V, units: H } = shape;
  const out: TorchTensor[] = [];
  for (let k = 0; k < layerCount(shape); k++) {
    out.push(
      { name: `lstm.weight_ih_l${k}`, shape: [4 * H, k === 0 ? V : H] },
      { name: `lstm.weight_hh_l${k}`, shape: [4 * H, H] },
      { name: `lstm.bias_ih_l${k}`, shape: [4 * H] },
      { name: `lstm.bias_hh_l${k}`, shape: [4 * H] },
    );
  }
  out.push({ name: 'dense.weight', shape: [V, H] }, { name: 'dense.bias', shape: [V] });
  return out;
}

/** `src` [rows, cols] (row-major) as [cols, rows]. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

/** The tensors' values in torchTensors() order. */
function torchValues(params: Parameters): Float32Array[] {
  const { vocabSize: V, units: H } = params.shape;
  const values: Float32Array[] = [];
  params.lstm.forEach((w, k) => {
    values.push(
      transpose(w.kernel, k === 0 ? V : H, 4 * H),
      transpose(w.recurrentKernel, H, 4 * H),
      w.bias,
      new Float32Array(4 * H),
    );
  });
  values.push(transpose(params.denseKernel, H, V), params.denseBias);
  return values;
}

/** The safetensors file of a model (see the top of this file). */
export function safetensorsFromModel(params: Parameters, meta: ModelMeta): Uint8Array {
  const saved: Partial<ModelMeta> = { ...meta };
  delete saved.weightsSha256;
  const header: Record<string, unknown> = {
    __metadata__: { [SAFETENSORS_META_KEY]: JSON.stringify(saved), format: 'pt' },
  };
  const values = torchValues(params);
  let offset = 0;
  torchTensors(params.shape).forEach((t, i) => {
    const end = offset + values[i]!.length * 4;
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  });
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const spaces = new Uint8Array(padded).fill(0x20);
    spaces.set(json);
    json = spaces;
  }
  const out = new Uint8Array(8 + json.length + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.length, true); // u64 little-endian: the high half stays 0
  out.set(json, 8);
  let at = 8 + json.length;
  for (const v of values) {
    out.set(toLittleEndianBytes(v), at);
    at += v.length * 4;
  }
  return out;
}

/**
 * The model in a safetensors file written by `safetensorsFromModel` or by PyTorch from one (same
 * names, shapes, F32, and our `__metadata__`). Every problem is a UserError naming `where`.
 * The meta has no weightsSha256: saveModel computes the new weights file's.
 */
export function modelFromSafetensors(bytes: Uint8Array, where: string): SavedModel {
  const bad = (msg: string) => new UserError(`${where}: ${msg}`);
  const notSafetensors = 'not a safetensors file';
  if (bytes.length < 8) throw bad(`${notSafetensors} (${bytes.length} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getUint32(0, true);
  if (dv.getUint32(4, true) !== 0 || n > MAX_HEADER_BYTES || 8 + n > bytes.length) {
    throw bad(`${notSafetensors} (its header length does not fit the file)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw bad(`${notSafetensors} (its header is not JSON)`);
  }
  if (!isObject(header)) throw bad(`${notSafetensors} (its header is not a JSON object)`);

  const md = header.__metadata__;
  const metaText = isObject(md) ? md[SAFETENSORS_META_KEY] : undefined;
  if (typeof metaText !== 'string') {
    throw bad(
      `not a charlstm export: its __metadata__ has no "${SAFETENSORS_META_KEY}" entry (the ` +
        `vocabulary and settings; keep the __metadata__ of the exported file when saving it again)`,
    );
  }
  let metaJson: unknown;
  try {
    metaJson = JSON.parse(metaText);
  } catch {
    throw bad(`__metadata__ "${SAFETENSORS_META_KEY}" is not JSON`);
  }
  const meta = parseMeta(metaJson, `${where} (__metadata__ "${SAFETENSORS_META_KEY}")`);
  const shape: ModelShape = {
    vocabSize: meta.vocab.length,
    units: meta.units,
    ...(meta.layers !== undefined && { layers: meta.layers }),
  };

  const expected = torchTensors(shape);
  const names = new Set(expected.map((t) => t.name));
  for (const key of Object.keys(header)) {
    if (key !== '__metadata__' && !names.has(key)) {
      throw bad(
        `unexpected tensor ${show(key)}; a model of V=${shape.vocabSize}, H=${shape.units}, ` +
          `L=${layerCount(shape)} has ${expected.map((t) => t.name).join(', ')}`,
      );
    }
  }
  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  const tensors = new Map<string, Float32Array>();
  for (const t of expected) {
    const info = header[t.name];
    if (!isObject(info)) throw bad(`tensor ${show(t.name)} is missing`);
    if (info.dtype !== 'F32') {
      throw bad(`tensor ${show(t.name)} has dtype ${show(info.dtype)}; charlstm imports F32 only`);
    }
    const s = info.shape;
    if (!Array.isArray(s) || s.length !== t.shape.length || s.some((d, i) => d !== t.shape[i])) {
      throw bad(
        `tensor ${show(t.name)} has shape ${JSON.stringify(s)}, expected ${JSON.stringify(t.shape)} ` +
          `for V=${shape.vocabSize}, H=${shape.units}, L=${layerCount(shape)}`,
      );
    }
    const size = t.shape.reduce((a, b) => a * b, 1) * 4;
    const off = info.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      off[1] - off[0] !== size ||
      off[1] > dataLength
    ) {
      throw bad(
        `tensor ${show(t.name)} has data_offsets ${JSON.stringify(off)}: expected ${size} bytes ` +
          `within the file's ${dataLength} bytes of data`,
      );
    }
    const begin = dataStart + (off[0] as number);
    tensors.set(t.name, fromLittleEndianBytes(bytes.subarray(begin, begin + size)));
  }

  const { vocabSize: V, units: H } = shape;
  const tensor = (name: string) => tensors.get(name)!;
  const params = new Parameters(shape);
  params.lstm.forEach((w, k) => {
    w.kernel.set(transpose(tensor(`lstm.weight_ih_l${k}`), 4 * H, k === 0 ? V : H));
    w.recurrentKernel.set(transpose(tensor(`lstm.weight_hh_l${k}`), 4 * H, H));
    const ih = tensor(`lstm.bias_ih_l${k}`);
    const hh = tensor(`lstm.bias_hh_l${k}`);
    if (hh.every((x) => x === 0)) w.bias.set(ih);
    else for (let i = 0; i < ih.length; i++) w.bias[i] = ih[i]! + hh[i]!; // rounded to float32
  });
  params.denseKernel.set(transpose(tensor('dense.weight'), V, H));
  params.denseBias.set(tensor('dense.bias'));
  return { params, meta };
}

/**
 * The ModelMeta in `json`, with model.json's checks on it (parseModelJson): the weights manifest
 * it needs is the one the metadata itself implies, so only the metadata can fail.
 */
function parseMeta(json: unknown, where: string): ModelMeta {
  const md = isObject(json) ? json : {};
  const count = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : 1);
  const implied: ModelShape = {
    vocabSize: Array.isArray(md.vocab) ? Math.max(md.vocab.length, 1) : 1,
    units: count(md.units),
    layers: count(md.layers),
  };
  const { meta } = parseModelJson(
    {
      userDefinedMetadata: json,
      weightsManifest: [{ paths: ['weights.bin'], weights: weightSpecs(implied) }],
    },
    where,
  );
  delete meta.weightsSha256; // a checksum of some other file (ours carry none)
  return meta;
}
