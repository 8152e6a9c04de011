import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memorisationReport } from '../src/generate/memorisation.ts';
import { Rng } from '../src/sampling/rng.ts';

const enc = (s: string): Int32Array => Int32Array.from([...s].map((c) => c.codePointAt(0)!));

/** The same figures the slow, obvious way. */
function naive(
  gen: string,
  corpus: string,
  n: number,
): { longest: number; found: number; total: number } {
  let longest = 0;
  for (let i = 0; i < gen.length; i++) {
    for (let j = i + longest + 1; j <= gen.length; j++) {
      if (corpus.includes(gen.slice(i, j))) longest = j - i;
      else break;
    }
  }
  let found = 0;
  const total = Math.max(0, gen.length - n + 1);
  for (let i = 0; i < total; i++) if (corpus.includes(gen.slice(i, i + n))) found++;
  return { longest, found, total };
}

test('finds the longest copied run and the share of copied 20-grams', () => {
  const corpus = 'the quick brown fox jumps over the lazy dog while the cat sleeps soundly';
  const gen = 'xx jumps over the lazy dog whilst yy the cat sleeps';
  const r = memorisationReport(enc(gen), enc(corpus), 20);
  const e = naive(gen, corpus, 20);
  assert.equal(r.longestCopy, e.longest);
  assert.equal(
    gen.slice(r.longestCopyAt, r.longestCopyAt + r.longestCopy),
    'x jumps over the lazy dog whil',
  ); // "fox jumps" gives the x
  assert.equal(r.ngramsFound, e.found);
  assert.equal(r.ngramsTotal, e.total);
});

test('agrees with the naive computation on random texts over a small alphabet', () => {
  const rng = new Rng(5);
  const alpha = 'abc ';
  for (let trial = 0; trial < 20; trial++) {
    const corpus = Array.from({ length: 400 }, () => alpha[rng.int(4)]).join('');
    const start = rng.int(300);
    const gen =
      Array.from({ length: 10 }, () => alpha[rng.int(4)]).join('') +
      corpus.slice(start, start + 30 + rng.int(40)) +
      'zz';
    const r = memorisationReport(enc(gen), enc(corpus), 8);
    const e = naive(gen, corpus, 8);
    assert.equal(r.longestCopy, e.longest, `trial ${trial}`);
    assert.equal(r.ngramsFound, e.found, `trial ${trial}`);
  }
});

test('nothing copied, and texts shorter than n', () => {
  const r = memorisationReport(enc('zzzz'), enc('abcabc'), 20);
  assert.equal(r.longestCopy, 0);
  assert.equal(r.ngramsTotal, 0);
  assert.equal(r.shareFound, 0);
});
