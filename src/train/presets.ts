import type { PresetName, TrainRunConfig } from './settings.ts';

// Named sets of run settings (`charlstm train --preset NAME`); a setting given explicitly on the
// command line wins over its preset.

export const PRESETS: Record<PresetName, Partial<TrainRunConfig>> = {
  default: {},
  /** exactly the notebook: no validation split */
  reference: { valSplit: 0 },
  /**
   * The recipe that reached the lowest held-out loss in ten minutes of training on the 2-core
   * development machine (bench/modes.ts measures it, bench/preset.ts as a user gets it).
   */
  'ten-minutes': {
    mode: 'sequence',
    layers: 2,
    units: 384,
    dropout: 0.5,
    learningRate: 0.015,
    schedule: { kind: 'cosine' },
    clip: 5,
    precision: 'auto',
    timeBudget: 600,
  },
};

/** A preset in a few words, from its settings (the --preset error lists them). */
export function describePreset(name: PresetName): string {
  if (name === 'reference') return 'the notebook exactly: no validation';
  const p = PRESETS[name];
  if (Object.keys(p).length === 0) return "charlstm train's defaults";
  const words: string[] = [];
  if (p.units) words.push(`${p.layers ?? 1} × LSTM(${p.units})`);
  if (p.dropout) words.push(`dropout ${p.dropout}`);
  if (p.mode === 'sequence') words.push('every position');
  if (p.learningRate) words.push(`${p.schedule?.kind ?? 'constant'} lr ${p.learningRate}`);
  if (p.clip) words.push(`clip ${p.clip}`);
  if (p.precision === 'auto') words.push('BF16 products where the CPU has them');
  if (p.timeBudget) words.push(`${p.timeBudget} s of training`);
  return words.join(', ');
}

/** `config` with the preset's settings, except those in `explicit` (given on the command line). */
export function withPreset<C extends Partial<TrainRunConfig>>(
  config: C,
  name: PresetName,
  explicit: ReadonlySet<string>,
): C {
  const out: Record<string, unknown> = { ...config };
  for (const [key, value] of Object.entries(PRESETS[name])) {
    if (!explicit.has(key)) out[key] = value;
  }
  return out as C;
}
