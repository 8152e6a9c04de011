// The few protocol-buffer wire-format writes that an ONNX file needs (onnx.ts), so that exporting
// costs no dependency: varint fields (wire type 0), length-delimited fields (wire type 2: strings,
// bytes, nested messages). Repeated scalars are written unpacked, one field each, as proto2
// writers do for onnx.proto (which asks for no packing); every protobuf reader accepts that.
// Pure (no Node APIs).

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;

const utf8 = new TextEncoder();

/** One message being written: its encoded fields in order; nested messages are written first. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }

  private key(field: number, wire: number): this {
    return this.push(varint(field * 8 + wire));
  }

  /** An integer field (int32, int64, enum) of a non-negative value below 2^53. */
  int(field: number, value: number): this {
    return this.key(field, WIRE_VARINT).push(varint(value));
  }

  /** A repeated integer field, one entry per value. */
  ints(field: number, values: readonly number[]): this {
    for (const v of values) this.int(field, v);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    return this.key(field, WIRE_LENGTH_DELIMITED).push(varint(value.length)).push(value);
  }

  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  /** A repeated string field, one entry per value. */
  strings(field: number, values: readonly string[]): this {
    for (const v of values) this.string(field, v);
    return this;
  }

  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish());
  }

  /** The message's bytes. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** Base-128 varint of a non-negative integer below 2^53 (JS numbers; no negative int64 needed). */
function varint(value: number): Uint8Array {
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw new RangeError(`protobuf varint must be a non-negative safe integer, got ${value}`);
  }
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80); // not >>>: values above 2^32 stay exact
  }
  out.push(v);
  return Uint8Array.from(out);
}
