import { Command } from 'commander';

import type { UnknownPolicy } from '../data/vocabulary.ts';
import { UserError } from '../errors.ts';
import { unknownOption } from './generate-command.ts';
import { parseCount } from './options.ts';
import { writeOut } from './output.ts';
import { MODEL_FLAGS, MODEL_HELP } from './models-command.ts';

interface PredictFlags {
  model: string;
  text: string;
  json?: boolean;
  top: number;
  unknown: UnknownPolicy;
}

export function predictCommand(): Command {
  return new Command('predict')
    .description('show the next-character distribution after a text (its last maxlen characters)')
    .requiredOption(MODEL_FLAGS, MODEL_HELP)
    .requiredOption('--text <text>', 'the text so far (lowercased first if the model is)')
    .option('--json', 'print {"vocab": [...], "probs": [...]} on one line')
    .option('--top <n>', 'rows of the table (without --json)', parseCount, 10)
    .addOption(unknownOption())
    .action(async (flags: PredictFlags) => {
      const [{ CharModel }, { preparePrompt }] = await Promise.all([
        import('../model/char-model.ts'), // the engine, loaded on use
        import('../generate/generate.ts'),
      ]);
      const model = await CharModel.load(flags.model);
      const text = preparePrompt(model, flags.text, flags.unknown);
      if (text.length === 0) throw new UserError('text has no character the model knows');
      const probs = model.predict(text);
      const vocab = model.vocab.chars;
      if (flags.json) {
        writeOut(JSON.stringify({ vocab, probs: Array.from(probs) }) + '\n');
        return;
      }
      const order = Array.from(vocab.keys()).sort((a, b) => probs[b]! - probs[a]! || a - b);
      const rows = order
        .slice(0, flags.top)
        .map((i) => [JSON.stringify(vocab[i]), probs[i]!.toFixed(6)]);
      const width = Math.max(4, ...rows.map(([c]) => c!.length));
      let out = `${'rank'.padStart(4)}  ${'char'.padEnd(width)}  probability\n`;
      rows.forEach(([c, p], r) => {
        out += `${String(r + 1).padStart(4)}  ${c!.padEnd(width)}  ${p!.padStart(11)}\n`;
      });
      writeOut(out);
    });
}
