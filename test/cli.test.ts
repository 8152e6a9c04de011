import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { CHARLSTM_VERSION, saveModel } from '../src/checkpoint/model-format.ts';
import { CharModel } from '../src/model/char-model.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { cliEnv } from './helpers/cli.ts';

// The CLI as users run it: real processes on real model folders. Run from the sources through
// tsx, so that the tests never see a stale dist/.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VOCAB = [...' .abcdefgh'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function charlstm(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: ROOT, env: cliEnv() },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A usage error: exit code 2 and exactly one stderr line, `charlstm: error: ...` naming `what`. */
function assertUsageError(r: Result, what: string | RegExp): void {
  assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 2, `one line: ${JSON.stringify(r.stderr)}`);
  assert.equal(lines[1], '');
  assert.match(lines[0]!, /^charlstm: error: /);
  if (typeof what === 'string') assert.ok(lines[0]!.includes(what), `${lines[0]} names ${what}`);
  else assert.match(lines[0]!, what);
}

const replaceAt = (a: string[], i: number, v: string) => a.map((x, j) => (j === i ? v : x));

let tmp: string;
let modelDir: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'charlstm-cli-'));
  modelDir = path.join(tmp, 'model');
  const params = initParameters({ vocabSize: VOCAB.length, units: 8 }, new Rng(11));
  const meta = { vocab: VOCAB, lowercase: true, maxlen: 10, step: 3, units: 8, training: {} };
  await saveModel(modelDir, params, meta);
});

after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('charlstm', { concurrency: 4 }, () => {
  it('--version and --help', async () => {
    const v = await charlstm('--version');
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), CHARLSTM_VERSION);
    const h = await charlstm('--help');
    assert.equal(h.code, 0);
    for (const cmd of ['generate', 'predict', 'train']) assert.match(h.stdout, new RegExp(cmd));
    const g = await charlstm('generate', '--help');
    assert.equal(g.code, 0);
    assert.match(g.stdout, /--temperature/);
  });

  it('predict --json prints the vocabulary and the model’s distribution', async () => {
    const text = 'ab cd.efgh abc'; // longer than maxlen: the model reads its last 10 characters
    const r = await charlstm('predict', '--model', modelDir, '--text', text, '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout.split('\n').length, 2); // one line
    const out = JSON.parse(r.stdout) as { vocab: string[]; probs: number[] };
    assert.deepEqual(Object.keys(out), ['vocab', 'probs']);
    assert.deepEqual(out.vocab, VOCAB);
    assert.equal(out.probs.length, VOCAB.length);
    assert.ok(Math.abs(out.probs.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    const model = await CharModel.load(modelDir);
    assert.deepEqual(out.probs, Array.from(model.predict(text)));
    // A lowercase model lowercases the text first.
    const upper = await charlstm('predict', '-m', modelDir, '--text', text.toUpperCase(), '--json');
    assert.equal(upper.stdout, r.stdout);
  });

  it('predict prints a table of the most probable characters', async () => {
    const r = await charlstm('predict', '-m', modelDir, '--text', 'abc', '--top', '3');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4); // header + 3
    assert.match(lines[1]!, /^\s+1\s+"[ .a-h]"\s+0\.\d{6}$/);
  });

  it('generate with a seed prints the same text every time', async () => {
    const args = [
      'generate',
      '-m',
      modelDir,
      '--prompt',
      'abc de',
      '--length',
      '50',
      '--seed',
      '5',
    ];
    const [a, b, c] = await Promise.all([
      charlstm(...args),
      charlstm(...args),
      charlstm(...args.slice(0, -1), '6'),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stderr, '');
    assert.equal(a.stdout, b.stdout);
    assert.notEqual(a.stdout, c.stdout);
    assert.ok(a.stdout.endsWith('\n'));
    const text = a.stdout.slice(0, -1);
    assert.equal([...text].length, 50);
    assert.ok([...text].every((ch) => VOCAB.includes(ch)));
    // --show-prompt prints the (lowercased) prompt first, then the same continuation.
    const shown = await charlstm(...replaceAt(args, 4, 'ABC DE'), '--show-prompt');
    assert.equal(shown.stdout, 'abc de' + a.stdout);
  });

  it('generate --greedy ignores the seed; --length 0 prints only the newline', async () => {
    const base = ['generate', '-m', modelDir, '-p', 'hg', '-n', '20', '--greedy'];
    const [a, b, z] = await Promise.all([
      charlstm(...base, '--seed', '1'),
      charlstm(...base, '--seed', '2'),
      charlstm('generate', '-m', modelDir, '-p', 'a', '-n', '0'),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, b.stdout);
    assert.equal(z.stdout, '\n');
  });

  it('a closed stdout ends generation quietly', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'generate',
        '-m',
        modelDir,
        '-p',
        'a',
        '-n',
        '10000000',
      ],
      { cwd: ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => child.stdout.destroy()); // the reader goes away, like `| head`
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });

  describe('bad input: exit code 2 and one line naming the value', { concurrency: 4 }, () => {
    const gen = (...extra: string[]) => ['generate', '-m', '<model>', '-p', 'abc', ...extra];
    const cases: [string, string[], string | RegExp][] = [
      ['temperature 0', gen('--temperature', '0'), "'0'"],
      ['temperature -1', gen('--temperature', '-1'), "'-1'"],
      ['temperature abc', gen('--temperature', 'abc'), "'abc'"],
      ['temperature Infinity', gen('-t', 'Infinity'), "'Infinity'"],
      ['length -5', gen('--length', '-5'), "'-5'"],
      ['length 1e12', gen('--length', '1e12'), "'1e12'"],
      ['length 2.5', gen('--length', '2.5'), "'2.5'"],
      ['top-p 1.5', gen('--top-p', '1.5'), "'1.5'"],
      ['top-p 0', gen('--top-p', '0'), "'0'"],
      ['top-k 0', gen('--top-k', '0'), "'0'"],
      ['seed 1.5', gen('--seed', '1.5'), "'1.5'"],
      ['unknown option', gen('--frobnicate'), '--frobnicate'],
      ['unknown command', ['frobnicate'], 'frobnicate'],
      ['misspelt command', ['generat'], /unknown command 'generat'.*generate/],
      ['missing option argument', ['generate', '-m', '<model>', '-p'], '--prompt'],
      ['missing required option', ['generate', '-m', '<model>'], '--prompt'],
      ['extra argument', ['predict', '-m', '<model>', '--text', 'a', 'extra'], 'too many'],
      ['out-of-vocabulary prompt', replaceAt(gen(), 4, 'abXc!'), '"x", "!"'],
      ['empty prompt', replaceAt(gen(), 4, ''), 'prompt is empty'],
      ['out-of-vocabulary predict text', ['predict', '-m', '<model>', '--text', 'a*'], '"*"'],
      ['predict --top 0', ['predict', '-m', '<model>', '--text', 'a', '--top', '0'], "'0'"],
      ['missing model folder', ['generate', '-m', '<tmp>/nope', '-p', 'a'], /not found: .*nope/],
      [
        'corrupt model.json',
        ['predict', '-m', '<corrupt>', '--text', 'a'],
        /model\.json: not valid JSON/,
      ],
      ['missing weights', ['predict', '-m', '<noweights>', '--text', 'a'], /weights/],
    ];
    before(async () => {
      for (const [name, edit] of [
        [
          'corrupt',
          (dir: string) => fs.writeFile(path.join(dir, 'model.json'), '{"format": "layers-model",'),
        ],
        [
          'noweights',
          async (dir: string) => {
            for (const f of await fs.readdir(dir))
              if (f.endsWith('.bin')) await fs.rm(path.join(dir, f));
          },
        ],
      ] as const) {
        const dir = path.join(tmp, name);
        await fs.cp(modelDir, dir, { recursive: true });
        await edit(dir);
      }
    });
    for (const [name, args, what] of cases) {
      it(name, async () => {
        const resolved = args.map((a) =>
          a
            .replace('<model>', modelDir)
            .replace('<tmp>', tmp)
            .replace(/^<(\w+)>$/, (_, d: string) => path.join(tmp, d)),
        );
        assertUsageError(await charlstm(...resolved), what);
      });
    }
  });
});
