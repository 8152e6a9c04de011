// charlstm's library API. Re-exports only; each name is documented where it is defined.

export { REFERENCE } from './defaults.ts';
export { UserError } from './errors.ts';

export {
  loadCorpus,
  type Corpus,
  type CorpusInput,
  type LoadCorpusOptions,
} from './corpus/corpus.ts';
export {
  prepareCorpus,
  TokenFile,
  type PrepareOptions,
  type PreparedCorpus,
} from './corpus/prepare.ts';
export {
  CharCounts,
  UNKNOWN_SYMBOL,
  Vocabulary,
  type UnknownPolicy,
  type VocabularyLimits,
} from './data/vocabulary.ts';
export { Permutation } from './data/permutation.ts';

export { CharModel, StatefulStepper } from './model/char-model.ts';
export { initParameters } from './model/init.ts';
export { Parameters, type ModelShape } from './model/params.ts';
export {
  loadModel,
  saveModel,
  type ModelMeta,
  type SavedModel,
} from './checkpoint/model-format.ts';
export { onnxModel } from './checkpoint/onnx.ts';
export { modelFromSafetensors, safetensorsFromModel } from './checkpoint/safetensors.ts';
export {
  BUILTIN_MODELS,
  listModels,
  resolveModel,
  type BuiltinModel,
  type ModelEntry,
} from './checkpoint/builtin-models.ts';

export { Trainer } from './train/trainer.ts';
export { scoreText, type ScoreTextOptions, type TextScore } from './train/evaluate.ts';
export type {
  BatchEndEvent,
  EpochEndEvent,
  TrainCallback,
  TrainerConfig,
  TrainerOptions,
  TrainerState,
} from './train/trainer.ts';

export { Rng } from './sampling/rng.ts';
export { Sampler, type SamplerOptions } from './sampling/sampler.ts';
export {
  applyProcessors,
  argmax,
  greedy,
  sample,
  temperature,
  topK,
  topP,
  type Probs,
  type Processor,
} from './sampling/processors.ts';

export {
  defaultMode,
  generate,
  generateSamples,
  type GenerateMode,
  type GenerateOptions,
  type Generation,
  type SamplesOptions,
} from './generate/generate.ts';
export {
  BeamSearch,
  beamSearch,
  sampleSeed,
  StopMatcher,
  type BeamOptions,
  type FinishReason,
} from './generate/decoding.ts';
export { generateStateful } from './generate/stateful.ts';
export { generateText, generateWindow } from './generate/window.ts';

export {
  nativeAddonInfo,
  nativeAvailable,
  nativeUnavailableReason,
  type NativeAddonInfo,
} from './engine/native.ts';
