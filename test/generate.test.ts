import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { kernelModule } from '../src/engine/kernels.ts';
import { UserError } from '../src/errors.ts';
import { generate, preparePrompt } from '../src/generate/generate.ts';
import { generateStateful } from '../src/generate/stateful.ts';
import { generateText, generateWindow } from '../src/generate/window.ts';
import { CharModel } from '../src/model/char-model.ts';
import { argmax } from '../src/sampling/processors.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { randomCharModel } from './helpers/models.ts';

const VOCAB = [...' .abcdefgh'];
const MAXLEN = 10;

function makeModel(seed = 1, lowercase = true): CharModel {
  return randomCharModel({ vocab: VOCAB, units: 8, maxlen: MAXLEN, seed, lowercase });
}

/** Remembers every uniform draw, in order. */
class RecordingRng extends Rng {
  readonly draws: number[] = [];
  override next(): number {
    const u = super.next();
    this.draws.push(u);
    return u;
  }
}

/** Hands out recorded draws; running past them is a test bug. */
class ReplayRng extends Rng {
  private i = 0;
  constructor(private readonly values: readonly number[]) {
    super(0);
  }
  override next(): number {
    if (this.i >= this.values.length) throw new Error('ReplayRng ran out of draws');
    return this.values[this.i++]!;
  }
  get used(): number {
    return this.i;
  }
}

const tail = (s: string) => [...s].slice(-MAXLEN).join('');
const temps = (ts: number[]) => ts.map((temperature) => new Sampler({ temperature }));

before(async () => {
  await kernelModule();
});

describe('CharModel.predict', () => {
  it('reads only the last maxlen characters, and all of a shorter text', () => {
    const model = makeModel();
    const window = 'abc def.gh';
    assert.deepEqual(model.predict('hhh.' + window), model.predict(window));
    assert.notDeepEqual(model.predict(window.slice(1)), model.predict(window));
    const p = model.predict('ab');
    assert.equal(p.length, VOCAB.length);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  });

  it('names characters outside the vocabulary, even before the window', () => {
    const model = makeModel();
    assert.throws(
      () => model.predict('xQ' + 'a'.repeat(MAXLEN)),
      (err: unknown) => err instanceof UserError && /"x", "Q"/.test(err.message),
    );
    assert.throws(() => model.predict(''), UserError);
  });
});

describe('generateWindow', () => {
  const seeds = ['abc deff.gh ab', 'hgfe dcba. hg', 'a.b.c.d.e.f.g', 'ccc ddd eee f'];

  it('is deterministic for a seed, and the seed matters', () => {
    const model = makeModel();
    const run = (seed: number) =>
      generateWindow(model, {
        prompts: seeds,
        samplers: temps([0.2, 0.5, 1.0, 1.2]),
        length: 60,
        rng: new Rng(seed),
      });
    const a = run(42);
    assert.deepEqual(run(42), a);
    assert.notDeepEqual(run(43), a);
    for (const text of a) {
      assert.equal([...text].length, 60);
      assert.ok([...text].every((c) => VOCAB.includes(c)));
    }
  });

  it('batched streams give the text each stream gives alone with its own draws', () => {
    // Seeds of unequal length (3, 13, 3, 7 characters against maxlen 10): the streams' windows
    // differ in length at first, so they go through the engine in several batches per step.
    // Six streams also outgrow the engine's first capacity (4 rows).
    const model = makeModel(2);
    const mixed = ['abc', 'h.g f.e d.c b', 'bad', 'a cab e', 'gggg', 'fed.cba .hg'];
    const ts = [0.2, 0.5, 1.0, 1.2, 0.8, 1.0];
    const length = 35;
    const rng = new RecordingRng(9);
    const chars: string[][] = [];
    const together = generateWindow(model, {
      prompts: mixed,
      samplers: [...temps(ts.slice(0, 5)), new Sampler({ temperature: 1, topK: 3 })],
      length,
      rng,
      onChars: (c) => chars.push(c),
    });
    const S = mixed.length;
    assert.equal(rng.draws.length, S * length); // one draw per stream per step, none wasted
    assert.equal(chars.length, length);
    for (let s = 0; s < S; s++) {
      assert.equal(chars.map((c) => c[s]).join(''), together[s]);
      // Stream s drew the s-th number of every step.
      const own = rng.draws.filter((_, j) => j % S === s);
      const sampler = s < 5 ? temps([ts[s]!])[0]! : new Sampler({ temperature: 1, topK: 3 });
      const alone = generateWindow(model, {
        prompts: [mixed[s]!],
        samplers: [sampler],
        length,
        rng: new ReplayRng(own),
      });
      assert.equal(alone[0], together[s], `stream ${s}`);
    }
  });

  it('predicts each character from the last maxlen characters of seed + generated', () => {
    const model = makeModel(3);
    // A seed longer than maxlen and one shorter, whose window grows to maxlen; 40 characters
    // take the long stream through the window buffer's compaction (at 2·maxlen) twice.
    const twoSeeds = ['gh. abc defgh. ab', 'ab'];
    const length = 40;
    const greedy = generateWindow(model, {
      prompts: twoSeeds,
      samplers: [new Sampler({ greedy: true }), new Sampler({ greedy: true })],
      length,
      rng: new Rng(0),
    });
    const rng = new RecordingRng(5);
    const [drawn] = generateWindow(model, {
      prompts: [twoSeeds[0]!],
      samplers: [new Sampler({ temperature: 1 })],
      length,
      rng,
    });
    for (const [s, out] of greedy.entries()) {
      for (let i = 0; i < length; i++) {
        const window = tail(twoSeeds[s]! + out!.slice(0, i));
        assert.equal(out![i], VOCAB[argmax(model.predict(window))], `stream ${s}, char ${i}`);
      }
    }
    // Sampling, replayed draw by draw against the distribution of the expected window.
    const replay = new ReplayRng(rng.draws);
    const sampler = new Sampler({ temperature: 1 });
    for (let i = 0; i < length; i++) {
      const window = tail(twoSeeds[0]! + drawn!.slice(0, i));
      assert.equal(drawn![i], VOCAB[sampler.next(model.predict(window), replay)], `char ${i}`);
    }
    assert.equal(replay.used, length);
  });

  it('sees new weights after syncParams', () => {
    const model = makeModel(4);
    const before = model.predict('abc');
    model.params.flat.set(makeModel(5).params.flat);
    assert.deepEqual(model.predict('abc'), before); // the engine keeps its copy until told
    model.syncParams();
    assert.deepEqual(model.predict('abc'), makeModel(5).predict('abc'));
  });

  it('refuses bad seeds and arguments', () => {
    const model = makeModel();
    const opts = { samplers: temps([1, 1]), length: 5, rng: new Rng(1) };
    assert.throws(
      () => generateWindow(model, { ...opts, prompts: ['abc', ''] }),
      (err: unknown) => err instanceof UserError && /seed 2 is empty/.test(err.message),
    );
    assert.throws(
      () => generateWindow(model, { ...opts, prompts: ['abc', 'aXb'] }),
      (err: unknown) => err instanceof UserError && /seed 2 .*"X"/.test(err.message),
    );
    assert.throws(() => generateWindow(model, { ...opts, prompts: ['abc'] }), RangeError);
    for (const length of [-1, 2.5, 1e12, NaN]) {
      assert.throws(
        () => generateWindow(model, { ...opts, prompts: ['a', 'b'], length }),
        (err: unknown) => err instanceof UserError && err.message.includes(String(length)),
      );
    }
    assert.deepEqual(generateWindow(model, { ...opts, prompts: ['a', 'b'], length: 0 }), ['', '']);
  });
});

describe('generateText', () => {
  it('is one seeded stream, lowercasing the prompt for a lowercase model', () => {
    const model = makeModel();
    const pieces: string[] = [];
    const a = generateText(model, {
      prompt: 'ABC',
      length: 30,
      temperature: 0.5,
      seed: 7,
      onText: (t) => pieces.push(t),
    });
    assert.equal(pieces.join(''), a);
    assert.equal(pieces.length, 30);
    const [b] = generateWindow(model, {
      prompts: ['abc'],
      samplers: temps([0.5]),
      length: 30,
      rng: new Rng(7),
    });
    assert.equal(a, b);
    assert.throws(() => generateText(makeModel(1, false), { prompt: 'ABC', length: 1 }), UserError);
  });
});

describe('prompts with characters the model never saw (unknown: error | skip | map)', () => {
  // a model trained with --max-vocab / --min-count: the unknown symbol is one of its characters
  const UNK_VOCAB = [...' .abcdefgh\uFFFD'];
  const withSymbol = (): CharModel => {
    const m = randomCharModel({ vocab: UNK_VOCAB, units: 8, maxlen: MAXLEN, seed: 5 });
    return CharModel.fromParts(m.params, { ...m.meta, unknown: '\uFFFD' });
  };
  const text = async (gen: AsyncIterable<string>): Promise<string> => {
    let s = '';
    for await (const chunk of gen) s += chunk;
    return s;
  };
  const PROMPT = 'ab😀c 한국어 d'; // an emoji and Korean, outside the vocabulary
  const opts = { length: 12, temperature: 0.7, seed: 11 } as const;

  for (const mode of ['window', 'stateful'] as const) {
    it(`${mode} mode: skip drops them, map reads them as the unknown symbol`, async () => {
      const model = withSymbol();
      const skip = generate(model, { ...opts, mode, prompt: PROMPT, unknown: 'skip' });
      assert.equal(skip.prompt, 'abc  d');
      const mapped = generate(model, { ...opts, mode, prompt: PROMPT, unknown: 'map' });
      assert.equal(mapped.prompt, 'ab\uFFFDc \uFFFD\uFFFD\uFFFD d'); // one symbol per code point
      const [skipText, mapText] = [await text(skip), await text(mapped)];
      // exactly the texts of the prompts written that way
      assert.equal(skipText, await text(generate(model, { ...opts, mode, prompt: 'abc  d' })));
      assert.equal(
        mapText,
        await text(generate(model, { ...opts, mode, prompt: 'ab\uFFFDc \uFFFD\uFFFD\uFFFD d' })),
      );
      const expected = {
        window: { skip: SEEDED.windowSkip, map: SEEDED.windowMap },
        stateful: { skip: SEEDED.statefulSkip, map: SEEDED.statefulMap },
      }[mode];
      assert.deepEqual({ skip: skipText, map: mapText }, expected);
      // the synchronous forms take the same option
      const sync =
        mode === 'window'
          ? generateText(model, { ...opts, prompt: PROMPT, unknown: 'map' })
          : generateStateful(model, { ...opts, prompt: PROMPT, unknown: 'map' });
      assert.equal(sync, mapText);
    });
  }

  it('error (the default) names them; map on a model without an unknown symbol says so', () => {
    const model = withSymbol();
    for (const mode of ['window', 'stateful'] as const) {
      assert.throws(
        () => generate(model, { ...opts, mode, prompt: PROMPT }),
        (err: unknown) =>
          err instanceof UserError &&
          err.message ===
            `prompt has characters outside the model's vocabulary: "😀", "한", "국", "어"`,
      );
      assert.throws(
        () => generate(makeModel(), { ...opts, mode, prompt: 'ab😀', unknown: 'map' }),
        (err: unknown) =>
          err instanceof UserError &&
          err.message ===
            `prompt has characters outside the model's vocabulary: "😀"; this model has no unknown ` +
              'symbol to map them to (it was trained without --max-vocab or --min-count): use skip to drop them',
      );
    }
    // a prompt the model knows is read as it is whatever the policy, with a symbol or without
    assert.equal(generate(makeModel(), { ...opts, prompt: 'abc', unknown: 'map' }).prompt, 'abc');
    assert.equal(preparePrompt(model, 'ABC', 'map'), 'abc');
    assert.throws(
      () => preparePrompt(model, 'a', 'drop' as 'skip'),
      /unknown must be "error", "skip" or "map", got "drop"/,
    );
    // window mode needs a character once the unknown ones are dropped
    assert.throws(
      () => generate(model, { ...opts, prompt: '😀', unknown: 'skip' }),
      /prompt is empty once the characters outside the vocabulary are dropped/,
    );
  });
});

/** The seeded texts of the test above (seed 11, temperature 0.7, 12 characters; this random
 * model draws its unknown symbol often). */
const SEEDED = {
  windowSkip: ' b\uFFFD\uFFFDbd\uFFFDh\uFFFDab\uFFFD',
  windowMap: ' b\uFFFD\uFFFDbb\uFFFDf\uFFFDab\uFFFD',
  statefulSkip: ' b\uFFFD\uFFFDbd\uFFFDg\uFFFDb\uFFFD\uFFFD',
  statefulMap: ' b\uFFFD\uFFFDbb\uFFFDf\uFFFDab\uFFFD',
};
