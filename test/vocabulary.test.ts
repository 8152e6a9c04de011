import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { modelJson, parseModelJson } from '../src/checkpoint/model-json.ts';
import {
  CharCounts,
  UNKNOWN_SYMBOL,
  Vocabulary,
  countChars,
  describeLimits,
} from '../src/data/vocabulary.ts';
import { UserError } from '../src/errors.ts';
import { Rng } from '../src/sampling/rng.ts';
import { charlstm } from './helpers/cli.ts';

// Vocabularies for any script (issue 13, part 4): whole code points, limited vocabularies with
// one unknown symbol, and prompts with characters a model never saw, from the library to the CLI.

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-vocab-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const U = UNKNOWN_SYMBOL;

describe('code points, never UTF-16 halves', () => {
  it('an emoji, Korean and Chinese text round-trips whole', () => {
    const text = '안녕하세요 👋🏽 世界 🇰🇷 — 你好，世界！😀';
    const vocab = Vocabulary.fromText(text);
    const codePoints = new Set([...text]);
    assert.equal(vocab.size, codePoints.size); // not text.length's UTF-16 units
    assert.ok(vocab.chars.every((c) => [...c].length === 1));
    assert.ok(
      vocab.chars.includes('👋') && vocab.chars.includes('🏽') && vocab.chars.includes('😀'),
    );
    const ids = vocab.encode(text);
    assert.equal(ids.length, [...text].length);
    assert.equal(vocab.decode(ids), text);
    // sorted by code point: the astral characters (emoji) come last
    const cps = vocab.chars.map((c) => c.codePointAt(0)!);
    assert.deepEqual(
      cps,
      [...cps].sort((a, b) => a - b),
    );
    assert.equal(vocab.chars.at(-1), '😀'); // U+1F600, the highest
  });

  it('counts chunk by chunk exactly as whole, a surrogate pair cut between chunks included', () => {
    const text = 'a😀b한😀\uD800x🇰🇷c'; // \uD800: a lone surrogate, counted as itself
    const whole = countChars(text);
    assert.equal(whole.total, [...text].length);
    assert.equal(whole.distinct, new Set([...text]).size);
    for (let cut = 0; cut <= text.length; cut++) {
      for (let cut2 = cut; cut2 <= text.length; cut2++) {
        const c = new CharCounts()
          .add(text.slice(0, cut))
          .add(text.slice(cut, cut2))
          .add('')
          .add(text.slice(cut2))
          .end();
        assert.deepEqual(c.entries(), whole.entries(), `cut at ${cut}, ${cut2}`);
        assert.equal(c.total, whole.total);
      }
    }
    assert.equal(whole.count('😀'), 2);
    assert.equal(whole.count('🇰'), 1);
    // a high surrogate ending the text counts as itself once the text ends
    const open = new CharCounts().add('a\uD83D');
    assert.equal(open.total, 1);
    assert.equal(open.end().total, 2);
    assert.equal(open.count('\uD83D'), 1);
    // without limits: the vocabulary fromText gives
    assert.deepEqual(Vocabulary.fromCounts(whole).chars, Vocabulary.fromText(text).chars);
    assert.equal(Vocabulary.fromCounts(whole).unknownSymbol, undefined);
  });
});

describe('limited vocabularies (--max-vocab, --min-count)', () => {
  const counted = (pairs: [string, number][]): CharCounts => {
    const c = new CharCounts();
    for (const [ch, n] of pairs) c.add(ch.repeat(n));
    return c.end();
  };

  it('keeps the most frequent, ties by code point, with the symbol in code-point order', () => {
    const counts = counted([
      ['c', 2],
      ['b', 2],
      ['a', 2],
      ['d', 1],
    ]);
    // three entries, the symbol one of them: the two first of the tied a, b, c
    const v = Vocabulary.fromCounts(counts, { maxVocab: 3 });
    assert.deepEqual(v.chars, ['a', 'b', U]);
    assert.equal(v.unknownSymbol, U);
    assert.equal(
      describeLimits(counts, v),
      `4 characters, 2 kept, 42.9% of the text mapped to the unknown symbol "${U}"`,
    );
    // an astral character sorts after the symbol (U+FFFD)
    const astral = counted([
      ['😀', 5],
      ['a', 3],
      ['b', 1],
    ]);
    assert.deepEqual(Vocabulary.fromCounts(astral, { minCount: 2 }).chars, ['a', U, '😀']);
    assert.deepEqual(Vocabulary.fromCounts(astral, { minCount: 2, maxVocab: 2 }).chars, [U, '😀']);
    // a limit that keeps every character changes nothing: no symbol
    const all = Vocabulary.fromCounts(astral, { maxVocab: 3, minCount: 1 });
    assert.deepEqual(all.chars, ['a', 'b', '😀']);
    assert.equal(all.unknownSymbol, undefined);
    // the text's own U+FFFD is the symbol
    const own = counted([
      [U, 1],
      ['a', 5],
      ['b', 1],
    ]);
    const v2 = Vocabulary.fromCounts(own, { minCount: 2 });
    assert.deepEqual(v2.chars, ['a', U]);
    assert.equal(
      describeLimits(own, v2),
      `3 characters, 2 kept, 14.3% of the text mapped to the unknown symbol "${U}"`,
    );
  });

  it('encodes the mapped characters as the symbol, and only when asked', () => {
    const v = Vocabulary.fromCounts(countChars('aaab😀'), { minCount: 2 });
    assert.deepEqual(v.chars, ['a', U]);
    assert.deepEqual([...v.encode('ab😀a', 'text', 'map')], [0, 1, 1, 0]);
    assert.equal(v.tokenOf('z'), 1);
    assert.equal(v.tokenOf('a'), 0);
    assert.throws(
      () => v.encode('ab'),
      (e: unknown) =>
        e instanceof UserError &&
        e.message === `text has characters outside the model's vocabulary: "b"`,
    );
    assert.equal(v.applyUnknown('ab😀a', 'map'), `a${U}${U}a`);
    assert.equal(v.applyUnknown('ab😀a', 'skip'), 'aa');
    assert.throws(
      () => new Vocabulary(['a'], U),
      /the unknown symbol "\uFFFD" is not in the vocabulary/,
    );
    assert.throws(
      () => Vocabulary.fromText('ab').encode('ac', 'text', 'map'),
      /has no unknown symbol/,
    );
    assert.equal(
      describeLimits(
        countChars('a'.repeat(4000) + 'b'),
        Vocabulary.fromCounts(countChars('a'.repeat(4000) + 'b'), { minCount: 2 }),
      ),
      `2 characters, 1 kept, under 0.1% of the text mapped to the unknown symbol "${U}"`,
    );
  });

  it('a model records its symbol as "unknown" beside "vocab"', () => {
    const meta = {
      vocab: ['a', 'b', U],
      unknown: U,
      lowercase: true,
      maxlen: 4,
      step: 1,
      units: 4,
      training: {},
    };
    const json = modelJson({ vocabSize: 3, units: 4 }, meta, 'w.bin') as {
      userDefinedMetadata: Record<string, unknown>;
    };
    assert.equal(json.userDefinedMetadata.unknown, U);
    assert.equal(parseModelJson(json).meta.unknown, U);
    const without = modelJson({ vocabSize: 3, units: 4 }, { ...meta, unknown: undefined }, 'w.bin');
    assert.equal(
      'unknown' in (without as { userDefinedMetadata: object }).userDefinedMetadata,
      false,
    );
    assert.equal(parseModelJson(without).meta.unknown, undefined);
    json.userDefinedMetadata.unknown = 'z';
    assert.throws(
      () => parseModelJson(json),
      /metadata "unknown" must be one of the "vocab" characters, got "z"/,
    );
  });
});

/** A corpus of many scripts: each of `distinct` code points (Hangul, CJK, emoji) at least once. */
function manyScripts(distinct: number, length: number, seed: number): string {
  const rng = new Rng(seed);
  const ranges: [number, number][] = [
    [0xac00, 0xd7a3], // Hangul syllables
    [0x4e00, 0x9fff], // CJK unified ideographs
    [0x1f300, 0x1f64f], // emoji, outside the BMP
  ];
  const chosen = new Set<number>();
  while (chosen.size < distinct) {
    const [lo, hi] = ranges[Math.floor(rng.next() * ranges.length)]!;
    chosen.add(lo + Math.floor(rng.next() * (hi - lo + 1)));
  }
  const pool = [...chosen].map((cp) => String.fromCodePoint(cp));
  const out = [...pool];
  while (out.length < length)
    out.push(rng.next() < 0.15 ? ' ' : pool[Math.floor(rng.next() * pool.length)]!);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out.join('');
}

const QUICK = ['--epochs', '1', '--units', '8', '--sample-length', '20', '--seed', '3'];

describe('charlstm train and generate on real scripts', () => {
  it('a corpus of 2,400 distinct characters trains, and generates in both modes', () => {
    const text = manyScripts(2400, 4000, 7);
    assert.equal(new Set([...text]).size, 2401); // and the space
    const corpus = path.join(tmp, 'scripts.txt');
    writeFileSync(corpus, text);
    const out = path.join(tmp, 'scripts-model');
    const args = ['train', '-c', corpus, '-o', out, ...QUICK, '--maxlen', '20', '--step', '10'];
    const r = charlstm(args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^unique characters: 2401$/m);
    const meta = JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8')).userDefinedMetadata;
    assert.equal(meta.vocab.length, 2401);
    assert.equal(meta.unknown, undefined);
    const vocab = new Set<string>(meta.vocab);
    for (const mode of ['window', 'stateful']) {
      const prompt = [...text].slice(0, 30).join('');
      const g = charlstm([
        'generate',
        '-m',
        out,
        '-p',
        prompt,
        '-n',
        '50',
        '--seed',
        '1',
        '--mode',
        mode,
      ]);
      assert.equal(g.code, 0, g.stderr);
      const chars = [...g.stdout.replace(/\n$/, '')];
      assert.equal(chars.length, 50, mode);
      assert.ok(
        chars.every((c) => vocab.has(c)),
        mode,
      );
    }
  });

  it('--max-vocab and --min-count map the rare characters to the unknown symbol; --unknown chooses for prompts', () => {
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(30) + 'é😀ß';
    const corpus = path.join(tmp, 'rare.txt');
    writeFileSync(corpus, text);
    const dry = charlstm([
      'train',
      '-c',
      corpus,
      '--dry-run',
      '--min-count',
      '2',
      '--maxlen',
      '20',
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^unique characters: 31$/m);
    assert.match(
      dry.stdout,
      new RegExp(
        `^vocabulary: 29 \\(31 characters, 28 kept, 0\\.2% of the text mapped to the unknown symbol "${U}"\\)$`,
        'm',
      ),
    );
    const capped = charlstm([
      'train',
      '-c',
      corpus,
      '--dry-run',
      '--max-vocab',
      '10',
      '--maxlen',
      '20',
    ]);
    assert.equal(capped.code, 0, capped.stderr);
    assert.match(
      capped.stdout,
      /^vocabulary: 10 \(31 characters, 9 kept, [\d.]+% of the text mapped to the unknown symbol/m,
    );
    // without a limit, the lines as they always were
    const plain = charlstm(['train', '-c', corpus, '--dry-run', '--maxlen', '20']);
    assert.match(plain.stdout, /^unique characters: 31$/m);
    assert.doesNotMatch(plain.stdout, /^vocabulary:/m);
    const bad = charlstm(['train', '-c', corpus, '--dry-run', '--max-vocab', '1']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-vocab.*The vocabulary size must be an integer >= 2/);

    const out = path.join(tmp, 'rare-model');
    const r = charlstm([
      'train',
      '-c',
      corpus,
      '-o',
      out,
      ...QUICK,
      '--min-count',
      '2',
      '--maxlen',
      '20',
      '--step',
      '5',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const meta = JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8')).userDefinedMetadata;
    assert.equal(meta.unknown, U);
    assert.equal(meta.vocab.length, 29);
    assert.equal(meta.vocab.at(-1), U); // above every letter in code-point order
    const gen = (...more: string[]) =>
      charlstm(['generate', '-m', out, '-n', '20', '--seed', '5', '--show-prompt', ...more]);
    for (const mode of ['window', 'stateful']) {
      const m = ['--mode', mode];
      const error = gen('-p', 'the 😀 fox', ...m);
      assert.equal(error.code, 2);
      assert.equal(error.stdout, '');
      assert.equal(
        error.stderr,
        `charlstm: error: prompt has characters outside the model's vocabulary: "😀"\n`,
      );
      const mapped = gen('-p', 'the 😀 fox', '--unknown', 'map', ...m);
      assert.equal(mapped.code, 0, mapped.stderr);
      assert.ok(mapped.stdout.startsWith(`the ${U} fox`));
      assert.equal(mapped.stdout, gen('-p', `the ${U} fox`, ...m).stdout);
      const skipped = gen('-p', 'the 😀 fox', '--unknown', 'skip', ...m);
      assert.equal(skipped.code, 0, skipped.stderr);
      assert.equal(skipped.stdout, gen('-p', 'the  fox', ...m).stdout);
    }
    const predicted = charlstm([
      'predict',
      '-m',
      out,
      '--text',
      'the 😀',
      '--unknown',
      'map',
      '--json',
    ]);
    assert.equal(predicted.code, 0, predicted.stderr);
    assert.equal(
      predicted.stdout,
      charlstm(['predict', '-m', out, '--text', `the ${U}`, '--json']).stdout,
    );
    const bogus = gen('-p', 'the', '--unknown', 'drop');
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /argument 'drop' is invalid\. Allowed choices are error, skip, map/);
  });

  it('--unknown map on a model without an unknown symbol is one line, exit 2', () => {
    const corpus = path.join(tmp, 'plain.txt');
    writeFileSync(corpus, 'abc abd abe. '.repeat(40));
    const out = path.join(tmp, 'plain-model');
    const r = charlstm([
      'train',
      '-c',
      corpus,
      '-o',
      out,
      ...QUICK,
      '--maxlen',
      '10',
      '--step',
      '5',
    ]);
    assert.equal(r.code, 0, r.stderr);
    for (const command of [
      ['generate', '-m', out, '-p', 'ab😀', '--unknown', 'map'],
      ['predict', '-m', out, '--text', 'ab😀', '--unknown', 'map'],
    ]) {
      const g = charlstm(command);
      assert.equal(g.code, 2);
      assert.equal(g.stdout, '');
      assert.equal(
        g.stderr,
        `charlstm: error: prompt has characters outside the model's vocabulary: "😀"; this model has no unknown symbol to map them to (it was trained without --max-vocab or --min-count): use skip to drop them\n`,
      );
    }
  });
});
