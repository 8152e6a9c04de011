import { Command, Option } from 'commander';

import { withPreset } from '../train/presets.ts';
import { cliParser } from './options.ts';
import {
  TRAIN_OPTIONS,
  type Setting,
  type TrainProcessOptions,
  type TrainRunConfig,
} from '../train/settings.ts';

// `charlstm train`: the reference pipeline (Deep Learning with Python 8.1) end to end. Its
// options are the rows of src/train/settings.ts, each with its default from src/defaults.ts.

function commanderOption(row: Setting): Option {
  const option = new Option(row.flags, row.help);
  if (row.parse) option.argParser(cliParser(row.parse));
  if (row.choices) option.choices(row.choices as string[]);
  // a default the help text states itself is applied after the preset instead (valSplit)
  if (row.default !== undefined && row.helpDefault !== false)
    option.default(row.default, row.helpDefault);
  return option;
}

export function trainCommand(): Command {
  const cmd = new Command('train').description(
    'train a model on a corpus, printing samples after every epoch (the reference pipeline)',
  );
  // commander names each value after its flag (--lr: `lr`); the table's key is the setting's name
  const options = Object.entries(TRAIN_OPTIONS).map(
    ([key, row]) => [key, commanderOption(row)] as const,
  );
  for (const [, option] of options) cmd.addOption(option);
  return cmd.action(async function (this: Command) {
    const { runTrain } = await import('../train/run.ts');
    const given: Record<string, unknown> = {};
    const explicit = new Set<string>(); // given on the command line: they win over the preset
    for (const [key, option] of options) {
      given[key] = this.getOptionValue(option.attributeName());
      if (this.getOptionValueSource(option.attributeName()) === 'cli') explicit.add(key);
    }
    const values = given as TrainRunConfig & TrainProcessOptions;
    const config = withPreset(values, values.preset ?? 'default', explicit);
    for (const [key, row] of Object.entries(TRAIN_OPTIONS) as [string, Setting][]) {
      if (row.helpDefault === false) (config as Record<string, unknown>)[key] ??= row.default;
    }
    const { dashboard, port, host, ...rest } = config;
    const command = ['charlstm', ...process.argv.slice(2)].map(shellWord).join(' ');
    await runTrain({
      ...rest,
      ...(dashboard && { dashboard: { port, host } }),
      explicit,
      command,
    });
  });
}

/** `word` as a POSIX shell reads it back: bare when safe, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
