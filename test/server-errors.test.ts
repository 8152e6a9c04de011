import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { FastifyInstance, InjectOptions } from 'fastify';

import { kernelModule } from '../src/engine/kernels.ts';
import { CharModel } from '../src/model/char-model.ts';
import { buildServer } from '../src/server/app.ts';
import { randomCharModel } from './helpers/models.ts';

// The HTTP API's answers to odd requests (issue 11, item 11): a number too large for a double,
// a body in a content type other than JSON, a known path asked with the wrong method.

let model: CharModel;
const apps: FastifyInstance[] = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-server-errors-'));

before(async () => {
  await kernelModule();
  model = randomCharModel({ vocab: [...' .abcdefgh'], units: 8, maxlen: 10, seed: 3, scale: 1 });
});

after(async () => {
  await Promise.all(apps.map((a) => a.close()));
  rmSync(tmp, { recursive: true, force: true });
});

function server(opts: { webDir?: string } = {}): FastifyInstance {
  const app = buildServer({ models: [{ name: 'm', model }], ...opts });
  apps.push(app);
  return app;
}

/** The answer to `opts`: its status, its Allow header, and the error envelope's message and code. */
async function ask(
  app: FastifyInstance,
  opts: InjectOptions,
): Promise<{ status: number; allow: unknown; message?: string; code?: string }> {
  const r = await app.inject(opts);
  const body = r.headers['content-type']?.toString().startsWith('application/json')
    ? (r.json() as { error?: { message: string; code: string } })
    : {};
  return {
    status: r.statusCode,
    allow: r.headers.allow,
    ...(body.error && { message: body.error.message, code: body.error.code }),
  };
}

const json = (payload: string): InjectOptions => ({
  method: 'POST',
  url: '/v1/generate',
  headers: { 'content-type': 'application/json' },
  payload,
});

describe('odd requests', () => {
  it('a number too large for a double is named as such, not as "number null"', async () => {
    const app = server();
    const cases: [string, string][] = [
      [
        '{"prompt": "a", "temperature": 1e999}',
        'temperature must be a finite number, got a number too large to represent (it reads as Infinity)',
      ],
      [
        '{"prompt": "a", "temperature": -1e999}',
        'temperature must be a finite number, got a number too large to represent (it reads as -Infinity)',
      ],
      [
        '{"prompt": "a", "length": 1e999}',
        'length must be a finite integer, got a number too large to represent (it reads as Infinity)',
      ],
      [
        '{"prompt": "a", "top_p": 1e999}',
        'top_p must be a finite number, got a number too large to represent (it reads as Infinity)',
      ],
    ];
    for (const [payload, message] of cases) {
      const a = await ask(app, json(payload));
      assert.deepEqual(a, { status: 400, allow: undefined, message, code: 'invalid_request' });
    }
    // an ordinary number out of range is still shown as itself
    const big = await ask(app, json('{"prompt": "a", "temperature": 1e300}'));
    assert.equal(big.message, 'temperature must be <= 100, got 1e+300');
  });

  it('every content type but JSON gets 415 with the same envelope, naming the type', async () => {
    const app = server();
    for (const type of [
      'text/plain',
      'text/plain; charset=utf-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/octet-stream',
    ]) {
      const a = await ask(app, {
        method: 'POST',
        url: '/v1/generate',
        headers: { 'content-type': type },
        payload: 'prompt=a',
      });
      assert.deepEqual(
        a,
        {
          status: 415,
          allow: undefined,
          message: `unsupported content type ${JSON.stringify(type)}: send the body as application/json`,
          code: 'unsupported_media_type',
        },
        type,
      );
    }
    // and JSON, in any spelling, still works
    for (const type of ['application/json', 'application/json; charset=utf-8']) {
      const r = await app.inject({
        method: 'POST',
        url: '/v1/predict',
        headers: { 'content-type': type },
        payload: '{"text": "abc"}',
      });
      assert.equal(r.statusCode, 200, `${type}: ${r.body}`);
    }
  });

  it('a known path with the wrong method gets 405 and Allow; an unknown one 404', async () => {
    const web = path.join(tmp, 'web');
    mkdirSync(web);
    writeFileSync(path.join(web, 'index.html'), '<!doctype html><title>t</title>');
    // with and without the web app's wildcard route in front of everything
    for (const app of [server(), server({ webDir: web })]) {
      const cases: [string, string, string][] = [
        ['GET', '/v1/generate', 'POST'],
        ['GET', '/v1/predict?text=abc', 'POST'],
        ['PUT', '/v1/generate', 'POST'],
        ['POST', '/health', 'GET, HEAD'],
        ['DELETE', '/v1/models', 'GET, HEAD'],
      ];
      for (const [method, url, allow] of cases) {
        const a = await ask(app, {
          method: method as InjectOptions['method'],
          url,
          ...(method !== 'GET' && method !== 'DELETE' && { payload: {} }),
        });
        const where = url.split('?')[0];
        assert.deepEqual(
          a,
          {
            status: 405,
            allow,
            message: `${method} is not allowed on ${where}; use ${allow.split(',')[0]}`,
            code: 'method_not_allowed',
          },
          `${method} ${url}`,
        );
      }
      const missing = await ask(app, { method: 'POST', url: '/v1/nothing', payload: {} });
      assert.deepEqual(missing, {
        status: 404,
        allow: undefined,
        message: 'no such endpoint: POST /v1/nothing',
        code: 'not_found',
      });
      assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    }
  });
});

describe('prompts with characters the model never saw', () => {
  it('error (default), skip and map on /v1/generate and /v1/predict; 400 invalid_request when it cannot', async () => {
    const m = randomCharModel({ vocab: [...' .abcdefgh\uFFFD'], units: 8, maxlen: 10, seed: 5 });
    const withSymbol = CharModel.fromParts(m.params, { ...m.meta, unknown: '\uFFFD' });
    const app = buildServer({
      models: [
        { name: 'm', model },
        { name: 'u', model: withSymbol },
      ],
    });
    apps.push(app);
    const post = (url: string, body: Record<string, unknown>) =>
      app.inject({ method: 'POST', url, payload: body });
    const gen = { prompt: 'ab😀c', length: 8, seed: 2, temperature: 0.7 };
    const outside = `prompt has characters outside the model's vocabulary: "😀"`;
    const noSymbol = `${outside}; this model has no unknown symbol to map them to (it was trained without --max-vocab or --min-count): use skip to drop them`;
    const cases: [Record<string, unknown>, string][] = [
      [{ model: 'u', ...gen }, outside],
      [{ model: 'u', ...gen, unknown: 'error' }, outside],
      [{ model: 'm', ...gen, unknown: 'map' }, noSymbol],
      [{ model: 'm', ...gen, unknown: 'map', mode: 'stateful', stream: true }, noSymbol],
      [
        { model: 'u', ...gen, unknown: 'drop' },
        'unknown must be "error" or "skip" or "map", got string "drop"',
      ],
    ];
    for (const [body, message] of cases) {
      const a = await ask(app, { method: 'POST', url: '/v1/generate', payload: body });
      assert.deepEqual(
        a,
        { status: 400, allow: undefined, message, code: 'invalid_request' },
        JSON.stringify(body),
      );
    }
    const predicted = await ask(app, {
      method: 'POST',
      url: '/v1/predict',
      payload: { model: 'm', text: 'a😀', unknown: 'map' },
    });
    assert.deepEqual(predicted, {
      status: 400,
      allow: undefined,
      message: noSymbol,
      code: 'invalid_request',
    });

    // map: exactly the answer for the prompt with the symbol written in; skip: without the character
    for (const mode of ['window', 'stateful']) {
      const text = async (body: Record<string, unknown>) => {
        const r = await post('/v1/generate', { model: 'u', ...gen, mode, ...body });
        assert.equal(r.statusCode, 200, r.body);
        return (r.json() as { text: string }).text;
      };
      assert.equal(await text({ unknown: 'map' }), await text({ prompt: 'ab\uFFFDc' }));
      assert.equal(await text({ unknown: 'skip' }), await text({ prompt: 'abc' }));
      assert.notEqual(await text({ unknown: 'map' }), await text({ unknown: 'skip' }));
    }
    const probs = async (text: string, unknown?: string) => {
      const r = await post('/v1/predict', { model: 'u', text, ...(unknown && { unknown }) });
      assert.equal(r.statusCode, 200, r.body);
      return (r.json() as { probs: number[] }).probs;
    };
    assert.deepEqual(await probs('a😀b', 'map'), await probs('a\uFFFDb'));
  });
});
