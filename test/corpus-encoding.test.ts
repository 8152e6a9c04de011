import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { loadCorpus } from '../src/corpus/corpus.ts';
import { decodeText, wideEncoding } from '../src/corpus/text.ts';
import { UserError } from '../src/errors.ts';

// A UTF-16 (or UTF-32) corpus is text in the wrong encoding, not a binary file: the message says
// which encoding and how to convert it (issue 11, item 11).

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-encoding-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const TEXT = 'It was the best of times, it was the worst of times.\n';
const le = (s: string): Buffer => Buffer.from(s, 'utf16le');
const be = (s: string): Buffer => Buffer.from(s, 'utf16le').swap16();

function decodeError(bytes: Uint8Array): string {
  try {
    decodeText(bytes, 'x.txt');
  } catch (e) {
    assert.ok(e instanceof UserError);
    return e.message;
  }
  return assert.fail('decoded');
}

describe('corpus encodings', () => {
  it('UTF-16 with or without a byte-order mark is named, with the conversion', () => {
    const cases: [Buffer, string][] = [
      [le('\ufeff' + TEXT), 'UTF-16 (little-endian)'],
      [be('\ufeff' + TEXT), 'UTF-16 (big-endian)'],
      [le(TEXT), 'UTF-16 (little-endian)'],
      [be(TEXT), 'UTF-16 (big-endian)'],
      [le('\ufeff日本語のテキスト'), 'UTF-16 (little-endian)'], // no NUL byte at all
    ];
    for (const [bytes, name] of cases) {
      const iconv = name.includes('little') ? 'UTF-16LE' : 'UTF-16BE';
      assert.equal(
        decodeError(bytes),
        `x.txt is ${name} text, not UTF-8; convert it to UTF-8 (e.g. iconv -f ${iconv} -t UTF-8 old.txt > new.txt)`,
      );
    }
    const utf32 = Buffer.from([0xff, 0xfe, 0, 0, 0x41, 0, 0, 0]);
    assert.match(decodeError(utf32), /is UTF-32 \(little-endian\) text, not UTF-8/);
  });

  it('a binary file is still called binary, and UTF-8 text is not UTF-16', () => {
    assert.match(
      decodeError(Buffer.from([0x41, 0x42, 0x00, 0x43])),
      /looks like a binary file, not text \(NUL byte at offset 2\)/,
    );
    const mostlyText = Buffer.concat([Buffer.from(TEXT.repeat(3)), Buffer.from([0, 1, 2, 3])]);
    assert.match(decodeError(mostlyText), /looks like a binary file/);
    assert.equal(wideEncoding(Buffer.from(TEXT.repeat(10))), undefined);
    assert.equal(wideEncoding(Buffer.from('\ufeff' + TEXT)), undefined); // the UTF-8 BOM
    assert.equal(decodeText(Buffer.from('\ufeff' + TEXT), 'x.txt'), TEXT);
  });

  it('loadCorpus names the file, and the advised iconv command makes it loadable', async (t) => {
    const file = path.join(tmp, 'utf16.txt');
    await writeFile(file, le('\ufeff' + TEXT.repeat(4)));
    await assert.rejects(
      loadCorpus(file),
      (e: unknown) =>
        e instanceof UserError &&
        e.message.startsWith(`${file} is UTF-16 (little-endian) text, not UTF-8; convert it`),
    );
    const out = path.join(tmp, 'utf8.txt');
    const r = spawnSync('sh', ['-c', 'iconv -f UTF-16LE -t UTF-8 "$1" > "$2"', 'sh', file, out]);
    if (r.error || r.status !== 0) {
      t.skip('no iconv here');
      return;
    }
    assert.equal((await loadCorpus(out, { lowercase: false })).text, TEXT.repeat(4));
  });
});
