import { DashboardView } from './dashboard-view.ts';
import { LocalView } from './local-view.ts';
import { Playground } from './playground.ts';
import './style.css';

// One page, three views chosen by the URL's hash: #playground (a model served by
// `charlstm serve`), #dashboard (a `charlstm train --dashboard` run), #local (everything in the
// page, no server). With no hash the page asks the server what it is.

const VIEWS = ['playground', 'dashboard', 'local'] as const;
type View = (typeof VIEWS)[number];

const playground = new Playground();
const dashboard = new DashboardView();
const local = new LocalView();
const started = new Set<View>();

function show(view: View): void {
  for (const v of VIEWS) {
    const section = document.getElementById(`view-${v}`)!;
    section.hidden = v !== view;
    const link = document.querySelector<HTMLAnchorElement>(`nav a[href="#${v}"]`);
    if (v === view) link?.setAttribute('aria-current', 'page');
    else link?.removeAttribute('aria-current');
  }
  document.body.dataset.view = view;
  if (!started.has(view)) {
    started.add(view);
    if (view === 'playground') void playground.init();
    else if (view === 'dashboard') void dashboard.init();
    else local.init();
  }
}

/** Which view a page opened without a hash shows: the dashboard where training is recorded. */
async function defaultView(): Promise<View> {
  try {
    const res = await fetch('v1/train/state', { headers: { accept: 'application/json' } });
    if (res.ok && (res.headers.get('content-type') ?? '').includes('json')) return 'dashboard';
  } catch {
    // no server at all: the in-browser view still works
  }
  return 'playground';
}

async function route(): Promise<void> {
  const hash = location.hash.slice(1);
  if ((VIEWS as readonly string[]).includes(hash)) {
    show(hash as View);
    return;
  }
  const view = await defaultView();
  history.replaceState(null, '', `#${view}`);
  show(view);
}

window.addEventListener('hashchange', () => {
  void route();
  document.querySelector<HTMLElement>(`#view-${location.hash.slice(1)} h2`)?.focus();
});
void route();
