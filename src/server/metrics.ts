import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// What GET /metrics serves, in the Prometheus text format (prom-client): every request by route
// and status with its latency, a stream's time to its first text, the generations in progress,
// the characters generated, and the batch sizes of the batched generation step. One registry
// for the process: code that produces a figure imports `metrics` and records it, e.g.
// `metrics.stepBatch.observe(rows)` once per batched step, `metrics.characters.inc({ model }, n)`
// for characters sent.
//
// Labels are bounded: a route is its registered pattern (an unknown path is "unmatched"), never
// the URL a client sent, so no client can grow the series without limit.

/** Seconds: from a millisecond answer to a 10,000-character stream under load. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Rows in one batched step: up to the default --max-streams and beyond. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

export class ServerMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'charlstm_http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly latency = new Histogram({
    name: 'charlstm_http_request_duration_seconds',
    help: 'Time from a request to the end of its answer (a stream: its last event), by route',
    labelNames: ['route', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly characters = new Counter({
    name: 'charlstm_generated_characters_total',
    help: 'Characters of the generations that ran to their end, by model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly firstText = new Histogram({
    name: 'charlstm_stream_first_text_seconds',
    help: 'Time from a streamed generation request to its first text event, by model',
    labelNames: ['model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly stepBatch = new Histogram({
    name: 'charlstm_step_batch_size',
    help: 'Generations advanced together by one batched step (prompt prefill steps included)',
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });

  readonly stopped = new Counter({
    name: 'charlstm_generations_stopped_total',
    help: 'Generations stopped before their end, by reason (client_closed, time_limit, shutting_down)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly writeStalls = new Counter({
    name: 'charlstm_write_stalls_total',
    help: 'Event streams cut because their client stopped reading (--write-stall-ms)',
    registers: [this.registry],
  });

  /** The generation tables of this process's servers (buildServer adds and removes its own). */
  readonly servers = new Set<{ readonly count: number }>();

  readonly activeStreams = new Gauge({
    name: 'charlstm_active_streams',
    help: 'Generations in progress, streamed or not (what --max-streams limits)',
    registers: [this.registry],
    collect: () => {
      let n = 0;
      for (const g of this.servers) n += g.count;
      this.activeStreams.set(n);
    },
  });

  /** The text a scrape gets, and its content type. */
  async scrape(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

/** The process's metrics: what GET /metrics of any server in this process reports. */
export const metrics = new ServerMetrics();
collectDefaultMetrics({ register: metrics.registry, prefix: 'charlstm_' });

/**
 * Counts every request by route pattern, method and status and times it to the end of its
 * answer. The raw response's 'close' is used rather than Fastify's onResponse hook, which a
 * hijacked reply (an event stream) never reaches.
 */
export const requestMetrics = fp<{ metrics: ServerMetrics }>(
  async (app: FastifyInstance, { metrics: m }) => {
    app.addHook('onRequest', async (request, reply) => {
      const t0 = performance.now();
      reply.raw.once('close', () => {
        const route = request.routeOptions.url ?? 'unmatched';
        const method = request.method;
        m.requests.inc({ route, method, status: String(reply.raw.statusCode) });
        m.latency.observe({ route, method }, (performance.now() - t0) / 1000);
      });
    });
  },
  { name: 'charlstm-request-metrics' },
);
