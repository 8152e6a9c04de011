// Peak resident memory of a training process on the reference configuration: the same pieces the
// CLI's `train` uses (corpus, windows, two worker threads), stopped after a few hundred batches.
// Prints one JSON line: {"maxRssMB": ..., "seqPerSec": ...}. Uses $CHARLSTM_DATA_DIR's nietzsche
// when present, else Moby-Dick from its npm package (no network either way).
import path from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadCorpus } from '../src/corpus/corpus.ts';
import { Vocabulary } from '../src/data/vocabulary.ts';
import { makeWindows } from '../src/data/windows.ts';
import { initParameters } from '../src/model/init.ts';
import { Rng } from '../src/sampling/rng.ts';
import { Trainer } from '../src/train/trainer.ts';
import { REFERENCE } from '../src/defaults.ts';

const steps = Number(process.argv[2] ?? 200);
const shared = path.resolve(fileURLToPath(new URL('..', import.meta.url)), '../shared/corpora');
const dataDir = process.env.CHARLSTM_DATA_DIR ?? (existsSync(shared) ? shared : undefined);
const corpus = await loadCorpus(
  dataDir && existsSync(path.join(dataDir, 'nietzsche.txt')) ? 'nietzsche' : 'moby-dick',
  { dataDir, progress: false },
);
const vocab = Vocabulary.fromText(corpus.text);
const windows = makeWindows(vocab.encode(corpus.text), REFERENCE.maxlen, REFERENCE.step);
const params = initParameters({ vocabSize: vocab.size, units: REFERENCE.units }, new Rng(1));
let rate = 0;
const trainer = new Trainer({
  params,
  windows,
  shuffleRng: new Rng(2),
  config: {
    batchSize: REFERENCE.batchSize,
    epochs: 1,
    learningRate: REFERENCE.learningRate,
    rho: REFERENCE.rho,
    epsilon: REFERENCE.epsilon,
    threads: 2,
    engine: 'auto',
  },
  callbacks: [
    {
      onBatchEnd(ev, t) {
        rate = ev.seqPerSec;
        if (ev.step >= steps) t.requestStop();
      },
    },
  ],
});
await trainer.fit();
console.log(
  JSON.stringify({
    corpus: corpus.name,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
    seqPerSec: rate,
  }),
);
