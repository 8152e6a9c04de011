import type { ServerResponse } from 'node:http';

import type { FastifyInstance, FastifyReply } from 'fastify';

import { SERVER } from '../defaults.ts';
import { metrics } from './metrics.ts';

// The one server-sent-events writer of both servers: a streamed generation (POST /v1/generate
// with `stream`) and the training dashboard's live record (GET /v1/train/events). The browser's
// reader is web/src/sse.ts.

/** One event as the wire carries it: `event: <name>` (none: the default "message"), then its
 * data as one line of JSON, then the blank line that ends it. */
export function sseFrame(data: unknown, event?: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** How long an event stream may find its socket full before it is cut (setWriteStall). */
    charlstmWriteStallMs?: number;
  }
}

/** The write-stall limit of every event stream `app` answers (default SERVER.writeStallMs). */
export function setWriteStall(app: FastifyInstance, ms: number): void {
  if (!(Number.isFinite(ms) && ms > 0))
    throw new RangeError(`the write stall limit must be a number of ms > 0, got ${ms}`);
  app.decorate('charlstmWriteStallMs', ms);
}

/**
 * An event stream answering a request: the reply is taken from Fastify (hijacked) and written
 * directly, since it stays open for as long as there is something to send.
 *
 * A client that stops reading cannot hold the stream (and the slot behind it) hostage: once a
 * write finds the socket full (the kernel's buffers, a few MB on Linux, and the stream's own
 * 16 KiB), a timer starts; if no 'drain' comes within the write-stall limit the connection is
 * destroyed, which ends drained() and makes `gone` true for whoever is writing.
 */
export class EventStream {
  private readonly res: ServerResponse;
  private readonly stallMs: number;
  private stallTimer: NodeJS.Timeout | undefined;
  /** True once the stream was cut for a write stall. */
  stalled = false;

  constructor(reply: FastifyReply) {
    reply.hijack();
    this.res = reply.raw;
    this.stallMs = reply.server.charlstmWriteStallMs ?? SERVER.writeStallMs;
    this.res.on('drain', () => this.clearStall());
    this.res.on('close', () => this.clearStall());
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no', // a proxy in front (nginx) must pass each event on at once
    });
  }

  /** The client has gone (or the stream was destroyed): nobody reads what is written. */
  get gone(): boolean {
    return this.res.destroyed;
  }

  /** Bytes written that the client has not taken yet. */
  get buffered(): number {
    return this.res.writableLength;
  }

  /** Write frames (or `retry:` and `:` comment lines) as they are; false: wait for drained(). */
  write(text: string): boolean {
    if (this.res.destroyed) return false;
    const ok = this.res.write(text);
    if (!ok && this.stallTimer === undefined) {
      this.stallTimer = setTimeout(() => {
        this.stalled = true;
        metrics.writeStalls.inc();
        this.res.destroy();
      }, this.stallMs);
      this.stallTimer.unref();
    }
    return ok;
  }

  private clearStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  /** Write one event; false: wait for drained(). */
  send(data: unknown, event?: string): boolean {
    return this.write(sseFrame(data, event));
  }

  /** Wait until a slow reader has taken what was written, has gone (or was cut for a write
   * stall), or `signal` aborts. */
  drained(signal: AbortSignal): Promise<void> {
    const res = this.res;
    return new Promise((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
      signal.addEventListener('abort', done);
    });
  }

  /** Call `fn` once the client goes or the stream ends; the returned function stops that. */
  onClose(fn: () => void): () => void {
    this.res.on('close', fn);
    return () => this.res.off('close', fn);
  }

  /**
   * End the stream after `last` (frames, or nothing); resolves once it is handed to the socket
   * or the client has gone. `closeConnection`: then close the connection too, rather than leave
   * it idle in keep-alive (a server that is closing).
   */
  end(last = '', closeConnection = false): Promise<void> {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return Promise.resolve();
    const socket = res.socket;
    return new Promise((resolve) => {
      const done = (): void => {
        res.off('finish', done);
        res.off('close', done);
        if (closeConnection) socket?.destroy();
        resolve();
      };
      res.on('finish', done);
      res.on('close', done);
      res.end(last);
    });
  }

  /** Drop the connection at once (a client too slow to keep up). */
  destroy(): void {
    this.res.destroy();
  }
}
