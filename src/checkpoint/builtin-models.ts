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
import { MODEL_JSON } from './model-json.ts';

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
