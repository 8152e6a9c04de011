import type {
  BatchPoint,
  DashboardState,
  EpochPoint,
  EpochSamples,
  RunInfo,
  TrainEnd,
} from '../../src/server/dashboard.ts';
import { ApiError, getJson } from './api.ts';
import { LineChart } from './charts.ts';
import { el, formatDuration, formatInt, showMessage } from './ui.ts';

// The training dashboard: the record of a `charlstm train --dashboard` run, from
// GET /v1/train/events (the state so far, then each new event; EventSource reconnects by itself
// and the server replays the state, so a reload or a dropped connection loses nothing).

const LN2 = Math.LN2;

export class DashboardView {
  private state: DashboardState = { run: null, batches: [], epochs: [], samples: [], end: null };
  private source: EventSource | undefined;
  private chart: LineChart | undefined;
  private frame = 0;
  private samplesShown = 0;

  private readonly error = el('db-error');
  private readonly status = el('db-status');
  private readonly progress = el<HTMLProgressElement>('db-progress');
  private readonly runInfo = el('db-run');
  private readonly table = el<HTMLTableSectionElement>('db-epochs');
  private readonly samples = el('db-samples');

  async init(): Promise<void> {
    try {
      this.state = await getJson<DashboardState>('v1/train/state');
    } catch (err) {
      const msg =
        err instanceof ApiError && err.status === 404
          ? 'No training is being recorded here. Start one with `charlstm train --dashboard`, or train in the browser view.'
          : `Cannot read the training record: ${(err as Error).message}`;
      showMessage(this.error, msg);
      this.status.textContent = '';
      return;
    }
    this.chart = new LineChart(el('db-chart'), {
      xLabel: 'batch',
      yLabel: 'loss (nats)',
      series: [
        { label: 'batch loss', color: '#4a7bd0' },
        { label: 'epoch loss', color: '#d9480f', points: true },
        { label: 'validation loss', color: '#2b8a3e', points: true },
      ],
    });
    this.render();
    this.connect();
  }

  private connect(): void {
    const source = new EventSource('v1/train/events');
    this.source = source;
    const on = <T>(type: string, fn: (data: T) => void): void =>
      source.addEventListener(type, (e) => {
        fn(JSON.parse((e as MessageEvent<string>).data) as T);
        this.schedule();
      });
    on<DashboardState>('state', (s) => {
      this.state = s;
      this.samplesShown = -1; // redraw them all
    });
    on<RunInfo>('run', (r) => {
      this.state.run = r;
      this.state.end = null;
    });
    on<BatchPoint>('batch', (b) => this.state.batches.push(b));
    on<EpochPoint>('epoch', (e) => this.state.epochs.push(e));
    on<EpochSamples>('samples', (s) => this.state.samples.push(s));
    on<TrainEnd>('end', (e) => (this.state.end = e));
    source.addEventListener('open', () => showMessage(this.error, ''));
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED)
        showMessage(this.error, 'Lost the connection to the training process.');
      else if (!this.state.end) showMessage(this.error, 'Connection lost; reconnecting…');
    });
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const { run, batches, epochs, end } = this.state;
    const last = batches[batches.length - 1];
    if (!run) {
      this.status.textContent = 'Waiting for training to start…';
    } else if (end) {
      this.status.textContent = `${end.stopped ? 'Stopped' : 'Finished'} after ${end.epochs} epoch${end.epochs === 1 ? '' : 's'}.`;
    } else if (last) {
      this.status.textContent =
        `Epoch ${last.epoch}/${run.epochs} · batch ${last.step}/${last.steps} · loss ${last.epochLoss.toFixed(4)} · ` +
        `${formatInt(last.seqPerSec)} sequences/s · ETA ${formatDuration(last.etaEpoch)} (epoch), ${formatDuration(last.eta)} (run)`;
    } else {
      this.status.textContent = `Epoch ${run.startEpoch + 1}/${run.epochs} starting…`;
    }
    if (run) {
      const total = run.epochs * run.stepsPerEpoch;
      this.progress.max = Math.max(1, total);
      this.progress.value =
        end && !end.stopped ? total : (last?.iteration ?? run.startEpoch * run.stepsPerEpoch);
      this.progress.hidden = false;
      this.runInfo.textContent =
        `${formatInt(run.sequences)} sequences of ${run.maxlen} characters per epoch · batch ${run.batchSize} · ` +
        `${run.vocabSize} characters · ${run.units} units · learning rate ${run.learningRate} · ` +
        (run.threads === 0
          ? 'on the main thread'
          : `${run.threads} worker thread${run.threads === 1 ? '' : 's'}`);
    }
    this.renderChart(batches, epochs);
    this.renderTable(epochs);
    this.renderSamples();
  }

  private renderChart(batches: BatchPoint[], epochs: EpochPoint[]): void {
    // one x axis (the batch number) for all three series; gaps are null
    const rows = new Map<number, [number | null, number | null, number | null]>();
    for (const b of batches) rows.set(b.iteration, [b.loss, null, null]);
    for (const e of epochs) {
      const row = rows.get(e.iteration) ?? [null, null, null];
      row[1] = e.loss;
      row[2] = e.valLoss ?? null;
      rows.set(e.iteration, row);
    }
    const xs = [...rows.keys()].sort((a, b) => a - b);
    this.chart?.setData([xs, ...[0, 1, 2].map((s) => xs.map((x) => rows.get(x)![s]!))]);
  }

  private renderTable(epochs: EpochPoint[]): void {
    const fmt = (v: number | undefined, digits: number): string =>
      v === undefined ? '–' : v.toFixed(digits);
    this.table.replaceChildren(
      ...epochs.map((e) => {
        const tr = document.createElement('tr');
        const cells = [
          String(e.epoch),
          fmt(e.loss, 4),
          fmt(e.loss / LN2, 3),
          fmt(e.valLoss, 4),
          fmt(e.valBpc ?? (e.valLoss === undefined ? undefined : e.valLoss / LN2), 3),
          formatInt(e.seqPerSec),
          formatDuration(e.seconds),
        ];
        for (const c of cells) {
          const td = document.createElement('td');
          td.textContent = c;
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  private renderSamples(): void {
    const all = this.state.samples;
    if (this.samplesShown === all.length) return;
    if (this.samplesShown < 0 || this.samplesShown > all.length) {
      this.samples.replaceChildren();
      this.samplesShown = 0;
    }
    for (const s of all.slice(this.samplesShown)) {
      this.samples.querySelectorAll('details').forEach((d) => (d.open = false)); // the newest stays open
      const details = document.createElement('details');
      details.open = true;
      details.className = 'epoch-samples';
      const summary = document.createElement('summary');
      summary.textContent = `Epoch ${s.epoch}: samples at ${s.texts.map((t) => t.temperature).join(', ')}`;
      details.append(summary);
      const grid = document.createElement('div');
      grid.className = 'compare';
      for (const t of s.texts) {
        const col = document.createElement('section');
        col.className = 'compare-col';
        const h = document.createElement('h4');
        h.textContent = `temperature ${t.temperature}`;
        const pre = document.createElement('pre');
        pre.className = 'output';
        const seed = document.createElement('span');
        seed.className = 'prompt-echo';
        seed.textContent = s.seed;
        pre.append(seed, t.text);
        col.append(h, pre);
        grid.append(col);
      }
      details.append(grid);
      this.samples.prepend(details);
    }
    this.samplesShown = all.length;
  }

  close(): void {
    this.source?.close();
  }
}
