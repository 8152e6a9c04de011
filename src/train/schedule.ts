import { UserError } from '../errors.ts';

// Learning-rate schedules, as pure functions of the optimizer step (so a resumed run gets the
// same rate at the same step):
//   constant            lr
//   step:E:G            lr · G^floor(epoch / E)    (decay by G every E epochs)
//   cosine              lr · ½(1 + cos(π · progress)), progress = step / total steps, or the
//                       fraction of --time-budget used (then the rate follows the clock)

export type Schedule =
  { kind: 'constant' } | { kind: 'step'; everyEpochs: number; gamma: number } | { kind: 'cosine' };

export function parseSchedule(text: string): Schedule {
  const t = text.trim();
  if (t === 'constant') return { kind: 'constant' };
  if (t === 'cosine') return { kind: 'cosine' };
  const m = /^step(?::(\d+)(?::(\d*\.?\d+))?)?$/.exec(t);
  if (m) {
    const everyEpochs = m[1] ? Number(m[1]) : 10;
    const gamma = m[2] ? Number(m[2]) : 0.5;
    if (everyEpochs >= 1 && gamma > 0 && gamma <= 1) return { kind: 'step', everyEpochs, gamma };
  }
  throw new UserError(
    `unknown learning-rate schedule ${JSON.stringify(text)}: use constant, cosine, or step[:EPOCHS[:FACTOR]] (e.g. step:10:0.5)`,
  );
}

/** progress: the fraction of the run done, in [0, 1] (steps, or time under a time budget). */
export function learningRateAt(
  schedule: Schedule | undefined,
  lr: number,
  step: number,
  stepsPerEpoch: number,
  progress: number,
): number {
  if (!schedule || schedule.kind === 'constant') return lr;
  if (schedule.kind === 'step')
    return lr * schedule.gamma ** Math.floor(step / stepsPerEpoch / schedule.everyEpochs);
  return lr * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, Math.max(0, progress))));
}
