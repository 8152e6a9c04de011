// The models shipped in pretrained/ (issue 14 part 1): what `--model NAME` resolves to, the CLI
// on a built-in name (generate, models, serve with no --model), and the shipped files themselves:
// their sha256 is the one their model.json records, TF.js loads them as the layers format and
// predicts what we predict, their metadata records the command that trained them, and the
// README's table is what docs/pretrained.json renders to.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import * as tf from '@tensorflow/tfjs';

import {
  BUILTIN_MODELS,
  builtinModelDir,
  pretrainedDir,
  resolveModel,
} from '../src/checkpoint/builtin-models.ts';
import { MODEL_JSON, saveModel } from '../src/checkpoint/model-format.ts';
import { UserError } from '../src/errors.ts';
import { generate } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Rng } from '../src/sampling/rng.ts';
import { PRETRAINED_BLOCK, readBlock, readPretrained, renderPretrained } from '../bench/render.ts';
import { spawnSync } from 'node:child_process';

import { GENERATE } from '../src/defaults.ts';
import { REPO, charlstm as charlstmHere, cliEnv, spawnCharlstm } from './helpers/cli.ts';
import { randomCharModel } from './helpers/models.ts';
import { ensureCpuBackend } from './helpers/tfjs-oracle.ts';

interface RawModelJson {
  modelTopology: tf.io.ModelJSON['modelTopology'];
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  userDefinedMetadata: { weightsSha256: string; training: Record<string, unknown> };
}

const readJson = (dir: string): RawModelJson =>
  JSON.parse(readFileSync(path.join(dir, MODEL_JSON), 'utf8')) as RawModelJson;

/**
 * `charlstm ...args` in `cwd` (default: the repository). The helper's runner imports tsx by name,
 * which resolves from the cwd; here tsx is imported by its path, so that any folder can be the cwd.
 */
function charlstm(
  args: string[],
  opts: { cwd?: string } = {},
): { code: number | null; stdout: string; stderr: string } {
  if (opts.cwd === undefined) return charlstmHere(args);
  const main = path.join(REPO, 'src', 'cli', 'main.ts');
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), main, ...args], {
    cwd: opts.cwd,
    encoding: 'utf8',
    env: cliEnv(),
    timeout: 240_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-builtin-'));

/** A folder `cwd` holding a small random model at `cwd/rel`. */
async function localModel(cwd: string, rel: string): Promise<void> {
  const m = randomCharModel({ vocab: [...'abc '], units: 4, maxlen: 5, seed: 3 });
  await saveModel(path.join(cwd, rel), m.params, { ...m.meta, training: { corpus: 'tiny.txt' } });
}

describe('resolveModel', () => {
  it('a built-in name is the package folder pretrained/<name>, found from the module', async () => {
    assert.equal(pretrainedDir(), path.join(REPO, 'pretrained'));
    for (const name of BUILTIN_MODELS) {
      assert.equal(await resolveModel(name), path.join(REPO, 'pretrained', name));
    }
  });

  it('a path is returned as given; ./name is always the folder', async () => {
    const dir = path.join(tmp, 'some-model');
    await localModel(tmp, 'some-model');
    assert.equal(await resolveModel(dir), dir);
    const rel = path.relative(process.cwd(), builtinModelDir('moby-dick'));
    assert.equal(await resolveModel(rel), rel);
  });

  it('neither a folder nor a built-in name: one line naming it and the built-in models', async () => {
    for (const bad of ['moby', '', path.join(tmp, 'missing')]) {
      await assert.rejects(resolveModel(bad), (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.equal(
          err.message,
          `model folder not found: ${JSON.stringify(bad)}; the built-in models are moby-dick, nietzsche`,
        );
        return true;
      });
    }
  });

  it('a folder named like a built-in in the current folder wins only when it holds a model.json', () => {
    const cwd = mkdtempSync(path.join(tmp, 'cwd-'));
    mkdirSync(path.join(cwd, 'nietzsche')); // a folder of texts, say: not a model
    const args = ['predict', '--text', 'abc', '--json'];
    const builtin = charlstm([...args, '--model', 'nietzsche'], { cwd });
    assert.equal(builtin.code, 0, builtin.stderr);
    assert.equal((JSON.parse(builtin.stdout) as { vocab: string[] }).vocab.length, 57);
    return localModel(cwd, 'moby-dick').then(() => {
      const local = charlstm([...args, '--model', 'moby-dick'], { cwd });
      assert.equal(local.code, 0, local.stderr);
      assert.deepEqual((JSON.parse(local.stdout) as { vocab: string[] }).vocab, [...'abc ']);
    });
  });
});

describe('the CLI on a built-in model', () => {
  it('generate --model moby-dick prints what the library generates with the same seed', async () => {
    const prompt = 'call me ';
    const r = charlstm([
      'generate',
      '--model',
      'moby-dick',
      '--prompt',
      prompt,
      '-n',
      '80',
      '--seed',
      '7',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const model = await CharModel.load('moby-dick');
    let want = '';
    // as the CLI's defaults: window mode, its temperature
    const opts = {
      prompt,
      length: 80,
      seed: 7,
      mode: 'window',
      temperature: GENERATE.temperature,
    } as const;
    for await (const chunk of generate(model, opts)) want += chunk;
    assert.equal([...want].length, 80);
    assert.equal(r.stdout, `${want}\n`);
  });

  it('charlstm models lists the built-in models and those under ./models, also as JSON', async () => {
    const cwd = mkdtempSync(path.join(tmp, 'models-'));
    await localModel(cwd, path.join('models', 'mine'));
    mkdirSync(path.join(cwd, 'models', 'empty')); // no model.json: not listed
    const r = charlstm(['models', '--json'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const { models } = JSON.parse(r.stdout) as {
      models: {
        name: string;
        builtin: boolean;
        dir: string;
        layers: number;
        units: number;
        characters: number;
        bytes: number;
        corpus?: string;
        epochs?: number;
        command?: string;
      }[];
    };
    assert.deepEqual(
      models.map((m) => [m.name, m.builtin]),
      [
        ['moby-dick', true],
        ['nietzsche', true],
        [path.join('models', 'mine'), false],
      ],
    );
    for (const m of models.slice(0, 2)) {
      const dir = builtinModelDir(m.name as 'moby-dick');
      const json = readJson(dir);
      assert.equal(m.dir, dir);
      assert.equal(m.command, json.userDefinedMetadata.training.command);
      assert.equal(m.corpus, m.name);
      assert.deepEqual([m.layers, m.units], [2, 256]);
      const files = readdirSync(dir);
      const bytes = files.reduce((s, f) => s + readFileSync(path.join(dir, f)).length, 0);
      assert.equal(m.bytes, bytes);
    }
    const mine = models[2]!;
    assert.deepEqual(
      [mine.layers, mine.units, mine.characters, mine.corpus, mine.dir],
      [1, 4, 4, 'tiny.txt', path.join(cwd, 'models', 'mine')],
    );

    const table = charlstm(['models'], { cwd });
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(
      lines[0]!,
      /^name +kind +layers × units +characters +size +trained on +epochs +training +held-out loss +folder$/,
    );
    // the time budget ended both runs before their first epoch's end, so no held-out loss is recorded
    assert.match(
      lines[1]!,
      /^moby-dick +built-in +2 × 256 +57 +3\.5 MB +moby-dick +0 +600 s +- +\//,
    );
    assert.match(
      lines[2]!,
      /^nietzsche +built-in +2 × 256 +57 +3\.5 MB +nietzsche +0 +60\d s +- +\//,
    );
    assert.match(lines[3]!, /^models\/mine +local +1 × 4 +4 +0\.0 MB +tiny\.txt +- +- +- +\//);
    assert.equal(lines.length, 4);
  });

  it('serve with no --model serves the built-in models, the first the default, and says so', async () => {
    const child = spawnCharlstm(['serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d));
    try {
      while (!out.includes('\n')) {
        const [d] = (await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')])) as [
          Buffer,
        ];
        if (child.exitCode !== null) assert.fail(`serve exited: ${err}`);
        out += d;
      }
      const m =
        /^charlstm: serving (http:\/\/127\.0\.0\.1:\d+) \(the built-in models, as no --model was given: moby-dick, nietzsche\)/.exec(
          out,
        );
      assert.ok(m, out);
      const list = (await (await fetch(`${m[1]}/v1/models`)).json()) as {
        models: { name: string }[];
        default?: string;
      };
      assert.deepEqual(
        list.models.map((x) => x.name),
        ['moby-dick', 'nietzsche'],
      );
      assert.equal(list.default, 'moby-dick');
      const res = await fetch(`${m[1]}/v1/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'call me ', length: 20, seed: 1 }),
      });
      assert.equal(res.status, 200);
      assert.equal([...((await res.json()) as { text: string }).text].length, 20);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
  });
});

describe('the shipped files', () => {
  for (const name of BUILTIN_MODELS) {
    const dir = builtinModelDir(name);

    it(`${name}: only model.json and its weights, whose sha256 model.json records`, () => {
      const json = readJson(dir);
      const paths = json.weightsManifest.flatMap((g) => g.paths);
      assert.deepEqual(readdirSync(dir).sort(), [MODEL_JSON, ...paths].sort());
      const sha = createHash('sha256');
      for (const p of paths) sha.update(readFileSync(path.join(dir, p)));
      assert.equal(sha.digest('hex'), json.userDefinedMetadata.weightsSha256);
    });

    it(`${name}: its metadata records the charlstm train command that trained it on ${name}`, () => {
      const { training } = readJson(dir).userDefinedMetadata;
      assert.equal(training.corpus, name);
      assert.equal(
        training.command,
        `charlstm train --corpus ${name} --preset ten-minutes --seed 1 --out ${name}`,
      );
      // the ten-minutes preset's budget: 600 s of training steps (within the first epoch here)
      assert.ok(typeof training.epochs === 'number', 'epochs recorded');
      assert.ok(typeof training.trainSeconds === 'number' && training.trainSeconds >= 600);
    });

    it(`${name}: TF.js loads it as a layers model and predicts what CharModel predicts`, async () => {
      await ensureCpuBackend();
      const json = readJson(dir);
      const group = json.weightsManifest[0]!;
      const buf = readFileSync(path.join(dir, group.paths[0]!));
      const tfModel = await tf.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: json.modelTopology,
          weightSpecs: group.weights,
          weightData: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength),
        }),
      );
      const ours = await CharModel.load(name);
      try {
        const V = ours.vocab.chars.length;
        const T = ours.maxlen;
        assert.deepEqual(tfModel.inputs[0]!.shape, [null, T, V]);
        const rng = new Rng(11);
        const ids = Array.from({ length: T }, () => rng.int(V));
        const x = new Float32Array(T * V);
        ids.forEach((c, t) => (x[t * V + c] = 1));
        const theirs = tf.tidy(() =>
          (tfModel.predict(tf.tensor3d(x, [1, T, V])) as tf.Tensor).dataSync(),
        );
        const mine = ours.predict(ids.map((i) => ours.vocab.chars[i]).join(''));
        let maxErr = 0;
        for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs(theirs[v]! - mine[v]!));
        assert.ok(maxErr < 1e-5, `max |tfjs - ours| = ${maxErr}`);
      } finally {
        tfModel.dispose();
      }
    });
  }
});

it("the README's built-in models table is what docs/pretrained.json renders to", () => {
  const r = readPretrained();
  assert.deepEqual(
    r.models.map((m) => m.name),
    [...BUILTIN_MODELS],
  );
  for (const m of r.models) {
    const json = readJson(builtinModelDir(m.name as 'moby-dick'));
    assert.equal(m.trainingCommand, json.userDefinedMetadata.training.command);
  }
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  assert.equal(
    readBlock(readme, PRETRAINED_BLOCK),
    renderPretrained(r),
    "README's bench:pretrained block differs from docs/pretrained.json: run node --import tsx bench/render.ts",
  );
});
