// An independent reference for our engine: the same model built with TensorFlow.js layers on the
// pure-JS `cpu` backend, fed our Parameters.
//
//   one-hot(x) [B, T, V] → LSTM(H, activation tanh, recurrentActivation sigmoid) × L layers
//                          (all but the last return sequences; the last returns its last h)
//                        → Dense(V, softmax) → categorical cross-entropy, mean over the batch
//
// TF.js's own LSTM default recurrent activation is hard_sigmoid, so 'sigmoid' is passed explicitly.
// Keras/TF.js weight layout is ours already (kernel [V,4H], recurrentKernel [H,4H], bias [4H],
// gates i, f, c, o; dense kernel [H,V], bias [V]), so weights move across unchanged.
//
// The loss is the formula Keras (and tfjs-layers' categoricalCrossentropy) applies to a softmax
// output:  p ← p / sum(p);  p ← clip(p, ε, 1 − ε);  loss_b = −Σ_v y_bv·log(p_bv);  loss = mean_b.
// ε = 1e-7 (the float32 backends' epsilon). Two consequences worth knowing when comparing:
//   - a target probability below 1e-7 contributes exactly −log(1e-7) ≈ 16.118 and NO gradient
//     (the clip's derivative is zero there); likewise one above 1 − 1e-7 contributes no gradient.
//   - the p/sum(p) renormalisation is the identity on a softmax output, so it changes neither the
//     value nor the gradient (beyond float rounding).

import * as tf from '@tensorflow/tfjs';
import { Parameters, weightEntries, type ModelShape } from '../../src/model/params.ts';
import type { Rng } from '../../src/sampling/rng.ts';

/** The clip epsilon Keras / TF.js use in categorical cross-entropy on probabilities. */
export const KERAS_EPSILON = 1e-7;

let ready: Promise<void> | undefined;

/** Switch TF.js to its pure-JS cpu backend once (and silence its "install tfjs-node" banner). */
export function ensureCpuBackend(): Promise<void> {
  ready ??= (async () => {
    tf.enableProdMode(); // only mutes tfjs's console warnings; computations are unaffected
    const ok = await tf.setBackend('cpu');
    if (!ok) throw new Error('TF.js could not initialise its cpu backend');
    await tf.ready();
  })();
  return ready.then(async () => {
    // Another module may have switched backends meanwhile (e.g. a benchmark using wasm).
    if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  });
}

function checkInputs(
  params: Parameters,
  x: Int32Array,
  B: number,
  T: number,
  y?: Int32Array,
): void {
  const V = params.shape.vocabSize;
  if (!(Number.isInteger(B) && B >= 1 && Number.isInteger(T) && T >= 1)) {
    throw new RangeError(`B and T must be positive integers, got B=${B}, T=${T}`);
  }
  if (x.length !== B * T)
    throw new RangeError(`x must hold B*T = ${B * T} tokens, got ${x.length}`);
  for (const t of x)
    if (!(t >= 0 && t < V)) throw new RangeError(`token ${t} out of range [0, ${V})`);
  if (y) {
    if (y.length !== B) throw new RangeError(`y must hold B = ${B} targets, got ${y.length}`);
    for (const t of y)
      if (!(t >= 0 && t < V)) throw new RangeError(`target ${t} out of range [0, ${V})`);
  }
}

/** A fresh tf.sequential [LSTM × L]+Dense model holding `params`' weights. Caller disposes it. */
function buildModel(params: Parameters, T: number): tf.Sequential {
  const { vocabSize: V, units: H } = params.shape;
  const model = tf.sequential();
  params.lstm.forEach((_, l) => {
    model.add(
      tf.layers.lstm({
        units: H,
        ...(l === 0 && { inputShape: [T, V] }),
        activation: 'tanh',
        recurrentActivation: 'sigmoid',
        useBias: true,
        unitForgetBias: false,
        returnSequences: l < params.lstm.length - 1,
        // The weights are overwritten below; zeros skips the orthogonal initializer's slow QR.
        kernelInitializer: 'zeros',
        recurrentInitializer: 'zeros',
      }),
    );
  });
  model.add(
    tf.layers.dense({ units: V, activation: 'softmax', useBias: true, kernelInitializer: 'zeros' }),
  );
  tf.tidy(() => {
    params.lstm.forEach((w, l) => {
      model.layers[l]!.setWeights([
        tf.tensor2d(w.kernel, [l === 0 ? V : H, 4 * H]),
        tf.tensor2d(w.recurrentKernel, [H, 4 * H]),
        tf.tensor1d(w.bias),
      ]);
    });
    model.layers[params.lstm.length]!.setWeights([
      tf.tensor2d(params.denseKernel, [H, V]),
      tf.tensor1d(params.denseBias),
    ]);
  });
  return model;
}

function oneHotInput(x: Int32Array, B: number, T: number, V: number): tf.Tensor3D {
  return tf.tidy(
    () => tf.cast(tf.oneHot(tf.tensor2d(x, [B, T], 'int32'), V), 'float32') as tf.Tensor3D,
  );
}

/** Keras categorical cross-entropy on probabilities (see the header), averaged over the batch. */
function kerasCategoricalCrossEntropy(target: tf.Tensor2D, probs: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const p = tf.clipByValue(
      tf.div(probs, tf.sum(probs, -1, true)),
      KERAS_EPSILON,
      1 - KERAS_EPSILON,
    );
    return tf.mean(tf.neg(tf.sum(tf.mul(target, tf.log(p)), -1))) as tf.Scalar;
  });
}

/** [B, V] softmax probabilities after the last of T steps, row-major. */
export async function tfForward(
  params: Parameters,
  x: Int32Array,
  B: number,
  T: number,
): Promise<Float32Array> {
  checkInputs(params, x, B, T);
  await ensureCpuBackend();
  const model = buildModel(params, T);
  try {
    const out = tf.tidy(
      () => model.predict(oneHotInput(x, B, T, params.shape.vocabSize)) as tf.Tensor2D,
    );
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return Float32Array.from(data);
  } finally {
    model.dispose();
  }
}

/** Mean categorical cross-entropy over the batch and its gradient w.r.t. every weight, in our layout. */
export async function tfLossAndGrads(
  params: Parameters,
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
): Promise<{ loss: number; grads: Parameters }> {
  checkInputs(params, x, B, T, y);
  await ensureCpuBackend();
  const V = params.shape.vocabSize;
  const model = buildModel(params, T);
  const inputs = oneHotInput(x, B, T, V);
  const target = tf.tidy(
    () => tf.cast(tf.oneHot(tf.tensor1d(y, 'int32'), V), 'float32') as tf.Tensor2D,
  );
  try {
    // model.trainableWeights are LayerVariables; .read() gives the tf.Variable each wraps.
    const out = new Parameters(params.shape);
    const views = out.views();
    const expectedShapes = weightEntries(params.shape).map((e) => e.shape);
    const layerVars = model.trainableWeights;
    if (layerVars.length !== views.length)
      throw new Error(`expected ${views.length} trainable weights, got ${layerVars.length}`);
    const vars = layerVars.map((w) => w.read() as tf.Variable);
    vars.forEach((v, i) => {
      if (v.shape.join(',') !== expectedShapes[i]!.join(',')) {
        throw new Error(
          `trainable weight ${i} (${layerVars[i]!.name}) has shape [${v.shape}], expected [${expectedShapes[i]}]`,
        );
      }
    });

    const { value, grads } = tf.variableGrads(() => {
      const probs = model.apply(inputs, { training: true }) as tf.Tensor2D;
      return kerasCategoricalCrossEntropy(target, probs);
    }, vars);

    for (let i = 0; i < views.length; i++) {
      const v = vars[i]!;
      const g = grads[v.name];
      if (!g) throw new Error(`no gradient for ${v.name}`);
      views[i]!.set((await g.data()) as Float32Array);
    }
    const loss = (await value.data())[0]!;
    value.dispose();
    tf.dispose(grads);
    return { loss, grads: out };
  } finally {
    inputs.dispose();
    target.dispose();
    model.dispose();
  }
}

/**
 * Random weights for tests. Kernels are uniform in ±scale·√(6/(fanIn+fanOut)) (scale 1 is Keras's
 * Glorot-uniform bound), biases uniform in ±0.1·scale, and the forget-gate bias block shifted by
 * +0.5·scale so the four gates are not statistically identical. With the default scale 1 the LSTM
 * stays out of saturation and the softmax far from the 1e-7 clip for small V and H.
 */
export function randomParams(shape: ModelShape, rng: Rng, scale = 1): Parameters {
  const { vocabSize: V, units: H } = shape;
  const p = new Parameters(shape);
  const fill = (a: Float32Array, bound: number): void => {
    for (let i = 0; i < a.length; i++) a[i] = rng.uniform(-bound, bound);
  };
  p.lstm.forEach((w, l) => {
    const D = l === 0 ? V : H;
    fill(w.kernel, scale * Math.sqrt(6 / (D + 4 * H)));
    fill(w.recurrentKernel, scale * Math.sqrt(6 / (H + 4 * H)));
    fill(w.bias, 0.1 * scale);
    for (let j = H; j < 2 * H; j++) w.bias[j] = w.bias[j]! + 0.5 * scale; // forget gate block
  });
  fill(p.denseKernel, scale * Math.sqrt(6 / (H + V)));
  fill(p.denseBias, 0.1 * scale);
  return p;
}
