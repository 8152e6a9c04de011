import type { FastifyPluginAsync, FastifyReply } from 'fastify';

import { GENERATE, REFERENCE } from '../../defaults.ts';
import { UserError } from '../../errors.ts';
import { generate, type Generation } from '../../generate/generate.ts';
import {
  ApiError,
  CLIENT_GONE,
  SHUTTING_DOWN,
  classify,
  errorBody,
  type ErrorBody,
} from '../errors.ts';
import type { Generations } from '../generations.ts';
import { generateBody, type GenerateBody } from '../schemas.ts';
import type { ModelTable } from '../served-models.ts';
import { EventStream, sseFrame } from '../sse.ts';

// POST /v1/generate: a generation answered whole, or streamed as server-sent events. It runs in
// chunks with a turn of the event loop between them, so no request holds up the others, and it
// stops as soon as its client disconnects or the server closes.

export interface GenerateRoutesOptions {
  models: ModelTable;
  generations: Generations;
  maxLength: number;
  onInternalError: (err: Error) => void;
}

/** The figures that end every generation's answer. */
type Totals = (chars: number) => Record<string, unknown>;

const round = (x: number, digits: number): number => Number(x.toFixed(digits));

export const generateRoutes: FastifyPluginAsync<GenerateRoutesOptions> = async (app, opts) => {
  const { models, generations, maxLength, onInternalError } = opts;

  app.post<{ Body: GenerateBody }>(
    '/v1/generate',
    { schema: { body: generateBody(maxLength) } },
    async (request, reply) => {
      const body = request.body;
      const { name, model } = models.pick(body.model);
      const slot = generations.start();
      let detach: (() => void) | undefined;
      try {
        // everything is checked here, before a byte is sent: a bad request gets its 4xx
        const gen = generate(model, {
          prompt: body.prompt ?? '',
          length: body.length ?? Math.min(REFERENCE.sampleLength, maxLength),
          temperature: body.temperature ?? GENERATE.temperature,
          ...(body.top_k !== undefined && { topK: body.top_k }),
          ...(body.top_p !== undefined && { topP: body.top_p }),
          ...(body.greedy !== undefined && { greedy: body.greedy }),
          ...(body.seed !== undefined && { seed: body.seed }),
          ...(body.mode !== undefined && { mode: body.mode }),
          ...(body.unknown !== undefined && { unknown: body.unknown }),
          signal: slot.signal,
        });
        // the client left before the answer was complete: stop (nobody reads it)
        const res = reply.raw;
        const onClose = (): void => {
          if (!res.writableFinished) slot.stop(CLIENT_GONE);
        };
        res.on('close', onClose);
        detach = () => res.off('close', onClose);

        const t0 = performance.now();
        const totals: Totals = (chars) => {
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
        if (body.stream)
          return await streamEvents(gen, reply, slot.signal, totals, onInternalError);
        const parts: string[] = [];
        let chars = 0;
        for await (const chunk of gen) {
          parts.push(chunk);
          chars += countChars(chunk);
        }
        return { text: parts.join(''), ...totals(chars) };
      } catch (err) {
        // the client left (nobody reads this answer), or the server is closing (503)
        throw slot.signal.aborted ? (slot.signal.reason as ApiError) : err;
      } finally {
        detach?.();
        slot.release();
      }
    },
  );
};

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
 * `event: done` with the totals (or `event: error` with the error envelope if generation failed
 * after the headers, or the server is closing).
 */
async function streamEvents(
  gen: Generation,
  reply: FastifyReply,
  signal: AbortSignal,
  totals: Totals,
  onInternalError: (err: Error) => void,
): Promise<FastifyReply> {
  const stream = new EventStream(reply);
  let chars = 0;
  try {
    for await (const chunk of gen) {
      chars += countChars(chunk);
      if (!stream.send({ text: chunk })) await stream.drained(signal);
      if (stream.gone || signal.aborted) break;
    }
    signal.throwIfAborted();
    if (!stream.gone) void stream.end(sseFrame(totals(chars), 'done'));
  } catch (err) {
    if (stream.gone) return reply; // the client has gone: nobody to tell
    const { code, message } = classify(
      signal.aborted ? (signal.reason as ApiError) : (err as Error),
    );
    if (!signal.aborted && !(err instanceof UserError)) onInternalError(err as Error);
    const last: ErrorBody = errorBody(code, message);
    void stream.end(sseFrame(last, 'error'), signal.reason === SHUTTING_DOWN);
  }
  return reply;
}
