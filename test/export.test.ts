// charlstm export / import (src/checkpoint/onnx.ts, safetensors.ts, the two commands):
// - the ONNX file run by ONNX Runtime (onnxruntime-node) gives the next-character probabilities
//   CharModel gives, within 1e-5, for random models of 1 and 2 layers at several batch sizes and
//   sequence lengths, and for a trained 2-layer model exported through the CLI;
// - the safetensors file, read by a small parser written here (not ours), has PyTorch's names,
//   shapes and the Keras weights transposed; export → import gives the same model folder byte for
//   byte, and import → export the same file; PyTorch's second bias is added in;
// - bad input is one line naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { FORMAT_VERSION, loadModel, type ModelMeta } from '../src/checkpoint/model-format.ts';
import { onnxModel } from '../src/checkpoint/onnx.ts';
import { modelFromSafetensors, safetensorsFromModel } from '../src/checkpoint/safetensors.ts';
import { kernelModule } from '../src/engine/kernels.ts';
import { CharModel } from '../src/model/char-model.ts';
import { Parameters } from '../src/model/params.ts';
import { Rng } from '../src/sampling/rng.ts';
import { charlstm, mobyDick } from './helpers/cli.ts';

await kernelModule();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'charlstm-export-'));

/** A model of V characters, H units, L layers with seeded weights uniform in [-1.5, 1.5]. */
function randomModel(V: number, H: number, L: number, maxlen: number, seed: number): CharModel {
  const params = new Parameters({ vocabSize: V, units: H, layers: L });
  const rng = new Rng(seed);
  for (let i = 0; i < params.flat.length; i++) params.flat[i] = rng.uniform(-1.5, 1.5);
  const vocab = Array.from({ length: V }, (_, i) => String.fromCodePoint(0x41 + i));
  const meta: ModelMeta = {
    formatVersion: FORMAT_VERSION,
    vocab,
    lowercase: false,
    maxlen,
    step: 3,
    units: H,
    ...(L > 1 && { layers: L }),
    training: { note: 'random' },
  };
  return CharModel.fromParts(params, meta);
}

/** ONNX Runtime's probs [B×V] for ids [B×T]. */
async function onnxProbs(
  session: InferenceSession,
  ids: Int32Array,
  B: number,
  T: number,
): Promise<{ probs: Float32Array; dims: readonly number[] }> {
  const input = new Tensor(
    'int64',
    BigInt64Array.from(ids, (i) => BigInt(i)),
    [B, T],
  );
  const out = (await session.run({ ids: input })).probs!;
  return { probs: out.data as Float32Array, dims: out.dims };
}

const maxAbsDiff = (a: Float32Array, b: Float32Array): number => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

test('ONNX Runtime gives our next-character probabilities (random models, 1 and 2 layers)', async () => {
  const V = 40;
  const H = 24;
  const maxlen = 12;
  for (const L of [1, 2]) {
    const model = randomModel(V, H, L, maxlen, 10 + L);
    const session = await InferenceSession.create(onnxModel(model.params, model.meta));
    assert.deepEqual(session.inputNames, ['ids']);
    assert.deepEqual(session.outputNames, ['probs']);
    const rng = new Rng(100 + L);
    for (const [B, T] of [
      [1, 1],
      [3, 5],
      [4, maxlen],
    ] as const) {
      const ids = Int32Array.from({ length: B * T }, () => Math.floor(rng.uniform(0, V)));
      const ours = model.predictTokens(ids, B, T).slice();
      const { probs, dims } = await onnxProbs(session, ids, B, T);
      assert.deepEqual(dims, [B, V]);
      const diff = maxAbsDiff(probs, ours);
      assert.ok(diff < 1e-5, `L=${L} B=${B} T=${T}: max |ONNX − ours| = ${diff}`);
      // not a vacuous agreement: peaked distributions, and each row sums to 1
      const top = Math.max(...ours);
      assert.ok(top > 4 / V, `L=${L} B=${B} T=${T}: too flat (top ${top})`);
      for (let b = 0; b < B; b++) {
        const sum = probs.subarray(b * V, (b + 1) * V).reduce((s, p) => s + p, 0);
        assert.ok(Math.abs(sum - 1) < 1e-5, `row ${b} sums to ${sum}`);
      }
    }
    await session.release();
  }
});

// A trained 2-layer model, for the CLI tests below.
const text = mobyDick().slice(50_000, 56_000);
const corpus = path.join(tmp, 'corpus.txt');
writeFileSync(corpus, text);
const trained = path.join(tmp, 'trained');
const train = charlstm([
  'train',
  '--corpus',
  corpus,
  '--epochs',
  '1',
  '--units',
  '16',
  '--layers',
  '2',
  '--maxlen',
  '20',
  '--seed',
  '4',
  '--sample-length',
  '0',
  '--out',
  trained,
]);

test('a trained model exported with `charlstm export --format onnx` agrees with ours', async () => {
  assert.equal(train.code, 0, train.stderr);
  const file = path.join(tmp, 'trained.onnx');
  const r = charlstm(['export', '--model', trained, '--format', 'onnx', '--out', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*trained\.onnx \(onnx, \d+ bytes\)\n$/);
  const model = await CharModel.load(trained);
  // the vocabulary and settings travel in the file's metadata_props, as JSON
  assert.ok(readFileSync(file).includes(JSON.stringify(model.meta)));
  const session = await InferenceSession.create(file);
  const B = 5;
  const T = model.maxlen;
  const ids = new Int32Array(B * T);
  const windows = model.prepareText(text);
  for (let b = 0; b < B; b++)
    ids.set(model.vocab.encode(windows.slice(b * 300, b * 300 + T)), b * T);
  const ours = model.predictTokens(ids, B, T).slice();
  const { probs } = await onnxProbs(session, ids, B, T);
  const diff = maxAbsDiff(probs, ours);
  assert.ok(diff < 1e-5, `max |ONNX − ours| = ${diff}`);
  await session.release();
});

/** A safetensors file read by hand: the header JSON and each tensor's float32 values. */
function readSafetensors(bytes: Uint8Array): {
  headerLength: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata: Record<string, string>;
  tensor: (name: string) => Float32Array;
} {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(dv.getBigUint64(0, true));
  const json = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8'));
  const { __metadata__: metadata, ...header } = json;
  const tensor = (name: string) => {
    const [b, e] = header[name].data_offsets;
    const out = new Float32Array((e - b) / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(8 + headerLength + b + 4 * i, true);
    return out;
  };
  return { headerLength, header, metadata, tensor };
}

test('the safetensors export has PyTorch names and layouts: the Keras weights transposed', async () => {
  assert.equal(train.code, 0, train.stderr);
  const file = path.join(tmp, 'layout.safetensors');
  const r = charlstm(['export', '--model', trained, '--out', file]); // format from the name
  assert.equal(r.code, 0, r.stderr);
  const { params, meta } = await loadModel(trained);
  const { vocabSize: V, units: H } = params.shape;
  const bytes = readFileSync(file);
  const st = readSafetensors(bytes);
  assert.equal(st.headerLength % 8, 0);
  assert.equal(bytes[8], '{'.charCodeAt(0));
  assert.deepEqual(
    Object.fromEntries(Object.entries(st.header).map(([k, v]) => [k, [v.dtype, ...v.shape]])),
    {
      'lstm.weight_ih_l0': ['F32', 4 * H, V],
      'lstm.weight_hh_l0': ['F32', 4 * H, H],
      'lstm.bias_ih_l0': ['F32', 4 * H],
      'lstm.bias_hh_l0': ['F32', 4 * H],
      'lstm.weight_ih_l1': ['F32', 4 * H, H],
      'lstm.weight_hh_l1': ['F32', 4 * H, H],
      'lstm.bias_ih_l1': ['F32', 4 * H],
      'lstm.bias_hh_l1': ['F32', 4 * H],
      'dense.weight': ['F32', V, H],
      'dense.bias': ['F32', V],
    },
  );
  const stored = JSON.parse(st.metadata.charlstm!);
  assert.deepEqual(stored.vocab, meta.vocab);
  assert.equal(stored.layers, 2);
  assert.equal(stored.weightsSha256, undefined);
  // PyTorch [4H, in] row r, column c = Keras [in, 4H] row c, column r (gates i, f, g/c, o alike)
  for (const [k, inSize] of [
    [0, V],
    [1, H],
  ] as const) {
    const ih = st.tensor(`lstm.weight_ih_l${k}`);
    const hh = st.tensor(`lstm.weight_hh_l${k}`);
    for (const [r, c] of [
      [0, 0],
      [H + 3, 1], // the forget gate
      [2 * H + 5, inSize - 1], // the cell candidate
      [4 * H - 1, 2],
    ] as const) {
      assert.equal(ih[r * inSize + c], params.lstm[k]!.kernel[c * 4 * H + r]);
      assert.equal(hh[r * H + (c % H)], params.lstm[k]!.recurrentKernel[(c % H) * 4 * H + r]);
    }
    assert.deepEqual(st.tensor(`lstm.bias_ih_l${k}`), params.lstm[k]!.bias);
    assert.ok(st.tensor(`lstm.bias_hh_l${k}`).every((x) => Object.is(x, 0)));
  }
  const dense = st.tensor('dense.weight');
  for (const [v, h] of [
    [0, 0],
    [V - 1, 3],
    [7, H - 1],
  ] as const) {
    assert.equal(dense[v * H + h], params.denseKernel[h * V + v]);
  }
  assert.deepEqual(st.tensor('dense.bias'), params.denseBias);
});

test('export → import gives the same model folder byte for byte, import → export the same file', () => {
  assert.equal(train.code, 0, train.stderr);
  const first = path.join(tmp, 'first.safetensors');
  const second = path.join(tmp, 'second.safetensors');
  const imported = path.join(tmp, 'imported');
  let r = charlstm(['export', '-m', trained, '--format', 'safetensors', '-o', first]);
  assert.equal(r.code, 0, r.stderr);
  r = charlstm(['import', '--from', first, '--out', imported]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^imported .*first\.safetensors into .*imported \(V=\d+, H=16, L=2\)\n$/);
  // the model's own files (training also left its checkpoint and best model there)
  const files = (dir: string) =>
    readdirSync(dir).filter((f) => /^(model\.json|weights\..*\.bin)$/.test(f));
  assert.deepEqual(files(imported), files(trained));
  assert.equal(files(trained).length, 2);
  for (const f of files(trained)) {
    assert.ok(readFileSync(path.join(imported, f)).equals(readFileSync(path.join(trained, f))), f);
  }
  r = charlstm(['export', '-m', imported, '-o', second]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(second).equals(readFileSync(first)));
});

test("import adds PyTorch's second bias in, and keeps the first exactly (-0 too) when it is zero", () => {
  const model = randomModel(6, 4, 1, 5, 3);
  model.params.bias[0] = -0;
  const bytes = safetensorsFromModel(model.params, model.meta);
  const kept = modelFromSafetensors(bytes, 'kept.safetensors');
  assert.ok(Object.is(kept.params.bias[0], -0));
  assert.deepEqual(kept.params.flat, model.params.flat);
  assert.deepEqual(kept.meta, { ...model.meta });

  const st = readSafetensors(bytes);
  const [b] = st.header['lstm.bias_hh_l0']!.data_offsets;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < 16; i++) dv.setFloat32(8 + st.headerLength + b + 4 * i, 0.25 * i - 1, true);
  const summed = modelFromSafetensors(bytes, 'summed.safetensors');
  for (let i = 0; i < 16; i++) {
    assert.equal(summed.params.bias[i], Math.fround(model.params.bias[i]! + (0.25 * i - 1)));
  }
});

/** A safetensors file from a header and data, written by hand. */
function safetensorsFile(header: Record<string, unknown>, data: Uint8Array): Uint8Array {
  const json = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

test('a safetensors file that is not a charlstm export, or has other tensors, is one error naming it', () => {
  const model = randomModel(6, 4, 1, 5, 3);
  const goodBytes = safetensorsFromModel(model.params, model.meta);
  const good = readSafetensors(goodBytes);
  const data = goodBytes.subarray(8 + good.headerLength);
  const withHeader = (edit: (h: Record<string, unknown>) => void) => {
    const h: Record<string, unknown> = structuredClone({
      __metadata__: good.metadata,
      ...good.header,
    });
    edit(h);
    return safetensorsFile(h, data);
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ['short', new Uint8Array(5), /^short: not a safetensors file \(5 bytes\)$/],
    ['text', Buffer.from('hello world, not tensors'), /not a safetensors file/],
    [
      'torch-only',
      withHeader((h) => delete h.__metadata__),
      /^torch-only: not a charlstm export: its __metadata__ has no "charlstm" entry/,
    ],
    [
      'shape',
      withHeader((h) => ((h['lstm.weight_hh_l0'] as { shape: number[] }).shape = [4, 16])),
      /^shape: tensor "lstm\.weight_hh_l0" has shape \[4,16\], expected \[16,4\] for V=6, H=4, L=1$/,
    ],
    [
      'dtype',
      withHeader((h) => ((h['dense.bias'] as { dtype: string }).dtype = 'F16')),
      /tensor "dense\.bias" has dtype "F16"; charlstm imports F32 only/,
    ],
    [
      'renamed',
      withHeader((h) => {
        h['fc.bias'] = h['dense.bias'];
        delete h['dense.bias'];
      }),
      /^renamed: unexpected tensor "fc\.bias"; a model of V=6, H=4, L=1 has lstm\.weight_ih_l0, /,
    ],
    [
      'missing',
      withHeader((h) => delete h['lstm.bias_hh_l0']),
      /^missing: tensor "lstm\.bias_hh_l0" is missing$/,
    ],
    [
      'vocab',
      withHeader((h) => {
        const md = h.__metadata__ as Record<string, string>;
        md.charlstm = JSON.stringify({ ...JSON.parse(md.charlstm!), vocab: ['a', 'a'] });
      }),
      /^vocab \(__metadata__ "charlstm"\): metadata "vocab" repeats the character "a"$/,
    ],
  ];
  for (const [where, bytes, message] of cases) {
    assert.throws(() => modelFromSafetensors(bytes, where), { name: 'UserError', message }, where);
  }
});

test('export and import: bad input is one line naming it', () => {
  assert.equal(train.code, 0, train.stderr);
  const exists = path.join(tmp, 'exists.onnx');
  writeFileSync(exists, 'x');
  const junk = path.join(tmp, 'junk.safetensors');
  writeFileSync(junk, 'not tensors at all');
  const cases: [string[], RegExp][] = [
    [
      ['export', '--model', path.join(tmp, 'nope'), '--out', path.join(tmp, 'a.onnx')],
      /model folder not found: ".*nope"/,
    ],
    [
      ['export', '--model', trained, '--format', 'keras', '--out', path.join(tmp, 'a.h5')],
      /argument 'keras' is invalid\. Allowed choices are onnx, safetensors\./,
    ],
    [
      ['export', '--model', trained, '--out', path.join(tmp, 'a.bin')],
      /cannot tell the format from --out ".*a\.bin": pass --format onnx or --format safetensors/,
    ],
    [
      ['export', '--model', trained, '--out', exists],
      /".*exists\.onnx" already exists; pass --force to replace it/,
    ],
    [
      ['import', '--from', junk, '--out', path.join(tmp, 'j')],
      /junk\.safetensors: not a safetensors file/,
    ],
    [
      ['import', '--from', path.join(tmp, 'absent.safetensors'), '--out', path.join(tmp, 'j')],
      /--from file not found: ".*absent\.safetensors"/,
    ],
    [
      ['import', '--from', junk, '--out', trained],
      /".*trained" already holds a model; pass --force to replace it/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = charlstm(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^charlstm: error: [^\n]*\n$/, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
  assert.equal(readFileSync(exists, 'utf8'), 'x'); // not replaced
  assert.ok(!existsSync(path.join(tmp, 'j')));
  const r = charlstm(['export', '--model', trained, '--out', exists, '--force']);
  assert.equal(r.code, 0, r.stderr);
  assert.notEqual(readFileSync(exists, 'utf8'), 'x');
});
