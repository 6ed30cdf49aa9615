// The executions list: one page of rows (never more), newest first, filtered by kind, phases,
// agent, workflow and text, all kept in the URL (`#/executions?phase=running,failed&q=…`).
// Rows update live from `/api/v1/stream/executions`; new executions that match the filters
// appear at the top while the newest page is shown.

import { api, count, duration, el, executionLink, phaseWord, table, time } from './lib.js';

const PAGE_SIZE = 50;
const PHASES = ['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled'];

/** The filters of the URL's query. */
function readFilters(query) {
  return {
    kind: query.get('kind') || '',
    phase: (query.get('phase') || '').split(',').filter((phase) => PHASES.includes(phase)),
    agent: query.get('agent') || '',
    workflow: query.get('workflow') || '',
    q: query.get('q') || '',
    before: query.get('before') || '',
  };
}

/** The `#/executions?…` address of `filters`. */
function address(filters) {
  const query = new URLSearchParams();
  if (filters.kind) query.set('kind', filters.kind);
  if (filters.phase.length) query.set('phase', filters.phase.join(','));
  for (const name of ['agent', 'workflow', 'q', 'before']) {
    if (filters[name]) query.set(name, filters[name]);
  }
  const text = query.toString().replace(/%2C/g, ',');
  return '#/executions' + (text ? `?${text}` : '');
}

/** Whether a summary from the live stream belongs on this page (the server's filters, the same rules as the
 * server's `Filter`). */
function matches(summary, filters) {
  if (filters.kind && summary.kind !== filters.kind) return false;
  if (filters.phase.length && !filters.phase.includes(summary.phase)) return false;
  // A sub-agent's run (`agent/sub-agent`) belongs to its agent too.
  if (filters.agent && !(summary.kind === 'agent' && [summary.name, summary.name.split('/')[0]].includes(filters.agent))) return false;
  if (filters.workflow && !(summary.kind === 'workflow' && summary.name === filters.workflow)) return false;
  if (filters.q) {
    const needle = filters.q.toLowerCase();
    const haystack = [summary.id, summary.name, summary.message, summary.reason, summary.session];
    if (!haystack.some((text) => text && String(text).toLowerCase().includes(needle))) return false;
  }
  return true;
}

export async function render(page, _params, query) {
  const filters = readFilters(query);
  const form = filterForm(filters);
  const counter = el('p', { id: 'count', role: 'status' }, 'Loading…');
  const live = el('span', { id: 'live', class: 'muted' });
  const rows = table('Executions, newest first', ['Execution', 'Kind', 'Name', 'Phase', 'Message', 'Created', 'Duration', 'Turns', 'Tool calls', 'Tokens in / out', 'Model', 'Approvals'], { id: 'executions', class: 'list' });
  const pager = el('nav', { class: 'pager', 'aria-label': 'Pages' });
  page.main.append(el('h1', {}, 'Executions'), form, el('p', {}, counter, ' ', live), rows.node, pager);

  const url = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const name of ['kind', 'agent', 'workflow', 'q', 'before']) {
    if (filters[name]) url.set(name, filters[name]);
  }
  if (filters.phase.length) url.set('phase', filters.phase.join(','));
  const listed = await api(`/api/v1/executions?${url}`, { signal: page.signal });
  const fragment = document.createDocumentFragment();
  for (const summary of listed.items || []) fragment.append(row(summary));
  rows.tbody.append(fragment);
  let total = listed.total ?? (listed.items || []).length;
  const showCount = () => {
    counter.textContent = `${count(total)} execution${total === 1 ? '' : 's'}` +
      (filters.before ? ' (older page)' : '') + (rows.tbody.children.length ? '' : ': none to show');
  };
  showCount();
  // Rows pushed off the bottom by live ones are reached again from the last row kept.
  let next = listed.next || null;
  let olderFromLastRow = false;
  const older = el('button', { type: 'button', id: 'older' }, 'Older');
  older.addEventListener('click', () => {
    const cursor = olderFromLastRow ? rows.tbody.lastElementChild?.dataset.cursor : next;
    location.hash = address({ ...filters, before: cursor || next });
  });
  const showPager = () => {
    const links = [
      filters.before ? el('a', { id: 'newest', href: address({ ...filters, before: '' }) }, 'Newest') : null,
      next || olderFromLastRow ? older : null,
    ];
    pager.replaceChildren(...links.filter(Boolean));
  };
  showPager();
  performance.mark('executions-rendered');
  document.body.dataset.executionsRendered = String(performance.now());

  if (filters.before) return; // An older page does not change under the reader.
  const stream = page.eventSource('/api/v1/stream/executions');
  stream.onopen = () => { live.textContent = 'live'; };
  stream.onerror = () => {
    live.textContent = stream.readyState === EventSource.CLOSED ? 'not live (reload to retry)' : 'reconnecting…';
  };
  stream.addEventListener('execution', (message) => {
    let summary;
    try {
      summary = JSON.parse(message.data);
    } catch {
      return;
    }
    const existing = rows.tbody.querySelector(`tr[data-id="${CSS.escape(summary.id)}"]`);
    if (existing) {
      existing.replaceWith(row(summary));
      return;
    }
    if (!matches(summary, filters)) return;
    rows.tbody.prepend(row(summary));
    total += 1;
    while (rows.tbody.children.length > PAGE_SIZE) {
      rows.tbody.lastElementChild.remove();
      olderFromLastRow = true;
    }
    showCount();
    showPager();
  });
}

/** One row; its cursor (`createdAt|id`, the server's) reaches the rows older than it. */
function row(summary) {
  const tokens = `${count(summary.inputTokens)} / ${count(summary.outputTokens)}`;
  const message = summary.message || summary.reason || '';
  return el('tr', { dataset: { id: summary.id, phase: summary.phase, cursor: `${summary.createdAt}|${summary.id}` } },
    el('td', {}, executionLink(summary.id)),
    el('td', {}, summary.kind),
    el('td', {}, summary.name
      ? el('a', { href: `#/resources/${summary.kind}/${encodeURIComponent(summary.name)}` }, summary.name)
      : '—'),
    el('td', {}, phaseWord(summary.phase)),
    el('td', { class: 'message', title: message }, message.length > 80 ? message.slice(0, 80) + '…' : message),
    el('td', {}, time(summary.createdAt)),
    el('td', { class: 'number' }, duration(summary.durationMs)),
    el('td', { class: 'number' }, count(summary.turns)),
    el('td', { class: 'number' }, count(summary.toolCalls)),
    el('td', { class: 'number' }, tokens),
    el('td', {}, summary.model || '—'),
    el('td', {}, summary.pendingApprovals ? el('strong', { class: 'waiting' }, `${summary.pendingApprovals} waiting`) : '—'));
}

function filterForm(filters) {
  const phases = el('fieldset', { class: 'phases' }, el('legend', {}, 'Phase'),
    PHASES.map((phase) => el('label', {},
      el('input', { type: 'checkbox', name: 'phase', value: phase, id: `phase-${phase}`, checked: filters.phase.includes(phase) }),
      ` ${phase}`)));
  const kind = el('select', { name: 'kind', id: 'filter-kind' },
    [['', 'any'], ['agent', 'agent'], ['workflow', 'workflow']].map(([value, label]) =>
      el('option', { value, selected: filters.kind === value }, label)));
  const text = (name, label) => el('label', {}, `${label} `,
    el('input', { type: name === 'q' ? 'search' : 'text', name, id: `filter-${name}`, value: filters[name] }));
  const form = el('form', { id: 'filters', class: 'filters', role: 'search' },
    phases,
    el('label', {}, 'Kind ', kind),
    text('agent', 'Agent'),
    text('workflow', 'Workflow'),
    text('q', 'Text'),
    el('button', { type: 'submit' }, 'Apply'),
    el('a', { href: '#/executions' }, 'Clear'));
  const apply = () => {
    const data = new FormData(form);
    location.hash = address({
      kind: data.get('kind') || '',
      phase: data.getAll('phase'),
      agent: String(data.get('agent') || '').trim(),
      workflow: String(data.get('workflow') || '').trim(),
      q: String(data.get('q') || '').trim(),
      before: '',
    });
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  // Checkboxes and the kind apply at once; text fields when submitted (Enter or Apply).
  phases.addEventListener('change', apply);
  kind.addEventListener('change', apply);
  return form;
}
