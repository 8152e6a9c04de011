// Messages between the page and its Web Worker (worker.ts), where all the model's compute runs
// so that the page never freezes.

export interface ModelInfo {
  source: string; // "model.json" or "trained here"
  vocab: string[];
  lowercase: boolean;
  maxlen: number;
  units: number;
  parameters: number;
}

export interface TrainSettings {
  text: string;
  lowercase: boolean;
  units: number; // a multiple of 4
  maxlen: number;
  stride: number; // a new window every `stride` characters (the form's "step")
  batchSize: number;
  epochs: number;
  learningRate: number;
  seed: number;
  sampleLength: number; // characters sampled after each epoch (0: none)
}

export interface GenerateSettings {
  id: number;
  prompt: string;
  length: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
}

export type ToWorker =
  | { type: 'load'; json: string; jsonName: string; files: { name: string; bytes: ArrayBuffer }[] }
  | { type: 'train'; settings: TrainSettings }
  | { type: 'generate'; settings: GenerateSettings }
  | { type: 'stop' } // stops training or generation, whichever runs
  | { type: 'export' };

export interface TrainBatch {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  iteration: number;
  loss: number;
  epochLoss: number;
  seqPerSec: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'loaded'; info: ModelInfo }
  | { type: 'corpus'; characters: number; vocabSize: number; sequences: number; parameters: number }
  | { type: 'batch'; batch: TrainBatch }
  | {
      type: 'epoch';
      epoch: number;
      epochs: number;
      loss: number;
      seconds: number;
      seqPerSec: number;
      sample: string;
    }
  | {
      type: 'trained';
      info: ModelInfo;
      stopped: boolean;
      seqPerSec: number;
      engine: string; // engineLabel(): which wasm build trained, e.g. "WebAssembly SIMD (SIMD128)"
    }
  | { type: 'text'; id: number; text: string }
  | { type: 'generated'; id: number; characters: number; seconds: number; stopped: boolean }
  | { type: 'exported'; files: { name: string; bytes: ArrayBuffer }[] }
  | { type: 'error'; during: 'load' | 'train' | 'generate' | 'export'; message: string };
