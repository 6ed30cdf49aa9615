// The overview: the daemon and its components (state, restarts, last exit), problems, a link
// to Temporal's UI and the latest executions. Refreshed every few seconds while shown.

import { api, count, definitions, duration, el, errorBox, executionLink, isAbort, phaseWord, table, time } from './lib.js';

const REFRESH_MS = 5000;

export async function render(page) {
  const status = el('div', { id: 'status' });
  const recent = el('div', { id: 'recent' });
  page.main.append(el('h1', {}, 'Overview'), status, el('h2', {}, 'Latest executions'), recent);
  const refresh = async () => {
    try {
      const [daemon, latest] = await Promise.all([
        api('/api/v1/status', { signal: page.signal }),
        api('/api/v1/executions?limit=5', { signal: page.signal }),
      ]);
      status.replaceChildren(renderStatus(daemon));
      recent.replaceChildren(renderRecent(latest));
    } catch (error) {
      if (!isAbort(error)) status.replaceChildren(errorBox(error));
    }
  };
  await refresh();
  page.every(REFRESH_MS, refresh);
}

function renderStatus(daemon) {
  const problems = daemon.problems || [];
  const components = table('Components', ['Component', 'State', 'Mode', 'Process', 'Restarts', 'Up', 'Last exit', 'Endpoint'], { id: 'components' });
  for (const component of daemon.components || []) {
    components.tbody.append(el('tr', { dataset: { component: component.name, state: component.state } },
      el('th', { scope: 'row' }, component.name),
      el('td', {}, el('span', { class: `state state-${component.state}` }, component.state)),
      el('td', {}, component.mode || '—'),
      el('td', {}, component.containerId ? `container ${component.containerId.slice(0, 12)}` : component.pid ? `pid ${component.pid}` : '—'),
      el('td', { class: 'number' }, count(component.restarts)),
      el('td', {}, component.uptimeSecs === null || component.uptimeSecs === undefined ? '—' : duration(component.uptimeSecs * 1000)),
      el('td', {}, component.lastExit || '—'),
      el('td', {}, component.endpoint || '—')));
  }
  const temporal = daemon.temporalUi
    ? el('a', { id: 'temporal-ui', href: daemon.temporalUi, target: '_blank', rel: 'noopener' }, `Temporal UI (namespace ${daemon.temporalNamespace || 'default'})`)
    : el('span', { class: 'muted' }, 'Temporal UI not running (temporal.ui in the config)');
  return el('div', {},
    definitions([
      ['Version', daemon.version || '—'],
      ['Daemon', daemon.daemonPid ? `pid ${daemon.daemonPid}` : '—'],
      ['Up', duration((daemon.uptimeSecs || 0) * 1000)],
      ['Home', el('code', {}, daemon.home || '—')],
      ['Temporal', temporal],
    ]),
    el('h2', {}, 'Problems'),
    problems.length
      ? el('ul', { id: 'problems', class: 'problems' }, problems.map((problem) => el('li', {}, el('strong', {}, 'problem: '), problem)))
      : el('p', { id: 'problems', class: 'muted' }, 'No problems.'),
    el('h2', {}, 'Components'),
    components.node);
}

function renderRecent(latest) {
  const items = latest.items || [];
  if (!items.length) return el('p', { class: 'muted' }, 'No executions yet. Start one with `stigmer run AGENT "message"`.');
  return el('div', {},
    el('ul', { class: 'recent' }, items.map((item) => el('li', { dataset: { id: item.id } },
      phaseWord(item.phase), ' ', executionLink(item.id), ' ', el('span', {}, item.name), ' ', time(item.createdAt)))),
    el('p', {}, el('a', { href: '#/executions' }, `All ${count(latest.total)} executions`)));
}
