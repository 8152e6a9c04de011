import os from 'node:os';

import type { RunMachine } from './render.ts';

/** This machine as docs/pretrained.json and docs/finetune.json record it, the run ending now. */
export function runMachine(loadStart: number[]): RunMachine {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    loadAverage: { start: loadStart, end: os.loadavg() },
  };
}
