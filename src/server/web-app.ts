import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

import { UserError } from '../errors.ts';

// The built web app (web/dist) as static files at `/`, for both servers: `charlstm serve` (the
// playground) and the training dashboard. Vite names its assets by their content hash, so they
// are cached for good; every other file (the page itself) is re-validated on each load.

/** The built web app (the same depth from src/server/ and dist/server/). */
export const WEB_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

/** The web app folder `charlstm serve` serves: `dir` when given (it must exist), else web/dist
 * when built, else none. */
export function resolveWebDir(dir: string | undefined): string | undefined {
  if (dir !== undefined) {
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw new UserError(`--web: not a folder: ${dir}`);
    return dir;
  }
  return existsSync(path.join(WEB_DIST, 'index.html')) ? WEB_DIST : undefined;
}

export interface WebAppOptions {
  /** The folder served at `/`. */
  root: string;
  /** What `/` answers (as text) when the folder holds no index.html; default a 404. */
  notBuilt?: string;
}

export const webApp: FastifyPluginAsync<WebAppOptions> = async (app, opts) => {
  const root = path.resolve(opts.root);
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: true, // files added after the start are served too
    cacheControl: false, // set below, by file
    setHeaders: (res, file) => {
      const hashed = path.relative(root, file).split(path.sep)[0] === 'assets';
      res.setHeader('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
  const notBuilt = opts.notBuilt;
  if (notBuilt !== undefined && !existsSync(path.join(root, 'index.html'))) {
    for (const url of ['/', '/index.html'])
      app.get(url, async (_request, reply) =>
        reply.type('text/plain; charset=utf-8').send(notBuilt),
      );
  }
};
