// Fine-tuning against training from scratch (issue 14 part 2), for the README: a pretrained
// model fine-tuned on a small text it was not trained on (`charlstm train --init-from MODEL`),
// and the same architecture trained from scratch on that text, each for the same wall-clock
// budget with the same settings and seed, both scored by `charlstm eval --json` on the text's
// held-out last 10% (the last model each run saved, not best/, which validation chose on that
// very part). The runs alternate (fine-tune, scratch, scratch, fine-tune, ... over --rounds), so
// both kinds see the same load on a shared machine.
//
//   npm run bench:finetune [-- --model moby-dick --bytes 100000 --seconds 60 --rounds 2 --no-write]
// writes docs/finetune.json (unless --no-write) and prints it; `node --import tsx bench/render.ts`
// then renders the README's bench:finetune block from it.
//
// The text: the first --bytes characters of the Nietzsche corpus (from $CHARLSTM_DATA_DIR when it
// holds nietzsche.txt, else a file given with --text), which brings characters Moby-Dick lacks
// (the straight quotes and the underscore), so the vocabulary extension is exercised. The CLI
// runs from the sources, as the tests run it, with the caller's environment.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { resolveModel } from '../src/checkpoint/builtin-models.ts';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { ENV_DATA_DIR } from '../src/defaults.ts';
import { runMachine } from './machine.ts';
import type { FinetuneResults, FinetuneRun } from './render.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const CLI = ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')];

function charlstm(args: string[]): string {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`charlstm ${args.join(' ')} exited with ${r.status}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'moby-dick' },
      text: { type: 'string' },
      bytes: { type: 'string', default: '100000' },
      seconds: { type: 'string', default: '60' },
      rounds: { type: 'string', default: '2' },
      seed: { type: 'string', default: '1' },
      'no-write': { type: 'boolean' },
    },
  });
  const characters = Number(values.bytes);
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const dataDir = process.env[ENV_DATA_DIR];
  const source =
    values.text ?? (dataDir !== undefined ? path.join(dataDir, 'nietzsche.txt') : undefined);
  if (source === undefined)
    throw new Error(`set ${ENV_DATA_DIR} to a folder with nietzsche.txt, or give --text FILE`);

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-bench-finetune-'));
  try {
    // the first `characters` characters (code points), as one file
    const text = [...readFileSync(source, 'utf8')].slice(0, characters).join('');
    const file = path.join(tmp, 'text.txt');
    writeFileSync(file, text);
    const { meta } = await loadModel(await resolveModel(values.model));
    const layers = meta.layers ?? 1;
    // the settings both runs share: the recipe the built-in models were trained with, for the
    // budget; the seed fixes the window order, dropout masks and (from scratch) the weights
    const shared = [
      '--preset',
      'ten-minutes',
      '--time-budget',
      String(seconds),
      '--seed',
      values.seed,
      '--sample-length',
      '0',
    ];
    const started = new Date();
    const loadStart = os.loadavg();
    const runs: FinetuneRun[] = [];
    const order: FinetuneRun['kind'][] = [];
    for (let i = 0; i < rounds; i++)
      order.push(
        ...(i % 2 === 0 ? (['finetune', 'scratch'] as const) : (['scratch', 'finetune'] as const)),
      );
    for (const [i, kind] of order.entries()) {
      const out = path.join(tmp, `${kind}-${i}`);
      const start =
        kind === 'finetune'
          ? ['--init-from', values.model]
          : [
              '--units',
              String(meta.units),
              '--layers',
              String(layers),
              '--maxlen',
              String(meta.maxlen),
            ];
      const args = ['train', '--corpus', 'TEXT', ...start, ...shared, '--out', 'DIR'];
      process.stderr.write(`charlstm ${args.join(' ')}\n`);
      const real = args.map((a) => (a === 'TEXT' ? file : a === 'DIR' ? out : a));
      const t0 = performance.now();
      const stdout = charlstm(real);
      const wallSeconds = (performance.now() - t0) / 1000;
      const evalArgs = ['eval', '--model', out, '--corpus', file, '--json'];
      const evaluation = JSON.parse(charlstm(evalArgs)) as FinetuneRun['eval'] & { model?: string };
      delete evaluation.model; // a temporary folder
      const saved = (await loadModel(out)).meta;
      const where = /^model saved to .* \((.*)\)$/m.exec(stdout)?.[1];
      runs.push({
        kind,
        command: `charlstm ${args.join(' ')}`,
        ...(kind === 'finetune' && {
          starting: /^starting from .*$/m.exec(stdout)?.[0] ?? 'starting from ?',
        }),
        trainSeconds: Number(saved.training.trainSeconds),
        wallSeconds: Math.round(wallSeconds * 10) / 10,
        reached: where ?? 'unknown',
        vocabulary: saved.vocab.length,
        eval: evaluation,
      });
      process.stderr.write(
        `${kind}: ${evaluation.loss.toFixed(4)} nats (${evaluation.bpc.toFixed(3)} bits/char) after ${where}\n`,
      );
    }
    const results: FinetuneResults = {
      format: 1,
      command: 'npm run bench:finetune',
      date: started.toISOString(),
      machine: runMachine(loadStart),
      model: {
        name: values.model,
        layers,
        units: meta.units,
        maxlen: meta.maxlen,
        characters: meta.vocab.length,
        ...(typeof meta.training.command === 'string' && {
          trainingCommand: meta.training.command,
        }),
      },
      text: {
        source: values.text === undefined ? 'nietzsche' : path.basename(source),
        characters: [...text].length,
      },
      seconds,
      runs,
    };
    const json = `${JSON.stringify(results, null, 2)}\n`;
    process.stdout.write(json);
    if (!values['no-write']) {
      writeFileSync(new URL('../docs/finetune.json', import.meta.url), json);
      process.stderr.write('wrote docs/finetune.json\n');
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
