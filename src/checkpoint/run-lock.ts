// One run per output folder. A training run holds `<dir>/.charlstm.lock` (its pid, host and start
// time as JSON) from before its first batch until it exits, so that two runs with the same --out
// (or a --resume beside a run still going) cannot replace each other's models and checkpoints.
// The file is created with O_EXCL, so exactly one of two racing runs gets it. A lock left by a
// process that died (SIGKILL, power cut) on this host is detected, reported and taken over.
// Taking the lock is also where the folder is checked: creatable, a folder, writable.

import {
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
  closeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { UserError, diskProblem } from '../errors.ts';

export const LOCK_NAME = '.charlstm.lock';

interface LockOwner {
  pid: number;
  host: string;
  started: string;
}

export interface RunLock {
  readonly file: string;
  /** Give the folder back (idempotent; also done when the process exits). */
  release(): void;
  /** Said when a stale lock was taken over, for the run's log. */
  readonly tookOver?: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, someone else's
  }
}

function why(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return diskProblem(err) ?? e.code ?? e.message;
}

/** Check that `dir` is (or can be made) a writable folder, and take its lock. */
export function acquireRunLock(dir: string): RunLock {
  try {
    if (!statSync(dir).isDirectory()) {
      throw new UserError(`--out ${dir} is a file, not a folder; choose another --out`);
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') {
      throw new UserError(`--out ${dir} lies under a file, not a folder; choose another --out`);
    }
    if (code !== 'ENOENT') throw new UserError(`cannot use --out ${dir}: ${why(err)}`);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      const c = (e as NodeJS.ErrnoException).code;
      const what = c === 'ENOTDIR' || c === 'EEXIST' ? 'a part of its path is a file' : why(e);
      throw new UserError(`cannot create the output folder ${dir}: ${what}`);
    }
  }
  const file = path.join(dir, LOCK_NAME);
  const me: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    started: new Date().toISOString(),
  };
  let tookOver: string | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      try {
        writeSync(fd, JSON.stringify(me) + '\n');
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new UserError(`cannot write in the output folder ${dir}: ${why(err)}`);
      }
      let owner: LockOwner | undefined;
      try {
        owner = JSON.parse(readFileSync(file, 'utf8')) as LockOwner;
      } catch {
        owner = undefined; // being written by its owner this instant, or garbage
      }
      const stale =
        owner !== undefined && owner.host === me.host && owner.pid !== me.pid && !alive(owner.pid);
      if (stale && attempt < 3) {
        tookOver = `took over the lock of a run that is gone (pid ${owner!.pid}, since ${owner!.started})`;
        rmSync(file, { force: true });
        continue;
      }
      const holder = owner
        ? `pid ${owner.pid} on ${owner.host}, since ${owner.started}`
        : `see ${file}`;
      throw new UserError(
        `${dir} is in use by another charlstm run (${holder}); wait for it to end or choose another --out` +
          (owner && owner.host !== me.host ? ` (remove ${file} if that run is gone)` : ''),
      );
    }
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      unlinkSync(file);
    } catch {
      // already gone: nothing to give back
    }
  };
  process.on('exit', release);
  return { file, release, ...(tookOver && { tookOver }) };
}
