// Running charlstm as a user does, from tests that must pass in a fresh clone: no ../shared
// beside the repository, no network, and nothing written to the user's own cache.
//
// - Every spawned CLI gets this test process's own temporary CHARLSTM_HOME (so a built-in
//   corpus that would be downloaded fails fast instead of reaching the network, and no test ever
//   writes to ~/.cache/charlstm), and CHARLSTM_DATA_DIR only where a test asks for it.
// - The reference corpus (nietzsche.txt, with its exact 600,893 / 57 / 200,278 figures) is used
//   only when $CHARLSTM_DATA_DIR holds it (.ci/run sets it); tests that need it skip otherwise,
//   with REFERENCE_SKIP as their reason.
// - Tests that only need some real English text use the Moby-Dick text of the npm dependency.

import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILTIN_CORPORA } from '../../src/corpus/corpus.ts';
import { ENV_DATA_DIR, ENV_HOME } from '../../src/defaults.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** node arguments that run the CLI from the sources. */
export const CLI = ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')];

let home: string | undefined;
/** This test process's cache folder for spawned CLIs: created once, empty at first. */
export function testHome(): string {
  home ??= mkdtempSync(path.join(os.tmpdir(), 'charlstm-home-'));
  return home;
}

/**
 * The environment for a spawned CLI: the test's own CHARLSTM_HOME, no CHARLSTM_DATA_DIR (pass
 * `dataDir: true` for the reference data folder when there is one), no debug output.
 */
export function cliEnv(
  extra: Record<string, string> = {},
  opts: { dataDir?: boolean } = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CHARLSTM_DEBUG: '', [ENV_HOME]: testHome() };
  delete env[ENV_DATA_DIR];
  const data = referenceDataDir();
  if (opts.dataDir && data) env[ENV_DATA_DIR] = data;
  return { ...env, ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `charlstm ...args` to completion. */
export function charlstm(
  args: string[],
  opts: { env?: Record<string, string>; dataDir?: boolean; timeout?: number; cwd?: string } = {},
): CliResult {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: opts.cwd ?? REPO,
    encoding: 'utf8',
    env: cliEnv(opts.env, opts),
    timeout: opts.timeout ?? 240_000,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Start `charlstm ...args` in the background (same environment rules as charlstm()). */
export function spawnCharlstm(
  args: string[],
  opts: SpawnOptions & { extraEnv?: Record<string, string>; dataDir?: boolean } = {},
): ChildProcess {
  const { extraEnv, dataDir, ...rest } = opts;
  return spawn(process.execPath, [...CLI, ...args], {
    cwd: REPO,
    ...rest,
    env: cliEnv(extraEnv, { dataDir }),
  });
}

/** $CHARLSTM_DATA_DIR when it holds the exact reference nietzsche.txt, else undefined. */
export function referenceDataDir(): string | undefined {
  const dir = process.env[ENV_DATA_DIR];
  if (!dir) return undefined;
  try {
    const ok = statSync(path.join(dir, 'nietzsche.txt')).size === BUILTIN_CORPORA.nietzsche!.size;
    return ok ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Why a test that needs the reference corpus was skipped (false: it runs). */
export const REFERENCE_SKIP: string | false = referenceDataDir()
  ? false
  : `needs the reference corpus: set ${ENV_DATA_DIR} to a folder holding nietzsche.txt (.ci/run uses ../shared/corpora)`;

/** The Moby-Dick text shipped by the npm dependency (1,190,317 characters, mixed case). */
export function mobyDick(): string {
  const npm = BUILTIN_CORPORA['moby-dick']!.npm!;
  const pkg = createRequire(import.meta.url).resolve(`${npm.package}/package.json`);
  return readFileSync(path.join(path.dirname(pkg), npm.file), 'utf8');
}
