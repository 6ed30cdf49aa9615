// Resources: the kinds with their counts, the resources of one kind, and one resource as YAML
// (secret values come masked from the server).

import { api, count, el, table, time } from './lib.js';

export async function renderKinds(page) {
  const reply = await api('/api/v1/resources', { signal: page.signal });
  const kinds = table('Resource kinds', ['Kind', 'Count'], { id: 'kinds' });
  for (const kind of reply.kinds || []) {
    kinds.tbody.append(el('tr', { dataset: { kind: kind.kind } },
      el('th', { scope: 'row' }, el('a', { href: `#/resources/${encodeURIComponent(kind.plural || kind.kind)}` }, kind.kind)),
      el('td', { class: 'number' }, count(kind.count))));
  }
  page.main.append(el('h1', {}, 'Resources'), kinds.node);
}

export async function renderKind(page, [kind]) {
  const reply = await api(`/api/v1/resources/${encodeURIComponent(kind)}`, { signal: page.signal });
  const items = reply.items || [];
  const list = table(`Resources of kind ${kind}`, ['Name', 'Kind', 'Created', 'Description'], { id: 'resources', class: 'list' });
  for (const resource of items) {
    const metadata = resource.metadata || {};
    const spec = resource.spec || {};
    const description = spec.description || metadata.description || '';
    list.tbody.append(el('tr', { dataset: { name: metadata.name } },
      el('th', { scope: 'row' }, el('a', { href: `#/resources/${encodeURIComponent(kind)}/${encodeURIComponent(metadata.name)}` }, metadata.name)),
      el('td', {}, resource.kind || kind),
      el('td', {}, time(metadata.createdAt)),
      el('td', {}, typeof description === 'string' ? description : '')));
  }
  page.main.append(
    el('p', {}, el('a', { href: '#/resources' }, 'All kinds')),
    el('h1', {}, kind),
    items.length ? list.node : el('p', { class: 'muted' }, 'None.'));
}

export async function renderOne(page, [kind, name]) {
  const reply = await api(`/api/v1/resources/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`, { signal: page.signal });
  const resource = reply.resource || {};
  const executions = /execution/i.test(resource.kind || kind)
    ? el('p', {}, el('a', { href: `#/executions/${encodeURIComponent(name)}` }, 'Open the execution'))
    : /^(agents?|workflows?)$/i.test(kind)
      ? el('p', {}, el('a', { href: `#/executions?${/^agent/i.test(kind) ? 'agent' : 'workflow'}=${encodeURIComponent(name)}` }, 'Its executions'))
      : null;
  page.main.append(
    el('p', {}, el('a', { href: `#/resources/${encodeURIComponent(kind)}` }, `All ${kind}`)),
    el('h1', {}, `${resource.kind || kind} `, el('code', {}, name)),
    executions,
    el('pre', { id: 'yaml', class: 'block yaml' }, reply.yaml || JSON.stringify(resource, null, 2)));
}
