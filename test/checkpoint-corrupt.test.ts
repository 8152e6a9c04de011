import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import {
  CHECKPOINT_FILE,
  PREVIOUS_CHECKPOINT_FILE,
  decodeCheckpoint,
  encodeCheckpoint,
  loadCheckpoint,
} from '../src/checkpoint/train-checkpoint.ts';
import { UserError } from '../src/errors.ts';

// A damaged checkpoint is called corrupt, whichever byte was hit, and the advice names the
// previous checkpoint only when there is one to use (issue 11, item 11).

const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-ckpt-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const DATA = {
  state: { epoch: 3, note: 'x' },
  params: Float32Array.from([1, 2, 3, 4, 5]),
  optimizerState: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]),
};
const GOOD = encodeCheckpoint(DATA);

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UserError, `a UserError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    return e.message;
  }
  assert.fail('no error');
}

describe('corrupt checkpoints', () => {
  it('a good checkpoint decodes', () => {
    const d = decodeCheckpoint(GOOD, 'c.ckpt');
    assert.deepEqual(d.params, DATA.params);
    assert.deepEqual(d.optimizerState, DATA.optimizerState);
    assert.equal(d.state.epoch, 3);
  });

  it('a one-byte flip anywhere in the header (or elsewhere) is reported as corrupt', () => {
    const offsets = [...Array(16).keys(), 20, GOOD.length >> 1, GOOD.length - 1];
    for (const at of offsets) {
      for (const mask of [0x01, 0xff]) {
        const bytes = Buffer.from(GOOD);
        bytes[at] = bytes[at]! ^ mask;
        const msg = message(() => decodeCheckpoint(bytes, 'c.ckpt'));
        assert.match(msg, /^checkpoint c\.ckpt is corrupt \(/, `byte ${at} ^ ${mask}: ${msg}`);
        assert.doesNotMatch(msg, /65537|version 16777217|version 257\b/, msg);
      }
    }
    // the flip of the issue: byte 10 (the version's third byte) read as "format version 65537"
    const bytes = Buffer.from(GOOD);
    bytes[10] = 1;
    assert.equal(
      message(() => decodeCheckpoint(bytes, 'c.ckpt')),
      'checkpoint c.ckpt is corrupt (checksum mismatch)',
    );
  });

  it('an intact file of another format version is named by its version', () => {
    const bytes = Buffer.from(GOOD);
    bytes.writeUInt32LE(2, 8);
    const body = bytes.subarray(0, bytes.length - 32);
    createHash('sha256')
      .update(body)
      .digest()
      .copy(bytes, bytes.length - 32);
    assert.equal(
      message(() => decodeCheckpoint(bytes, 'c.ckpt')),
      'checkpoint c.ckpt is format version 2; this charlstm reads version 1',
    );
  });

  it('something that is not a checkpoint, or is cut short, says so', () => {
    assert.equal(
      message(() => decodeCheckpoint(Buffer.from('{"hello": "world"}\n'.repeat(5)), 'c.ckpt')),
      'checkpoint c.ckpt is not a charlstm checkpoint',
    );
    assert.equal(
      message(() => decodeCheckpoint(Buffer.alloc(0), 'c.ckpt')),
      'checkpoint c.ckpt is not a charlstm checkpoint',
    );
    assert.equal(
      message(() => decodeCheckpoint(GOOD.subarray(0, 20), 'c.ckpt')),
      'checkpoint c.ckpt is corrupt (cut short: 20 bytes)',
    );
  });

  it('the advice names the previous checkpoint only when there is a usable one', async () => {
    const damaged = Buffer.from(GOOD);
    damaged[10] = 1;
    const reject = async (dir: string): Promise<string> => {
      try {
        await loadCheckpoint(dir);
      } catch (e) {
        assert.ok(e instanceof UserError);
        return e.message;
      }
      return assert.fail('loaded');
    };

    const alone = path.join(tmp, 'alone');
    await mkdir(alone);
    await writeFile(path.join(alone, CHECKPOINT_FILE), damaged);
    const file = path.join(alone, CHECKPOINT_FILE);
    assert.equal(
      await reject(alone),
      `checkpoint ${file} is corrupt (checksum mismatch); there is no previous checkpoint (${PREVIOUS_CHECKPOINT_FILE}) to fall back on`,
    );

    const withPrev = path.join(tmp, 'with-prev');
    await mkdir(withPrev);
    await writeFile(path.join(withPrev, CHECKPOINT_FILE), damaged);
    await writeFile(path.join(withPrev, PREVIOUS_CHECKPOINT_FILE), GOOD);
    const prev = path.join(withPrev, PREVIOUS_CHECKPOINT_FILE);
    assert.equal(
      await reject(withPrev),
      `checkpoint ${path.join(withPrev, CHECKPOINT_FILE)} is corrupt (checksum mismatch); the previous checkpoint is kept at ${prev}: copy it over ${path.join(withPrev, CHECKPOINT_FILE)} to resume from it`,
    );

    const bothBad = path.join(tmp, 'both-bad');
    await mkdir(bothBad);
    await writeFile(path.join(bothBad, CHECKPOINT_FILE), damaged);
    await writeFile(path.join(bothBad, PREVIOUS_CHECKPOINT_FILE), damaged);
    assert.match(
      await reject(bothBad),
      /is corrupt \(checksum mismatch\); the previous checkpoint .*checkpoint\.prev\.ckpt is not usable either$/,
    );
  });
});
