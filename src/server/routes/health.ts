import type { FastifyPluginAsync } from 'fastify';

import type { Generations } from '../generations.ts';
import type { ServerMetrics } from '../metrics.ts';
import type { ModelTable } from '../served-models.ts';

// GET /health: the server is up, what it serves, and how busy it is (a load balancer's check:
// cheap, no model work). GET /metrics: the Prometheus text (metrics.ts).

export interface HealthRoutesOptions {
  models: ModelTable;
  generations: Generations;
  maxLength: number;
  metrics: ServerMetrics;
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, opts) => {
  const { models, generations, maxLength, metrics } = opts;
  app.get('/health', async () => ({
    status: 'ok',
    models: models.names,
    streams: { active: generations.count, max: generations.max },
    max_length: maxLength,
    uptime_s: Number(process.uptime().toFixed(1)),
  }));

  app.get('/metrics', async (_request, reply) => {
    const { text, contentType } = await metrics.scrape();
    return reply.header('content-type', contentType).send(text);
  });
};
