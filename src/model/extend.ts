import type { Rng } from '../sampling/rng.ts';
import { glorotUniform } from './init.ts';
import { Parameters, layerCount } from './params.ts';

// Fine-tuning on a text with characters the model never saw (`train --init-from`): the
// vocabulary grows from V to V' = V + n, the new characters' ids V..V'-1 after the model's own.
// Two weights depend on V; everything else is copied as it is:
//   first LSTM kernel [V, 4H] → [V', 4H]: rows 0..V-1 the model's, bit for bit; rows V..V'-1 new
//   dense kernel      [H, V]  → [H, V']:  in every row h, columns 0..V-1 the model's, V..V'-1 new
//   dense bias        [V]     → [V']:     entries 0..V-1 the model's, V..V'-1 zero
// The new entries are what a fresh model of V' characters draws for those weights (init.ts):
// glorot_uniform with the fresh model's fans, U(-l, l), l = sqrt(6 / (V' + 4H)) for the kernel
// rows and sqrt(6 / (H + V')) for the dense columns, and a zero bias. They are drawn from `rng`
// (the run's `init` stream, seedStreams in src/train/run-setup.ts) in this order: the new kernel
// rows, row by row (each row's 4H gate columns i, f, c, o); then the new dense entries, row h by
// row h (each row's n new columns). So a seed names one extension, as it names one fresh model.

/** `params` with `added` new characters (ids V..V+added-1); `params` itself is not changed. */
export function extendParameters(params: Parameters, added: number, rng: Rng): Parameters {
  const { vocabSize: V, units: H } = params.shape;
  const V2 = V + added;
  const L = layerCount(params.shape);
  const out = new Parameters({ vocabSize: V2, units: H, ...(L > 1 && { layers: L }) });
  if (added === 0) {
    out.flat.set(params.flat);
    return out;
  }
  const G = 4 * H;
  params.lstm.forEach((w, l) => {
    const to = out.lstm[l]!;
    to.kernel.set(w.kernel); // layer 0: the first V rows; above it the same [H, 4H]
    to.recurrentKernel.set(w.recurrentKernel);
    to.bias.set(w.bias);
  });
  const rows = new Float32Array(added * G);
  glorotUniform(rows, V2, G, rng);
  out.kernel.set(rows, V * G);

  const columns = new Float32Array(H * added); // [H × added], row-major
  glorotUniform(columns, H, V2, rng);
  for (let h = 0; h < H; h++) {
    out.denseKernel.set(params.denseKernel.subarray(h * V, (h + 1) * V), h * V2);
    out.denseKernel.set(columns.subarray(h * added, (h + 1) * added), h * V2 + V);
  }
  out.denseBias.set(params.denseBias); // the new entries stay 0
  return out;
}
