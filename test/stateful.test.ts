import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { UserError } from '../src/errors.ts';
import { generate, type GenerateOptions } from '../src/generate/generate.ts';
import { Drawer, generateStateful } from '../src/generate/stateful.ts';
import { generateText } from '../src/generate/window.ts';
import { CharModel } from '../src/model/char-model.ts';
import { argmax, type Probs } from '../src/sampling/processors.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler, type SamplerOptions } from '../src/sampling/sampler.ts';
import { cliEnv } from './helpers/cli.ts';
import { randomCharModel } from './helpers/models.ts';

const VOCAB = [...' .abcdefgh'];
const MAXLEN = 10;
const UNITS = 12;

function makeModel(seed = 1): CharModel {
  return randomCharModel({ vocab: VOCAB, units: UNITS, maxlen: MAXLEN, seed });
}

async function collect(chunks: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

const text = async (model: CharModel, opts: GenerateOptions): Promise<string> =>
  (await collect(generate(model, opts))).join('');

before(async () => {
  await kernelModule();
});

describe('Drawer', () => {
  // Distributions with zeros, exact ties and float32 rounding, as the model gives them.
  function distributions(rng: Rng, n: number): Probs[] {
    const out: Probs[] = [];
    for (let k = 0; k < n; k++) {
      const V = 1 + rng.int(12);
      const p = new Float32Array(V);
      for (let i = 0; i < V; i++) {
        const r = rng.next();
        p[i] = r < 0.15 ? 0 : r < 0.3 ? 0.25 : rng.next() ** 3;
      }
      if (p.every((x) => x === 0)) p[rng.int(V)] = 1;
      out.push(p);
    }
    return out;
  }
  const configs: SamplerOptions[] = [
    {},
    { greedy: true },
    { temperature: 1 },
    { temperature: 0.5 },
    { temperature: 0.2, greedy: true },
    { temperature: 1.2 },
    { topK: 1 },
    { topK: 3 },
    { topK: 100 },
    { topP: 1 },
    { topP: 0.5 },
    { topP: 0.9, greedy: true },
    { temperature: 0.7, topK: 4, topP: 0.8 },
    { temperature: 1, topK: 2, topP: 1 },
  ];

  for (const options of configs) {
    it(`draws exactly what Sampler.next draws: ${JSON.stringify(options)}`, () => {
      const sampler = new Sampler(options);
      const drawers = new Map<number, Drawer>();
      const a = new Rng(11);
      const b = new Rng(11);
      for (const p of distributions(new Rng(3), 400)) {
        let d = drawers.get(p.length);
        if (!d) drawers.set(p.length, (d = new Drawer(sampler, p.length)));
        assert.equal(d.next(p, a), sampler.next(p, b), `distribution ${Array.from(p).join(',')}`);
        assert.deepEqual(a.getState(), b.getState()); // the same random numbers consumed
      }
    });
  }

  it('refuses what Sampler refuses', () => {
    const d = new Drawer(new Sampler({ temperature: 0.5 }), 3);
    assert.throws(() => d.next([0, 0, 0], new Rng(1)), RangeError);
    assert.throws(() => d.next([0.5, NaN, 0.5], new Rng(1)), RangeError);
    assert.throws(() => d.next([0.5, 0.5], new Rng(1)), /over 3 characters, got 2/);
    // the model's own Float32Array (the fused temperature path): Sampler's message, word for word
    const sampler = new Sampler({ temperature: 0.5 });
    for (const bad of [
      [0, 0, 0],
      [0.5, NaN, 0.5],
      [0.2, -0.1, 0.9],
      [Infinity, 0, 0],
    ]) {
      const p = Float32Array.from(bad);
      let expected = '';
      try {
        sampler.next(p, new Rng(1));
      } catch (err) {
        expected = (err as Error).message;
      }
      assert.ok(expected !== '', `Sampler accepts ${bad.join(',')}`);
      assert.throws(() => d.next(p, new Rng(1)), { name: 'RangeError', message: expected });
    }
  });
});

describe('StatefulStepper', () => {
  it('feeding a prompt step by step gives the window forward of the prompt from a zero state', () => {
    const model = makeModel();
    for (const prompt of ['a', 'abc', 'hg.fe dc', 'abcdefgh. ']) {
      // prompt length <= maxlen: the whole prompt is the window
      const stepper = model.stepper();
      const tokens = model.vocab.encode(prompt);
      const probs = stepper.feed(tokens).slice();
      stepper.release();
      assert.deepEqual(probs, model.predict(prompt), prompt); // the same kernels, the same numbers
      assert.equal(argmax(probs), argmax(model.predict(prompt)));
    }
  });

  it('starts from the zero state, and getState/setState restore a point in the text', () => {
    const model = makeModel(2);
    const s = model.stepper();
    const zero = s.getState();
    assert.ok(zero.h.every((x) => x === 0) && zero.c.every((x) => x === 0));
    // at the zero state the distribution is softmax(dense bias)
    const bd = Array.from(model.params.denseBias);
    const e = bd.map((x) => Math.exp(x - Math.max(...bd)));
    const total = e.reduce((a, b) => a + b, 0);
    const z = s.reset();
    e.forEach((x, i) => assert.ok(Math.abs(z[i]! - x / total) < 1e-6));

    s.feed(model.vocab.encode('abc def'));
    const saved = s.getState();
    const next = s.step(model.vocab.indexOf('g')!).slice();
    s.feed(model.vocab.encode('hhh...'));
    s.setState(saved.h, saved.c);
    assert.deepEqual(s.step(model.vocab.indexOf('g')!), next);
    assert.throws(() => s.setState(new Float32Array(3), saved.c), RangeError);
    s.release();
    s.release(); // idempotent
    assert.throws(() => s.step(0), /released/);
  });

  it('steppers are independent of each other and of predict()', () => {
    const model = makeModel(3);
    const a = model.stepper();
    const b = model.stepper();
    a.feed(model.vocab.encode('abc'));
    model.predict('hhhhhhhh');
    b.feed(model.vocab.encode('gfe'));
    const pa = a.step(model.vocab.indexOf('d')!).slice();
    assert.deepEqual(pa, model.predict('abcd'));
    a.release();
    b.release();
    const c = model.stepper(); // starts from the zero state, whatever the others left
    assert.deepEqual(c.feed(model.vocab.encode('abcd')), model.predict('abcd'));
    c.release();
    // streams interleaved step by step give what each gives alone
    const alone = (text: string): Float32Array[] => {
      const s = model.stepper();
      const out = [...model.vocab.encode(text)].map((t) => s.step(t).slice());
      s.release();
      return out;
    };
    const [t1, t2] = ['abc.defgh ab', 'hhgg ffe.ddc'];
    const [s1, s2] = [model.stepper(), model.stepper()];
    const [e1, e2] = [model.vocab.encode(t1), model.vocab.encode(t2)];
    const got1: Float32Array[] = [];
    const got2: Float32Array[] = [];
    for (let i = 0; i < e1.length; i++) {
      got1.push(s1.step(e1[i]!).slice());
      got2.push(s2.step(e2[i]!).slice());
      if (i === 5) {
        const parked = s1.getState(); // s1's state is parked: s2 has the core
        const fresh = model.stepper();
        fresh.feed(e1.subarray(0, 6));
        assert.deepEqual(parked, fresh.getState());
        fresh.release();
      }
    }
    assert.deepEqual(got1, alone(t1));
    assert.deepEqual(got2, alone(t2));
    s1.release();
    s2.release();
  });

  it('sees new weights after syncParams', () => {
    const model = makeModel(4);
    const s = model.stepper();
    model.params.flat.set(makeModel(5).params.flat);
    model.syncParams();
    assert.deepEqual(s.feed(model.vocab.encode('abc')), makeModel(5).predict('abc'));
    s.release();
  });
});

describe('generate (stateful mode)', () => {
  it('equals window mode while the text still fits in one window', async () => {
    // Text of at most maxlen characters: the window is the whole text from a zero state, which is
    // the stateful stream's state. So the first maxlen - prompt + 1 characters agree exactly.
    const model = makeModel();
    for (const [prompt, temperature] of [
      ['a', 1],
      ['abc', 0.5],
      ['hg.fe', 1.2],
    ] as const) {
      const n = MAXLEN - prompt.length + 1;
      const opts = { prompt, length: n, temperature, seed: 5 };
      const win = await text(model, { ...opts, mode: 'window' });
      const st = await text(model, { ...opts, mode: 'stateful' });
      assert.equal(st, win, prompt);
      assert.equal([...st].length, n);
    }
  });

  it('carries the state beyond maxlen: each character follows from the whole text so far', async () => {
    const model = makeModel(6);
    const prompt = 'abc. def gh abc'; // longer than maxlen
    const out = await text(model, { prompt, length: 30, greedy: true, mode: 'stateful' });
    // recompute greedily with a stepper over the whole text, never re-read
    const s = model.stepper();
    let probs = s.feed(model.vocab.encode(prompt));
    let expected = '';
    for (let i = 0; i < 30; i++) {
      const next = argmax(probs);
      expected += VOCAB[next];
      probs = s.step(next);
    }
    s.release();
    assert.equal(out, expected);
    // and it is not the window mode's text
    assert.notEqual(out, await text(model, { prompt, length: 30, greedy: true, mode: 'window' }));
  });

  it('the same seed gives the same text, whatever the chunk sizes', async () => {
    const model = makeModel(7);
    const opts: GenerateOptions = {
      prompt: 'abc',
      length: 300,
      temperature: 0.8,
      seed: 42,
      mode: 'stateful',
    };
    const a = await collect(generate(model, opts));
    const b = await collect(generate(model, { ...opts, chunkChars: 7 }));
    assert.ok(a.length >= 5 && a.every((c) => [...c].length <= 64));
    assert.ok(b.length >= 43 && b.every((c) => [...c].length <= 7));
    assert.equal(a.join(''), b.join(''));
    assert.equal([...a.join('')].length, 300);
    assert.notEqual(a.join(''), await text(model, { ...opts, seed: 43 }));
    // the synchronous form agrees
    assert.equal(
      generateStateful(model, { prompt: 'abc', length: 300, temperature: 0.8, seed: 42 }),
      a.join(''),
    );
  });

  it('top-k 1 is greedy, in both modes', async () => {
    const model = makeModel(8);
    for (const mode of ['window', 'stateful'] as const) {
      const greedy = await text(model, { prompt: 'ab', length: 40, greedy: true, mode });
      for (const seed of [1, 2]) {
        assert.equal(
          await text(model, { prompt: 'ab', length: 40, topK: 1, seed, mode }),
          greedy,
          mode,
        );
        assert.equal(
          await text(model, { prompt: 'ab', length: 40, topK: 1, temperature: 1.5, seed, mode }),
          greedy,
          mode,
        );
      }
    }
  });

  it('window mode through generate() is the reference generation (generateText)', async () => {
    const model = makeModel(9);
    const opts = { prompt: 'abc de', length: 50, temperature: 0.5, topP: 0.9, seed: 3 };
    assert.equal(await text(model, { ...opts, mode: 'window' }), generateText(model, opts));
  });

  it('takes an empty prompt (from the zero state) and a prompt of any length', async () => {
    const model = makeModel(10);
    const g = generate(model, { prompt: '', length: 20, greedy: true, mode: 'stateful' });
    const out = (await collect(g)).join('');
    assert.equal(out[0], VOCAB[argmax(model.zeroStateProbs())]);
    assert.equal([...out].length, 20);
    const long = 'abc def. '.repeat(2000); // 18,000 characters, fed in slices
    const t0 = performance.now();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      const res = await text(model, {
        prompt: long,
        length: 10,
        seed: 1,
        mode: 'stateful',
        chunkMs: 2,
      });
      assert.equal([...res].length, 10);
    } finally {
      clearInterval(timer);
    }
    if (performance.now() - t0 > 20)
      assert.ok(ticks > 0, 'the event loop turned while the prompt was fed');
  });

  it('checks everything at once', () => {
    const model = makeModel();
    const bad = (
      opts: GenerateOptions,
      re: RegExp,
      type: new (...a: never[]) => Error = UserError,
    ) =>
      assert.throws(
        () => generate(model, opts),
        (e: unknown) => e instanceof type && re.test((e as Error).message),
      );
    bad({ prompt: '', mode: 'window' }, /prompt is empty: window mode needs/);
    bad({ prompt: 'aXb' }, /outside the model's vocabulary: "x"$/); // lowercased first
    bad({ prompt: 'a!b?' }, /"!", "\?"/);
    bad({ prompt: 'a', mode: 'fast' as never }, /mode must be "window" or "stateful"/);
    bad({ prompt: 'a', length: -1 }, /length must be an integer/);
    bad({ prompt: 'a', temperature: 0 }, /temperature/, RangeError);
    bad({ prompt: 'a', topP: 2 }, /top-p/, RangeError);
    bad({ prompt: 'a', unknown: 'drop' as never }, /unknown must be/);
    bad(
      { prompt: '!!', unknown: 'skip', mode: 'window' },
      /once the characters outside the vocabulary are dropped/,
    );
  });

  it('drops unknown characters with unknown: "skip"', async () => {
    const model = makeModel(11);
    const g = generate(model, { prompt: 'A!b?c', unknown: 'skip', length: 15, seed: 4 });
    assert.equal(g.prompt, 'abc');
    assert.equal(g.mode, 'window');
    assert.equal(g.seed, 4);
    assert.equal(
      (await collect(g)).join(''),
      await text(model, { prompt: 'abc', length: 15, seed: 4 }),
    );
  });

  it('stops promptly when aborted, and frees its engine core', async () => {
    const model = makeModel(12);
    for (const mode of ['window', 'stateful'] as const) {
      const ctl = new AbortController();
      const g = generate(model, {
        prompt: 'abc',
        length: 1_000_000,
        mode,
        signal: ctl.signal,
        chunkChars: 16,
      });
      let got = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of g) {
            got += chunk.length;
            if (got >= 32) ctl.abort();
          }
        })(),
        (e: unknown) => e instanceof Error && e.name === 'AbortError',
      );
      assert.ok(got >= 32 && got <= 48, `${mode}: ${got} characters after the abort`);
    }
    // an already aborted signal stops before anything is generated
    const ctl = new AbortController();
    ctl.abort();
    await assert.rejects(
      collect(generate(model, { prompt: 'a', length: 5, signal: ctl.signal, mode: 'stateful' })),
      {
        name: 'AbortError',
      },
    );
    // leaving a for-await loop early also ends the stream; a Generation is iterated once only
    const g = generate(model, { prompt: 'a', length: 1000, mode: 'stateful', chunkChars: 10 });
    const it = g[Symbol.asyncIterator]();
    assert.equal(
      (await it.next()).value,
      await text(model, { prompt: 'a', length: 10, mode: 'stateful', seed: g.seed }),
    );
    await it.return?.(); // what `break` in a for-await loop does
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    assert.throws(() => g[Symbol.asyncIterator](), /only once/);
    // a new stream still starts from the zero state
    const s = model.stepper();
    assert.ok(s.getState().h.every((x) => x === 0));
    s.release();
  });
});

describe('charlstm generate --mode', () => {
  const ROOT = fileURLToPath(new URL('..', import.meta.url));
  const run = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'generate', ...args],
        { cwd: ROOT, env: cliEnv() },
        (e, stdout, stderr) => resolve({ code: e ? Number(e.code) : 0, stdout, stderr }),
      );
    });

  it('streams both modes through generate(), with every sampling option', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-stateful-'));
    try {
      const model = makeModel(13);
      await saveModel(tmp, model.params, model.meta);
      const cases: [string[], GenerateOptions][] = [
        [['--mode', 'stateful'], { mode: 'stateful', temperature: 0.5 }],
        [['--mode', 'window'], { mode: 'window', temperature: 0.5 }],
        [[], { mode: 'window', temperature: 0.5 }], // the default
        [
          ['--mode', 'stateful', '-t', '1.2', '--top-k', '4', '--top-p', '0.9'],
          { mode: 'stateful', temperature: 1.2, topK: 4, topP: 0.9 },
        ],
        [['--mode', 'stateful', '--greedy'], { mode: 'stateful', temperature: 0.5, greedy: true }],
      ];
      const results = await Promise.all(
        cases.map(([flags]) => run('-m', tmp, '-p', 'ABC', '-n', '5000', '--seed', '9', ...flags)),
      );
      for (const [i, [flags, opts]] of cases.entries()) {
        const r = results[i]!;
        assert.equal(r.code, 0, r.stderr);
        const expected = await text(model, { prompt: 'ABC', length: 5000, seed: 9, ...opts });
        assert.equal(r.stdout, expected + '\n', flags.join(' '));
      }
      const bad = await run('-m', tmp, '-p', 'abc', '--mode', 'fast');
      assert.equal(bad.code, 2);
      assert.match(
        bad.stderr,
        /^charlstm: error: option '--mode <mode>' argument 'fast' is invalid/,
      );
      const empty = await run('-m', tmp, '-p', '', '--mode', 'window');
      assert.equal(empty.code, 2);
      assert.match(empty.stderr, /prompt is empty/);
      const fromNothing = await run('-m', tmp, '-p', '', '--mode', 'stateful', '-n', '20');
      assert.equal(fromNothing.code, 0, fromNothing.stderr);
      assert.equal([...fromNothing.stdout].length, 21);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
