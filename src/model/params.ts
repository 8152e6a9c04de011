// The model's weights in Keras layout, all views into one flat Float32Array so that optimizers,
// gradient sums and checkpoints each work on a single buffer. For L stacked LSTM layers, in order:
//
//   per layer l = 0..L-1 (Keras names lstm, lstm_1, lstm_2, ...):
//     kernel          [D_l, 4H]  input weights (D_0 = V for the one-hot characters, else H),
//                                gate column blocks in the order i, f, c, o
//     recurrentKernel [H, 4H]    recurrent weights, same gate order
//     bias            [4H]
//   denseKernel     [H, V]
//   denseBias       [V]

export interface ModelShape {
  vocabSize: number; // V
  units: number; // H
  /** stacked LSTM layers (default 1) */
  layers?: number;
}

/** The weights of one layer kind, as Keras names them; LSTM layers repeat the first three. */
export const WEIGHT_NAMES = [
  'kernel',
  'recurrentKernel',
  'bias',
  'denseKernel',
  'denseBias',
] as const;
export type WeightName = (typeof WEIGHT_NAMES)[number];

export function layerCount(shape: ModelShape): number {
  return shape.layers ?? 1;
}

/** Floats of one row's LSTM state, h or c alike: L × H (layer by layer, bottom first). */
export function stateSize(shape: ModelShape): number {
  return layerCount(shape) * shape.units;
}

/** One weight of the model, in file order. */
export interface WeightEntry {
  /** Keras layer name: "lstm", "lstm_1", ..., "dense" */
  layer: string;
  /** index of the LSTM layer (undefined for the dense head) */
  lstm?: number;
  name: WeightName;
  shape: number[];
}

export function lstmLayerName(l: number): string {
  return l === 0 ? 'lstm' : `lstm_${l}`;
}

export function weightEntries(shape: ModelShape): WeightEntry[] {
  const { vocabSize: V, units: H } = shape;
  const out: WeightEntry[] = [];
  for (let l = 0; l < layerCount(shape); l++) {
    const layer = lstmLayerName(l);
    out.push({ layer, lstm: l, name: 'kernel', shape: [l === 0 ? V : H, 4 * H] });
    out.push({ layer, lstm: l, name: 'recurrentKernel', shape: [H, 4 * H] });
    out.push({ layer, lstm: l, name: 'bias', shape: [4 * H] });
  }
  out.push({ layer: 'dense', name: 'denseKernel', shape: [H, V] });
  out.push({ layer: 'dense', name: 'denseBias', shape: [V] });
  return out;
}

/** The shapes of the first LSTM layer's and the head's weights. */
export function weightShapes(shape: ModelShape): Record<WeightName, number[]> {
  const { vocabSize: V, units: H } = shape;
  return {
    kernel: [V, 4 * H],
    recurrentKernel: [H, 4 * H],
    bias: [4 * H],
    denseKernel: [H, V],
    denseBias: [V],
  };
}

export interface LstmWeights {
  kernel: Float32Array;
  recurrentKernel: Float32Array;
  bias: Float32Array;
}

export class Parameters {
  readonly shape: ModelShape;
  readonly flat: Float32Array;
  /** the LSTM layers, bottom first */
  readonly lstm: LstmWeights[];
  /** the first LSTM layer's weights (the only layer of the reference model) */
  readonly kernel: Float32Array;
  readonly recurrentKernel: Float32Array;
  readonly bias: Float32Array;
  readonly denseKernel: Float32Array;
  readonly denseBias: Float32Array;

  /** Zero-filled parameters, or views over `flat` when given (its length must match). */
  constructor(shape: ModelShape, flat?: Float32Array) {
    const L = layerCount(shape);
    if (!(Number.isInteger(L) && L >= 1))
      throw new RangeError(`layers must be a positive integer, got ${L}`);
    this.shape = { vocabSize: shape.vocabSize, units: shape.units, ...(L > 1 && { layers: L }) };
    const size = Parameters.size(shape);
    if (flat && flat.length !== size) {
      throw new RangeError(
        `Parameters for V=${shape.vocabSize}, H=${shape.units}, L=${L} need ${size} floats, got ${flat.length}`,
      );
    }
    this.flat = flat ?? new Float32Array(size);
    let offset = 0;
    const views = weightEntries(shape).map((e) => {
      const n = e.shape.reduce((a, b) => a * b, 1);
      const v = this.flat.subarray(offset, offset + n);
      offset += n;
      return v;
    });
    this.lstm = Array.from({ length: L }, (_, l) => ({
      kernel: views[3 * l]!,
      recurrentKernel: views[3 * l + 1]!,
      bias: views[3 * l + 2]!,
    }));
    ({
      kernel: this.kernel,
      recurrentKernel: this.recurrentKernel,
      bias: this.bias,
    } = this.lstm[0]!);
    this.denseKernel = views[3 * L]!;
    this.denseBias = views[3 * L + 1]!;
  }

  static size(shape: ModelShape): number {
    const { vocabSize: V, units: H } = shape;
    const L = layerCount(shape);
    return V * 4 * H + (L - 1) * H * 4 * H + L * (H * 4 * H + 4 * H) + H * V + V;
  }

  /** A view of one weight of the first LSTM layer or of the head. */
  get(name: WeightName): Float32Array {
    return this[name];
  }

  /** The views in file order, matching weightEntries(). */
  views(): Float32Array[] {
    return [
      ...this.lstm.flatMap((w) => [w.kernel, w.recurrentKernel, w.bias]),
      this.denseKernel,
      this.denseBias,
    ];
  }

  clone(): Parameters {
    return new Parameters(this.shape, this.flat.slice());
  }
}
