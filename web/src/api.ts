import { readSse } from './sse.ts';

// The server's HTTP API as the page uses it. Paths are relative to the page, so the app works
// wherever it is served from. Every error the server returns is `{"error": {"message"}}`; its
// message is what the user sees.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The message of a failed response: the server's `error.message`, or a plain description. */
async function failure(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`.trim();
  try {
    const body: unknown = await res.json();
    const err = (body as { error?: { message?: unknown } } | null)?.error;
    if (err && typeof err.message === 'string') message = err.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(message, res.status);
}

/** fetch, turning a network failure into a readable ApiError (status 0). */
async function request(path: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(path, init);
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(`cannot reach the server (${(err as Error).message})`, 0);
  }
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await request(path, {
    signal: signal ?? null,
    headers: { accept: 'application/json' },
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
  const res = await request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
    signal: signal ?? null,
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/** A model the server offers (GET /v1/models); fields beyond the name are used when present. */
export interface ServerModel {
  name: string;
  vocab?: string[];
  lowercase?: boolean;
  maxlen?: number;
  units?: number;
  isDefault?: boolean;
  [key: string]: unknown;
}

/** GET /v1/models, accepting `{models: [...]}` or a bare array, of names or objects. */
export async function listModels(signal?: AbortSignal): Promise<ServerModel[]> {
  const body = await getJson<unknown>('v1/models', signal);
  const list = Array.isArray(body) ? body : (body as { models?: unknown } | null)?.models;
  if (!Array.isArray(list)) throw new ApiError('the server sent no model list', 200);
  const defaultName = (body as { default?: unknown } | null)?.default;
  return list.map((m: unknown): ServerModel => {
    if (typeof m === 'string') return { name: m, isDefault: m === defaultName };
    const o = m as Record<string, unknown>;
    const name = String(o.name ?? o.id ?? '');
    const meta = (o.meta ?? o.metadata ?? {}) as Record<string, unknown>;
    const pick = (k: string): unknown => o[k] ?? meta[k];
    const out: ServerModel = { ...o, name, isDefault: o.default === true || name === defaultName };
    const vocab = pick('vocab');
    if (Array.isArray(vocab) && vocab.every((c) => typeof c === 'string')) out.vocab = vocab;
    const lowercase = pick('lowercase');
    if (typeof lowercase === 'boolean') out.lowercase = lowercase;
    const maxlen = pick('maxlen');
    if (typeof maxlen === 'number') out.maxlen = maxlen;
    const units = pick('units');
    if (typeof units === 'number') out.units = units;
    return out;
  });
}

export interface GenerateRequest {
  model?: string;
  prompt: string;
  length: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
  mode?: 'window' | 'stateful';
}

export type GenerateEvent =
  { type: 'text'; text: string } | { type: 'done'; totals: Record<string, unknown> };

/**
 * POST /v1/generate with `stream: true`: the generated text chunk by chunk, then the totals.
 * Abort with `signal`. An error event mid-stream, or an error status, throws an ApiError.
 */
export async function* streamGenerate(
  req: GenerateRequest,
  signal: AbortSignal,
): AsyncGenerator<GenerateEvent> {
  const res = await request('v1/generate', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ ...req, stream: true }),
    signal,
  });
  if (!res.ok) throw await failure(res);
  if (!res.body) throw new ApiError('the server sent an empty answer', res.status);
  for await (const ev of readSse(res.body)) {
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(ev.data) as Record<string, unknown>;
    } catch {
      throw new ApiError(`the server sent a malformed event: ${ev.data.slice(0, 80)}`, res.status);
    }
    if (ev.event === 'error' || data.error) {
      const msg = (data.error as { message?: unknown } | undefined)?.message ?? data.message;
      throw new ApiError(typeof msg === 'string' ? msg : 'generation failed', res.status);
    }
    if (ev.event === 'done') {
      yield { type: 'done', totals: data };
      return;
    }
    if (typeof data.text === 'string') yield { type: 'text', text: data.text };
  }
}

export interface Prediction {
  vocab: string[];
  probs: number[];
}

export function predict(
  text: string,
  model: string | undefined,
  signal?: AbortSignal,
): Promise<Prediction> {
  return postJson<Prediction>('v1/predict', { ...(model ? { model } : {}), text }, signal);
}
