import { UserError } from '../errors.ts';

// Float32Array ↔ base64, for the float arrays a checkpoint carries inside its JSON (stateful
// mode's carried LSTM state, TrainerState.carried). Through btoa/atob, not Buffer: the browser's
// training worker bundles the trainer, which uses these.

export function toBase64(a: Float32Array): string {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** Decode `s` into `into`; a length that does not match is a UserError (a damaged checkpoint). */
export function fromBase64(s: string, into: Float32Array): void {
  const bin = atob(s);
  if (bin.length !== into.byteLength) {
    throw new UserError(
      `checkpoint's carried state has ${bin.length} bytes, expected ${into.byteLength}`,
    );
  }
  const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
}
