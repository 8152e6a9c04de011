import { Command, InvalidArgumentError } from 'commander';

import { MAX_GENERATE_LENGTH } from '../generate/window.ts';
import { SERVER } from '../defaults.ts';
import { MODEL_FLAGS } from './models-command.ts';
import { integerIn, parsePort, threadsOption } from './options.ts';

interface ServeFlags {
  model?: string[];
  port: number;
  host: string;
  maxLength: number;
  maxStreams: number;
  web?: string;
  log?: boolean;
  logLevel?: string;
  writeStallMs: number;
  timeLimitMs: number;
  shutdownGraceMs: number;
  allowHost?: string[];
  threads?: 1 | 2;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

function logLevel(text: string): string {
  if (!LOG_LEVELS.includes(text))
    throw new InvalidArgumentError(`The log level must be one of ${LOG_LEVELS.join(', ')}.`);
  return text;
}

function hostName(text: string, previous: string[] = []): string[] {
  if (!/^[A-Za-z0-9.-]+$|^\[?[0-9A-Fa-f:.]+\]?$/.test(text))
    throw new InvalidArgumentError(
      'A host name has letters, digits, dots and dashes only (no port).',
    );
  return [...previous, text];
}

export function serveCommand(): Command {
  return new Command('serve')
    .description(
      'serve models over HTTP: POST /v1/generate (whole or streamed), POST /v1/predict, GET /v1/models, GET /health; and the web app at /',
    )
    .option(
      MODEL_FLAGS,
      'a built-in model or a model folder (repeat to serve several; the first is the default; ' +
        'none: the built-in models)',
      collect,
    )
    .option('--port <n>', 'TCP port (0: any free one)', parsePort, SERVER.port)
    .option('--host <address>', 'address to listen on', SERVER.host)
    .option(
      '--max-length <n>',
      'most characters one request may generate',
      integerIn('The max length', 1, MAX_GENERATE_LENGTH),
      SERVER.maxLength,
    )
    .option(
      '--max-streams <n>',
      'most generations running at once, streamed or not (more get 429)',
      integerIn('The max streams', 1, 100_000),
      SERVER.maxStreams,
    )
    .option('--web <dir>', 'static files to serve at / (default: web/dist when it has been built)')
    .option('--log', 'log every request (JSON lines on stdout): --log-level info')
    .option('--log-level <level>', `log at this level (${LOG_LEVELS.join(', ')})`, logLevel)
    .option(
      '--write-stall-ms <n>',
      'cut a stream whose client has taken nothing for this long (its socket full)',
      integerIn('The write stall', 1, 3_600_000),
      SERVER.writeStallMs,
    )
    .option(
      '--time-limit-ms <n>',
      'stop a generation still running after this long',
      integerIn('The time limit', 1, 86_400_000),
      SERVER.timeLimitMs,
    )
    .option(
      '--shutdown-grace-ms <n>',
      'on SIGTERM, let streams in progress finish for this long, then end them',
      integerIn('The shutdown grace', 0, 3_600_000),
      SERVER.shutdownGraceMs,
    )
    .option(
      '--allow-host <name>',
      'on a loopback address, also answer requests whose Host is this name (repeatable)',
      hostName,
    )
    .addOption(threadsOption())
    .action(async (flags: ServeFlags) => {
      const { buildServer } = await import('../server/app.ts');
      const { loadModels } = await import('../server/served-models.ts');
      const { resolveWebDir } = await import('../server/web-app.ts');
      const { BUILTIN_MODELS } = await import('../checkpoint/builtin-models.ts');
      const models = await loadModels(flags.model ?? BUILTIN_MODELS, {
        ...(flags.threads !== undefined && { threads: flags.threads }),
      });
      const webDir = resolveWebDir(flags.web);
      const app = buildServer({
        models,
        maxLength: flags.maxLength,
        maxStreams: flags.maxStreams,
        ...(webDir !== undefined && { webDir }),
        logger: flags.log === true,
        ...(flags.logLevel !== undefined && { logLevel: flags.logLevel }),
        writeStallMs: flags.writeStallMs,
        timeLimitMs: flags.timeLimitMs,
        shutdownGraceMs: flags.shutdownGraceMs,
        allowHosts: flags.allowHost ?? [],
      });
      let address: string;
      try {
        address = await app.listen({ port: flags.port, host: flags.host });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const { UserError } = await import('../errors.ts');
        if (e.code === 'EADDRINUSE')
          throw new UserError(`port ${flags.port} on ${flags.host} is already in use`);
        if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
          throw new UserError(`cannot listen on ${flags.host}: no such local address`);
        if (e.code === 'EACCES') throw new UserError(`not allowed to listen on port ${flags.port}`);
        throw err;
      }
      const names = models.map((m) => m.name).join(', ');
      const which = flags.model ? 'models' : 'the built-in models, as no --model was given';
      const web = webDir ? `; web app at ${address}/` : '';
      process.stdout.write(`charlstm: serving ${address} (${which}: ${names})${web}\n`);
      // Stop cleanly on Ctrl-C / SIGTERM: the server stops listening and refuses new requests,
      // streams in progress may finish for --shutdown-grace-ms, then the rest end with a
      // `shutting_down` event, and the process exits 0; a second signal exits at once (130).
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.once(signal, () => process.exit(130));
          const grace = flags.shutdownGraceMs / 1000;
          process.stderr.write(
            `charlstm: ${signal}: stopping (streams in progress may finish for ${grace} s)\n`,
          );
          void app.close().then(resolve, resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
