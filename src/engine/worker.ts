import { parentPort, workerData } from 'node:worker_threads';
import { createKernels, setKernelModule } from './kernels.ts';
import { LstmCore } from './lstm-core.ts';
import { now, profiledKernels, threadQueued, type WorkerTimes } from './profile.ts';
import { runShard } from './shards.ts';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-engine.ts';

// One training worker: a kernel instance (wasm, or the native addon loaded by this thread) sized
// for one shard; computes the shards it is sent.

const { engine, precision, module, variant, shape, maxB, maxT, profile, shared } =
  workerData as WorkerSetup;
setKernelModule(module, variant); // compiled by the parent: kernels.ts instantiates it here
const kernels = await createKernels(engine, precision);
const timed = profile ? profiledKernels(kernels) : undefined; // its calls timed by phase
const core = new LstmCore(shape, { maxB, maxT, training: true }, timed?.kernels ?? kernels);
const port = parentPort!;
// the batch's parameters, and one gradient slot per shard, shared with the engine (worker-engine.ts)
const params = new Float32Array(shared.params);
const P = params.length;
const slot = (s: number): Float32Array => new Float32Array(shared.grads, s * P * 4, P);

port.on('message', (req: WorkerRequest) => {
  const times: WorkerTimes | undefined = timed && {
    received: now(),
    paramsSet: 0,
    shards: [],
    replied: 0,
  };
  core.setParams(params);
  if (times) times.paramsSet = now();
  const reply: WorkerReply = { losses: [] };
  for (const [j, job] of req.jobs.entries()) {
    const queued0 = times && threadQueued(); // to queued1: the pass and its gradient's copy (~20 µs)
    const start = times ? now() : 0;
    timed?.begin();
    const loss = runShard(core, job, req.batch, req.scale);
    const computed = times ? now() : 0;
    slot(req.shards[j]!).set(core.grads);
    reply.losses.push(loss);
    if (times) {
      const end = now();
      const queued1 = threadQueued(); // after the stamps: its file read is in neither
      const phases = timed!.phases(computed - start);
      const queued = queued0 !== undefined && queued1 !== undefined ? queued1 - queued0 : undefined;
      const sched = queued !== undefined && { cpu: computed - start - queued, queued };
      times.shards.push({ start, computed, end, phases, ...sched });
    }
  }
  if (req.batch.state) reply.state = req.batch.state; // its copy, with this worker's rows updated
  if (times) reply.times = { ...times, replied: now() };
  port.postMessage(reply);
});
port.postMessage('ready');
