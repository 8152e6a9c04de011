import type { FastifyPluginAsync } from 'fastify';

import { defaultMode } from '../../generate/generate.ts';
import type { ModelTable } from '../served-models.ts';

// GET /v1/models: the models served, each with what a client needs to prompt it.

export const modelRoutes: FastifyPluginAsync<{ models: ModelTable }> = async (app, { models }) => {
  app.get('/v1/models', async () => ({
    default: models.default.name,
    models: models.list.map(({ name, model }) => ({
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
};

/**
 * The training figures worth showing about a model: its scalar settings as they are, and the
 * last value of each per-epoch history (loss, valLoss, ...), with the number of epochs recorded.
 *
 * Nothing about the server's files: `source` (the training corpus's paths, ", "-separated) and
 * `initFrom` (the folder of the model fine-tuned) are cut to base names, which still tell a
 * client what the model read, and `command` (the command line that trained it: paths, and
 * whatever else its user typed) is left out.
 */
export function trainingSummary(training: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(training)) {
    if (key === 'command') continue;
    if (key === 'source' || key === 'initFrom') {
      if (typeof value === 'string') out[key] = value.split(', ').map(baseName).join(', ');
      continue;
    }
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) out[key] = value;
    else if (Array.isArray(value)) {
      if (value.length > 0 && value.every((v) => v === null || typeof v === 'number')) {
        out[key] = value[value.length - 1];
      }
    }
  }
  return out;
}

/** The last segment of a path, POSIX or Windows, whichever machine trained the model. */
function baseName(p: string): string {
  const parts = p.split(/[\\/]/).filter((x) => x !== '');
  return parts[parts.length - 1] ?? '';
}
