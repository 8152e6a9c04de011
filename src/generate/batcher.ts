import type { LstmCore } from '../engine/lstm-core.ts';
import type { CharModel } from '../model/char-model.ts';
import { stateSize } from '../model/params.ts';
import type { Rng } from '../sampling/rng.ts';
import type { Sampler } from '../sampling/sampler.ts';
import { Drawer } from './stateful.ts';
import { TokenWindow } from './window.ts';

// Continuous batching: every generation running on one model advances in the same steps. A step
// gathers the streams that are ready into one batch, runs one batched forward pass ([B] tokens
// through the carried states for stateful streams; [B × window] from a zero state for window
// mode), and draws each row with its own sampler and Rng. Streams join and leave between steps.
//
// A stream's text is exactly what it gives alone: each row's arithmetic does not depend on the
// other rows (every kernel computes a row from that row alone, in the same order, whatever the
// batch), and each stream draws from its own Rng. So the schedule (who else is running, how the
// steps are cut into ticks, how fast the consumer reads) changes when characters come, never
// which ones.
//
// A stateful stream joins the batch at once, its prompt read first, all but the last character,
// on a core of its own (prefill: a burst of new streams reads its prompts together, one batched
// step per character, instead of one prompt after the other); the batch's next step feeds the
// prompt's last character, and the row draws from then on. The batch core's rows are the running streams in a fixed order; when
// one leaves or joins, the rows are re-laid once (their states copied out and back), not at
// every step.
//
// The scheduler runs in ticks of about TICK_MS: as many steps as fit, then a turn of the event
// loop, so that I/O, timers and the streams' consumers run. A stream holds at most `buffer`
// characters its consumer has not read; when full it sits out the steps (its state parked) until
// the consumer reads, so a slow reader costs nothing and holds no memory beyond that.

/** The scheduler steps for about this long before it yields to the event loop (ms). */
const TICK_MS = 2;

/**
 * Let other work run (I/O, timers, other streams, a Web Worker's incoming messages). Browsers
 * have no setImmediate, and nested setTimeout(0) waits at least 4 ms, so there a message to a
 * MessageChannel of our own is the macrotask (made at first use).
 */
export const nextTurn: () => Promise<void> =
  typeof setImmediate === 'function'
    ? () => new Promise((resolve) => setImmediate(resolve))
    : channelTurn();

function channelTurn(): () => Promise<void> {
  let channel: MessageChannel | undefined;
  const waiting: (() => void)[] = [];
  return () =>
    new Promise((resolve) => {
      if (!channel) {
        channel = new MessageChannel();
        channel.port1.onmessage = () => waiting.shift()?.();
      }
      waiting.push(resolve);
      channel.port2.postMessage(null);
    });
}

export interface BatchJob {
  mode: 'window' | 'stateful';
  /** The prompt's token ids (window mode: at least one). */
  prompt: Int32Array;
  sampler: Sampler;
  rng: Rng;
  /** Characters to generate. */
  length: number;
  /**
   * A read waits for `chunk` characters, or `chunkMs` since the last read, or the end; the first
   * characters come at once (a chunk of what is there at the end of their tick).
   */
  chunk: number;
  chunkMs: number;
  /** Unread characters a stream may hold before it waits for its consumer (at least `chunk`). */
  buffer: number;
}

/**
 * What one batched step ran: its rows, and which kind of pass ('prefill': prompt characters of
 * joining stateful streams, no distribution).
 */
export type StepObserver = (rows: number, mode: 'window' | 'stateful' | 'prefill') => void;
const observers = new Set<StepObserver>();

/** Be told the size of every batched step on every model (e.g. a metrics histogram); returns the unsubscribe. */
export function observeSteps(fn: StepObserver): () => void {
  observers.add(fn);
  return () => void observers.delete(fn);
}

class Row {
  readonly drawer: Drawer;
  readonly out: Int32Array; // produced, not yet read: out[0..count)
  count = 0;
  produced = 0;
  finished = false;
  closed = false;
  error: unknown = undefined;
  wake: (() => void) | undefined; // the consumer waiting for characters
  delivered = false; // a read has returned characters
  since = performance.now(); // the last read that returned characters
  // stateful
  fed = 0; // prompt characters fed
  input = -1; // the token the next step feeds once the prompt is fed (the last one drawn)
  inCore = false; // has a row of the batch core
  h: Float32Array; // the state while outside the batch core [L×H]
  c: Float32Array;
  // window mode
  readonly window: TokenWindow | undefined;
  windowStep = 0; // the last window step that ran this stream

  constructor(
    model: CharModel,
    readonly job: BatchJob,
  ) {
    this.drawer = new Drawer(job.sampler, model.vocab.size);
    this.out = new Int32Array(job.buffer);
    const size = job.mode === 'stateful' ? stateSize(model.params.shape) : 0;
    this.h = new Float32Array(size);
    this.c = new Float32Array(size);
    this.window = job.mode === 'window' ? new TokenWindow(model.maxlen, job.prompt) : undefined;
    if (job.length === 0) this.finished = true;
    // no prompt: the first character comes from the zero state's distribution, before any step
    else if (job.mode === 'stateful' && job.prompt.length === 0) this.draw(model.zeroStateProbs());
  }

  /** Whether a read should return now (see BatchJob.chunk). */
  get due(): boolean {
    if (this.finished || this.error !== undefined || this.closed) return true;
    if (this.count === 0) return false;
    const { chunk, chunkMs } = this.job;
    return this.count >= chunk || !this.delivered || performance.now() - this.since >= chunkMs;
  }

  /** A window-mode stream that window step `step` should advance and has not yet. */
  waitsForWindowStep(step: number): boolean {
    return this.window !== undefined && this.ready && this.windowStep !== step;
  }

  /** Whether the next step should advance this stream. */
  get ready(): boolean {
    return !this.finished && !this.closed && this.count < this.out.length;
  }

  /** Draw the next character from `probs` [V] and hand it to the consumer. */
  draw(probs: Float32Array): void {
    const t = this.drawer.next(probs, this.job.rng);
    this.out[this.count++] = t;
    this.input = t;
    if (++this.produced === this.job.length) this.finished = true;
  }
}

/** One stream in a Batcher, read by its consumer. */
export class BatchedStream {
  constructor(
    private readonly batcher: Batcher,
    private readonly row: Row,
  ) {}

  /**
   * Wait for the stream's next characters and copy up to `out.length` of them into `out`;
   * returns how many, 0 once the stream is finished. Throws the signal's reason when aborted,
   * or what the model threw.
   */
  async read(out: Int32Array, signal?: AbortSignal): Promise<number> {
    const row = this.row;
    for (;;) {
      signal?.throwIfAborted();
      if (row.error !== undefined) throw row.error;
      if (row.closed) throw new Error('this stream is closed');
      if (row.count > 0 && row.due) {
        const n = Math.min(out.length, row.count);
        out.set(row.out.subarray(0, n));
        row.out.copyWithin(0, n, row.count);
        row.count -= n;
        row.delivered = true;
        row.since = performance.now();
        this.batcher.run(); // room again: it may have been waiting for this
        return n;
      }
      if (row.finished) return 0;
      this.batcher.run();
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal?.removeEventListener('abort', done);
          row.wake = undefined;
          resolve();
        };
        row.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Leave the batch (finished or not): its row is freed before the next step. Idempotent. */
  close(): void {
    this.batcher.remove(this.row);
  }
}

/** The scheduler of one model's generations (see the top of this file). */
export class Batcher {
  private readonly rows = new Set<Row>(); // every open stream, in the order they came
  private inCore: Row[] = []; // the stateful streams in the batch core, row i in row i
  private core: LstmCore | undefined;
  private running = false;
  private tokens = new Int32Array(0); // a stateful step's inputs [B]
  private hs = new Float32Array(0); // staging of the core's states [B×L×H]
  private cs = new Float32Array(0);
  private x = new Int32Array(0); // a window step's windows [B×W]
  private readonly group: Row[] = [];
  private windowSteps = 0; // window steps so far (Row.windowStep)
  private windowRows = 0; // open window-mode streams
  // a stream may be ready outside the batch core (new, or read since it was full): look for it
  private mayJoin = false;
  private firstChunk = false; // a stream not yet read has a whole chunk

  /** Use batcherFor: a model has one scheduler (two would share its batch core's rows). */
  constructor(readonly model: CharModel) {
    if (batchers.has(model)) throw new Error('this model has a Batcher already: use batcherFor');
    batchers.set(model, this);
  }

  /** Start a stream; it runs as soon as the scheduler's next tick, whether or not it is read. */
  submit(job: BatchJob): BatchedStream {
    if (!(Number.isInteger(job.chunk) && job.chunk >= 1 && job.buffer >= job.chunk))
      throw new RangeError(`need 1 <= chunk <= buffer, got ${job.chunk} and ${job.buffer}`);
    if (job.mode === 'window' && job.prompt.length === 0)
      throw new RangeError('a window-mode stream needs a prompt');
    const row = new Row(this.model, job);
    this.rows.add(row);
    if (row.window) this.windowRows++;
    this.run();
    return new BatchedStream(this, row);
  }

  /** Streams open (running, waiting for their consumer, or finished and not yet closed). */
  get size(): number {
    return this.rows.size;
  }

  /** @internal */
  remove(row: Row): void {
    if (row.closed) return;
    row.closed = true;
    this.rows.delete(row);
    if (row.window) this.windowRows--;
    row.wake?.();
  }

  /** @internal A stream was added or read: start the ticks, unless they run or nothing is ready. */
  run(): void {
    this.mayJoin = true;
    if (this.running || !this.anyReady()) return;
    this.running = true;
    void this.loop();
  }

  private anyReady(): boolean {
    for (const row of this.rows) if (row.ready) return true;
    return false;
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        await nextTurn(); // a tick starts on a turn of its own: the caller's code runs first
        if (!this.tick()) break;
      }
    } finally {
      this.running = false;
    }
    this.run(); // a stream may have become ready between the last tick and here
  }

  /** One tick: steps until TICK_MS has passed (at least one). Returns whether more is ready. */
  private tick(): boolean {
    const deadline = performance.now() + TICK_MS;
    try {
      // a stream's first chunk ends the tick early: the time to its first characters is then
      // what the chunk takes to make, as unbatched, rather than a whole tick
      this.firstChunk = false;
      do {
        if (this.stepStateful() + this.stepWindows() === 0) break;
      } while (performance.now() < deadline && !this.firstChunk);
    } catch (err) {
      this.fail(err);
    }
    for (const row of this.rows) if (row.due) row.wake?.();
    return this.anyReady();
  }

  /** The model threw (a bug, or memory): every open stream ends with that error. */
  private fail(err: unknown): void {
    for (const row of this.inCore) row.inCore = false;
    for (const row of this.rows) {
      row.error = err;
      row.finished = true;
    }
    this.inCore = [];
  }

  /** One step of every ready stateful stream; returns how many rows it ran. */
  private stepStateful(): number {
    const { inCore } = this;
    // the rows in place stay in place (in order); new ones go after them
    let same = true;
    const next: Row[] = [];
    for (const row of inCore) {
      if (row.ready) next.push(row);
      else same = false;
    }
    const kept = next.length;
    if (this.mayJoin) {
      this.mayJoin = false;
      const joining: Row[] = [];
      for (const row of this.rows) {
        if (row.job.mode === 'stateful' && row.ready && !row.inCore) joining.push(row);
      }
      this.prefill(joining);
      next.push(...joining);
    }
    if (next.length > kept) same = false;
    if (!same) this.relayRows(next);
    const n = next.length;
    if (n === 0) return 0;
    const core = this.core!;
    const { tokens } = this;
    for (let i = 0; i < n; i++) {
      const row = next[i]!;
      const { prompt } = row.job;
      tokens[i] = row.fed < prompt.length ? prompt[row.fed]! : row.input;
    }
    const p = core.step(tokens, n); // [n×V], a view until the next call on the core
    const V = this.model.vocab.size;
    for (let i = 0; i < n; i++) {
      const row = next[i]!;
      // a row still reading its prompt draws only after the prompt's last character
      if (row.fed < row.job.prompt.length && ++row.fed < row.job.prompt.length) continue;
      row.draw(p.subarray(i * V, (i + 1) * V));
      if (!row.delivered && (row.finished || row.count === row.job.chunk)) this.firstChunk = true;
    }
    for (const fn of observers) fn(n, 'stateful');
    return n;
  }

  /**
   * Feed the prompts of streams about to join the batch, all but each prompt's last character,
   * on the model's prefill core (no head: those characters need no distribution). A joining
   * stream then draws at its first batched step, instead of riding prompt-length steps of the
   * whole batch first: its time to first character was that many batch steps. Rows with as many
   * characters left go through together; each row's arithmetic is the batch step's (see
   * CharModel.batchStepCore), so the text does not change.
   */
  private prefill(rows: Row[]): void {
    const size = stateSize(this.model.params.shape);
    const left = (row: Row): number => row.job.prompt.length - 1 - row.fed;
    let todo = rows.filter((row) => left(row) > 0);
    while (todo.length > 0) {
      const R = left(todo[0]!);
      const group = todo.filter((row) => left(row) === R);
      todo = todo.filter((row) => left(row) !== R);
      const n = group.length;
      const core = this.model.prefillCore(n);
      const h = new Float32Array(n * size);
      const c = new Float32Array(n * size);
      group.forEach((row, i) => {
        h.set(row.h, i * size);
        c.set(row.c, i * size);
      });
      core.setState(h, c);
      const tokens = new Int32Array(n);
      for (let s = 0; s < R; s++) {
        for (let i = 0; i < n; i++) tokens[i] = group[i]!.job.prompt[group[i]!.fed + s]!;
        core.feed(tokens, n);
        for (const fn of observers) fn(n, 'prefill');
      }
      const state = core.getState(n);
      group.forEach((row, i) => {
        row.h.set(state.h.subarray(i * size, (i + 1) * size));
        row.c.set(state.c.subarray(i * size, (i + 1) * size));
        row.fed += R;
      });
    }
  }

  /**
   * Lay the batch core's rows out as `next`: the states of the rows there now are copied out to
   * their streams, then `next`'s are copied in (a stream joining from its prompt brings its own).
   */
  private relayRows(next: Row[]): void {
    const size = stateSize(this.model.params.shape);
    const old = this.inCore;
    if (old.length > 0) {
      const { h, c } = this.core!.getState(old.length);
      old.forEach((row, i) => {
        row.h.set(h.subarray(i * size, (i + 1) * size));
        row.c.set(c.subarray(i * size, (i + 1) * size));
        row.inCore = false;
      });
    }
    for (const row of next) row.inCore = true;
    this.inCore = next;
    const n = next.length;
    if (n === 0) return;
    this.core = this.model.batchStepCore(n);
    if (this.tokens.length < n) {
      const cap = this.core.cap.maxB;
      this.tokens = new Int32Array(cap);
      this.hs = new Float32Array(cap * size);
      this.cs = new Float32Array(cap * size);
    }
    next.forEach((row, i) => {
      this.hs.set(row.h, i * size);
      this.cs.set(row.c, i * size);
    });
    this.core.setState(this.hs.subarray(0, n * size), this.cs.subarray(0, n * size));
  }

  /**
   * One step of every ready window-mode stream: windows of the same length go through the
   * engine together (they differ only while a prompt shorter than maxlen grows). Returns how many
   * rows it ran.
   */
  private stepWindows(): number {
    const { model, group } = this;
    const V = model.vocab.size;
    if (this.windowRows === 0) return 0;
    const step = ++this.windowSteps;
    let total = 0;
    for (;;) {
      // the shortest window among the streams not yet stepped this time
      let W = Infinity;
      for (const row of this.rows)
        if (row.waitsForWindowStep(step)) W = Math.min(W, row.window!.size);
      if (W === Infinity) break;
      group.length = 0;
      for (const row of this.rows)
        if (row.waitsForWindowStep(step) && row.window!.size === W) group.push(row);
      const n = group.length;
      if (this.x.length < n * W) this.x = new Int32Array(n * model.maxlen * 2);
      for (let i = 0; i < n; i++) this.x.set(group[i]!.window!.window(), i * W);
      const p = model.predictTokens(this.x, n, W); // [n×V], a view until the next predict
      for (let i = 0; i < n; i++) {
        const row = group[i]!;
        row.windowStep = step;
        row.draw(p.subarray(i * V, (i + 1) * V));
        if (!row.delivered && (row.finished || row.count === row.job.chunk)) this.firstChunk = true;
        row.window!.push(row.input);
      }
      for (const fn of observers) fn(n, 'window');
      total += n;
    }
    group.length = 0;
    return total;
  }
}

const batchers = new WeakMap<CharModel, Batcher>();

/** The one scheduler of `model`'s generations (made on first use). */
export function batcherFor(model: CharModel): Batcher {
  return batchers.get(model) ?? new Batcher(model);
}
