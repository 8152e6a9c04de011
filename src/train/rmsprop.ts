// RMSprop exactly as Keras writes it (REFERENCE.md):
//   ms ← rho·ms + (1 − rho)·g²
//   w  ← w − lr · g / (sqrt(ms) + eps)
// (TF.js's own RMSprop puts eps inside the square root; we follow Keras, whose numbers we reproduce.)

export interface RmsPropConfig {
  learningRate: number;
  rho: number;
  epsilon: number;
}

/** What the training loop needs of an optimizer (RMSprop, the reference's, or Adam). */
export interface Optimizer {
  readonly kind: 'rmsprop' | 'adam';
  /** all of its per-parameter state in one array (a whole multiple of the parameter count) */
  readonly state: Float32Array;
  iterations: number;
  /** One update of `w` in place with gradient `g` at learning rate `lr`. */
  step(w: Float32Array, g: Float32Array, lr: number): void;
}

export interface RmsPropState {
  ms: Float32Array;
  iterations: number;
}

export class RmsProp implements Optimizer {
  readonly kind = 'rmsprop';
  readonly config: RmsPropConfig;
  readonly ms: Float32Array; // running mean of g², one per parameter
  iterations = 0;

  constructor(size: number, config: RmsPropConfig) {
    this.config = { ...config };
    this.ms = new Float32Array(size);
  }

  /** One update of `w` in place with gradient `g`; `lr` overrides the configured rate (schedules). */
  step(w: Float32Array, g: Float32Array, lr = this.config.learningRate): void {
    const { rho, epsilon } = this.config;
    const ms = this.ms;
    const keep = rho;
    const add = 1 - rho;
    for (let i = 0; i < w.length; i++) {
      const gi = g[i]!;
      const m = keep * ms[i]! + add * gi * gi;
      ms[i] = m;
      w[i] = w[i]! - (lr * gi) / (Math.sqrt(ms[i]!) + epsilon);
    }
    this.iterations++;
  }

  get state(): Float32Array {
    return this.ms;
  }

  getState(): RmsPropState {
    return { ms: this.ms.slice(), iterations: this.iterations };
  }

  setState(state: RmsPropState): void {
    if (state.ms.length !== this.ms.length) {
      throw new RangeError(
        `optimizer state has ${state.ms.length} entries, the model ${this.ms.length}`,
      );
    }
    this.ms.set(state.ms);
    this.iterations = state.iterations;
  }
}
