import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { CommanderError, InvalidArgumentError, type Command } from 'commander';

import { generateCommand } from '../src/cli/generate-command.ts';
import { integerIn, parseFraction, parsePort, parsePositive } from '../src/cli/options.ts';
import { predictCommand } from '../src/cli/predict-command.ts';
import { serveCommand } from '../src/cli/serve-command.ts';
import { trainCommand } from '../src/cli/train-command.ts';
import { UserError } from '../src/errors.ts';
import { PRESETS } from '../src/train/presets.ts';
import { checkSettings } from '../src/train/settings.ts';
import { charlstm } from './helpers/cli.ts';

// One strict reading of every number on the command line: hex, binary, empty and blank values,
// fractions where a whole number is wanted, and out-of-range values are refused by every option,
// the same way (issue 11, item 10).

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-options-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Parse `args` with `cmd` (options only, no action): the value, or the reason it was refused. */
function parse(
  cmd: Command,
  args: string[],
): { opts: Record<string, unknown> } | { error: string } {
  let error = '';
  cmd.exitOverride().configureOutput({ writeErr: (s) => (error += s), writeOut: () => {} });
  try {
    cmd.parseOptions(args);
    return { opts: cmd.opts() };
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    assert.equal(err.code, 'commander.invalidArgument', err.message);
    return { error: error || err.message };
  }
}

const BAD_INTEGERS = ['0x10', '0b1', '0o7', '', ' ', '1.5', '1_0', 'Infinity', 'NaN', '16abc'];

describe('integer options', () => {
  it('integerIn reads decimal integers only, within its range', () => {
    const p = integerIn('threads', 0, 64);
    assert.equal(p('16'), 16);
    assert.equal(p(' 16 '), 16);
    assert.equal(p('0'), 0);
    assert.ok(Object.is(p('-0'), 0), '-0 reads as 0');
    for (const bad of [...BAD_INTEGERS, '-1', '65', '1e9']) {
      assert.throws(
        () => p(bad),
        (e: unknown) =>
          e instanceof InvalidArgumentError &&
          e.message === 'threads must be an integer from 0 to 64.',
        `threads ${JSON.stringify(bad)}`,
      );
    }
    assert.equal(parsePort('8080'), 8080);
    assert.throws(() => parsePort('0x50'), /The port must be an integer from 0 to 65535/);
    assert.throws(() => parsePort('65536'), /The port/);
  });

  it('fractions and positive numbers take no hex or empty value', () => {
    assert.equal(parseFraction('0.25'), 0.25);
    assert.equal(parsePositive('1e-3'), 0.001);
    for (const bad of ['0x0', '', ' ', '0b0', '1', '-0.1', 'Infinity']) {
      assert.throws(() => parseFraction(bad), /fraction/, `fraction ${JSON.stringify(bad)}`);
    }
    for (const bad of ['0x1', '', ' ', '0', '-1', 'Infinity', '1e999']) {
      assert.throws(() => parsePositive(bad), /positive/, `positive ${JSON.stringify(bad)}`);
    }
  });

  // every option of every command that takes a whole number
  const counts: [string, () => Command, string[], string[]][] = [
    ['train', trainCommand, ['--threads', '--port', '--sample-length'], []],
    [
      'train',
      trainCommand,
      ['--epochs', '--batch-size', '--units', '--layers', '--maxlen', '--step'],
      ['--early-stop', '--checkpoint-every', '--seed'],
    ],
    ['serve', serveCommand, ['--port', '--max-length', '--max-streams', '--threads'], []],
    ['generate', generateCommand, ['--length', '--top-k', '--seed', '--threads'], []],
    ['predict', predictCommand, ['--top'], []],
  ];
  for (const [name, make, flags, more] of counts) {
    for (const flag of [...flags, ...more]) {
      it(`${name} ${flag} refuses hex, empty and fractional values`, () => {
        for (const bad of BAD_INTEGERS) {
          const r = parse(make(), [flag, bad]);
          assert.ok('error' in r, `${name} ${flag} ${JSON.stringify(bad)} was accepted`);
          assert.match(r.error, new RegExp(`${flag} <[a-z]+>' argument '${bad}' is invalid`));
        }
      });
    }
  }

  it('train --dropout, --val-split, --lr, --clip and --time-budget refuse hex and empty values', () => {
    for (const flag of ['--dropout', '--val-split', '--lr', '--clip', '--time-budget']) {
      for (const bad of ['0x0', '0x1', '', ' ']) {
        const r = parse(trainCommand(), [flag, bad]);
        assert.ok('error' in r, `train ${flag} ${JSON.stringify(bad)} was accepted`);
      }
    }
  });

  it('a good value still parses to its number', () => {
    const r = parse(trainCommand(), ['--threads', '2', '--port', '0', '--sample-length', '10']);
    assert.ok('opts' in r);
    assert.equal(r.opts.threads, 2);
    assert.equal(r.opts.port, 0);
    assert.equal(r.opts.sampleLength, 10);
  });

  it('serve and generate --threads take 1 or 2', () => {
    for (const make of [serveCommand, generateCommand]) {
      const good = parse(make(), ['--threads', '1']);
      assert.ok('opts' in good);
      assert.equal(good.opts.threads, 1);
      for (const bad of ['0', '3']) {
        const r = parse(make(), ['--threads', bad]);
        assert.ok('error' in r, `--threads ${bad} was accepted`);
        assert.match(r.error, /The thread count must be an integer from 1 to 2/);
      }
    }
  });

  it('charlstm train --threads 0x10 is one usage-error line, exit code 2', () => {
    const corpus = path.join(tmp, 'small.txt');
    writeFileSync(corpus, 'the quick brown fox jumps over the lazy dog. '.repeat(20));
    for (const value of ['0x10', '']) {
      const r = charlstm(['train', '--corpus', corpus, '--dry-run', '--threads', value]);
      assert.equal(r.code, 2, `--threads ${JSON.stringify(value)}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `charlstm: error: option '--threads <n>' argument '${value}' is invalid. threads must be an integer from 0 to 64.\n`,
      );
    }
  });
});

describe('--preset', () => {
  it('refuses an unknown name, listing each preset with its settings as PRESETS has them', () => {
    const r = parse(trainCommand(), ['--preset', 'tiny']);
    assert.ok('error' in r, '--preset tiny was accepted');
    const p = PRESETS['ten-minutes'];
    assert.match(
      r.error,
      /argument 'tiny' is invalid\. Presets: default \(.+\), reference \(.+\), ten-minutes \(/,
    );
    for (const words of [
      `${p.layers} × LSTM(${p.units})`,
      `dropout ${p.dropout}`,
      `cosine lr ${p.learningRate}`,
      `${p.timeBudget} s of training`,
    ]) {
      assert.ok(r.error.includes(words), `${words} missing from: ${r.error}`);
    }
    assert.equal(r.error.trim().split('\n').length, 1, r.error);
  });
});

describe('settings given as values (the web app form)', () => {
  it('checkSettings applies the flags’ own parsers and names the setting and the value', () => {
    checkSettings({ units: 64, maxlen: 40, stride: 3, learningRate: 0.01 }); // all good: no throw
    const refused = (given: Parameters<typeof checkSettings>[0], labels = {}): string => {
      try {
        checkSettings(given, labels);
      } catch (err) {
        assert.ok(err instanceof UserError, String(err));
        return err.message;
      }
      assert.fail(`accepted ${JSON.stringify(given)}`);
    };
    assert.equal(
      refused({ units: 6 }),
      'units 6 is invalid: units must be a multiple of 4, at most 4096.',
    );
    assert.equal(
      refused({ maxlen: 2.5 }, { maxlen: 'window length' }),
      'window length 2.5 is invalid: The count must be an integer >= 1.',
    );
    assert.match(refused({ learningRate: -1 }), /^learningRate -1 is invalid: .*positive/);
    assert.match(refused({ stride: Number.NaN }), /^stride NaN is invalid/);
  });
});
