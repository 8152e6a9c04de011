import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError, show } from '../errors.ts';
import { reason } from './download.ts';

// What the values of --corpus name: each value is a built-in name, a URL, a file, a folder, a glob
// or several of these separated by commas, and becomes a list of single inputs (built-in names,
// URLs and files), in order. Reading them is corpus.ts's part.
//
// The rules, in order, for one value:
// 1. a built-in name, an http(s) or file URL, or a path that exists is one input, whatever commas
//    it holds (so a file named "a,b.txt" is read as itself; a URL is never split);
// 2. otherwise a value with commas is split at every comma, and each part follows rules 1, 3, 4;
// 3. a part with `*` or `?` is a glob (globFiles below);
// 4. anything else is a file, which must exist.
// A folder stands for its files: every regular file under it, at any depth, sorted by path, the
// hidden ones (a name starting with ".") and those inside hidden folders left out.

/** One given value (or one comma-separated part of it) and the single inputs it stands for. */
export interface InputGroup {
  /** The value as written. */
  spec: string;
  /** A short name: the built-in's, the file's without `.txt`, the folder's, the glob's folder's. */
  name: string;
  kind: 'builtin' | 'url' | 'file' | 'folder' | 'glob';
  /** Single specs for loadCorpus's loaders: built-in names, URLs, file paths. */
  inputs: string[];
}

export interface ExpandOptions {
  /** Whether a name is a built-in corpus (corpus.ts's BUILTIN_CORPORA). */
  isBuiltin: (name: string) => boolean;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** The groups the values of --corpus stand for, in the order given. */
export async function expandSpecs(
  specs: readonly string[],
  opts: ExpandOptions,
): Promise<InputGroup[]> {
  if (specs.length === 0) throw new UserError('no corpus given');
  const groups: InputGroup[] = [];
  for (const spec of specs) {
    const whole = await single(spec, opts);
    if (whole !== undefined) {
      groups.push(whole);
      continue;
    }
    const parts = spec.includes(',') ? spec.split(',').map((s) => s.trim()) : [spec];
    if (parts.some((p) => p === '')) {
      throw new UserError(`corpus ${show(spec)} has an empty part between its commas`);
    }
    for (const part of parts) groups.push((await single(part, opts)) ?? (await notSingle(part)));
  }
  return groups;
}

/** The group for a value that is one input by rule 1, or undefined. */
async function single(spec: string, opts: ExpandOptions): Promise<InputGroup | undefined> {
  if (spec === '') throw new UserError('corpus "" is empty: give a name, a file or a URL');
  if (opts.isBuiltin(spec)) return { spec, name: spec, kind: 'builtin', inputs: [spec] };
  if (URL_LIKE.test(spec) && !/^file:/i.test(spec)) {
    return { spec, name: spec, kind: 'url', inputs: [spec] }; // named once read (urlName)
  }
  if (/^file:/i.test(spec)) return { spec, name: spec, kind: 'file', inputs: [spec] };
  const info = await stat(spec).catch(() => undefined);
  if (info === undefined) return undefined;
  if (info.isDirectory()) {
    const files = await folderFiles(spec);
    if (files.length === 0) {
      throw new UserError(
        `cannot read corpus ${spec}: it is a folder with no files in it (hidden ones are skipped)`,
      );
    }
    return { spec, name: folderName(spec), kind: 'folder', inputs: files };
  }
  return { spec, name: spec, kind: 'file', inputs: [spec] }; // a file, pipe or device
}

/** A part that does not exist: a glob, or a file that is missing (loadCorpus says so). */
async function notSingle(part: string): Promise<InputGroup> {
  if (!/[*?]/.test(part)) return { spec: part, name: part, kind: 'file', inputs: [part] };
  const files = await globFiles(part);
  if (files.length === 0) throw new UserError(`no file matches the corpus glob ${show(part)}`);
  return { spec: part, name: folderName(globBase(part)), kind: 'glob', inputs: files };
}

/** The folder's own name (of the current folder's for "."). */
function folderName(dir: string): string {
  return path.basename(path.resolve(dir)) || 'corpus';
}

const hidden = (name: string): boolean => name.startsWith('.');

/** Every regular file under `dir` (symbolic links to files included), hidden ones left out, sorted. */
export async function folderFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of await listFolder(at)) {
      if (hidden(entry.name)) continue;
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) await walk(full);
      // a link to a folder is not followed: it could lead back up (a loop)
      else if (entry.isFile() || (entry.isSymbolicLink() && (await isFile(full)))) found.push(full);
    }
  };
  await walk(dir);
  return sortPaths(found);
}

/**
 * The files a glob matches, sorted by path. Small on purpose (Node 20 has no fs.glob): `*` is any
 * run of characters within one name, `?` one character, a `**` segment any number of folders
 * (none included); `/` separates segments (on Windows `\` too). Hidden names match only a
 * segment that itself starts with "."; only files are matched, never folders.
 */
export async function globFiles(pattern: string): Promise<string[]> {
  const segments = pattern.split(path.sep === '\\' ? /[\\/]/ : '/');
  const baseCount = segments.findIndex((s) => /[*?]/.test(s));
  const base = globBase(pattern);
  const rest = segments.slice(baseCount).filter((s) => s !== '');
  const found = new Set<string>();
  const match = async (at: string, i: number): Promise<void> => {
    const seg = rest[i]!;
    const last = i === rest.length - 1;
    if (seg === '**') {
      if (last) {
        for (const f of await folderFiles(at)) found.add(f);
        return;
      }
      await match(at, i + 1); // no folder at all
      for (const entry of await listFolder(at)) {
        if (!hidden(entry.name) && entry.isDirectory()) await match(path.join(at, entry.name), i);
      }
      return;
    }
    const re = segmentRegExp(seg);
    for (const entry of await listFolder(at)) {
      if ((hidden(entry.name) && !seg.startsWith('.')) || !re.test(entry.name)) continue;
      const full = path.join(at, entry.name);
      if (last) {
        if (entry.isFile() || (entry.isSymbolicLink() && (await isFile(full)))) found.add(full);
      } else if (entry.isDirectory()) {
        await match(full, i + 1);
      }
    }
  };
  await match(base, 0);
  return sortPaths([...found]);
}

/** The folder a glob starts from: its segments before the first with a wildcard ("." if none). */
function globBase(pattern: string): string {
  const segments = pattern.split(path.sep === '\\' ? /[\\/]/ : '/');
  const fixed = segments.slice(
    0,
    segments.findIndex((s) => /[*?]/.test(s)),
  );
  if (fixed.length === 0) return '.';
  const joined = fixed.join('/');
  return joined === '' ? '/' : joined; // "/*.txt": the root
}

function segmentRegExp(seg: string): RegExp {
  const body = seg
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`, 'su'); // u: `?` is one code point
}

async function listFolder(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return []; // a glob's folder that is not there
    throw new UserError(`cannot list corpus folder ${dir}: ${reason(err)}`);
  }
}

async function isFile(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() ?? false;
}

/** By path, segment by segment in code-unit order, so the order is the same on every machine
 * (no locale) and a folder's files stay together ("a/z" before "a-b"). */
function sortPaths(files: string[]): string[] {
  const key = (f: string): string[] => f.split(path.sep);
  return files.sort((a, b) => {
    const [ka, kb] = [key(a), key(b)];
    for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
      if (ka[i] !== kb[i]) return ka[i]! < kb[i]! ? -1 : 1;
    }
    return ka.length - kb.length;
  });
}
