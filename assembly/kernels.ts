// WebAssembly SIMD kernels for the LSTM engine, and (with native/kernels.cc) the only place in
// charlstm with pointer arithmetic. What each export computes, its arguments and their shapes
// are the contract written once in KernelExports (src/engine/kernels.ts); the comments here say
// how this implementation does it.
//
// Built by `npm run build:wasm` (asc, runtime "stub": no allocator, no GC; the caller owns memory)
// twice from this one source (asconfig.json): build/kernels.wasm with SIMD128 only, and
// build/kernels-relaxed.wasm with relaxed SIMD as well, where madd below is a fused multiply-add.
// src/engine/kernels.ts loads the relaxed build where the runtime validates it.

// a·b + c, four lanes: one f32x4.relaxed_madd (an FMA where the CPU has one: a single rounding)
// in the relaxed build, a multiply and an add (two roundings) in the SIMD128 build. The
// SIMD128 build's results are therefore those of the kernels before the two builds (on finite
// inputs: exp4's clamp and 2^n below changed how a NaN comes out, not any finite result).
// Used in the products' inner loops and in the polynomials and cell updates of the gates.
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b)); // this operand order: the same bytes as before
}

// c - a·b, four lanes: f32x4.relaxed_nmadd in the relaxed build (one rounding), else a multiply
// and a subtraction.
// @ts-ignore: decorator
@inline function nmadd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_nmadd(a, b, c);
  return f32x4.sub(c, f32x4.mul(a, b));
}

// ---------------------------------------------------------------------------------------------
// Matrix product
// ---------------------------------------------------------------------------------------------

// gemmNN and gemmTN (KernelExports) differ only in how A is read (transA).
// Register block: 4 rows × 8 columns of C in eight 128-bit accumulators; each k step loads one
// 8-float slice of a B row and broadcasts four A elements.
// (Measured here: 4×8 beat 6×8, 4×12 and 2×16; wider blocks spill the 16 xmm registers.)
// @ts-ignore: decorator
@inline function gemmAny(
  a: usize, lda: i32, transA: bool,
  b: usize, ldb: i32,
  c: usize, ldc: i32,
  M: i32, N: i32, K: i32,
): void {
  // Long K (the stacked dWh product has K = T·B rows) is cut into panels so that A's panel stays
  // in L2 while every column block of C passes over it; without this A streams from L3 once per
  // column block and the product runs at half speed.
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kLen = min(KC, K - k0);
    const aOff: usize = transA ? <usize>k0 * (<usize>lda << 2) : <usize>k0 << 2;
    gemmPanel(a + aOff, lda, transA, b + <usize>k0 * (<usize>ldb << 2), ldb, c, ldc, M, N, kLen);
  }
}

const KC = 256;
// one 8-column slice of a K panel of B, packed [KC][8] (gemmPanel); in the module's static data,
// below ARENA_BASE (src/engine/arena.ts)
const PANEL: usize = memory.data(KC * 8 * 4, 64);

// @ts-ignore: decorator
@inline function gemmPanel(
  a: usize, lda: i32, transA: bool,
  b: usize, ldb: i32,
  c: usize, ldc: i32,
  M: i32, N: i32, K: i32,
): void {
  const ldaB = <usize>lda << 2;
  // distance between A's rows (i) and between its k steps, in bytes
  const rowB: usize = transA ? 4 : ldaB;
  const kB: usize = transA ? ldaB : 4;
  const ldbB = <usize>ldb << 2;
  const ldcB = <usize>ldc << 2;
  const M4 = M & ~3;
  const N8 = N & ~7;
  let j = 0;
  for (; j < N8; j += 8) {
    let bj = b + (<usize>j << 2);
    let bStep = ldbB; // bytes between the k steps of this 8-column slice of B
    if (transA && M > 4) {
      // Copy the slice [K×8] into one contiguous panel first: with dz's row stride in
      // dWh = hᵀ·dz a power of two (2 KB for 512 gate columns) its k steps fall into two L1 sets
      // and every row block would fetch it from L2 again. Same values, same order: 1.18-1.23×
      // on that product (4 interleaved runs, loaded machine); gemmNN's unpacked products did not
      // gain (0.95-1.02×), so they read B in place.
      let src = bj;
      for (let k: usize = 0; k < <usize>K; k++) {
        v128.store(PANEL + (k << 5), v128.load(src));
        v128.store(PANEL + (k << 5), v128.load(src, 16), 16);
        src += ldbB;
      }
      bj = PANEL;
      bStep = 32;
    }
    let i = 0;
    for (; i < M4; i += 4) {
      const c0 = c + <usize>i * ldcB + (<usize>j << 2);
      const c1 = c0 + ldcB;
      const c2 = c1 + ldcB;
      const c3 = c2 + ldcB;
      let x00 = v128.load(c0), x01 = v128.load(c0, 16);
      let x10 = v128.load(c1), x11 = v128.load(c1, 16);
      let x20 = v128.load(c2), x21 = v128.load(c2, 16);
      let x30 = v128.load(c3), x31 = v128.load(c3, 16);
      let pa = a + <usize>i * rowB;
      let pb = bj;
      for (let k = 0; k < K; k++) {
        const b0 = v128.load(pb);
        const b1 = v128.load(pb, 16);
        let s = v128.load32_splat(pa);
        x00 = madd(s, b0, x00);
        x01 = madd(s, b1, x01);
        s = v128.load32_splat(pa + rowB);
        x10 = madd(s, b0, x10);
        x11 = madd(s, b1, x11);
        s = v128.load32_splat(pa + 2 * rowB);
        x20 = madd(s, b0, x20);
        x21 = madd(s, b1, x21);
        s = v128.load32_splat(pa + 3 * rowB);
        x30 = madd(s, b0, x30);
        x31 = madd(s, b1, x31);
        pa += kB;
        pb += bStep;
      }
      v128.store(c0, x00); v128.store(c0, x01, 16);
      v128.store(c1, x10); v128.store(c1, x11, 16);
      v128.store(c2, x20); v128.store(c2, x21, 16);
      v128.store(c3, x30); v128.store(c3, x31, 16);
    }
    for (; i < M; i++) {
      // leftover rows: one row × 8 columns
      const c0 = c + <usize>i * ldcB + (<usize>j << 2);
      let x0 = v128.load(c0), x1 = v128.load(c0, 16);
      let pa = a + <usize>i * rowB;
      let pb = bj;
      for (let k = 0; k < K; k++) {
        const s = v128.load32_splat(pa);
        x0 = madd(s, v128.load(pb), x0);
        x1 = madd(s, v128.load(pb, 16), x1);
        pa += kB;
        pb += bStep;
      }
      v128.store(c0, x0); v128.store(c0, x1, 16);
    }
  }
  // leftover columns (N not a multiple of 8): scalar, one C element at a time
  for (; j < N; j++) {
    for (let i = 0; i < M; i++) {
      const pc = c + <usize>i * ldcB + (<usize>j << 2);
      let acc = load<f32>(pc);
      let pa = a + <usize>i * rowB;
      let pb = b + (<usize>j << 2);
      for (let k = 0; k < K; k++) {
        acc += load<f32>(pa) * load<f32>(pb);
        pa += kB;
        pb += ldbB;
      }
      store<f32>(pc, acc);
    }
  }
}

export function gemmNN(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32, M: i32, N: i32, K: i32): void {
  gemmAny(a, lda, false, b, ldb, c, ldc, M, N, K);
}

export function gemmTN(a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32, M: i32, N: i32, K: i32): void {
  gemmAny(a, lda, true, b, ldb, c, ldc, M, N, K);
}

// packB (KernelExports): the panel a 4×8 block reads is then one contiguous stream. Without
// this, a B whose row stride is a power of two (2 KB for the 512 gate columns) maps every k step
// of a panel to the same two L1 sets and the product keeps missing L1.
export function packB(b: usize, ldb: i32, dst: usize, K: i32, N: i32): void {
  const N8 = N & ~7;
  const ldbB = <usize>ldb << 2;
  let out = dst;
  for (let j = 0; j < N8; j += 8) {
    let pb = b + (<usize>j << 2);
    for (let k = 0; k < K; k++) {
      v128.store(out, v128.load(pb));
      v128.store(out, v128.load(pb, 16), 16);
      out += 32;
      pb += ldbB;
    }
  }
}

// gemmNNPacked (KernelExports): each packed panel is a [K×8] matrix of row stride 8; the tail
// columns come from the row-major b.
export function gemmNNPacked(a: usize, lda: i32, bp: usize, b: usize, ldb: i32, c: usize, ldc: i32, M: i32, N: i32, K: i32): void {
  const N8 = N & ~7;
  const M4 = M & ~3;
  const panelB = <usize>K << 5; // bytes in one packed [K×8] panel
  for (let j = 0; j < N8; j += 8) {
    gemmPanel(a, lda, false, bp + <usize>j * (<usize>K << 2), 8, c + (<usize>j << 2), ldc, M4, 8, K);
  }
  // Leftover rows (M = 1 in generation), two panels at a time: one panel is two dependent
  // chains of multiply-adds and an FMA's latency bounds them (the relaxed build ran at 0.68x of
  // SIMD128 so); two panels make four independent chains. Each chain still sums k in order from
  // C, as a 4-row block does, so a row comes out the same alone as in a batch, bit for bit
  // (test/batching.test.ts); splitting k into even and odd sums would not.
  for (let i = M4; i < M; i++) {
    const pa0 = a + <usize>i * (<usize>lda << 2);
    const cr = c + <usize>i * (<usize>ldc << 2);
    let j = 0;
    for (; j + 16 <= N8; j += 16) {
      let p0 = bp + <usize>j * (<usize>K << 2);
      let p1 = p0 + panelB;
      const c0 = cr + (<usize>j << 2);
      let x0 = v128.load(c0), x1 = v128.load(c0, 16);
      let y0 = v128.load(c0, 32), y1 = v128.load(c0, 48);
      let pa = pa0;
      for (let k = 0; k < K; k++) {
        const s = v128.load32_splat(pa);
        x0 = madd(s, v128.load(p0), x0);
        x1 = madd(s, v128.load(p0, 16), x1);
        y0 = madd(s, v128.load(p1), y0);
        y1 = madd(s, v128.load(p1, 16), y1);
        pa += 4;
        p0 += 32;
        p1 += 32;
      }
      v128.store(c0, x0); v128.store(c0, x1, 16);
      v128.store(c0, y0, 32); v128.store(c0, y1, 48);
    }
    if (j < N8) gemmPanel(pa0, lda, false, bp + <usize>j * (<usize>K << 2), 8, cr + (<usize>j << 2), ldc, 1, 8, K);
  }
  if (N8 < N) gemmPanel(a, lda, false, b + (<usize>N8 << 2), ldb, c + (<usize>N8 << 2), ldc, M, N - N8, K);
}

export function transpose(src: usize, dst: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(dst + ((<usize>c * rows + r) << 2), load<f32>(src + ((<usize>r * cols + c) << 2)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Vectorised exp, sigmoid, tanh (Cephes-style range reduction and polynomials, ~1e-7 relative)
// ---------------------------------------------------------------------------------------------

// x clamped to [-87.3, 88.3], a NaN kept. f32x4.min/max are IEEE-exact about NaN and ±0 and
// cost about six x86 instructions each in V8; pmin/pmax (b < a ? b : a, a < b ? b : a) are one
// minps/maxps, and equal to them here but for which NaN comes out: x goes first so that a NaN x
// is returned.
// @ts-ignore: decorator
@inline function clampExpArg(x: v128): v128 {
  return f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.3)), f32x4.splat(88.3));
}

// 2^n as float bits for whole n in [-126, 127] (a NaN n gives garbage bits, and its p is NaN):
// n + 1.5·2^23 holds n in its low mantissa bits, exactly, so its bits less those of 1.5·2^23 are
// n as an int32; three instructions where trunc_sat needs cvttps2dq and its NaN and overflow
// fix-ups.
// @ts-ignore: decorator
@inline function pow2i(n: v128): v128 {
  const magic = f32x4.splat(12582912.0); // 1.5·2^23, bits 0x4b400000
  return i32x4.shl(i32x4.add(f32x4.add(n, magic), i32x4.splat(127 - 0x4b400000)), 23);
}

// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
  x = clampExpArg(x);
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  // r = x - n·ln2, with ln2 split in two for precision
  let r = nmadd(n, f32x4.splat(0.693359375), x);
  r = madd(n, f32x4.splat(2.12194440e-4), r);
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  p = f32x4.add(madd(p, f32x4.mul(r, r), r), f32x4.splat(1));
  // scale by 2^n through the exponent bits
  const e = pow2i(n);
  return f32x4.mul(p, e);
}

// @ts-ignore: decorator
@inline function sigmoid4(x: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))));
}

// tanh: a polynomial near zero (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere.
// @ts-ignore: decorator
@inline function tanh4(x: v128): v128 {
  const ax = f32x4.abs(x);
  const one = f32x4.splat(1);
  const big = f32x4.sub(one, f32x4.div(f32x4.splat(2), f32x4.add(exp4(f32x4.add(ax, ax)), one)));
  const signed = v128.or(big, v128.and(x, i32x4.splat(0x80000000)));
  const z = f32x4.mul(x, x);
  let p = f32x4.splat(-5.70498872745e-3);
  p = madd(p, z, f32x4.splat(2.06390887954e-2));
  p = madd(p, z, f32x4.splat(-5.37397155531e-2));
  p = madd(p, z, f32x4.splat(1.33314422036e-1));
  p = madd(p, z, f32x4.splat(-3.33332819422e-1));
  const small = madd(f32x4.mul(p, z), x, x);
  return v128.bitselect(small, signed, f32x4.lt(ax, f32x4.splat(0.625)));
}

// sigmoidArray, tanhArray (KernelExports): the approximations above over arrays, for tests.
export function sigmoidArray(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) v128.store(y + (<usize>i << 2), sigmoid4(v128.load(x + (<usize>i << 2))));
}
export function tanhArray(x: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) v128.store(y + (<usize>i << 2), tanh4(v128.load(x + (<usize>i << 2))));
}

export function mulArrays(a: usize, b: usize, y: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
}

// ---------------------------------------------------------------------------------------------
// LSTM gates (gate layout: KernelExports). Four units at a time, so H is a multiple of 4.
// ---------------------------------------------------------------------------------------------

export function gatherRows(z: usize, wx: usize, bias: usize, tok: usize, tokStride: i32, B: i32, G: i32): void {
  const rowB = <usize>G << 2;
  for (let b = 0; b < B; b++) {
    const t = load<i32>(tok + ((<usize>b * tokStride) << 2));
    const src = wx + <usize>t * rowB;
    const dst = z + <usize>b * rowB;
    for (let j: usize = 0; j < rowB; j += 16) {
      v128.store(dst + j, f32x4.add(v128.load(src + j), v128.load(bias + j)));
    }
  }
}

export function gatesForward(z: usize, cPrev: usize, c: usize, tc: usize, h: usize, B: i32, H: i32): void {
  const HB = <usize>H << 2;
  for (let b = 0; b < B; b++) {
    const zr = z + <usize>b * 4 * HB;
    const hr = <usize>b * HB;
    for (let j: usize = 0; j < HB; j += 16) {
      const ig = sigmoid4(v128.load(zr + j));
      const fg = sigmoid4(v128.load(zr + HB + j));
      const cg = tanh4(v128.load(zr + 2 * HB + j));
      const og = sigmoid4(v128.load(zr + 3 * HB + j));
      v128.store(zr + j, ig);
      v128.store(zr + HB + j, fg);
      v128.store(zr + 2 * HB + j, cg);
      v128.store(zr + 3 * HB + j, og);
      const cv = madd(fg, v128.load(cPrev + hr + j), f32x4.mul(ig, cg));
      const tv = tanh4(cv);
      v128.store(c + hr + j, cv);
      v128.store(tc + hr + j, tv);
      v128.store(h + hr + j, f32x4.mul(og, tv));
    }
  }
}

export function gatesBackward(act: usize, cPrev: usize, tc: usize, dh: usize, dc: usize, dz: usize, B: i32, H: i32): void {
  const HB = <usize>H << 2;
  const one = f32x4.splat(1);
  for (let b = 0; b < B; b++) {
    const ar = act + <usize>b * 4 * HB;
    const dr = dz + <usize>b * 4 * HB;
    const hr = <usize>b * HB;
    for (let j: usize = 0; j < HB; j += 16) {
      const ig = v128.load(ar + j);
      const fg = v128.load(ar + HB + j);
      const cg = v128.load(ar + 2 * HB + j);
      const og = v128.load(ar + 3 * HB + j);
      const t = v128.load(tc + hr + j);
      const g = v128.load(dh + hr + j);
      // dc_t += dh ⊙ o ⊙ (1 - tanh²c)
      const dct = madd(f32x4.mul(g, og), nmadd(t, t, one), v128.load(dc + hr + j));
      const dO = f32x4.mul(g, t);
      const dI = f32x4.mul(dct, cg);
      const dG = f32x4.mul(dct, ig);
      const dF = f32x4.mul(dct, v128.load(cPrev + hr + j));
      v128.store(dr + j, f32x4.mul(dI, f32x4.mul(ig, f32x4.sub(one, ig))));
      v128.store(dr + HB + j, f32x4.mul(dF, f32x4.mul(fg, f32x4.sub(one, fg))));
      v128.store(dr + 2 * HB + j, f32x4.mul(dG, f32x4.sub(one, f32x4.mul(cg, cg))));
      v128.store(dr + 3 * HB + j, f32x4.mul(dO, f32x4.mul(og, f32x4.sub(one, og))));
      v128.store(dc + hr + j, f32x4.mul(dct, fg));
    }
  }
}

export function scatterRows(dwx: usize, db: usize, dz: usize, tok: usize, tokStride: i32, B: i32, G: i32): void {
  const rowB = <usize>G << 2;
  for (let b = 0; b < B; b++) {
    const t = load<i32>(tok + ((<usize>b * tokStride) << 2));
    const dst = dwx + <usize>t * rowB;
    const src = dz + <usize>b * rowB;
    for (let j: usize = 0; j < rowB; j += 16) {
      const v = v128.load(src + j);
      v128.store(dst + j, f32x4.add(v128.load(dst + j), v));
      v128.store(db + j, f32x4.add(v128.load(db + j), v));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dense softmax head
// ---------------------------------------------------------------------------------------------

export function softmaxRows(logits: usize, bd: usize, B: i32, V: i32): void {
  for (let b = 0; b < B; b++) {
    const row = logits + ((<usize>b * V) << 2);
    let mx: f32 = -Infinity;
    for (let v = 0; v < V; v++) {
      const x = load<f32>(row + (<usize>v << 2)) + load<f32>(bd + (<usize>v << 2));
      store<f32>(row + (<usize>v << 2), x);
      if (x > mx) mx = x;
    }
    let sum: f64 = 0;
    for (let v = 0; v < V; v++) {
      const e = Mathf.exp(load<f32>(row + (<usize>v << 2)) - mx);
      store<f32>(row + (<usize>v << 2), e);
      sum += <f64>e;
    }
    const inv = <f32>(1.0 / sum);
    for (let v = 0; v < V; v++) store<f32>(row + (<usize>v << 2), load<f32>(row + (<usize>v << 2)) * inv);
  }
}

export function crossEntropy(probs: usize, y: usize, dlogits: usize, B: i32, V: i32, scale: f32): f64 {
  let loss: f64 = 0;
  for (let b = 0; b < B; b++) {
    const row = probs + ((<usize>b * V) << 2);
    const drow = dlogits + ((<usize>b * V) << 2);
    const t = load<i32>(y + (<usize>b << 2));
    let p = load<f32>(row + (<usize>t << 2));
    p = p < <f32>1e-7 ? <f32>1e-7 : p > <f32>(1 - 1e-7) ? <f32>(1 - 1e-7) : p;
    loss -= Math.log(<f64>p);
    for (let v = 0; v < V; v++) {
      let g = load<f32>(row + (<usize>v << 2));
      if (v == t) g -= 1;
      store<f32>(drow + (<usize>v << 2), g * scale);
    }
  }
  return loss;
}

export function colSum(d: usize, db: usize, B: i32, N: i32): void {
  for (let b = 0; b < B; b++) {
    const row = d + ((<usize>b * N) << 2);
    for (let v = 0; v < N; v++) {
      store<f32>(db + (<usize>v << 2), load<f32>(db + (<usize>v << 2)) + load<f32>(row + (<usize>v << 2)));
    }
  }
}
