import type { FastifyPluginAsync } from 'fastify';

import type { Generations } from '../generations.ts';
import type { ModelTable } from '../served-models.ts';

// GET /health: the server is up, what it serves, and how busy it is.

export interface HealthRoutesOptions {
  models: ModelTable;
  generations: Generations;
  maxLength: number;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, opts) => {
  const { models, generations, maxLength } = opts;
  app.get('/health', async () => ({
    status: 'ok',
    models: models.names,
    streams: { active: generations.count, max: generations.max },
    max_length: maxLength,
    uptime_s: Number(process.uptime().toFixed(1)),
  }));
};
