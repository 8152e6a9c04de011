import { ApiError } from './errors.ts';

// The generations in progress, streamed or not: counted against the server's limit (one more is
// a 429), reported by GET /health, and all stopped at once when the server closes.

export class Generations {
  private readonly active = new Set<AbortController>();

  constructor(readonly max: number) {}

  get count(): number {
    return this.active.size;
  }

  /** A slot for one generation, stopped through its signal; release it when the reply is done. */
  start(): { signal: AbortSignal; stop: (reason: Error) => void; release: () => void } {
    if (this.active.size >= this.max) {
      throw new ApiError(
        429,
        'too_many_streams',
        `too many generations at once (the limit is ${this.max}); try again shortly`,
      );
    }
    const ctl = new AbortController();
    this.active.add(ctl);
    return {
      signal: ctl.signal,
      stop: (reason) => ctl.abort(reason),
      release: () => void this.active.delete(ctl),
    };
  }

  /** Stop every generation in progress with `reason` (each answers it as its error). */
  stopAll(reason: Error): void {
    for (const ctl of this.active) ctl.abort(reason);
  }
}
