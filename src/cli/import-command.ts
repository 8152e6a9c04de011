import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { Command } from 'commander';

import { UserError, show } from '../errors.ts';
import { writeOut } from './output.ts';

// `charlstm import`: a safetensors export (charlstm's own, or one PyTorch saved again with the
// same names, shapes, dtype and __metadata__; src/checkpoint/safetensors.ts) back into a model
// folder in charlstm's format.

interface ImportFlags {
  from: string;
  out: string;
  force?: boolean;
}

async function readInput(file: string): Promise<Uint8Array> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`--from file not found: ${show(file)}`);
    if (code === 'EISDIR') throw new UserError(`--from ${show(file)} is a folder, not a file`);
    if (code === 'EACCES' || code === 'EPERM')
      throw new UserError(`cannot read --from ${show(file)} (permission denied)`);
    throw err;
  }
}

export function importCommand(): Command {
  return new Command('import')
    .description(
      'turn a safetensors export (possibly trained further in PyTorch) into a model folder',
    )
    .requiredOption('--from <file>', 'the .safetensors file')
    .requiredOption('-o, --out <dir>', 'the model folder to write')
    .option('--force', 'replace the model --out holds')
    .action(async (flags: ImportFlags) => {
      const [{ MODEL_JSON, saveModel }, { modelFromSafetensors }] = await Promise.all([
        import('../checkpoint/model-format.ts'),
        import('../checkpoint/safetensors.ts'),
      ]);
      const st = await fs.stat(flags.out).catch(() => undefined);
      if (st && !st.isDirectory())
        throw new UserError(`--out ${show(flags.out)} is a file, not a folder`);
      const taken = await fs.stat(path.join(flags.out, MODEL_JSON)).catch(() => undefined);
      if (taken && !flags.force) {
        throw new UserError(`${show(flags.out)} already holds a model; pass --force to replace it`);
      }
      const { params, meta } = modelFromSafetensors(await readInput(flags.from), flags.from);
      await saveModel(flags.out, params, meta);
      const { vocabSize: V, units: H, layers: L = 1 } = params.shape;
      writeOut(`imported ${flags.from} into ${flags.out} (V=${V}, H=${H}, L=${L})\n`);
    });
}
