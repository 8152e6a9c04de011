import { LineChart } from './charts.ts';
import { el, formatInt, optionalNumber, renderVocabularyCheck, showMessage } from './ui.ts';
import type { FromWorker, ModelInfo, ToWorker, TrainBatch } from './worker-protocol.ts';

// In the browser, no server: train a small model on text pasted or dropped into the page, or load
// a saved model folder's files, and generate, all in a Web Worker (worker.ts).

const MAX_TEXT_MB = 20;

export class LocalView {
  private worker: Worker | undefined;
  private model: ModelInfo | undefined;
  private vocabSet: Set<string> | undefined;
  private training = false;
  private generating = 0; // id of the generation running, 0 when none
  private nextId = 1;
  private outText: Text | undefined;
  private chart: LineChart | undefined;
  private batches: TrainBatch[] = [];
  private epochLosses: { iteration: number; loss: number }[] = [];
  private downloads: string[] = []; // object URLs to revoke

  private readonly error = el('lc-error');
  private readonly text = el<HTMLTextAreaElement>('lc-text');
  private readonly textInfo = el('lc-text-info');
  private readonly trainButton = el<HTMLButtonElement>('lc-train');
  private readonly stopTrainButton = el<HTMLButtonElement>('lc-stop-train');
  private readonly trainStatus = el('lc-train-status');
  private readonly speed = el('lc-speed');
  private readonly samples = el('lc-samples');
  private readonly exportButton = el<HTMLButtonElement>('lc-export');
  private readonly downloadBox = el('lc-downloads');
  private readonly modelInfo = el('lc-model-info');
  private readonly prompt = el<HTMLTextAreaElement>('lc-prompt');
  private readonly vocabBox = el('lc-vocab');
  private readonly temperature = el<HTMLInputElement>('lc-temperature');
  private readonly generateButton = el<HTMLButtonElement>('lc-generate');
  private readonly stopGenButton = el<HTMLButtonElement>('lc-stop-gen');
  private readonly output = el('lc-output');
  private readonly genStats = el('lc-gen-stats');

  constructor() {
    el<HTMLFormElement>('lc-train-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.train();
    });
    this.stopTrainButton.addEventListener('click', () => this.send({ type: 'stop' }));
    el<HTMLInputElement>('lc-file').addEventListener('change', (e) => {
      const f = (e.target as HTMLInputElement).files?.[0];
      if (f) void this.readTextFile(f);
    });
    this.text.addEventListener('input', () => this.describeText());
    this.text.addEventListener('dragover', (e) => {
      e.preventDefault();
      this.text.classList.add('drop');
    });
    this.text.addEventListener('dragleave', () => this.text.classList.remove('drop'));
    this.text.addEventListener('drop', (e) => {
      e.preventDefault();
      this.text.classList.remove('drop');
      const f = e.dataTransfer?.files[0];
      if (f) void this.readTextFile(f);
    });
    el<HTMLInputElement>('lc-model-files').addEventListener('change', (e) => {
      const files = (e.target as HTMLInputElement).files;
      if (files && files.length > 0) void this.loadModel(Array.from(files));
    });
    this.exportButton.addEventListener('click', () => this.send({ type: 'export' }));
    el<HTMLFormElement>('lc-gen-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.generate();
    });
    this.stopGenButton.addEventListener('click', () => this.send({ type: 'stop' }));
    this.prompt.addEventListener('input', () => this.refresh());
    const tempOut = el<HTMLOutputElement>('lc-temperature-value');
    const showT = (): void => {
      tempOut.value = Number(this.temperature.value).toFixed(2);
    };
    this.temperature.addEventListener('input', showT);
    showT();
    this.describeText();
    this.refresh();
  }

  /** Start the worker (once). */
  init(): void {
    if (this.worker) return;
    try {
      this.worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
    } catch (err) {
      showMessage(
        this.error,
        `This browser cannot start a module Web Worker: ${(err as Error).message}`,
      );
      return;
    }
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.onMessage(e.data);
    this.worker.onerror = (e) => {
      showMessage(this.error, `The worker failed: ${e.message || 'unknown error'}`);
      this.training = false;
      this.generating = 0;
      this.refresh();
    };
  }

  private send(msg: ToWorker, transfer: Transferable[] = []): void {
    this.init();
    this.worker?.postMessage(msg, transfer);
  }

  private refresh(): void {
    const busy = this.training || this.generating !== 0;
    this.trainButton.disabled = busy;
    this.stopTrainButton.disabled = !this.training;
    this.exportButton.disabled = busy || !this.model;
    const unknown = renderVocabularyCheck(
      this.vocabBox,
      this.prompt.value,
      this.vocabSet,
      this.model?.lowercase ?? false,
    );
    this.prompt.setAttribute('aria-invalid', String(unknown > 0));
    this.generateButton.disabled = busy || !this.model || unknown > 0;
    this.stopGenButton.disabled = this.generating === 0;
  }

  private describeText(): void {
    const t = this.text.value;
    const distinct = new Set(t).size;
    this.textInfo.textContent = t
      ? `${formatInt([...t].length)} characters, ${distinct} distinct`
      : 'No text yet.';
  }

  private async readTextFile(f: File): Promise<void> {
    if (f.size > MAX_TEXT_MB * 1024 * 1024) {
      showMessage(
        this.error,
        `${f.name} is ${(f.size / 1048576).toFixed(1)} MB; the page trains on at most ${MAX_TEXT_MB} MB.`,
      );
      return;
    }
    try {
      this.text.value = new TextDecoder('utf-8', { fatal: true }).decode(await f.arrayBuffer());
      showMessage(this.error, '');
    } catch {
      showMessage(this.error, `${f.name} is not UTF-8 text.`);
      return;
    }
    this.describeText();
  }

  private async loadModel(files: File[]): Promise<void> {
    const json = files.find((f) => f.name.endsWith('.json'));
    if (!json) {
      showMessage(
        this.error,
        'Choose the model folder’s model.json together with its weights file (.bin).',
      );
      return;
    }
    const bins = files.filter((f) => f !== json);
    const payload = await Promise.all(
      bins.map(async (f) => ({ name: f.name, bytes: await f.arrayBuffer() })),
    );
    this.modelInfo.textContent = `loading ${json.name}…`;
    this.send(
      { type: 'load', json: await json.text(), jsonName: json.name, files: payload },
      payload.map((p) => p.bytes),
    );
  }

  private number(id: string): number {
    return Number(el<HTMLInputElement>(id).value);
  }

  train(): void {
    if (this.training) return;
    const text = this.text.value;
    if (text.length === 0) {
      showMessage(this.error, 'Paste or drop some text to train on first.');
      return;
    }
    showMessage(this.error, '');
    this.batches = [];
    this.epochLosses = [];
    this.samples.replaceChildren();
    this.chart ??= new LineChart(el('lc-chart'), {
      xLabel: 'batch',
      yLabel: 'loss (nats)',
      height: 220,
      series: [
        { label: 'batch loss', color: '#4a7bd0' },
        { label: 'epoch loss', color: '#d9480f', points: true },
      ],
    });
    this.chart.setData([[], [], []]);
    this.training = true;
    this.trainStatus.textContent = 'Preparing…';
    delete this.trainStatus.dataset.firstLoss;
    delete this.trainStatus.dataset.lastLoss;
    this.speed.textContent = '';
    this.refresh();
    this.send({
      type: 'train',
      settings: {
        text,
        lowercase: el<HTMLInputElement>('lc-lowercase').checked,
        units: this.number('lc-units'),
        maxlen: this.number('lc-maxlen'),
        stride: this.number('lc-step'),
        batchSize: this.number('lc-batch'),
        epochs: this.number('lc-epochs'),
        learningRate: this.number('lc-lr'),
        seed: this.number('lc-seed'),
        sampleLength: 200,
      },
    });
  }

  generate(): void {
    if (!this.model || this.generating) return;
    const topK = optionalNumber(el<HTMLInputElement>('lc-topk'));
    const topP = optionalNumber(el<HTMLInputElement>('lc-topp'));
    const seed =
      optionalNumber(el<HTMLInputElement>('lc-gen-seed')) ?? Math.floor(Math.random() * 2 ** 31);
    const id = this.nextId++;
    this.generating = id;
    showMessage(this.error, '');
    const echo = document.createElement('span');
    echo.className = 'prompt-echo';
    echo.textContent = this.prompt.value;
    this.outText = document.createTextNode('');
    this.output.replaceChildren(echo, this.outText);
    this.genStats.textContent = `generating… (seed ${seed})`;
    this.refresh();
    this.send({
      type: 'generate',
      settings: {
        id,
        prompt: this.prompt.value,
        length: this.number('lc-length'),
        temperature: Number(this.temperature.value),
        ...(topK !== undefined ? { topK } : {}),
        ...(topP !== undefined ? { topP } : {}),
        seed,
      },
    });
  }

  private setModel(info: ModelInfo): void {
    this.model = info;
    this.vocabSet = new Set(info.vocab);
    this.modelInfo.textContent =
      `Model ${info.source}: ${info.vocab.length} characters · ${info.units} units · window ${info.maxlen} · ` +
      `${formatInt(info.parameters)} parameters${info.lowercase ? ' · lowercased' : ''}`;
    this.refresh();
  }

  private drawChart(): void {
    const xs = this.batches.map((b) => b.iteration);
    const epochAt = new Map(this.epochLosses.map((e) => [e.iteration, e.loss]));
    this.chart?.setData([
      xs,
      this.batches.map((b) => b.loss),
      xs.map((x) => epochAt.get(x) ?? null),
    ]);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'ready':
        return;
      case 'loaded':
        this.setModel(m.info);
        return;
      case 'corpus':
        this.trainStatus.textContent =
          `${formatInt(m.characters)} characters, ${m.vocabSize} distinct, ${formatInt(m.sequences)} sequences per epoch, ` +
          `${formatInt(m.parameters)} parameters. Starting…`;
        return;
      case 'batch': {
        const b = m.batch;
        this.batches.push(b);
        const first = this.batches[0]!.loss;
        this.trainStatus.dataset.firstLoss = String(first);
        this.trainStatus.dataset.lastLoss = String(b.epochLoss);
        this.trainStatus.textContent =
          `Epoch ${b.epoch}/${b.epochs} · batch ${b.step}/${b.steps} · loss ${b.epochLoss.toFixed(4)} ` +
          `(first batch ${first.toFixed(4)}) · ${formatInt(b.seqPerSec)} sequences/s`;
        this.speed.dataset.seqPerSec = String(b.seqPerSec);
        this.drawChart();
        return;
      }
      case 'epoch': {
        const last = this.batches[this.batches.length - 1];
        if (last) this.epochLosses.push({ iteration: last.iteration, loss: m.loss });
        this.trainStatus.dataset.lastLoss = String(m.loss);
        this.drawChart();
        if (m.sample) {
          const d = document.createElement('details');
          d.open = true;
          this.samples.querySelectorAll('details').forEach((prev) => (prev.open = false));
          const s = document.createElement('summary');
          s.textContent = `Epoch ${m.epoch}: loss ${m.loss.toFixed(4)}, ${formatInt(m.seqPerSec)} sequences/s — sample at temperature 0.5`;
          const pre = document.createElement('pre');
          pre.className = 'output';
          pre.textContent = m.sample;
          d.append(s, pre);
          this.samples.prepend(d);
        }
        return;
      }
      case 'trained':
        this.training = false;
        this.setModel(m.info);
        this.speed.dataset.seqPerSec = String(m.seqPerSec);
        this.speed.textContent =
          `Training speed in this page: ${formatInt(m.seqPerSec)} sequences/s ` +
          `(one Web Worker thread, ${m.engine}; units ${m.info.units}, window ${m.info.maxlen}).`;
        this.trainStatus.textContent = `${m.stopped ? 'Stopped' : 'Done'}: ${this.trainStatus.textContent?.replace(/^Epoch/, 'epoch')}`;
        this.refresh();
        return;
      case 'text':
        if (m.id === this.generating) this.outText?.appendData(m.text);
        return;
      case 'generated':
        if (m.id !== this.generating) return;
        this.generating = 0;
        this.genStats.textContent =
          `${m.stopped ? 'Stopped' : 'Done'}: ${formatInt(m.characters)} characters in ${m.seconds.toFixed(1)} s ` +
          `(${formatInt(m.characters / Math.max(m.seconds, 1e-3))} chars/s)`;
        this.refresh();
        return;
      case 'exported':
        this.offerDownloads(m.files);
        return;
      case 'error':
        showMessage(this.error, m.message);
        if (m.during === 'train') {
          this.training = false;
          this.trainStatus.textContent = 'Training failed.';
        }
        if (m.during === 'generate') {
          this.generating = 0;
          this.genStats.textContent = 'Failed.';
        }
        if (m.during === 'load')
          this.modelInfo.textContent = this.model
            ? `Still using model ${this.model.source}.`
            : 'No model loaded.';
        this.refresh();
        return;
    }
  }

  private offerDownloads(files: { name: string; bytes: ArrayBuffer }[]): void {
    for (const u of this.downloads) URL.revokeObjectURL(u);
    this.downloads = [];
    const intro = document.createElement('span');
    intro.textContent = 'Save both files into one folder: ';
    const links = files.map((f) => {
      const url = URL.createObjectURL(
        new Blob([f.bytes], {
          type: f.name.endsWith('.json') ? 'application/json' : 'application/octet-stream',
        }),
      );
      this.downloads.push(url);
      const a = document.createElement('a');
      a.href = url;
      a.download = f.name;
      a.textContent = f.name;
      return a;
    });
    this.downloadBox.replaceChildren(
      intro,
      ...links.flatMap((a, i) => (i === 0 ? [a] : [document.createTextNode(' and '), a])),
    );
  }
}
