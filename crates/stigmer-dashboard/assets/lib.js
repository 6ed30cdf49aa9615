// Shared helpers of the dashboard's pages: building DOM nodes, calling the HTTP API, and
// formatting times, durations and JSON. No framework: pages build their DOM with `el` and
// update it in place as events arrive.

/** Builds an element. `attrs`: `class`, `dataset` (object), `on<event>` (functions), `text`,
 * other attributes (`true` sets an empty attribute, `false`/`null`/`undefined` skips it).
 * Children: nodes, strings, numbers, arrays; `null`/`false` are skipped. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** An error the API answered with: `{"error":{"code","message"}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Calls the API (same origin, the session cookie); the parsed JSON body, or an `ApiError`. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const init = { method, signal, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const error = parsed && parsed.error;
    let message = (error && error.message) || text || response.statusText || 'request failed';
    if (response.status === 401) {
      message += ' (open the address `stigmer dashboard` prints to sign in again)';
    }
    throw new ApiError(response.status, (error && error.code) || String(response.status), message);
  }
  return parsed;
}

/** An alert box with an error's message. */
export function errorBox(error, prefix = 'Error') {
  return el('p', { class: 'error-box', role: 'alert' }, `${prefix}: ${error && error.message ? error.message : error}`);
}

/** Whether an error only says a request was abandoned (the page was left). */
export function isAbort(error) {
  return error && error.name === 'AbortError';
}

/** `1.2 s`, `3 min 4 s`, `250 ms`; an em dash for nothing. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Milliseconds since the epoch of an RFC 3339 timestamp, or `null`. */
export function millis(ts) {
  if (!ts) return null;
  const value = Date.parse(ts);
  return Number.isNaN(value) ? null : value;
}

/** A `<time>` showing a timestamp in local time (date and time, or only the time). */
export function time(ts, { withDate = true } = {}) {
  const value = millis(ts);
  if (value === null) return el('span', { class: 'muted' }, '—');
  const date = new Date(value);
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const text = withDate
    ? `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`
    : `${clock}.${pad(date.getMilliseconds(), 3)}`;
  return el('time', { datetime: ts, title: ts }, text);
}

/** A phase as a word (readable without colour), styled by its class. */
export function phaseWord(phase, attrs = {}) {
  const word = phase || 'unknown';
  return el('span', { ...attrs, class: `phase phase-${word}` }, word);
}

/** JSON as indented text; strings stay as they are. */
export function pretty(value) {
  if (typeof value === 'string') return value;
  if (value === undefined) return '';
  return JSON.stringify(value, null, 2);
}

/** Text trimmed to `limit` characters with a "show more" button that shows all of it. */
export function trimmed(text, { limit = 2048, className = 'block' } = {}) {
  const full = text === null || text === undefined ? '' : String(text);
  const pre = el('pre', { class: className }, full.length > limit ? full.slice(0, limit) + '…' : full);
  if (full.length <= limit) return pre;
  const more = el('button', { type: 'button', class: 'link show-more' }, `show more (${full.length} characters)`);
  more.addEventListener('click', () => {
    pre.textContent = full;
    more.remove();
  });
  return el('div', { class: 'trimmed' }, pre, more);
}

/** A number with thousands separators. */
export function count(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
}

/** The `#/…` link of an execution. */
export function executionLink(id, text = id) {
  return el('a', { href: `#/executions/${encodeURIComponent(id)}` }, text);
}

/** A definition list from `[term, value]` pairs (values: nodes or strings). */
export function definitions(pairs, attrs = {}) {
  return el('dl', { class: 'facts', ...attrs }, pairs.filter(Boolean).map(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
}

/** A table with a caption (for screen readers), column headers and a body. */
export function table(caption, headers, attrs = {}) {
  const tbody = el('tbody');
  const node = el('table', attrs,
    el('caption', { class: 'visually-hidden' }, caption),
    el('thead', {}, el('tr', {}, headers.map((header) => el('th', { scope: 'col' }, header)))),
    tbody);
  return { node, tbody };
}
