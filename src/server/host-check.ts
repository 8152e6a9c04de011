import net from 'node:net';

import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

import { show } from '../errors.ts';
import { ApiError } from './errors.ts';

// DNS rebinding: a web page on evil.example can point that name at 127.0.0.1 and then read a
// server on the user's own machine as if it were same-origin. Its requests carry
// `Host: evil.example:<port>`, so a server listening only on a loopback address answers only
// requests naming a loopback host (localhost, *.localhost, 127.x.y.z, [::1]), any port, plus the
// names it is told to accept (`--allow-host`: a reverse proxy on the same machine that passes its
// own Host on). A server listening on another address is meant to be reached by other names: no
// check there.

/** Whether `address` (as the server listens on it) only accepts connections from this machine. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (a === 'localhost' || a === '::1') return true;
  if (net.isIPv4(a)) return a.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

/** The host name of a Host header, lower case, without its port or IPv6 brackets. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

function isLoopbackName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost') || isLoopbackAddress(name);
}

export interface HostCheckOptions {
  /** Host names accepted besides the loopback ones (without port). */
  allowHosts?: readonly string[];
}

/**
 * Refuses, with 421 in the error envelope, a request whose Host is not a loopback name when the
 * server listens on a loopback address. What the server listens on is read per request from
 * its bound address, so the rule follows `listen()` whatever the caller passed.
 */
export const hostCheck = fp<HostCheckOptions>(
  async (app: FastifyInstance, opts) => {
    const allowed = new Set((opts.allowHosts ?? []).map((h) => hostName(h)));
    app.addHook('onRequest', async (request) => {
      // the address listened on (not the one this connection came in by: a server on 0.0.0.0
      // reached through 127.0.0.1 is meant for other names); not listening (inject): checked
      const bound = app.server.address();
      if (bound !== null && typeof bound === 'object' && !isLoopbackAddress(bound.address)) return;
      const header = request.headers.host;
      const name = header === undefined ? '' : hostName(header);
      if (isLoopbackName(name) || allowed.has(name)) return;
      throw new ApiError(
        421,
        'host_not_allowed',
        header === undefined
          ? 'the request has no Host header; this server, on a loopback address, needs one naming localhost'
          : `host ${show(name)} is not allowed: this server listens on a loopback address and answers only localhost, 127.0.0.1 and [::1] (start it with --allow-host ${name} to accept that name)`,
      );
    });
  },
  { name: 'charlstm-host-check' },
);
