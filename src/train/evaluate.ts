import type { Windows } from '../data/windows.ts';
import { createKernels, resolveEngine, type EngineKind } from '../engine/gradient-engine.ts';
import { kernelModule } from '../engine/kernels.ts';
import { LstmCore } from '../engine/lstm-core.ts';
import type { Parameters } from '../model/params.ts';

// Held-out loss: each window's next character predicted from its maxlen characters from a zero
// state (the way window-mode generation uses a model), mean negative log-likelihood in nats.
// Probabilities are clipped at 1e-7 as the training loss is.

export interface Evaluation {
  loss: number; // nats per character
  bpc: number; // bits per character
  perplexity: number;
  windows: number;
}

export async function evaluate(
  params: Parameters,
  windows: Windows,
  opts: { batch?: number; engine?: EngineKind | 'auto' } = {},
): Promise<Evaluation> {
  await kernelModule();
  const batch = opts.batch ?? 128;
  const T = windows.maxlen;
  const V = params.shape.vocabSize;
  const kernels = await createKernels(await resolveEngine(opts.engine ?? 'auto'));
  const core = new LstmCore(params.shape, { maxB: batch, maxT: T, training: false }, kernels);
  core.setParams(params.flat);
  const x = new Int32Array(batch * T);
  let sum = 0;
  for (let from = 0; from < windows.count; from += batch) {
    const n = Math.min(batch, windows.count - from);
    for (let b = 0; b < n; b++) {
      const s = windows.starts[from + b]!;
      x.set(windows.tokens.subarray(s, s + T), b * T);
    }
    const probs = core.predict(x, n, T);
    for (let b = 0; b < n; b++) {
      const s = windows.starts[from + b]!;
      const p = probs[b * V + windows.tokens[s + T]!]!;
      sum -= Math.log(Math.max(p, 1e-7));
    }
  }
  const loss = windows.count > 0 ? sum / windows.count : NaN;
  return { loss, bpc: loss / Math.LN2, perplexity: Math.exp(loss), windows: windows.count };
}
