import { Command } from 'commander';

import { REFERENCE } from '../defaults.ts';
import { parseLength, parseSeed, parseTemperature, parseTopK, parseTopP } from './options.ts';
import { writeAll, writeOut } from './output.ts';

/** The CLI's default temperature: the middle of the reference's four (0.2, 0.5, 1.0, 1.2). */
export const DEFAULT_TEMPERATURE = 0.5;

interface GenerateFlags {
  model: string;
  prompt: string;
  length: number;
  temperature: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  seed?: number;
  showPrompt?: boolean;
}

export function generateCommand(): Command {
  return new Command('generate')
    .description(
      'continue a prompt, one character at a time, each predicted from the last maxlen characters',
    )
    .requiredOption('-m, --model <dir>', 'model folder')
    .requiredOption('-p, --prompt <text>', 'text to continue (lowercased first if the model is)')
    .option('-n, --length <n>', 'characters to generate', parseLength, REFERENCE.sampleLength)
    .option('-t, --temperature <t>', 'sampling temperature', parseTemperature, DEFAULT_TEMPERATURE)
    .option('--top-k <k>', 'draw only from the k most probable characters', parseTopK)
    .option('--top-p <p>', 'draw only from the smallest set reaching probability p', parseTopP)
    .option('--greedy', 'always take the most probable character')
    .option('--seed <n>', 'seed of the random draws (default: a random one)', parseSeed)
    .option('--show-prompt', 'print the prompt before the generated text')
    .action(async (flags: GenerateFlags) => {
      // Loaded here, not at startup: they bring in the engine and its wasm.
      const [{ CharModel }, { textSteps }] = await Promise.all([
        import('../model/char-model.ts'),
        import('../generate/window.ts'),
      ]);
      const model = await CharModel.load(flags.model);
      // textSteps checks the prompt at once, so a bad one prints nothing.
      const steps = textSteps(model, {
        prompt: flags.prompt,
        length: flags.length,
        temperature: flags.temperature,
        ...(flags.topK !== undefined && { topK: flags.topK }),
        ...(flags.topP !== undefined && { topP: flags.topP }),
        ...(flags.greedy && { greedy: true }),
        ...(flags.seed !== undefined && { seed: flags.seed }),
      });
      if (flags.showPrompt) writeOut(model.prepareText(flags.prompt));
      await writeAll(steps);
      writeOut('\n');
    });
}
