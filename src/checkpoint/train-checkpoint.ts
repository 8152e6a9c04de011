import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { UserError, writeFailure } from '../errors.ts';

// A training checkpoint: everything needed to continue a run bit for bit — weights, optimizer
// state, generator states, the position in the epoch, the whole configuration — in one file:
//
//   magic "CLSTMCK\0" (8 bytes) | version u32 | json length u32 | json (UTF-8, padded to 4)
//   | params f32[P] | optimizer state f32[k·P] | sha256 of everything before (32 bytes)
// (k = "slots" in the json: 1 for RMSprop's mean square, 2 for Adam's m and v; absent means 1)
//
// Written to a temporary file, fsynced, then renamed over `checkpoint.ckpt` after the previous
// one is moved to `checkpoint.prev.ckpt`: a kill at any moment leaves at least one whole
// checkpoint, and a corrupt file is detected by its checksum and refused by name.

export const CHECKPOINT_FILE = 'checkpoint.ckpt';
export const PREVIOUS_CHECKPOINT_FILE = 'checkpoint.prev.ckpt';
const MAGIC = Buffer.from('CLSTMCK\0', 'latin1');
const VERSION = 1;

export interface CheckpointData {
  /** JSON-safe state: configuration, trainer state, generator states, best score… */
  state: Record<string, unknown>;
  params: Float32Array;
  /** the optimizer's state: a whole number of parameter-sized slots */
  optimizerState: Float32Array;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function encodeCheckpoint(data: CheckpointData): Buffer {
  const slots = data.optimizerState.length / data.params.length;
  if (!(Number.isInteger(slots) && slots >= 1))
    throw new RangeError('the optimizer state is not a whole number of parameter-sized slots');
  const json = Buffer.from(
    JSON.stringify({ ...data.state, size: data.params.length, ...(slots > 1 && { slots }) }),
    'utf8',
  );
  const pad = (4 - (json.length % 4)) % 4;
  const head = Buffer.alloc(16);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(VERSION, 8);
  head.writeUInt32LE(json.length + pad, 12);
  const body = Buffer.concat([
    head,
    json,
    Buffer.alloc(pad, 0x20), // spaces: still valid JSON when parsed with the padding
    Buffer.from(data.params.buffer, data.params.byteOffset, data.params.byteLength),
    Buffer.from(
      data.optimizerState.buffer,
      data.optimizerState.byteOffset,
      data.optimizerState.byteLength,
    ),
  ]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

export function decodeCheckpoint(buf: Buffer, file: string): CheckpointData {
  const bad = (why: string): UserError => new UserError(`checkpoint ${file} is ${why}`);
  // A file that does not start like a checkpoint at all is something else; one that mostly does
  // but fails a check (a damaged byte in the magic, version or lengths) is a corrupt checkpoint,
  // and is reported as such rather than as, say, "format version 65537".
  const magicBytes = MAGIC.reduce((n, b, i) => n + (buf[i] === b ? 1 : 0), 0);
  if (magicBytes < MAGIC.length - 2) throw bad('not a charlstm checkpoint');
  if (buf.length < 16 + 32) throw bad(`corrupt (cut short: ${buf.length} bytes)`);
  const body = buf.subarray(0, buf.length - 32);
  const intact = createHash('sha256')
    .update(body)
    .digest()
    .equals(buf.subarray(buf.length - 32));
  const version = buf.readUInt32LE(8);
  if (!intact) {
    // only a whole file (its checksum right) can be trusted to be of another format version
    const newer =
      magicBytes === MAGIC.length && version > VERSION && version < 256
        ? `, or written by a newer charlstm (format version ${version}; this one reads ${VERSION})`
        : '';
    throw bad(`corrupt (checksum mismatch${newer})`);
  }
  if (magicBytes !== MAGIC.length) throw bad('corrupt (damaged header)');
  if (version !== VERSION)
    throw bad(`format version ${version}; this charlstm reads version ${VERSION}`);
  const jsonLen = buf.readUInt32LE(12);
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(buf.subarray(16, 16 + jsonLen).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw bad('corrupt (unreadable state)');
  }
  const size = state.size;
  const slots = state.slots ?? 1;
  if (
    typeof size !== 'number' ||
    typeof slots !== 'number' ||
    16 + jsonLen + size * 4 * (1 + slots) !== body.length
  )
    throw bad('corrupt (wrong size)');
  const floats = new Float32Array(
    body.buffer.slice(body.byteOffset + 16 + jsonLen, body.byteOffset + body.length),
  );
  return {
    state,
    params: floats.slice(0, size),
    optimizerState: floats.slice(size, (1 + slots) * size),
  };
}

// Tests set CHARLSTM_TEST_KILL_DURING_SAVE=N to SIGKILL the process in the middle of its Nth save.
const killDuringSave = Number(process.env.CHARLSTM_TEST_KILL_DURING_SAVE ?? 0);
let saves = 0;

export async function saveCheckpoint(dir: string, data: CheckpointData): Promise<void> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, CHECKPOINT_FILE);
  const tmp = path.join(dir, `.${CHECKPOINT_FILE}.${process.pid}.tmp`);
  const bytes = encodeCheckpoint(data);
  try {
    const fh = await open(tmp, 'w');
    try {
      if (++saves === killDuringSave) {
        // fault injection for the tests: die with the new checkpoint half written
        await fh.write(bytes.subarray(0, bytes.length >> 1));
        await fh.sync();
        process.kill(process.pid, 'SIGKILL');
      }
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    // a half-written temporary file would only eat the space that is left
    await rm(tmp, { force: true });
    throw writeFailure(err, file, 'the previous checkpoint is kept');
  }
  // keep the last good checkpoint until the new one is in place
  await rename(file, path.join(dir, PREVIOUS_CHECKPOINT_FILE)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await rename(tmp, file);
  await fsyncDir(dir);
}

export async function loadCheckpoint(dir: string): Promise<CheckpointData> {
  const file = path.join(dir, CHECKPOINT_FILE);
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      // a kill between the two renames of a save leaves only the previous checkpoint
      const prev = path.join(dir, PREVIOUS_CHECKPOINT_FILE);
      const prevBuf = await readFile(prev).catch(() => undefined);
      if (prevBuf) return decodeCheckpoint(prevBuf, prev);
      throw new UserError(`no checkpoint to resume from: ${file} not found`);
    }
    throw new UserError(`cannot read checkpoint ${file}: ${(e as Error).message}`);
  }
  try {
    return decodeCheckpoint(buf, file);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${e.message}; ${await previousAdvice(dir)}`);
    throw e;
  }
}

/** What to do about a bad checkpoint: the previous one, only when there is a usable one. */
async function previousAdvice(dir: string): Promise<string> {
  const prev = path.join(dir, PREVIOUS_CHECKPOINT_FILE);
  const file = path.join(dir, CHECKPOINT_FILE);
  let prevBuf: Buffer;
  try {
    prevBuf = await readFile(prev);
  } catch {
    return `there is no previous checkpoint (${PREVIOUS_CHECKPOINT_FILE}) to fall back on`;
  }
  try {
    decodeCheckpoint(prevBuf, prev);
  } catch {
    return `the previous checkpoint ${prev} is not usable either`;
  }
  return `the previous checkpoint is kept at ${prev}: copy it over ${file} to resume from it`;
}
