import { Command, CommanderError } from 'commander';

import { CHARLSTM_VERSION } from '../checkpoint/model-format.ts';
import { UserError } from '../errors.ts';
import { benchCommand } from './bench-command.ts';
import { evalCommand } from './eval-command.ts';
import { exportCommand } from './export-command.ts';
import { generateCommand } from './generate-command.ts';
import { importCommand } from './import-command.ts';
import { modelsCommand } from './models-command.ts';
import { OutputClosed, exitQuietlyOnClosedStdout } from './output.ts';
import { predictCommand } from './predict-command.ts';
import { serveCommand } from './serve-command.ts';

// The charlstm command line. Command files only declare their options and load the library
// (engine, wasm) inside their action, so `--help` and usage errors answer at once.
//
// Exit codes: 0 success (and help, version, a closed stdout), 2 bad input (UserError, usage
// errors, invalid option values) printed as one line `charlstm: error: <message>`, 1 a bug in
// charlstm printed as `charlstm: internal error: <message>` (the stack with CHARLSTM_DEBUG=1).

const PROGRAM = 'charlstm';
const USAGE_EXIT = 2;

const oneLine = (s: string) => s.trim().replace(/\s*\n\s*/g, ' ');

function printError(message: string): void {
  process.stderr.write(`${PROGRAM}: error: ${oneLine(message)}\n`);
}

async function buildProgram(): Promise<Command> {
  const program = new Command(PROGRAM)
    .description('Character-level LSTM language models: train on any text, generate in its style.')
    .version(CHARLSTM_VERSION, '-V, --version');
  program.addCommand(generateCommand());
  program.addCommand(predictCommand());
  program.addCommand(evalCommand());
  program.addCommand(serveCommand());
  program.addCommand(modelsCommand());
  program.addCommand(exportCommand());
  program.addCommand(importCommand());
  program.addCommand(benchCommand());
  program.addCommand((await import('./train-command.ts')).trainCommand());

  // Commands built with `new Command()` and added later do not inherit these settings, so set
  // them on every command in the tree: errors go through printError, and nothing calls
  // process.exit behind our back (commander throws a CommanderError instead).
  const output = {
    outputError: (str: string) => printError(str.replace(/^error:\s*/, '')),
  };
  const configure = (cmd: Command): void => {
    cmd.configureOutput(output).exitOverride();
    cmd.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** The exit code for an error that escaped a command, after reporting it. */
function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // Its message was already printed through outputError (or is help/version text).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
    return USAGE_EXIT; // usage errors, and help shown because no command was given
  }
  if (err instanceof OutputClosed) return 0;
  if (err instanceof UserError) {
    printError(err.message);
    return err.exitCode;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`${PROGRAM}: internal error: ${oneLine(e.message)}\n`);
  if (process.env.CHARLSTM_DEBUG === '1' && e.stack) process.stderr.write(`${e.stack}\n`);
  return 1;
}

async function main(argv: string[]): Promise<void> {
  exitQuietlyOnClosedStdout();
  try {
    const program = await buildProgram();
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = report(err);
  }
}

await main(process.argv);
