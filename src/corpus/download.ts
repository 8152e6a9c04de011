import { createHash, randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { CORPUS } from '../defaults.ts';
import { UserError } from '../errors.ts';

export interface DownloadOptions {
  url: string;
  /** Final path of the file; it appears only once the download is complete and verified. */
  dest: string;
  /** Expected size in bytes, when known (built-in corpora). */
  size?: number;
  /** Expected sha256 as lowercase hex, when known (built-in corpora). */
  sha256?: string;
  fetchImpl?: typeof fetch;
  /** Draw a progress bar on stderr. Default false: a library should not write to the terminal unasked. */
  progress?: boolean;
  /** Shown in front of the progress bar; defaults to the file name of `dest`. */
  label?: string;
  /** The most bytes accepted (default CORPUS.maxBytes): an endless body cannot fill the disk. */
  maxBytes?: number;
  /** How long the server may take to answer with its headers (default CORPUS.connectTimeoutMs). */
  connectTimeoutMs?: number;
  /** How long the body may go without a byte (default CORPUS.idleTimeoutMs). */
  idleTimeoutMs?: number;
}

/** The message for a corpus over the size limit: the source, the limit, and how to raise it. */
export function tooLarge(what: string, maxBytes: number): UserError {
  return new UserError(
    `${what} is larger than the limit of ${maxBytes} bytes (${formatBytes(maxBytes)}); raise it with --max-corpus-bytes`,
  );
}

// Partial downloads in progress, removed on every way out: a thrown error (the finally below), a
// process.exit elsewhere ('exit'), and a signal (SIGINT, SIGTERM, SIGHUP), whose default action
// would end the process without running any finally. The handlers are installed while a
// download runs and removed when the last one ends.
const live = new Map<string, AbortController>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function removeLiveFiles(): void {
  for (const file of live.keys()) {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  removeLiveFiles();
  for (const ctl of live.values()) ctl.abort(new Interrupted(signal));
  if (process.listenerCount(signal) === 1) {
    // Nobody else handles it: end the process as the signal would have, files removed.
    untrack();
    process.kill(process.pid, signal);
  }
  // Otherwise whoever else listens decides; the aborted download ends with a UserError.
}

class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}

function track(file: string, ctl: AbortController): void {
  if (live.size === 0) {
    process.on('exit', removeLiveFiles);
    for (const sig of SIGNALS) process.on(sig, onSignal);
  }
  live.set(file, ctl);
}

function untrack(file?: string): void {
  if (file === undefined) live.clear();
  else live.delete(file);
  if (live.size === 0) {
    process.off('exit', removeLiveFiles);
    for (const sig of SIGNALS) process.off(sig, onSignal);
  }
}

/** The partial files of the downloads in progress (for tests). */
export function liveDownloadFiles(): string[] {
  return [...live.keys()];
}

/** Advice for when the network is the problem: both alternatives need no network. */
const OFFLINE_HINT = 'use a local text file, or --corpus moby-dick, which works offline';

/**
 * Download `url` to `dest`. The body is streamed into a temporary file beside `dest`, flushed to
 * disk and then renamed over `dest`, so a reader (or a later run after a crash or Ctrl-C) never
 * sees a partial file under the final name. With `size`/`sha256` the bytes are verified before
 * the rename. Every failure the user can do something about is a UserError, and leaves no file.
 */
export async function downloadToCache(opts: DownloadOptions): Promise<void> {
  const { url, dest } = opts;
  const fetchImpl = opts.fetchImpl ?? fetch;
  const maxBytes = opts.maxBytes ?? CORPUS.maxBytes;
  const connectMs = opts.connectTimeoutMs ?? CORPUS.connectTimeoutMs;
  const idleMs = opts.idleTimeoutMs ?? CORPUS.idleTimeoutMs;
  const dir = path.dirname(dest);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`cannot create cache folder ${dir}: ${reason(err)}`);
  }

  // One controller ends the request, whichever limit is hit first (or a signal, see onSignal).
  const ctl = new AbortController();
  const seconds = (ms: number) => `${ms / 1000} s`;
  const timeout = (why: string, ms: number): NodeJS.Timeout =>
    setTimeout(() => ctl.abort(new UserError(why)), ms);
  /** The reason the request was aborted, when it was: a timeout or a signal, as a UserError. */
  const aborted = (): UserError | undefined => {
    const r: unknown = ctl.signal.reason;
    if (!ctl.signal.aborted) return undefined;
    if (r instanceof UserError) return r;
    if (r instanceof Interrupted) {
      // the exit status a shell gives a process ended by the signal: 128 + its number
      const code = 128 + (os.constants.signals[r.signal] ?? 0);
      return new UserError(`download of ${url} ${r.message}`, code);
    }
    return new UserError(`download of ${url} was aborted`);
  };

  let res: Response;
  const connectTimer = timeout(
    `cannot download ${url}: no answer from the server within ${seconds(connectMs)}; ${OFFLINE_HINT}`,
    connectMs,
  );
  try {
    res = await fetchImpl(url, { signal: ctl.signal });
  } catch (err) {
    throw aborted() ?? new UserError(`cannot download ${url}: ${reason(err)}; ${OFFLINE_HINT}`);
  } finally {
    clearTimeout(connectTimer);
  }
  if (!res.ok) {
    // Release the connection; the error page is of no use.
    await res.body?.cancel().catch(() => {});
    const status = `${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
    throw new UserError(`download of ${url} failed: HTTP ${status}`);
  }

  // With a Content-Encoding, fetch decompresses and Content-Length counts the compressed bytes,
  // so it says nothing about how many bytes we will see.
  const encoding = res.headers.get('content-encoding');
  const lengthHeader = res.headers.get('content-length');
  const contentLength =
    lengthHeader !== null && /^\d+$/.test(lengthHeader) && (!encoding || encoding === 'identity')
      ? Number(lengthHeader)
      : undefined;
  // A server that announces the wrong size is serving some other file; fail before reading it.
  if (opts.size !== undefined && contentLength !== undefined && contentLength !== opts.size) {
    await res.body?.cancel().catch(() => {});
    throw new UserError(
      `download of ${url} has the wrong size: expected ${opts.size} bytes, server sent ${contentLength}`,
    );
  }
  if (contentLength !== undefined && contentLength > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge(`download of ${url} (${contentLength} bytes)`, maxBytes);
  }

  const tmp = `${dest}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  let file: FileHandle | undefined;
  let done = false;
  const bar = opts.progress
    ? startBar(opts.label ?? path.basename(dest), contentLength ?? opts.size)
    : undefined;
  track(tmp, ctl);
  try {
    try {
      file = await open(tmp, 'wx');
    } catch (err) {
      throw new UserError(`cannot write to cache folder ${dir}: ${reason(err)}`);
    }
    const hash = createHash('sha256');
    let got = 0;
    const expectedTotal = contentLength ?? opts.size;
    const cutShort = (why: string) =>
      new UserError(
        `download of ${url} was cut short after ${got}${expectedTotal !== undefined ? ` of ${expectedTotal}` : ''} bytes: ${why}`,
      );

    if (res.body) {
      const reader = res.body.getReader();
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        const idleTimer = timeout(
          `download of ${url} stalled: no data for ${seconds(idleMs)} after ${got} bytes`,
          idleMs,
        );
        try {
          chunk = await reader.read();
        } catch (err) {
          // undici reports a connection closed before Content-Length bytes as a read error.
          throw aborted() ?? cutShort(reason(err));
        } finally {
          clearTimeout(idleTimer);
        }
        if (chunk.done) break;
        const bytes = chunk.value;
        got += bytes.length;
        if (got > maxBytes) {
          await reader.cancel().catch(() => {});
          throw tooLarge(`download of ${url}`, maxBytes);
        }
        if (opts.size !== undefined && got > opts.size) {
          await reader.cancel().catch(() => {});
          throw new UserError(
            `download of ${url} has the wrong size: expected ${opts.size} bytes, got more`,
          );
        }
        hash.update(bytes);
        try {
          await file.write(bytes);
        } catch (err) {
          throw new UserError(`cannot write ${tmp}: ${reason(err)}`);
        }
        bar?.update(got, { done: formatBytes(got) });
      }
    }
    // A fetch implementation may end the stream quietly on a dropped connection.
    if (contentLength !== undefined && got < contentLength) {
      throw cutShort('connection closed early');
    }
    if (opts.size !== undefined && got !== opts.size) {
      throw new UserError(
        `download of ${url} has the wrong size: expected ${opts.size} bytes, got ${got}`,
      );
    }
    const digest = hash.digest('hex');
    if (opts.sha256 !== undefined && digest !== opts.sha256.toLowerCase()) {
      throw new UserError(
        `download of ${url} has the wrong sha256: expected ${opts.sha256}, got ${digest}`,
      );
    }
    try {
      // fsync before rename: otherwise a power cut can leave `dest` renamed but empty.
      await file.sync();
      await file.close();
      file = undefined;
      await rename(tmp, dest);
    } catch (err) {
      throw new UserError(`cannot save ${dest}: ${reason(err)}`);
    }
    done = true;
    await syncDir(dir);
  } finally {
    bar?.stop();
    await file?.close().catch(() => {});
    if (!done) await unlink(tmp).catch(() => {});
    untrack(tmp);
  }
}

/** Make a rename durable. Best effort: some platforms (Windows) cannot open a folder. */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The file itself is complete; only durability across a power cut is lost.
  }
}

function startBar(label: string, total: number | undefined): cliProgress.SingleBar {
  const known = total !== undefined && total > 0;
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: known
      ? `downloading ${label} [{bar}] {percentage}% {done}/{all}`
      : `downloading ${label} {done}`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(known ? total : 0, 0, { done: formatBytes(0), all: known ? formatBytes(total) : '?' });
  return bar;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * A short reason for an error, as one line. fetch wraps the interesting part: its own message is
 * just "fetch failed" or "terminated", with the system error (ECONNREFUSED, ENOTFOUND, "other side
 * closed") in `cause`, which may itself be an AggregateError when several addresses were tried.
 */
export function reason(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      const code = (e as NodeJS.ErrnoException).code;
      let msg = e.message;
      if (!msg && e instanceof AggregateError && e.errors[0] instanceof Error) {
        msg = e.errors[0].message;
      }
      if (!msg && code) msg = code;
      // Skip the generic wrappers when there is something more specific underneath.
      const generic = msg === 'fetch failed' || msg === 'terminated';
      if (msg && !(generic && e.cause)) parts.push(msg);
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return (parts.join(': ') || 'unknown error').replace(/\s+/g, ' ');
}
