import type { FastifyPluginAsync } from 'fastify';

import { preparePrompt } from '../../generate/generate.ts';
import { ApiError } from '../errors.ts';
import { predictBody, type PredictBody } from '../schemas.ts';
import type { ModelTable } from '../served-models.ts';

// POST /v1/predict: the model's distribution of the character after `text`.

export const predictRoutes: FastifyPluginAsync<{ models: ModelTable }> = async (
  app,
  { models },
) => {
  app.post<{ Body: PredictBody }>(
    '/v1/predict',
    { schema: { body: predictBody } },
    async (request) => {
      const { name, model } = models.pick(request.body.model);
      const text = preparePrompt(model, request.body.text, request.body.unknown);
      if (text.length === 0)
        throw new ApiError(400, 'invalid_request', 'text has no character the model knows');
      const probs = model.predict(text);
      return { model: name, vocab: model.vocab.chars, probs: Array.from(probs) };
    },
  );
};
