import { isUtf8 } from 'node:buffer';
import { UserError } from '../errors.ts';

// Turning a corpus file's bytes into text. The text is never altered here apart from dropping a
// leading byte-order mark: CRLF line ends, odd whitespace and the like are characters the model
// should learn like any other.

/**
 * Decode `bytes` (read from `where`, a path or URL used in messages) as UTF-8.
 * Throws a UserError for UTF-16 or UTF-32 text (saying so and how to convert it), for a binary
 * file (any other NUL byte) or for bytes that are not valid UTF-8, giving the offset of the
 * first bad byte so the user can find it (e.g. with `xxd -s N`).
 */
export function decodeText(bytes: Uint8Array, where: string): string {
  // Text in another Unicode encoding is text all the same: say which, and how to convert it.
  const wide = wideEncoding(bytes);
  if (wide !== undefined) throw wideError(where, wide);
  // NUL never appears in UTF-8 text but is common in binary formats, and is itself valid UTF-8,
  // so it has to be looked for separately. Checked first because for a binary file "not UTF-8
  // at offset 11" is less helpful than "this is not a text file".
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw binaryError(where, nul);
  let text: string;
  try {
    // ignoreBOM: false (the default) is what strips a leading BOM.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (err) {
    if (err instanceof TypeError) {
      // The decoder says only that the input is bad, not where; find the place ourselves.
      throw notUtf8Error(where, firstInvalidUtf8(bytes));
    }
    if (err instanceof RangeError) {
      // V8 strings are limited to about 2^29 UTF-16 units (~512 MiB of ASCII).
      throw new UserError(`${where} is too large to load as text (${bytes.length} bytes)`);
    }
    throw err;
  }
  return text;
}

const wideError = (where: string, wide: { name: string; iconv: string }): UserError =>
  new UserError(
    `${where} is ${wide.name} text, not UTF-8; convert it to UTF-8 (e.g. iconv -f ${wide.iconv} -t UTF-8 old.txt > new.txt)`,
  );
const binaryError = (where: string, nul: number): UserError =>
  new UserError(`${where} looks like a binary file, not text (NUL byte at offset ${nul})`);
const notUtf8Error = (where: string, offset: number | undefined): UserError =>
  new UserError(`${where} is not UTF-8 text (invalid byte at offset ${offset ?? '?'})`);

/**
 * decodeText's checks on bytes that come in chunks, without the text: `push` each chunk in order,
 * then `problem(where)` is the error decodeText would throw for the whole of them (the same
 * message, the same offset), or undefined when they decode. Memory: 4 KiB and a few bytes.
 */
export class TextCheck {
  private readonly head = new Uint8Array(4096); // wideEncoding looks at the first 4096 bytes
  private headLength = 0;
  private carry = new Uint8Array(0); // a sequence cut by the end of the last chunk
  private offset = 0; // bytes pushed before the current chunk
  private nul = -1;
  private invalid: number | undefined;

  push(chunk: Uint8Array): void {
    if (this.headLength < this.head.length) {
      const take = chunk.subarray(0, this.head.length - this.headLength);
      this.head.set(take, this.headLength);
      this.headLength += take.length;
    }
    if (this.nul < 0) {
      const at = chunk.indexOf(0);
      if (at >= 0) this.nul = this.offset + at;
    }
    if (this.invalid === undefined) {
      const start = this.offset - this.carry.length; // where `bytes` begins in the input
      const bytes = this.carry.length > 0 ? concat(this.carry, chunk) : chunk;
      const cut = bytes.length - incompleteTail(bytes);
      const whole = bytes.subarray(0, cut);
      if (!isUtf8(whole)) this.invalid = start + firstInvalidUtf8(whole)!;
      // a copy: `chunk` may be a Buffer its reader fills again (Buffer's slice() is a view)
      this.carry = Uint8Array.from(bytes.subarray(cut));
    }
    this.offset += chunk.length;
  }

  /** The error for the bytes pushed, as decodeText gives it, or undefined: they are UTF-8 text. */
  problem(where: string): UserError | undefined {
    const wide = wideEncoding(this.head.subarray(0, this.headLength));
    if (wide !== undefined) return wideError(where, wide);
    if (this.nul >= 0) return binaryError(where, this.nul);
    if (this.invalid === undefined && this.carry.length > 0) {
      this.invalid = this.offset - this.carry.length; // cut off by the end of the data
    }
    return this.invalid === undefined ? undefined : notUtf8Error(where, this.invalid);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Bytes at the end of `bytes` that begin a multi-byte sequence the next chunk may complete. */
function incompleteTail(bytes: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const b = bytes[bytes.length - back]!;
    if (b < 0x80) return 0;
    if (b < 0xc0) continue; // a continuation byte: its lead is further back
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
    return len > back ? back : 0;
  }
  return 0;
}

/**
 * UTF-16 or UTF-32, when a byte-order mark says so, or (UTF-16 without one) when the NUL bytes
 * fall on every other byte: the high halves of ASCII characters. Undefined for anything else.
 */
export function wideEncoding(bytes: Uint8Array): { name: string; iconv: string } | undefined {
  const [b0, b1, b2, b3] = bytes;
  if (b0 === 0xff && b1 === 0xfe && b2 === 0 && b3 === 0)
    return { name: 'UTF-32 (little-endian)', iconv: 'UTF-32LE' };
  if (b0 === 0 && b1 === 0 && b2 === 0xfe && b3 === 0xff)
    return { name: 'UTF-32 (big-endian)', iconv: 'UTF-32BE' };
  if (b0 === 0xff && b1 === 0xfe) return { name: 'UTF-16 (little-endian)', iconv: 'UTF-16LE' };
  if (b0 === 0xfe && b1 === 0xff) return { name: 'UTF-16 (big-endian)', iconv: 'UTF-16BE' };
  // No mark: look at the first few thousand bytes, and only when there are enough to tell.
  const n = Math.min(bytes.length, 4096) & ~1;
  if (n < 16) return undefined;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < n; i += 2) {
    if (bytes[i] === 0) even++;
    if (bytes[i + 1] === 0) odd++;
  }
  const units = n / 2;
  if (odd >= units / 2 && even <= units / 20)
    return { name: 'UTF-16 (little-endian)', iconv: 'UTF-16LE' };
  if (even >= units / 2 && odd <= units / 20)
    return { name: 'UTF-16 (big-endian)', iconv: 'UTF-16BE' };
  return undefined;
}

/**
 * The offset of the first byte that starts an ill-formed UTF-8 sequence, or undefined if the
 * whole buffer is well formed. For a multi-byte sequence that breaks off, the offset is that of
 * its lead byte (as Python's UnicodeDecodeError reports it). The rules are those of the
 * Unicode standard's table 3-7 (no overlong forms, no surrogates, nothing above U+10FFFF),
 * which is exactly what a fatal TextDecoder rejects.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number | undefined {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let len: number;
    // Allowed range of the second byte; later continuation bytes are always 80..BF.
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0; // below is an overlong encoding
      if (b === 0xed) hi = 0x9f; // above are UTF-16 surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90; // below is an overlong encoding
      if (b === 0xf4) hi = 0x8f; // above is past U+10FFFF
    } else {
      return i; // a stray continuation byte, an overlong lead (C0, C1) or F5..FF
    }
    if (i + len > n) return i; // cut off by the end of the data
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k < len; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += len;
  }
  return undefined;
}
