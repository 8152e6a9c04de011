import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BatchEndEvent, EpochEndEvent, TrainCallback, Trainer } from '../train/trainer.ts';

// The live training dashboard behind `charlstm train --dashboard`: a TrainCallback that records
// the run (DashboardRecorder), and a small HTTP server that serves the web app (web/dist) with the
// record as JSON (GET /v1/train/state) and as server-sent events (GET /v1/train/events: the whole
// state first, then every new event), so a page opened or reloaded at any time shows the history.
//
// Training must not notice it: per batch the callback does one clock read and a comparison, and
// at most every `minIntervalMs` it keeps a point (a few numbers) and hands it to the connected
// pages (a non-blocking socket write each). Batch points are thinned by half whenever they reach
// `maxBatchPoints`, so a run of any length holds a bounded history.

/** Where the built web app is (the same depth from src/server/ and dist/server/). */
export const WEB_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

export interface RunInfo {
  t: number; // ms since the Unix epoch
  epochs: number; // the epoch number the run stops after
  startEpoch: number; // epochs already done when this process started (a resumed run)
  stepsPerEpoch: number;
  sequences: number; // training windows per epoch
  batchSize: number;
  maxlen: number;
  vocabSize: number;
  units: number;
  learningRate: number;
  threads: number;
}

export interface BatchPoint {
  t: number; // ms since the Unix epoch
  iteration: number; // batches since the start of epoch 1: (epoch - 1) · stepsPerEpoch + step
  epoch: number;
  step: number;
  steps: number;
  loss: number; // this batch's loss
  epochLoss: number; // the epoch's running mean
  seqPerSec: number; // this epoch so far
  etaEpoch: number; // seconds left in this epoch
  eta: number; // seconds left in the run
}

export interface EpochPoint {
  t: number;
  iteration: number; // the last batch of the epoch
  epoch: number;
  epochs: number;
  loss: number;
  seconds: number;
  seqPerSec: number;
  valLoss?: number;
  valBpc?: number;
  [key: string]: number | undefined; // any other number an epoch event carries (learningRate…)
}

export interface SampleText {
  temperature: number;
  text: string;
}

export interface EpochSamples {
  t: number;
  epoch: number;
  seed: string;
  texts: SampleText[];
}

export interface TrainEnd {
  t: number;
  stopped: boolean;
  epochs: number; // epochs completed
}

/** Everything recorded so far: what GET /v1/train/state returns. */
export interface DashboardState {
  run: RunInfo | null;
  batches: BatchPoint[];
  epochs: EpochPoint[];
  samples: EpochSamples[];
  end: TrainEnd | null;
}

/** One server-sent event: its name and its JSON data. */
export type DashboardEvent =
  | { type: 'state'; data: DashboardState }
  | { type: 'run'; data: RunInfo }
  | { type: 'batch'; data: BatchPoint }
  | { type: 'epoch'; data: EpochPoint }
  | { type: 'samples'; data: EpochSamples }
  | { type: 'end'; data: TrainEnd };

export interface RecorderOptions {
  /** Keep a batch point at most this often (the first and last batch of an epoch always). */
  minIntervalMs?: number;
  /** Halve the batch points when they reach this many. */
  maxBatchPoints?: number;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Records a training run as plain data and tells listeners about each new event. No I/O. */
export class DashboardRecorder {
  readonly state: DashboardState = { run: null, batches: [], epochs: [], samples: [], end: null };
  private readonly listeners = new Set<(ev: DashboardEvent) => void>();
  private readonly minIntervalMs: number;
  private readonly maxBatchPoints: number;
  private lastPoint = -Infinity; // performance.now() of the last kept batch point
  private stepsPerEpoch = 0;

  constructor(opts: RecorderOptions = {}) {
    this.minIntervalMs = opts.minIntervalMs ?? 100;
    this.maxBatchPoints = opts.maxBatchPoints ?? 20_000;
  }

  /** Call `fn` with every new event until the returned function is called. */
  subscribe(fn: (ev: DashboardEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(ev: DashboardEvent): void {
    for (const fn of this.listeners) fn(ev);
  }

  /** The TrainCallback that feeds this recorder. */
  callback(): TrainCallback {
    return {
      onTrainBegin: (trainer: Trainer) => {
        this.stepsPerEpoch = Math.ceil(trainer.windows.count / trainer.config.batchSize);
        const run: RunInfo = {
          t: Date.now(),
          epochs: trainer.config.epochs,
          startEpoch: trainer.epoch,
          stepsPerEpoch: this.stepsPerEpoch,
          sequences: trainer.windows.count,
          batchSize: trainer.config.batchSize,
          maxlen: trainer.windows.maxlen,
          vocabSize: trainer.params.shape.vocabSize,
          units: trainer.params.shape.units,
          learningRate: trainer.config.learningRate,
          threads: trainer.config.threads,
        };
        this.state.run = run;
        this.state.end = null;
        this.emit({ type: 'run', data: run });
      },
      onBatchEnd: (ev: BatchEndEvent) => {
        const now = performance.now();
        const edge = ev.step === 1 || ev.step === ev.steps;
        if (!edge && now - this.lastPoint < this.minIntervalMs) return; // the common case: O(1)
        this.lastPoint = now;
        this.recordBatch(ev);
        // Let the event loop answer HTTP requests even when training runs on this thread.
        return yieldToEventLoop();
      },
      onEpochEnd: (ev: EpochEndEvent) => this.recordEpoch(ev),
      onTrainEnd: (history: EpochEndEvent[], trainer: Trainer, stopped?: boolean) => {
        const end: TrainEnd = {
          t: Date.now(),
          stopped: stopped ?? trainer.epoch < trainer.config.epochs,
          epochs: trainer.epoch,
        };
        this.state.end = end;
        this.emit({ type: 'end', data: end });
      },
    };
  }

  private recordBatch(ev: BatchEndEvent): void {
    const steps = ev.steps || this.stepsPerEpoch;
    const rate = ev.seqPerSec > 0 ? ev.seqPerSec : NaN;
    const etaEpoch = (ev.total - ev.seen) / rate;
    const point: BatchPoint = {
      t: Date.now(),
      iteration: (ev.epoch - 1) * steps + ev.step,
      epoch: ev.epoch,
      step: ev.step,
      steps,
      loss: ev.batchLoss,
      epochLoss: ev.epochLoss,
      seqPerSec: ev.seqPerSec,
      etaEpoch: Number.isFinite(etaEpoch) ? etaEpoch : -1,
      eta: Number.isFinite(etaEpoch) ? etaEpoch + ((ev.epochs - ev.epoch) * ev.total) / rate : -1,
    };
    const batches = this.state.batches;
    batches.push(point);
    if (batches.length >= this.maxBatchPoints) {
      // keep every other point (the newest always): the curve keeps its shape at half the size
      let w = 0;
      for (let r = batches.length % 2 === 0 ? 1 : 0; r < batches.length; r += 2)
        batches[w++] = batches[r]!;
      batches.length = w;
    }
    this.emit({ type: 'batch', data: point });
  }

  private recordEpoch(ev: EpochEndEvent): void {
    const point: EpochPoint = {
      t: Date.now(),
      iteration: ev.epoch * (this.stepsPerEpoch || 1),
      epoch: ev.epoch,
      epochs: ev.epochs,
      loss: ev.loss,
      seconds: ev.seconds,
      seqPerSec: ev.seqPerSec,
    };
    // whatever else the event carries (valLoss, valBpc, valPerplexity, learningRate…)
    for (const [k, v] of Object.entries(ev)) {
      if (!(k in point) && typeof v === 'number' && Number.isFinite(v)) point[k] = v;
    }
    this.state.epochs.push(point);
    this.emit({ type: 'epoch', data: point });
  }

  /** The after-epoch samples: the seed text and one generated text per temperature. */
  recordSamples(epoch: number, seed: string, texts: readonly SampleText[]): void {
    const rec: EpochSamples = {
      t: Date.now(),
      epoch,
      seed,
      texts: texts.map((s) => ({ temperature: s.temperature, text: s.text })),
    };
    this.state.samples.push(rec);
    this.emit({ type: 'samples', data: rec });
  }
}

// ---------------------------------------------------------------- HTTP

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** A client that has not read this much of its event stream is dropped (it reconnects). */
const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

const sendError = (res: ServerResponse, status: number, message: string): void =>
  sendJson(res, status, { error: { message } });

const sseFrame = (ev: DashboardEvent): string =>
  `event: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`;

/** A file of the web app, or undefined when `urlPath` names none (never outside `root`). */
async function staticFile(
  root: string,
  urlPath: string,
): Promise<{ file: string; size: number } | undefined> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (rel.includes('\0')) return undefined;
  if (rel === '/' || rel === '') rel = '/index.html';
  const file = path.resolve(root, `.${rel}`);
  if (file !== root && !file.startsWith(root.endsWith(path.sep) ? root : root + path.sep))
    return undefined;
  try {
    const st = await stat(file);
    return st.isFile() ? { file, size: st.size } : undefined;
  } catch {
    return undefined;
  }
}

export interface DashboardOptions extends RecorderOptions {
  port?: number; // 0 (the default): any free port
  host?: string; // default 127.0.0.1
  webDir?: string; // the built web app; default web/dist of this package
}

export interface Dashboard {
  /** The page to open, e.g. http://127.0.0.1:8080/#dashboard */
  url: string;
  port: number;
  /** Give this to the Trainer. */
  callback: TrainCallback;
  recorder: DashboardRecorder;
  /** Record an epoch's samples (see DashboardRecorder.recordSamples). */
  recordSamples(epoch: number, seed: string, texts: readonly SampleText[]): void;
  /** Stop serving: ends the event streams and closes the server. */
  close(): Promise<void>;
}

const active = new Set<Dashboard>();

/**
 * Record an epoch's samples on every running dashboard (none running: nothing happens), for a
 * samples callback that does not hold the Dashboard itself.
 */
export function recordSamples(epoch: number, seed: string, texts: readonly SampleText[]): void {
  for (const d of active) d.recordSamples(epoch, seed, texts);
}

/** Start the dashboard's HTTP server; resolves once it listens. */
export async function startDashboard(opts: DashboardOptions = {}): Promise<Dashboard> {
  const host = opts.host ?? '127.0.0.1';
  const webDir = path.resolve(opts.webDir ?? WEB_DIST);
  const recorder = new DashboardRecorder(opts);
  const streams = new Set<ServerResponse>();

  const onEvent = (ev: DashboardEvent): void => {
    if (streams.size === 0) return;
    const frame = sseFrame(ev);
    for (const res of streams) {
      if (res.writableLength > MAX_BUFFERED_BYTES) res.destroy();
      else res.write(frame);
    }
  };
  const unsubscribe = recorder.subscribe(onEvent);
  const heartbeat = setInterval(() => {
    for (const res of streams) res.write(': keep-alive\n\n');
  }, HEARTBEAT_MS);
  heartbeat.unref();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendError(res, 405, `${req.method} is not allowed here; the dashboard only answers GET`);
      return;
    }
    switch (url.pathname) {
      case '/v1/train/state':
        sendJson(res, 200, recorder.state);
        return;
      case '/v1/train/events': {
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        res.write(`retry: 2000\n\n${sseFrame({ type: 'state', data: recorder.state })}`);
        streams.add(res);
        const drop = (): void => void streams.delete(res);
        req.on('close', drop);
        res.on('error', drop);
        return;
      }
      case '/health':
        sendJson(res, 200, {
          status: 'ok',
          training: recorder.state.run !== null && !recorder.state.end,
        });
        return;
    }
    if (url.pathname.startsWith('/v1/')) {
      sendError(res, 404, `no such endpoint: ${req.method} ${url.pathname}`);
      return;
    }
    const found = await staticFile(webDir, url.pathname);
    if (!found) {
      if (url.pathname === '/' || url.pathname === '/index.html') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(
          `The web app is not built (${webDir} has no index.html): run \`npm run build:web\`.\n` +
            'The training record is at /v1/train/state and /v1/train/events.\n',
        );
        return;
      }
      sendError(res, 404, `not found: ${url.pathname}`);
      return;
    }
    const ext = path.extname(found.file);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[ext] ?? 'application/octet-stream',
      'content-length': found.size,
      // hashed asset names never change; the page itself must be re-read
      'cache-control': url.pathname.startsWith('/assets/')
        ? 'public, max-age=31536000, immutable'
        : 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(found.file)
      .on('error', () => res.destroy())
      .pipe(res);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, `dashboard error: ${(err as Error).message}`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost =
    host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  let closed: Promise<void> | undefined;
  const dashboard: Dashboard = {
    url: `http://${shownHost}:${port}/#dashboard`,
    port,
    callback: recorder.callback(),
    recorder,
    recordSamples: (epoch, seed, texts) => recorder.recordSamples(epoch, seed, texts),
    close() {
      closed ??= (async () => {
        active.delete(dashboard);
        unsubscribe();
        clearInterval(heartbeat);
        for (const res of streams) res.end();
        streams.clear();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closed;
    },
  };
  active.add(dashboard);
  return dashboard;
}
