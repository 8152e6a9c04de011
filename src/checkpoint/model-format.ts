// A saved model's folder in Node: `model.json` and its weights file, saved atomically and loaded
// with every check. The format itself (the Keras topology, the manifest, the charlstm metadata,
// the checks on them, the bytes of the weights) is model-json.ts, which the browser shares; it is
// re-exported here so that Node code has one module to import.

import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { UserError, writeFailure } from '../errors.ts';
import type { Parameters } from '../model/params.ts';
import {
  MODEL_JSON,
  isObject,
  jsonFromText,
  modelFiles,
  readModel,
  type ModelMeta,
  type SavedModel,
} from './model-json.ts';

export * from './model-json.ts';

const WEIGHTS_FILE_RE = /^weights\.[0-9a-f]{12}\.bin$/;
const TEMP_FILE_RE = /\.tmp-(\d+)-[0-9a-f]{8}$/;

const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Write `data` to `dir/name` atomically: temp file, fsync, rename. */
async function writeFileAtomic(
  dir: string,
  name: string,
  data: Uint8Array | string,
): Promise<void> {
  const target = path.join(dir, name);
  const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await fs
    .open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644)
    .catch((err: unknown) => {
      throw writeFailure(err, target, 'the model saved before is kept');
    });
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fs.rm(temp, { force: true }); // a partial file would only eat the space that is left
    throw writeFailure(err, target, 'the model saved before is kept');
  }
  await fh.close();
  try {
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
}

/** Make a directory's entries durable. Some platforms (Windows) cannot fsync a directory. */
async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (
      code !== 'EISDIR' &&
      code !== 'EPERM' &&
      code !== 'EINVAL' &&
      code !== 'EACCES' &&
      code !== 'EBADF'
    )
      throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Save a model to `dir` (created if missing) so that a kill at any moment leaves either the old
 * model or the new one, never a broken one: the weights go to a new content-named file (temp +
 * fsync + rename), then `model.json` is replaced by rename (the commit point), the folder is
 * fsynced, and the weights files the replaced `model.json` listed in its manifest (and the new one
 * does not) are deleted. Nothing else is removed: a `weights.<hex>.bin` this folder held that no
 * model of ours listed stays, and so does a temporary file of a save still running elsewhere
 * (only those of this process or of a process no longer alive go). One writer per folder.
 */
export async function saveModel(
  dir: string,
  params: Parameters,
  meta: Omit<ModelMeta, 'formatVersion' | 'weightsSha256'>,
): Promise<void> {
  const { json: text, weightsName, weights: bytes } = await modelFiles(params, meta, sha256Hex);

  await fs.mkdir(dir, { recursive: true });
  const replaced = await manifestWeightFiles(dir); // what the model being replaced uses
  await writeFileAtomic(dir, weightsName, bytes);
  await fsyncDir(dir); // the weights file's name is durable before model.json can point at it
  await writeFileAtomic(dir, MODEL_JSON, text);
  await fsyncDir(dir);

  // Clean up: the replaced model's weights files, and temp files left by an interrupted save.
  for (const name of replaced) {
    if (name !== weightsName) await fs.rm(path.join(dir, name), { force: true });
  }
  for (const entry of await fs.readdir(dir)) {
    const m = TEMP_FILE_RE.exec(entry);
    const ours = entry.startsWith('weights.') || entry.startsWith(`${MODEL_JSON}.`);
    if (m && ours && !processAlive(Number(m[1]))) {
      await fs.rm(path.join(dir, entry), { force: true });
    }
  }
}

/**
 * The weights files named by the manifest of `dir/model.json` (charlstm's own
 * `weights.<12 hex>.bin` names only), or none when there is no readable model there.
 */
async function manifestWeightFiles(dir: string): Promise<string[]> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(path.join(dir, MODEL_JSON), 'utf8'));
  } catch {
    return []; // no model.json, or not one we can read: nothing of a model to replace
  }
  const names: string[] = [];
  const manifest = isObject(json) ? json.weightsManifest : undefined;
  if (!Array.isArray(manifest)) return names;
  for (const group of manifest) {
    if (!isObject(group) || !Array.isArray(group.paths)) continue;
    for (const p of group.paths)
      if (typeof p === 'string' && WEIGHTS_FILE_RE.test(p)) names.push(p);
  }
  return names;
}

/** Whether process `pid` (on this machine) still runs; this process counts as not running. */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return false; // our own leftovers: no save of ours is in flight here
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

async function readOrExplain(file: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${what} not found: ${file}`);
    if (code === 'EISDIR') throw new UserError(`${what} is a folder, not a file: ${file}`);
    if (code === 'EACCES' || code === 'EPERM')
      throw new UserError(`cannot read ${what}: ${file} (permission denied)`);
    throw err;
  }
}

/** Load a model saved by `saveModel`. Every problem with the folder is a UserError naming the file. */
export async function loadModel(dir: string): Promise<SavedModel> {
  let st;
  try {
    st = await fs.stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UserError(`model folder not found: ${dir}`);
    throw err;
  }
  if (!st.isDirectory()) throw new UserError(`not a model folder (it is a file): ${dir}`);

  const jsonFile = path.join(dir, MODEL_JSON);
  const text = (await readOrExplain(jsonFile, MODEL_JSON)).toString('utf8');
  return readModel(jsonFromText(text, jsonFile), {
    where: jsonFile,
    weights: async (paths) => {
      const files = [];
      for (const p of paths) {
        const name = path.join(dir, p); // in order: the first missing file is the one named
        files.push({ name, bytes: await readOrExplain(name, 'weights file') });
      }
      return files;
    },
    sha256: sha256Hex,
  });
}
