// Several inputs in one corpus (issue 13, part 3): --corpus repeated or with commas, a folder, a
// glob; the documents joined with a blank line; the byte limit over them all; each decoded on
// its own, its errors naming it; the dry run listing each with its size.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadModel } from '../src/checkpoint/model-format.ts';
import { DOCUMENT_SEPARATOR, folderName, loadCorpus } from '../src/corpus/corpus.ts';
import { expandSpecs, globFiles } from '../src/corpus/inputs.ts';
import { UserError } from '../src/errors.ts';
import { REPO, cliEnv } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-multi-'));
const at = (...p: string[]): string => path.join(tmp, ...p);
/** Writes `text` to the file at tmp/`name` (folders made as needed); returns the path. */
function put(name: string, text: string | Buffer): string {
  const file = at(name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

const A = 'The First Document, long enough for a few windows of text.\n';
const B = 'the second one ends without a line end';
const a = put('a.txt', A);
const b = put('b.txt', B);
const comma = put('c,d.txt', 'Comma in the name\n');
// a folder: nested, with hidden files and folders that are left out
put('books/vol2/ch1.md', 'two one\n');
put('books/vol1/ch2.md', 'one two\n');
put('books/vol1/ch1.md', 'one one\n');
put('books/notes.txt', 'notes\n');
put('books/.hidden.md', 'hidden\n');
put('books/.git/HEAD.md', 'hidden too\n');
mkdirSync(at('empty'));
put('quiet/.only-hidden', 'x');

/** Asserts that `p` rejects with a one-line UserError matching `re`; returns the message. */
async function rejectsUser(p: Promise<unknown>, re: RegExp): Promise<string> {
  const err = await p.then(
    () => assert.fail('expected a UserError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UserError, `expected a UserError, got ${String(err)}`);
  assert.match(err.message, re);
  assert.ok(!err.message.includes('\n'), 'one line');
  return err.message;
}

/** `charlstm ...args` run in the test's folder, so that relative names and models/ are its own
 * (tsx found from here, not from that folder). */
function charlstm(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const main = path.join(REPO, 'src', 'cli', 'main.ts');
  const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), main, ...args], {
    cwd: tmp,
    encoding: 'utf8',
    env: cliEnv(),
    timeout: 240_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const expand = (specs: string[]): ReturnType<typeof expandSpecs> =>
  expandSpecs(specs, { isBuiltin: (n) => n === 'moby-dick' || n === 'nietzsche' });

describe('the inputs --corpus names', () => {
  test('commas split a value, and repeating the flag gives the same inputs', async () => {
    const joined = await expand([`${a},${b}`]);
    assert.deepEqual(
      joined.map((g) => [g.kind, g.inputs]),
      [
        ['file', [a]],
        ['file', [b]],
      ],
    );
    assert.deepEqual(await expand([a, b]), joined);
    assert.deepEqual(
      (await expand([` ${a} , moby-dick`])).map((g) => [g.kind, g.inputs]),
      [
        ['file', [a]],
        ['builtin', ['moby-dick']],
      ],
      'spaces around a comma go',
    );
  });

  test('a file whose name has a comma is itself, alone or among others', async () => {
    assert.deepEqual(
      (await expand([comma])).map((g) => g.inputs),
      [[comma]],
    );
    assert.deepEqual(
      (await expand([a, comma])).map((g) => g.inputs),
      [[a], [comma]],
    );
  });

  test('a folder: its files at every depth, sorted by path, hidden ones left out', async () => {
    const [group, ...rest] = await expand([at('books')]);
    assert.equal(rest.length, 0);
    assert.equal(group!.kind, 'folder');
    assert.equal(group!.name, 'books');
    assert.deepEqual(group!.inputs, [
      at('books', 'notes.txt'),
      at('books', 'vol1', 'ch1.md'),
      at('books', 'vol1', 'ch2.md'),
      at('books', 'vol2', 'ch1.md'),
    ]);
  });

  test('globs: *, ? and **, files only, sorted, hidden names only when asked for', async () => {
    assert.deepEqual(await globFiles(at('books', '**', '*.md')), [
      at('books', 'vol1', 'ch1.md'),
      at('books', 'vol1', 'ch2.md'),
      at('books', 'vol2', 'ch1.md'),
    ]);
    assert.deepEqual(await globFiles(at('books', 'vol?', 'ch1.*')), [
      at('books', 'vol1', 'ch1.md'),
      at('books', 'vol2', 'ch1.md'),
    ]);
    assert.deepEqual(await globFiles(at('books', '*')), [at('books', 'notes.txt')]);
    assert.deepEqual(await globFiles(at('books', '.*.md')), [at('books', '.hidden.md')]);
    assert.deepEqual(await globFiles(at('*.txt')), [a, b, comma]);
    const [group] = await expand([at('books', '**', '*.md')]);
    assert.deepEqual([group!.kind, group!.name], ['glob', 'books']);
  });

  test('a missing file, an empty folder, a glob matching nothing: one line naming it', async () => {
    const missing = at('missing.txt');
    assert.equal(
      await rejectsUser(loadCorpus(`${a},${missing}`), /not found/),
      `corpus file not found: ${missing}`,
    );
    assert.equal(
      await rejectsUser(loadCorpus([a, at('empty')]), /folder/),
      `cannot read corpus ${at('empty')}: it is a folder with no files in it (hidden ones are skipped)`,
    );
    await rejectsUser(loadCorpus(at('quiet')), /quiet: it is a folder with no files in it/);
    assert.equal(
      await rejectsUser(loadCorpus(`${a},${at('*.none')}`), /glob/),
      `no file matches the corpus glob "${at('*.none')}"`,
    );
    await rejectsUser(loadCorpus(`${a},,${b}`), /has an empty part between its commas$/);
    await rejectsUser(loadCorpus(`${a},shakespeare`), /^unknown corpus "shakespeare"/);
  });
});

describe('loadCorpus with several inputs', () => {
  test('the texts joined with a blank line, each input with its size', async () => {
    const c = await loadCorpus(`${a},${b}`, { lowercase: false });
    assert.equal(DOCUMENT_SEPARATOR, '\n\n');
    assert.equal(c.text, `${A}\n\n${B}`);
    assert.equal(c.name, 'a+b');
    assert.equal(c.source, `${a}, ${b}`);
    assert.deepEqual(c.inputs, [
      { source: a, bytes: 59, characters: 59 },
      { source: b, bytes: 38, characters: 38 },
    ]);
    const repeated = await loadCorpus([a, b], { lowercase: false });
    assert.deepEqual(repeated, c);
    assert.equal((await loadCorpus([a, b])).text, `${A}\n\n${B}`.toLowerCase());
  });

  test('a folder is named after itself; characters are code points', async () => {
    const emoji = put('emoji/x.txt', 'é😀\n');
    put('emoji/y.txt', 'ok');
    const c = await loadCorpus(path.dirname(emoji), { lowercase: false });
    assert.equal(c.name, 'emoji');
    assert.equal(c.text, 'é😀\n\n\nok');
    assert.deepEqual(
      c.inputs.map((i) => [i.bytes, i.characters]),
      [
        [7, 3],
        [2, 2],
      ],
    );
    const one = await loadCorpus(emoji, { lowercase: false });
    assert.deepEqual([one.name, one.inputs], ['x', [{ source: emoji, bytes: 7, characters: 3 }]]);
  });

  test('empty inputs add nothing; all empty is refused', async () => {
    const e1 = put('e/1.txt', '');
    const e2 = put('e/2.txt', '');
    assert.equal((await loadCorpus([e1, a, e2], { lowercase: false })).text, A);
    await rejectsUser(loadCorpus([e1, e2]), /^corpus 1\+2 is empty: every input is empty$/);
  });

  test('--max-corpus-bytes bounds the inputs together, naming the one that passes it', async () => {
    assert.equal((await loadCorpus([a, b], { maxBytes: 97 })).inputs.length, 2);
    assert.equal(
      await rejectsUser(loadCorpus([a, b], { maxBytes: 96 }), /limit/),
      `the corpus up to ${b} (59 bytes before it) is larger than the limit of 96 bytes (96 B); raise it with --max-corpus-bytes`,
    );
    await rejectsUser(
      loadCorpus([a, b], { maxBytes: 58 }),
      new RegExp(`^corpus ${a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is larger than the limit`),
    );
  });

  test('each input is decoded strictly on its own, its errors naming it', async () => {
    const bad = put('bad/latin1.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    assert.equal(
      await rejectsUser(loadCorpus([a, bad]), /UTF-8/),
      `${bad} is not UTF-8 text (invalid byte at offset 3)`,
    );
    const wide = put('bad/utf16.txt', Buffer.from('\ufeffhello', 'utf16le'));
    await rejectsUser(loadCorpus(`${a},${wide}`), /utf16\.txt is UTF-16 \(little-endian\) text/);
    // a BOM is dropped from every input, not only the first
    const bom = put(
      'bom/b.txt',
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('x')]),
    );
    assert.equal((await loadCorpus([a, bom], { lowercase: false })).text, `${A}\n\nx`);
  });

  test('a name for the default --out folder: safe on every file system', () => {
    assert.equal(folderName(['a', 'b']), 'a+b');
    assert.equal(folderName(['a', 'b', 'c', 'd', 'e']), 'a+b+c+2-more');
    assert.equal(folderName(['what?', 'a:b', '"x"']), 'what_+a_b+_x_');
    assert.equal(folderName(['..', '.']), 'corpus');
  });
});

describe('charlstm train with several inputs', () => {
  test('--dry-run lists each input with its size before the corpus figures', () => {
    const r = charlstm(['train', '--corpus', `${a},${b}`, '--dry-run', '--maxlen', '10']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.stdout.startsWith(
        'inputs: 2, joined with a blank line between documents (a window may span a join)\n' +
          `  ${a}: 59 bytes, 59 characters\n` +
          `  ${b}: 38 bytes, 38 characters\n` +
          'corpus length: 99\n',
      ),
      r.stdout,
    );
    // the flag repeated, and several values after one flag (what a shell makes of a glob)
    for (const args of [
      ['--corpus', a, '--corpus', b],
      ['--corpus', a, b],
    ]) {
      const again = charlstm(['train', ...args, '--dry-run', '--maxlen', '10']);
      assert.equal(again.stdout, r.stdout);
    }
  });

  test('a bad input: one line naming it, exit 2', () => {
    const r = charlstm(['train', '--corpus', `a.txt,books,nope.txt`, '--dry-run']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'charlstm: error: corpus file not found: nope.txt\n');
  });

  test('the model is saved to models/<a+b>, its metadata naming the inputs', async () => {
    const r = charlstm(
      ['train', '--corpus', 'a.txt', '--corpus', 'books', '--epochs', '1', '--units', '8'].concat([
        '--maxlen',
        '10',
        '--sample-length',
        '0',
        '--seed',
        '1',
        '--val-split',
        '0',
      ]),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^model saved to models\/a\+books \(1 epoch\)$/m);
    const { meta } = await loadModel(at('models', 'a+books'));
    assert.equal(meta.training.corpus, 'a+books');
    assert.equal(meta.training.source, 'a.txt, books');
  });
});
