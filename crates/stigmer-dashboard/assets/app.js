// The dashboard's entry point: a hash router (`#/executions?phase=failed`, `#/executions/<id>`,
// …) that renders one page at a time into `<main>`. Leaving a page disposes of it: its fetches
// are aborted, its event streams closed and its timers cleared.

import { errorBox, isAbort } from './lib.js';
import * as overview from './overview.js';
import * as executions from './executions.js';
import * as execution from './execution.js';
import * as resources from './resources.js';
import * as sessions from './sessions.js';

/** What a page gets: the element to render into, an abort signal, and cleanup hooks. */
class Page {
  constructor(main) {
    this.main = main;
    this.controller = new AbortController();
    this.cleanups = [];
    this.disposed = false;
  }

  get signal() {
    return this.controller.signal;
  }

  /** Runs `cleanup` when the page is left. */
  onDispose(cleanup) {
    this.cleanups.push(cleanup);
  }

  /** An `EventSource` closed when the page is left. */
  eventSource(url) {
    const source = new EventSource(url);
    this.onDispose(() => source.close());
    return source;
  }

  /** `setInterval` cleared when the page is left. */
  every(ms, tick) {
    const handle = setInterval(tick, ms);
    this.onDispose(() => clearInterval(handle));
  }

  dispose() {
    this.disposed = true;
    this.controller.abort();
    for (const cleanup of this.cleanups.splice(0)) {
      try {
        cleanup();
      } catch (error) {
        console.warn('cleanup failed', error);
      }
    }
  }
}

const routes = [
  { pattern: /^\/$/, nav: 'overview', render: overview.render },
  { pattern: /^\/executions$/, nav: 'executions', render: executions.render },
  { pattern: /^\/executions\/([^/]+)$/, nav: 'executions', render: execution.render },
  { pattern: /^\/resources$/, nav: 'resources', render: resources.renderKinds },
  { pattern: /^\/resources\/([^/]+)$/, nav: 'resources', render: resources.renderKind },
  { pattern: /^\/resources\/([^/]+)\/([^/]+)$/, nav: 'resources', render: resources.renderOne },
  { pattern: /^\/sessions$/, nav: 'sessions', render: sessions.renderList },
  { pattern: /^\/sessions\/([^/]+)$/, nav: 'sessions', render: sessions.renderOne },
];

const main = document.getElementById('main');
let current = null;
let currentPath = null;

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [rawPath, rawQuery = ''] = hash.split('?', 2);
  const path = rawPath.length > 1 ? rawPath.replace(/\/+$/, '') : '/';
  const query = new URLSearchParams(rawQuery);
  // A filter change re-renders the same page: give the focus back to the control that had it.
  const focusedId = path === currentPath && document.activeElement ? document.activeElement.id : null;
  if (current) current.dispose();
  const page = new Page(main);
  current = page;
  currentPath = path;
  main.replaceChildren();
  const match = routes.map((candidate) => [candidate, path.match(candidate.pattern)]).find(([, found]) => found);
  for (const link of document.querySelectorAll('nav a[data-nav]')) {
    if (match && link.dataset.nav === match[0].nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!match) {
    main.append(errorBox(`no page at ${path}`, 'Not found'));
    return;
  }
  const [{ render }, found] = match;
  const params = found.slice(1).map(decodeURIComponent);
  Promise.resolve()
    .then(() => render(page, params, query))
    .then(() => {
      if (focusedId && !page.disposed) document.getElementById(focusedId)?.focus();
    })
    .catch((error) => {
      if (page.disposed || isAbort(error)) return;
      main.append(errorBox(error));
    });
}

// The sign-in link carries the token; the server swaps it for a cookie and redirects, but never
// leave it in the address bar or the history should a proxy skip the redirect.
if (new URLSearchParams(location.search).has('token')) {
  history.replaceState(null, '', location.pathname + location.hash);
}
window.addEventListener('hashchange', route);
route();
