import { Command } from 'commander';

import { writeOut } from './output.ts';

// `charlstm models`: the models `--model` can name here, the built-in ones and those under
// ./models (where `charlstm train` saves without --out), read from their model.json only.

/** The --model option's flags and help, the same in generate, predict, eval and serve. */
export const MODEL_FLAGS = '-m, --model <name|dir>';
export const MODEL_HELP =
  'a built-in model (moby-dick, nietzsche; see charlstm models) or a model folder ' +
  '(a folder of that name holding a model.json wins; ./name to mean the folder)';

interface ModelsFlags {
  json?: boolean;
}

const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

export function modelsCommand(): Command {
  return new Command('models')
    .description(
      'list the models --model can name: the built-in ones (in the package) and the folders under ./models',
    )
    .option('--json', 'print {"models": [...]} on one line')
    .action(async (flags: ModelsFlags) => {
      const { listModels } = await import('../checkpoint/builtin-models.ts');
      const models = await listModels((dir, reason) =>
        process.stderr.write(`charlstm: skipped ${dir}: ${reason}\n`),
      );
      if (flags.json) {
        writeOut(`${JSON.stringify({ models })}\n`);
        return;
      }
      const header = [
        'name',
        'kind',
        'layers × units',
        'characters',
        'size',
        'trained on',
        'epochs',
        'training',
        'held-out loss',
        'folder',
      ];
      const rows = models.map((m) => [
        m.name,
        m.builtin ? 'built-in' : 'local',
        `${m.layers} × ${m.units}`,
        String(m.characters),
        megabytes(m.bytes),
        m.corpus ?? '-',
        m.epochs === undefined ? '-' : String(m.epochs),
        m.trainSeconds === undefined ? '-' : `${m.trainSeconds} s`,
        m.valLoss === undefined
          ? '-'
          : `${m.valLoss.toFixed(4)} nats (${(m.valLoss / Math.LN2).toFixed(3)} bits/char)`,
        m.dir,
      ]);
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (cells: string[]): string =>
        cells
          .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
          .join('  ')
          .trimEnd();
      writeOut([header, ...rows].map(line).join('\n') + '\n');
      if (!models.some((m) => !m.builtin))
        writeOut('no local models in ./models (charlstm train saves there without --out)\n');
    });
}
