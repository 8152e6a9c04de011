import type { ServerResponse } from 'node:http';

import type { FastifyReply } from 'fastify';

// The one server-sent-events writer of both servers: a streamed generation (POST /v1/generate
// with `stream`) and the training dashboard's live record (GET /v1/train/events). The browser's
// reader is web/src/sse.ts.

/** One event as the wire carries it: `event: <name>` (none: the default "message"), then its
 * data as one line of JSON, then the blank line that ends it. */
export function sseFrame(data: unknown, event?: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`;
}

/**
 * An event stream answering a request: the reply is taken from Fastify (hijacked) and written
 * directly, since it stays open for as long as there is something to send.
 */
export class EventStream {
  private readonly res: ServerResponse;

  constructor(reply: FastifyReply) {
    reply.hijack();
    this.res = reply.raw;
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
    return this.res.write(text);
  }

  /** Write one event; false: wait for drained(). */
  send(data: unknown, event?: string): boolean {
    return this.write(sseFrame(data, event));
  }

  /** Wait until a slow reader has taken what was written, has gone, or `signal` aborts. */
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
