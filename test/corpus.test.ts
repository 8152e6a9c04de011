import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BUILTIN_CORPORA, loadCorpus } from '../src/corpus/corpus.ts';
import { downloadToCache } from '../src/corpus/download.ts';
import { firstInvalidUtf8 } from '../src/corpus/text.ts';
import { UserError } from '../src/errors.ts';
import { REFERENCE_SKIP, referenceDataDir } from './helpers/cli.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the folder holding the exact reference nietzsche.txt ($CHARLSTM_DATA_DIR), when there is one
const sharedCorpora = referenceDataDir() ?? path.resolve(repoRoot, 'no-reference-corpus');

const SMALL = 'Hello, World!\nA small Fake corpus.\n';
const SMALL_BYTES = Buffer.from(SMALL);
const SMALL_SHA = createHash('sha256').update(SMALL_BYTES).digest('hex');

let tmpRoot: string;
let server: http.Server;
let base: string;
let requests: string[] = [];

/** A fresh, empty folder under the test's temp root. */
async function freshDir(label: string): Promise<string> {
  return mkdtemp(path.join(tmpRoot, `${label}-`));
}

/** Asserts that `p` rejects with a UserError whose message matches `re`; returns the message. */
async function rejectsUser(p: Promise<unknown>, re: RegExp): Promise<string> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UserError, `expected a UserError, got ${String(caught)}`);
  assert.match(caught.message, re);
  assert.ok(!caught.message.includes('\n'), 'user error messages are one line');
  return caught.message;
}

/** Files in the cache's corpora folder (none at all when the folder was never made). */
async function cacheFiles(home: string): Promise<string[]> {
  try {
    return (await readdir(path.join(home, 'corpora'))).sort();
  } catch {
    return [];
  }
}

before(async () => {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'charlstm-corpus-test-'));
  const nietzsche = await readFile(path.join(sharedCorpora, 'nietzsche.txt')).catch(() => null);
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    switch (req.url) {
      case '/small.txt':
      case '/a/input.txt':
      case '/b/input.txt':
        res.writeHead(200, { 'Content-Length': SMALL_BYTES.length });
        res.end(SMALL_BYTES);
        return;
      case '/chunked.txt':
        // No Content-Length: the body is sent chunked.
        res.writeHead(200);
        res.write(SMALL_BYTES.subarray(0, 5));
        res.end(SMALL_BYTES.subarray(5));
        return;
      case '/other.txt': {
        // Same size as SMALL, different bytes.
        const other = Buffer.from(SMALL.toUpperCase());
        res.writeHead(200, { 'Content-Length': other.length });
        res.end(other);
        return;
      }
      case '/truncated.txt':
        // Promise 1000 bytes, send 10, then drop the connection.
        res.writeHead(200, { 'Content-Length': 1000 });
        res.write(SMALL_BYTES.subarray(0, 10), () => res.socket?.destroy());
        return;
      case '/nietzsche.txt':
        if (!nietzsche) break;
        res.writeHead(200, { 'Content-Length': nietzsche.length });
        res.end(nietzsche);
        return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(tmpRoot, { recursive: true, force: true });
});

describe('downloadToCache', () => {
  test('downloads, verifies size and sha256, and leaves only the final file', async () => {
    const home = await freshDir('dl-ok');
    const dest = path.join(home, 'corpora', 'small.txt');
    await downloadToCache({
      url: `${base}/small.txt`,
      dest,
      size: SMALL_BYTES.length,
      sha256: SMALL_SHA,
    });
    assert.deepEqual(await readFile(dest), SMALL_BYTES);
    assert.deepEqual(await cacheFiles(home), ['small.txt']);
  });

  test('a body without Content-Length is accepted', async () => {
    const home = await freshDir('dl-chunked');
    const dest = path.join(home, 'corpora', 'chunked.txt');
    await downloadToCache({ url: `${base}/chunked.txt`, dest, sha256: SMALL_SHA });
    assert.deepEqual(await readFile(dest), SMALL_BYTES);
  });

  test('HTTP 404 names the status and URL and leaves nothing', async () => {
    const home = await freshDir('dl-404');
    const url = `${base}/missing.txt`;
    const msg = await rejectsUser(
      downloadToCache({ url, dest: path.join(home, 'corpora', 'm.txt') }),
      /failed: HTTP 404 Not Found$/,
    );
    assert.equal(msg, `download of ${url} failed: HTTP 404 Not Found`);
    assert.deepEqual(await cacheFiles(home), []);
  });

  test('a truncated body is an error and leaves nothing in the cache', async () => {
    const home = await freshDir('dl-trunc');
    await rejectsUser(
      downloadToCache({ url: `${base}/truncated.txt`, dest: path.join(home, 'corpora', 't.txt') }),
      /download of http:\/\/127\.0\.0\.1:\d+\/truncated\.txt was cut short after \d+ of 1000 bytes/,
    );
    assert.deepEqual(await cacheFiles(home), []);
  });

  test('a sha256 mismatch says expected vs got and leaves nothing', async () => {
    const home = await freshDir('dl-sha');
    const otherSha = createHash('sha256').update(SMALL.toUpperCase()).digest('hex');
    await rejectsUser(
      downloadToCache({
        url: `${base}/other.txt`,
        dest: path.join(home, 'corpora', 'o.txt'),
        size: SMALL_BYTES.length,
        sha256: SMALL_SHA,
      }),
      new RegExp(`wrong sha256: expected ${SMALL_SHA}, got ${otherSha}`),
    );
    assert.deepEqual(await cacheFiles(home), []);
  });

  test('a size mismatch says expected vs got and leaves nothing', async () => {
    const home = await freshDir('dl-size');
    await rejectsUser(
      downloadToCache({
        url: `${base}/small.txt`,
        dest: path.join(home, 'corpora', 's.txt'),
        size: SMALL_BYTES.length + 1,
      }),
      new RegExp(
        `wrong size: expected ${SMALL_BYTES.length + 1} bytes, server sent ${SMALL_BYTES.length}`,
      ),
    );
    assert.deepEqual(await cacheFiles(home), []);
  });

  test('a network failure names the URL and the cause and suggests offline corpora', async () => {
    // Find a port nothing listens on: bind one, then free it.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = `http://127.0.0.1:${port}/x.txt`;
    const home = await freshDir('dl-net');
    const msg = await rejectsUser(
      downloadToCache({ url, dest: path.join(home, 'corpora', 'x.txt') }),
      /ECONNREFUSED/,
    );
    assert.ok(msg.includes(url), msg);
    assert.match(msg, /moby-dick/);
  });
});

describe('loadCorpus from a URL', () => {
  test('downloads into <home>/corpora, then loads from the cache with the server gone', async () => {
    const home = await freshDir('url');
    const url = `${base}/small.txt`;
    const first = await loadCorpus(url, { home, progress: false, lowercase: false });
    assert.equal(first.name, 'small');
    assert.equal(first.source, url);
    assert.equal(first.text, SMALL);
    const files = await cacheFiles(home);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^small-[0-9a-f]{12}\.txt$/);

    // A stand-in fetch that fails the test if the cache hit touches the network.
    const noNetwork = (() => {
      throw new Error('network used on a cache hit');
    }) as unknown as typeof fetch;
    const second = await loadCorpus(url, { home, progress: false, fetchImpl: noNetwork });
    assert.equal(second.text, SMALL.toLowerCase());
  });

  test('the cache survives the server being stopped', async () => {
    const home = await freshDir('url-stopped');
    const own = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': SMALL_BYTES.length });
      res.end(SMALL_BYTES);
    });
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(own.address() as AddressInfo).port}/story.txt`;
    await loadCorpus(url, { home, progress: false });
    own.closeAllConnections();
    await new Promise<void>((resolve) => own.close(() => resolve()));
    // The server is gone: without the cache this would be ECONNREFUSED.
    const again = await loadCorpus(url, { home, progress: false, lowercase: false });
    assert.equal(again.text, SMALL);
    assert.equal(again.name, 'story');
  });

  test('different URLs with the same file name do not collide in the cache', async () => {
    const home = await freshDir('url-collide');
    await loadCorpus(`${base}/a/input.txt`, { home, progress: false });
    await loadCorpus(`${base}/b/input.txt`, { home, progress: false });
    const files = await cacheFiles(home);
    assert.equal(files.length, 2);
    assert.ok(files.every((f) => f.startsWith('input-')));
  });

  test('a 404 from loadCorpus is a UserError', async () => {
    const home = await freshDir('url-404');
    await rejectsUser(loadCorpus(`${base}/nope.txt`, { home, progress: false }), /HTTP 404/);
    assert.deepEqual(await cacheFiles(home), []);
  });
});

describe('loadCorpus built-ins', () => {
  /** Sends the built-in's URL to the local server instead, so the test needs no internet. */
  const redirect = ((_url: string | URL | Request) =>
    fetch(`${base}/nietzsche.txt`)) as typeof fetch;

  test(
    'nietzsche from the data dir has the reference length and vocabulary',
    { skip: REFERENCE_SKIP },
    async () => {
      const c = await loadCorpus('nietzsche', { dataDir: sharedCorpora });
      assert.equal(c.name, 'nietzsche');
      assert.equal(c.source, path.join(sharedCorpora, 'nietzsche.txt'));
      assert.equal([...c.text].length, 600893);
      assert.equal(new Set(c.text).size, 57); // distinct characters after lowercasing
      const raw = await loadCorpus('nietzsche', { dataDir: sharedCorpora, lowercase: false });
      assert.equal(new Set(raw.text).size, 84);
    },
  );

  test('a data-dir file that is not the known text is an error naming the file', async () => {
    const dataDir = await freshDir('datadir-bad');
    const file = path.join(dataDir, 'nietzsche.txt');
    await writeFile(file, 'not nietzsche');
    const msg = await rejectsUser(
      loadCorpus('nietzsche', { dataDir, home: await freshDir('unused') }),
      /expected 600901 bytes, got 13/,
    );
    assert.ok(msg.includes(file), msg);
  });

  test('moby-dick loads offline from the npm package', async () => {
    // An empty data dir, so that $CHARLSTM_DATA_DIR (set in CI) is not what gets read.
    const dataDir = await freshDir('datadir-empty');
    const c = await loadCorpus('moby-dick', { dataDir, lowercase: false });
    assert.equal(c.name, 'moby-dick');
    assert.match(c.source, /@stdlib[\\/]datasets-moby-dick[\\/]data[\\/]data\.txt$/);
    assert.equal([...c.text].length, 1190317);
    assert.equal(new Set(c.text).size, 83);
    assert.notEqual(c.text, c.text.toLowerCase());
  });

  test(
    'nietzsche is downloaded, verified, cached, and a corrupt cache is fetched again',
    { skip: REFERENCE_SKIP },
    async () => {
      const home = await freshDir('builtin-dl');
      const dataDir = await freshDir('datadir-none');
      requests = [];
      const c = await loadCorpus('nietzsche', {
        home,
        dataDir,
        progress: false,
        fetchImpl: redirect,
      });
      assert.equal([...c.text].length, 600893);
      assert.equal(c.source, path.join(home, 'corpora', 'nietzsche.txt'));
      assert.deepEqual(await cacheFiles(home), ['nietzsche.txt']);
      assert.equal(requests.length, 1);

      await loadCorpus('nietzsche', { home, dataDir, progress: false, fetchImpl: redirect });
      assert.equal(requests.length, 1, 'a good cached copy is used without the network');

      await writeFile(path.join(home, 'corpora', 'nietzsche.txt'), 'damaged');
      const again = await loadCorpus('nietzsche', {
        home,
        dataDir,
        progress: false,
        fetchImpl: redirect,
      });
      assert.equal(requests.length, 2, 'a corrupt cached copy is downloaded again');
      assert.equal([...again.text].length, 600893);
      const cached = await readFile(path.join(home, 'corpora', 'nietzsche.txt'));
      assert.equal(
        createHash('sha256').update(cached).digest('hex'),
        BUILTIN_CORPORA.nietzsche!.sha256,
      );
    },
  );
});

describe('loadCorpus from a file', () => {
  test('name, source and lowercase on and off', async () => {
    const dir = await freshDir('file');
    const file = path.join(dir, 'My Text.TXT');
    await writeFile(file, 'Ab CD\r\nÉé\n');
    const lower = await loadCorpus(file);
    assert.equal(lower.name, 'My Text');
    assert.equal(lower.source, file);
    assert.equal(lower.text, 'ab cd\r\néé\n'); // CRLF kept
    const kept = await loadCorpus(file, { lowercase: false });
    assert.equal(kept.text, 'Ab CD\r\nÉé\n');
  });

  test('a leading BOM is stripped', async () => {
    const file = path.join(await freshDir('bom'), 'bom.txt');
    await writeFile(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('abc')]));
    assert.equal((await loadCorpus(file)).text, 'abc');
  });

  test('an emoji is one character', async () => {
    const file = path.join(await freshDir('emoji'), 'emoji.txt');
    await writeFile(file, 'a😀b');
    const c = await loadCorpus(file);
    assert.equal([...c.text].length, 3);
    assert.deepEqual([...c.text], ['a', '😀', 'b']);
  });

  test('invalid UTF-8 is rejected with the offset of the bad byte', async () => {
    const file = path.join(await freshDir('latin1'), 'latin1.txt');
    await writeFile(
      file,
      Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' au lait')]),
    );
    const msg = await rejectsUser(
      loadCorpus(file),
      /is not UTF-8 text \(invalid byte at offset 3\)$/,
    );
    assert.ok(msg.startsWith(file), msg);
  });

  test('a file with NUL bytes is called binary', async () => {
    const file = path.join(await freshDir('bin'), 'data.bin');
    await writeFile(file, Buffer.from([0x41, 0x42, 0x00, 0x43]));
    await rejectsUser(
      loadCorpus(file),
      /looks like a binary file, not text \(NUL byte at offset 2\)/,
    );
  });

  test('missing, unknown, folder and empty corpora are user errors', async () => {
    const dir = await freshDir('errors');
    const missing = path.join(dir, 'missing.txt');
    assert.equal(
      await rejectsUser(loadCorpus(missing), /not found/),
      `corpus file not found: ${missing}`,
    );
    await rejectsUser(
      loadCorpus('shakespeare'),
      /unknown corpus "shakespeare".*nietzsche, moby-dick/,
    );
    await rejectsUser(
      loadCorpus(dir),
      new RegExp(`cannot read corpus .*${path.basename(dir)}: it is a folder`),
    );
    const empty = path.join(dir, 'empty.txt');
    await writeFile(empty, '');
    await rejectsUser(loadCorpus(empty), /^corpus empty is empty$/);
    await rejectsUser(loadCorpus('ftp://example.com/x.txt'), /unsupported corpus URL/);
  });
});

describe('firstInvalidUtf8', () => {
  const cases: [number[], number | undefined][] = [
    [[0x61, 0x62], undefined],
    [[0xe2, 0x82, 0xac], undefined], // €
    [[0xf0, 0x9f, 0x98, 0x80], undefined], // 😀
    [[0x61, 0x80], 1], // stray continuation byte
    [[0xc0, 0xaf], 0], // overlong
    [[0xe0, 0x80, 0xaf], 0], // overlong
    [[0xed, 0xa0, 0x80], 0], // surrogate
    [[0xf4, 0x90, 0x80, 0x80], 0], // above U+10FFFF
    [[0x61, 0xe2, 0x82], 1], // cut off at the end
    [[0x61, 0xe2, 0x82, 0x61], 1], // broken off by ASCII
    [[0xff], 0],
  ];
  for (const [bytes, want] of cases) {
    test(`${Buffer.from(bytes).toString('hex')} -> ${want}`, () => {
      const u8 = Uint8Array.from(bytes);
      assert.equal(firstInvalidUtf8(u8), want);
      // Agrees with the fatal decoder about validity.
      let valid = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(u8);
      } catch {
        valid = false;
      }
      assert.equal(valid, want === undefined);
    });
  }
});
