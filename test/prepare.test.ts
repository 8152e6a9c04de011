import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { loadCorpus } from '../src/corpus/corpus.ts';
import { encodeIn, prepareCorpus, type PrepareOptions } from '../src/corpus/prepare.ts';
import { TextCheck, decodeText } from '../src/corpus/text.ts';
import { Vocabulary, countChars } from '../src/data/vocabulary.ts';
import { UserError } from '../src/errors.ts';

// prepareCorpus streams a corpus into a token file; everything it gives must be what loadCorpus's
// one string gave: the ids of Vocabulary.encode(text), the text's sha256 (a checkpoint's key), the
// inputs, the name, and every error word for word.

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-prepare-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const home = path.join(tmp, 'home');
const MiB = 1 << 20; // prepare.ts reads this much at a time: the texts below put things at its edges

let files = 0;
function file(content: string | Uint8Array): string {
  const f = path.join(tmp, `in-${files++}.txt`);
  writeFileSync(f, content);
  return f;
}

/** Filler of `n` bytes that ends in a space (a place where a chunk may be cut). */
const filler = (n: number): string => 'ab '.repeat(Math.ceil(n / 3)).slice(0, n - 1) + ' ';

/** Asserts prepareCorpus(spec) gives what loadCorpus(spec) and Vocabulary.encode give. */
async function same(spec: string | string[], opts: PrepareOptions = {}): Promise<void> {
  const corpus = await loadCorpus(spec, opts);
  const prepared = await prepareCorpus(spec, { ...opts, home });
  const limited = opts.maxVocab !== undefined || opts.minCount !== undefined;
  const vocab = limited
    ? Vocabulary.fromCounts(countChars(corpus.text), {
        ...(opts.maxVocab !== undefined && { maxVocab: opts.maxVocab }),
        ...(opts.minCount !== undefined && { minCount: opts.minCount }),
      })
    : Vocabulary.fromText(corpus.text);
  assert.deepEqual(prepared.vocab.chars, vocab.chars);
  assert.equal(prepared.vocab.unknownSymbol, vocab.unknownSymbol);
  const ids = prepared.tokens.readAll();
  const want = vocab.encode(corpus.text, 'text', 'map');
  assert.equal(ids.length, want.length);
  assert.ok(
    ids.every((id, i) => id === want[i]),
    'the ids are Vocabulary.encode(text)',
  );
  assert.equal(prepared.tokens.length, want.length);
  assert.equal(prepared.textSha256, createHash('sha256').update(corpus.text).digest('hex'));
  assert.deepEqual(prepared.inputs, corpus.inputs);
  assert.equal(prepared.name, corpus.name);
  assert.equal(prepared.source, corpus.source);
  assert.deepEqual(prepared.counts.entries(), countChars(corpus.text).entries());
}

async function errorOf(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (e) {
    assert.ok(e instanceof UserError, String(e));
    return e.message;
  }
  return assert.fail('no error');
}

describe('prepareCorpus', () => {
  it('gives the ids, sha256, inputs and counts of loadCorpus and Vocabulary.encode', async () => {
    const texts = [
      'plain ascii text, short.',
      '\ufeffa BOM, then CRLF\r\nline ends\r\n\r\nand more\r\n',
      'Multi-byte: wörld, naïve, 日本語のテキスト, 한국어 텍스트, emoji 😀👍🏽 and 𝄞.',
      'ΟΔΥΣΣΕΥΣ ΣΑΣ ΑΣ. Σ İSTANBUL ΌΣΟΣ,ΟΣ',
    ];
    for (const text of texts) {
      await same(file(text));
      await same(file(text), { lowercase: false });
    }
    // several inputs, one of them empty (no separator for it), one only a BOM
    await same([file(texts[0]!), file(''), file('\ufeff'), file(texts[2]!), file(texts[3]!)]);
  });

  it('cuts chunks only where lowercasing cannot change (Greek final sigma at every edge)', async () => {
    // a word whose sigmas are final or not depending on what follows, placed so that the 1 MiB
    // read edge falls before, inside and after each of its bytes, and after case-ignorables
    const words = ['ΟΔΥΣΣΕΥΣ ', 'ΑΣ\u0301Α ', 'ΑΣ\u0301 ', "ΑΣ'Σ. ", 'ΣΑ😀Σ ', 'Σ'];
    for (const word of words) {
      for (let back = 1; back <= Buffer.byteLength(word) + 1; back++) {
        await same(file(filler(MiB - back) + word + filler(64)));
      }
    }
    // no place to cut for more than a chunk: held until one comes, still the whole text's result
    await same(file('ΑΣ'.repeat(MiB / 2) + 'Σ Α ' + 'ΑΣ'.repeat(10)));
    // a multi-byte character across the edge, and a surrogate pair
    for (const ch of ['é', '日', '😀']) {
      for (let back = 1; back < Buffer.byteLength(ch); back++) {
        await same(file(filler(MiB - back) + ch + filler(10)));
      }
    }
  });

  it('keeps ids in 1, 2 or 4 bytes by the vocabulary’s size', async () => {
    const cjk = Array.from({ length: 300 }, (_, i) => String.fromCodePoint(0x4e00 + i)).join('');
    const many = Array.from({ length: 70_000 }, (_, i) => String.fromCodePoint(0x10000 + i));
    const all256 = Array.from({ length: 256 }, (_, i) => String.fromCodePoint(0x100 + i)).join('');
    const cases: [string, number][] = [
      ['abc abc', 1],
      [all256 + all256, 1], // the most 1-byte provisional ids number
      [cjk, 2],
      [filler(2 * MiB) + cjk, 2], // the 257th character after pass 1 wrote 1-byte ids: again with 4
      [many.join(''), 4],
    ];
    for (const [text, bytes] of cases) {
      const f = file(text);
      await same(f);
      const { tokens } = await prepareCorpus(f, { home });
      assert.equal(tokens.bytesPerId, bytes);
      // what training holds: the same ids in an array of the file's own width
      const compact = tokens.readCompact();
      assert.equal(compact.BYTES_PER_ELEMENT, bytes);
      assert.deepEqual([...compact], [...tokens.readAll()]);
    }
  });

  it('limits the vocabulary as fromCounts does', async () => {
    const f = file('aaaa bbb cc d Ü ü 😀 ' + filler(3 * MiB));
    await same(f, { maxVocab: 4 });
    await same(f, { minCount: 2 });
    await same(f, { maxVocab: 3, minCount: 5 });
  });

  it('reads a token range positionally', async () => {
    const f = file('the quick brown fox jumps over the lazy dog');
    const prepared = await prepareCorpus(f, { home });
    const all = prepared.tokens.readAll();
    const into = new Int32Array(8);
    prepared.tokens.read(4, 5, into);
    assert.deepEqual([...into.subarray(0, 5)], [...all.subarray(4, 9)]);
    assert.throws(() => prepared.tokens.read(40, 10, new Int32Array(10)), RangeError);
  });

  it('reuses its file, and builds it again for other bytes or other settings', async () => {
    const cache = path.join(tmp, 'cache-home');
    const f = file('Reuse Me ' + filler(MiB));
    const first = await prepareCorpus(f, { home: cache });
    assert.equal(first.reused, false);
    const again = await prepareCorpus(f, { home: cache });
    assert.equal(again.reused, true);
    assert.equal(again.tokens.path, first.tokens.path);
    assert.deepEqual(again.tokens.readAll(), first.tokens.readAll());
    assert.equal(again.textSha256, first.textSha256);
    // the same bytes under another name are the same corpus
    const copy = file(readFileSync(f));
    assert.equal((await prepareCorpus(copy, { home: cache })).reused, true);
    // each setting is part of the key
    for (const opts of [{ lowercase: false }, { maxVocab: 3 }, { minCount: 2 }]) {
      const other = await prepareCorpus(f, { home: cache, ...opts });
      assert.equal(other.reused, false);
      assert.notEqual(other.tokens.path, first.tokens.path);
      assert.equal((await prepareCorpus(f, { home: cache, ...opts })).reused, true);
    }
    // a changed input is another corpus
    writeFileSync(f, 'Reuse me ' + filler(MiB));
    const changed = await prepareCorpus(f, { home: cache });
    assert.equal(changed.reused, false);
    await same(f);
    // no scratch or partial files are left behind
    const left = readdirSync(path.join(cache, 'tokens')).filter((n) => !n.endsWith('.ids'));
    assert.deepEqual(left, []);
  });

  it('builds a damaged or cut-short file again instead of trusting it', async () => {
    const cache = path.join(tmp, 'damaged-home');
    const f = file('Damage Me ' + filler(1000));
    const good = await prepareCorpus(f, { home: cache });
    const ids = good.tokens.readAll();
    const damage: ((file: string) => void)[] = [
      (p) => {
        const bytes = readFileSync(p);
        bytes[good.tokens.offset + 5]! ^= 1; // one id changed
        writeFileSync(p, bytes);
      },
      (p) => truncateSync(p, good.tokens.offset + 10), // cut short
      (p) => {
        const bytes = readFileSync(p);
        bytes[0] = 0; // not a token file
        writeFileSync(p, bytes);
      },
      (p) => writeFileSync(p, ''),
    ];
    for (const hurt of damage) {
      hurt(good.tokens.path);
      const rebuilt = await prepareCorpus(f, { home: cache });
      assert.equal(rebuilt.reused, false);
      assert.deepEqual(rebuilt.tokens.readAll(), ids);
      assert.equal((await prepareCorpus(f, { home: cache })).reused, true);
    }
  });

  it('fails as loadCorpus does, naming the input and the offset', async () => {
    const big = filler(MiB + 7);
    const bad = [
      Buffer.concat([Buffer.from(big), Buffer.from([0xc3, 0x28]), Buffer.from('tail')]),
      Buffer.concat([Buffer.from(big.slice(0, MiB - 1)), Buffer.from([0xe2, 0x82])]), // cut off
      Buffer.concat([Buffer.from(big.slice(0, MiB - 1)), Buffer.from([0xf0, 0x9f, 0x98, 0x28])]),
      Buffer.concat([Buffer.from([0xff]), Buffer.from(big), Buffer.from([0])]), // NUL wins
      Buffer.concat([Buffer.from(big), Buffer.from([0xed, 0xa0, 0x80])]), // a surrogate
      Buffer.from('\ufeffutf-16 text here and more', 'utf16le'),
      Buffer.from([0xef, 0xbb]),
    ];
    for (const bytes of bad) {
      const f = file(bytes);
      const want = await errorOf(() => loadCorpus(f));
      assert.match(want, new RegExp(f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.equal(await errorOf(() => prepareCorpus(f, { home })), want);
    }
    // the first input at fault is the one named, as loadCorpus names it
    const broken = file(Buffer.from([0x61, 0x80]));
    const spec = [file('fine'), broken, path.join(tmp, 'missing.txt')];
    const want = await errorOf(() => loadCorpus(spec));
    assert.match(want, /not UTF-8 text \(invalid byte at offset 1\)/);
    assert.equal(await errorOf(() => prepareCorpus(spec, { home })), want);
    for (const s of [[file(''), file('\ufeff')], file('')]) {
      assert.equal(
        await errorOf(() => prepareCorpus(s, { home })),
        await errorOf(() => loadCorpus(s)),
      );
    }
    assert.equal(
      await errorOf(() => prepareCorpus(file(big), { home, maxBytes: 1000 })),
      await errorOf(() => loadCorpus(path.join(tmp, `in-${files - 1}.txt`), { maxBytes: 1000 })),
    );
  });

  it('TextCheck finds what decodeText finds, however the bytes are cut', () => {
    const texts = [
      Buffer.from('aé日😀b'),
      Buffer.from([0x61, 0xe2, 0x82]),
      Buffer.from([0x61, 0xf0, 0x9f, 0x98, 0x80, 0xc3]),
      Buffer.from([0xe0, 0x80, 0x80]),
      Buffer.from([0x61, 0x62, 0x80, 0x00]),
      Buffer.from([0xf4, 0x90, 0x80, 0x80]),
      Buffer.from([0x61, 0xc3, 0xa9, 0xed, 0xbf, 0xbf]),
    ];
    for (const bytes of texts) {
      let want: string | undefined;
      try {
        decodeText(bytes, 'x.txt');
      } catch (e) {
        want = (e as Error).message;
      }
      for (let a = 0; a <= bytes.length; a++) {
        for (let b = a; b <= bytes.length; b++) {
          const check = new TextCheck();
          for (const part of [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)])
            check.push(part);
          assert.equal(check.problem('x.txt')?.message, want, `${bytes.toString('hex')} ${a} ${b}`);
          // as the readers push: each part read into the same Buffer, overwritten by the next
          const reused = new TextCheck();
          const buffer = Buffer.alloc(bytes.length);
          for (const part of [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]) {
            part.copy(buffer);
            reused.push(buffer.subarray(0, part.length));
            buffer.fill(0xff); // what a next read leaves there before it lands
          }
          assert.equal(
            reused.problem('x.txt')?.message,
            want,
            `reused ${bytes.toString('hex')} ${a} ${b}`,
          );
        }
      }
    }
  });

  it('encodes in a model’s vocabulary as encode does, errors included', async () => {
    const f = file('Hello, World! 😀 ünïcode');
    const prepared = await prepareCorpus(f, { home });
    const text = (await loadCorpus(f)).text;
    const full = Vocabulary.fromText(text);
    assert.deepEqual(encodeIn(prepared, full, 'corpus x', 'error'), full.encode(text));
    const small = new Vocabulary([...'helo, wrd!'].sort());
    const message = (run: () => unknown): string => {
      try {
        run();
      } catch (e) {
        return (e as Error).message;
      }
      return assert.fail('no error');
    };
    for (const policy of ['error', 'map'] as const) {
      assert.equal(
        message(() => encodeIn(prepared, small, 'corpus x', policy)),
        message(() => small.encode(text, 'corpus x', policy)),
      );
    }
    const limited = new Vocabulary([...'\uFFFDhelo, wrd!'].sort(), '\uFFFD');
    assert.deepEqual(
      encodeIn(prepared, limited, 'corpus x', 'map'),
      limited.encode(text, 'corpus x', 'map'),
    );
  });
});
