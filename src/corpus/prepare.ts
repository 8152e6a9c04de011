import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CharCounts, Vocabulary } from '../data/vocabulary.ts';
import type { TokenIds } from '../data/windows.ts';
import { REFERENCE } from '../defaults.ts';
import { UserError } from '../errors.ts';
import {
  DOCUMENT_SEPARATOR,
  cacheHome,
  corpusName,
  emptyCorpus,
  readInputs,
  type CorpusInput,
  type LoadCorpusOptions,
} from './corpus.ts';
import { reason, tooLarge } from './download.ts';
import { TextCheck } from './text.ts';

// A corpus read once as a stream of bytes and kept as a file of character ids, never as one
// string (V8 caps a string at 2^29 - 24 UTF-16 units; a corpus may be larger than the memory):
//   pass 0  each input's bytes: their sha256 (the cache key) and decodeText's checks (TextCheck)
//   pass 1  decoded in chunks, lowercased, joined: the text's sha256, the counts, and provisional
//           ids (the order each character first appears) in a scratch file, 1 byte each while
//           there are at most 256 distinct characters (else pass 1 starts again with 4 bytes)
//   pass 2  the vocabulary from the counts, then the scratch ids mapped to its ids, 1, 2 or 4
//           bytes each by its size, into <cache>/tokens/<key>.ids (temp file + rename)
// A second run whose inputs have the same bytes, with the same settings, finds that file, checks
// it and skips passes 1 and 2. The ids are exactly Vocabulary.encode(text) of loadCorpus's text.

/** The token file's layout; another number is another key, so an old file is never misread. */
export const TOKEN_FORMAT = 1;
const MAGIC = Buffer.from('CLSTMIDS'); // then u32 LE header length, the header's JSON, zero
// padding to a multiple of 4, the ids (little-endian), and the sha256 of the ids (32 bytes)
const CHUNK = 1 << 20; // bytes read, and ids written, at a time

export interface PrepareOptions extends LoadCorpusOptions {
  /** Vocabulary limits (--max-vocab, --min-count): rarer characters become the unknown symbol. */
  maxVocab?: number;
  minCount?: number;
  /** Told when a prepared file is reused or rebuilt (run.ts: stderr). */
  log?: (line: string) => void;
}

/** A corpus as a training run needs it: what loadCorpus gives, less the text, plus its ids. */
export interface PreparedCorpus {
  name: string;
  source: string;
  inputs: CorpusInput[];
  /** The text's vocabulary (limited as asked), and how often each character occurs in the text. */
  vocab: Vocabulary;
  counts: CharCounts;
  /** sha256 of the text's UTF-8, as createHash('sha256').update(loadCorpus(...).text) gives it. */
  textSha256: string;
  /** The distinct characters in the order they first appear in the text. */
  firstSeen: string[];
  /** The text's ids in `vocab`. */
  tokens: TokenFile;
  /** Whether the ids came from an earlier run's file. */
  reused: boolean;
}

/** What the header of a token file holds (JSON). */
interface Header {
  format: number;
  key: string;
  length: number;
  bytesPerId: 1 | 2 | 4;
  textSha256: string;
  chars: string[];
  unknown: string | null;
  /** [code point, count] in the order of first appearance. */
  counts: [number, number][];
  /** Characters of each input's text. */
  characters: number[];
}

/** A prepared corpus's ids on disk: read them all, or `count` of them from `start`. */
export class TokenFile {
  constructor(
    readonly path: string,
    /** Ids in the file (characters of the text). */
    readonly length: number,
    readonly bytesPerId: 1 | 2 | 4,
    /** Where the ids begin in the file. */
    readonly offset: number,
  ) {}

  /** Ids start .. start + count into `into` (from its index 0); synchronous, positional. */
  read(start: number, count: number, into: TokenIds): void {
    if (!(start >= 0 && count >= 0 && start + count <= this.length && count <= into.length))
      throw new RangeError(`ids ${start} + ${count} are outside 0..${this.length}`);
    const fd = openSync(this.path, 'r');
    try {
      this.readFd(fd, start, count, into);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Every id, in the file's own width (Uint8Array, Uint16Array or Int32Array): what training
   * holds, a quarter of readAll()'s memory for a vocabulary of up to 256 characters.
   */
  readCompact(): TokenIds {
    const out = idArray(this.bytesPerId, this.length);
    this.read(0, this.length, out);
    return out;
  }

  /** Every id, as the Int32Array Vocabulary.encode gives. */
  readAll(): Int32Array {
    const out = new Int32Array(this.length);
    this.read(0, this.length, out);
    return out;
  }

  private readFd(fd: number, start: number, count: number, into: TokenIds): void {
    const b = this.bytesPerId;
    const step = Math.floor((16 * CHUNK) / b); // ids per read
    const buf = Buffer.allocUnsafeSlow(Math.min(count, step) * b);
    for (let done = 0; done < count;) {
      const n = Math.min(step, count - done);
      let got = 0;
      while (got < n * b) {
        const r = readSync(fd, buf, got, n * b - got, this.offset + (start + done) * b + got);
        if (r === 0) throw new UserError(`${this.path} was cut short; delete it and run again`);
        got += r;
      }
      const ids = idArray(b, n, buf.buffer, buf.byteOffset);
      into.set(ids, done);
      done += n;
    }
  }
}

/** `length` ids of `bytesPerId` bytes each: a new array, or a view of `buffer` from `byteOffset`. */
export function idArray(
  bytesPerId: 1 | 2 | 4,
  length: number,
  buffer?: ArrayBuffer,
  byteOffset = 0,
): TokenIds {
  const Type = bytesPerId === 1 ? Uint8Array : bytesPerId === 2 ? Uint16Array : Int32Array;
  return buffer ? new Type(buffer, byteOffset, length) : new Type(length);
}

/** One input after pass 0. */
interface Scan {
  file: string; // what pass 1 reads: the input, or its spooled copy (a pipe, a device)
  bytes: number;
  sha256: string;
  check: TextCheck;
}

/**
 * Prepare the corpus `spec` names (see loadCorpus for what it may be and for the options):
 * its vocabulary, counts and ids, from the cache when an earlier run prepared the same bytes
 * with the same settings. The errors are loadCorpus's, word for word, in the same order.
 */
export async function prepareCorpus(
  spec: string | readonly string[],
  opts: PrepareOptions = {},
): Promise<PreparedCorpus> {
  const lowercase = opts.lowercase ?? REFERENCE.lowercase;
  const dir = path.join(cacheHome(opts), 'tokens');
  const spools: string[] = [];
  try {
    const { groups, loaded } = await readInputs(spec, opts, {
      read: (file, limits) => scanFile(file, limits, dir, spools),
      size: (scan) => scan.bytes,
      sha256: (scan) => scan.sha256,
      finish: (scan, where) => {
        const problem = scan.check.problem(where);
        if (problem) throw problem;
        return { ...scan, where };
      },
    });
    const all = loaded.flat();
    const { name, source, joined } = corpusName(groups, loaded);
    const limits = {
      ...(opts.maxVocab !== undefined && { maxVocab: opts.maxVocab }),
      ...(opts.minCount !== undefined && { minCount: opts.minCount }),
    };
    const key = createHash('sha256')
      .update(
        JSON.stringify({
          format: TOKEN_FORMAT,
          lowercase,
          maxVocab: opts.maxVocab ?? null,
          minCount: opts.minCount ?? null,
          inputs: all.map((one) => one.read.sha256),
        }),
      )
      .digest('hex');
    const file = path.join(dir, `${key}.ids`);

    const found = await readHeader(file, key);
    if (found) opts.log?.(`corpus: reusing the prepared ids in ${file}\n`);
    const { header, offset } =
      found ?? (await build(all, { lowercase, limits, key, file, dir, joined, name }));
    const counts = CharCounts.fromEntries(header.counts);
    return {
      name,
      source,
      inputs: all.map((one, i) => ({
        source: one.source,
        bytes: one.bytes,
        characters: header.characters[i]!,
      })),
      vocab: new Vocabulary(header.chars, header.unknown ?? undefined),
      counts,
      textSha256: header.textSha256,
      firstSeen: header.counts.map(([cp]) => String.fromCodePoint(cp)),
      tokens: new TokenFile(file, header.length, header.bytesPerId, offset),
      reused: found !== undefined,
    };
  } finally {
    for (const spool of spools) await unlink(spool).catch(() => {});
  }
}

/**
 * The ids of `corpus` in another vocabulary (a model's, for `charlstm eval`), as
 * `vocab.encode(text, what, policy)` gives them: characters it lacks named in its error, in the
 * order they appear, unless `policy` is 'map' and it has an unknown symbol.
 */
export function encodeIn(
  corpus: PreparedCorpus,
  vocab: Vocabulary,
  what: string,
  policy: 'error' | 'map',
): Int32Array {
  const to = idMapping(corpus, vocab, what, policy);
  const ids = corpus.tokens.readAll();
  for (let i = 0; i < ids.length; i++) ids[i] = to[ids[i]!]!;
  return ids;
}

/**
 * The corpus's ids → `vocab`'s (what encodeIn applies), after the check that `vocab` has every
 * character of the corpus (or maps it: see encodeIn).
 */
export function idMapping(
  corpus: PreparedCorpus,
  vocab: Vocabulary,
  what: string,
  policy: 'error' | 'map',
): Int32Array {
  const missing = corpus.firstSeen.filter((ch) => !vocab.has(ch));
  if (missing.length > 0) vocab.encode(missing.join(''), what, policy); // throws as encode would
  return Int32Array.from(corpus.vocab.chars, (ch) => vocab.tokenOf(ch) ?? -1);
}

// ---- pass 0 ----------------------------------------------------------------------------------

/**
 * Pass 0 over `file` (loadCorpus's readBytes, read as a stream): its size and sha256, and the
 * text checks; the same errors and limits as readBytes. A pipe or a device, which cannot be read
 * twice, is copied to a spool file beside the token files (removed when preparation ends).
 */
async function scanFile(
  file: string,
  { maxBytes: limit, before }: { maxBytes: number; before: number },
  dir: string,
  spools: string[],
): Promise<Scan> {
  const maxBytes = limit - before;
  const over = (): UserError =>
    before === 0
      ? tooLarge(`corpus ${file}`, limit)
      : tooLarge(`the corpus up to ${file} (${before} bytes before it)`, limit);
  let fh: FileHandle | undefined;
  let spool: FileHandle | undefined;
  try {
    fh = await open(file, 'r');
    const info = await fh.stat();
    if (info.isDirectory()) throw new UserError(`cannot read corpus ${file}: it is a folder`);
    if (info.isFile() && info.size > maxBytes) throw over();
    let readFrom = file;
    if (!info.isFile()) {
      readFrom = await scratchFile(dir, 'spool');
      spools.push(readFrom);
      spool = await open(readFrom, 'wx');
    }
    const hash = createHash('sha256');
    const check = new TextCheck();
    let total = 0;
    // never more than a byte past the limit
    for await (const bytes of readAhead(fh, maxBytes + 1)) {
      total += bytes.length;
      if (total > maxBytes) throw over();
      hash.update(bytes);
      check.push(bytes);
      if (spool) await spool.write(bytes);
    }
    return { file: readFrom, bytes: total, sha256: hash.digest('hex'), check };
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`corpus file not found: ${file}`);
    if (code === 'EISDIR') throw new UserError(`cannot read corpus ${file}: it is a folder`);
    throw new UserError(`cannot read corpus ${file}: ${reason(err)}`);
  } finally {
    await fh?.close().catch(() => {});
    await spool?.close().catch(() => {});
  }
}

// ---- passes 1 and 2 --------------------------------------------------------------------------

/**
 * A cut before a character that is neither cased nor case-ignorable (whitespace, digits, most
 * punctuation, CJK) leaves lowercasing unchanged on both sides: the one context-dependent rule of
 * toLowerCase, Greek final sigma, looks past case-ignorable characters to the nearest cased one,
 * and stops at such a character.
 */
const CUT_BEFORE = /[^\p{Cased}\p{Case_Ignorable}]/u;
const ASCII_CUT = Uint8Array.from({ length: 128 }, (_, c) =>
  CUT_BEFORE.test(String.fromCharCode(c)) ? 1 : 0,
);

/** The last index >= from that `text` may be cut before, else -1. */
function lastCut(text: string, from: number): number {
  for (let i = text.length - 1; i >= from; i--) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (ASCII_CUT[c] === 1) return i;
    } else if ((c < 0xd800 || c > 0xdfff) && CUT_BEFORE.test(text[i]!)) return i;
  }
  return -1;
}

interface BuildSettings {
  lowercase: boolean;
  limits: { maxVocab?: number; minCount?: number };
  key: string;
  file: string;
  dir: string;
  joined: boolean;
  name: string;
}

/** Passes 1 and 2: the token file for `inputs`, and its header. */
async function build(
  inputs: readonly { read: Scan & { where: string } }[],
  s: BuildSettings,
): Promise<{ header: Header; offset: number }> {
  await mkdir(s.dir, { recursive: true }).catch((err: unknown) => {
    throw new UserError(`cannot create cache folder ${s.dir}: ${reason(err)}`);
  });
  const scratch = await scratchFile(s.dir, 'ids');
  try {
    // most texts have at most 256 distinct characters: 1 byte a provisional id; more (CJK, Korean)
    // are found early, and pass 1 starts again with 4
    const text = await passOne(inputs, s.lowercase, scratch, 1).catch((err: unknown) => {
      if (err instanceof TooManyCharacters) return passOne(inputs, s.lowercase, scratch, 4);
      throw err;
    });
    if (text.length === 0) throw emptyCorpus(s.name, s.joined);
    const entries = text.seen.map((cp, id): [number, number] => [cp, text.count[id]!]);
    const counts = CharCounts.fromEntries(entries);
    const vocab = Vocabulary.fromCounts(counts, s.limits); // no limits: sorted(set(text))
    const header: Header = {
      format: TOKEN_FORMAT,
      key: s.key,
      length: text.length,
      bytesPerId: vocab.size <= 0x100 ? 1 : vocab.size <= 0x10000 ? 2 : 4,
      textSha256: text.sha256,
      chars: [...vocab.chars],
      unknown: vocab.unknownSymbol ?? null,
      counts: entries,
      characters: text.characters,
    };
    const to = Int32Array.from(text.seen, (cp) => vocab.tokenOf(String.fromCodePoint(cp))!);
    return { header, offset: await passTwo(scratch, text.width, to, header, s.file) };
  } finally {
    await unlink(scratch).catch(() => {});
  }
}

interface PassOne {
  width: 1 | 4; // bytes per provisional id in the scratch file
  sha256: string;
  length: number;
  seen: number[]; // code points by provisional id (the order of first appearance)
  count: number[]; // occurrences by provisional id
  characters: number[]; // per input
}

/** Pass 1: decode, lowercase and join the inputs, writing provisional ids to `scratch`. */
async function passOne(
  inputs: readonly { read: Scan & { where: string } }[],
  lowercase: boolean,
  scratch: string,
  width: 1 | 4,
): Promise<PassOne> {
  const textHash = createHash('sha256');
  const ids = new ProvisionalIds(width);
  let length = 0;
  const out = await open(scratch, 'w');
  // one write in flight while the next piece is encoded, into the other of add()'s two buffers
  // (FileHandle writes must not overlap each other)
  let writing: Promise<unknown> = Promise.resolve();
  let slot: 0 | 1 = 0;
  const put = async (text: string): Promise<void> => {
    textHash.update(text); // UTF-8; a piece never ends inside a surrogate pair
    const got = ids.add(text, slot); // its buffer's last write finished before the one in flight
    slot = slot === 0 ? 1 : 0;
    length += got.length;
    await writing;
    writing = out.write(new Uint8Array(got.buffer, got.byteOffset, got.byteLength));
    writing.catch(() => {}); // awaited by the next put or below; never unhandled meanwhile
  };
  const characters: number[] = [];
  try {
    let anyText = false;
    for (const { read: scan } of inputs) {
      const start = length;
      let started = false;
      const emit = async (piece: string): Promise<void> => {
        if (piece === '') return;
        if (!started) {
          started = true;
          if (anyText) await put(DOCUMENT_SEPARATOR); // in the text, not in this input's count
          anyText = true;
        }
        await put(piece);
      };
      const sepBefore = anyText ? [...DOCUMENT_SEPARATOR].length : 0;
      let pending = '';
      await readDecoded(scan, async (piece) => {
        if (!lowercase) return emit(piece);
        // the cut is looked for in the new piece only (pending has none), and never at the
        // text's start: lowercased, the head is one copy (no 1 MiB pending + piece to flatten)
        const cut = lastCut(piece, pending === '' ? 1 : 0);
        if (cut < 0) {
          pending += piece;
          return;
        }
        const head = pending + piece.slice(0, cut);
        pending = piece.slice(cut);
        await emit(head.toLowerCase());
      });
      await emit(pending.toLowerCase());
      characters.push(length - start - (started ? sepBefore : 0));
    }
    await writing;
    await out.close();
  } catch (err) {
    await out.close().catch(() => {});
    throw err;
  }
  const { seen, count } = ids;
  return {
    width,
    sha256: textHash.digest('hex'),
    length,
    seen,
    count: [...count.subarray(0, seen.length)],
    characters,
  };
}

/** Pass 1 with 1-byte provisional ids met a 257th distinct character. */
class TooManyCharacters extends Error {}

/** Code points numbered in the order they first appear, and counted. */
class ProvisionalIds {
  private readonly id = new Int32Array(0x110000).fill(-1); // code point -> provisional id
  readonly seen: number[] = []; // provisional id -> code point
  readonly count = new Float64Array(0x110000); // by provisional id
  private readonly buffers: (Uint8Array | Int32Array)[];
  private readonly max: number; // the most distinct characters `width` bytes number

  constructor(private readonly width: 1 | 4) {
    this.buffers = [0, 1].map(() => idArray(width, CHUNK) as Uint8Array | Int32Array);
    this.max = width === 1 ? 0x100 : 0x110000;
  }

  /** The provisional ids of `text`, in buffer `slot` (valid until that slot's next call). */
  add(text: string, slot: 0 | 1): Uint8Array | Int32Array {
    if (this.buffers[slot]!.length < text.length)
      this.buffers[slot] = idArray(this.width, text.length) as Uint8Array | Int32Array;
    const { id, count } = this;
    const buffer = this.buffers[slot]!;
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      let cp = text.charCodeAt(i);
      if (cp >= 0xd800 && cp <= 0xdbff) {
        cp = text.codePointAt(i)!; // strict UTF-8 gives no lone surrogates
        i++;
      }
      let k = id[cp]!;
      if (k < 0) {
        if (this.seen.length === this.max) throw new TooManyCharacters();
        k = id[cp] = this.seen.push(cp) - 1;
      }
      count[k]!++;
      buffer[n++] = k;
    }
    return buffer.subarray(0, n);
  }
}

/** The text of one scanned input, in pieces, checked against pass 0's sha256. */
async function readDecoded(
  scan: Scan & { where: string },
  onPiece: (piece: string) => Promise<void>,
): Promise<void> {
  const changed = (): UserError =>
    new UserError(`${scan.where} changed while it was read; run again`);
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  const hash: Hash = createHash('sha256');
  let total = 0;
  let fh: FileHandle | undefined;
  try {
    fh = await open(scan.file, 'r');
    for await (const bytes of readAhead(fh)) {
      total += bytes.length;
      if (total > scan.bytes) throw changed();
      hash.update(bytes);
      await onPiece(decoder.decode(bytes, { stream: true }));
    }
    await onPiece(decoder.decode());
  } catch (err) {
    if (err instanceof UserError || err instanceof TooManyCharacters) throw err; // onPiece's
    if (err instanceof TypeError) throw changed(); // pass 0 found it well formed
    throw new UserError(`cannot read corpus ${scan.where}: ${reason(err)}`);
  } finally {
    await fh?.close().catch(() => {});
  }
  if (total !== scan.bytes || hash.digest('hex') !== scan.sha256) throw changed();
}

/** Pass 2: the provisional ids in `scratch` mapped by `to` into the token file `file`. */
async function passTwo(
  scratch: string,
  width: 1 | 4,
  to: Int32Array,
  header: Header,
  file: string,
): Promise<number> {
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  const b = header.bytesPerId;
  const payload = createHash('sha256');
  let src: FileHandle | undefined;
  let dst: FileHandle | undefined;
  let done = false;
  try {
    src = await open(scratch, 'r');
    dst = await open(tmp, 'wx');
    const head = headerBytes(header);
    await dst.write(head);
    // the next read and the last write in flight while a chunk is mapped (two mapped buffers:
    // one being written, one being filled)
    const mapped = [0, 1].map(() => idArray(b, CHUNK));
    let writing: Promise<unknown> = Promise.resolve();
    let k = 0;
    for await (const raw of readAhead(src)) {
      const n = raw.length / width; // whole ids: the scratch file holds nothing else
      const provisional = idArray(width, n, raw.buffer as ArrayBuffer, raw.byteOffset);
      const out = mapped[k++ & 1]!;
      for (let i = 0; i < n; i++) out[i] = to[provisional[i]!]!;
      const bytes = new Uint8Array(out.buffer, 0, n * b);
      payload.update(bytes);
      await writing;
      writing = dst.write(bytes);
      writing.catch(() => {}); // awaited by the next chunk or below
    }
    await writing;
    await dst.write(payload.digest());
    // no fsync before the rename (at 1 GB it was seconds of the preparation): a file a power cut
    // left short or unwritten fails readHeader's size and sha256 checks and is built again
    await dst.close();
    dst = undefined;
    await rename(tmp, file);
    done = true;
    return head.length;
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`cannot write ${tmp}: ${reason(err)}`);
  } finally {
    await src?.close().catch(() => {});
    await dst?.close().catch(() => {});
    if (!done) await unlink(tmp).catch(() => {});
  }
}

/**
 * `fh` from its position in chunks of up to CHUNK bytes, `limit` bytes at most, the next read in
 * flight while the caller works on the current chunk: two buffers, so a chunk stays valid until
 * the caller asks for the next one (keep a copy to hold it longer).
 */
async function* readAhead(fh: FileHandle, limit = Infinity): AsyncGenerator<Buffer> {
  const buffers = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
  let total = 0;
  const start = (buffer: Buffer) => {
    const want = Math.min(CHUNK, limit - total);
    const read = want > 0 ? fh.read(buffer, 0, want, null) : Promise.resolve({ bytesRead: 0 });
    read.catch(() => {}); // awaited below; a caller that stops early leaves it unawaited
    return read;
  };
  let next = start(buffers[0]!);
  for (let k = 0; ; k++) {
    const { bytesRead } = await next;
    if (bytesRead === 0) return;
    total += bytesRead;
    next = start(buffers[(k + 1) & 1]!);
    yield buffers[k & 1]!.subarray(0, bytesRead);
  }
}

/** Magic, header length, header and padding: everything before the ids. */
function headerBytes(header: Header): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const size = idsOffsetFor(json.length);
  const out = Buffer.alloc(size);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(json.length, MAGIC.length);
  json.copy(out, MAGIC.length + 4);
  return out;
}

const idsOffsetFor = (jsonLength: number): number =>
  Math.ceil((MAGIC.length + 4 + jsonLength) / 4) * 4;

/**
 * The header of the token file `file` when it is whole and for `key`: the size it should have,
 * the ids' sha256 in its trailer. Anything else (missing, cut short, damaged, another format) is
 * undefined, and the file is built again.
 */
async function readHeader(
  file: string,
  key: string,
): Promise<{ header: Header; offset: number } | undefined> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, 'r');
    const size = (await fh.stat()).size;
    const start = Buffer.alloc(MAGIC.length + 4);
    await fh.read(start, 0, start.length, 0);
    if (!start.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    const jsonLength = start.readUInt32LE(MAGIC.length);
    if (MAGIC.length + 4 + jsonLength > size) return undefined;
    const json = Buffer.alloc(jsonLength);
    await fh.read(json, 0, jsonLength, MAGIC.length + 4);
    const header = JSON.parse(json.toString('utf8')) as Header;
    if (header.format !== TOKEN_FORMAT || header.key !== key) return undefined;
    const offset = idsOffsetFor(jsonLength);
    const idBytes = header.length * header.bytesPerId;
    if (size !== offset + idBytes + 32) return undefined;
    const hash = createHash('sha256');
    const chunk = Buffer.allocUnsafeSlow(16 * CHUNK);
    for (let at = 0; at < idBytes;) {
      const { bytesRead } = await fh.read(
        chunk,
        0,
        Math.min(chunk.length, idBytes - at),
        offset + at,
      );
      if (bytesRead === 0) return undefined;
      hash.update(chunk.subarray(0, bytesRead));
      at += bytesRead;
    }
    const trailer = Buffer.alloc(32);
    await fh.read(trailer, 0, 32, offset + idBytes);
    if (!hash.digest().equals(trailer)) return undefined;
    if (os.endianness() !== 'LE') return undefined; // the ids are read as typed arrays
    return { header, offset };
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** A new file name in `dir` for a scratch file. */
async function scratchFile(dir: string, what: string): Promise<string> {
  await mkdir(dir, { recursive: true }).catch((err: unknown) => {
    throw new UserError(`cannot create cache folder ${dir}: ${reason(err)}`);
  });
  return path.join(dir, `${what}-${process.pid}-${randomBytes(4).toString('hex')}.part`);
}
