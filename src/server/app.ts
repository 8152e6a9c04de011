import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';

import { REFERENCE, SERVER } from '../defaults.ts';
import { UserError, show } from '../errors.ts';
import {
  defaultMode,
  generate,
  preparePrompt,
  type GenerateMode,
  type Generation,
} from '../generate/generate.ts';
import { CharModel } from '../model/char-model.ts';
import { MAX_SEED } from '../sampling/rng.ts';

// The HTTP API behind `charlstm serve`: generation (whole or streamed as server-sent events),
// next-character distributions, the models served, and a health check; optionally the built web
// app at `/`. Every request body is checked against a JSON schema with no extra fields allowed,
// every error is answered as {"error": {"message", "code"}} with a 4xx naming the problem (5xx
// only for a bug), and every generation runs in chunks with a turn of the event loop between
// them, so no request can crash the process or hold up the others. A generation stops as soon as
// its client disconnects.

/** The built web app, served at `/` when it exists (the same depth from src/server/ and dist/server/). */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../web/dist/', import.meta.url));

export interface ServedModel {
  /** The name clients use (`model` in a request). */
  name: string;
  model: CharModel;
}

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

/** An error answered with `status` and {"error": {"message", "code"}}. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Names for model folders: each folder's base name, made unique with -2, -3, ... */
export function modelNames(dirs: readonly string[]): string[] {
  const used = new Set<string>();
  return dirs.map((dir) => {
    const base = path.basename(path.resolve(dir)) || 'model';
    let name = base;
    for (let i = 2; used.has(name); i++) name = `${base}-${i}`;
    used.add(name);
    return name;
  });
}

/** Load model folders (any problem is a UserError naming the file) and name them. */
export async function loadModels(dirs: readonly string[]): Promise<ServedModel[]> {
  if (dirs.length === 0) throw new UserError('no model to serve: give at least one --model <dir>');
  const names = modelNames(dirs);
  const models = await Promise.all(dirs.map((dir) => CharModel.load(dir)));
  return models.map((model, i) => ({ name: names[i]!, model }));
}

// ---- request bodies ----------------------------------------------------------------------

interface GenerateBody {
  model?: string;
  prompt?: string;
  length?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  greedy?: boolean;
  seed?: number;
  stream?: boolean;
  mode?: GenerateMode;
  unknown?: 'error' | 'skip';
}

interface PredictBody {
  model?: string;
  text: string;
  unknown?: 'error' | 'skip';
}

const unknownField = { type: 'string', enum: ['error', 'skip'] } as const;

function generateSchema(maxLength: number): object {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      length: { type: 'integer', minimum: 0, maximum: maxLength },
      temperature: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
      top_k: { type: 'integer', minimum: 1, maximum: 1_000_000 },
      top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      greedy: { type: 'boolean' },
      seed: { type: 'integer', minimum: 0, maximum: MAX_SEED }, // distinct seeds, distinct texts
      stream: { type: 'boolean' },
      mode: { type: 'string', enum: ['window', 'stateful'] },
      unknown: unknownField,
    },
  };
}

const predictSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['text'],
  properties: {
    model: { type: 'string' },
    text: { type: 'string', minLength: 1 },
    unknown: unknownField,
  },
};

// ---- errors ----------------------------------------------------------------------------------

interface SchemaError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  data?: unknown;
  parentSchema?: { properties?: Record<string, unknown> };
}

/**
 * A value as a message shows it. JSON.parse reads a number too large for a double (`1e999`) as
 * Infinity, which JSON.stringify would print as `null`: show it as what it is.
 */
function valueText(value: unknown): string {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return JSON.stringify(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && !Number.isFinite(value))
    return `a number too large to represent (it reads as ${String(value)})`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${valueText(value)}`;
}

/** One schema violation as a sentence naming the field and the value received. */
function describeSchemaError(e: SchemaError): string {
  const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
  if (field === '' && e.keyword === 'type')
    return `the body must be a JSON object, got ${kindOf(e.data)}`;
  if (e.keyword === 'additionalProperties') {
    const allowed = Object.keys(e.parentSchema?.properties ?? {}).join(', ');
    return `unknown field ${show(String(e.params.additionalProperty))}${field ? ` in ${field}` : ''}; the fields are: ${allowed}`;
  }
  if (e.keyword === 'required') return `${show(String(e.params.missingProperty))} is required`;
  if (e.keyword === 'enum') {
    const allowed = (e.params.allowedValues as unknown[])
      .map((v) => JSON.stringify(v))
      .join(' or ');
    return `${field} must be ${allowed}, got ${kindOf(e.data)}`;
  }
  if (e.keyword === 'type') {
    const wanted = e.params.type === 'integer' ? 'an integer' : `a ${String(e.params.type)}`;
    // the schema's number and integer types are finite: say so when that is what failed
    const finite = typeof e.data === 'number' && !Number.isFinite(e.data) ? 'finite ' : '';
    return `${field} must be ${finite ? wanted.replace(/^an? /, `a ${finite}`) : wanted}, got ${kindOf(e.data)}`;
  }
  if (e.keyword === 'minLength' && e.params.limit === 1) return `${field} is empty`;
  return `${field} ${e.message ?? 'is invalid'}, got ${valueText(e.data)}`;
}

function errorBody(code: string, message: string): { error: { message: string; code: string } } {
  return { error: { message, code } };
}

/** The status, code and message for any error that reaches the error handler. */
function classify(
  err: FastifyError | Error,
  request?: FastifyRequest,
): { status: number; code: string; message: string } {
  if (err instanceof ApiError)
    return { status: err.statusCode, code: err.code, message: err.message };
  if (err instanceof UserError)
    return { status: 400, code: 'invalid_request', message: err.message };
  const fe = err as FastifyError;
  if (fe.validation && fe.validation.length > 0) {
    return {
      status: 400,
      code: 'invalid_request',
      message: describeSchemaError(fe.validation[0] as unknown as SchemaError),
    };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'body_too_large', message: 'the request body is too large' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        status: 400,
        code: 'invalid_json',
        message: 'the body is empty; send a JSON object',
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': {
      const type = request?.headers['content-type'];
      return {
        status: 415,
        code: 'unsupported_media_type',
        message: `${type ? `unsupported content type ${show(type)}: ` : 'no content type: '}send the body as application/json`,
      };
    }
  }
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, code: 'invalid_request', message: fe.message };
  }
  return { status: 500, code: 'internal', message: 'internal error (a bug in charlstm)' };
}

// ---- the server ------------------------------------------------------------------------------

/** Wait until a slow reader has taken what was written, has gone, or the generation is stopped. */
function drained(res: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
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

/** Why a generation was stopped before its end. */
const CLIENT_GONE = new ApiError(499, 'client_closed', 'the client disconnected');
const SHUTTING_DOWN = new ApiError(503, 'shutting_down', 'the server is shutting down');

const round = (x: number, digits: number): number => Number(x.toFixed(digits));

/**
 * The Fastify instance serving the API, not listening yet (call `listen`, or `inject` in tests).
 * `close()` stops every generation in progress.
 */
export function buildServer(opts: ServerOptions): FastifyInstance {
  if (opts.models.length === 0) throw new UserError('no model to serve');
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
  const byName = new Map(opts.models.map((m) => [m.name, m]));
  if (byName.size !== opts.models.length)
    throw new RangeError('two served models have the same name');
  const defaultModel = opts.models[0]!;
  const onInternalError =
    opts.onInternalError ??
    ((err: Error) =>
      process.stderr.write(`charlstm: internal error: ${err.stack ?? err.message}\n`));

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit,
    ajv: {
      // strict: no coercion ("0.5" is not a number), unknown fields are errors (not dropped)
      customOptions: {
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        verbose: true,
        allErrors: false,
      },
    },
  });

  // Malformed JSON: say where, as JSON.parse does (the default parser still guards __proto__).
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  // JSON is the only body taken: without this, Fastify's own text/plain parser would hand a
  // string to the schema (a 400) where every other content type gets a 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    if (text.trim() === '') {
      done(new ApiError(400, 'invalid_json', 'the body is empty; send a JSON object'), undefined);
      return;
    }
    jsonParser(req, text, (err, value) => {
      if (!err) return done(null, value);
      let detail = '';
      try {
        JSON.parse(text);
      } catch (e) {
        detail = `: ${(e as Error).message}`;
      }
      done(
        new ApiError(
          400,
          'invalid_json',
          `the body is not valid JSON${detail || ' (it sets __proto__ or constructor)'}`,
        ),
        undefined,
      );
    });
  });

  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    const { status, code, message } = classify(err, request);
    if (status >= 500 && !(err instanceof ApiError)) onInternalError(err);
    // a connection must not outlive close() by idling in keep-alive
    if (err === SHUTTING_DOWN) void reply.header('connection', 'close');
    void reply.code(status).send(errorBody(code, message));
  });
  // The methods of each fixed path, so that a known path asked with another method gets 405 and
  // an Allow header rather than 404 (the web app's wildcard route is not a fixed path).
  const methodsOf = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    if (/[*:]/.test(route.url)) return;
    const set = methodsOf.get(route.url) ?? new Set<string>();
    for (const m of [route.method].flat()) set.add(m);
    methodsOf.set(route.url, set);
  });
  app.setNotFoundHandler((request, reply) => {
    const where = request.url.split('?')[0]!;
    const allowed = methodsOf.get(where);
    if (allowed && !allowed.has(request.method)) {
      const allow = [...allowed].sort().join(', ');
      void reply
        .code(405)
        .header('allow', allow)
        .send(
          errorBody(
            'method_not_allowed',
            `${request.method} is not allowed on ${where}; use ${allow.replace(/, HEAD$|HEAD, /, '')}`,
          ),
        );
      return;
    }
    void reply
      .code(404)
      .send(errorBody('not_found', `no such endpoint: ${request.method} ${where}`));
  });

  // Generations in progress, so that the count can be limited and close() can stop them all.
  const active = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const ctl of active) ctl.abort(SHUTTING_DOWN);
  });

  const pick = (name: string | undefined): ServedModel => {
    if (name === undefined) return defaultModel;
    const m = byName.get(name);
    if (!m) {
      const names = [...byName.keys()].map((n) => JSON.stringify(n)).join(', ');
      throw new ApiError(
        404,
        'unknown_model',
        `unknown model ${show(name)}; this server has ${names}`,
      );
    }
    return m;
  };

  /** Abort `ctl` when the client goes away before the response is complete. */
  const abortOnDisconnect = (reply: FastifyReply, ctl: AbortController): (() => void) => {
    const res = reply.raw;
    const onClose = (): void => {
      if (!res.writableFinished) ctl.abort(CLIENT_GONE);
    };
    res.on('close', onClose);
    return () => res.off('close', onClose);
  };

  app.get('/health', async () => ({
    status: 'ok',
    models: opts.models.map((m) => m.name),
    streams: { active: active.size, max: maxStreams },
    max_length: maxLength,
    uptime_s: round(process.uptime(), 1),
  }));

  app.get('/v1/models', async () => ({
    default: defaultModel.name,
    models: opts.models.map(({ name, model }) => ({
      name,
      vocab: model.vocab.chars,
      maxlen: model.maxlen,
      units: model.meta.units,
      step: model.meta.step,
      lowercase: model.meta.lowercase,
      mode: defaultMode(model),
      training: trainingSummary(model.meta.training),
    })),
  }));

  app.post<{ Body: PredictBody }>(
    '/v1/predict',
    { schema: { body: predictSchema } },
    async (request) => {
      const { name, model } = pick(request.body.model);
      const text = preparePrompt(model, request.body.text, request.body.unknown);
      if (text.length === 0)
        throw new ApiError(400, 'invalid_request', 'text has no character the model knows');
      const probs = model.predict(text);
      return { model: name, vocab: model.vocab.chars, probs: Array.from(probs) };
    },
  );

  app.post<{ Body: GenerateBody }>(
    '/v1/generate',
    { schema: { body: generateSchema(maxLength) } },
    async (request: FastifyRequest<{ Body: GenerateBody }>, reply: FastifyReply) => {
      const body = request.body;
      const { name, model } = pick(body.model);
      if (active.size >= maxStreams) {
        throw new ApiError(
          429,
          'too_many_streams',
          `too many generations at once (the limit is ${maxStreams}); try again shortly`,
        );
      }
      const ctl = new AbortController();
      // everything is checked here, before a byte is sent: a bad request gets its 4xx
      const gen = generate(model, {
        prompt: body.prompt ?? '',
        length: body.length ?? Math.min(REFERENCE.sampleLength, maxLength),
        ...(body.temperature !== undefined && { temperature: body.temperature }),
        ...(body.top_k !== undefined && { topK: body.top_k }),
        ...(body.top_p !== undefined && { topP: body.top_p }),
        ...(body.greedy !== undefined && { greedy: body.greedy }),
        ...(body.seed !== undefined && { seed: body.seed }),
        ...(body.mode !== undefined && { mode: body.mode }),
        ...(body.unknown !== undefined && { unknown: body.unknown }),
        signal: ctl.signal,
      });
      active.add(ctl);
      const detach = abortOnDisconnect(reply, ctl);
      const t0 = performance.now();
      const totals = (chars: number): Record<string, unknown> => {
        const ms = performance.now() - t0;
        return {
          model: name,
          mode: gen.mode,
          seed: gen.seed,
          chars,
          ms: round(ms, 1),
          chars_per_sec: round(ms > 0 ? (chars * 1000) / ms : 0, 0),
        };
      };
      try {
        if (body.stream) return await streamEvents(gen, reply, ctl.signal, totals, onInternalError);
        const parts: string[] = [];
        let chars = 0;
        for await (const chunk of gen) {
          parts.push(chunk);
          chars += countChars(chunk);
        }
        return { text: parts.join(''), ...totals(chars) };
      } catch (err) {
        // the client left (nobody reads this answer), or the server is closing (503)
        throw ctl.signal.aborted ? (ctl.signal.reason as ApiError) : err;
      } finally {
        detach();
        active.delete(ctl);
      }
    },
  );

  if (opts.webDir !== undefined) {
    void app.register(fastifyStatic, {
      root: path.resolve(opts.webDir),
      prefix: '/',
      wildcard: true,
    });
  }
  return app;
}

/** The characters (code points) of a chunk. */
function countChars(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff) n--; // the second half of a surrogate pair
  }
  return n;
}

/**
 * Send a generation as server-sent events: `data: {"text": chunk}` per chunk, then
 * `event: done` with the totals (or `event: error` if generation failed after the headers).
 */
async function streamEvents(
  gen: Generation,
  reply: FastifyReply,
  signal: AbortSignal,
  totals: (chars: number) => Record<string, unknown>,
  onInternalError: (err: Error) => void,
): Promise<FastifyReply> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  let chars = 0;
  try {
    for await (const chunk of gen) {
      chars += countChars(chunk);
      if (!res.write(`data: ${JSON.stringify({ text: chunk })}\n\n`)) await drained(res, signal);
      if (res.destroyed || signal.aborted) break;
    }
    signal.throwIfAborted();
    if (!res.destroyed) res.end(`event: done\ndata: ${JSON.stringify(totals(chars))}\n\n`);
  } catch (err) {
    if (res.destroyed) return reply; // the client has gone: nobody to tell
    // stopped by close(), or failed after the headers: the stream ends with an error event
    const { code, message } = signal.aborted
      ? classify(signal.reason as ApiError)
      : classify(err as Error);
    if (!signal.aborted && !(err instanceof UserError)) onInternalError(err as Error);
    const last = `event: error\ndata: ${JSON.stringify(errorBody(code, message))}\n\n`;
    // when the server is closing, close the connection too rather than leave it idle in keep-alive
    const socket = res.socket;
    if (signal.reason === SHUTTING_DOWN) res.end(last, () => socket?.destroy());
    else res.end(last);
  }
  return reply;
}

/**
 * The training figures worth showing about a model: its scalar settings as they are, and the
 * last value of each per-epoch history (loss, valLoss, ...), with the number of epochs recorded.
 */
export function trainingSummary(training: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(training)) {
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) out[key] = value;
    else if (Array.isArray(value)) {
      if (value.length > 0 && value.every((v) => v === null || typeof v === 'number')) {
        out[key] = value[value.length - 1];
      }
    }
  }
  return out;
}

/** The web app folder to serve: `dir` when given (it must exist), else web/dist when built. */
export function resolveWebDir(dir: string | undefined): string | undefined {
  if (dir !== undefined) {
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw new UserError(`--web: not a folder: ${dir}`);
    return dir;
  }
  return existsSync(path.join(DEFAULT_WEB_DIR, 'index.html')) ? DEFAULT_WEB_DIR : undefined;
}
