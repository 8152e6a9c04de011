import type { ModelShape } from '../model/params.ts';

// The engine's vocabulary, shared by the kernels' loader, the cores, the shards and both gradient
// engines: which kernels run, what one training batch is, what a gradient engine does. Shapes use
// the letters of the rest of the engine: n rows (windows), T steps, L layers, H units.

/** Which kernels run the model: the WebAssembly module, or the native addon (AVX2/FMA, x86-64). */
export type EngineKind = 'wasm' | 'native';

/**
 * The products' arithmetic in training: 'fp32', or 'bf16' (native engine with AVX512-BF16 only:
 * the matrix products take bfloat16 operands and accumulate in FP32; weights, optimizer state,
 * gates, cell state and losses stay FP32). Inference is always FP32.
 */
export type Precision = 'fp32' | 'bf16';

/** One training batch, as the trainer gathers it and every engine and core takes it. */
export interface Batch {
  x: Int32Array; // [rows×steps] token indices, one window per row
  y: Int32Array; // targets: [rows] when scoring 'last', [rows×steps] when scoring 'every'
  rows: number; // n
  steps: number; // T
  /** 'last' (the reference): the character after each window; 'every': every position's next */
  scoring: 'last' | 'every';
  /** dropout on every layer's output; masks are keyed by `key` and the batch row */
  dropout?: { rate: number; key: number };
  /** carried state, h and c each [rows][L][H]: read as the initial state, overwritten with the final */
  state?: { h: Float32Array; c: Float32Array };
}

/** Characters a batch scores: the mean loss and its gradient are over these. */
export function scoredCount(batch: Batch): number {
  return batch.scoring === 'every' ? batch.rows * batch.steps : batch.rows;
}

export interface GradientEngine {
  readonly threads: number;
  readonly engine: EngineKind;
  readonly precision: Precision;
  /**
   * Mean loss over the batch's scored characters; writes the gradient of that mean loss, in
   * Parameters.flat layout, to `out`.
   */
  lossAndGrads(params: Float32Array, batch: Batch, out: Float32Array): Promise<number>;
  close(): Promise<void>;
}

export interface EngineOptions {
  shape: ModelShape;
  maxBatch: number;
  maxT: number;
  threads: number; // 0: no worker threads; otherwise the number of worker threads
  /** 'wasm' (the default), 'native' (an error when unavailable) or 'auto' (native when available). */
  engine?: EngineKind | 'auto';
  /** 'fp32' (the default), 'bf16' (an error where it cannot run) or 'auto' (resolvePrecision) */
  precision?: Precision | 'auto';
  /** worker threads time each batch's parts (profile.ts; bench/threads.ts); off by default */
  profile?: boolean;
}

/** What one LstmCore is sized for. */
export interface CoreCapacity {
  maxB: number;
  maxT: number;
  /** Reserve the per-step storage needed by lossAndGrads (inference-only cores skip it). */
  training: boolean;
}
