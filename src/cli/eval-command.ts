import { Command, Option } from 'commander';

import { DEFAULT_VAL_SPLIT } from '../defaults.ts';
import { UserError } from '../errors.ts';
import { parseCount, parseFraction } from './options.ts';
import { writeOut } from './output.ts';
import { MODEL_FLAGS, MODEL_HELP } from './models-command.ts';

// `charlstm eval`: a saved model's loss on a text, the protocol every quality figure in the README
// is quoted with (each scored character predicted from the maxlen characters before it, from a
// zero state). With a run's corpus, split and --every equal to its step, it gives exactly the
// validation loss that run reported when the run scored every held-out window (below
// VALIDATION.sampleAbove of them, or --val-full); beyond, the run scored a seeded sample and this
// gives the exact figure that sample estimates. It never samples.

interface EvalFlags {
  model: string;
  corpus: string;
  valSplit?: number;
  all?: boolean;
  every: number;
  stateful?: boolean;
  json?: boolean;
  engine: 'auto' | 'wasm' | 'native';
}

export function evalCommand(): Command {
  return new Command('eval')
    .description(
      "score a saved model on a text: nats and bits per character and perplexity of the text's held-out end (or all of it)",
    )
    .requiredOption(MODEL_FLAGS, MODEL_HELP)
    .requiredOption(
      '-c, --corpus <spec>',
      'built-in name (nietzsche, moby-dick), text file or http(s) URL',
    )
    .option(
      '--val-split <f>',
      `score the last fraction f of the text (default: the split the model was trained with, else ${DEFAULT_VAL_SPLIT})`,
      parseFraction,
    )
    .option('--all', 'score the whole text (every character after the first maxlen)')
    .option(
      '--every <n>',
      "score every n-th character of that part (1: all; a run's validation used its --step)",
      parseCount,
      1,
    )
    .option('--stateful', 'read the scored part as carried streams instead of windows')
    .option('--json', 'print the figures as one JSON object')
    .addOption(
      new Option('--engine <kind>', 'kernels: wasm, native, auto = the fastest available')
        .choices(['auto', 'wasm', 'native'])
        .default('auto'),
    )
    .action(async (flags: EvalFlags) => {
      if (flags.all && flags.valSplit !== undefined) {
        throw new UserError('give --all or --val-split, not both');
      }
      if (flags.stateful && flags.every !== 1) {
        throw new UserError(
          `--stateful scores every character; --every ${flags.every} cannot apply`,
        );
      }
      const [
        { loadModel },
        { prepareCorpus },
        { encodedTokens },
        { Vocabulary },
        { scoreText, everyNth },
      ] = await Promise.all([
        import('../checkpoint/model-format.ts'),
        import('../corpus/prepare.ts'),
        import('../corpus/token-source.ts'),
        import('../data/vocabulary.ts'),
        import('../train/evaluate.ts'),
      ]);
      const { resolveModel } = await import('../checkpoint/builtin-models.ts');
      const { params, meta } = await loadModel(await resolveModel(flags.model));
      // the text's own ids (a token file, from the cache when prepared before), in the model's,
      // read from the file as training reads them (in memory only when small)
      const corpus = await prepareCorpus(flags.corpus, { lowercase: meta.lowercase });
      const tokens = encodedTokens(
        corpus,
        new Vocabulary(meta.vocab, meta.unknown),
        `corpus ${corpus.name}`,
        meta.unknown === undefined ? 'error' : 'map', // as training encoded it
      );
      const trained = meta.training.valSplit;
      const valSplit =
        flags.valSplit ??
        (typeof trained === 'number' && trained > 0 ? trained : DEFAULT_VAL_SPLIT);
      if (!flags.all && !(valSplit > 0)) {
        throw new UserError('--val-split 0 leaves nothing to score; use --all for the whole text');
      }
      const score = await scoreText(params, tokens, meta.maxlen, {
        ...(flags.all ? { all: true } : { valSplit }),
        every: flags.every,
        stateful: Boolean(flags.stateful),
        engine: flags.engine,
      });
      const part = flags.all
        ? `all ${score.span.toLocaleString('en-US')} characters after the first ${meta.maxlen}`
        : `the last ${+(valSplit * 100).toFixed(4)}% (${score.span.toLocaleString('en-US')} characters)`;
      const how = flags.stateful
        ? 'read as carried streams'
        : `each from the ${meta.maxlen} before it from a zero state`;
      if (flags.json) {
        writeOut(
          JSON.stringify({
            model: flags.model,
            corpus: corpus.name,
            ...(flags.all ? { all: true } : { valSplit }),
            every: flags.every,
            stateful: Boolean(flags.stateful),
            span: score.span,
            scored: score.windows,
            loss: score.loss,
            bpc: score.bpc,
            perplexity: score.perplexity,
          }) + '\n',
        );
        return;
      }
      writeOut(
        `${corpus.name}, ${part}: ${everyNth(flags.every)} scored (${score.windows.toLocaleString('en-US')}), ${how}\n` +
          `loss ${score.loss.toFixed(4)} nats/char, ${score.bpc.toFixed(3)} bits/char, perplexity ${score.perplexity.toFixed(2)}\n`,
      );
    });
}
