import {
  ApiError,
  listModels,
  predict,
  streamGenerate,
  type GenerateRequest,
  type ServerModel,
} from './api.ts';
import { renderDistribution } from './charts.ts';
import { el, formatInt, optionalNumber, renderVocabularyCheck, showMessage } from './ui.ts';

// The playground: a model served by `charlstm serve`, a prompt, the sampling controls, the text
// streaming in (SSE over fetch, stoppable), the reference's four temperatures side by side, and
// the next-character distribution of the current text.

export const REFERENCE_TEMPERATURES = [0.2, 0.5, 1.0, 1.2] as const;
const TOP_BARS = 15;

interface ModelState extends ServerModel {
  vocabSet?: Set<string>;
}

export class Playground {
  private models: ModelState[] = [];
  private running: AbortController | undefined;
  private predicting: AbortController | undefined;
  private predictTimer = 0;
  private generated = ''; // the output of the last generation, for "continue" and the chart
  private generatedFor = ''; // the prompt it continues

  private readonly error = el('pg-error');
  private readonly modelSelect = el<HTMLSelectElement>('pg-model');
  private readonly modelInfo = el('pg-model-info');
  private readonly prompt = el<HTMLTextAreaElement>('pg-prompt');
  private readonly vocabBox = el('pg-vocab');
  private readonly temperature = el<HTMLInputElement>('pg-temperature');
  private readonly temperatureValue = el<HTMLOutputElement>('pg-temperature-value');
  private readonly topK = el<HTMLInputElement>('pg-topk');
  private readonly topP = el<HTMLInputElement>('pg-topp');
  private readonly length = el<HTMLInputElement>('pg-length');
  private readonly seed = el<HTMLInputElement>('pg-seed');
  private readonly mode = el<HTMLSelectElement>('pg-mode');
  private readonly generateButton = el<HTMLButtonElement>('pg-generate');
  private readonly stopButton = el<HTMLButtonElement>('pg-stop');
  private readonly compareButton = el<HTMLButtonElement>('pg-compare');
  private readonly continueButton = el<HTMLButtonElement>('pg-continue');
  private readonly outPrompt = el('pg-output-prompt');
  private readonly outText = el('pg-output-text');
  private readonly stats = el('pg-stats');
  private readonly compareBox = el('pg-compare-out');
  private readonly single = el('pg-single');
  private readonly dist = el('pg-dist');
  private readonly distContext = el('pg-dist-context');

  constructor() {
    el<HTMLFormElement>('pg-form').addEventListener('submit', (e) => {
      e.preventDefault();
      void this.generate();
    });
    this.stopButton.addEventListener('click', () => this.stop());
    this.compareButton.addEventListener('click', () => void this.compare());
    this.continueButton.addEventListener('click', () => {
      this.prompt.value = this.generatedFor + this.generated;
      this.prompt.focus();
      this.onPromptChange();
    });
    this.modelSelect.addEventListener('change', () => this.onModelChange());
    this.prompt.addEventListener('input', () => this.onPromptChange());
    this.prompt.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void this.generate();
      }
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.running) this.stop();
    });
    const showTemperature = (): void => {
      this.temperatureValue.value = Number(this.temperature.value).toFixed(2);
    };
    this.temperature.addEventListener('input', showTemperature);
    showTemperature();
  }

  /** Fetch the model list (once per call); the view is usable only when this succeeds. */
  async init(): Promise<void> {
    this.refreshButtons();
    this.modelInfo.textContent = 'loading models…';
    try {
      this.models = await listModels();
    } catch (err) {
      const msg =
        err instanceof ApiError && err.status === 404
          ? 'This server offers no models (GET /v1/models: not found). Start one with `charlstm serve` (the built-in models) or `charlstm serve --model DIR`, or use the in-browser view.'
          : `Cannot list the models: ${(err as Error).message}`;
      showMessage(this.error, msg);
      this.modelInfo.textContent = '';
      return;
    }
    if (this.models.length === 0) {
      showMessage(this.error, 'The server has no models loaded.');
      this.modelInfo.textContent = '';
      return;
    }
    this.modelSelect.replaceChildren(
      ...this.models.map((m) => {
        const o = document.createElement('option');
        o.value = m.name;
        o.textContent = m.name;
        o.selected = m.isDefault === true;
        return o;
      }),
    );
    showMessage(this.error, '');
    this.onModelChange();
  }

  private get model(): ModelState | undefined {
    return this.models.find((m) => m.name === this.modelSelect.value) ?? this.models[0];
  }

  private onModelChange(): void {
    const m = this.model;
    if (!m) return;
    if (m.vocab && !m.vocabSet) m.vocabSet = new Set(m.vocab);
    const parts: string[] = [];
    if (m.vocab) parts.push(`${m.vocab.length} characters`);
    if (m.units) parts.push(`${m.units} units`);
    if (m.maxlen) parts.push(`window ${m.maxlen}`);
    if (m.lowercase) parts.push('lowercased');
    this.modelInfo.textContent = parts.join(' · ');
    this.onPromptChange();
  }

  /** Re-check the prompt against the vocabulary and refresh the distribution (debounced). */
  private onPromptChange(): void {
    this.refreshButtons();
    this.dist.classList.add('stale'); // until the new distribution arrives
    clearTimeout(this.predictTimer);
    this.predictTimer = window.setTimeout(
      () => void this.updateDistribution(this.prompt.value),
      250,
    );
  }

  private checkPrompt(): number {
    const m = this.model;
    const unknown = renderVocabularyCheck(
      this.vocabBox,
      this.prompt.value,
      m?.vocabSet,
      m?.lowercase ?? false,
    );
    this.prompt.setAttribute('aria-invalid', String(unknown > 0));
    return unknown;
  }

  private async updateDistribution(text: string): Promise<void> {
    this.predicting?.abort();
    const m = this.model;
    if (!m) return;
    if (text === '') {
      this.dist.replaceChildren();
      this.dist.classList.remove('stale');
      this.distContext.textContent = 'Type a prompt to see which character the model expects next.';
      return;
    }
    if (m.vocabSet && this.checkPrompt() > 0 && text === this.prompt.value) {
      this.distContext.textContent = 'The prompt has characters outside the vocabulary.';
      this.dist.replaceChildren();
      this.dist.classList.remove('stale');
      return;
    }
    const ctrl = new AbortController();
    this.predicting = ctrl;
    try {
      const p = await predict(text, m.name, ctrl.signal);
      if (!m.vocab && Array.isArray(p.vocab)) {
        m.vocab = p.vocab;
        this.onModelChange(); // now the prompt can be checked
      }
      const tail = [...text].slice(-24).join('');
      this.distContext.textContent = `Next character after “${tail.length < text.length ? '…' : ''}${tail}”:`;
      this.dist.classList.remove('stale');
      renderDistribution(this.dist, p.vocab, p.probs, TOP_BARS, (ch) => {
        this.prompt.value += ch;
        this.onPromptChange();
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') return;
      this.dist.replaceChildren();
      this.dist.classList.remove('stale');
      this.distContext.textContent = `No distribution: ${(err as Error).message}`;
    }
  }

  /** The request the controls describe, or an error message. */
  private readRequest(): GenerateRequest | string {
    const m = this.model;
    const prompt = this.prompt.value;
    if (prompt === '' && this.mode.value !== 'stateful')
      return 'Type a prompt first (only the stateful mode starts from nothing).';
    const temperature = Number(this.temperature.value);
    const topK = optionalNumber(this.topK);
    const topP = optionalNumber(this.topP);
    const length = Number(this.length.value);
    let seed = optionalNumber(this.seed);
    for (const [name, v] of [
      ['top-k', topK],
      ['top-p', topP],
      ['length', length],
      ['seed', seed],
    ] as const) {
      if (v !== undefined && !Number.isFinite(v)) return `${name} must be a number.`;
    }
    seed ??= Math.floor(Math.random() * 2 ** 31);
    const mode = this.mode.value;
    return {
      ...(m ? { model: m.name } : {}),
      prompt,
      length,
      temperature,
      ...(topK !== undefined ? { top_k: topK } : {}),
      ...(topP !== undefined ? { top_p: topP } : {}),
      seed,
      ...(mode === 'window' || mode === 'stateful' ? { mode } : {}),
    };
  }

  /** Enable the buttons that make sense now. Returns the number of unknown prompt characters. */
  private refreshButtons(): number {
    const unknown = this.checkPrompt();
    const busy = Boolean(this.running);
    const blocked = busy || unknown > 0 || !this.model;
    this.generateButton.disabled = blocked;
    this.compareButton.disabled = blocked;
    this.stopButton.disabled = !busy;
    this.continueButton.disabled = busy || this.generated === '';
    return unknown;
  }

  private setRunning(ctrl: AbortController | undefined): void {
    this.running = ctrl;
    this.refreshButtons();
  }

  stop(): void {
    this.running?.abort();
  }

  async generate(): Promise<void> {
    if (this.running) return;
    const req = this.readRequest();
    if (typeof req === 'string') {
      showMessage(this.error, req);
      return;
    }
    if (this.checkPrompt() > 0) return;
    showMessage(this.error, '');
    const ctrl = new AbortController();
    this.setRunning(ctrl);
    this.compareBox.hidden = true;
    this.single.hidden = false;
    this.outPrompt.textContent = req.prompt;
    const text = document.createTextNode('');
    this.outText.replaceChildren(text);
    this.generated = '';
    this.generatedFor = req.prompt;
    this.stats.textContent = `generating… (seed ${req.seed})`;
    const t0 = performance.now();
    let chars = 0;
    const rate = (): string => {
      const s = (performance.now() - t0) / 1000;
      return `${formatInt(chars)} characters in ${s.toFixed(1)} s (${formatInt(chars / s)} chars/s), seed ${req.seed}`;
    };
    let outcome = '';
    try {
      for await (const ev of streamGenerate(req, ctrl.signal)) {
        if (ev.type === 'text') {
          text.appendData(ev.text);
          this.generated += ev.text;
          chars += [...ev.text].length;
          this.stats.textContent = `generating… ${rate()}`;
        }
      }
      outcome = `Done: ${rate()}`;
    } catch (err) {
      if ((err as Error).name === 'AbortError') outcome = `Stopped: ${rate()}`;
      else {
        showMessage(this.error, (err as Error).message);
        outcome = 'Failed.';
      }
    } finally {
      this.stats.textContent = outcome;
      this.setRunning(undefined);
    }
    if (this.generated) void this.updateDistribution(req.prompt + this.generated);
  }

  /** The reference's four temperatures side by side: same prompt, seed and length. */
  async compare(): Promise<void> {
    if (this.running) return;
    const req = this.readRequest();
    if (typeof req === 'string') {
      showMessage(this.error, req);
      return;
    }
    if (this.checkPrompt() > 0) return;
    showMessage(this.error, '');
    const ctrl = new AbortController();
    this.setRunning(ctrl);
    this.compareBox.hidden = false;
    this.single.hidden = true;
    this.generated = '';
    this.stats.textContent = `generating at ${REFERENCE_TEMPERATURES.join(', ')} (seed ${req.seed})…`;
    const columns = REFERENCE_TEMPERATURES.map((t) => {
      const col = document.createElement('section');
      col.className = 'compare-col';
      col.setAttribute('aria-label', `temperature ${t}`);
      const h = document.createElement('h4');
      h.textContent = `temperature ${t}`;
      const pre = document.createElement('pre');
      pre.className = 'output';
      const text = document.createTextNode('');
      const p = document.createElement('span');
      p.className = 'prompt-echo';
      p.textContent = req.prompt;
      pre.append(p, text);
      col.append(h, pre);
      return { col, text, temperature: t };
    });
    this.compareBox.replaceChildren(...columns.map((c) => c.col));
    // Only the temperature changes: the reference's samples use no top-k or top-p.
    const base: GenerateRequest = { ...req };
    delete base.top_k;
    delete base.top_p;
    const results = await Promise.allSettled(
      columns.map(async (c) => {
        for await (const ev of streamGenerate(
          { ...base, temperature: c.temperature },
          ctrl.signal,
        )) {
          if (ev.type === 'text') c.text.appendData(ev.text);
        }
      }),
    );
    const failed = results.find(
      (r): r is PromiseRejectedResult =>
        r.status === 'rejected' && (r.reason as Error).name !== 'AbortError',
    );
    if (failed) showMessage(this.error, (failed.reason as Error).message);
    this.stats.textContent = ctrl.signal.aborted
      ? 'Stopped.'
      : `Four temperatures, seed ${req.seed}: low temperatures repeat the likeliest patterns, high ones take more risks.`;
    this.setRunning(undefined);
  }
}
