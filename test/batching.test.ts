import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { FORMAT_VERSION } from '../src/checkpoint/model-format.ts';
import { kernelFactory, kernelModule, resolveEngine } from '../src/engine/kernels.ts';
import { batcherFor, observeSteps } from '../src/generate/batcher.ts';
import { generate, type GenerateOptions } from '../src/generate/generate.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Parameters } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { buildServer } from '../src/server/app.ts';
import { randomCharModel } from './helpers/models.ts';

// Continuous batching (src/generate/batcher.ts): streams on one model advance in shared batched
// steps, and each gives exactly the text it gives alone.

const VOCAB = [...' .,abcdefghijklmnopqrstuvwxyz'];
const MAXLEN = 10;

const makeModel = (seed = 1): CharModel =>
  randomCharModel({ vocab: VOCAB, units: 16, maxlen: MAXLEN, seed, scale: 1.2 });

async function text(g: AsyncIterable<string>): Promise<string> {
  let s = '';
  for await (const c of g) s += c;
  return s;
}

/** Run `fn` while recording the row count of every batched step. */
async function steps<T>(fn: () => Promise<T>): Promise<{ result: T; rows: number[] }> {
  const rows: number[] = [];
  const stop = observeSteps((n) => rows.push(n));
  try {
    return { result: await fn(), rows };
  } finally {
    stop();
  }
}

// every mode, prompt kind (empty, shorter and longer than maxlen) and sampler
const REQUESTS: GenerateOptions[] = [
  { mode: 'stateful', prompt: 'abc', length: 150, temperature: 0.7, seed: 1 },
  { mode: 'stateful', prompt: '', length: 90, seed: 2 },
  { mode: 'stateful', prompt: 'the cat sat on the mat. '.repeat(3), length: 120, topK: 5, seed: 3 },
  { mode: 'stateful', prompt: 'x', length: 60, greedy: true },
  { mode: 'stateful', prompt: 'hello', length: 200, temperature: 1.4, topP: 0.9, seed: 4 },
  { mode: 'window', prompt: 'ab', length: 70, temperature: 0.5, seed: 5 },
  { mode: 'window', prompt: 'a longer prompt than maxlen', length: 80, seed: 6 },
  { mode: 'window', prompt: 'ab', length: 50, temperature: 1.2, topK: 8, seed: 7 },
  { mode: 'window', prompt: 'q', length: 40, greedy: true },
  { mode: 'stateful', prompt: 'abc', length: 150, temperature: 0.7, seed: 8 },
];

describe('continuous batching', () => {
  it('a batched step of n rows is the single-row step of each row, bit for bit (wasm and native)', async (t) => {
    await kernelModule();
    const shape = { vocabSize: VOCAB.length, units: 32 };
    const params = new Parameters(shape);
    const rng = new Rng(9);
    for (let i = 0; i < params.flat.length; i++) params.flat[i] = rng.uniform(-1, 1);
    const meta = {
      formatVersion: FORMAT_VERSION,
      vocab: VOCAB,
      lowercase: true,
      maxlen: MAXLEN,
      step: 3,
      units: 32,
      training: {},
    };
    for (const engine of ['wasm', 'native'] as const) {
      let kernels;
      try {
        kernels = await kernelFactory(await resolveEngine(engine));
      } catch {
        t.diagnostic(`${engine} kernels not built here: not compared`);
        continue;
      }
      const model = CharModel.fromParts(params, meta, kernels);
      // n = 1, a register block's rows (4 in wasm, 6 native) and around it, and many
      for (const n of [1, 3, 4, 5, 6, 7, 13, 64]) {
        const core = model.batchStepCore(n);
        const size = 32;
        const h = new Float32Array(n * size);
        const c = new Float32Array(n * size);
        for (let i = 0; i < h.length; i++) [h[i], c[i]] = [rng.uniform(-1, 1), rng.uniform(-2, 2)];
        const tokens = Int32Array.from({ length: n }, (_, i) => (i * 7) % VOCAB.length);
        core.setState(h, c);
        const batched = core.step(tokens, n).slice();
        const after = core.getState(n);
        for (let r = 0; r < n; r++) {
          const s = model.stepper();
          s.setState(h.subarray(r * size, (r + 1) * size), c.subarray(r * size, (r + 1) * size));
          const alone = s.step(tokens[r]!);
          const V = VOCAB.length;
          assert.deepEqual(
            batched.subarray(r * V, (r + 1) * V),
            alone,
            `${engine} n=${n} row ${r}`,
          );
          const st = s.getState();
          assert.deepEqual(after.h.subarray(r * size, (r + 1) * size), st.h);
          assert.deepEqual(after.c.subarray(r * size, (r + 1) * size), st.c);
          s.release();
        }
      }
    }
  });

  it('concurrent streams give exactly the texts each gives alone, in shared steps', async () => {
    const model = makeModel(2);
    const alone: string[] = [];
    for (const r of REQUESTS) alone.push(await text(generate(model, r)));
    // and alone is the unbatched path's text (its own single-row stepper, windowSteps)
    for (const [i, r] of REQUESTS.entries())
      assert.equal(await text(generate(model, { ...r, batch: false })), alone[i], `request ${i}`);
    const { result, rows } = await steps(() =>
      Promise.all(REQUESTS.map((r) => text(generate(model, r)))),
    );
    assert.deepEqual(result, alone);
    assert.ok(Math.max(...rows) >= 5, `largest batch ${Math.max(...rows)}`);
    assert.equal(batcherFor(model).size, 0);
    // different seeds gave different texts (the rows did not share a generator)
    assert.notEqual(alone[0], alone[9]);
  });

  it("a joining stream's prompt is prefilled on its own core: the batch steps only from its last character", async () => {
    const model = makeModel(4);
    const prompt = 'the cat sat on the mat. the cat sat.'; // 36 characters
    const req = { mode: 'stateful' as const, prompt, length: 7, seed: 9 };
    const alone = await text(generate(model, { ...req, batch: false }));
    const seen: string[] = [];
    const stop = observeSteps((n, mode) => seen.push(`${mode}:${n}`));
    try {
      assert.equal(await text(generate(model, req)), alone);
    } finally {
      stop();
    }
    // 35 prompt characters fed without a head, then 7 steps that draw (the first feeds the last)
    assert.deepEqual(seen, [
      ...Array<string>(prompt.length - 1).fill('prefill:1'),
      ...Array<string>(7).fill('stateful:1'),
    ]);
  });

  it('streams join and leave between steps: late starters, early finishers, a break, a slow reader', async () => {
    const model = makeModel(3);
    const a = { mode: 'stateful' as const, prompt: 'ab', length: 3000, seed: 11 };
    const b = { mode: 'stateful' as const, prompt: 'c', length: 40, seed: 12 };
    const w = { mode: 'window' as const, prompt: 'abcd', length: 300, seed: 13 };
    const slow = { mode: 'stateful' as const, prompt: 'zz', length: 500, seed: 14 };
    const [ta, tb, tw, tslow] = [
      await text(generate(model, a)),
      await text(generate(model, b)),
      await text(generate(model, w)),
      await text(generate(model, slow)),
    ];
    const got = { a: '', b: '', w: '', brk: '', slow: '' };
    const slowIt = generate(model, { ...slow, chunkChars: 8 })[Symbol.asyncIterator]();
    got.slow += (await slowIt.next()).value; // then left unread while the others run
    const later: Promise<void>[] = [];
    for await (const chunk of generate(model, a)) {
      got.a += chunk;
      if (got.a.length > 500 && later.length === 0) {
        // B finishes long before A; W runs alongside; the fourth leaves after its first chunk
        later.push((async () => void (got.b = await text(generate(model, b))))());
        later.push((async () => void (got.w = await text(generate(model, w))))());
        later.push(
          (async () => {
            for await (const c of generate(model, { ...a, seed: 99 })) {
              got.brk = c;
              break;
            }
          })(),
        );
      }
    }
    await Promise.all(later);
    for (let r = await slowIt.next(); !r.done; r = await slowIt.next()) got.slow += r.value;
    assert.equal(got.a, ta);
    assert.equal(got.b, tb);
    assert.equal(got.w, tw);
    assert.equal(got.slow, tslow);
    assert.ok(got.brk.length > 0);
    assert.ok(
      (await text(generate(model, { ...a, seed: 99 }))).startsWith(got.brk),
      'the stream that left early had its own text so far',
    );
    assert.equal(batcherFor(model).size, 0);
  });

  it('an aborted stream frees its row at once; the others go on unchanged', async () => {
    const model = makeModel(4);
    const keep = { mode: 'stateful' as const, prompt: 'ab', length: 2000, seed: 21 };
    const expected = await text(generate(model, keep));
    const ctl = new AbortController();
    const doomed = generate(model, { ...keep, length: 1_000_000, seed: 22, signal: ctl.signal });
    const { result, rows } = await steps(async () => {
      const k = text(generate(model, keep));
      let got = 0;
      await assert.rejects(
        (async () => {
          for await (const c of doomed) {
            got += c.length;
            if (got >= 100) ctl.abort();
          }
        })(),
        { name: 'AbortError' },
      );
      assert.equal(batcherFor(model).size, 1); // only the one still running
      return k;
    });
    assert.equal(await result, expected);
    assert.ok(rows.includes(2) && rows.at(-1) === 1, 'two rows, then one after the abort');
    assert.equal(batcherFor(model).size, 0);
  });

  describe('through the HTTP server', () => {
    const model = makeModel(5);
    const app = buildServer({ models: [{ name: 'tiny', model }], maxStreams: 64 });
    after(() => app.close());

    it('concurrent requests, streamed and whole, answer what each answers alone', async () => {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const url = `http://127.0.0.1:${port}/v1/generate`;
      const body = (i: number) => ({
        prompt: i % 3 === 0 && i % 4 !== 3 ? '' : 'the ',
        length: 1500 + 50 * i,
        seed: 100 + i,
        temperature: 0.5 + i / 20,
        mode: i % 4 === 3 ? 'window' : 'stateful',
        stream: i % 2 === 0,
      });
      const ask = async (i: number): Promise<string> => {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body(i)),
        });
        assert.equal(res.status, 200);
        const raw = await res.text();
        if (!body(i).stream) return (JSON.parse(raw) as { text: string }).text;
        const data = raw
          .split('\n\n')
          .filter((e) => e.startsWith('data: '))
          .map((e) => JSON.parse(e.slice(6)) as { text: string });
        return data.map((d) => d.text).join('');
      };
      const N = 24;
      const alone: string[] = [];
      for (let i = 0; i < N; i++) alone.push(await ask(i));
      for (let i = 0; i < N; i++) {
        const { mode, seed, temperature, prompt, length } = body(i);
        const opts = { mode: mode as 'window' | 'stateful', seed, temperature, prompt, length };
        assert.equal(alone[i], await text(generate(model, opts)), `request ${i}`);
      }
      const { result, rows } = await steps(() =>
        Promise.all(Array.from({ length: N }, (_, i) => ask(i))),
      );
      assert.deepEqual(result, alone);
      assert.ok(Math.max(...rows) >= 8, `largest batch ${Math.max(...rows)}`);
      // GET /metrics counts every batched step by its rows
      const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const counted = Number(/^charlstm_step_batch_size_count (\d+)$/m.exec(m)?.[1]);
      assert.ok(counted >= rows.length, `${counted} steps counted, ${rows.length} seen here`);
      const over = Number(/^charlstm_step_batch_size_bucket\{le="4"\} (\d+)$/m.exec(m)?.[1]);
      assert.ok(over < counted, 'some steps had more than 4 rows');
      // and every streamed answer's time to its first text (N/2 streamed, asked twice)
      const firsts = /^charlstm_stream_first_text_seconds_count\{model="tiny"\} (\d+)$/m.exec(m);
      assert.ok(Number(firsts?.[1]) >= N, `first texts counted: ${firsts?.[1]}`);
    });

    it('batch: false answers the same texts, each on its own stepper', async () => {
      const alone = buildServer({ models: [{ name: 'tiny', model }], batch: false });
      try {
        const body = { prompt: 'the ', length: 300, seed: 5, temperature: 0.8 };
        const ask = async (server: typeof app, mode: string) =>
          (
            await server.inject({
              method: 'POST',
              url: '/v1/generate',
              payload: { ...body, mode },
            })
          ).json<{ text: string }>().text;
        for (const mode of ['stateful', 'window']) {
          const { result, rows } = await steps(() => ask(alone, mode));
          assert.equal(rows.length, 0, 'no batched step');
          assert.equal(result, await ask(app, mode));
        }
      } finally {
        await alone.close();
      }
    });
  });
});
