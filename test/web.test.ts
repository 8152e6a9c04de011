// The web app (web/) and the training dashboard (src/server/dashboard.ts).
//
// Without a browser: the SSE parser the page uses, the dashboard's recorder (decimation,
// thinning, what an epoch carries), its HTTP endpoints (state, event replay, static files), and
// what the dashboard callback costs a training run.
//
// In a real browser (Debian's chromium driven by playwright-core; skipped with a message when
// /usr/bin/chromium is missing): the app built with Vite into a temporary folder and served by a
// real `charlstm serve` server (buildServer) with a small model trained here, and by a real
// dashboard watching a real training run. Screenshots go to test-artifacts/; with
// CHARLSTM_UPDATE_SCREENSHOTS=1 they are also copied to docs/screenshots/ for the README.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { BrowserContext, Page } from 'playwright-core';

import { saveModel } from '../src/checkpoint/model-format.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import { makeWindows } from '../src/data/windows.ts';
import { REFERENCE } from '../src/defaults.ts';
import { InlineEngine } from '../src/engine/inline-engine.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { generateWindow } from '../src/generate/window.ts';
import { CharModel } from '../src/model/char-model.ts';
import { initParameters } from '../src/model/init.ts';
import type { Parameters } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Sampler } from '../src/sampling/sampler.ts';
import { DashboardRecorder, startDashboard, type DashboardState } from '../src/server/dashboard.ts';
import type {
  BatchEndEvent,
  EpochEndEvent,
  TrainCallback,
  Trainer as TrainerType,
} from '../src/train/trainer.ts';
import { Trainer } from '../src/train/trainer.ts';
import { SseParser } from '../web/src/sse.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env.CHARLSTM_CHROMIUM ?? '/usr/bin/chromium'; // Debian's chromium
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const SCREENSHOTS = path.join(ROOT, 'docs', 'screenshots');

// A small text to learn: short sentences that repeat with variations, all lowercase.
const TEXT = [
  'the cat sat on the mat and the dog sat on the log.',
  'the sun is warm and the sea is calm, so the boat goes out at dawn.',
  'a little rain fell on the hill, and the hill was green again.',
  'the old man said that the sea gives and the sea takes.',
  'she walked to the town and back, and the road was long and dry.',
  'the bird sang in the tree, and the tree stood by the river.',
  'we eat bread and fish by the fire when the night is cold.',
  'the cat and the dog are friends, and they sleep by the door.',
]
  .join(' ')
  .concat(' ')
  .repeat(3);

interface Small {
  params: Parameters;
  vocab: Vocabulary;
  tokens: Int32Array;
}

/** A fresh small model and a Trainer on TEXT, on this thread. */
async function smallTrainer(opts: {
  units: number;
  maxlen: number;
  step: number;
  batchSize: number;
  epochs: number;
  seed: number;
  callbacks?: TrainCallback[];
}): Promise<Small & { trainer: Trainer }> {
  const vocab = Vocabulary.fromText(TEXT);
  const tokens = vocab.encode(TEXT);
  const windows = makeWindows(tokens, opts.maxlen, opts.step);
  const root = new Rng(opts.seed);
  const params = initParameters(
    { vocabSize: vocab.size, units: opts.units },
    new Rng(root.nextU32()),
  );
  const engine = await InlineEngine.create({
    shape: params.shape,
    maxBatch: opts.batchSize,
    maxT: opts.maxlen,
    threads: 0,
  });
  const trainer = new Trainer({
    params,
    windows,
    shuffleRng: new Rng(root.nextU32()),
    engine,
    config: {
      batchSize: opts.batchSize,
      epochs: opts.epochs,
      learningRate: REFERENCE.learningRate,
      rho: REFERENCE.rho,
      epsilon: REFERENCE.epsilon,
      threads: 0,
    },
    callbacks: opts.callbacks ?? [],
  });
  return { params, vocab, tokens, trainer };
}

function metaFor(s: Small, maxlen: number, step: number) {
  return {
    vocab: [...s.vocab.chars],
    lowercase: true,
    maxlen,
    step,
    units: s.params.shape.units,
    training: { corpus: 'web.test.ts' },
  };
}

// ------------------------------------------------------------------ no browser needed

describe('SSE parser (web/src/sse.ts)', () => {
  test('events split anywhere across chunks, CRLF and CR line ends, comments, multi-line data', () => {
    const stream =
      ': keep-alive\r\n\r\ndata: {"text":"ab"}\r\n\r\nevent: done\ndata: {"chars":2}\n\n' +
      'data: line one\rdata: line two\r\rid: 7\nevent: x\ndata:no space\n\n';
    const want = [
      { event: 'message', data: '{"text":"ab"}' },
      { event: 'done', data: '{"chars":2}' },
      { event: 'message', data: 'line one\nline two' },
      { event: 'x', data: 'no space', id: '7' },
    ];
    for (const size of [1, 2, 3, 7, stream.length]) {
      const p = new SseParser();
      const got = [];
      for (let i = 0; i < stream.length; i += size) got.push(...p.push(stream.slice(i, i + size)));
      got.push(...p.end());
      assert.deepEqual(got, want, `chunks of ${size}`);
    }
  });

  test('an event not closed by a blank line is dropped at the end', () => {
    const p = new SseParser();
    assert.deepEqual(p.push('data: half'), []);
    assert.deepEqual(p.end(), []);
  });
});

const batchEvent = (
  epoch: number,
  step: number,
  steps: number,
  extra: Partial<BatchEndEvent> = {},
): BatchEndEvent => ({
  epoch,
  epochs: 2,
  step,
  steps,
  batchLoss: 3 - step / steps,
  epochLoss: 3 - step / (2 * steps),
  seen: step * 10,
  total: steps * 10,
  seqPerSec: 1000,
  elapsedMs: step,
  learningRate: 0.01,
  ...extra,
});

const fakeTrainer = {
  windows: { count: 100, maxlen: 20 },
  config: { batchSize: 10, epochs: 2, learningRate: 0.01, threads: 0 },
  params: { shape: { vocabSize: 30, units: 32 } },
  epoch: 0,
  stepsPerEpoch: 10,
  sequencesPerEpoch: 100,
} as unknown as TrainerType;

describe('dashboard recorder', () => {
  test('keeps the first and last batch of each epoch and at most one point per interval', async () => {
    const rec = new DashboardRecorder({ minIntervalMs: 60_000 });
    const cb = rec.callback();
    await cb.onTrainBegin?.(fakeTrainer);
    for (let step = 1; step <= 10; step++)
      await cb.onBatchEnd?.(batchEvent(1, step, 10), fakeTrainer);
    assert.deepEqual(
      rec.state.batches.map((b) => b.step),
      [1, 10],
    );
    const last = rec.state.batches[1]!;
    assert.equal(last.iteration, 10);
    assert.equal(last.etaEpoch, 0);
    assert.equal(last.eta, 0.1); // one more epoch of 100 sequences at 1000/s
    assert.equal(rec.state.run?.stepsPerEpoch, 10);
  });

  test('thins batch points by half when they reach the limit, newest kept', async () => {
    const rec = new DashboardRecorder({ minIntervalMs: 0, maxBatchPoints: 8 });
    const cb = rec.callback();
    await cb.onTrainBegin?.(fakeTrainer);
    for (let step = 1; step <= 40; step++)
      await cb.onBatchEnd?.(batchEvent(1, step, 40), fakeTrainer);
    assert.ok(rec.state.batches.length < 8);
    assert.equal(rec.state.batches.at(-1)!.step, 40);
    const steps = rec.state.batches.map((b) => b.step);
    assert.deepEqual(
      [...steps].sort((a, b) => a - b),
      steps,
    );
  });

  test('epochs carry validation figures and any other number; samples and the end are recorded', async () => {
    const rec = new DashboardRecorder();
    const events: string[] = [];
    rec.subscribe((e) => events.push(e.type));
    const cb = rec.callback();
    await cb.onTrainBegin?.(fakeTrainer);
    const ev = {
      epoch: 1,
      epochs: 2,
      loss: 2.5,
      sequences: 100,
      seconds: 0.1,
      seqPerSec: 1000,
      learningRate: 0.01,
      valLoss: 2.6,
      valBpc: 2.6 / Math.LN2,
    } as EpochEndEvent;
    await cb.onEpochEnd?.(ev, fakeTrainer);
    rec.recordSamples(1, 'the seed', [
      { temperature: 0.2, text: 'aaa' },
      { temperature: 1.2, text: 'xyz' },
    ]);
    await cb.onTrainEnd?.([ev], fakeTrainer, true);
    assert.equal(rec.state.epochs[0]!.valLoss, 2.6);
    assert.equal(rec.state.epochs[0]!.valBpc, 2.6 / Math.LN2);
    assert.equal(rec.state.epochs[0]!.learningRate, 0.01);
    assert.equal(rec.state.samples[0]!.texts[1]!.text, 'xyz');
    assert.equal(rec.state.end?.stopped, true);
    assert.deepEqual(events, ['run', 'epoch', 'samples', 'end']);
  });
});

/** GET a URL; resolves with the status, headers and body text. */
function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
        );
      })
      .on('error', reject);
  });
}

describe('dashboard server', () => {
  test('state, events (history first, then live), static files, errors', async () => {
    const web = await mkdtemp(path.join(os.tmpdir(), 'charlstm-web-'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(web, 'index.html'), '<!doctype html><title>app</title>');
    const d = await startDashboard({ webDir: web, port: 0 });
    try {
      const base = d.url.replace(/#.*$/, '');
      assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+\/#dashboard$/);
      const cb = d.callback;
      await cb.onTrainBegin?.(fakeTrainer);
      await cb.onBatchEnd?.(batchEvent(1, 1, 10), fakeTrainer);

      const state = JSON.parse((await get(`${base}v1/train/state`)).body) as DashboardState;
      assert.equal(state.batches.length, 1);
      assert.equal(state.run?.units, 32);

      // the event stream: the state so far, then what happens next
      const frames: string[] = [];
      const closed = new Promise<void>((resolve, reject) => {
        http
          .get(`${base}v1/train/events`, (res) => {
            assert.match(String(res.headers['content-type']), /^text\/event-stream/);
            const parser = new SseParser();
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              for (const ev of parser.push(c)) frames.push(`${ev.event}:${ev.data}`);
              if (frames.length === 1) {
                void cb.onBatchEnd?.(batchEvent(1, 10, 10), fakeTrainer);
                d.recordSamples(1, 'seed', [{ temperature: 0.5, text: 'abc' }]);
              }
            });
            res.on('end', resolve);
          })
          .on('error', reject);
      });
      const until = Date.now() + 5000;
      while (frames.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.equal(frames.length, 3, frames.join('\n'));
      assert.ok(frames[0]!.startsWith('state:'));
      assert.equal((JSON.parse(frames[0]!.slice(6)) as DashboardState).batches.length, 1);
      assert.ok(frames[1]!.startsWith('batch:{'));
      assert.ok(frames[2]!.startsWith('samples:{'));

      const page = await get(base);
      assert.equal(page.status, 200);
      assert.match(page.type, /^text\/html/);
      assert.match(page.body, /<title>app<\/title>/);
      for (const bad of ['/../package.json', '/%2e%2e/package.json', '/nope.js']) {
        const r = await get(`${base.slice(0, -1)}${bad}`);
        assert.equal(r.status, 404, bad);
        assert.ok(JSON.parse(r.body).error.message, bad);
      }
      const api = await get(`${base}v1/nothing`);
      assert.equal(api.status, 404);
      assert.match(JSON.parse(api.body).error.message, /no such endpoint/);

      await d.close();
      await closed; // close() ends the open event streams
    } finally {
      await d.close();
      await rm(web, { recursive: true, force: true });
    }
  });
});

describe('dashboard overhead', () => {
  test('the callback costs training well under 2%', async (t) => {
    const shape = { units: 64, maxlen: 40, step: 1, batchSize: 32, epochs: 1, seed: 5 };
    // the per-batch cost, measured directly: calls that keep no point are the common case
    const rec = new DashboardRecorder();
    const cb = rec.callback();
    await cb.onTrainBegin?.(fakeTrainer);
    const ev = batchEvent(1, 5, 1000);
    const calls = 200_000;
    let t0 = performance.now();
    for (let i = 0; i < calls; i++) void cb.onBatchEnd?.(ev, fakeTrainer);
    const perCallMs = (performance.now() - t0) / calls;

    // a short real training run without and with the dashboard (no page connected), alternated
    const run = async (withDashboard: boolean): Promise<{ ms: number; steps: number }> => {
      const d = withDashboard ? await startDashboard({ port: 0 }) : undefined;
      const s = await smallTrainer({ ...shape, callbacks: d ? [d.callback] : [] });
      t0 = performance.now();
      await s.trainer.fit();
      const ms = performance.now() - t0;
      if (d) {
        // at most one point per 100 ms, besides each epoch's first and last batch
        const points = d.recorder.state.batches.length;
        assert.ok(points <= Math.ceil(ms / 100) + 2, `${points} points in ${ms} ms`);
        await d.close();
      }
      return { ms, steps: s.trainer.stepsPerEpoch };
    };
    await run(false); // warm up
    const without: number[] = [];
    const withD: number[] = [];
    let steps = 0;
    for (let i = 0; i < 3; i++) {
      without.push((await run(false)).ms);
      const r = await run(true);
      withD.push(r.ms);
      steps = r.steps;
    }
    const ratio = Math.min(...withD) / Math.min(...without);
    const batchMs = Math.min(...without) / steps;
    t.diagnostic(
      `dashboard callback: ${(perCallMs * 1e6).toFixed(0)} ns per batch (${((100 * perCallMs) / batchMs).toFixed(4)}% of a ${batchMs.toFixed(2)} ms batch); ` +
        `training ${steps} batches: ${Math.min(...without).toFixed(0)} ms without, ${Math.min(...withD).toFixed(0)} ms with (ratio ${ratio.toFixed(3)})`,
    );
    assert.ok(perCallMs / batchMs < 0.001, `per-batch cost ${perCallMs} ms vs batch ${batchMs} ms`);
    // Only a gross check: on a shared 2-core machine, two runs of the same thing differ by up to
    // ~10%, far more than the callback costs; the bound that matters is the per-batch one above.
    assert.ok(ratio < 1.5, `with/without ratio ${ratio}`);
  });
});

// ------------------------------------------------------------------ in a real browser

const browserSkip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser tests`;

describe('web app in Chromium', { skip: browserSkip }, () => {
  let tmp: string;
  let webDir: string;
  let modelDir: string;
  let serverUrl: string;
  let closeServer: () => Promise<void>;
  let context: BrowserContext;
  const pageErrors: string[] = [];
  const foreign: string[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'charlstm-webtest-'));
    webDir = path.join(tmp, 'web-dist');
    await mkdir(ARTIFACTS, { recursive: true });
    const { build } = await import('vite');
    await build({
      configFile: path.join(ROOT, 'vite.config.ts'),
      logLevel: 'warn',
      build: { outDir: webDir, emptyOutDir: true },
    });

    // a small model: units 32, a few hundred steps
    const maxlen = 20;
    const step = 1;
    const s = await smallTrainer({ units: 32, maxlen, step, batchSize: 32, epochs: 6, seed: 11 });
    await s.trainer.fit();
    modelDir = path.join(tmp, 'tiny');
    await saveModel(modelDir, s.params, metaFor(s, maxlen, step));

    const { buildServer } = await import('../src/server/app.ts');
    const { loadModels } = await import('../src/server/served-models.ts');
    const app = await buildServer({ models: await loadModels([modelDir]), webDir });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address() as { port: number };
    serverUrl = `http://127.0.0.1:${addr.port}/`;
    closeServer = () => app.close();

    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1100, height: 860 },
    });
  });

  after(async () => {
    await context?.close();
    await closeServer?.();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** A new page that records script errors and any request leaving `origin`. */
  async function open(url: string): Promise<Page> {
    const page = await context.newPage();
    const origin = new URL(url).origin;
    page.on('pageerror', (e) => pageErrors.push(`${url}: ${e.message}`));
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:'))
        foreign.push(u);
    });
    await page.goto(url);
    return page;
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file });
    if (process.env.CHARLSTM_UPDATE_SCREENSHOTS === '1') {
      await mkdir(SCREENSHOTS, { recursive: true });
      await copyFile(file, path.join(SCREENSHOTS, `${name}.png`));
    }
  }

  test('playground: streams, stops, follows the controls, flags unknown characters, shows errors', async () => {
    const page = await open(`${serverUrl}#playground`);
    await page.locator('#pg-model option', { hasText: 'tiny' }).waitFor({ state: 'attached' });
    await page.locator('#pg-model-info', { hasText: 'characters' }).waitFor();

    // the next-character distribution for the prompt
    await page.fill('#pg-prompt', 'the cat sat on the ');
    await page.locator('#pg-dist .bar').first().waitFor();
    assert.equal(await page.locator('#pg-dist .bar').count(), 15);
    await page.locator('#pg-dist-context', { hasText: 'the cat sat on the' }).waitFor();

    // streaming: the text shows in several pieces while the generation still runs
    const bodies: Record<string, unknown>[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/v1/generate'))
        bodies.push(JSON.parse(r.postData() ?? '{}') as Record<string, unknown>);
    });
    await page.fill('#pg-length', '10000');
    await page.fill('#pg-seed', '42');
    await page.fill('#pg-temperature', '0.2');
    await page.evaluate(() => {
      const out = document.getElementById('pg-output-text')!;
      const stop = document.getElementById('pg-stop') as HTMLButtonElement;
      const w = window as unknown as { partial: number };
      w.partial = 0;
      new MutationObserver(() => {
        if (!stop.disabled && (out.textContent ?? '').length > 0) w.partial++;
      }).observe(out, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#pg-generate');
    await page.locator('#pg-stats', { hasText: 'Done' }).waitFor();
    const cold = [...((await page.textContent('#pg-output-text')) ?? '')];
    assert.equal(cold.length, 10000);
    const partial = await page.evaluate(() => (window as unknown as { partial: number }).partial);
    assert.ok(partial >= 2, `the text showed ${partial} times before the generation ended`);
    assert.equal(bodies.at(-1)!.temperature, 0.2);
    assert.equal(bodies.at(-1)!.stream, true);
    assert.equal(bodies.at(-1)!.seed, 42);

    // the same seed at another temperature: the request follows the control, the text changes
    await page.fill('#pg-temperature', '1.2');
    assert.equal(await page.textContent('#pg-temperature-value'), '1.20');
    await page.fill('#pg-length', '400');
    await page.click('#pg-generate');
    await page.locator('#pg-stats', { hasText: 'Done' }).waitFor();
    const hot = (await page.textContent('#pg-output-text')) ?? '';
    assert.equal(bodies.at(-1)!.temperature, 1.2);
    assert.equal([...hot].length, 400);
    assert.notEqual(hot, cold.slice(0, 400).join(''));

    // keyboard: Ctrl+Enter in the prompt generates; Stop (clicked at the first piece) aborts
    await page.fill('#pg-length', '10000');
    await page.evaluate(() => {
      const out = document.getElementById('pg-output-text')!;
      const obs = new MutationObserver(() => {
        if ((out.textContent ?? '').length > 0) {
          obs.disconnect();
          document.getElementById('pg-stop')!.click();
        }
      });
      obs.observe(out, { childList: true, characterData: true, subtree: true });
    });
    await page.focus('#pg-prompt');
    await page.keyboard.press('Control+Enter');
    await page.locator('#pg-stats', { hasText: 'Stopped' }).waitFor();
    const stopped = (await page.textContent('#pg-output-text')) ?? '';
    assert.ok(
      stopped.length > 0 && stopped.length < 10000,
      `stopped after ${stopped.length} characters`,
    );
    assert.equal(await page.isEnabled('#pg-generate'), true);

    // an error from the server is shown as its message
    await page.fill('#pg-length', '99999');
    await page.click('#pg-generate');
    await page.locator('#pg-error').waitFor({ state: 'visible' });
    const err = (await page.textContent('#pg-error')) ?? '';
    assert.match(err, /length/);
    assert.doesNotMatch(err, /^\d{3}/); // the message, not a status line

    // characters outside the vocabulary are marked before anything is sent
    const sent = bodies.length;
    await page.fill('#pg-prompt', 'the cat Ж sat € on the mat');
    await page.locator('#pg-vocab').waitFor({ state: 'visible' });
    assert.deepEqual(await page.locator('#pg-vocab mark').allTextContents(), ['Ж', '€']);
    assert.match(
      (await page.textContent('#pg-vocab')) ?? '',
      /not in the model's vocabulary: "Ж", "€"/,
    );
    assert.equal(await page.getAttribute('#pg-prompt', 'aria-invalid'), 'true');
    assert.equal(await page.isDisabled('#pg-generate'), true);
    assert.equal(bodies.length, sent);

    // the four reference temperatures side by side
    await page.fill('#pg-prompt', 'the sun is warm and ');
    await page.fill('#pg-length', '200');
    await page.locator('#pg-vocab').waitFor({ state: 'hidden' });
    await page.click('#pg-compare');
    await page.locator('#pg-stats', { hasText: 'Four temperatures' }).waitFor();
    assert.equal(await page.isVisible('#pg-error'), false);
    const cols = page.locator('#pg-compare-out .compare-col');
    assert.deepEqual(await cols.locator('h4').allTextContents(), [
      'temperature 0.2',
      'temperature 0.5',
      'temperature 1',
      'temperature 1.2',
    ]);
    for (const text of await cols.locator('pre').allTextContents()) {
      assert.equal([...text].length, [...'the sun is warm and '].length + 200);
    }
    const temps = bodies.slice(-4).map((b) => b.temperature);
    assert.deepEqual([...temps].sort(), [0.2, 0.5, 1, 1.2]);
    await page.locator('#pg-dist-context', { hasText: 'the sun is warm and' }).waitFor();
    await page.locator('#pg-dist:not(.stale) .bar').first().waitFor();
    await screenshot(page, 'playground');

    // narrow screens: one column, nothing wider than the window
    await page.setViewportSize({ width: 380, height: 800 });
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 380px window`);
    await page.close();
  });

  test('dashboard: a real training run live, its curve, epochs and samples; a reload keeps the history', async () => {
    const d = await startDashboard({ webDir, port: 0, minIntervalMs: 20 }); // more points than the default 100 ms, for the picture
    try {
      const page = await open(d.url.replace(/#.*$/, '')); // no hash: the page finds the dashboard itself
      await page.locator('#db-status', { hasText: 'Waiting for training' }).waitFor();
      assert.equal(await page.evaluate(() => location.hash), '#dashboard');

      const temps = [...REFERENCE.temperatures];
      let live = '';
      const samples: TrainCallback = {
        onEpochEnd: async (ev, tr) => {
          await kernelModule();
          const m = CharModel.fromParts(tr.params, { formatVersion: 1, ...metaFor(s, 20, 1) });
          const seed = TEXT.slice(ev.epoch * 7, ev.epoch * 7 + 20);
          const texts = generateWindow(m, {
            prompts: temps.map(() => seed),
            samplers: temps.map((temperature) => new Sampler({ temperature })),
            length: 120,
            rng: new Rng(ev.epoch),
          });
          d.recordSamples(
            ev.epoch,
            seed,
            temps.map((temperature, i) => ({ temperature, text: texts[i]! })),
          );
        },
        onBatchEnd: async (ev) => {
          if (ev.epoch === 2 && ev.step === 1) live = (await page.textContent('#db-status')) ?? '';
          await new Promise((r) => setTimeout(r, 4)); // slow enough to be watched
        },
      };
      const s = await smallTrainer({
        units: 32,
        maxlen: 20,
        step: 1,
        batchSize: 32,
        epochs: 3,
        seed: 3,
        callbacks: [d.callback, samples],
      });
      await s.trainer.fit();
      assert.match(live, /^Epoch [12]\/3 · batch \d+\/\d+ · loss \d/); // seen while training ran

      await page.locator('#db-status', { hasText: 'Finished after 3 epochs' }).waitFor();
      assert.equal(await page.locator('#db-epochs tr').count(), 3);
      assert.equal(await page.locator('#db-samples details').count(), 3);
      assert.equal(await page.locator('#db-samples details[open] .compare-col').count(), 4);
      assert.equal(await page.locator('#db-chart canvas').count(), 1);
      const losses = (await page.locator('#db-epochs tr td:nth-child(2)').allTextContents()).map(
        Number,
      );
      assert.ok(losses[2]! < losses[0]!, `epoch losses ${losses}`);
      await screenshot(page, 'dashboard');

      await page.reload();
      await page.locator('#db-status', { hasText: 'Finished after 3 epochs' }).waitFor();
      assert.equal(await page.locator('#db-epochs tr').count(), 3);
      assert.equal(await page.locator('#db-samples details').count(), 3);
      await page.close();
    } finally {
      await d.close();
    }
  });

  test('in the browser: trains on pasted text (the loss falls), generates, opens a saved model', async (t) => {
    const page = await open(`${serverUrl}#local`);
    await page.fill('#lc-text', TEXT);
    await page
      .locator('#lc-text-info', {
        hasText: `${[...TEXT].length.toLocaleString('en-US')} characters`,
      })
      .waitFor();
    // a long run can be stopped (the page stays responsive: the work is in the worker)
    await page.fill('#lc-epochs', '500');
    await page.click('#lc-train');
    await page.locator('#lc-train-status', { hasText: /^Epoch 1\/500/ }).waitFor();
    assert.equal(await page.evaluate(() => 1 + 1), 2);
    await page.click('#lc-stop-train');
    await page.locator('#lc-train-status', { hasText: /^Stopped/ }).waitFor();

    await page.fill('#lc-epochs', '6');
    await page.click('#lc-train');
    await page.locator('#lc-train-status', { hasText: /^Done/ }).waitFor({ timeout: 30_000 });
    const first = Number(await page.getAttribute('#lc-train-status', 'data-first-loss'));
    const last = Number(await page.getAttribute('#lc-train-status', 'data-last-loss'));
    assert.ok(last < 0.75 * first, `loss from ${first} to ${last}`);
    const speed = Number(await page.getAttribute('#lc-speed', 'data-seq-per-sec'));
    assert.ok(speed > 0);
    // Chromium has relaxed SIMD on by default (since 114): the page trained on that wasm build
    assert.match(
      (await page.textContent('#lc-speed')) ?? '',
      /one Web Worker thread, WebAssembly SIMD \(relaxed SIMD, FMA\);/,
    );
    t.diagnostic(
      `in-page training: ${Math.round(speed)} sequences/s (units 64, window 40, batch 32); loss ${first.toFixed(3)} → ${last.toFixed(3)}`,
    );
    assert.equal(await page.locator('#lc-samples details').count(), 6);

    // generate with the model just trained
    await page.fill('#lc-prompt', 'the cat ');
    await page.fill('#lc-gen-seed', '1');
    await page.click('#lc-generate');
    await page.locator('#lc-gen-stats', { hasText: 'Done' }).waitFor();
    assert.equal(
      [...((await page.textContent('#lc-output')) ?? '')].length,
      'the cat '.length + 300,
    );
    await screenshot(page, 'local');

    // saved from the page, the model opens in Node (format, names and checksum as saveModel's)
    await page.click('#lc-export');
    const links = page.locator('#lc-downloads a');
    await links.nth(1).waitFor();
    const saved = path.join(tmp, 'from-browser');
    await mkdir(saved);
    for (let i = 0; i < 2; i++) {
      const [download] = await Promise.all([page.waitForEvent('download'), links.nth(i).click()]);
      await download.saveAs(path.join(saved, download.suggestedFilename()));
    }
    const { loadModel } = await import('../src/checkpoint/model-format.ts');
    const back = await loadModel(saved);
    assert.equal(back.meta.units, 64);
    assert.equal(back.meta.maxlen, 40);
    assert.equal((back.meta.training.loss as number[]).length, 6);

    // a saved model's files: without the weights, a clear error; with them, it loads and generates
    await page.setInputFiles('#lc-model-files', [path.join(modelDir, 'model.json')]);
    await page.locator('#lc-error', { hasText: 'needs the weights file' }).waitFor();
    const { readdir } = await import('node:fs/promises');
    const weights = (await readdir(modelDir)).find((f) => f.endsWith('.bin'))!;
    await page.setInputFiles('#lc-model-files', [
      path.join(modelDir, 'model.json'),
      path.join(modelDir, weights),
    ]);
    await page.locator('#lc-model-info', { hasText: 'Model model.json' }).waitFor();
    await page.fill('#lc-prompt', 'the dog Ж');
    await page.locator('#lc-vocab mark', { hasText: 'Ж' }).waitFor();
    assert.equal(await page.isDisabled('#lc-generate'), true);
    await page.fill('#lc-prompt', 'the dog ');
    await page.fill('#lc-length', '100');
    await page.click('#lc-generate');
    await page.locator('#lc-gen-stats', { hasText: 'Done: 100 characters' }).waitFor();
    await page.close();
  });

  test('the pages ran without script errors and fetched nothing from elsewhere', () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(foreign, []);
  });
});
