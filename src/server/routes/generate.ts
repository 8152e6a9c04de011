import type { FastifyPluginAsync, FastifyReply } from 'fastify';

import { GENERATE, REFERENCE } from '../../defaults.ts';
import { UserError } from '../../errors.ts';
import { generateSamples, type Generation } from '../../generate/generate.ts';
import {
  ApiError,
  CLIENT_GONE,
  SHUTTING_DOWN,
  classify,
  errorBody,
  type ErrorBody,
} from '../errors.ts';
import type { Generations } from '../generations.ts';
import { metrics } from '../metrics.ts';
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
  /** Through the model's scheduler (generate()'s `batch`). */
  batch: boolean;
}

/** The figures that end every generation's answer; with a stream, also told of its first text. */
interface Totals {
  (chars: number): Record<string, unknown>;
  firstText(): void;
}

const round = (x: number, digits: number): number => Number(x.toFixed(digits));

export const generateRoutes: FastifyPluginAsync<GenerateRoutesOptions> = async (app, opts) => {
  const { models, generations, maxLength, onInternalError, batch } = opts;

  app.post<{ Body: GenerateBody }>(
    '/v1/generate',
    { schema: { body: generateBody(maxLength) } },
    async (request, reply) => {
      const received = performance.now();
      const body = request.body;
      const { name, model } = models.pick(body.model);
      const slot = generations.start();
      let detach: (() => void) | undefined;
      try {
        // everything is checked here, before a byte is sent: a bad request gets its 4xx. With `n`,
        // n ordinary generations (sample i's seed is sampleSeed(seed, i)), run side by side.
        const gens = generateSamples(model, {
          prompt: body.prompt ?? '',
          length: body.length ?? Math.min(REFERENCE.sampleLength, maxLength),
          temperature: body.temperature ?? GENERATE.temperature,
          ...(body.top_k !== undefined && { topK: body.top_k }),
          ...(body.top_p !== undefined && { topP: body.top_p }),
          ...(body.greedy !== undefined && { greedy: body.greedy }),
          ...(body.seed !== undefined && { seed: body.seed }),
          ...(body.mode !== undefined && { mode: body.mode }),
          ...(body.unknown !== undefined && { unknown: body.unknown }),
          ...(body.stop !== undefined && { stop: body.stop }),
          ...(body.beam_width !== undefined && { beam: body.beam_width }),
          ...(body.n !== undefined && { count: body.n }),
          signal: slot.signal,
          batch,
        });
        const gen = gens[0]!; // its mode and seed (the request's) are every sample's totals
        // the client left before the answer was complete: stop (nobody reads it)
        const res = reply.raw;
        const onClose = (): void => {
          if (!res.writableFinished) slot.stop(CLIENT_GONE);
        };
        res.on('close', onClose);
        detach = () => res.off('close', onClose);

        const t0 = performance.now();
        let firstSent = false;
        const totals: Totals = Object.assign(
          (chars: number) => {
            const ms = performance.now() - t0;
            metrics.characters.inc({ model: name }, chars);
            return {
              model: name,
              mode: gen.mode,
              seed: gen.seed,
              chars,
              ms: round(ms, 1),
              chars_per_sec: round(ms > 0 ? (chars * 1000) / ms : 0, 0),
            };
          },
          {
            firstText(): void {
              if (firstSent) return;
              firstSent = true;
              metrics.firstText.observe({ model: name }, (performance.now() - received) / 1000);
            },
          },
        );
        const tagged = body.n !== undefined; // answers and events carry the sample's index
        if (body.stream)
          return await streamEvents(gens, tagged, reply, slot.signal, totals, onInternalError);
        const texts = await Promise.all(
          gens.map(async (g) => {
            const parts: string[] = [];
            for await (const chunk of g) parts.push(chunk);
            return parts.join('');
          }),
        );
        const chars = texts.map(countChars);
        const total = chars.reduce((a, b) => a + b, 0);
        if (!tagged) return { text: texts[0], finish_reason: gen.finishReason, ...totals(total) };
        const samples = gens.map((g, index) => ({
          index,
          seed: g.seed,
          text: texts[index],
          chars: chars[index],
          finish_reason: g.finishReason,
        }));
        return { samples, ...totals(total) };
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
 * Send generations as server-sent events: `data: {"text": chunk}` per chunk (with `tagged`,
 * `{"index": i, "text": chunk}`, the samples side by side), then `event: done` with the totals
 * and why each ended (or `event: error` with the error envelope if generation failed after the
 * headers, or the server is closing).
 */
async function streamEvents(
  gens: readonly Generation[],
  tagged: boolean,
  reply: FastifyReply,
  signal: AbortSignal,
  totals: Totals,
  onInternalError: (err: Error) => void,
): Promise<FastifyReply> {
  const stream = new EventStream(reply);
  const chars = gens.map(() => 0);
  let failed: { err: unknown } | undefined; // the first sample's failure stops the others
  try {
    await Promise.all(
      gens.map(async (gen, index) => {
        try {
          for await (const chunk of gen) {
            if (failed) break;
            chars[index] = chars[index]! + countChars(chunk);
            const sent = stream.send(tagged ? { index, text: chunk } : { text: chunk });
            totals.firstText();
            if (!sent) await stream.drained(signal);
            if (stream.gone || signal.aborted) break;
          }
        } catch (err) {
          failed ??= { err };
        }
      }),
    );
    if (failed) throw failed.err;
    signal.throwIfAborted();
    const ended = tagged
      ? {
          samples: gens.map((g, index) => ({
            index,
            seed: g.seed,
            chars: chars[index],
            finish_reason: g.finishReason,
          })),
        }
      : { finish_reason: gens[0]!.finishReason };
    const total = chars.reduce((a, b) => a + b, 0);
    if (!stream.gone) void stream.end(sseFrame({ ...totals(total), ...ended }, 'done'));
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
