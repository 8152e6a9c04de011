// The model's weights in Keras layout, all views into one flat Float32Array so that optimizers,
// gradient sums and checkpoints each work on a single buffer.
//
//   kernel          [V, 4H]  input weights, gate column blocks in the order i, f, c, o
//   recurrentKernel [H, 4H]  recurrent weights, same gate order
//   bias            [4H]
//   denseKernel     [H, V]
//   denseBias       [V]

export interface ModelShape {
  vocabSize: number; // V
  units: number; // H
}

export const WEIGHT_NAMES = [
  'kernel',
  'recurrentKernel',
  'bias',
  'denseKernel',
  'denseBias',
] as const;
export type WeightName = (typeof WEIGHT_NAMES)[number];

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

export class Parameters {
  readonly shape: ModelShape;
  readonly flat: Float32Array;
  readonly kernel: Float32Array;
  readonly recurrentKernel: Float32Array;
  readonly bias: Float32Array;
  readonly denseKernel: Float32Array;
  readonly denseBias: Float32Array;

  /** Zero-filled parameters, or views over `flat` when given (its length must match). */
  constructor(shape: ModelShape, flat?: Float32Array) {
    this.shape = { vocabSize: shape.vocabSize, units: shape.units };
    const size = Parameters.size(shape);
    if (flat && flat.length !== size) {
      throw new RangeError(`Parameters for V=${shape.vocabSize}, H=${shape.units} need ${size} floats, got ${flat.length}`);
    }
    this.flat = flat ?? new Float32Array(size);
    const shapes = weightShapes(shape);
    let offset = 0;
    const view = (name: WeightName): Float32Array => {
      const n = shapes[name].reduce((a, b) => a * b, 1);
      const v = this.flat.subarray(offset, offset + n);
      offset += n;
      return v;
    };
    this.kernel = view('kernel');
    this.recurrentKernel = view('recurrentKernel');
    this.bias = view('bias');
    this.denseKernel = view('denseKernel');
    this.denseBias = view('denseBias');
  }

  static size(shape: ModelShape): number {
    const { vocabSize: V, units: H } = shape;
    return V * 4 * H + H * 4 * H + 4 * H + H * V + V;
  }

  get(name: WeightName): Float32Array {
    return this[name];
  }

  clone(): Parameters {
    return new Parameters(this.shape, this.flat.slice());
  }
}
