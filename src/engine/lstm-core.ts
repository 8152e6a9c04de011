import { Parameters, layerCount, type ModelShape } from '../model/params.ts';
import { Arena } from './arena.ts';
import { dropoutMask } from './dropout.ts';
import { instantiate, type KernelExports } from './kernels.ts';
import { checkCoreFits, coreBytes } from './memory.ts';
import type { Batch, CoreCapacity } from './types.ts';

// L stacked LSTM(H) layers + Dense(V, softmax) on one kernel instance (wasm or native): forward
// and backward through time for a batch of up to maxB windows of up to maxT steps, plus single
// steps for generation. Everything above this file speaks in typed arrays; the buffers below live
// in the kernel instance's memory.
//
// Per layer l, per-step storage kept for the backward pass (T steps, B rows, G = 4H):
//   act[l] [T][B][G]   gate activations σ(i) σ(f) tanh(c̃) σ(o)
//   c[l] [T+1][B][H]   cell states (c[0] = the initial state, zero unless carried),
//   tc[l] [T][B][H] = tanh(c[t+1]),  h[l] [T+1][B][H] (h[0] likewise)
//   out[l] [T][B][H]   what layer l passes up (to layer l+1 or the head): h[l][1..T], times the
//                      dropout mask when training with dropout (inverted dropout: kept units are
//                      scaled by 1/(1-rate), so inference is the identity)
// Shared by all layers:
//   dz [T][B][G]       gradient of one layer's gate pre-activations, for its big weight products
//   ext [T][B][H]      gradient reaching one layer's outputs from above (head or next layer)
//
// Layer 0's input product is a row gather (one-hot characters); layer l ≥ 1's is one
// [T·B × H]·[H × G] product over all steps at once, before its recurrence.

/** Rows per call in products over all steps at once (see gemmRows). */
const ROW_BLOCK = 64;

/**
 * One training pass of a core: a Batch, or one shard's rows of it (see shards.ts), and the scale
 * of its gradient. Dropout masks are keyed by the row within the whole batch: this shard's first
 * row is row0.
 */
export interface CoreBatch extends Omit<Batch, 'dropout'> {
  /** the gradient is of scale · Σ loss: 1/(scored characters of the whole batch) for its mean */
  scale: number;
  dropout?: { rate: number; key: number; row0: number };
}

interface LayerBuffers {
  pWx: number; // kernel [D×G] inside the parameter block
  pWh: number;
  pB: number;
  pWxP: number; // layer ≥ 1: kernel packed (packB) for the input product
  pWxT: number; // layer ≥ 1: kernelᵀ [G×H] and its packing, for the input gradient
  pWxTP: number;
  pWhT: number;
  pWhP: number; // Wh packed in column panels (packB) for the forward product
  pWhTP: number; // Whᵀ packed likewise for the backward product
  gWx: number; // gradient addresses
  gWh: number;
  gB: number;
  pAct: number;
  pC: number;
  pTc: number;
  pH: number;
  pOut: number; // out[l] when dropout copies it (training cores only)
  pMask: number; // [T][B][H] this pass's dropout mask of layer l's output (training cores only)
}

export class LstmCore {
  readonly shape: ModelShape;
  readonly cap: CoreCapacity;
  private readonly k: KernelExports;
  private readonly V: number;
  private readonly H: number;
  private readonly G: number;
  private readonly L: number;
  private readonly P: number;
  private readonly layers: LayerBuffers[];
  // byte addresses
  private readonly pParams: number;
  private readonly pWd: number;
  private readonly pBd: number;
  private readonly pWdT: number;
  private readonly pGrads: number;
  private readonly gWd: number;
  private readonly gBd: number;
  private readonly pTok: number;
  private readonly pY: number;
  private readonly pDz: number;
  private readonly pDh: number;
  private readonly pDc: number;
  private readonly pLogits: number;
  private readonly pDlogits: number;
  private readonly pExt: number;
  // views (valid after commit; memory never grows again)
  readonly params: Float32Array;
  readonly grads: Float32Array;
  private readonly tok: Int32Array;
  private readonly y: Int32Array;
  private readonly probs: Float32Array;
  private readonly mem: Uint8Array;
  private readonly f32: Float32Array; // all of memory, indexed by byte address / 4

  constructor(shape: ModelShape, cap: CoreCapacity, kernels: KernelExports = instantiate()) {
    const { vocabSize: V, units: H } = shape;
    if (H % 4 !== 0) throw new RangeError(`units must be a multiple of 4, got ${H}`);
    checkCoreFits(shape, cap); // before any memory is taken (callers check with better words)
    this.shape = shape;
    this.cap = cap;
    this.k = kernels;
    this.V = V;
    this.H = H;
    this.G = 4 * H;
    this.L = layerCount(shape);
    this.P = Parameters.size(shape);
    const { maxB: B, maxT: T } = cap;
    const { G, L } = this;
    const a = new Arena(kernels);
    this.pParams = a.reserve(this.P);
    this.pGrads = a.reserve(this.P);
    const steps = cap.training ? T : 1; // inference reuses one step's gate buffer
    const slots = cap.training ? T + 1 : 2; // states kept: all steps, or the carried one + scratch
    // weights inside the flat parameter block, in Parameters' order; gradients likewise
    let off = 0;
    this.layers = [];
    for (let l = 0; l < L; l++) {
      const D = l === 0 ? V : H;
      const pWx = off;
      const pWh = pWx + D * G * 4;
      const pB = pWh + H * G * 4;
      off = pB + G * 4;
      this.layers.push({
        pWx: this.pParams + pWx,
        pWh: this.pParams + pWh,
        pB: this.pParams + pB,
        gWx: this.pGrads + pWx,
        gWh: this.pGrads + pWh,
        gB: this.pGrads + pB,
        pWxP: l > 0 ? a.reserve(H * G) : 0,
        pWxT: l > 0 ? a.reserve(G * H) : 0,
        pWxTP: l > 0 ? a.reserve(G * H) : 0,
        pWhT: a.reserve(G * H),
        pWhP: a.reserve(H * G),
        pWhTP: a.reserve(G * H),
        pAct: a.reserve(steps * B * G),
        pC: a.reserve(slots * B * H),
        pTc: a.reserve(steps * B * H),
        pH: a.reserve(slots * B * H),
        pOut: cap.training ? a.reserve(T * B * H) : 0,
        pMask: cap.training ? a.reserve(T * B * H) : 0,
      });
    }
    this.pWd = this.pParams + off;
    this.pBd = this.pWd + H * V * 4;
    this.gWd = this.pGrads + off;
    this.gBd = this.gWd + H * V * 4;
    this.pWdT = a.reserve(V * H);
    this.pTok = a.reserve(B * T);
    const headRows = cap.training ? B * T : B; // training may score every step (sequence mode)
    this.pY = a.reserve(headRows);
    this.pDz = cap.training ? a.reserve(T * B * G) : 0;
    this.pDh = a.reserve(B * H);
    this.pDc = a.reserve(B * H);
    this.pLogits = a.reserve(headRows * V);
    this.pDlogits = a.reserve(headRows * V);
    this.pExt = cap.training ? a.reserve(B * T * H) : 0;
    if (a.bytes !== coreBytes(shape, cap)) {
      throw new Error(
        `LstmCore laid out ${a.bytes} bytes, coreBytes counts ${coreBytes(shape, cap)}`,
      );
    }
    a.commit();
    this.params = a.f32(this.pParams, this.P);
    this.grads = a.f32(this.pGrads, this.P);
    this.tok = a.i32(this.pTok, B * T);
    this.y = a.i32(this.pY, headRows);
    this.probs = a.f32(this.pLogits, B * V);
    this.mem = new Uint8Array(kernels.memory.buffer);
    this.f32 = new Float32Array(kernels.memory.buffer);
  }

  /** Load weights (Keras layout, Parameters.flat order) and pack the transposed copies. */
  setParams(flat: Float32Array): void {
    if (flat.length !== this.P)
      throw new RangeError(`expected ${this.P} parameters, got ${flat.length}`);
    this.params.set(flat);
    const { k, H, G } = this;
    for (const [l, lb] of this.layers.entries()) {
      k.transpose(lb.pWh, lb.pWhT, H, G);
      k.packB(lb.pWh, G, lb.pWhP, H, G);
      k.packB(lb.pWhT, H, lb.pWhTP, G, H);
      if (l > 0) {
        k.packB(lb.pWx, G, lb.pWxP, H, G);
        k.transpose(lb.pWx, lb.pWxT, H, G);
        k.packB(lb.pWxT, H, lb.pWxTP, G, H);
      }
    }
    k.transpose(this.pWd, this.pWdT, H, this.V);
  }

  private checkBatch(n: number, T: number): void {
    if (n < 1 || n > this.cap.maxB)
      throw new RangeError(`batch of ${n} outside 1..${this.cap.maxB}`);
    if (T < 1 || T > this.cap.maxT)
      throw new RangeError(`window of ${T} outside 1..${this.cap.maxT}`);
  }

  /**
   * gemmNNPacked over many rows, ROW_BLOCK rows at a time. The kernel sweeps all of A once per
   * 8-column panel of B; for thousands of rows A falls out of cache on every sweep (measured: the
   * second layer of a 2×256 model ran at under half speed), while a block of rows stays in L2.
   */
  private gemmRows(
    a: number,
    lda: number,
    bp: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    M: number,
    N: number,
    K: number,
  ): void {
    for (let r = 0; r < M; r += ROW_BLOCK) {
      const m = Math.min(ROW_BLOCK, M - r);
      this.k.gemmNNPacked(a + r * lda * 4, lda, bp, b, ldb, c + r * ldc * 4, ldc, m, N, K);
    }
  }

  /** z[rows×G] = the bias row repeated (the start of a layer ≥ 1's pre-activations). */
  private fillBias(z: number, pB: number, rows: number): void {
    const G = this.G;
    const f = this.f32;
    const b = pB >> 2;
    for (let r = 0, dst = z >> 2; r < rows; r++, dst += G) f.copyWithin(dst, b, b + G);
  }

  /**
   * Forward and backward for the windows x [n×T]. Gradients of `scale · Σ loss` go to
   * `this.grads` (overwritten); returns Σ loss. Scoring 'last' (the reference): y [n], the
   * character after each window; 'every' (sequence and stateful modes): y [n×T], the next
   * character at every position. A carried state [n][L][H] is read as the initial state and
   * overwritten with the state after the last step; without it the state starts at zero.
   */
  lossAndGrads(batch: CoreBatch): number {
    const { x, y, rows: n, steps: T, scale } = batch;
    const everyStep = batch.scoring === 'every';
    if (!this.cap.training) throw new Error('this core was built for inference only');
    this.checkBatch(n, T);
    const { k, H, G, V, L } = this;
    const drop = batch.dropout && batch.dropout.rate > 0 ? batch.dropout : undefined;
    const init = batch.state;
    this.tok.set(x.subarray(0, n * T));
    if (everyStep) {
      // head rows are ordered [t][b] like the stored states: transpose the targets
      for (let b = 0; b < n; b++) for (let t = 0; t < T; t++) this.y[t * n + b] = y[b * T + t]!;
    } else {
      this.y.set(y.subarray(0, n));
    }
    const BH = n * H * 4; // bytes of one [n×H] state
    const BG = n * G * 4; // bytes of one [n×G] gate block
    // ---- forward, layer by layer
    const outs: number[] = []; // address of out[l] [T][n][H]
    for (let l = 0; l < L; l++) {
      const lb = this.layers[l]!;
      if (init) {
        // the carried state, [n][L][H] rows → h[l][0], c[l][0] [n][H]
        for (let b = 0; b < n; b++) {
          const src = (b * L + l) * H;
          this.f32.set(init.h.subarray(src, src + H), (lb.pH >> 2) + b * H);
          this.f32.set(init.c.subarray(src, src + H), (lb.pC >> 2) + b * H);
        }
      } else {
        this.mem.fill(0, lb.pC, lb.pC + BH);
        this.mem.fill(0, lb.pH, lb.pH + BH);
      }
      if (l > 0) {
        // all steps' input products at once: act = bias + out[l-1]·Wx
        this.fillBias(lb.pAct, lb.pB, T * n);
        this.gemmRows(outs[l - 1]!, H, lb.pWxP, lb.pWx, G, lb.pAct, G, T * n, G, H);
      }
      for (let t = 0; t < T; t++) {
        const z = lb.pAct + t * BG;
        if (l === 0) k.gatherRows(z, lb.pWx, lb.pB, this.pTok + t * 4, T, n, G);
        if (t > 0 || init) k.gemmNNPacked(lb.pH + t * BH, H, lb.pWhP, lb.pWh, G, z, G, n, G, H); // z += h[t]·Wh
        k.gatesForward(
          z,
          lb.pC + t * BH,
          lb.pC + (t + 1) * BH,
          lb.pTc + t * BH,
          lb.pH + (t + 1) * BH,
          n,
          H,
        );
      }
      if (drop) {
        // the top layer's output only feeds the head: only its last step when scoring the last character
        const t0 = l === L - 1 && !everyStep ? T - 1 : 0;
        dropoutMask(
          this.f32.subarray(lb.pMask >> 2),
          drop.rate,
          drop.key,
          l,
          t0,
          T,
          n,
          drop.row0,
          H,
        );
        k.mulArrays(lb.pH + (t0 + 1) * BH, lb.pMask + t0 * BH, lb.pOut + t0 * BH, (T - t0) * n * H);
        outs.push(lb.pOut);
      } else {
        outs.push(lb.pH + BH);
      }
    }
    if (init) {
      for (let l = 0; l < L; l++) {
        const lb = this.layers[l]!;
        for (let b = 0; b < n; b++) {
          const dst = (b * L + l) * H;
          const src = ((lb.pH + T * BH) >> 2) + b * H;
          init.h.set(this.f32.subarray(src, src + H), dst);
          const csrc = ((lb.pC + T * BH) >> 2) + b * H;
          init.c.set(this.f32.subarray(csrc, csrc + H), dst);
        }
      }
    }
    // the softmax head on the scored outputs: out[T-1] [n×H], or out[0..T) stacked [T·n×H]
    const rows = everyStep ? T * n : n;
    const hHead = everyStep ? outs[L - 1]! : outs[L - 1]! + (T - 1) * BH;
    this.mem.fill(0, this.pLogits, this.pLogits + rows * V * 4);
    k.gemmNN(hHead, H, this.pWd, V, this.pLogits, V, rows, V, H); // logits = h·Wd
    k.softmaxRows(this.pLogits, this.pBd, rows, V);
    const loss = k.crossEntropy(this.pLogits, this.pY, this.pDlogits, rows, V, scale);
    // ---- backward
    this.grads.fill(0);
    k.gemmTN(hHead, H, this.pDlogits, V, this.gWd, V, H, V, rows); // dWd = hᵀ·dlogits
    k.colSum(this.pDlogits, this.gBd, rows, V);
    // the gradient reaching the top layer's outputs: at every step, or at the last one only
    const ext = this.pExt;
    if (!everyStep) this.mem.fill(0, ext, ext + T * BH);
    const headGrad = everyStep ? ext : ext + (T - 1) * BH;
    this.mem.fill(0, headGrad, headGrad + rows * H * 4);
    k.gemmNN(this.pDlogits, V, this.pWdT, H, headGrad, H, rows, H, V); // dout = dlogits·Wdᵀ
    for (let l = L - 1; l >= 0; l--) {
      const lb = this.layers[l]!;
      if (drop) {
        const t0 = l === L - 1 && !everyStep ? T - 1 : 0;
        k.mulArrays(ext + t0 * BH, lb.pMask + t0 * BH, ext + t0 * BH, (T - t0) * n * H);
      }
      // dh reaching h[t+1] = ext[t] + dz[t+1]·Whᵀ
      this.mem.copyWithin(this.pDh, ext + (T - 1) * BH, ext + T * BH);
      this.mem.fill(0, this.pDc, this.pDc + BH);
      for (let t = T - 1; t >= 0; t--) {
        const dz = this.pDz + t * BG;
        k.gatesBackward(
          lb.pAct + t * BG,
          lb.pC + t * BH,
          lb.pTc + t * BH,
          this.pDh,
          this.pDc,
          dz,
          n,
          H,
        );
        if (l === 0) k.scatterRows(lb.gWx, lb.gB, dz, this.pTok + t * 4, T, n, G);
        if (t > 0) {
          this.mem.copyWithin(this.pDh, ext + (t - 1) * BH, ext + t * BH);
          k.gemmNNPacked(dz, G, lb.pWhTP, lb.pWhT, H, this.pDh, H, n, H, G);
        }
      }
      // dWh = Σ_t h[t]ᵀ·dz_t as one product over the stacked steps (from t = 1 when h[0] = 0)
      const t0 = init ? 0 : 1;
      if (T > t0)
        k.gemmTN(lb.pH + t0 * BH, H, this.pDz + t0 * BG, G, lb.gWh, G, H, G, (T - t0) * n);
      if (l > 0) {
        // the input product's gradients: dWx = out[l-1]ᵀ·dz, db = Σ dz, and ext ← dz·Wxᵀ for layer l-1
        k.gemmTN(outs[l - 1]!, H, this.pDz, G, lb.gWx, G, H, G, T * n);
        k.colSum(this.pDz, lb.gB, T * n, G);
        this.mem.fill(0, ext, ext + T * BH);
        this.gemmRows(this.pDz, G, lb.pWxTP, lb.pWxT, H, ext, H, T * n, H, G);
      }
    }
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

  /** Zero the carried state (h, c of every layer) of rows 0..n-1. */
  resetState(n = this.cap.maxB): void {
    const HB = this.H * 4;
    for (const lb of this.layers) {
      this.mem.fill(0, lb.pH, lb.pH + n * HB);
      this.mem.fill(0, lb.pC, lb.pC + n * HB);
    }
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

  /**
   * step() without the head: one token per row carried into h and c, no probabilities. A prompt's
   * characters before its last need no distribution (continuous batching's prefill).
   */
  feed(tokens: ArrayLike<number>, n: number): void {
    this.checkBatch(n, 1);
    for (let b = 0; b < n; b++) this.tok[b] = tokens[b]!;
    this.advance(this.pTok, 1, n);
  }

  /** The carried state, for saving or copying between rows: h and c, each [n][L][H]. */
  getState(n: number): { h: Float32Array; c: Float32Array } {
    const { H, L } = this;
    const h = new Float32Array(n * L * H);
    const c = new Float32Array(n * L * H);
    this.layers.forEach((lb, l) => {
      for (let b = 0; b < n; b++) {
        const src = b * H;
        h.set(this.f32.subarray((lb.pH >> 2) + src, (lb.pH >> 2) + src + H), (b * L + l) * H);
        c.set(this.f32.subarray((lb.pC >> 2) + src, (lb.pC >> 2) + src + H), (b * L + l) * H);
      }
    });
    return { h, c };
  }

  /** Set the carried state of rows 0..n-1 from h and c, each [n][L][H]. */
  setState(h: Float32Array, c: Float32Array): void {
    const { H, L } = this;
    const n = h.length / (L * H);
    this.layers.forEach((lb, l) => {
      for (let b = 0; b < n; b++) {
        const src = (b * L + l) * H;
        this.f32.set(h.subarray(src, src + H), (lb.pH >> 2) + b * H);
        this.f32.set(c.subarray(src, src + H), (lb.pC >> 2) + b * H);
      }
    });
  }

  // One recurrent step on the carried state, through every layer (h and c live in slot 0 of their
  // buffers; slot 1 is scratch, copied back so the state never moves).
  private advance(tokPtr: number, tokStride: number, n: number): void {
    const { k, H, G } = this;
    const BH = n * H * 4;
    const slot = this.cap.maxB * H * 4;
    for (const [l, lb] of this.layers.entries()) {
      const z = lb.pAct;
      if (l === 0) {
        k.gatherRows(z, lb.pWx, lb.pB, tokPtr, tokStride, n, G);
      } else {
        this.fillBias(z, lb.pB, n);
        k.gemmNNPacked(this.layers[l - 1]!.pH, H, lb.pWxP, lb.pWx, G, z, G, n, G, H);
      }
      k.gemmNNPacked(lb.pH, H, lb.pWhP, lb.pWh, G, z, G, n, G, H);
      k.gatesForward(z, lb.pC, lb.pC + slot, lb.pTc, lb.pH + slot, n, H);
      this.mem.copyWithin(lb.pC, lb.pC + slot, lb.pC + slot + BH);
      this.mem.copyWithin(lb.pH, lb.pH + slot, lb.pH + slot + BH);
    }
  }

  private headProbs(n: number): Float32Array {
    const { k, H, V } = this;
    this.mem.fill(0, this.pLogits, this.pLogits + n * V * 4);
    k.gemmNN(this.layers[this.L - 1]!.pH, H, this.pWd, V, this.pLogits, V, n, V, H);
    k.softmaxRows(this.pLogits, this.pBd, n, V);
    return this.probs.subarray(0, n * V);
  }
}
