import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { FastifyInstance } from 'fastify';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { DECODING, GENERATE } from '../src/defaults.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { UserError } from '../src/errors.ts';
import {
  BeamSearch,
  StopMatcher,
  beamSearch,
  checkStops,
  sampleSeed,
} from '../src/generate/decoding.ts';
import { generate, generateSamples, type GenerateOptions } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { buildServer } from '../src/server/app.ts';
import { loadModels } from '../src/server/served-models.ts';
import { charlstm } from './helpers/cli.ts';
import { randomCharModel } from './helpers/models.ts';

// Stop sequences, n samples and beam search (issue 15 part 2), each against an independent
// expectation: the plain generation cut by hand, a generation with the derived seed, and every
// sequence of a tiny vocabulary scored by brute force.

before(async () => {
  await kernelModule();
});

async function collect(gen: AsyncIterable<string>): Promise<string[]> {
  const chunks: string[] = [];
  for await (const c of gen) chunks.push(c);
  return chunks;
}

async function text(model: CharModel, opts: GenerateOptions): Promise<string> {
  return (await collect(generate(model, opts))).join('');
}

describe('StopMatcher', () => {
  /** The matcher's output for `pieces`, with the flush at the end unless it stopped. */
  function run(stops: string[], pieces: string[]): { out: string[]; stopped: boolean } {
    const m = new StopMatcher(stops);
    const out = pieces.map((p) => m.push(p));
    if (!m.stopped) out.push(m.flush());
    return { out, stopped: m.stopped };
  }

  it('holds back exactly the end that may start a stop sequence, and drops the match', () => {
    assert.deepEqual(run(['bcd'], ['xab', 'c', 'q', 'bc', 'de']), {
      out: ['xa', '', 'bcq', '', ''],
      stopped: true,
    });
    // "ab" then "abc": the held "ab" was no match, the second one is
    assert.deepEqual(run(['abc'], ['ab', 'ab', 'c!']), { out: ['', 'ab', ''], stopped: true });
    assert.deepEqual(run(['\n\n', 'END'], ['one\n', 'two E', 'N', 'x']), {
      out: ['one', '\ntwo ', '', 'ENx', ''],
      stopped: false,
    });
  });

  it('cuts at the earliest match of any sequence, whatever the pieces', () => {
    const whole = 'the cat sat. then the dog ran.';
    const stops = ['dog', 'sat.', 'at. t'];
    for (let cut = 0; cut <= whole.length; cut++) {
      const { out, stopped } = run(stops, [whole.slice(0, cut), whole.slice(cut)]);
      assert.equal(out.join(''), 'the cat ', `cut at ${cut}`);
      assert.equal(stopped, true);
    }
    const chars = run(stops, [...whole]);
    assert.equal(chars.out.join(''), 'the cat ');
    assert.equal(run(['zz'], [...whole]).out.join(''), whole);
  });

  it('refuses empty, too long or too many sequences with a one-line UserError', () => {
    assert.deepEqual(checkStops('a'), ['a']);
    assert.deepEqual(checkStops(['a', 'bc']), ['a', 'bc']);
    assert.throws(() => checkStops(''), /stop sequence must be a string of 1 to 100 .* got ""/);
    assert.throws(() => checkStops(['a', 3]), /got 3$/);
    assert.throws(() => checkStops('x'.repeat(101)), UserError);
    assert.throws(
      () => checkStops(Array.from({ length: DECODING.maxStops + 1 }, () => 'a')),
      /at most 8 sequences, got 9/,
    );
  });
});

const VOCAB = [...' .abcdefgh'];
const small = (seed = 3) => randomCharModel({ vocab: VOCAB, units: 8, maxlen: 6, seed });

describe('generate() with stop', () => {
  for (const mode of ['window', 'stateful'] as const) {
    it(`${mode}: ends just before the first stop sequence, the same for any chunk size`, async () => {
      const model = small();
      const base: GenerateOptions = { prompt: 'ab', length: 300, seed: 7, mode };
      const plain = await text(model, base);
      // two stops that the plain text holds, and where it holds them
      const stops = [plain.slice(140, 143), plain.slice(90, 92)];
      const at = Math.min(plain.indexOf(stops[0]!), plain.indexOf(stops[1]!));
      assert.ok(at > 0 && at <= 140);
      for (const chunkChars of [1, 5, 64]) {
        const gen = generate(model, { ...base, stop: stops, chunkChars });
        assert.equal(gen.finishReason, undefined);
        const chunks = await collect(gen);
        assert.equal(chunks.join(''), plain.slice(0, at), `chunkChars ${chunkChars}`);
        assert.equal(gen.finishReason, 'stop');
      }
      // a stop that never comes: the whole text, ended by its length
      const gen = generate(model, { ...base, stop: 'never!' });
      assert.equal((await collect(gen)).join(''), plain);
      assert.equal(gen.finishReason, 'length');
    });
  }

  it('compares with the text as generated: a lowercase model lowercases its stops', async () => {
    const model = small();
    const plain = await text(model, { prompt: 'ab', length: 100, seed: 7 });
    const stop = plain.slice(30, 33);
    const cut = await text(model, { prompt: 'ab', length: 100, seed: 7, stop: stop.toUpperCase() });
    assert.equal(cut, plain.slice(0, plain.indexOf(stop)));
  });

  it('checks its stops at once', () => {
    assert.throws(() => generate(small(), { prompt: 'a', stop: [''] }), UserError);
  });
});

describe('samples', () => {
  it('derives seed i by splitmix from the request seed; sample 0 keeps it', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => sampleSeed(42, i)),
      [42, 939911724, 3948730756, 321366731],
    );
    assert.equal(sampleSeed(0xffffffff, 1), 920564995);
    const seeds = new Set(Array.from({ length: 1000 }, (_, i) => sampleSeed(5, i + 1)));
    assert.equal(seeds.size, 1000);
    assert.throws(() => sampleSeed(-1, 1), UserError);
  });

  for (const mode of ['window', 'stateful'] as const) {
    it(`${mode}: sample i is the single generation with seed sampleSeed(seed, i)`, async () => {
      const model = small();
      const opts: GenerateOptions = { prompt: 'ab', length: 80, seed: 11, mode, temperature: 1 };
      const gens = generateSamples(model, { ...opts, count: 4 });
      assert.deepEqual(
        gens.map((g) => g.seed),
        [0, 1, 2, 3].map((i) => sampleSeed(11, i)),
      );
      // consumed side by side, as the server does
      const texts = await Promise.all(gens.map(async (g) => (await collect(g)).join('')));
      for (let i = 0; i < 4; i++) {
        assert.equal(texts[i], await text(model, { ...opts, seed: sampleSeed(11, i) }));
      }
      assert.equal(new Set(texts).size, 4);
      assert.equal(texts[0], await text(model, opts)); // one sample is the plain generation
    });
  }

  it('refuses a bad count, and count > 1 with a beam', () => {
    const model = small();
    assert.throws(() => generateSamples(model, { prompt: 'a', count: 0 }), /from 1 to 64, got 0/);
    assert.throws(() => generateSamples(model, { prompt: 'a', count: 1.5 }), UserError);
    assert.throws(() => generateSamples(model, { prompt: 'a', count: 65 }), UserError);
    assert.throws(
      () => generateSamples(model, { prompt: 'a', count: 2, beam: 2 }),
      /count must be 1 with beam/,
    );
    assert.equal(generateSamples(model, { prompt: 'a', beam: 2 }).length, 1);
  });
});

describe('beam search', () => {
  // A vocabulary of 3 and 5 characters: 243 sequences, each scored by feeding it through the
  // model on its own, with the same float64 sum of Math.log(p) in the same order as the search.
  const ABC = [...'abc'];
  const L = 5;
  const PROMPT = [0, 1];
  const tiny = (seed: number) =>
    randomCharModel({ vocab: ABC, units: 4, maxlen: 3, seed, scale: 1 });
  type Mode = 'window' | 'stateful';

  function logProb(model: CharModel, seq: readonly number[], mode: Mode): number {
    let s = 0;
    if (mode === 'stateful') {
      const stepper = model.stepper();
      let p = stepper.feed(PROMPT);
      for (const v of seq) {
        s += Math.log(p[v]!);
        p = stepper.step(v);
      }
      stepper.release();
      return s;
    }
    const all = [...PROMPT];
    for (const v of seq) {
      const w = Int32Array.from(all.slice(-model.maxlen)); // the last maxlen, from a zero state
      s += Math.log(model.predictTokens(w, 1, w.length)[v]!);
      all.push(v);
    }
    return s;
  }

  function sequences(n: number): number[][] {
    if (n === 0) return [[]];
    return sequences(n - 1).flatMap((q) => ABC.map((_, v) => [...q, v]));
  }

  /** The best of all sequences (ties: the first in id order). */
  function bruteBest(model: CharModel, mode: Mode): { seq: number[]; score: number } {
    let best = { seq: [] as number[], score: -Infinity };
    for (const seq of sequences(L)) {
      const score = logProb(model, seq, mode);
      if (score > best.score) best = { seq, score };
    }
    return best;
  }

  const search = (model: CharModel, width: number, mode: Mode) =>
    beamSearch(model, { prompt: Int32Array.from(PROMPT), length: L, width, mode });

  for (const mode of ['window', 'stateful'] as const) {
    it(`${mode}: width 2 finds the best sequence where greedy does not (seed 5)`, () => {
      const model = tiny(5);
      const best = bruteBest(model, mode);
      const greedy = search(model, 1, mode);
      const beam2 = search(model, 2, mode);
      const expected = { window: ['11221', '11211'], stateful: ['21111', '11111'] }[mode];
      assert.equal(best.seq.join(''), expected[0]);
      assert.equal(beam2.tokens.join(''), expected[0]);
      assert.equal(beam2.logProb, best.score);
      assert.equal(greedy.tokens.join(''), expected[1]);
      assert.equal(greedy.logProb, logProb(model, [...greedy.tokens], mode));
      assert.ok(greedy.logProb < beam2.logProb);
    });

    it(`${mode}: a beam as wide as every prefix is exhaustive: the brute-force best`, () => {
      for (const seed of [1, 2, 5, 8]) {
        const model = tiny(seed);
        const wide = search(model, 27, mode); // 3^3 ≥ the prefixes of 4 characters
        const best = bruteBest(model, mode);
        assert.deepEqual([...wide.tokens], best.seq, `seed ${seed}`);
        assert.equal(wide.logProb, best.score);
      }
    });

    it(`${mode}: width 1 is greedy decoding, character for character`, async () => {
      const model = small(4);
      const opts: GenerateOptions = { prompt: 'a.b', length: 200, mode };
      const greedy = await text(model, { ...opts, greedy: true });
      const beam = generate(model, { ...opts, beam: 1, temperature: 0.3, seed: 9 }); // ignored
      assert.equal(beam.beam, 1);
      const chunks = await collect(beam);
      assert.equal(chunks.join(''), greedy);
      assert.equal(beam.finishReason, 'length');
    });
  }

  it('is deterministic, chunked after the search, and cut by a stop like any text', async () => {
    const model = small(4);
    const opts: GenerateOptions = { prompt: 'ab', length: 120, beam: 4, mode: 'stateful' };
    const whole = await text(model, opts);
    assert.equal(whole.length, 120);
    assert.equal(await text(model, { ...opts, seed: 1 }), whole);
    const chunks = await collect(generate(model, { ...opts, chunkChars: 50 }));
    assert.equal(chunks.join(''), whole);
    assert.ok(chunks.every((c) => c.length > 0 && c.length <= 50));
    const stop = whole.slice(60, 63);
    const gen = generate(model, { ...opts, stop });
    assert.equal((await collect(gen)).join(''), whole.slice(0, whole.indexOf(stop)));
    assert.equal(gen.finishReason, 'stop');
  });

  it('settles characters as it goes: what every beam shares is the final text', async () => {
    // a trained model (the built-in one): random weights repeat one character, and their beams,
    // each begun with a different character, never meet
    const model = await CharModel.load('moby-dick');
    for (const mode of ['window', 'stateful'] as const) {
      const opts = {
        prompt: model.vocab.encode('call me ishmael', 'prompt'),
        length: 100,
        width: 4,
        mode,
      };
      const final = beamSearch(model, opts).tokens;
      const s = new BeamSearch(model, opts);
      const settled: number[] = [];
      for (let t = 1; !s.advance(0); t++) {
        const n = s.settledLength();
        assert.ok(n <= t && n >= (settled.at(-1) ?? 0));
        assert.deepEqual(s.prefix(0, n), final.subarray(0, n), `${mode}, after ${t}`);
        settled.push(n);
      }
      assert.equal(s.settledLength(), 100);
      // the text flows: half of it is final when the search is three quarters through
      assert.ok(settled[75]! >= 50, `${mode}: ${settled[75]}`);
      s.close();
    }
    // generate() sends them as they settle: many chunks though each could hold the whole text
    const opts: GenerateOptions = {
      prompt: 'call me ishmael',
      length: 100,
      beam: 4,
      mode: 'stateful',
    };
    const chunks = await collect(generate(model, { ...opts, chunkMs: 0, chunkChars: 1000 }));
    assert.ok(chunks.length > 10, `${chunks.length} chunks`);
    assert.equal(chunks.join(''), await text(model, opts));
    // width 1: every character is final at once, as greedy decoding's
    const g = new BeamSearch(small(4), {
      prompt: Int32Array.of(2),
      length: 5,
      width: 1,
      mode: 'stateful',
    });
    g.advance(0);
    g.advance(0);
    assert.equal(g.settledLength(), 2);
  });

  it('advances in slices, and keeps at most width beams', () => {
    const model = small(4);
    const s = new BeamSearch(model, {
      prompt: Int32Array.of(2),
      length: 30,
      width: 3,
      mode: 'window',
    });
    let calls = 0;
    while (!s.advance(0)) calls++; // a deadline already passed: one character per call
    assert.equal(calls, 29);
    const again = beamSearch(model, {
      prompt: Int32Array.of(2),
      length: 30,
      width: 3,
      mode: 'window',
    });
    assert.deepEqual(s.result(), again.tokens);
    assert.equal(s.logProb, again.logProb);
    s.close();
    assert.deepEqual(
      beamSearch(model, { prompt: Int32Array.of(2), length: 0, width: 3, mode: 'window' }),
      {
        tokens: new Int32Array(0),
        logProb: 0,
      },
    );
  });

  it('breaks ties by parent rank, then character id', () => {
    // every weight 0 but the dense bias: the same distribution after any text, characters 1 and 2
    // exactly tied at the top, so every sequence of them has the same total
    for (const mode of ['window', 'stateful'] as const) {
      const model = tiny(1);
      model.params.flat.fill(0);
      model.params.denseBias.set([0, 2, 2]);
      model.syncParams();
      const p = model.predict('ab');
      assert.equal(p[1], p[2]);
      for (const width of [1, 2, 5]) {
        const r = search(model, width, mode);
        assert.deepEqual([...r.tokens], [1, 1, 1, 1, 1], `${mode}, width ${width}`);
        assert.equal(r.logProb, 5 * Math.log(p[1]!));
      }
    }
  });

  it('refuses a bad width with a one-line UserError', () => {
    const model = small();
    for (const beam of [0, 1.5, DECODING.maxBeamWidth + 1]) {
      assert.throws(
        () => generate(model, { prompt: 'a', beam }),
        /beam width must be an integer from 1 to 32/,
      );
    }
  });
});

describe('the CLI and the API', () => {
  let tmp: string;
  let dir: string;
  let app: FastifyInstance;
  let url: string;
  const model = small(6);

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-decoding-'));
    dir = path.join(tmp, 'small');
    const { vocab, lowercase, maxlen, step, units, training } = model.meta;
    await saveModel(dir, model.params, { vocab, lowercase, maxlen, step, units, training });
    app = buildServer({ models: await loadModels([dir]) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/v1/generate`;
  });

  after(async () => {
    await app?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  // what the API and the CLI do when a request names no temperature or mode
  const lib = (opts: GenerateOptions) =>
    text(model, { prompt: 'ab', temperature: GENERATE.temperature, ...opts });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function post(body: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const t = await res.text();
    return {
      status: res.status,
      body: res.headers.get('content-type')?.includes('json') ? JSON.parse(t) : t,
    };
  }

  it('POST /v1/generate: n samples, each the generation with its derived seed', async () => {
    const a = await post({ prompt: 'ab', length: 50, seed: 5, n: 3, stream: false });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body.seed, 5);
    assert.equal(a.body.chars, 150);
    assert.deepEqual(
      a.body.samples.map((s: { index: number; seed: number }) => [s.index, s.seed]),
      [0, 1, 2].map((i) => [i, sampleSeed(5, i)]),
    );
    for (let i = 0; i < 3; i++) {
      assert.equal(a.body.samples[i].text, await lib({ length: 50, seed: sampleSeed(5, i) }));
      assert.equal(a.body.samples[i].finish_reason, 'length');
      assert.equal(a.body.samples[i].chars, 50);
    }
    // without n: the plain answer, which is sample 0, with why it ended
    const one = await post({ prompt: 'ab', length: 50, seed: 5 });
    assert.equal(one.body.text, a.body.samples[0].text);
    assert.equal(one.body.finish_reason, 'length');
    assert.equal(one.body.samples, undefined);
  });

  it('POST /v1/generate: stop and beam_width', async () => {
    const plain = await lib({ length: 200, seed: 8, mode: 'stateful' });
    const stop = [plain.slice(120, 123), 'zzzz'];
    const a = await post({ prompt: 'ab', length: 200, seed: 8, mode: 'stateful', stop });
    assert.equal(a.body.text, plain.slice(0, plain.indexOf(stop[0]!)));
    assert.equal(a.body.finish_reason, 'stop');
    assert.equal(a.body.chars, [...a.body.text].length);
    const b = await post({ prompt: 'ab', length: 40, beam_width: 3 });
    const beam = await lib({ length: 40, beam: 3 });
    assert.equal(b.body.text, beam);
    assert.equal(b.body.finish_reason, 'length');
  });

  it('POST /v1/generate with stream and n: events tagged with the sample index', async () => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: 'ab',
        length: 300,
        seed: 2,
        n: 2,
        stream: true,
        stop: 'never',
      }),
    });
    assert.equal(res.status, 200);
    const frames = (await res.text()).split('\n\n').filter((f) => f.length > 0);
    const texts = ['', ''];
    const last = frames.pop()!;
    for (const f of frames) {
      assert.match(f, /^data: /);
      const { index, text: t } = JSON.parse(f.slice(6));
      texts[index] += t;
    }
    for (let i = 0; i < 2; i++)
      assert.equal(texts[i], await lib({ length: 300, seed: sampleSeed(2, i) }));
    assert.match(last, /^event: done\ndata: /);
    const done = JSON.parse(last.split('\n')[1]!.slice(6));
    assert.equal(done.chars, 600);
    assert.deepEqual(done.samples, [
      { index: 0, seed: 2, chars: 300, finish_reason: 'length' },
      { index: 1, seed: sampleSeed(2, 1), chars: 300, finish_reason: 'length' },
    ]);
  });

  it('POST /v1/generate: bad n, stop or beam_width get a 400 envelope naming them', async () => {
    const cases: [unknown, RegExp][] = [
      [{ n: 0 }, /n/],
      [{ n: DECODING.maxCount + 1 }, /n/],
      [{ n: 1.5 }, /n/],
      [{ beam_width: 0 }, /beam_width/],
      [{ beam_width: DECODING.maxBeamWidth + 1 }, /beam_width/],
      [{ stop: '' }, /stop/],
      [{ stop: Array.from({ length: DECODING.maxStops + 1 }, () => 'a') }, /stop/],
      [{ stop: [3] }, /stop/],
      [{ n: 2, beam_width: 2 }, /count must be 1 with beam, got 2/],
    ];
    for (const [extra, re] of cases) {
      const a = await post({ prompt: 'ab', length: 5, ...(extra as object) });
      assert.equal(a.status, 400, JSON.stringify(extra));
      assert.equal(typeof a.body.error.code, 'string');
      assert.match(a.body.error.message, re, JSON.stringify(extra));
    }
  });

  it('charlstm generate --stop, --count, --beam', async () => {
    const base = ['generate', '-m', dir, '-p', 'ab', '--seed', '4'];
    const plain = await lib({ length: 200, seed: 4 });
    const stop = plain.slice(100, 103);
    const r = charlstm([...base, '-n', '200', '--count', '2', '--stop', 'qqq', '--stop', stop]);
    assert.equal(r.code, 0, r.stderr);
    const second = await lib({ length: 200, seed: sampleSeed(4, 1) });
    const cut = (t: string) =>
      t.slice(0, Math.min(...[t.indexOf(stop), t.length].filter((i) => i >= 0)));
    assert.equal(
      r.stdout,
      `--- sample 1 of 2, seed 4 ---\n${cut(plain)}\n\n--- sample 2 of 2, seed ${sampleSeed(4, 1)} ---\n${cut(second)}\n`,
    );
    const b = charlstm([...base, '-n', '30', '--beam', '2']);
    assert.equal(b.stdout, `${await lib({ length: 30, beam: 2 })}\n`);
    for (const [flags, re] of [
      [['--count', '0'], /--count.*The count must be an integer from 1 to 64/],
      [['--beam', '33'], /--beam.*The beam width must be an integer from 1 to 32/],
      [['--stop', ''], /a stop sequence must be a string of 1 to 100 characters, got ""/],
      [['--count', '2', '--beam', '2'], /count must be 1 with beam, got 2/],
    ] as const) {
      const e = charlstm([...base, ...flags]);
      assert.notEqual(e.code, 0);
      assert.equal(e.stdout, '');
      assert.match(e.stderr, /^charlstm: error: [^\n]*\n$/);
      assert.match(e.stderr, re);
    }
  });
});
