import { MAX_GENERATE_LENGTH } from './generate/window.ts';
import { MAX_SEED } from './sampling/rng.ts';

// Parsers for setting values given as text: the command line (src/cli/options.ts wraps each one
// for commander) and the web app's forms (web/src/worker.ts). Each one reads the text strictly (no
// silent truncation of "2.5" to 2, no empty string read as 0, no hex) and throws a ValueError
// saying what the value must be; the caller adds which option and which value.

/** A value that is not what its setting takes; the message says what it must be. */
export class ValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValueError';
  }
}

function toNumber(text: string): number {
  const t = text.trim();
  // Number('') and Number(' ') are 0, and Number('0x10') is 16: accept plain decimal notation only.
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return NaN;
  return Number(t);
}

function integer(text: string, what: string, min: number, max: number): number {
  const n = toNumber(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ValueError(`${what} must be an integer ${range}.`);
  }
  return n === 0 ? 0 : n; // not -0
}

/**
 * The parser for a whole-number value from `min` to `max`: every count, size, port and length
 * goes through it, so none takes hex ("0x10"), an empty value or a fraction.
 */
export function integerIn(what: string, min: number, max: number): (text: string) => number {
  return (text) => integer(text, what, min, max);
}

/** A positive finite number in decimal notation (learning rate, clip norm, seconds). */
export function parsePositive(text: string): number {
  const n = toNumber(text);
  if (!(Number.isFinite(n) && n > 0)) throw new ValueError('It must be a positive number.');
  return n;
}

/** A fraction from 0 up to, not including, 1 (validation split, dropout). */
export function parseFraction(text: string): number {
  const n = toNumber(text);
  if (!(Number.isFinite(n) && n >= 0 && n < 1)) {
    throw new ValueError('It must be a fraction from 0 (none) up to, not including, 1.');
  }
  return n === 0 ? 0 : n;
}

/** A TCP port; 0 asks for any free one. */
export const parsePort = integerIn('The port', 0, 65535);

export function parseTemperature(text: string): number {
  const t = toNumber(text);
  if (!(Number.isFinite(t) && t > 0)) {
    throw new ValueError('The temperature must be a positive finite number.');
  }
  return t;
}

export const parseLength = integerIn('The length', 0, MAX_GENERATE_LENGTH);

export const parseTopK = integerIn('top-k', 1, Number.MAX_SAFE_INTEGER);

export function parseTopP(text: string): number {
  const p = toNumber(text);
  if (!(p > 0 && p <= 1)) throw new ValueError('top-p must be a number in (0, 1].');
  return p;
}

/** A seed: 0 to 2^32 − 1, the range in which distinct seeds give distinct runs (src/sampling/rng.ts). */
export const parseSeed = integerIn('The seed', 0, MAX_SEED);

export const parseCount = integerIn('The count', 1, Number.MAX_SAFE_INTEGER);
