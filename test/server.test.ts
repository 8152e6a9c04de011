import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance } from 'fastify';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { SERVER } from '../src/defaults.ts';
import { generate } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { buildServer } from '../src/server/app.ts';
import { trainingSummary } from '../src/server/routes/models.ts';
import { loadModels, modelNames } from '../src/server/served-models.ts';
import { cliEnv } from './helpers/cli.ts';

// A real server on a random loopback port, with small random models saved to a temporary folder
// and loaded as `charlstm serve` loads them.

const VOCAB = [...' .,abcdefghijklmnopqrstuvwxyz'];
const MAXLEN = 12;

let tmp: string;
let modelDir: string;
let model: CharModel; // the same weights, loaded separately, for reference results
const servers: FastifyInstance[] = [];

async function start(opts: Partial<Parameters<typeof buildServer>[0]> = {}): Promise<string> {
  const models = await loadModels([modelDir, path.join(tmp, 'other', 'tiny')]);
  const app = buildServer({ models, ...opts });
  await app.listen({ port: 0, host: '127.0.0.1' });
  servers.push(app);
  const { port } = app.server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
}

interface Answer {
  status: number;
  type: string;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function request(
  url: string,
  body?: unknown,
  init: { raw?: string; contentType?: string; signal?: AbortSignal } = {},
): Promise<Answer> {
  const payload = init.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const res = await fetch(url, {
    method: payload === undefined ? 'GET' : 'POST',
    headers:
      payload === undefined ? {} : { 'content-type': init.contentType ?? 'application/json' },
    ...(payload !== undefined && { body: payload }),
    ...(init.signal && { signal: init.signal }),
  });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return {
    status: res.status,
    type,
    body: type.startsWith('application/json') ? JSON.parse(text) : text,
  };
}

/** A 4xx whose body is {"error": {"message", "code"}} with a message matching `re`. */
function assertError(a: Answer, status: number, re: RegExp): void {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.match(a.type, /^application\/json/);
  assert.equal(typeof a.body.error?.message, 'string', JSON.stringify(a.body));
  assert.equal(typeof a.body.error?.code, 'string');
  assert.match(a.body.error.message, re);
}

interface SseEvent {
  event: string;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

function parseSse(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      return { event, data: JSON.parse(data.join('\n')) };
    });
}

/** Open a stream and return once its first chunk has arrived; `stop()` disconnects. */
async function openStream(url: string, body: object): Promise<{ stop: () => void; first: string }> {
  const ctl = new AbortController();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: ctl.signal,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.getReader();
  const { value } = await reader.read();
  return { stop: () => ctl.abort(), first: new TextDecoder().decode(value) };
}

async function health(base: string): Promise<{ streams: { active: number; max: number } }> {
  return (await request(`${base}/health`)).body;
}

async function waitForIdle(base: string, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while ((await health(base)).streams.active !== 0) {
    if (Date.now() - t0 > ms) assert.fail('the generation did not stop after the client left');
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-server-'));
  modelDir = path.join(tmp, 'tiny');
  const params = initParameters({ vocabSize: VOCAB.length, units: 32 }, new Rng(1));
  const meta = {
    vocab: VOCAB,
    lowercase: true,
    maxlen: MAXLEN,
    step: 3,
    units: 32,
    training: {
      corpus: 'test',
      epochs: 2,
      loss: [2.5, 2.1],
      valLoss: [null, 2.2],
      detail: { a: 1 },
    },
  };
  await saveModel(modelDir, params, meta);
  await saveModel(path.join(tmp, 'other', 'tiny'), params, meta);
  model = await CharModel.load(modelDir);
});

after(async () => {
  for (const app of servers) await app.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('serving', () => {
  let base: string;
  before(async () => {
    base = await start();
  });

  it('GET /health and GET /v1/models describe the server and its models', async () => {
    const h = await request(`${base}/health`);
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    assert.deepEqual(h.body.models, ['tiny', 'tiny-2']);
    assert.deepEqual(h.body.streams, { active: 0, max: SERVER.maxStreams });
    const m = await request(`${base}/v1/models`);
    assert.equal(m.status, 200);
    assert.equal(m.body.default, 'tiny');
    assert.deepEqual(
      m.body.models.map((x: { name: string }) => x.name),
      ['tiny', 'tiny-2'],
    );
    const [first] = m.body.models;
    assert.deepEqual(first.vocab, VOCAB);
    assert.equal(first.maxlen, MAXLEN);
    assert.equal(first.units, 32);
    assert.equal(first.lowercase, true);
    assert.equal(first.mode, 'window');
    assert.deepEqual(first.training, { corpus: 'test', epochs: 2, loss: 2.1, valLoss: 2.2 });
  });

  it('POST /v1/generate answers the text with its figures; the same seed gives the same text', async () => {
    const body = { prompt: 'The ', length: 80, temperature: 0.5, seed: 7 };
    const a = await request(`${base}/v1/generate`, body);
    assert.equal(a.status, 200);
    assert.equal([...a.body.text].length, 80);
    assert.equal(a.body.chars, 80);
    assert.equal(a.body.model, 'tiny');
    assert.equal(a.body.mode, 'window');
    assert.equal(a.body.seed, 7);
    assert.ok(a.body.ms >= 0 && a.body.chars_per_sec >= 0);
    const expected = [];
    for await (const c of generate(model, {
      prompt: 'The ',
      length: 80,
      temperature: 0.5,
      seed: 7,
    }))
      expected.push(c);
    assert.equal(a.body.text, expected.join(''));
    const b = await request(`${base}/v1/generate`, { ...body, model: 'tiny-2' });
    assert.equal(b.body.text, a.body.text); // the same weights
    const s = await request(`${base}/v1/generate`, {
      ...body,
      mode: 'stateful',
      length: 30,
      prompt: '',
    });
    assert.equal(s.status, 200);
    assert.equal(s.body.mode, 'stateful');
    assert.equal([...s.body.text].length, 30);
    const g = await request(`${base}/v1/generate`, {
      prompt: 'ab',
      length: 20,
      greedy: true,
      top_k: 3,
      top_p: 0.9,
    });
    assert.equal(g.status, 200);
    const k1 = await request(`${base}/v1/generate`, {
      prompt: 'ab',
      length: 20,
      top_k: 1,
      seed: 3,
    });
    assert.equal(k1.body.text, g.body.text);
  });

  it('streams as server-sent events: one data line per chunk, then a done event', async () => {
    const body = { prompt: 'abc', length: 500, temperature: 1, seed: 11, mode: 'stateful' };
    const whole = await request(`${base}/v1/generate`, body);
    const res = await fetch(`${base}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = parseSse(await res.text());
    const done = events.pop()!;
    assert.equal(done.event, 'done');
    assert.equal(done.data.chars, 500);
    assert.equal(done.data.model, 'tiny');
    assert.equal(done.data.seed, 11);
    assert.ok(events.length >= 8, `${events.length} chunks`); // up to 64 characters each
    assert.ok(events.every((e) => e.event === 'message' && typeof e.data.text === 'string'));
    assert.equal(events.map((e) => e.data.text).join(''), whole.body.text);
  });

  it('POST /v1/predict answers the next-character distribution', async () => {
    const a = await request(`${base}/v1/predict`, { text: 'The End' });
    assert.equal(a.status, 200);
    assert.deepEqual(a.body.vocab, VOCAB);
    assert.deepEqual(a.body.probs, Array.from(model.predict('the end')));
    assertError(await request(`${base}/v1/predict`, {}), 400, /"text" is required/);
    assertError(await request(`${base}/v1/predict`, { text: '' }), 400, /text is empty/);
    assertError(await request(`${base}/v1/predict`, { text: 'a#b' }), 400, /"#"/);
    assertError(
      await request(`${base}/v1/predict`, { text: 'ab', top: 3 }),
      400,
      /unknown field "top"/,
    );
    const skip = await request(`${base}/v1/predict`, { text: 'a#b', unknown: 'skip' });
    assert.deepEqual(skip.body.probs, Array.from(model.predict('ab')));
  });

  it('answers every bad request with a 4xx naming the problem', async () => {
    const gen = `${base}/v1/generate`;
    assertError(await request(gen, undefined, { raw: '{"prompt": "a",' }), 400, /not valid JSON/);
    assertError(await request(gen, undefined, { raw: '' }), 400, /body is empty/);
    assertError(
      await request(gen, undefined, { raw: '{"__proto__": {"x": 1}}' }),
      400,
      /not valid JSON/,
    );
    assertError(await request(gen, [1, 2]), 400, /must be a JSON object, got an array/);
    assertError(await request(gen, 'text'), 400, /must be a JSON object, got string/);
    assertError(await request(gen, null), 400, /must be a JSON object, got null/);
    assertError(
      await request(gen, undefined, { raw: 'hello', contentType: 'text/plain' }),
      415,
      /unsupported content type "text\/plain": send the body as application\/json/,
    );
    assertError(
      await request(gen, { prompt: 'a', Temperature: 1 }),
      400,
      /unknown field "Temperature"/,
    );
    assertError(
      await request(gen, { prompt: 'a#b~c#' }),
      400,
      /outside the model's vocabulary: "#", "~"/,
    );
    assertError(
      await request(gen, { prompt: 'a', temperature: 0 }),
      400,
      /temperature must be > 0, got 0/,
    );
    assertError(
      await request(gen, { prompt: 'a', temperature: -1 }),
      400,
      /temperature must be > 0/,
    );
    assertError(
      await request(gen, { prompt: 'a', temperature: 'hot' }),
      400,
      /temperature must be a number, got string "hot"/,
    );
    assertError(await request(gen, { prompt: 'a', top_k: 0 }), 400, /top_k must be >= 1/);
    assertError(await request(gen, { prompt: 'a', top_k: 2.5 }), 400, /top_k must be an integer/);
    assertError(await request(gen, { prompt: 'a', top_p: 0 }), 400, /top_p must be > 0/);
    assertError(await request(gen, { prompt: 'a', top_p: 1.5 }), 400, /top_p must be <= 1/);
    assertError(
      await request(gen, { prompt: 'a', length: 10_001 }),
      400,
      /length must be <= 10000/,
    );
    assertError(await request(gen, { prompt: 'a', length: -1 }), 400, /length must be >= 0/);
    assertError(await request(gen, { prompt: 'a', seed: 1.5 }), 400, /seed must be an integer/);
    assertError(
      await request(gen, { prompt: 'a', mode: 'fast' }),
      400,
      /mode must be "window" or "stateful"/,
    );
    assertError(
      await request(gen, { prompt: 'a', stream: 'yes' }),
      400,
      /stream must be a boolean/,
    );
    assertError(
      await request(gen, { prompt: 'a', model: 'nope' }),
      404,
      /unknown model "nope"; this server has "tiny", "tiny-2"/,
    );
    assertError(await request(gen, { prompt: '' }), 400, /prompt is empty: window mode needs/);
    assertError(await request(gen, {}), 400, /prompt is empty/);
    assertError(await request(gen, { prompt: 'a'.repeat(70_000) }), 413, /too large/);
    assertError(
      await request(`${base}/v1/nothing`, {}),
      404,
      /no such endpoint: POST \/v1\/nothing/,
    );
    assertError(await request(`${base}/v1/generate`), 405, /GET is not allowed on \/v1\/generate/);
    // and dropping the unknown characters instead
    const skip = await request(gen, { prompt: 'a#b', unknown: 'skip', length: 5, seed: 1 });
    assert.equal(skip.status, 200);
    assert.equal(
      skip.body.text,
      (await request(gen, { prompt: 'ab', length: 5, seed: 1 })).body.text,
    );
    // still alive and well
    assert.equal((await health(base)).streams.active, 0);
  });
});

describe('serving long generations', () => {
  let base: string;
  before(async () => {
    base = await start({ maxLength: 10_000_000, maxStreams: 1 });
  });

  it('stops a stream when its client disconnects', async () => {
    const s = await openStream(`${base}/v1/generate`, {
      prompt: 'abc',
      length: 10_000_000,
      mode: 'stateful',
    });
    assert.match(s.first, /^data: \{"text":/);
    assert.equal((await health(base)).streams.active, 1);
    s.stop();
    await waitForIdle(base);
  });

  it('stops a whole (not streamed) generation when its client disconnects', async () => {
    const ctl = new AbortController();
    const pending = request(
      `${base}/v1/generate`,
      { prompt: 'abc', length: 10_000_000 },
      { signal: ctl.signal },
    );
    pending.catch(() => {}); // it is aborted below
    const t0 = Date.now();
    while ((await health(base)).streams.active === 0) {
      if (Date.now() - t0 > 3000) assert.fail('the generation did not start');
      await new Promise((r) => setTimeout(r, 10));
    }
    ctl.abort();
    await assert.rejects(pending, { name: 'AbortError' });
    await waitForIdle(base);
  });

  it('stays responsive during a long generation, and refuses one too many with 429', async () => {
    const s = await openStream(`${base}/v1/generate`, {
      prompt: 'abc',
      length: 10_000_000,
      mode: 'window',
    });
    try {
      const t0 = performance.now();
      const h = await health(base);
      assert.ok(performance.now() - t0 < 500, `health took ${performance.now() - t0} ms`);
      assert.deepEqual(h.streams, { active: 1, max: 1 });
      assertError(
        await request(`${base}/v1/generate`, { prompt: 'a', length: 5 }),
        429,
        /too many generations at once \(the limit is 1\)/,
      );
      // requests that generate nothing are still answered
      assert.equal((await request(`${base}/v1/predict`, { text: 'abc' })).status, 200);
    } finally {
      s.stop();
    }
    await waitForIdle(base);
    assert.equal((await request(`${base}/v1/generate`, { prompt: 'a', length: 5 })).status, 200);
  });

  it('ends open streams with an error event when the server closes', async () => {
    const url = await start({ maxLength: 10_000_000 });
    const res = await fetch(`${url}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'abc', length: 10_000_000, mode: 'stateful', stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const whole = request(`${url}/v1/generate`, { prompt: 'abc', length: 10_000_000 });
    while ((await health(url)).streams.active < 2) await new Promise((r) => setTimeout(r, 10));
    const app = servers.pop()!;
    const t0 = performance.now();
    const closing = app.close();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    await closing;
    assert.ok(performance.now() - t0 < 1000, `close() took ${performance.now() - t0} ms`);
    const last = parseSse(rest.slice(rest.lastIndexOf('event: ')))[0]!;
    assert.equal(last.event, 'error');
    assert.match(last.data.error.message, /shutting down/);
    assertError(await whole, 503, /shutting down/);
  });
});

describe('helpers', () => {
  it('names models after their folders, uniquely', () => {
    assert.deepEqual(modelNames(['a/tiny', 'b/tiny', 'tiny/', 'c/big']), [
      'tiny',
      'tiny-2',
      'tiny-3',
      'big',
    ]);
  });

  it('summarises the training metadata', () => {
    assert.deepEqual(
      trainingSummary({ corpus: 'x', loss: [3, 2], empty: [], nested: { a: 1 }, seed: 5 }),
      {
        corpus: 'x',
        loss: 2,
        seed: 5,
      },
    );
  });

  it('refuses to serve nothing, and reports a missing model folder', async () => {
    await assert.rejects(loadModels([]), /at least one --model/);
    await assert.rejects(loadModels([path.join(tmp, 'missing')]), /model folder not found/);
  });
});

describe('charlstm serve', () => {
  const ROOT = fileURLToPath(new URL('..', import.meta.url));
  const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

  it('prints its address, serves, and stops cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [...CLI, 'serve', '--model', modelDir, '--port', '0'], {
      cwd: ROOT,
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    try {
      while (!out.includes('\n')) {
        const [d] = (await Promise.race([once(child.stdout, 'data'), once(child, 'exit')])) as [
          Buffer,
        ];
        if (child.exitCode !== null) assert.fail(`serve exited: ${err}`);
        out += d;
      }
      const m = /^charlstm: serving (http:\/\/127\.0\.0\.1:\d+) \(models: tiny\)/.exec(out);
      assert.ok(m, out);
      assert.equal((await request(`${m[1]}/health`)).body.status, 'ok');
      const g = await request(`${m[1]}/v1/generate`, { prompt: 'abc', length: 10 });
      assert.equal([...g.body.text].length, 10);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, err);
  });

  it('refuses bad options with one line and exit code 2', async () => {
    const run = (...args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [...CLI, ...args],
          { cwd: ROOT, env: cliEnv() },
          (e, _o, stderr) => resolve({ code: e ? Number(e.code) : 0, stderr }),
        );
      });
    const cases: [string[], RegExp][] = [
      [['serve', '-m', modelDir, '--port', '70000'], /port must be an integer from 0 to 65535/],
      [['serve', '-m', modelDir, '--max-streams', '0'], /max streams must be an integer/],
      [['serve', '-m', path.join(tmp, 'missing')], /model folder not found/],
      [['serve', '-m', modelDir, '--web', path.join(tmp, 'missing')], /--web: not a folder/],
    ];
    const results = await Promise.all(cases.map(([args]) => run(...args)));
    for (const [i, [args, re]] of cases.entries()) {
      const r = results[i]!;
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^charlstm: error: /);
      assert.match(r.stderr, re);
    }
    // a port already taken
    const busy = await start();
    const port = new URL(busy).port;
    const r = await run('serve', '-m', modelDir, '--port', port);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`port ${port} on 127.0.0.1 is already in use`));
  });
});
