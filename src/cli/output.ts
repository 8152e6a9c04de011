import { once } from 'node:events';

// Writing to stdout when the reader may go away (`charlstm generate ... | head`). Node ignores
// SIGPIPE, so a write to a closed reader fails with EPIPE. For a pipe that shows at once (the
// stream is destroyed during the write); for a socket (a parent process's 'pipe' stdio) it comes
// later as an 'error' event, which a loop that never yields would not see until it ended. So
// writeAll yields to the event loop now and then and waits for 'drain' when the stream asks,
// which also keeps memory bounded when the reader is slow; the 'error' handler then exits.

export class OutputClosed extends Error {
  constructor() {
    super('stdout was closed');
    this.name = 'OutputClosed';
  }
}

/** Characters written between two turns of the event loop (each costs a model prediction). */
const YIELD_EVERY = 32;

export function writeOut(text: string): void {
  process.stdout.write(text);
  if (process.stdout.destroyed) throw new OutputClosed();
}

/** Write each piece as soon as it is produced; stops with OutputClosed if stdout closes. */
export async function writeAll(pieces: Iterable<string>): Promise<void> {
  let since = 0;
  for (const piece of pieces) {
    const ok = process.stdout.write(piece);
    if (process.stdout.destroyed) throw new OutputClosed();
    if (!ok) {
      await once(process.stdout, 'drain');
    } else if (++since === YIELD_EVERY) {
      since = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}

/** Exit quietly when stdout's reader has gone; any other stdout error is still an error. */
export function exitQuietlyOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}
