import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

import { UserError, show } from '../errors.ts';

// The one error envelope of both servers (the API and the training dashboard): every error is
// answered as {"error": {"message", "code"}} with a 4xx naming the problem, and a 5xx only for a
// bug in charlstm, which is reported where the server says (stderr by default). A known path
// asked with another method gets 405 and an Allow header; anything else unknown gets 404.

/** An error answered with `statusCode` and the envelope. */
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

/** What every error answer (and a stream's `error` event) carries. */
export interface ErrorBody {
  error: { message: string; code: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { message, code } };
}

/** Why a generation was stopped before its end. */
export const CLIENT_GONE = new ApiError(499, 'client_closed', 'the client disconnected');
export const SHUTTING_DOWN = new ApiError(503, 'shutting_down', 'the server is shutting down');

/** Where a 5xx is reported unless the server is told otherwise: one line on stderr. */
export const reportToStderr = (err: Error): void =>
  void process.stderr.write(`charlstm: internal error: ${err.stack ?? err.message}\n`);

// ---- schema violations as sentences ----------------------------------------------------------

/** One error of ajv (Fastify's validator, run with `verbose` for `data` and `parentSchema`). */
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

// ---- no paths in answers ---------------------------------------------------------------------

// A UserError may name a file of the server's (a corrupt model.json, a missing folder): the CLI
// shows it whole, but an HTTP answer must not tell a client where the server keeps its files.
// Absolute paths become their base name, and the full message goes to stderr instead.
const PATH =
  /(^|[\s"'`(=])((?:file:\/\/)?(?:~|[A-Za-z]:)?(?:[\\/][^\s"'`\\/)]+){2,}[\\/]?|[A-Za-z]:\\[^\s"'`)]+)/g;

/** `message` with every absolute path (two or more segments, POSIX or Windows) cut to its base
 * name. */
export function redactPaths(message: string): string {
  return message.replace(PATH, (_m, before: string, p: string) => {
    const parts = p.split(/[\\/]/).filter((x) => x !== '');
    return before + (parts[parts.length - 1] ?? '');
  });
}

// ---- any error as status, code and message ---------------------------------------------------

export interface Classified {
  status: number;
  code: string;
  message: string;
}

/** The status, code and message for any error that reaches the error handler. */
export function classify(err: FastifyError | Error, request?: FastifyRequest): Classified {
  if (err instanceof ApiError)
    return { status: err.statusCode, code: err.code, message: err.message };
  if (err instanceof UserError)
    return { status: 400, code: 'invalid_request', message: redactPaths(err.message) };
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
    return { status, code: 'invalid_request', message: redactPaths(fe.message) };
  }
  return { status: 500, code: 'internal', message: 'internal error (a bug in charlstm)' };
}

// ---- the plugin ------------------------------------------------------------------------------

export interface ErrorHandlingOptions {
  /** Where a 5xx (a bug in charlstm) is reported. */
  onInternalError: (err: Error) => void;
}

/**
 * The error handler, the 404 handler and the 405 detection, for the whole instance (registered
 * before the routes, so that it sees every fixed path they add).
 */
export const errorHandling = fp<ErrorHandlingOptions>(
  async (app: FastifyInstance, { onInternalError }) => {
    app.setErrorHandler((err: FastifyError | Error, request, reply) => {
      const { status, code, message } = classify(err, request);
      if (status >= 500 && !(err instanceof ApiError)) onInternalError(err);
      else if (message !== err.message && err instanceof UserError)
        // the answer has the paths cut: the operator gets the whole message
        process.stderr.write(`charlstm: ${request.method} ${request.url}: ${err.message}\n`);
      // a connection must not outlive close() by idling in keep-alive
      if (err === SHUTTING_DOWN) void reply.header('connection', 'close');
      void reply.code(status).send(errorBody(code, message));
    });

    // The methods of each fixed path (the web app's wildcard route is not one).
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
  },
  { name: 'charlstm-errors' },
);
