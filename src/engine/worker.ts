import { parentPort, workerData } from 'node:worker_threads';
import type { ModelShape } from '../model/params.ts';
import { instantiate, setKernelModule } from './kernels.ts';
import { LstmCore } from './lstm-core.ts';
import { runShard } from './gradient-engine.ts';
import type { WorkerReply, WorkerRequest } from './worker-engine.ts';

// One training worker: a wasm instance sized for one shard; computes the shards it is sent.

const { module, shape, maxB, maxT } = workerData as { module: WebAssembly.Module; shape: ModelShape; maxB: number; maxT: number };
setKernelModule(module);
const core = new LstmCore(shape, { maxB, maxT, training: true }, instantiate(module));
const port = parentPort!;

port.on('message', (req: WorkerRequest) => {
  core.setParams(req.params);
  const reply: WorkerReply = { results: [] };
  const transfer: ArrayBuffer[] = [];
  for (const job of req.jobs) {
    const loss = runShard(core, job, req.x, req.y, req.T, req.scale);
    const grads = core.grads.slice();
    reply.results.push({ loss, grads });
    transfer.push(grads.buffer);
  }
  port.postMessage(reply, transfer);
});
port.postMessage('ready');
