import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { charLabel, charName } from './ui.ts';

// Charts: loss curves with uPlot (x is a plain number, not time), sized to their container and
// redrawn at most once per animation frame however often data arrives; the next-character
// distribution as plain HTML bars (readable by screen readers, clickable).

export interface LineSeries {
  label: string;
  color: string;
  /** Only points, no line (e.g. one value per epoch). */
  points?: boolean;
  dash?: number[];
}

export class LineChart {
  private readonly plot: uPlot;
  private readonly observer: ResizeObserver;
  private pending: uPlot.AlignedData | undefined;
  private frame = 0;

  constructor(
    private readonly container: HTMLElement,
    opts: { xLabel: string; yLabel: string; series: LineSeries[]; height?: number },
  ) {
    const height = opts.height ?? 260;
    this.plot = new uPlot(
      {
        width: Math.max(200, container.clientWidth),
        height,
        scales: { x: { time: false } },
        axes: [{ label: opts.xLabel }, { label: opts.yLabel, size: 60 }],
        series: [
          { label: opts.xLabel },
          ...opts.series.map((s): uPlot.Series => ({
            label: s.label,
            stroke: s.color,
            width: s.points ? 0 : 1.5,
            spanGaps: true,
            ...(s.dash ? { dash: s.dash } : {}),
            points: s.points ? { show: true, size: 7, fill: s.color } : { show: false },
          })),
        ],
        legend: { live: false },
      },
      [[], ...opts.series.map(() => [])],
      container,
    );
    this.observer = new ResizeObserver(() => {
      const w = Math.max(200, this.container.clientWidth);
      if (w !== this.plot.width) this.plot.setSize({ width: w, height });
    });
    this.observer.observe(container);
  }

  /** Replace the data: x values then one array per series (null for a gap). */
  setData(data: (number | null)[][]): void {
    this.pending = data as uPlot.AlignedData;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.pending) this.plot.setData(this.pending);
      this.pending = undefined;
    });
  }

  destroy(): void {
    cancelAnimationFrame(this.frame);
    this.observer.disconnect();
    this.plot.destroy();
  }
}

/**
 * The `top` most probable next characters as horizontal bars, most probable first. Each bar is
 * a button: choosing it calls `onPick` with its character (e.g. to append it to the prompt).
 */
export function renderDistribution(
  box: HTMLElement,
  vocab: readonly string[],
  probs: ArrayLike<number>,
  top: number,
  onPick?: (ch: string) => void,
): void {
  const order = Array.from({ length: Math.min(vocab.length, probs.length) }, (_, i) => i)
    .sort((a, b) => probs[b]! - probs[a]! || a - b)
    .slice(0, top);
  const max = order.length > 0 ? probs[order[0]!]! : 1;
  box.replaceChildren(
    ...order.map((i) => {
      const ch = vocab[i]!;
      const p = probs[i]!;
      const row = document.createElement('button');
      row.type = 'button';
      row.className = 'bar';
      row.setAttribute('aria-label', `${charName(ch)}: ${(100 * p).toFixed(1)} percent`);
      row.title = onPick ? `append ${charName(ch)} to the prompt` : charName(ch);
      if (onPick) row.addEventListener('click', () => onPick(ch));
      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = charLabel(ch);
      const track = document.createElement('span');
      track.className = 'bar-track';
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      fill.style.width = `${max > 0 ? (100 * p) / max : 0}%`;
      track.append(fill);
      const value = document.createElement('span');
      value.className = 'bar-value';
      value.textContent = `${(100 * p).toFixed(1)}%`;
      row.append(label, track, value);
      return row;
    }),
  );
}
