import Fastify, { type FastifyInstance } from 'fastify';

import { SERVER } from '../defaults.ts';
import { show } from '../errors.ts';
import type { DashboardRecorder } from './dashboard-recorder.ts';
import { SHUTTING_DOWN, errorHandling, reportToStderr } from './errors.ts';
import { Generations } from './generations.ts';
import { jsonBodies } from './json-body.ts';
import { generateRoutes } from './routes/generate.ts';
import { healthRoutes } from './routes/health.ts';
import { modelRoutes } from './routes/models.ts';
import { predictRoutes } from './routes/predict.ts';
import { trainRoutes } from './routes/train.ts';
import { AJV_OPTIONS } from './schemas.ts';
import { ModelTable, type ServedModel } from './served-models.ts';
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

export interface ServerOptions {
  /** The models served; the first one answers requests that name none. At least one. */
  models: readonly ServedModel[];
  /** Defaults for these three: SERVER in src/defaults.ts. */
  maxLength?: number;
  maxStreams?: number;
  bodyLimit?: number;
  /** A folder of static files (the built web app) to serve at `/`. */
  webDir?: string;
  /** Fastify's request logging (pino, to stdout). Default off. */
  logger?: boolean;
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
  const generations = new Generations(maxStreams);

  const app = Fastify({ logger: opts.logger ?? false, bodyLimit, ajv: AJV_OPTIONS });
  void app.register(errorHandling, { onInternalError });
  void app.register(jsonBodies);
  void app.register(healthRoutes, { models, generations, maxLength });
  void app.register(modelRoutes, { models });
  void app.register(predictRoutes, { models });
  void app.register(generateRoutes, { models, generations, maxLength, onInternalError });
  if (opts.webDir !== undefined) void app.register(webApp, { root: opts.webDir });
  app.addHook('preClose', async () => generations.stopAll(SHUTTING_DOWN));
  return app;
}

export interface DashboardServerOptions {
  recorder: DashboardRecorder;
  /** The built web app, whose #dashboard view reads the record. */
  webDir: string;
  onInternalError?: (err: Error) => void;
}

/** The Fastify instance serving a training run's record and the web app, not listening yet.
 * `close()` ends the open event streams. */
export function buildDashboardServer(opts: DashboardServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: SERVER.bodyLimit,
    ajv: AJV_OPTIONS,
    forceCloseConnections: true, // the end of a run closes every page's connection, idle or not
  });
  void app.register(errorHandling, { onInternalError: opts.onInternalError ?? reportToStderr });
  void app.register(jsonBodies);
  void app.register(trainRoutes, { recorder: opts.recorder });
  void app.register(webApp, {
    root: opts.webDir,
    notBuilt:
      `The web app is not built (${opts.webDir} has no index.html): run \`npm run build:web\`.\n` +
      'The training record is at /v1/train/state and /v1/train/events.\n',
  });
  return app;
}
