import { ApiError } from './errors.ts';
import { metrics } from './metrics.ts';

// The generations in progress, streamed or not: counted against the server's limit (one more is
// a 429), reported by GET /health, and all stopped at once when the server closes.

export class Generations {
  private readonly active = new Set<AbortController>();

  /** `timeLimitMs`: a generation still running after this long is stopped with a 503
   * `time_limit` (its answer, or its stream's last event); none when undefined. */
  constructor(
    readonly max: number,
    readonly timeLimitMs?: number,
  ) {}

  /** Resolves once no generation is in progress, or after `ms` (a server closing gracefully). */
  async settle(ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (this.active.size > 0 && performance.now() < until)
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, until - performance.now())));
  }

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
    const limit = this.timeLimitMs;
    const timer =
      limit === undefined
        ? undefined
        : setTimeout(
            () =>
              ctl.abort(
                new ApiError(
                  503,
                  'time_limit',
                  `the generation ran past this server's time limit of ${limit / 1000} s; ask for fewer characters`,
                ),
              ),
            limit,
          ).unref();
    return {
      signal: ctl.signal,
      stop: (reason) => ctl.abort(reason),
      release: () => {
        clearTimeout(timer);
        if (this.active.delete(ctl) && ctl.signal.aborted)
          metrics.stopped.inc({ reason: (ctl.signal.reason as ApiError).code ?? 'other' });
      },
    };
  }

  /** Stop every generation in progress with `reason` (each answers it as its error). */
  stopAll(reason: Error): void {
    for (const ctl of this.active) ctl.abort(reason);
  }
}
