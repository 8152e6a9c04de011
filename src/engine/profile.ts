import { readFileSync } from 'node:fs';

import { KERNEL_FUNCTIONS, type KernelExports } from './kernels.ts';

// Opt-in timing of training batches on worker threads (EngineOptions.profile; bench/threads.ts
// reads it): where a batch's wall time goes between the main thread and the workers. Off by
// default; when off nothing here runs and the kernels are the plain instance.
//
// Clocks: every timestamp is `performance.timeOrigin + performance.now()` in ms, so that the
// main thread's and the workers' stamps share one time line (each thread has its own origin).
//
// Inside a shard the kernels are wrapped (profiledKernels) and each call's time is added to the
// phase of LstmCore.lossAndGrads it belongs to; what is left of the shard's time is the
// JavaScript between kernel calls (fills, copies, dropout masks). The recurrent product
// gemmNNPacked (and the head's gemmNN) runs both ways: calls before the pass's crossEntropy are
// the forward pass, later ones the backward.
//
// The machine is shared: a thread's wall time includes time it waited for a core. Linux's
// /proc/thread-self/schedstat gives the calling thread's time waiting in the run queue (ns,
// ~12 µs a read), accounted at every switch onto a CPU, so each shard also reports its wait and
// its wall time less that wait: what the pass itself cost, whatever else ran. (The file's own
// time on a CPU is no use here: for a running thread it advances only at the scheduler's tick,
// measured 4 ms on the development machine, and a pass that starts just after a wake-up reads
// a fresh figure at its start and a stale one at its end, so it came out up to a tick short.)

/** Time of one shard's pass in LstmCore.lossAndGrads, ms by phase. */
export interface ShardPhases {
  /** forward products and gates: gatherRows, h·Wh (and a layer ≥ 1's input product), gatesForward */
  forward: number;
  /** the softmax head both ways: logits, softmax, cross-entropy, dlogits·Wdᵀ */
  head: number;
  /** backward through time: gatesBackward, dz·Whᵀ (and dz·Wxᵀ) */
  backward: number;
  /** weight gradients: hᵀ·dz products (gemmTN), scatterRows and colSum */
  weightGrads: number;
  /** dropout's mulArrays both ways */
  dropout: number;
  /** JavaScript between kernel calls (the shard's time less its kernels') */
  js: number;
}

export const PHASES = ['forward', 'head', 'backward', 'weightGrads', 'dropout', 'js'] as const;

/** The stamps and phases one worker reports with a reply (absolute ms, see the header). */
export interface WorkerTimes {
  received: number; // the request's message handler began
  paramsSet: number; // core.setParams done (transpose and packing of the weights)
  /**
   * per shard: computed, its LstmCore pass done; end, its gradient copied out for the reply;
   * queued, ms of the pass waiting for a CPU, and cpu, its wall time less that (both undefined
   * without schedstat)
   */
  shards: {
    start: number;
    computed: number;
    end: number;
    phases: ShardPhases;
    cpu?: number;
    queued?: number;
  }[];
  replied: number; // just before postMessage of the reply
}

/** One batch of WorkerEngine.lossAndGrads on the main thread, with its workers' times. */
export interface BatchTimes {
  start: number; // lossAndGrads called
  posted: number; // every request posted (the params and batch structured-cloned)
  sent: number[]; // per worker: its postMessage called
  /** per worker: when its reply's message handler ran (transfer and deserialisation before it) */
  got: number[];
  gathered: number; // carried state rows copied back (= the last `got` without a state)
  combined: number; // combineShards done: shard gradients summed, the loss returned
  workers: WorkerTimes[];
}

export const now = (): number => performance.timeOrigin + performance.now();

/** The calling thread's ms waiting in the run queue so far, or undefined off Linux. */
export function threadQueued(): number | undefined {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return undefined;
  }
}

type Bucket = Exclude<keyof ShardPhases, 'js'> | 'setup';

/** Which phase a kernel's time goes to; 'both' kernels go to forward until crossEntropy ran. */
const BUCKET: Record<(typeof KERNEL_FUNCTIONS)[number], Bucket | 'twoWay' | 'headTwoWay'> = {
  gemmNN: 'headTwoWay',
  gemmTN: 'weightGrads',
  packB: 'setup',
  gemmNNPacked: 'twoWay',
  transpose: 'setup',
  sigmoidArray: 'forward',
  tanhArray: 'forward',
  mulArrays: 'dropout',
  gatherRows: 'forward',
  gatesForward: 'forward',
  gatesBackward: 'backward',
  scatterRows: 'weightGrads',
  softmaxRows: 'head',
  crossEntropy: 'head',
  colSum: 'weightGrads',
};

/** A kernel instance whose calls are timed into phases, and the controls of that timing. */
export interface ProfiledKernels {
  kernels: KernelExports;
  /** Start a shard's pass: zero the phases, forward again. */
  begin(): void;
  /** The pass since begin(), its JavaScript share from the wall time `elapsed` (ms). */
  phases(elapsed: number): ShardPhases;
}

export function profiledKernels(k: KernelExports): ProfiledKernels {
  const acc = { forward: 0, head: 0, backward: 0, weightGrads: 0, dropout: 0, setup: 0 };
  let backward = false;
  const wrapped: Record<string, unknown> = {
    get memory() {
      return k.memory;
    },
  };
  for (const name of KERNEL_FUNCTIONS) {
    const f = k[name] as (...args: number[]) => number | undefined;
    const bucket = BUCKET[name];
    wrapped[name] = (...args: number[]): number | undefined => {
      const t = performance.now();
      // called on the instance, as LstmCore calls it: called plainly, the native addon's
      // functions ran 4-5% slower (a shard's pass, measured), which the profile then reported
      const r = f.apply(k, args);
      const dt = performance.now() - t;
      if (bucket === 'twoWay') acc[backward ? 'backward' : 'forward'] += dt;
      else if (bucket === 'headTwoWay') acc.head += dt;
      else acc[bucket] += dt;
      if (name === 'crossEntropy') backward = true;
      return r;
    };
  }
  return {
    kernels: wrapped as unknown as KernelExports,
    begin() {
      for (const key of Object.keys(acc) as (keyof typeof acc)[]) acc[key] = 0;
      backward = false;
    },
    phases(elapsed) {
      const { forward, head, backward: bw, weightGrads, dropout } = acc;
      const js = elapsed - (forward + head + bw + weightGrads + dropout);
      return { forward, head, backward: bw, weightGrads, dropout, js: Math.max(0, js) };
    },
  };
}
