import { InvalidArgumentError, Option } from 'commander';

import * as values from '../values.ts';

// The value parsers of src/values.ts as commander wants them: a ValueError becomes commander's
// InvalidArgumentError, which commander reports as `option '--x <v>' argument 'bad' is invalid.
// <reason>` and then exits with a usage error.

/** `parse` for commander: its ValueError as an InvalidArgumentError, anything else unchanged. */
export function cliParser<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      if (err instanceof values.ValueError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

export const integerIn = (what: string, min: number, max: number): ((text: string) => number) =>
  cliParser(values.integerIn(what, min, max));
export const parsePositive = cliParser(values.parsePositive);
export const parseFraction = cliParser(values.parseFraction);
export const parsePort = cliParser(values.parsePort);
export const parseTemperature = cliParser(values.parseTemperature);
export const parseLength = cliParser(values.parseLength);
export const parseTopK = cliParser(values.parseTopK);
export const parseTopP = cliParser(values.parseTopP);
export const parseSeed = cliParser(values.parseSeed);
export const parseCount = cliParser(values.parseCount);

/** --threads, as generate and serve take it (CharModel.load's `threads`). */
export function threadsOption(): Option {
  return new Option(
    '--threads <n>',
    "threads of the native engine's larger products, 1 or 2 (default: 2 on a machine with two " +
      'cores or more; the same text either way)',
  ).argParser(integerIn('The thread count', 1, 2));
}
