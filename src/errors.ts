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
