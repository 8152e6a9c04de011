// A model as a standard ONNX file (`charlstm export --format onnx`), for ONNX Runtime and any other
// ONNX engine: opset 17, IR version 8, written by the small protobuf writer in protobuf.ts.
//
// The graph, for L layers of H units and a vocabulary of V characters:
//
//   ids     int64 [batch, seq]            character ids (the vocabulary's index order, in [0, V))
//   OneHot  (depth V, values [0, 1])   -> [batch, seq, V] float
//   Transpose (perm 1,0,2)             -> x0 [seq, batch, V]     (the LSTM operator's layout 0)
//   LSTM l  (W_l, R_l, B_l, hidden_size H; sigmoid, tanh, tanh, as Keras's LSTM)
//           layers below the top: Y [seq, 1, batch, H] -> Squeeze axis 1 -> x_{l+1}
//           the top layer: Y_h [1, batch, H]      -> Squeeze axis 0 -> h [batch, H]
//   Gemm    (h × dense kernel [H, V] + dense bias [V])
//   Softmax (last axis)                -> probs float [batch, V]
//
// Both batch and seq are dynamic; each row starts from the zero state, as CharModel.predictTokens
// does, so `probs` is the next-character distribution after each row's seq characters (the model
// was trained on windows of `maxlen`: feed at most that many, the last ones of a longer text).
//
// Weights. Keras's kernel [D, 4H] has its gate column blocks in the order i, f, c, o; the ONNX
// operator's W [1, 4H, D] has its gate row blocks in the order i, o, f, c: W is the kernel
// transposed with its blocks reordered, R likewise from the recurrent kernel [H, 4H], and B
// [1, 8H] is Keras's one bias (reordered) followed by 4H zeros for the recurrent bias, which
// Keras does not have. The charlstm metadata (vocabulary, settings: the ModelMeta as JSON) is the
// model's metadata_props entry "charlstm". Pure (no Node APIs).

import type { Parameters } from '../model/params.ts';
import { layerCount } from '../model/params.ts';
import { CHARLSTM_VERSION, toLittleEndianBytes, type ModelMeta } from './model-json.ts';
import { ProtoWriter } from './protobuf.ts';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;
/** The names of the graph's input and output, and the metadata_props key of the ModelMeta. */
export const ONNX_INPUT = 'ids';
export const ONNX_OUTPUT = 'probs';
export const ONNX_META_KEY = 'charlstm';

// onnx.proto's field numbers, for the messages written here
const MODEL = { irVersion: 1, producerName: 2, producerVersion: 3, docString: 6, graph: 7 };
const MODEL_OPSET_IMPORT = 8;
const MODEL_METADATA_PROPS = 14;
const OPSET = { domain: 1, version: 2 };
const ENTRY = { key: 1, value: 2 }; // StringStringEntryProto
const GRAPH = { node: 1, name: 2, initializer: 5, docString: 10, input: 11, output: 12 };
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5 };
const ATTRIBUTE = { name: 1, i: 3, ints: 8, type: 20 };
const ATTRIBUTE_TYPE = { INT: 2, INTS: 7 };
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9 };
const DATA_TYPE = { FLOAT: 1, INT64: 7 };
const VALUE_INFO = { name: 1, type: 2 };
const TYPE_TENSOR = 1; // TypeProto.tensor_type
const TENSOR_TYPE = { elemType: 1, shape: 2 };
const SHAPE_DIM = 1; // TensorShapeProto.dim
const DIMENSION = { value: 1, param: 2 };

/** For each ONNX gate block (i, o, f, c), the Keras block (i, f, c, o) it comes from. */
const KERAS_BLOCK_OF_ONNX = [0, 3, 1, 2] as const;

/**
 * Keras's [D, 4H] (gates i, f, c, o in column blocks) as ONNX's [4H, D] (gates i, o, f, c in row
 * blocks): a transpose with the blocks reordered.
 */
export function onnxGateMatrix(keras: Float32Array, D: number, H: number): Float32Array {
  const out = new Float32Array(4 * H * D);
  for (let g = 0; g < 4; g++) {
    const from = KERAS_BLOCK_OF_ONNX[g]! * H;
    for (let j = 0; j < H; j++) {
      const row = (g * H + j) * D;
      for (let d = 0; d < D; d++) out[row + d] = keras[d * 4 * H + from + j]!;
    }
  }
  return out;
}

/** B [8H]: Keras's bias [4H] in ONNX's gate order, then zeros for the recurrent bias. */
export function onnxGateBias(keras: Float32Array, H: number): Float32Array {
  const out = new Float32Array(8 * H);
  for (let g = 0; g < 4; g++) {
    out.set(keras.subarray(KERAS_BLOCK_OF_ONNX[g]! * H, (KERAS_BLOCK_OF_ONNX[g]! + 1) * H), g * H);
  }
  return out;
}

function floatTensor(name: string, dims: number[], data: Float32Array): ProtoWriter {
  return new ProtoWriter()
    .ints(TENSOR.dims, dims)
    .int(TENSOR.dataType, DATA_TYPE.FLOAT)
    .string(TENSOR.name, name)
    .bytes(TENSOR.rawData, toLittleEndianBytes(data));
}

function int64Tensor(name: string, values: number[]): ProtoWriter {
  const raw = new Uint8Array(values.length * 8);
  const dv = new DataView(raw.buffer);
  values.forEach((v, i) => dv.setBigInt64(i * 8, BigInt(v), true));
  return new ProtoWriter()
    .ints(TENSOR.dims, [values.length])
    .int(TENSOR.dataType, DATA_TYPE.INT64)
    .string(TENSOR.name, name)
    .bytes(TENSOR.rawData, raw);
}

type Attribute = { name: string } & ({ int: number } | { ints: number[] });

function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Attribute[] = [],
): ProtoWriter {
  const w = new ProtoWriter()
    .strings(NODE.input, inputs)
    .strings(NODE.output, outputs)
    .string(NODE.name, `${opType}_${outputs.find((o) => o !== '')}`)
    .string(NODE.opType, opType);
  for (const a of attributes) {
    const attr = new ProtoWriter().string(ATTRIBUTE.name, a.name);
    if ('int' in a) attr.int(ATTRIBUTE.i, a.int).int(ATTRIBUTE.type, ATTRIBUTE_TYPE.INT);
    else attr.ints(ATTRIBUTE.ints, a.ints).int(ATTRIBUTE.type, ATTRIBUTE_TYPE.INTS);
    w.message(NODE.attribute, attr);
  }
  return w;
}

/** A graph input or output: its element type and dims (a number, or a symbolic name). */
function valueInfo(name: string, elemType: number, dims: (number | string)[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(DIMENSION.value, d);
    else dim.string(DIMENSION.param, d);
    shape.message(SHAPE_DIM, dim);
  }
  const tensorType = new ProtoWriter()
    .int(TENSOR_TYPE.elemType, elemType)
    .message(TENSOR_TYPE.shape, shape);
  return new ProtoWriter()
    .string(VALUE_INFO.name, name)
    .message(VALUE_INFO.type, new ProtoWriter().message(TYPE_TENSOR, tensorType));
}

/** The ONNX file (ModelProto bytes) of a model; see the top of this file for the graph. */
export function onnxModel(params: Parameters, meta: ModelMeta): Uint8Array {
  const { vocabSize: V, units: H } = params.shape;
  const L = layerCount(params.shape);
  const graph = new ProtoWriter()
    .string(GRAPH.name, 'charlstm')
    .string(
      GRAPH.docString,
      `Next-character probabilities of a charlstm model (${L} LSTM layer(s) of ${H} units, ` +
        `${V} characters): input "${ONNX_INPUT}" int64 [batch, seq] character ids, output ` +
        `"${ONNX_OUTPUT}" float [batch, ${V}]; the vocabulary is in the metadata "${ONNX_META_KEY}".`,
    );
  const nodes: ProtoWriter[] = [
    node('OneHot', [ONNX_INPUT, 'depth', 'onehot_values'], ['onehot']), // axis -1 by default
    node('Transpose', ['onehot'], ['x0'], [{ name: 'perm', ints: [1, 0, 2] }]),
  ];
  const initializers: ProtoWriter[] = [
    int64Tensor('depth', [V]),
    floatTensor('onehot_values', [2], Float32Array.of(0, 1)),
    int64Tensor('axis0', [0]),
    ...(L > 1 ? [int64Tensor('axis1', [1])] : []), // an unused initializer draws a warning
  ];
  params.lstm.forEach((w, l) => {
    const D = l === 0 ? V : H;
    initializers.push(
      floatTensor(`W${l}`, [1, 4 * H, D], onnxGateMatrix(w.kernel, D, H)),
      floatTensor(`R${l}`, [1, 4 * H, H], onnxGateMatrix(w.recurrentKernel, H, H)),
      floatTensor(`B${l}`, [1, 8 * H], onnxGateBias(w.bias, H)),
    );
    const inputs = [`x${l}`, `W${l}`, `R${l}`, `B${l}`];
    const hidden = { name: 'hidden_size', int: H };
    if (l < L - 1) {
      nodes.push(node('LSTM', inputs, [`y${l}`], [hidden]));
      nodes.push(node('Squeeze', [`y${l}`, 'axis1'], [`x${l + 1}`]));
    } else {
      nodes.push(node('LSTM', inputs, ['', `h${l}`], [hidden])); // Y unused: only Y_h
      nodes.push(node('Squeeze', [`h${l}`, 'axis0'], ['h']));
    }
  });
  initializers.push(
    floatTensor('dense_kernel', [H, V], params.denseKernel),
    floatTensor('dense_bias', [V], params.denseBias),
  );
  nodes.push(node('Gemm', ['h', 'dense_kernel', 'dense_bias'], ['logits']));
  nodes.push(node('Softmax', ['logits'], [ONNX_OUTPUT])); // axis -1 by default (opset 13+)

  for (const n of nodes) graph.message(GRAPH.node, n);
  for (const t of initializers) graph.message(GRAPH.initializer, t);
  graph.message(GRAPH.input, valueInfo(ONNX_INPUT, DATA_TYPE.INT64, ['batch', 'seq']));
  graph.message(GRAPH.output, valueInfo(ONNX_OUTPUT, DATA_TYPE.FLOAT, ['batch', V]));

  return new ProtoWriter()
    .int(MODEL.irVersion, ONNX_IR_VERSION)
    .string(MODEL.producerName, 'charlstm')
    .string(MODEL.producerVersion, CHARLSTM_VERSION)
    .string(MODEL.docString, 'A charlstm character-level LSTM language model.')
    .message(MODEL.graph, graph)
    .message(
      MODEL_OPSET_IMPORT,
      new ProtoWriter().string(OPSET.domain, '').int(OPSET.version, ONNX_OPSET),
    )
    .message(
      MODEL_METADATA_PROPS,
      new ProtoWriter().string(ENTRY.key, ONNX_META_KEY).string(ENTRY.value, JSON.stringify(meta)),
    )
    .finish();
}
