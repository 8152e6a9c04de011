import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { Command, Option } from 'commander';

import { UserError, show, writeFailure } from '../errors.ts';
import { writeOut } from './output.ts';

// `charlstm export`: a model as one file for another engine (src/checkpoint/onnx.ts,
// src/checkpoint/safetensors.ts). The model folder itself stays the one format charlstm reads.

export const EXPORT_FORMATS = ['onnx', 'safetensors'] as const;
type ExportFormat = (typeof EXPORT_FORMATS)[number];

interface ExportFlags {
  model: string;
  format?: ExportFormat;
  out: string;
  force?: boolean;
}

/** The format `--out`'s extension names, when --format is not given. */
function formatOf(out: string): ExportFormat {
  const ext = path.extname(out).slice(1).toLowerCase();
  const format = EXPORT_FORMATS.find((f) => f === ext);
  if (format === undefined) {
    throw new UserError(
      `cannot tell the format from --out ${show(out)}: pass --format onnx or --format safetensors (or name the file .onnx or .safetensors)`,
    );
  }
  return format;
}

/**
 * Write `bytes` to `file` whole or not at all (a temporary file beside it, then a rename); an
 * existing file is replaced only with `force`.
 */
export async function writeNewFile(file: string, bytes: Uint8Array, force: boolean): Promise<void> {
  const st = await fs.stat(file).catch(() => undefined);
  if (st?.isDirectory()) throw new UserError(`--out ${show(file)} is a folder, not a file`);
  if (st && !force) throw new UserError(`${show(file)} already exists; pass --force to replace it`);
  const dir = path.dirname(file);
  const dirStat = await fs.stat(dir).catch(() => undefined);
  if (!dirStat?.isDirectory())
    throw new UserError(`folder not found for --out ${show(file)}: ${dir}`);
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fs.writeFile(temp, bytes, { flag: 'wx' });
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw writeFailure(err, file, 'nothing was written');
  }
}

export function exportCommand(): Command {
  return new Command('export')
    .description('write a model as one ONNX or safetensors (PyTorch) file, see docs/scale-out.md')
    .requiredOption('-m, --model <dir>', 'model folder or built-in model name')
    .addOption(
      new Option(
        '--format <format>',
        "onnx or safetensors (default: from --out's extension)",
      ).choices(EXPORT_FORMATS),
    )
    .requiredOption('-o, --out <file>', 'the file to write')
    .option('--force', 'replace --out if it exists')
    .action(async (flags: ExportFlags) => {
      const format = flags.format ?? formatOf(flags.out);
      const [{ loadModel }, { resolveModel }] = await Promise.all([
        import('../checkpoint/model-format.ts'),
        import('../checkpoint/builtin-models.ts'),
      ]);
      const { params, meta } = await loadModel(await resolveModel(flags.model));
      const bytes =
        format === 'onnx'
          ? (await import('../checkpoint/onnx.ts')).onnxModel(params, meta)
          : (await import('../checkpoint/safetensors.ts')).safetensorsFromModel(params, meta);
      await writeNewFile(flags.out, bytes, flags.force ?? false);
      writeOut(`wrote ${flags.out} (${format}, ${bytes.length} bytes)\n`);
    });
}
