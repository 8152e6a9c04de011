import type { Rng } from '../sampling/rng.ts';
import { Parameters, type ModelShape } from './params.ts';

// Keras's initialisers for LSTM + Dense, drawn from our seeded generator in a fixed order
// (per LSTM layer: kernel, recurrent kernel; then the dense kernel), so a seed names one starting
// point. A one-layer model draws exactly what it drew before layers existed.

/** glorot_uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) for a [fanIn × fanOut] matrix. */
export function glorotUniform(out: Float32Array, fanIn: number, fanOut: number, rng: Rng): void {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  for (let i = 0; i < out.length; i++) out[i] = rng.uniform(-limit, limit);
}

/**
 * orthogonal (gain 1) for a [rows × cols] matrix, as Keras does it: QR of a standard normal
 * matrix of shape [max × min], signs fixed so diag(R) > 0, transposed when rows < cols.
 * Modified Gram–Schmidt in float64 gives the same Q (with positive diag(R)).
 */
export function orthogonal(out: Float32Array, rows: number, cols: number, rng: Rng): void {
  const n = Math.max(rows, cols); // length of each column of the tall matrix
  const m = Math.min(rows, cols); // number of columns to orthonormalise
  const a = new Float64Array(n * m); // row-major [n × m]
  for (let i = 0; i < a.length; i++) a[i] = rng.normal();
  for (let j = 0; j < m; j++) {
    for (let p = 0; p < j; p++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += a[i * m + p]! * a[i * m + j]!;
      for (let i = 0; i < n; i++) a[i * m + j]! -= dot * a[i * m + p]!;
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += a[i * m + j]! ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) a[i * m + j]! /= norm;
  }
  // q is [n × m]; the weight is q itself when rows >= cols, else qᵀ
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = rows >= cols ? a[r * m + c]! : a[c * m + r]!;
    }
  }
}

/** Fresh parameters: glorot kernels, orthogonal recurrent kernel, zero biases but forget gate 1. */
export function initParameters(shape: ModelShape, rng: Rng): Parameters {
  const { vocabSize: V, units: H } = shape;
  const p = new Parameters(shape);
  p.lstm.forEach((w, l) => {
    glorotUniform(w.kernel, l === 0 ? V : H, 4 * H, rng);
    orthogonal(w.recurrentKernel, H, 4 * H, rng);
    w.bias.fill(0);
    w.bias.fill(1, H, 2 * H); // unit_forget_bias
  });
  glorotUniform(p.denseKernel, H, V, rng);
  p.denseBias.fill(0);
  return p;
}
