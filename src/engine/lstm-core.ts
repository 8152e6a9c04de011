import { Parameters, type ModelShape } from '../model/params.ts';
import { Arena } from './arena.ts';
import { instantiate, type KernelExports } from './kernels.ts';

// One LSTM(H) + Dense(V, softmax) model on one wasm instance: forward and backward through time
// for a batch of up to maxB windows of up to maxT steps, plus single steps for generation.
// Everything above this file speaks in typed arrays; the buffers below live in wasm memory.
//
// Per-step storage kept for the backward pass (T steps, B rows, G = 4H):
//   act [T][B][G]   gate activations σ(i) σ(f) tanh(c̃) σ(o)
//   c   [T+1][B][H] cell states (c[0] = 0),  tc [T][B][H] = tanh(c[t+1]),  h [T+1][B][H] (h[0] = 0)
//   dz  [T][B][G]   gradient of the gate pre-activations, kept for one big dWh product at the end

export interface CoreCapacity {
  maxB: number;
  maxT: number;
  /** Reserve the per-step storage needed by lossAndGrads (inference-only cores skip it). */
  training: boolean;
}

export class LstmCore {
  readonly shape: ModelShape;
  readonly cap: CoreCapacity;
  private readonly k: KernelExports;
  private readonly V: number;
  private readonly H: number;
  private readonly G: number;
  private readonly P: number;
  // byte addresses
  private readonly pParams: number;
  private readonly pWx: number;
  private readonly pWh: number;
  private readonly pB: number;
  private readonly pWd: number;
  private readonly pBd: number;
  private readonly pWhT: number;
  private readonly pWhP: number; // Wh packed in column panels (packB) for the forward product
  private readonly pWhTP: number; // Whᵀ packed likewise for the backward product
  private readonly pWdT: number;
  private readonly pGrads: number;
  private readonly pTok: number;
  private readonly pY: number;
  private readonly pAct: number;
  private readonly pC: number;
  private readonly pTc: number;
  private readonly pH: number;
  private readonly pDz: number;
  private readonly pDh: number;
  private readonly pDc: number;
  private readonly pLogits: number;
  private readonly pDlogits: number;
  private readonly pDhAll: number; // [T][B][H] the head's gradient reaching every h (sequence mode)
  // views (valid after commit; memory never grows again)
  readonly params: Float32Array;
  readonly grads: Float32Array;
  private readonly tok: Int32Array;
  private readonly y: Int32Array;
  private readonly probs: Float32Array;
  private readonly hView: Float32Array;
  private readonly cView: Float32Array;
  private readonly mem: Uint8Array;

  constructor(shape: ModelShape, cap: CoreCapacity, kernels: KernelExports = instantiate()) {
    const { vocabSize: V, units: H } = shape;
    if (H % 4 !== 0) throw new RangeError(`units must be a multiple of 4, got ${H}`);
    this.shape = shape;
    this.cap = cap;
    this.k = kernels;
    this.V = V;
    this.H = H;
    this.G = 4 * H;
    this.P = Parameters.size(shape);
    const { maxB: B, maxT: T } = cap;
    const G = this.G;
    const a = new Arena(kernels);
    this.pParams = a.reserve(this.P);
    // the weights inside the flat parameter block, in Parameters' order
    this.pWx = this.pParams;
    this.pWh = this.pWx + V * G * 4;
    this.pB = this.pWh + H * G * 4;
    this.pWd = this.pB + G * 4;
    this.pBd = this.pWd + H * V * 4;
    this.pWhT = a.reserve(G * H);
    this.pWhP = a.reserve(H * G);
    this.pWhTP = a.reserve(G * H);
    this.pWdT = a.reserve(V * H);
    this.pGrads = a.reserve(this.P);
    this.pTok = a.reserve(B * T);
    const headRows = cap.training ? B * T : B; // training may score every step (sequence mode)
    this.pY = a.reserve(headRows);
    const steps = cap.training ? T : 1; // inference reuses one step's gate buffer
    this.pAct = a.reserve(steps * B * G);
    this.pDz = cap.training ? a.reserve(T * B * G) : 0;
    this.pC = a.reserve((cap.training ? T + 1 : 2) * B * H);
    this.pTc = a.reserve(steps * B * H);
    this.pH = a.reserve((cap.training ? T + 1 : 2) * B * H);
    this.pDh = a.reserve(B * H);
    this.pDc = a.reserve(B * H);
    this.pLogits = a.reserve(headRows * V);
    this.pDlogits = a.reserve(headRows * V);
    this.pDhAll = cap.training ? a.reserve(B * T * H) : 0;
    a.commit();
    this.params = a.f32(this.pParams, this.P);
    this.grads = a.f32(this.pGrads, this.P);
    this.tok = a.i32(this.pTok, B * T);
    this.y = a.i32(this.pY, headRows);
    this.probs = a.f32(this.pLogits, B * V);
    this.hView = a.f32(this.pH, 2 * B * H);
    this.cView = a.f32(this.pC, 2 * B * H);
    this.mem = new Uint8Array(kernels.memory.buffer);
  }

  /** Load weights (Keras layout, Parameters.flat order) and pack the transposed copies. */
  setParams(flat: Float32Array): void {
    if (flat.length !== this.P) throw new RangeError(`expected ${this.P} parameters, got ${flat.length}`);
    this.params.set(flat);
    this.k.transpose(this.pWh, this.pWhT, this.H, this.G);
    this.k.packB(this.pWh, this.G, this.pWhP, this.H, this.G);
    this.k.packB(this.pWhT, this.H, this.pWhTP, this.G, this.H);
    this.k.transpose(this.pWd, this.pWdT, this.H, this.V);
  }

  private checkBatch(n: number, T: number): void {
    if (n < 1 || n > this.cap.maxB) throw new RangeError(`batch of ${n} outside 1..${this.cap.maxB}`);
    if (T < 1 || T > this.cap.maxT) throw new RangeError(`window of ${T} outside 1..${this.cap.maxT}`);
  }

  /**
   * Forward and backward for windows x [n×T]. Gradients of `scale · Σ loss` go to `this.grads`
   * (overwritten); returns Σ loss. With scale = 1/(number of scored characters in the whole batch)
   * this is the gradient of the batch-mean loss.
   *   everyStep = false (the reference): y [n], the character after each window, scored once.
   *   everyStep = true (sequence mode): y [n×T], the next character at every position, all scored.
   */
  lossAndGrads(x: Int32Array, y: Int32Array, n: number, T: number, scale: number, everyStep = false): number {
    if (!this.cap.training) throw new Error('this core was built for inference only');
    this.checkBatch(n, T);
    const { k, H, G, V } = this;
    this.tok.set(x.subarray(0, n * T));
    if (everyStep) {
      // head rows are ordered [t][b] like the stored states: transpose the targets
      for (let b = 0; b < n; b++) for (let t = 0; t < T; t++) this.y[t * n + b] = y[b * T + t]!;
    } else {
      this.y.set(y.subarray(0, n));
    }
    const BH = n * H * 4; // bytes of one [n×H] state
    const BG = n * G * 4; // bytes of one [n×G] gate block
    // ---- forward
    this.mem.fill(0, this.pC, this.pC + BH); // c[0] = 0
    this.mem.fill(0, this.pH, this.pH + BH); // h[0] = 0
    for (let t = 0; t < T; t++) {
      const z = this.pAct + t * BG;
      k.gatherRows(z, this.pWx, this.pB, this.pTok + t * 4, T, n, G);
      if (t > 0) k.gemmNNPacked(this.pH + t * BH, H, this.pWhP, this.pWh, G, z, G, n, G, H); // z += h[t]·Wh
      k.gatesForward(z, this.pC + t * BH, this.pC + (t + 1) * BH, this.pTc + t * BH, this.pH + (t + 1) * BH, n, H);
    }
    // the softmax head on the scored states: h[T] [n×H], or h[1..T] stacked [T·n×H]
    const rows = everyStep ? T * n : n;
    const hHead = everyStep ? this.pH + BH : this.pH + T * BH;
    this.mem.fill(0, this.pLogits, this.pLogits + rows * V * 4);
    k.gemmNN(hHead, H, this.pWd, V, this.pLogits, V, rows, V, H); // logits = h·Wd
    k.softmaxRows(this.pLogits, this.pBd, rows, V);
    const loss = k.crossEntropy(this.pLogits, this.pY, this.pDlogits, rows, V, scale);
    // ---- backward
    this.grads.fill(0);
    const gWx = this.pGrads;
    const gWh = gWx + V * G * 4;
    const gB = gWh + H * G * 4;
    const gWd = gB + G * 4;
    const gBd = gWd + H * V * 4;
    k.gemmTN(hHead, H, this.pDlogits, V, gWd, V, H, V, rows); // dWd = hᵀ·dlogits
    k.colSum(this.pDlogits, gBd, rows, V);
    // dh from the head: into dh directly (last step only) or into dhAll [T][n][H]
    const pHeadGrad = everyStep ? this.pDhAll : this.pDh;
    this.mem.fill(0, pHeadGrad, pHeadGrad + rows * H * 4);
    k.gemmNN(this.pDlogits, V, this.pWdT, H, pHeadGrad, H, rows, H, V); // dh = dlogits·Wdᵀ
    if (everyStep) this.mem.copyWithin(this.pDh, this.pDhAll + (T - 1) * BH, this.pDhAll + T * BH);
    this.mem.fill(0, this.pDc, this.pDc + BH);
    for (let t = T - 1; t >= 0; t--) {
      const dz = this.pDz + t * BG;
      k.gatesBackward(this.pAct + t * BG, this.pC + t * BH, this.pTc + t * BH, this.pDh, this.pDc, dz, n, H);
      k.scatterRows(gWx, gB, dz, this.pTok + t * 4, T, n, G);
      if (t > 0) {
        // dh reaching h[t] = (the head's gradient at step t-1, in sequence mode) + dz·Whᵀ
        if (everyStep) this.mem.copyWithin(this.pDh, this.pDhAll + (t - 1) * BH, this.pDhAll + t * BH);
        else this.mem.fill(0, this.pDh, this.pDh + BH);
        k.gemmNNPacked(dz, G, this.pWhTP, this.pWhT, H, this.pDh, H, n, H, G);
      }
    }
    // dWh = Σ_{t≥1} h[t]ᵀ·dz_t as one product over the stacked steps: [H × (T-1)n]·[(T-1)n × G]
    if (T > 1) k.gemmTN(this.pH + BH, H, this.pDz + BG, G, gWh, G, H, G, (T - 1) * n);
    return loss;
  }

  /**
   * Next-character probabilities after each of n windows x [n×T], from a zero state.
   * Returns a view [n×V] into wasm memory, valid until the next call.
   */
  predict(x: Int32Array, n: number, T: number): Float32Array {
    this.checkBatch(n, T);
    this.tok.set(x.subarray(0, n * T));
    this.resetState(n);
    for (let t = 0; t < T; t++) this.advance(this.pTok + t * 4, T, n);
    return this.headProbs(n);
  }

  /** Zero the carried state (h, c) of rows 0..n-1. */
  resetState(n = this.cap.maxB): void {
    this.hView.fill(0, 0, n * this.H);
    this.cView.fill(0, 0, n * this.H);
  }

  /**
   * Stateful generation: feed one token per row (tokens [n]), carry h and c, and return the
   * next-character probabilities [n×V] (a view, valid until the next call).
   */
  step(tokens: ArrayLike<number>, n: number): Float32Array {
    this.checkBatch(n, 1);
    for (let b = 0; b < n; b++) this.tok[b] = tokens[b]!;
    this.advance(this.pTok, 1, n);
    return this.headProbs(n);
  }

  /** The carried state, for saving or copying between rows: h then c, each [maxB×H] rows 0..n-1. */
  getState(n: number): { h: Float32Array; c: Float32Array } {
    return { h: this.hView.slice(0, n * this.H), c: this.cView.slice(0, n * this.H) };
  }

  setState(h: Float32Array, c: Float32Array): void {
    this.hView.set(h);
    this.cView.set(c);
  }

  // One recurrent step on the carried state (h and c live in slot 0 of their buffers; slot 1 is
  // scratch, copied back so the state never moves).
  private advance(tokPtr: number, tokStride: number, n: number): void {
    const { k, H, G } = this;
    const BH = n * H * 4;
    const slot = this.cap.maxB * H * 4;
    const z = this.pAct;
    k.gatherRows(z, this.pWx, this.pB, tokPtr, tokStride, n, G);
    k.gemmNNPacked(this.pH, H, this.pWhP, this.pWh, G, z, G, n, G, H);
    k.gatesForward(z, this.pC, this.pC + slot, this.pTc, this.pH + slot, n, H);
    this.mem.copyWithin(this.pC, this.pC + slot, this.pC + slot + BH);
    this.mem.copyWithin(this.pH, this.pH + slot, this.pH + slot + BH);
  }

  private headProbs(n: number): Float32Array {
    const { k, H, V } = this;
    this.mem.fill(0, this.pLogits, this.pLogits + n * V * 4);
    k.gemmNN(this.pH, H, this.pWd, V, this.pLogits, V, n, V, H);
    k.softmaxRows(this.pLogits, this.pBd, n, V);
    return this.probs.subarray(0, n * V);
  }
}
