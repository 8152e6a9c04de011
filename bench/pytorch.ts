// The PyTorch anchor of `npm run bench`: finds a Python with torch, checks that its products run
// on OpenBLAS, runs bench/pytorch-train.py (the reference model on nn.LSTM's CPU path, at several
// thread settings) and returns its figures as render.ts's PytorchAnchor, or why it was skipped.
//
// A skip is an answer, not an error: no Python with torch, a torch on the reference BLAS (about ten
// times slower than OpenBLAS, issue 16: an unfair anchor), a script that failed or printed no
// figures. The README then says why the row is missing.
//
// Python: $CHARLSTM_PYTHON if set, else `python3` on the PATH and then /usr/bin/python3 (Debian's
// python3-torch installs into the system Python, which a pyenv or venv python3 on the PATH hides).
//
// OpenBLAS picks its kernels for the CPU unless OPENBLAS_CORETYPE names others; the development
// machine's environment sets Haswell (AVX2), where OpenBLAS 0.3.21's own choice on this Zen 5 is
// Cooperlake (AVX-512), which trained the reference model faster in alternating runs here. So the
// script runs without OPENBLAS_CORETYPE: the anchor is PyTorch as fast as this CPU lets it be.
//
//   node --import tsx bench/pytorch.ts [--quick]      → prints the PytorchAnchor as JSON

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import type { PytorchAnchor, PytorchSetting } from './render.ts';

export const SCRIPT = fileURLToPath(new URL('./pytorch-train.py', import.meta.url));

export interface PytorchOptions {
  /** shorter windows, as `npm run bench -- --quick` */
  quick?: boolean;
  /** Python executables tried in turn (default: see the header) */
  pythons?: string[];
  /** the whole timed run's limit, ms (default 120 s; a full run takes about 40 s here) */
  timeoutMs?: number;
}

/** The Pythons to try: $CHARLSTM_PYTHON alone when set, else python3 and the system's. */
export function defaultPythons(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.CHARLSTM_PYTHON) return [env.CHARLSTM_PYTHON];
  return ['python3', '/usr/bin/python3'];
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  /** spawn's own failure (ENOENT) or the timeout */
  error?: string;
}

/** The script's environment: ours without OPENBLAS_CORETYPE (see the header). */
export function scriptEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const rest = { ...env };
  delete rest.OPENBLAS_CORETYPE;
  return rest;
}

function runPython(python: string, args: string[], timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'], env: scriptEnv() });
    let stdout = '';
    let stderr = '';
    let error: string | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      error = `timed out after ${Math.round(timeoutMs / 1000)} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      error = err.message;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ...(error !== undefined && { error }) });
    });
  });
}

/** The last non-empty line of a process's stderr: a Python traceback ends with its message. */
const lastLine = (text: string): string =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .at(-1) ?? '';

const why = (r: Ran): string => r.error ?? (lastLine(r.stderr) || `exit code ${String(r.code)}`);

/** What `pytorch-train.py --probe` prints, and the first part of a full run's line. */
export interface PytorchProbe {
  torch: string;
  python: string;
  blas: { openblas: boolean; library: string | null; config?: string; core?: string };
}

/** The script's JSON line (its last line on stdout), checked field by field. */
function jsonLine(stdout: string): Record<string, unknown> {
  const line = lastLine(stdout);
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`bench/pytorch-train.py printed no JSON line: ${JSON.stringify(line)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error(`bench/pytorch-train.py printed ${JSON.stringify(line)}, not an object`);
  return v as Record<string, unknown>;
}

function field<T>(o: Record<string, unknown>, key: string, ok: (v: unknown) => boolean): T {
  if (!ok(o[key]))
    throw new Error(`bench/pytorch-train.py's JSON has no valid ${key}: ${JSON.stringify(o[key])}`);
  return o[key] as T;
}
const isString = (v: unknown): boolean => typeof v === 'string';
const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null;
const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1;
const isRate = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;

export function parseProbe(stdout: string): PytorchProbe {
  const o = jsonLine(stdout);
  const blas = field<Record<string, unknown>>(o, 'blas', isObject);
  return {
    torch: field(o, 'torch', isString),
    python: field(o, 'python', isString),
    blas: {
      openblas: field(blas, 'openblas', (v) => typeof v === 'boolean'),
      library: field(blas, 'library', (v) => v === null || isString(v)),
      ...(blas.openblas === true && {
        config: field<string>(blas, 'config', isString),
        core: field<string>(blas, 'core', isString),
      }),
    },
  };
}

/** Why a probed torch is not a fair anchor, or undefined when it is. */
export function unfairBlas(p: PytorchProbe): string | undefined {
  if (p.blas.openblas) return undefined;
  const lib = p.blas.library ? `the BLAS at ${p.blas.library}` : 'no BLAS library we could find';
  return (
    `PyTorch ${p.torch} runs its products on ${lib}, not OpenBLAS; the reference BLAS is about ` +
    `ten times slower, which would make an unfair anchor (Debian: install libopenblas0-pthread)`
  );
}

/** A full run's JSON line as the README's figures. */
export function parseRun(stdout: string): Exclude<PytorchAnchor, { skipped: string }> {
  const o = jsonLine(stdout);
  const probe = parseProbe(stdout);
  const unfair = unfairBlas(probe);
  if (unfair) throw new Error(unfair);
  const settings = field<Record<string, unknown>[]>(
    o,
    'train',
    (v) => Array.isArray(v) && v.length > 0 && v.every(isObject),
  ).map((s): PytorchSetting => ({
    torchThreads: field(s, 'torchThreads', isCount),
    blasThreads: field(s, 'blasThreads', isCount),
    seqPerSec: field(s, 'seqPerSec', isRate),
    msPerBatch: field(s, 'msPerBatch', (v) => Array.isArray(v) && v.length > 0 && v.every(isRate)),
  }));
  const best = field<number>(
    o,
    'best',
    (v) => Number.isInteger(v) && settings[v as number] !== undefined,
  );
  if (settings.some((s) => s.seqPerSec > settings[best]!.seqPerSec))
    throw new Error(`bench/pytorch-train.py's best setting (${best}) is not its fastest`);
  const ten = o.tenMinuteModel;
  const tenMs =
    ten === null || ten === undefined
      ? undefined
      : field<number>(field(o, 'tenMinuteModel', isObject), 'msPerBatch', isRate);
  return {
    version: probe.torch,
    blas: probe.blas.config!,
    blasCore: probe.blas.core!,
    ompWaitPolicy: field(o, 'ompWaitPolicy', isString),
    settings,
    best,
    ...(tenMs !== undefined && { tenMinuteMsPerBatch: tenMs }),
  };
}

/** The PyTorch anchor's figures, or `{ skipped }` with the reason; never throws. */
export async function benchPytorch(opts: PytorchOptions = {}): Promise<PytorchAnchor> {
  const pythons = opts.pythons ?? defaultPythons();
  const failures: string[] = [];
  for (const python of pythons) {
    // the probe is `python3 -c "import torch"` and the BLAS check in one
    const probeRun = await runPython(python, [SCRIPT, '--probe'], 30_000);
    if (probeRun.code !== 0) {
      failures.push(`${python}: ${why(probeRun)}`);
      continue;
    }
    let probe: PytorchProbe;
    try {
      probe = parseProbe(probeRun.stdout);
    } catch (err) {
      return { skipped: `${python}: ${(err as Error).message}` };
    }
    const unfair = unfairBlas(probe);
    if (unfair) return { skipped: unfair };
    const args = [SCRIPT, ...(opts.quick ? ['--quick'] : [])];
    const run = await runPython(python, args, opts.timeoutMs ?? 120_000);
    if (run.code !== 0)
      return { skipped: `bench/pytorch-train.py failed under ${python}: ${why(run)}` };
    try {
      return parseRun(run.stdout);
    } catch (err) {
      return { skipped: (err as Error).message };
    }
  }
  return { skipped: `no Python with PyTorch (import torch) found: ${failures.join('; ')}` };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const result = await benchPytorch({ quick: values.quick });
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}
