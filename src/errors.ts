/**
 * An error caused by the user's input (a bad option, file, model or prompt). The CLI prints its
 * message as one line and exits with `exitCode`; the server answers it with a 4xx. Anything else
 * that escapes is a bug in charlstm.
 */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UserError';
    this.exitCode = exitCode;
  }
}

/** Quote a value for an error message, showing invisible and odd characters plainly. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

/**
 * A failed write of `file` as one user-facing line: a full disk, a quota, permissions or a
 * read-only file system are the user's to fix (exit 2), and the message says what is kept.
 * Anything else is returned as it is (a bug, or a fault we cannot name).
 */
export function writeFailure(err: unknown, file: string, kept: string): unknown {
  const why = diskProblem(err);
  return why === undefined ? err : new UserError(`cannot save ${file}: ${why}; ${kept}`);
}

/** The words for a file-system error the user can fix ("the disk is full (ENOSPC)"), else undefined. */
export function diskProblem(err: unknown): string | undefined {
  const code = (err as { code?: string } | null)?.code;
  const why: Record<string, string> = {
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is exhausted',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'the file system is read-only',
  };
  return code !== undefined && Object.hasOwn(why, code) ? `${why[code]} (${code})` : undefined;
}
