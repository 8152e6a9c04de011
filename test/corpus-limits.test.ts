import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadCorpus } from '../src/corpus/corpus.ts';
import { downloadToCache, liveDownloadFiles } from '../src/corpus/download.ts';
import { CORPUS } from '../src/defaults.ts';
import { UserError } from '../src/errors.ts';

// Endless and stalled input (issue 11, item 5): a corpus is read with a size cap, so /dev/zero or
// an endless pipe ends with a clear error instead of filling the memory; a download has connect
// and idle timeouts; and its partial file goes on every way out, SIGTERM and SIGINT included.
// Every server here is on 127.0.0.1 and every wait is bounded.

const REPO = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-limits-'));
const TEXT = 'the quick brown fox jumps over the lazy dog.\n';

let server: http.Server;
let base: string;
const sockets = new Set<Socket>();
const timers = new Set<NodeJS.Timeout>();
const children = new Set<ChildProcess>();

before(async () => {
  server = http.createServer((req, res) => {
    switch (req.url) {
      case '/silent.txt':
        return; // never answers (until the test ends and the connection is closed)
      case '/stall.txt':
        // headers and a few bytes, then nothing
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write(TEXT.slice(0, 10));
        return;
      case '/endless.txt': {
        // chunked text for as long as the client reads, at most 20 s
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const chunk = Buffer.from(TEXT.repeat(1000));
        const t = setInterval(() => {
          if (!res.destroyed) res.write(chunk);
        }, 5);
        timers.add(t);
        const stop = setTimeout(() => clearInterval(t), 20_000);
        timers.add(stop);
        res.on('close', () => clearInterval(t));
        return;
      }
      case '/huge.txt':
        // announces more than the limit
        res.writeHead(200, { 'Content-Length': 10_000_000 });
        res.write(TEXT);
        return;
    }
    res.writeHead(404);
    res.end();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const t of timers) clearTimeout(t);
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(tmp, { recursive: true, force: true });
});

/** The UserError `p` rejects with (one line), within `ms`. */
async function userError(p: Promise<unknown>, ms = 20_000): Promise<UserError> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([p, limit]);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    assert.ok(!err.message.includes('\n'), 'one line');
    return err;
  } finally {
    clearTimeout(timer);
  }
  return assert.fail('no error');
}

const partFiles = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.part')) : [];

describe('corpus size limit', () => {
  it('defaults to 4 GiB', () => {
    assert.equal(CORPUS.maxBytes, 4 * 1024 * 1024 * 1024);
  });

  it('/dev/zero stops at the limit with a message naming it and the flag', async () => {
    const rss = process.memoryUsage().rss;
    const e = await userError(loadCorpus('/dev/zero', { maxBytes: 4 << 20 }));
    assert.equal(
      e.message,
      'corpus /dev/zero is larger than the limit of 4194304 bytes (4.0 MiB); raise it with --max-corpus-bytes',
    );
    assert.ok(process.memoryUsage().rss - rss < 256 << 20, 'memory stayed bounded');
  });

  it('an endless FIFO stops at the limit; a short one loads', async (t) => {
    const fifo = path.join(tmp, 'endless.fifo');
    if (spawnSync('mkfifo', [fifo]).status !== 0) {
      t.skip('no mkfifo here');
      return;
    }
    // an endless writer; it gets SIGPIPE when the reader lets go
    const writer = spawn(
      'sh',
      ['-c', 'while :; do echo "all work and no play"; done > "$1"', 'sh', fifo],
      {
        stdio: 'ignore',
      },
    );
    children.add(writer);
    const e = await userError(loadCorpus(fifo, { maxBytes: 100_000 }));
    assert.equal(
      e.message,
      `corpus ${fifo} is larger than the limit of 100000 bytes (97.7 KiB); raise it with --max-corpus-bytes`,
    );
    writer.kill('SIGKILL');

    const short = path.join(tmp, 'short.fifo');
    spawnSync('mkfifo', [short]);
    const w2 = spawn('sh', ['-c', 'printf "%s" "$2" > "$1"', 'sh', short, TEXT], {
      stdio: 'ignore',
    });
    children.add(w2);
    assert.equal((await loadCorpus(short, { maxBytes: 100_000 })).text, TEXT);
  });

  it('a file over the limit is refused; one of exactly the limit loads', async () => {
    const file = path.join(tmp, 'big.txt');
    await writeFile(file, 'a'.repeat(1001));
    const e = await userError(loadCorpus(file, { maxBytes: 1000 }));
    assert.equal(
      e.message,
      `corpus ${file} is larger than the limit of 1000 bytes (1000 B); raise it with --max-corpus-bytes`,
    );
    assert.equal((await loadCorpus(file, { maxBytes: 1001 })).text.length, 1001);
  });

  it('charlstm train --corpus /dev/zero --max-corpus-bytes: one line, exit code 2', () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', ...args], {
        cwd: REPO,
        env: { ...process.env, CHARLSTM_DEBUG: '', CHARLSTM_HOME: tmp },
        encoding: 'utf8',
        timeout: 60_000,
      });
    const r = run('--corpus', '/dev/zero', '--max-corpus-bytes', '1000000', '--dry-run');
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr,
      'charlstm: error: corpus /dev/zero is larger than the limit of 1000000 bytes (976.6 KiB); raise it with --max-corpus-bytes\n',
    );
    const bad = run('--corpus', '/dev/zero', '--max-corpus-bytes', '0x10', '--dry-run');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--max-corpus-bytes <n>' argument '0x10' is invalid/);
  });
});

describe('downloads that never end or stall', () => {
  it('an endless body stops at the limit and leaves no file', async () => {
    const dir = path.join(tmp, 'endless');
    const url = `${base}/endless.txt`;
    const e = await userError(
      downloadToCache({ url, dest: path.join(dir, 'e.txt'), maxBytes: 1_000_000 }),
    );
    assert.equal(
      e.message,
      `download of ${url} is larger than the limit of 1000000 bytes (976.6 KiB); raise it with --max-corpus-bytes`,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a Content-Length over the limit is refused before reading', async () => {
    const dir = path.join(tmp, 'huge');
    const url = `${base}/huge.txt`;
    const e = await userError(
      downloadToCache({ url, dest: path.join(dir, 'h.txt'), maxBytes: 1000 }),
    );
    assert.match(
      e.message,
      /^download of .*\/huge\.txt \(10000000 bytes\) is larger than the limit of 1000 bytes/,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a server that sends headers and then stalls is given up after the idle timeout', async () => {
    const dir = path.join(tmp, 'stall');
    const url = `${base}/stall.txt`;
    const listeners = process.listenerCount('SIGTERM');
    const t0 = Date.now();
    const e = await userError(
      downloadToCache({ url, dest: path.join(dir, 's.txt'), idleTimeoutMs: 300 }),
    );
    assert.equal(e.message, `download of ${url} stalled: no data for 0.3 s after 10 bytes`);
    assert.ok(Date.now() - t0 < 10_000);
    assert.deepEqual(readdirSync(dir), [], 'the partial file is gone');
    assert.deepEqual(liveDownloadFiles(), []);
    assert.equal(process.listenerCount('SIGTERM'), listeners, 'the signal handler is removed');
  });

  it('a server that never answers is given up after the connect timeout', async () => {
    const dir = path.join(tmp, 'silent');
    const url = `${base}/silent.txt`;
    const e = await userError(
      downloadToCache({ url, dest: path.join(dir, 's.txt'), connectTimeoutMs: 300 }),
    );
    assert.match(
      e.message,
      /^cannot download .*\/silent\.txt: no answer from the server within 0\.3 s; /,
    );
    assert.deepEqual(partFiles(dir), []);
  });

  it('loadCorpus passes its limits on to the download', async () => {
    const home = path.join(tmp, 'home-limits');
    const e = await userError(loadCorpus(`${base}/stall.txt`, { home, idleTimeoutMs: 300 }));
    assert.match(e.message, /stalled: no data for 0\.3 s after 10 bytes$/);
    assert.deepEqual(partFiles(path.join(home, 'corpora')), []);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} during a stalled download removes the partial file`, async () => {
      const home = path.join(tmp, `home-${signal}`);
      const corpora = path.join(home, 'corpora');
      await mkdir(home);
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'src/cli/main.ts',
          'train',
          '--corpus',
          `${base}/stall.txt`,
          '--dry-run',
        ],
        {
          cwd: REPO,
          env: { ...process.env, CHARLSTM_DEBUG: '', CHARLSTM_HOME: home },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      children.add(child);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = once(child, 'exit');
      // wait (bounded) for the partial file to appear
      const deadline = Date.now() + 30_000;
      while (partFiles(corpora).length === 0) {
        assert.ok(Date.now() < deadline, `no .part file appeared; stderr: ${stderr}`);
        assert.equal(child.exitCode, null, `the child ended early: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill(signal);
      const noExit = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const [code, sig] = (await exited) as [number | null, NodeJS.Signals | null];
      clearTimeout(noExit);
      assert.equal(sig, signal, `ended by ${signal} (code ${code}); stderr: ${stderr}`);
      assert.deepEqual(partFiles(corpora), [], 'the partial file is gone');
    });
  }
});
