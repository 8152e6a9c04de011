// Adam as Keras writes it (tf.keras.optimizers.Adam, the TF kernel ApplyAdam):
//   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
//   w ← w − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · m / (√v + ε)
// Its state is m and v side by side in one array (what checkpoints store).

import type { Optimizer } from './rmsprop.ts';

export interface AdamConfig {
  learningRate: number;
  beta1?: number; // 0.9
  beta2?: number; // 0.999
  epsilon: number;
}

export class Adam implements Optimizer {
  readonly kind = 'adam';
  readonly state: Float32Array; // [m | v]
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  iterations = 0;

  constructor(size: number, config: AdamConfig) {
    this.state = new Float32Array(2 * size);
    this.m = this.state.subarray(0, size);
    this.v = this.state.subarray(size);
    this.beta1 = config.beta1 ?? 0.9;
    this.beta2 = config.beta2 ?? 0.999;
    this.epsilon = config.epsilon;
  }

  step(w: Float32Array, g: Float32Array, lr: number): void {
    const { m, v, beta1, beta2, epsilon } = this;
    const t = this.iterations + 1;
    const lrT = (lr * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    for (let i = 0; i < w.length; i++) {
      const gi = g[i]!;
      m[i] = beta1 * m[i]! + (1 - beta1) * gi;
      v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
      w[i] = w[i]! - (lrT * m[i]!) / (Math.sqrt(v[i]!) + epsilon);
    }
    this.iterations = t;
  }
}
