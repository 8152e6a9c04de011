import { once } from 'node:events';

import { Command, Option } from 'commander';

import { UNKNOWN_POLICIES, type UnknownPolicy } from '../data/vocabulary.ts';
import { DECODING, GENERATE, REFERENCE } from '../defaults.ts';
import {
  integerIn,
  parseLength,
  parseSeed,
  parseTemperature,
  parseTopK,
  parseTopP,
  threadsOption,
} from './options.ts';
import { OutputClosed, writeOut } from './output.ts';
import { MODEL_FLAGS, MODEL_HELP } from './models-command.ts';

/**
 * Characters per write: stdout gets one write per few KB (or per 16 ms of generation, whichever
 * comes first, so slow window-mode output still appears as it is made).
 */
const CHUNK_CHARS = 4096;

interface GenerateFlags {
  model: string;
  prompt: string;
  length: number;
  temperature: number;
  topK?: number;
  topP?: number;
  greedy?: boolean;
  seed?: number;
  mode: 'window' | 'stateful';
  unknown: UnknownPolicy;
  showPrompt?: boolean;
  stop?: string[];
  count: number;
  beam?: number;
  threads?: 1 | 2;
}

/** --unknown, as generate and predict take it. */
export function unknownOption(): Option {
  return new Option(
    '--unknown <policy>',
    'characters the model never saw in the prompt: error (name them), skip (drop them), ' +
      'or map (to the unknown symbol of a model trained with --max-vocab or --min-count)',
  )
    .choices(UNKNOWN_POLICIES)
    .default(GENERATE.unknown);
}

export function generateCommand(): Command {
  return new Command('generate')
    .description(
      'continue a prompt, one character at a time: each predicted from the last maxlen characters ' +
        '(window mode, the reference), or from the state carried along the text (stateful mode)',
    )
    .requiredOption(MODEL_FLAGS, MODEL_HELP)
    .requiredOption('-p, --prompt <text>', 'text to continue (lowercased first if the model is)')
    .option('-n, --length <n>', 'characters to generate', parseLength, REFERENCE.sampleLength)
    .option('-t, --temperature <t>', 'sampling temperature', parseTemperature, GENERATE.temperature)
    .option('--top-k <k>', 'draw only from the k most probable characters', parseTopK)
    .option('--top-p <p>', 'draw only from the smallest set reaching probability p', parseTopP)
    .option('--greedy', 'always take the most probable character')
    .option('--seed <n>', 'seed of the random draws (default: a random one)', parseSeed)
    .addOption(
      new Option(
        '--mode <mode>',
        'window: re-read the last maxlen characters for every character (as the model was trained); ' +
          'stateful: carry the LSTM state, one step per character (fast; any prompt length, even empty)',
      )
        .choices(['window', 'stateful'])
        .default('window'),
    )
    .addOption(unknownOption())
    .option('--show-prompt', 'print the prompt before the generated text')
    .option(
      '--stop <text>',
      'end the text just before the first occurrence of this text (not printed); repeatable',
      (text: string, list: string[] | undefined) => [...(list ?? []), text],
    )
    .option(
      '--count <n>',
      `independent samples, each headed by its seed (sample i's seed derives from --seed; at most ${DECODING.maxCount})`,
      integerIn('The count', 1, DECODING.maxCount),
      DECODING.count,
    )
    .option(
      '--beam <width>',
      `beam search of this width: the most probable text found, deterministic (temperature, top-k/p and seed do not apply; at most ${DECODING.maxBeamWidth})`,
      integerIn('The beam width', 1, DECODING.maxBeamWidth),
    )
    .addOption(threadsOption())
    .action(async (flags: GenerateFlags) => {
      // Loaded here, not at startup: they bring in the engine and its wasm.
      const [{ CharModel }, { generateSamples }] = await Promise.all([
        import('../model/char-model.ts'),
        import('../generate/generate.ts'),
      ]);
      const model = await CharModel.load(flags.model, {
        ...(flags.threads !== undefined && { threads: flags.threads }),
      });
      // generate() checks everything at once, so a bad prompt prints nothing.
      const samples = generateSamples(model, {
        prompt: flags.prompt,
        length: flags.length,
        temperature: flags.temperature,
        mode: flags.mode,
        unknown: flags.unknown,
        ...(flags.topK !== undefined && { topK: flags.topK }),
        ...(flags.topP !== undefined && { topP: flags.topP }),
        ...(flags.greedy && { greedy: true }),
        ...(flags.seed !== undefined && { seed: flags.seed }),
        ...(flags.stop && { stop: flags.stop }),
        ...(flags.beam !== undefined && { beam: flags.beam }),
        count: flags.count,
        chunkChars: CHUNK_CHARS,
      });
      for (const [i, chunks] of samples.entries()) {
        if (samples.length > 1) {
          writeOut(
            `${i > 0 ? '\n' : ''}--- sample ${i + 1} of ${samples.length}, seed ${chunks.seed} ---\n`,
          );
        }
        if (flags.showPrompt) writeOut(chunks.prompt); // as the model reads it
        for await (const chunk of chunks) {
          // generate() turns the event loop between chunks, so a closed reader shows up here
          const ok = process.stdout.write(chunk);
          if (process.stdout.destroyed) throw new OutputClosed();
          if (!ok) await once(process.stdout, 'drain');
        }
        writeOut('\n');
      }
    });
}
