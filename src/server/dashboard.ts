import path from 'node:path';

import { DASHBOARD } from '../defaults.ts';
import type { TrainCallback } from '../train/trainer.ts';
import { buildDashboardServer } from './app.ts';
import { DashboardRecorder, type RecorderOptions, type SampleText } from './dashboard-recorder.ts';
import { WEB_DIST } from './web-app.ts';

// The live training dashboard behind `charlstm train --dashboard`: a DashboardRecorder fed by the
// trainer, served with the web app by a Fastify instance (app.ts: routes/train.ts and the same
// static files, event-stream writer and error envelope as `charlstm serve`).

export type {
  BatchPoint,
  DashboardEvent,
  DashboardState,
  EpochPoint,
  EpochSamples,
  RecorderOptions,
  RunInfo,
  SampleText,
  TrainEnd,
} from './dashboard-recorder.ts';
export { DashboardRecorder } from './dashboard-recorder.ts';

export interface DashboardOptions extends RecorderOptions {
  port?: number; // default DASHBOARD.port; 0: any free port
  host?: string; // default DASHBOARD.host
  webDir?: string; // the built web app; default web/dist of this package
}

export interface Dashboard {
  /** The page to open, e.g. http://127.0.0.1:8081/#dashboard */
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

/** Start the dashboard's HTTP server; resolves once it listens. */
export async function startDashboard(opts: DashboardOptions = {}): Promise<Dashboard> {
  const host = opts.host ?? DASHBOARD.host;
  const recorder = new DashboardRecorder(opts);
  const app = buildDashboardServer({ recorder, webDir: path.resolve(opts.webDir ?? WEB_DIST) });
  await app.listen({ port: opts.port ?? DASHBOARD.port, host });
  const { port } = app.server.address() as { port: number };
  const shownHost =
    host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  let closed: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${port}/#dashboard`,
    port,
    callback: recorder.callback(),
    recorder,
    recordSamples: (epoch, seed, texts) => recorder.recordSamples(epoch, seed, texts),
    close: () => (closed ??= app.close()),
  };
}
