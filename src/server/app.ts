import Fastify, { type FastifyInstance } from 'fastify';

import { SERVER } from '../defaults.ts';
import { show } from '../errors.ts';
import { observeSteps } from '../generate/batcher.ts';
import type { DashboardRecorder } from './dashboard-recorder.ts';
import { SHUTTING_DOWN, errorHandling, reportToStderr } from './errors.ts';
import { Generations } from './generations.ts';
import { jsonBodies } from './json-body.ts';
import { hostCheck } from './host-check.ts';
import { metrics, requestMetrics } from './metrics.ts';
import { generateRoutes } from './routes/generate.ts';
import { healthRoutes } from './routes/health.ts';
import { modelRoutes } from './routes/models.ts';
import { predictRoutes } from './routes/predict.ts';
import { trainRoutes } from './routes/train.ts';
import { AJV_OPTIONS } from './schemas.ts';
import { ModelTable, type ServedModel } from './served-models.ts';
import { setWriteStall } from './sse.ts';
import { webApp } from './web-app.ts';

// The two HTTP servers, wired from the same plugins: the API behind `charlstm serve` and the
// live view behind `charlstm train --dashboard`. What goes where:
//   errors.ts           the error envelope, 404/405, schema errors as sentences
//   json-body.ts        bodies are strict JSON
//   schemas.ts          the request bodies' schemas and the types derived from them
//   sse.ts              the server-sent-events writer
//   web-app.ts          the built web app as static files
//   served-models.ts    loading and naming the models served
//   generations.ts      the generations in progress and their limit
//   routes/             one plugin per route family

// Every batched generation step's rows, into the process's one registry (so once per process,
// not per server).
observeSteps((rows) => metrics.stepBatch.observe(rows));

export interface ServerOptions {
  /** The models served; the first one answers requests that name none. At least one. */
  models: readonly ServedModel[];
  /** Defaults for these three: SERVER in src/defaults.ts. */
  maxLength?: number;
  maxStreams?: number;
  bodyLimit?: number;
  /** A folder of static files (the built web app) to serve at `/`. */
  webDir?: string;
  /** Fastify's request logging (pino, JSON lines on stdout). Default off. */
  logger?: boolean;
  /** The log level when logging (implies `logger`): 'info' logs every request. */
  logLevel?: string;
  /** Defaults for these two: SERVER. A stream whose client takes nothing for `writeStallMs` is
   * cut (sse.ts); a generation running `timeLimitMs` is stopped (generations.ts). */
  writeStallMs?: number;
  timeLimitMs?: number;
  /** close(): streams in progress may finish for this long before they are ended (new requests
   * are refused meanwhile). Default 0: at once; `charlstm serve` passes SERVER.shutdownGraceMs. */
  shutdownGraceMs?: number;
  /** Host names accepted besides the loopback ones when listening on loopback (host-check.ts). */
  allowHosts?: readonly string[];
  /** Generations on one model advance in shared batched steps (batcher.ts). Default true;
   * false runs each on its own single-row stepper (the load test's comparison). */
  batch?: boolean;
  /** Where a 5xx (a bug in charlstm) is reported. Default: one line on stderr. */
  onInternalError?: (err: Error) => void;
}

/**
 * The Fastify instance serving the API, not listening yet (call `listen`, or `inject` in tests).
 * `close()` stops every generation in progress.
 */
export function buildServer(opts: ServerOptions): FastifyInstance {
  const models = new ModelTable(opts.models);
  const maxLength = opts.maxLength ?? SERVER.maxLength;
  const maxStreams = opts.maxStreams ?? SERVER.maxStreams;
  const bodyLimit = opts.bodyLimit ?? SERVER.bodyLimit;
  for (const [what, v] of [
    ['maxLength', maxLength],
    ['maxStreams', maxStreams],
    ['bodyLimit', bodyLimit],
  ] as const) {
    if (!(Number.isSafeInteger(v) && v >= 1))
      throw new RangeError(`${what} must be an integer >= 1, got ${show(v)}`);
  }
  const onInternalError = opts.onInternalError ?? reportToStderr;
  const timeLimitMs = opts.timeLimitMs ?? SERVER.timeLimitMs;
  const generations = new Generations(maxStreams, timeLimitMs);

  const app = Fastify({
    logger: opts.logLevel !== undefined ? { level: opts.logLevel } : (opts.logger ?? false),
    bodyLimit,
    ajv: AJV_OPTIONS,
    // slow senders and idle sockets cannot hold connections (see SERVER); a whole answer writes
    // nothing until it is done, so the idle limit stays above the time limit
    requestTimeout: SERVER.requestTimeoutMs,
    keepAliveTimeout: SERVER.keepAliveTimeoutMs,
    connectionTimeout: Math.max(SERVER.connectionTimeoutMs, timeLimitMs + 5_000),
    return503OnClosing: false, // a closing server answers in the envelope (below)
  });
  setWriteStall(app, opts.writeStallMs ?? SERVER.writeStallMs);
  metrics.servers.add(generations);
  app.addHook('onClose', async () => void metrics.servers.delete(generations));
  void app.register(errorHandling, { onInternalError });
  void app.register(hostCheck, { allowHosts: opts.allowHosts ?? [] });
  void app.register(requestMetrics, { metrics });
  void app.register(jsonBodies);
  void app.register(healthRoutes, { models, generations, maxLength, metrics });
  void app.register(modelRoutes, { models });
  void app.register(predictRoutes, { models });
  void app.register(generateRoutes, {
    models,
    generations,
    maxLength,
    onInternalError,
    batch: opts.batch ?? true,
  });
  if (opts.webDir !== undefined) void app.register(webApp, { root: opts.webDir });
  // Closing: stop listening, refuse new requests (also on open keep-alive connections), give the
  // generations in progress the grace period to finish, then end the rest with SHUTTING_DOWN.
  let closing = false;
  app.addHook('onRequest', async () => {
    if (closing) throw SHUTTING_DOWN;
  });
  const graceMs = opts.shutdownGraceMs ?? 0;
  app.addHook('preClose', async () => {
    closing = true;
    if (graceMs > 0) {
      if (app.server.listening) app.server.close(); // Fastify's own close() then finds it closed
      await generations.settle(graceMs);
    }
    generations.stopAll(SHUTTING_DOWN);
  });
  return app;
}

export interface DashboardServerOptions {
  recorder: DashboardRecorder;
  /** The built web app, whose #dashboard view reads the record. */
  webDir: string;
  onInternalError?: (err: Error) => void;
  /** Open event streams at most (default DASHBOARD.maxClients). */
  maxClients?: number;
}

/** The Fastify instance serving a training run's record and the web app, not listening yet.
 * `close()` ends the open event streams. */
export function buildDashboardServer(opts: DashboardServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: SERVER.bodyLimit,
    ajv: AJV_OPTIONS,
    forceCloseConnections: true, // the end of a run closes every page's connection, idle or not
    requestTimeout: SERVER.requestTimeoutMs,
    keepAliveTimeout: SERVER.keepAliveTimeoutMs,
  });
  void app.register(errorHandling, { onInternalError: opts.onInternalError ?? reportToStderr });
  void app.register(hostCheck, {}); // a training run's page is no other site's to read
  void app.register(jsonBodies);
  void app.register(trainRoutes, {
    recorder: opts.recorder,
    ...(opts.maxClients !== undefined && { maxClients: opts.maxClients }),
  });
  void app.register(webApp, {
    root: opts.webDir,
    notBuilt:
      `The web app is not built (${opts.webDir} has no index.html): run \`npm run build:web\`.\n` +
      'The training record is at /v1/train/state and /v1/train/events.\n',
  });
  return app;
}
