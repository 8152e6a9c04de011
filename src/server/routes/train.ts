import type { FastifyPluginAsync } from 'fastify';

import { DASHBOARD } from '../../defaults.ts';
import type { DashboardEvent, DashboardRecorder } from '../dashboard-recorder.ts';
import { ApiError } from '../errors.ts';
import { EventStream, sseFrame } from '../sse.ts';

// The training dashboard's record of a run: GET /v1/train/state (everything so far, as JSON) and
// GET /v1/train/events (the same state first, then every new event as it happens), so a page
// opened or reloaded at any time shows the whole history; and GET /health. Both give a bounded
// snapshot (DASHBOARD: the batch curve thinned, the last epochs' samples), and at most
// `maxClients` event streams are open at once: a page beyond them gets 503 and retries.

/** A client that has not read this much of its event stream is dropped (it reconnects). */
const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000; // a comment line, so that idle proxies keep the stream open
const RETRY_MS = 2000; // how soon a dropped page reconnects

export interface TrainRoutesOptions {
  recorder: DashboardRecorder;
  /** Default DASHBOARD.maxClients. */
  maxClients?: number;
}

export const trainRoutes: FastifyPluginAsync<TrainRoutesOptions> = async (app, opts) => {
  const { recorder } = opts;
  const maxClients = opts.maxClients ?? DASHBOARD.maxClients;
  const streams = new Set<EventStream>();
  const snapshot = () =>
    recorder.snapshot(DASHBOARD.snapshotBatchPoints, DASHBOARD.snapshotSamples);

  // One frame per event, written to every page: a non-blocking socket write each.
  const unsubscribe = recorder.subscribe((ev: DashboardEvent) => {
    if (streams.size === 0) return;
    const frame = sseFrame(ev.data, ev.type);
    for (const s of streams) {
      if (s.buffered > MAX_BUFFERED_BYTES) s.destroy();
      else s.write(frame);
    }
  });
  const heartbeat = setInterval(() => {
    for (const s of streams) s.write(': keep-alive\n\n');
  }, HEARTBEAT_MS);
  heartbeat.unref();

  // The streams end before the server closes: close() would otherwise wait for them.
  app.addHook('preClose', async () => {
    unsubscribe();
    clearInterval(heartbeat);
    const open = [...streams];
    streams.clear();
    await Promise.all(open.map((s) => s.end()));
  });

  app.get('/v1/train/state', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
    return snapshot();
  });

  app.get('/v1/train/events', async (_request, reply) => {
    if (streams.size >= maxClients) {
      throw new ApiError(
        503,
        'too_many_clients',
        `too many dashboard pages open at once (the limit is ${maxClients}); close one, or try again shortly`,
      );
    }
    const stream = new EventStream(reply);
    stream.write(`retry: ${RETRY_MS}\n\n${sseFrame(snapshot(), 'state')}`);
    streams.add(stream);
    stream.onClose(() => void streams.delete(stream));
  });

  app.get('/health', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
    return { status: 'ok', training: recorder.state.run !== null && !recorder.state.end };
  });
};
