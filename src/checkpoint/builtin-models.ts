// The models that ship inside the package (pretrained/<name>/, trained by `charlstm train` with
// the command each model.json records), and the one rule that turns a `--model` value into a
// folder: generate, predict, eval, serve, `train --init-from` and `CharModel.load` all come here.
//
// The rule, for a value v:
// - v names a folder holding a model.json, or contains a path separator, or is not a built-in
//   name: v is a folder path (a local model wins over the built-in of the same name, so a folder
//   saved with `--out moby-dick` before models were built in still loads as it did);
// - otherwise v is a built-in name: the package's pretrained/<v>.
// A value that is neither a folder nor a built-in name is one error listing the built-in names.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { UserError, show } from '../errors.ts';
import { layerCount } from '../model/params.ts';
import { MODEL_JSON, jsonFromText, parseModelJson } from './model-json.ts';

/** The built-in models' names, in the order `charlstm models` and `charlstm serve` list them. */
export const BUILTIN_MODELS = ['moby-dick', 'nietzsche'] as const;
export type BuiltinModel = (typeof BUILTIN_MODELS)[number];

export const isBuiltinModel = (name: string): name is BuiltinModel =>
  (BUILTIN_MODELS as readonly string[]).includes(name);

/**
 * The package's pretrained/ folder. This module is src/checkpoint/ under tsx and
 * dist/checkpoint/ when built (also inside node_modules/charlstm/), two levels below the package
 * root either way.
 */
export function pretrainedDir(): string {
  // not `new URL('../../pretrained/', import.meta.url)`: Vite would take that for an asset
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'pretrained');
}

/** The folder of built-in model `name`. */
export function builtinModelDir(name: BuiltinModel): string {
  return path.join(pretrainedDir(), name);
}

/** Whether `file` is there; one we may not look at counts as there, for the loader to explain. */
async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== 'ENOENT' && code !== 'ENOTDIR';
  }
}

/**
 * The model folder `nameOrDir` means (see the rule at the top). A path is returned as given (the
 * loader checks what is in it); a value that is neither an existing path nor a built-in name is a
 * UserError naming it and the built-in models.
 */
export async function resolveModel(nameOrDir: string): Promise<string> {
  if (!isBuiltinModel(nameOrDir)) {
    // a built-in name has no separator, so `./moby-dick` and `models/moby-dick` are paths
    if (nameOrDir !== '' && (await exists(nameOrDir))) return nameOrDir;
    throw new UserError(
      `model folder not found: ${show(nameOrDir)}; the built-in models are ${builtinList()}`,
    );
  }
  if (await exists(path.join(nameOrDir, MODEL_JSON))) return nameOrDir; // a local model wins
  return builtinModelDir(nameOrDir);
}

const builtinList = (): string => BUILTIN_MODELS.join(', ');

/** Where `charlstm train` saves a run without --out: models/<corpus name>, in the current folder. */
export const LOCAL_MODELS_DIR = 'models';

/** A model folder as `charlstm models` lists it, read from its model.json (weights unread). */
export interface ModelEntry {
  /** What `--model` takes: the built-in name, or the folder as found (models/<name>). */
  name: string;
  builtin: boolean;
  /** The folder, absolute. */
  dir: string;
  layers: number;
  units: number;
  /** Vocabulary size. */
  characters: number;
  /** model.json and its weights files, bytes. */
  bytes: number;
  /** training.corpus */
  corpus?: string;
  /** training.epochs: whole epochs done (0 for a run that a time budget ended within its first) */
  epochs?: number;
  /** training.trainSeconds: seconds of training steps */
  trainSeconds?: number;
  /** The last held-out loss recorded (nats per character), if the run validated. */
  valLoss?: number;
  /** training.command: the command line that trained it */
  command?: string;
}

/** Read `dir/model.json` (checked as a load would) and size its files; weights are not read. */
export async function describeModel(
  name: string,
  dir: string,
  builtin: boolean,
): Promise<ModelEntry> {
  const jsonFile = path.join(dir, MODEL_JSON);
  let text: string;
  try {
    text = await fs.readFile(jsonFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`cannot read ${jsonFile}${code ? ` (${code})` : ''}`);
  }
  const { meta, shape, weightPaths } = parseModelJson(jsonFromText(text, jsonFile), jsonFile);
  let bytes = Buffer.byteLength(text);
  for (const p of weightPaths)
    bytes += (await fs.stat(path.join(dir, p)).catch(() => null))?.size ?? 0;
  const t = meta.training;
  const valLoss = Array.isArray(t.valLoss)
    ? t.valLoss.filter((v): v is number => typeof v === 'number').at(-1)
    : undefined;
  return {
    name,
    builtin,
    dir: path.resolve(dir),
    layers: layerCount(shape),
    units: shape.units,
    characters: shape.vocabSize,
    bytes,
    ...(typeof t.corpus === 'string' && { corpus: t.corpus }),
    ...(typeof t.epochs === 'number' && { epochs: t.epochs }),
    ...(typeof t.trainSeconds === 'number' && { trainSeconds: t.trainSeconds }),
    ...(valLoss !== undefined && { valLoss }),
    ...(typeof t.command === 'string' && { command: t.command }),
  };
}

/**
 * The built-in models, then the model folders under ./models (the train default); a local
 * folder whose model.json cannot be read is passed to `skipped` with the reason, not listed.
 */
export async function listModels(
  skipped: (dir: string, reason: string) => void = () => {},
): Promise<ModelEntry[]> {
  const entries: ModelEntry[] = [];
  for (const name of BUILTIN_MODELS)
    entries.push(await describeModel(name, builtinModelDir(name), true));
  let names: string[] = [];
  try {
    const found = await fs.readdir(LOCAL_MODELS_DIR, { withFileTypes: true });
    names = found.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    // no ./models: no local models
  }
  for (const name of names.sort()) {
    const dir = path.join(LOCAL_MODELS_DIR, name);
    if (!(await exists(path.join(dir, MODEL_JSON)))) continue; // not a model folder
    try {
      entries.push(await describeModel(dir, dir, false));
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      skipped(dir, err.message);
    }
  }
  return entries;
}
