import path from 'node:path';

import { UserError, show } from '../errors.ts';
import { CharModel, type GenerationThreads } from '../model/char-model.ts';
import { ApiError } from './errors.ts';

// The models a server answers with: loaded from their folders as `charlstm serve --model` names
// them, and looked up by the name a request gives.

export interface ServedModel {
  /** The name clients use (`model` in a request). */
  name: string;
  model: CharModel;
}

/** Names for model folders: each folder's base name, made unique with -2, -3, ... */
export function modelNames(dirs: readonly string[]): string[] {
  const used = new Set<string>();
  return dirs.map((dir) => {
    const base = path.basename(path.resolve(dir)) || 'model';
    let name = base;
    for (let i = 2; used.has(name); i++) name = `${base}-${i}`;
    used.add(name);
    return name;
  });
}

/** Load model folders (any problem is a UserError naming the file) and name them. */
export async function loadModels(
  dirs: readonly string[],
  opts: { threads?: GenerationThreads } = {},
): Promise<ServedModel[]> {
  if (dirs.length === 0) throw new UserError('no model to serve: give at least one --model <dir>');
  const names = modelNames(dirs);
  const models = await Promise.all(dirs.map((dir) => CharModel.load(dir, opts)));
  return models.map((model, i) => ({ name: names[i]!, model }));
}

/** The served models by name; the first answers requests that name none. */
export class ModelTable {
  readonly list: readonly ServedModel[];
  readonly default: ServedModel;
  private readonly byName: Map<string, ServedModel>;

  constructor(models: readonly ServedModel[]) {
    if (models.length === 0) throw new UserError('no model to serve');
    this.byName = new Map(models.map((m) => [m.name, m]));
    if (this.byName.size !== models.length)
      throw new RangeError('two served models have the same name');
    this.list = models;
    this.default = models[0]!;
  }

  get names(): string[] {
    return this.list.map((m) => m.name);
  }

  /** The model a request names (none: the default); an unknown name is a 404 listing the others. */
  pick(name: string | undefined): ServedModel {
    if (name === undefined) return this.default;
    const m = this.byName.get(name);
    if (!m) {
      const names = this.names.map((n) => JSON.stringify(n)).join(', ');
      throw new ApiError(
        404,
        'unknown_model',
        `unknown model ${show(name)}; this server has ${names}`,
      );
    }
    return m;
  }
}
