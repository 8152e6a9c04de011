// The built-in models' figures for the README (issue 14 part 1): for each model in pretrained/,
// its files' size, the command that trained it (its model.json's training.command), and the
// held-out loss `charlstm eval --model NAME --corpus <the corpus it was trained on> --json` gives
// (the part of the corpus that training held out, every character scored).
//
//   npm run bench:pretrained [-- --no-write]
// writes docs/pretrained.json (unless --no-write) and prints it; `node --import tsx bench/render.ts`
// then renders the README's bench:pretrained block from it.
//
// The CLI runs from the sources (as the tests run it) with the caller's environment: the
// nietzsche corpus is read from $CHARLSTM_DATA_DIR when it holds nietzsche.txt, else downloaded
// once into $CHARLSTM_HOME.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  BUILTIN_MODELS,
  builtinModelDir,
  describeModel,
} from '../src/checkpoint/builtin-models.ts';
import { runMachine } from './machine.ts';
import type { PretrainedResults } from './render.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const CLI = ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')];

function charlstm(args: string[]): string {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`charlstm ${args.join(' ')} exited with ${r.status}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'no-write': { type: 'boolean' } } });
  const started = new Date();
  const loadStart = os.loadavg();
  const models: PretrainedResults['models'] = [];
  for (const name of BUILTIN_MODELS) {
    const entry = await describeModel(name, builtinModelDir(name), true);
    if (entry.corpus === undefined || entry.command === undefined)
      throw new Error(`pretrained/${name}/model.json records no training corpus or command`);
    const args = ['eval', '--model', name, '--corpus', entry.corpus, '--json'];
    process.stderr.write(`charlstm ${args.join(' ')}\n`);
    const t0 = performance.now();
    const evaluation = JSON.parse(charlstm(args)) as PretrainedResults['models'][number]['eval'];
    const seconds = (performance.now() - t0) / 1000;
    models.push({
      name,
      bytes: entry.bytes,
      layers: entry.layers,
      units: entry.units,
      characters: entry.characters,
      corpus: entry.corpus,
      trainingCommand: entry.command,
      ...(entry.epochs !== undefined && { epochs: entry.epochs }),
      ...(entry.trainSeconds !== undefined && { trainSeconds: entry.trainSeconds }),
      evalCommand: `charlstm ${args.join(' ')}`,
      eval: evaluation,
      evalSeconds: Math.round(seconds * 10) / 10,
    });
  }
  const results: PretrainedResults = {
    format: 1,
    command: 'npm run bench:pretrained',
    date: started.toISOString(),
    machine: runMachine(loadStart),
    models,
  };
  const text = `${JSON.stringify(results, null, 2)}\n`;
  process.stdout.write(text);
  if (!values['no-write']) {
    writeFileSync(new URL('../docs/pretrained.json', import.meta.url), text);
    process.stderr.write('wrote docs/pretrained.json\n');
  }
}

await main();
