// One execution, live: its header (phase, reason, duration, model, tokens), the answer as it
// streams, pending approvals with Approve / Deny, todos, sub-agents, a waterfall of model turns,
// tool calls and workflow tasks positioned by the events' `ts`, every event as a line, and the
// execution's log lines. Events come from `/api/v1/executions/{id}/events` (SSE); the browser
// resumes with `Last-Event-ID` after a drop, and events already seen (by `seq`) are skipped.

import {
  api, count, definitions, duration, el, errorBox, executionLink, isAbort, millis, phaseWord,
  pretty, table, time, trimmed,
} from './lib.js';

const TERMINAL = ['completed', 'failed', 'cancelled'];
const LOG_LIMIT = 1000;

export async function render(page, [id]) {
  const detail = await api(`/api/v1/executions/${encodeURIComponent(id)}`, { signal: page.signal });
  const view = new ExecutionView(page, id, detail);
  page.main.append(view.node);
  view.follow();
  view.loadLogs();
}

/** The key of an event's parent (nested work), '' for the execution's own events. */
function parentKey(data) {
  return data.parent ? `${data.parent.kind}:${data.parent.id}` : '';
}

class ExecutionView {
  constructor(page, id, detail) {
    this.page = page;
    this.id = id;
    this.path = `/api/v1/executions/${encodeURIComponent(id)}`;
    this.kind = (detail.summary && detail.summary.kind) || (id.startsWith('wex-') ? 'workflow' : 'agent');
    this.lastSeq = 0;
    this.phase = null;
    this.spans = new Map();
    this.spanByCall = new Map();
    this.spanByTask = new Map();
    this.attempts = new Map();
    this.pending = new Map();
    this.firstError = null;
    this.usage = { input: 0, output: 0, seen: false };
    this.answerTurn = null;
    this.layoutTimer = null;
    this.refreshTimer = null;
    this.build(detail);
    this.applyDetail(detail, { initial: true });
    page.every(1000, () => this.tick());
    page.onDispose(() => {
      clearTimeout(this.layoutTimer);
      clearTimeout(this.refreshTimer);
    });
  }

  build(detail) {
    const spec = (detail.execution && detail.execution.spec) || {};
    const summary = detail.summary || {};
    const field = (fieldId, text = '—') => el('span', { id: fieldId }, text);
    this.fields = {
      phase: el('span', { id: 'phase', class: 'phase' }, '…'),
      reason: field('reason'),
      model: field('model'),
      duration: field('duration'),
      tokens: field('tokens'),
      turns: field('turns'),
      toolCalls: field('tool-calls'),
      started: field('started'),
      finished: field('finished'),
    };
    const name = summary.name || spec.agent || spec.workflow || '';
    const parentId = (spec.parent && spec.parent.executionId) || summary.parentId;
    this.cancelButton = el('button', { type: 'button', id: 'cancel' }, 'Cancel');
    this.cancelButton.addEventListener('click', () => this.cancel());
    this.firstErrorButton = el('button', { type: 'button', id: 'first-error', hidden: true }, 'Jump to the first error');
    this.firstErrorButton.addEventListener('click', () => this.jumpToFirstError());
    this.streamState = el('span', { id: 'stream-state', class: 'muted', role: 'status' }, 'connecting…');
    this.notice = el('div', { id: 'notice' });
    const temporal = detail.temporalUrl
      ? el('a', { id: 'temporal-link', href: detail.temporalUrl, target: '_blank', rel: 'noopener' }, 'Open in Temporal')
      : null;

    this.approvals = el('ul', { id: 'approvals', class: 'approvals' });
    this.approveAll = el('button', { type: 'button', id: 'approve-all', hidden: true }, 'Approve all');
    this.denyAll = el('button', { type: 'button', id: 'deny-all', hidden: true }, 'Deny all');
    this.approveAll.addEventListener('click', () => this.decide(true, null, null));
    this.denyAll.addEventListener('click', () => this.decide(false, null, null));
    this.approvalsSection = el('section', { id: 'approvals-section', 'aria-labelledby': 'approvals-title', hidden: true },
      el('h2', { id: 'approvals-title' }, 'Waiting for approval'),
      this.approvals, el('p', {}, this.approveAll, ' ', this.denyAll));

    this.answerText = document.createTextNode('');
    this.answer = el('div', { id: 'answer', class: 'answer', 'aria-live': 'polite' }, this.answerText);
    this.output = el('pre', { id: 'output', class: 'block', hidden: true });
    this.workflowError = el('pre', { id: 'workflow-error', class: 'block error-text', hidden: true });

    this.todos = el('ul', { id: 'todos', class: 'todos' });
    this.todosSection = el('section', { hidden: true }, el('h2', {}, 'Todos'), this.todos);
    this.subAgents = el('div', { id: 'sub-agents' });
    this.subAgentsSection = el('section', { hidden: true }, el('h2', {}, 'Sub-agents'), this.subAgents);

    const waterfall = table('Timeline of model turns, tool calls and tasks', ['Step', 'State', 'Start', 'Duration', 'Timeline'], { id: 'waterfall', class: 'waterfall' });
    this.waterfall = waterfall.tbody;
    const deltas = el('input', { type: 'checkbox', id: 'show-deltas' });
    this.events = el('ol', { id: 'events', class: 'events hide-deltas' });
    deltas.addEventListener('change', () => this.events.classList.toggle('hide-deltas', !deltas.checked));
    this.logs = el('div', { id: 'logs' }, el('p', { class: 'muted' }, 'Loading…'));
    const refreshLogs = el('button', { type: 'button', id: 'refresh-logs' }, 'Refresh');
    refreshLogs.addEventListener('click', () => this.loadLogs());

    const message = this.kind === 'agent'
      ? ['Message', spec.message ? trimmed(spec.message, { limit: 500 }) : '—']
      : ['Input', trimmed(pretty(spec.input ?? null), { limit: 500 })];
    this.node = el('article', { class: 'execution', dataset: { id: this.id } },
      el('h1', {}, `${this.kind === 'workflow' ? 'Workflow' : 'Agent'} execution `, el('code', {}, this.id)),
      el('p', { class: 'actions' }, this.cancelButton, ' ', this.firstErrorButton, ' ', temporal, ' ', this.streamState),
      this.notice,
      definitions([
        ['Phase', this.fields.phase],
        ['Reason', this.fields.reason],
        [this.kind === 'workflow' ? 'Workflow' : 'Agent', name ? el('a', { href: `#/resources/${this.kind}/${encodeURIComponent(name)}` }, name) : '—'],
        spec.subAgent ? ['Sub-agent', spec.subAgent] : null,
        message,
        ['Model', this.fields.model],
        ['Duration', this.fields.duration],
        ['Tokens (in / out)', this.fields.tokens],
        ['Turns', this.fields.turns],
        ['Tool calls', this.fields.toolCalls],
        spec.session || summary.session ? ['Session', el('a', { href: `#/sessions/${encodeURIComponent(spec.session || summary.session)}` }, spec.session || summary.session)] : null,
        parentId ? ['Parent', executionLink(parentId)] : null,
        ['Created', time(summary.createdAt || (detail.execution && detail.execution.metadata && detail.execution.metadata.createdAt))],
        ['Started', this.fields.started],
        ['Finished', this.fields.finished],
      ], { id: 'header' }),
      this.approvalsSection,
      el('section', {}, el('h2', {}, this.kind === 'workflow' ? 'Output' : 'Answer'),
        this.kind === 'workflow' ? [this.output, this.workflowError] : this.answer),
      this.todosSection,
      this.subAgentsSection,
      el('section', {}, el('h2', {}, 'Timeline'), waterfall.node),
      el('section', {}, el('h2', {}, 'Events'),
        el('p', {}, el('label', {}, deltas, ' show token deltas')), this.events),
      el('section', {}, el('h2', {}, 'Logs ', refreshLogs), this.logs));
    if (this.kind === 'workflow') this.answer.hidden = true;
  }

  /** Shows what the execution resource and its summary say (initially and after changes). */
  applyDetail(detail, { initial = false } = {}) {
    const summary = detail.summary || {};
    const status = (detail.execution && detail.execution.status) || {};
    this.summary = summary;
    this.setPhase(status.phase || summary.phase, status.reason ?? summary.reason);
    this.fields.model.textContent = summary.model || '—';
    this.fields.turns.textContent = count(summary.turns);
    this.fields.toolCalls.textContent = count(summary.toolCalls);
    const startedAt = status.startedAt || summary.startedAt;
    const finishedAt = status.finishedAt || summary.finishedAt;
    if (startedAt) {
      this.startedAt = millis(startedAt);
      this.fields.started.replaceChildren(time(startedAt));
    }
    if (finishedAt) {
      this.finishedAt = millis(finishedAt);
      this.fields.finished.replaceChildren(time(finishedAt));
    }
    if (!this.usage.seen || TERMINAL.includes(this.phase)) {
      this.fields.tokens.textContent = `${count(summary.inputTokens)} / ${count(summary.outputTokens)}`;
    }
    this.showDuration();
    if (initial) {
      for (const call of status.pendingApprovals || []) this.addPending(call);
    }
    this.showSubAgents(status.subAgents || []);
    if (this.kind === 'workflow') {
      if (status.output !== undefined && status.output !== null) {
        this.output.hidden = false;
        this.output.textContent = pretty(status.output);
      }
      if (status.error) {
        this.workflowError.hidden = false;
        this.workflowError.textContent = 'error: ' + pretty(status.error);
      }
    }
  }

  setPhase(phase, reason) {
    if (!phase) return;
    this.phase = phase;
    this.fields.phase.textContent = phase;
    this.fields.phase.className = `phase phase-${phase}`;
    if (reason !== undefined) this.fields.reason.textContent = reason || '—';
    this.cancelButton.hidden = TERMINAL.includes(phase);
  }

  showDuration() {
    const known = this.summary && this.summary.durationMs !== null && this.summary.durationMs !== undefined;
    if (known && TERMINAL.includes(this.phase) && this.summary.finishedAt) {
      this.fields.duration.textContent = duration(this.summary.durationMs);
    } else if (this.startedAt) {
      const end = this.finishedAt || Date.now();
      this.fields.duration.textContent = duration(end - this.startedAt) + (this.finishedAt ? '' : ' so far');
    }
  }

  tick() {
    if (!TERMINAL.includes(this.phase)) {
      this.showDuration();
      this.scheduleLayout();
    }
  }

  showSubAgents(runs) {
    if (!runs.length) return;
    this.subAgentsSection.hidden = false;
    const list = table('Sub-agent runs', ['Sub-agent', 'Phase', 'Execution', 'Started', 'Duration', 'Answer or reason']);
    for (const run of runs) {
      const started = millis(run.startedAt);
      const finished = millis(run.finishedAt);
      list.tbody.append(el('tr', { dataset: { callId: run.callId } },
        el('th', { scope: 'row' }, run.name),
        el('td', {}, phaseWord(run.phase)),
        el('td', {}, executionLink(run.executionId)),
        el('td', {}, time(run.startedAt)),
        el('td', {}, started && finished ? duration(finished - started) : '—'),
        el('td', {}, trimmed(run.answer || run.reason || '', { limit: 300 }))));
    }
    this.subAgents.replaceChildren(list.node);
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      try {
        this.applyDetail(await api(this.path, { signal: this.page.signal }));
      } catch (error) {
        if (!isAbort(error)) this.notice.replaceChildren(errorBox(error));
      }
    }, 250);
  }

  follow() {
    const source = this.page.eventSource(`${this.path}/events`);
    source.onopen = () => { this.streamState.textContent = 'live'; };
    source.onerror = () => {
      this.streamState.textContent = source.readyState === EventSource.CLOSED ? 'disconnected (reload to retry)' : 'reconnecting…';
    };
    source.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        this.line({ seq: Number(message.lastEventId) || 0, kind: 'unreadable' }, message.data);
        return;
      }
      this.handle(event);
    };
    // After the terminal event the server says `end`: close, or the browser would reconnect.
    source.addEventListener('end', () => {
      source.close();
      this.streamState.textContent = 'ended';
      this.finishSpans();
      this.scheduleRefresh();
      this.loadLogs();
    });
  }

  handle(event) {
    if (typeof event.seq === 'number') {
      if (event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
    }
    if (window.__eventTimes) window.__eventTimes[event.seq] = performance.timeOrigin + performance.now();
    let shown;
    try {
      shown = this.apply(event, event.data || {});
    } catch (error) {
      console.warn('cannot show event', event, error);
      shown = null;
    }
    if (!shown) shown = { text: trimmed(pretty(event.data), { limit: 300, className: 'inline' }) };
    const line = this.line(event, shown.text, shown.error);
    if (shown.error) this.noteError(shown.target || line);
    this.scheduleLayout();
  }

  /** Applies one event to the page; what its line in the event list says. */
  apply(event, data) {
    const ts = event.ts;
    switch (event.kind) {
      case 'phase_changed': {
        if (!data.parent) {
          this.setPhase(data.phase, data.reason || null);
          // The event's time until the refreshed resource says (the same instant).
          if (TERMINAL.includes(data.phase)) {
            this.finishedAt = millis(ts);
            this.fields.finished.replaceChildren(time(ts));
          }
          if (data.phase === 'running' && !this.startedAt) {
            this.startedAt = millis(ts);
            this.fields.started.replaceChildren(time(ts));
          }
          this.showDuration();
          this.scheduleRefresh();
        }
        const extra = [data.worker && `worker ${data.worker}`, data.attempt && `attempt ${data.attempt}`].filter(Boolean).join(', ');
        return {
          text: [phaseWord(data.phase), extra ? ` (${extra})` : '', data.reason ? `: ${data.reason}` : ''],
          error: data.phase === 'failed',
        };
      }
      case 'message_started': {
        const parent = parentKey(data);
        const attemptKey = `${parent}|${data.turn}`;
        const previous = this.spans.get(`turn:${parent}:${data.turn}:${this.attempts.get(attemptKey)}`);
        if (previous && previous.state === 'running') this.endSpan(previous, ts, 'retried');
        this.attempts.set(attemptKey, data.attempt);
        const retry = data.attempt > 1;
        this.addSpan(`turn:${parent}:${data.turn}:${data.attempt}`, {
          kind: 'turn', ts, parent: data.parent,
          label: [`model turn ${data.turn}`, retry ? el('span', { class: 'retry' }, ` attempt ${data.attempt} (retry)`) : ''],
        });
        if (!data.parent && retry && this.answerTurn === data.turn) this.answerText.data = '';
        return { text: `model turn ${data.turn} started${retry ? ` (attempt ${data.attempt}, a retry: what it streamed before is void)` : ''}` };
      }
      case 'token_delta': {
        if (!data.parent) {
          if (this.answerTurn !== data.turn) {
            this.answerTurn = data.turn;
            this.answerText.data = '';
          }
          this.answerText.appendData(data.text || '');
        }
        return { text: el('span', { class: 'inline' }, JSON.stringify(data.text || '')) };
      }
      case 'message_completed': {
        const span = this.turnSpan(data);
        const calls = (data.tool_calls || []).map((call) => call.name);
        if (span) {
          this.endSpan(span, ts, 'ok');
          if (data.text) span.details.append(el('details', {}, el('summary', {}, 'text'), trimmed(data.text)));
          if (calls.length) span.meta.append(` → ${calls.join(', ')}`);
        }
        if (!data.parent && data.text) {
          this.answerTurn = data.turn;
          this.answerText.data = data.text;
        }
        return { text: `model turn ${data.turn} completed${calls.length ? `, asks for ${calls.join(', ')}` : ''}` };
      }
      case 'usage': {
        this.usage.seen = true;
        this.usage.input += data.input_tokens || 0;
        this.usage.output += data.output_tokens || 0;
        this.fields.tokens.textContent = `${count(this.usage.input)} / ${count(this.usage.output)}`;
        if (data.model) this.fields.model.textContent = data.model;
        const span = this.turnSpan(data);
        if (span) span.meta.append(` ${count(data.input_tokens)} in / ${count(data.output_tokens)} out`);
        return { text: `turn ${data.turn}: ${count(data.input_tokens)} tokens in, ${count(data.output_tokens)} out${data.model ? ` (${data.model})` : ''}` };
      }
      case 'tool_call_started': {
        const span = this.callSpan(data, ts);
        if (span.state !== 'running') this.setState(span, 'running');
        span.details.prepend(el('details', {}, el('summary', {}, 'arguments'), trimmed(pretty(data.arguments))));
        return { text: [`tool ${data.name} `, el('code', {}, data.call_id), ' started'] };
      }
      case 'tool_call_finished': {
        const span = this.callSpan(data, ts);
        this.endSpan(span, ts, data.is_error ? 'error' : 'ok');
        span.details.append(el('details', { open: data.is_error }, el('summary', {}, data.is_error ? 'error' : 'result'), trimmed(data.result)));
        return {
          text: [`tool ${data.name} `, el('code', {}, data.call_id), data.is_error ? ' failed: ' : ' finished', data.is_error ? trimmed(data.result, { limit: 200, className: 'inline' }) : ''],
          error: data.is_error,
          target: data.is_error ? span.row : null,
        };
      }
      case 'tool_progress': {
        const total = data.total ? `/${data.total}` : '';
        const span = this.spanByCall.get(data.call_id);
        if (span) span.progress.textContent = ` progress ${data.progress}${total}${data.message ? ` ${data.message}` : ''}`;
        return { text: `tool ${data.name} ${data.call_id}: progress ${data.progress}${total}${data.message ? `: ${data.message}` : ''}` };
      }
      case 'approval_requested': {
        this.addPending({ turn: data.turn, index: data.index, callId: data.call_id, name: data.name, arguments: data.arguments, reason: data.reason, expiresAt: data.expires_at });
        // The call's row starts now, so the wait for the decision shows on the timeline.
        this.setState(this.callSpan(data, ts), 'waiting');
        return { text: [`tool ${data.name} `, el('code', {}, data.call_id), ` waits for approval: ${data.reason}`] };
      }
      case 'approval_decided': {
        this.removePending(data.turn, data.call_id);
        const span = this.spanByCall.get(data.call_id);
        if (span && span.state === 'waiting') this.setState(span, data.approved ? 'running' : 'denied');
        return { text: [el('code', {}, data.call_id), ` ${data.approved ? 'approved' : 'denied'} by ${data.by}`, data.message ? `: ${data.message}` : ''] };
      }
      case 'context_compacted':
        return { text: `context compacted before turn ${data.turn}: ${data.messages} messages folded into a summary, about ${count(data.tokens_before)} → ${count(data.tokens_after)} tokens of a ${count(data.window)}-token window (full history in ${data.history_path})` };
      case 'subagent_started': {
        const span = this.spanByCall.get(data.call_id);
        if (span) span.meta.append(' sub-agent ', executionLink(data.execution_id, `${data.name} (${data.execution_id})`));
        this.scheduleRefresh();
        return { text: [`sub-agent ${data.name} started: `, executionLink(data.execution_id)] };
      }
      case 'todos_updated':
        if (!data.parent) this.showTodos(data.todos || []);
        return { text: `todos updated (${(data.todos || []).length} items)` };
      case 'mcp_server_failed':
        return { text: `error: MCP server ${data.server} failed (${data.phase}): ${data.reason}`, error: true };
      case 'skills_truncated':
        return { text: `warning: skill descriptions shortened to fit ${data.budget} bytes (${data.shortened} of ${data.skills})` };
      case 'sandbox_unavailable':
        return { text: `warning: the shell is not confined to the workspace: ${data.reason}` };
      case 'task_started': {
        this.taskSpan(data, ts);
        return { text: [`task ${data.name} `, el('code', {}, data.reference), ' started'] };
      }
      case 'task_completed': {
        const span = this.taskSpan(data, ts);
        this.endSpan(span, ts, 'ok');
        if (data.output !== undefined && data.output !== null) span.details.append(el('details', {}, el('summary', {}, 'output'), trimmed(pretty(data.output))));
        return { text: [`task ${data.name} `, el('code', {}, data.reference), ' completed'] };
      }
      case 'task_failed': {
        const span = this.taskSpan(data, ts);
        this.endSpan(span, ts, 'error');
        span.details.append(el('details', { open: true }, el('summary', {}, 'error'), trimmed(pretty(data.error))));
        const error = data.error || {};
        return {
          text: [`task ${data.name} `, el('code', {}, data.reference), ` failed: ${error.title || error.detail || error.type || pretty(error)}`],
          error: true,
          target: span.row,
        };
      }
      case 'task_retried': {
        const span = this.spanByTask.get(data.reference);
        if (span) span.meta.append(` attempt ${data.attempt}`);
        const start = millis(ts);
        const retry = this.addSpan(`retry:${data.reference}:${data.attempt}:${event.seq}`, {
          kind: 'retry', ts, parent: data.parent,
          label: [el('span', { class: 'retry' }, `retry ${data.attempt}`), ' of ', el('code', {}, data.reference)],
        });
        this.endSpan(retry, start === null ? ts : new Date(start + (data.delay_ms || 0)).toISOString(), 'retry');
        return { text: [`task `, el('code', {}, data.reference), ` retried (attempt ${data.attempt}) in ${duration(data.delay_ms)} after: ${(data.error && (data.error.title || data.error.detail)) || pretty(data.error)}`] };
      }
      case 'task_skipped': {
        const span = this.taskSpan(data, ts);
        this.endSpan(span, ts, 'skipped');
        return { text: [`task ${data.name} `, el('code', {}, data.reference), ' skipped (its condition was false)'] };
      }
      case 'task_waiting': {
        const span = this.taskSpan(data, ts);
        this.setState(span, 'waiting');
        span.meta.append(` waits ${duration(data.millis)}`);
        return { text: [`task ${data.name} `, el('code', {}, data.reference), ` waits ${duration(data.millis)}`] };
      }
      case 'agent_call_started':
      case 'workflow_call_started': {
        const span = this.spanByTask.get(data.reference);
        if (span) span.meta.append(' → ', executionLink(data.execution_id));
        const what = event.kind === 'agent_call_started' ? 'agent' : 'workflow';
        return { text: [`task ${data.name} `, el('code', {}, data.reference), ` started ${what} execution `, executionLink(data.execution_id)] };
      }
      default:
        return null;
    }
  }

  /** One line of the event list. */
  line(event, text, error) {
    const line = el('li', { class: `event kind-${event.kind}`, dataset: { seq: event.seq, kind: event.kind }, tabindex: error ? '-1' : null },
      event.ts ? time(event.ts, { withDate: false }) : el('span', { class: 'muted' }, '—'), ' ',
      el('span', { class: 'kind' }, event.kind), ' ',
      error ? el('strong', { class: 'error-text' }, 'error ') : null,
      text);
    this.events.append(line);
    return line;
  }

  noteError(target) {
    target.dataset.error = 'true';
    if (!target.hasAttribute('tabindex')) target.setAttribute('tabindex', '-1');
    if (this.firstError) return;
    this.firstError = target;
    this.firstErrorButton.hidden = false;
  }

  jumpToFirstError() {
    if (!this.firstError) return;
    this.firstError.scrollIntoView({ block: 'center' });
    this.firstError.focus({ preventScroll: true });
  }

  // The waterfall.

  addSpan(key, { kind, ts, parent, label }) {
    const parentSpan = parent ? (parent.kind === 'tool_call' ? this.spanByCall.get(parent.id) : this.spanByTask.get(parent.id)) : null;
    const depth = parentSpan ? parentSpan.depth + 1 : 0;
    const span = { key, kind, start: millis(ts), end: null, state: 'running', depth };
    span.meta = el('span', { class: 'meta' });
    span.progress = el('span', { class: 'meta' });
    span.details = el('div', { class: 'details' });
    span.stateWord = el('span', { class: 'state state-running' }, 'running');
    span.offset = el('td', { class: 'number' });
    span.length = el('td', { class: 'number' });
    span.bar = el('div', { class: `bar bar-${kind}` });
    const step = el('th', { scope: 'row', class: 'step' }, el('span', { class: 'label' }, label), span.meta, span.progress, span.details);
    step.style.paddingLeft = `${0.4 + depth * 1.2}em`;
    span.row = el('tr', { dataset: { span: key, kind, state: 'running' }, tabindex: '-1' },
      step, el('td', {}, span.stateWord), span.offset, span.length,
      el('td', { class: 'track-cell' }, el('div', { class: 'track' }, span.bar)));
    this.waterfall.append(span.row);
    this.spans.set(key, span);
    return span;
  }

  setState(span, state) {
    span.state = state;
    span.row.dataset.state = state;
    span.stateWord.textContent = state;
    span.stateWord.className = `state state-${state}`;
  }

  endSpan(span, ts, state) {
    span.end = millis(ts);
    this.setState(span, state);
  }

  /** The span of a model turn's latest attempt. */
  turnSpan(data) {
    const parent = parentKey(data);
    return this.spans.get(`turn:${parent}:${data.turn}:${this.attempts.get(`${parent}|${data.turn}`)}`);
  }

  callSpan(data, ts) {
    const key = `call:${parentKey(data)}:${data.turn}:${data.call_id}`;
    let span = this.spans.get(key);
    if (!span) {
      span = this.addSpan(key, { kind: 'tool', ts, parent: data.parent, label: [`tool ${data.name} `, el('code', {}, data.call_id)] });
      this.spanByCall.set(data.call_id, span);
    }
    return span;
  }

  taskSpan(data, ts) {
    let span = this.spanByTask.get(data.reference);
    if (!span || (span.end !== null && span.state !== 'waiting' && ts && millis(ts) > span.end)) {
      // A task that runs again (inside a retried `try`) gets a row per run.
      const runs = [...this.spans.keys()].filter((key) => key.startsWith(`task:${data.reference}#`)).length;
      span = this.addSpan(`task:${data.reference}#${runs + 1}`, { kind: 'task', ts, parent: data.parent, label: [`task ${data.name} `, el('code', {}, data.reference), runs ? el('span', { class: 'retry' }, ` run ${runs + 1}`) : ''] });
      this.spanByTask.set(data.reference, span);
    }
    return span;
  }

  /** When the execution ended, steps still open did not finish. */
  finishSpans() {
    for (const span of this.spans.values()) {
      if (span.end === null) {
        span.end = this.finishedAt || span.start;
        this.setState(span, 'unfinished');
      }
    }
    this.scheduleLayout();
  }

  scheduleLayout() {
    if (this.layoutTimer) return;
    this.layoutTimer = setTimeout(() => {
      this.layoutTimer = null;
      this.layout();
    }, 50);
  }

  /** Positions every bar on one time axis, from the first step's start to the last end. */
  layout() {
    const spans = [...this.spans.values()].filter((span) => span.start !== null);
    if (!spans.length) return;
    const running = !TERMINAL.includes(this.phase);
    const origin = Math.min(...spans.map((span) => span.start));
    const ends = spans.map((span) => span.end ?? (running ? Date.now() : span.start));
    const range = Math.max(1, Math.max(...ends) - origin);
    spans.forEach((span, index) => {
      const end = span.end ?? (running ? Date.now() : span.start);
      const left = ((span.start - origin) / range) * 100;
      const width = Math.max(0.4, ((end - span.start) / range) * 100);
      span.bar.style.left = `${Math.min(left, 99.6)}%`;
      span.bar.style.width = `${Math.min(width, 100 - Math.min(left, 99.6))}%`;
      span.offset.textContent = `+${duration(span.start - origin)}`;
      span.length.textContent = span.end === null ? `${duration(ends[index] - span.start)}…` : duration(span.end - span.start);
    });
  }

  // Todos and approvals.

  showTodos(todos) {
    this.todosSection.hidden = !todos.length;
    const mark = { completed: '[x]', in_progress: '[~]', pending: '[ ]' };
    this.todos.replaceChildren(...todos.map((todo) => el('li', { dataset: { status: todo.status } },
      el('span', { class: 'todo-mark', 'aria-hidden': 'true' }, mark[todo.status] || '[?]'), ' ',
      todo.content, ' ', el('span', { class: `state state-${todo.status}` }, (todo.status || 'pending').replace('_', ' ')))));
  }

  addPending(call) {
    const key = `${call.turn}|${call.callId}`;
    if (this.pending.has(key)) return;
    const status = el('span', { class: 'decision', role: 'status' });
    const message = el('input', { type: 'text', class: 'deny-message', 'aria-label': `Message with the denial of ${call.callId}`, placeholder: 'why (optional)' });
    const approve = el('button', { type: 'button', class: 'approve' }, 'Approve');
    const deny = el('button', { type: 'button', class: 'deny' }, 'Deny');
    const item = el('li', { dataset: { callId: call.callId, turn: call.turn } },
      el('p', {}, el('strong', {}, call.name), ' ', el('code', {}, call.callId), ` (turn ${call.turn}) waits: ${call.reason || 'approval required'}`),
      call.expiresAt ? el('p', { class: 'muted' }, 'Denied automatically at ', time(call.expiresAt)) : null,
      trimmed(pretty(call.arguments)),
      el('p', {}, approve, ' ', el('label', {}, 'Message ', message), ' ', deny, ' ', status));
    item.controls = [approve, deny, message];
    item.status = status;
    approve.addEventListener('click', () => this.decide(true, [call.callId], item));
    deny.addEventListener('click', () => this.decide(false, [call.callId], item, message.value.trim()));
    this.pending.set(key, item);
    this.approvals.append(item);
    this.showApprovals();
  }

  removePending(turn, callId) {
    const key = `${turn}|${callId}`;
    const item = this.pending.get(key);
    if (!item) return;
    this.pending.delete(key);
    item.remove();
    this.showApprovals();
  }

  showApprovals() {
    this.approvalsSection.hidden = this.pending.size === 0;
    this.approveAll.hidden = this.denyAll.hidden = this.pending.size < 2;
  }

  /** Approves or denies `calls` (every waiting call when `null`). */
  async decide(approve, calls, item, message) {
    const items = item ? [item] : [...this.pending.values()];
    for (const each of items) {
      for (const control of each.controls) control.disabled = true;
      each.status.textContent = 'sending…';
    }
    const body = calls ? { calls } : { all: true };
    if (!approve && message) body.message = message;
    try {
      const reply = await api(`${this.path}/${approve ? 'approve' : 'deny'}`, { method: 'POST', body, signal: this.page.signal });
      const decided = (reply && reply.decided) || [];
      for (const each of items) each.status.textContent = `${approve ? 'approved' : 'denied'}${decided.length ? '' : ' (nothing was waiting)'}`;
    } catch (error) {
      if (isAbort(error)) return;
      for (const each of items) {
        for (const control of each.controls) control.disabled = false;
        each.status.textContent = '';
        each.status.replaceChildren(errorBox(error));
      }
    }
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      await api(`${this.path}/cancel`, { method: 'POST', body: {}, signal: this.page.signal });
      this.notice.replaceChildren(el('p', { role: 'status' }, 'Cancel requested.'));
    } catch (error) {
      if (!isAbort(error)) this.notice.replaceChildren(errorBox(error));
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  // Logs.

  async loadLogs() {
    try {
      const reply = await api(`${this.path}/logs`, { signal: this.page.signal });
      const lines = (reply && reply.lines) || [];
      if (!lines.length) {
        this.logs.replaceChildren(el('p', { class: 'muted' }, 'No log lines for this execution.'));
        return;
      }
      const logs = table('Log lines of this execution', ['Time', 'Level', 'Component', 'Message', 'Fields'], { class: 'logs' });
      const shown = lines.slice(-LOG_LIMIT);
      const fragment = document.createDocumentFragment();
      for (const line of shown) {
        const fields = Object.entries(line.fields || {}).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`).join(' ');
        const level = String(line.level || '').toLowerCase();
        fragment.append(el('tr', { dataset: { level } },
          el('td', {}, time(line.ts, { withDate: false })),
          el('td', {}, el('span', { class: `level level-${level}` }, level || '—')),
          el('td', {}, line.component || '—'),
          el('td', { class: 'log-message' }, line.message || ''),
          el('td', { class: 'log-fields' }, fields)));
      }
      logs.tbody.append(fragment);
      this.logs.replaceChildren(lines.length > shown.length ? el('p', { class: 'muted' }, `The last ${shown.length} of ${lines.length} lines.`) : '', logs.node);
    } catch (error) {
      if (!isAbort(error)) this.logs.replaceChildren(errorBox(error, 'Cannot read the logs'));
    }
  }
}
