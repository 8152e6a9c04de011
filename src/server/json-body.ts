import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

import { ApiError } from './errors.ts';

// Request bodies are JSON and nothing else. Without this, Fastify's own text/plain parser would
// hand a string to the schema (a 400) where every other content type gets a 415. Malformed JSON
// is answered saying where, as JSON.parse does (the default parser still guards __proto__).

export const jsonBodies = fp(
  async (app: FastifyInstance) => {
    const jsonParser = app.getDefaultJsonParser('error', 'error');
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
  },
  { name: 'charlstm-json-body' },
);
