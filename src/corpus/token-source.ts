import { closeSync, openSync, readSync } from 'node:fs';
import { checkRange, MemoryTokens, type TokenIds, type TokenSource } from '../data/windows.ts';
import { CORPUS } from '../defaults.ts';
import { UserError } from '../errors.ts';
import type { Vocabulary } from '../data/vocabulary.ts';
import { idArray, idMapping, type PreparedCorpus, type TokenFile } from './prepare.ts';

// A run's ids (src/data/windows.ts TokenSource) from a prepared token file: read into memory when
// they are small, else left in the file and read a window at a time with positional reads, which
// the page cache serves; what the process holds is one window's bytes, not the corpus.

/** The open file and one read buffer, shared by a FileTokens and every subarray of it. */
class IdsReader {
  private fd: number | undefined;
  private buf = Buffer.allocUnsafeSlow(4096);

  constructor(readonly file: TokenFile) {}

  /** Ids [start, start + count) of the whole file into `into` from `at`. */
  read(start: number, count: number, into: TokenIds, at: number): void {
    const b = this.file.bytesPerId;
    const bytes = count * b;
    if (this.buf.length < bytes) this.buf = Buffer.allocUnsafeSlow(bytes);
    this.fd ??= openSync(this.file.path, 'r');
    const from = this.file.offset + start * b;
    for (let got = 0; got < bytes;) {
      const r = readSync(this.fd, this.buf, got, bytes - got, from + got);
      if (r === 0) throw new UserError(`${this.file.path} was cut short; delete it and run again`);
      got += r;
    }
    // allocUnsafeSlow's buffers start at offset 0, so the view is aligned for 2- and 4-byte ids
    into.set(idArray(b, count, this.buf.buffer, this.buf.byteOffset), at);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Ids [from, from + length) of a token file, read from it on demand. */
export class FileTokens implements TokenSource {
  private constructor(
    private readonly reader: IdsReader,
    private readonly from: number,
    readonly length: number,
  ) {}

  static open(file: TokenFile): FileTokens {
    return new FileTokens(new IdsReader(file), 0, file.length);
  }

  read(start: number, count: number, into: TokenIds, at = 0): void {
    checkRange(start, count, this.length);
    if (count > 0) this.reader.read(this.from + start, count, into, at);
  }

  subarray(from: number, to = this.length): FileTokens {
    // clamped as a typed array's subarray is
    const a = Math.min(Math.max(from, 0), this.length);
    const z = Math.min(Math.max(to, a), this.length);
    return new FileTokens(this.reader, this.from + a, z - a);
  }

  /** Closes the file (for every subarray too); a later read opens it again. */
  close(): void {
    this.reader.close();
  }
}

/**
 * A prepared corpus's ids as a run reads them: in memory (in the file's width) up to
 * `inMemoryBytes` of them, else from the file. `inMemoryBytes` defaults to
 * CORPUS.idsInMemoryBytes, or for tests the internal environment variable CHARLSTM_IDS_IN_MEMORY
 * (a byte count; 0 always reads from the file).
 */
export function openTokens(
  file: TokenFile,
  inMemoryBytes = idsInMemoryBytes(process.env.CHARLSTM_IDS_IN_MEMORY),
): TokenSource {
  if (file.length * file.bytesPerId <= inMemoryBytes) return new MemoryTokens(file.readCompact());
  return FileTokens.open(file);
}

function idsInMemoryBytes(override: string | undefined): number {
  const n = override === undefined || override === '' ? NaN : Number(override);
  return Number.isInteger(n) && n >= 0 ? n : CORPUS.idsInMemoryBytes;
}

/** A source's ids mapped through `to` as they are read (into Int32Arrays: mapped ids may be wider). */
class MappedTokens implements TokenSource {
  constructor(
    private readonly source: TokenSource,
    private readonly to: Int32Array,
  ) {}

  get length(): number {
    return this.source.length;
  }

  read(start: number, count: number, into: TokenIds, at = 0): void {
    this.source.read(start, count, into, at);
    const { to } = this;
    for (let i = at; i < at + count; i++) into[i] = to[into[i]!]!;
  }

  subarray(from: number, to?: number): MappedTokens {
    return new MappedTokens(this.source.subarray(from, to), this.to);
  }
}

/**
 * The ids of `corpus` in another vocabulary (a model's, for `charlstm eval`), as encodeIn gives
 * them, but read from the token file as openTokens reads it instead of held as an Int32Array.
 */
export function encodedTokens(
  corpus: PreparedCorpus,
  vocab: Vocabulary,
  what: string,
  policy: 'error' | 'map',
): TokenSource {
  return new MappedTokens(openTokens(corpus.tokens), idMapping(corpus, vocab, what, policy));
}
