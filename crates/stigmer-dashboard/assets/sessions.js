// Sessions: the list (newest first, a page at a time) and one session's conversation, message
// by message: the user's text, the assistant's text and tool calls, the tools' results.

import { api, count, el, executionLink, pretty, table, time, trimmed } from './lib.js';

const PAGE_SIZE = 50;

export async function renderList(page, _params, query) {
  const before = query.get('before') || '';
  const url = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (before) url.set('before', before);
  const reply = await api(`/api/v1/sessions?${url}`, { signal: page.signal });
  const list = table('Sessions, newest first', ['Session', 'Agent', 'Created', 'Executions'], { id: 'sessions', class: 'list' });
  for (const session of reply.items || []) {
    list.tbody.append(el('tr', { dataset: { id: session.id } },
      el('th', { scope: 'row' }, el('a', { href: `#/sessions/${encodeURIComponent(session.id)}` }, session.id)),
      el('td', {}, session.agent || '—'),
      el('td', {}, time(session.createdAt)),
      el('td', { class: 'number' }, count(session.executions))));
  }
  page.main.append(
    el('h1', {}, 'Sessions'),
    (reply.items || []).length ? list.node : el('p', { class: 'muted' }, 'No sessions.'),
    el('nav', { class: 'pager', 'aria-label': 'Pages' },
      before ? el('a', { href: '#/sessions' }, 'Newest') : null, ' ',
      reply.next ? el('a', { id: 'older', href: `#/sessions?before=${encodeURIComponent(reply.next)}` }, 'Older') : null));
}

export async function renderOne(page, [id]) {
  const reply = await api(`/api/v1/sessions/${encodeURIComponent(id)}`, { signal: page.signal });
  const session = reply.session || {};
  const spec = session.spec || {};
  const conversation = el('div', { id: 'conversation', class: 'conversation' });
  let execution = null;
  for (const stored of reply.messages || []) {
    if (stored.executionId !== execution) {
      execution = stored.executionId;
      conversation.append(el('h2', {}, 'Execution ', executionLink(execution)));
    }
    conversation.append(message(stored));
  }
  page.main.append(
    el('p', {}, el('a', { href: '#/sessions' }, 'All sessions')),
    el('h1', {}, 'Session ', el('code', {}, id)),
    el('p', {}, 'Agent: ', spec.agent
      ? el('a', { href: `#/resources/agent/${encodeURIComponent(spec.agent)}` }, spec.agent)
      : '—'),
    (reply.messages || []).length ? conversation : el('p', { class: 'muted' }, 'No messages yet.'));
}

/** One message, by role. */
function message(stored) {
  const body = stored.message || {};
  const role = body.role || 'unknown';
  const place = el('span', { class: 'muted' }, ` turn ${stored.turn}, #${stored.index}`);
  switch (role) {
    case 'user':
    case 'system':
      return el('div', { class: `message role-${role}`, dataset: { role } },
        el('h3', {}, role, place), trimmed(body.text, { className: 'text' }));
    case 'assistant':
      return el('div', { class: 'message role-assistant', dataset: { role } },
        el('h3', {}, 'assistant', place),
        body.text ? trimmed(body.text, { className: 'text' }) : null,
        (body.tool_calls || []).map((call) => el('div', { class: 'tool-call' },
          el('p', {}, 'calls ', el('strong', {}, call.name), ' ', el('code', {}, call.id)),
          trimmed(pretty(call.arguments)))));
    case 'tool':
      return el('div', { class: 'message role-tool', dataset: { role } },
        el('h3', {}, 'tool result of ', el('strong', {}, body.name || '?'), ' ', el('code', {}, body.call_id || ''), place),
        trimmed(body.content),
        (body.images || []).length ? el('p', { class: 'muted' }, `${body.images.length} image(s) not shown`) : null);
    default:
      return el('div', { class: 'message', dataset: { role } }, el('h3', {}, role, place), trimmed(pretty(body)));
  }
}
