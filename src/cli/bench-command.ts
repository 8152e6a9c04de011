import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

import { UserError } from '../errors.ts';

// `charlstm bench`: the same benchmark as `npm run bench`. It compares against TensorFlow.js, a
// development dependency, so it runs from a checkout of the repository (bench/bench.ts). Without
// --write it prints the README's Performance table and changes nothing; --write also writes
// docs/bench-latest.json and rewrites the README's bench blocks from it.

interface BenchFlags {
  write?: boolean;
  json?: boolean;
  quick?: boolean;
  tfjsCpu: boolean;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'measure training and generation speed against TensorFlow.js (needs a repository checkout)',
    )
    .option('--write', "write docs/bench-latest.json and the README's bench blocks from it")
    .option('--json', 'print the figures as JSON')
    .option('--quick', 'shorter timed runs, a smaller train process')
    .option('--no-tfjs-cpu', "skip TF.js's slow pure-JS backend")
    .action(async (flags: BenchFlags) => {
      const root = fileURLToPath(new URL('../..', import.meta.url));
      const script = `${root}bench/bench.ts`;
      if (!existsSync(script) || !existsSync(`${root}node_modules/tsx`)) {
        throw new UserError(
          `the benchmark runs from a repository checkout with its dev dependencies (npm ci && npm run bench); ${script} not found`,
        );
      }
      const args = ['--import', 'tsx', script];
      if (flags.write) args.push('--write');
      if (flags.json) args.push('--json');
      if (flags.quick) args.push('--quick');
      if (!flags.tfjsCpu) args.push('--no-tfjs-cpu');
      const code = await new Promise<number>((resolve) => {
        spawn(process.execPath, args, { cwd: root, stdio: 'inherit' }).on('exit', (c) =>
          resolve(c ?? 1),
        );
      });
      process.exitCode = code;
    });
}
