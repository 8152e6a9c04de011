import { parentPort, workerData } from 'node:worker_threads';
import { createKernels, setKernelModule } from './kernels.ts';
import { LstmCore } from './lstm-core.ts';
import { runShard } from './shards.ts';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-engine.ts';

// One training worker: a kernel instance (wasm, or the native addon loaded by this thread) sized
// for one shard; computes the shards it is sent.

const { engine, module, shape, maxB, maxT } = workerData as WorkerSetup;
setKernelModule(module); // compiled by the parent: kernels.ts instantiates it here
const core = new LstmCore(shape, { maxB, maxT, training: true }, await createKernels(engine));
const port = parentPort!;

port.on('message', (req: WorkerRequest) => {
  core.setParams(req.params);
  const reply: WorkerReply = { results: [] };
  const transfer: ArrayBuffer[] = [];
  for (const job of req.jobs) {
    const loss = runShard(core, job, req.batch, req.scale);
    const grads = core.grads.slice();
    reply.results.push({ loss, grads });
    transfer.push(grads.buffer);
  }
  if (req.batch.state) reply.state = req.batch.state; // its copy, with this worker's rows updated
  port.postMessage(reply, transfer);
});
port.postMessage('ready');
