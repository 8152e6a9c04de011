// Server-sent events over fetch. EventSource can only GET, and POST /v1/generate streams its
// answer as SSE, so the page reads the response body itself: bytes → text → lines → events,
// following the HTML spec's parsing rules (fields `event`, `data`, `id`; `:` starts a comment;
// a blank line dispatches; CR, LF and CRLF all end a line).

export interface SseEvent {
  event: string; // 'message' when the server named none
  data: string; // the data lines joined with '\n'
  id?: string;
}

/** Incremental parser: push text as it arrives, get back the events completed by it. */
export class SseParser {
  private pending = ''; // an unfinished line
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private lastWasCR = false; // a chunk ended in CR: a LF starting the next one belongs to it

  push(chunk: string): SseEvent[] {
    const out: SseEvent[] = [];
    let text = chunk;
    if (this.lastWasCR && text.startsWith('\n')) text = text.slice(1);
    this.lastWasCR = text.endsWith('\r');
    const lines = (this.pending + text).split(/\r\n|\r|\n/);
    this.pending = lines.pop() ?? '';
    for (const line of lines) {
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  /** The end of the stream: an event not closed by a blank line is dropped, as the spec says. */
  end(): SseEvent[] {
    this.pending = '';
    this.data = [];
    this.event = '';
    return [];
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = '';
        return undefined;
      }
      const ev: SseEvent = { event: this.event || 'message', data: this.data.join('\n') };
      if (this.id !== undefined) ev.id = this.id;
      this.data = [];
      this.event = '';
      return ev;
    }
    if (line.startsWith(':')) return undefined; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    return undefined; // `retry` and unknown fields are ignored
  }
}

/** The events of a streamed response body, as they arrive. Ends when the body ends. */
export async function* readSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    // the consumer stopped early: tell the server we are gone
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
