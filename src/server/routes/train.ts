import type { FastifyPluginAsync } from 'fastify';

import type { DashboardEvent, DashboardRecorder } from '../dashboard-recorder.ts';
import { EventStream, sseFrame } from '../sse.ts';

// The training dashboard's record of a run: GET /v1/train/state (everything so far, as JSON) and
// GET /v1/train/events (the same state first, then every new event as it happens), so a page
// opened or reloaded at any time shows the whole history; and GET /health.

/** A client that has not read this much of its event stream is dropped (it reconnects). */
const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000; // a comment line, so that idle proxies keep the stream open
const RETRY_MS = 2000; // how soon a dropped page reconnects

export interface TrainRoutesOptions {
  recorder: DashboardRecorder;
}

export const trainRoutes: FastifyPluginAsync<TrainRoutesOptions> = async (app, { recorder }) => {
  const streams = new Set<EventStream>();

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
    return recorder.state;
  });

  app.get('/v1/train/events', async (_request, reply) => {
    const stream = new EventStream(reply);
    stream.write(`retry: ${RETRY_MS}\n\n${sseFrame(recorder.state, 'state')}`);
    streams.add(stream);
    stream.onClose(() => void streams.delete(stream));
  });

  app.get('/health', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
    return { status: 'ok', training: recorder.state.run !== null && !recorder.state.end };
  });
};
