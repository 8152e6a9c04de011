import { Type, type Static } from '@sinclair/typebox';

import { UNKNOWN_POLICIES } from '../data/vocabulary.ts';
import { DECODING } from '../defaults.ts';
import { MAX_SEED } from '../sampling/rng.ts';

// The request bodies of the API, each written once as a JSON schema (TypeBox builds plain schema
// objects) from which its TypeScript type is derived. No extra field is allowed, and nothing is
// coerced (see AJV_OPTIONS), so a body means exactly what it says.

/** Fastify's validator settings: no coercion ("0.5" is not a number), unknown fields are errors
 * (not dropped), and `verbose` so that errors carry the value received (src/server/errors.ts). */
export const AJV_OPTIONS = {
  customOptions: {
    removeAdditional: false,
    coerceTypes: false,
    useDefaults: false,
    verbose: true,
    allErrors: false,
  },
} as const;

/** A string that is one of `values`, as JSON schema's `enum` (whose error names every value). */
const oneOf = <const T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });

// prompt characters outside the vocabulary: an error naming them, dropped, or the unknown symbol
const unknownField = oneOf(UNKNOWN_POLICIES);

// one stop sequence (maxLength counts code points, as the library does)
const stopText = Type.String({ minLength: 1, maxLength: DECODING.maxStopChars });

/** POST /v1/generate; `length` is bounded by the server's own limit. */
export const generateBody = (maxLength: number) =>
  Type.Object(
    {
      model: Type.Optional(Type.String()),
      prompt: Type.Optional(Type.String()),
      length: Type.Optional(Type.Integer({ minimum: 0, maximum: maxLength })),
      temperature: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
      top_k: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
      top_p: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
      greedy: Type.Optional(Type.Boolean()),
      seed: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SEED })), // distinct seeds, distinct texts
      stream: Type.Optional(Type.Boolean()),
      mode: Type.Optional(oneOf(['window', 'stateful'])),
      unknown: Type.Optional(unknownField),
      // decoding (src/generate/decoding.ts): stop sequences, samples, beam search
      stop: Type.Optional(
        Type.Union([stopText, Type.Array(stopText, { maxItems: DECODING.maxStops })]),
      ),
      n: Type.Optional(Type.Integer({ minimum: 1, maximum: DECODING.maxCount })),
      beam_width: Type.Optional(Type.Integer({ minimum: 1, maximum: DECODING.maxBeamWidth })),
    },
    { additionalProperties: false },
  );
export type GenerateBody = Static<ReturnType<typeof generateBody>>;

/** POST /v1/predict */
export const predictBody = Type.Object(
  {
    model: Type.Optional(Type.String()),
    text: Type.String({ minLength: 1 }),
    unknown: Type.Optional(unknownField),
  },
  { additionalProperties: false },
);
export type PredictBody = Static<typeof predictBody>;
