// Small DOM helpers shared by the views.

export function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page has no #${id}`);
  return e as T;
}

/** Show a message in an alert box (role="alert"), or hide the box with an empty message. */
export function showMessage(box: HTMLElement, message: string): void {
  box.textContent = message;
  box.hidden = message === '';
}

/** A readable label for one character: space, newline and other invisibles get a symbol. */
export function charLabel(ch: string): string {
  switch (ch) {
    case ' ':
      return '␣';
    case '\n':
      return '↵';
    case '\t':
      return '⇥';
    case '\r':
      return '␍';
    default: {
      const cp = ch.codePointAt(0) ?? 0;
      if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return `U+${cp.toString(16).padStart(4, '0')}`;
      return ch;
    }
  }
}

/** A character's name for messages: "x", "space", "newline"... */
export function charName(ch: string): string {
  if (ch === ' ') return 'space';
  if (ch === '\n') return 'newline';
  if (ch === '\t') return 'tab';
  const label = charLabel(ch);
  return label === ch ? `"${ch}"` : label;
}

/**
 * The characters of `text` (whole code points) with a flag for those the model cannot read.
 * A model trained lowercased reads the lowercased prompt, so a character counts as known when
 * its lowercase form is.
 */
export function checkVocabulary(
  text: string,
  vocab: ReadonlySet<string>,
  lowercase: boolean,
): { chars: { ch: string; known: boolean }[]; unknown: string[] } {
  const chars: { ch: string; known: boolean }[] = [];
  const unknown = new Set<string>();
  for (const ch of text) {
    const read = lowercase ? ch.toLowerCase() : ch;
    let known = true;
    for (const c of read) if (!vocab.has(c)) known = false;
    chars.push({ ch, known });
    if (!known) unknown.add(ch);
  }
  return { chars, unknown: [...unknown] };
}

/**
 * Render the vocabulary check of `text` into `box`: nothing when every character is known;
 * otherwise a message naming the unknown characters and the text with them marked.
 * Returns the number of distinct unknown characters.
 */
export function renderVocabularyCheck(
  box: HTMLElement,
  text: string,
  vocab: ReadonlySet<string> | undefined,
  lowercase: boolean,
): number {
  box.replaceChildren();
  if (!vocab) {
    box.hidden = true;
    return 0;
  }
  const { chars, unknown } = checkVocabulary(text, vocab, lowercase);
  box.hidden = unknown.length === 0;
  if (unknown.length === 0) return 0;
  const msg = document.createElement('p');
  const shown = unknown.slice(0, 12).map(charName).join(', ');
  const more = unknown.length > 12 ? ` and ${unknown.length - 12} more` : '';
  msg.textContent =
    `${unknown.length === 1 ? 'This character is' : `These ${unknown.length} characters are`} ` +
    `not in the model's vocabulary: ${shown}${more}. Remove or replace ${unknown.length === 1 ? 'it' : 'them'} to generate.`;
  const pre = document.createElement('pre');
  pre.className = 'vocab-preview';
  let run = '';
  const flush = (): void => {
    if (run) pre.append(run);
    run = '';
  };
  for (const { ch, known } of chars) {
    if (known) {
      run += ch;
      continue;
    }
    flush();
    const mark = document.createElement('mark');
    mark.className = 'unknown-char';
    mark.title = `not in the vocabulary: ${charName(ch)}`;
    mark.textContent = ch === '\n' ? '↵\n' : ch === ' ' ? '␣' : ch;
    pre.append(mark);
  }
  flush();
  box.append(msg, pre);
  return unknown.length;
}

/** 75 → "1m15s", 2.34 → "2.3s": for ETAs and durations. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 9.95) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(r).padStart(2, '0')}s`;
  return `${r}s`;
}

export const formatInt = (n: number): string =>
  Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';

/** A number input's value, or undefined when it is empty. NaN when it is not a number. */
export function optionalNumber(input: HTMLInputElement): number | undefined {
  const v = input.value.trim();
  return v === '' ? undefined : Number(v);
}

/** Resolve on the next macrotask (lets the page paint and handle input). */
export function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
