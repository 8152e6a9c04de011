import type { KernelExports } from './kernels.ts';

// Lays out buffers in one wasm instance's memory. All reservations happen first, then the
// memory grows once; typed-array views are made afterwards (growing memory detaches them).

/** Cache-line alignment for every buffer. */
export const ARENA_ALIGN = 64;
/** The first page belongs to the module's own (unused) static data. */
export const ARENA_BASE = 65536;
const ALIGN = ARENA_ALIGN;
const BASE = ARENA_BASE;

export class Arena {
  private top = BASE;
  private buffer: ArrayBuffer | undefined;
  constructor(readonly k: KernelExports) {}

  /** Reserve `n` 4-byte elements; returns the byte address. */
  reserve(n: number): number {
    const ptr = this.top;
    this.top += Math.ceil((n * 4) / ALIGN) * ALIGN;
    return ptr;
  }

  /** Bytes laid out so far (the first free address). */
  get bytes(): number {
    return this.top;
  }

  /** Grow the memory to hold everything reserved so far. */
  commit(): void {
    const need = Math.ceil(this.top / 65536) - this.k.memory.buffer.byteLength / 65536;
    if (need > 0) this.k.memory.grow(need);
    this.buffer = this.k.memory.buffer as ArrayBuffer;
  }

  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.mem(), ptr, n);
  }

  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.mem(), ptr, n);
  }

  private mem(): ArrayBuffer {
    const b = this.k.memory.buffer as ArrayBuffer;
    if (b !== this.buffer) throw new Error('arena used before commit()');
    return b;
  }
}
