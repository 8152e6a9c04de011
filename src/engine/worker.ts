import { parentPort, workerData } from 'node:worker_threads';
import { instantiate, setKernelModule, type KernelExports } from './kernels.ts';
import { LstmCore } from './lstm-core.ts';
import { runShard } from './gradient-engine.ts';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-engine.ts';

// One training worker: a kernel instance (wasm, or the native addon loaded by this thread) sized
// for one shard; computes the shards it is sent.

const { engine, module, shape, maxB, maxT } = workerData as WorkerSetup;
setKernelModule(module);
let kernels: KernelExports;
if (engine === 'native') {
  const { requireNativeKernels } = await import('./native.ts');
  kernels = requireNativeKernels();
} else {
  kernels = instantiate(module);
}
const core = new LstmCore(shape, { maxB, maxT, training: true }, kernels);
const port = parentPort!;

port.on('message', (req: WorkerRequest) => {
  core.setParams(req.params);
  const reply: WorkerReply = { results: [] };
  const transfer: ArrayBuffer[] = [];
  for (const job of req.jobs) {
    const loss = runShard(core, job, req.x, req.y, req.T, req.scale, req.everyStep, req.opts);
    const grads = core.grads.slice();
    reply.results.push({ loss, grads });
    transfer.push(grads.buffer);
  }
  if (req.opts.state) reply.state = req.opts.state; // its copy, with this worker's rows updated
  port.postMessage(reply, transfer);
});
port.postMessage('ready');
