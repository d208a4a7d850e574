/* redrelay web console: the page's one script, plain ES2020 (no modules).
 * Embedded into the redrelay binary with include_str! (src/console/mod.rs)
 * and served as /assets/app.js: no build step, no libraries, nothing loaded
 * from elsewhere. It routes on location.pathname and draws each page from
 * the JSON API under /api/v1, sending the bearer token kept in
 * sessionStorage. API data is only ever inserted as text (textContent,
 * text nodes), never as HTML. */
'use strict';
(() => {
  const TOKEN_KEY = 'redrelay.token';
  const JOB_STATES = ['PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT', 'FINISHED', 'FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED'];
  const RUN_STATES = ['RUNNING', 'FINISHED', 'FAILED', 'CANCELLED'];
  const DISPOSITIONS = ['quarantined', 'foreign', 'applied', 'duplicate', 'stale', 'deferred', 'ignored'];
  const RETRYABLE = new Set(['FAILED', 'ABORTED', 'CANCELLED', 'SKIPPED']);
  const CANCELLABLE = new Set(['PENDING', 'READY', 'SUBMITTED', 'RETRY_WAIT']);
  const SYMBOLS = {
    FINISHED: '✓', FAILED: '✗', ABORTED: '✗', RETRY_WAIT: '↻', SUBMITTED: '▶', SUBMITTING: '▷',
    RUNNING: '▶', PENDING: '…', READY: '○', SKIPPED: '⊘', CANCELLED: '⊘',
  };
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const main = document.getElementById('main');
  const statusEl = document.getElementById('status');

  window.redrelayLive = false;
  window.redrelayEventsSeen = 0;

  // ---------------------------------------------------------------- DOM
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return el;
  }
  function kids(list) {
    return list.flat(Infinity).filter((k) => k != null && k !== false)
      .map((k) => (k instanceof Node ? k : String(k)));
  }
  /** An HTML element; string children become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const el = setAttrs(document.createElement(tag), attrs);
    el.append(...kids(children));
    return el;
  }
  function svg(tag, attrs, ...children) {
    const el = setAttrs(document.createElementNS(SVG_NS, tag), attrs);
    el.append(...kids(children));
    return el;
  }
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const short = (id) => (String(id).length > 10 ? String(id).slice(0, 8) + '…' : String(id));
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const code = (s) => (s ? h('code', {}, s) : '—');
  const num = (n) => (n == null ? '—' : String(n));
  const link = (href, text) => h('a', { href }, text);
  const runLink = (id) => (id ? link('/runs/' + enc(id), id) : '—');

  /** A query string from an object, entries or URLSearchParams; empty values left out. */
  function qs(x) {
    const entries = Array.isArray(x) ? x : x instanceof URLSearchParams ? [...x] : Object.entries(x);
    const p = new URLSearchParams(entries.filter(([, v]) => v != null && v !== ''));
    const s = p.toString();
    return s ? '?' + s : '';
  }

  // -------------------------------------------------------------- status
  /** Says something in the live region (an Error is shown as one). */
  function say(msg, error = false) {
    statusEl.classList.toggle('error', error);
    statusEl.replaceChildren(...kids([error ? 'Error: ' : '', msg]));
  }
  const fail = (e) => say(e instanceof Error ? e.message : String(e), true);

  // --------------------------------------------------------------- token
  function store(fn) {
    try { return fn(window.sessionStorage); } catch { return null; }
  }
  const getToken = () => store((s) => s.getItem(TOKEN_KEY));
  const setToken = (t) => store((s) => s.setItem(TOKEN_KEY, t));

  /** `#token=...` in the address: kept for this tab, then removed from it. */
  function takeTokenFromHash() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return false;
    let t = m[1];
    try { t = decodeURIComponent(t); } catch { /* kept as given */ }
    if (t) setToken(t);
    history.replaceState(history.state, '', location.pathname + location.search);
    return true;
  }
  // A #token=... link opened on this page is a same-page jump: load again with it.
  window.addEventListener('hashchange', () => { if (takeTokenFromHash()) location.reload(); });

  let tokenAsk = null;
  /** Asks for the token with a form (one at a time); resolves once it is stored. */
  function askToken(message) {
    if (tokenAsk) return tokenAsk;
    tokenAsk = new Promise((resolve) => {
      const input = h('input', { id: 'token-input', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
      const form = h('form', { id: 'token-form', class: 'token-form', 'aria-labelledby': 'token-title' },
        h('h2', { id: 'token-title' }, 'API token needed'),
        h('p', {}, message || 'The API refused the call without a token.'),
        h('div', { class: 'field' }, h('label', { for: 'token-input' }, 'API token'), input),
        h('button', { type: 'submit' }, 'Use token'));
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        setToken(t);
        form.remove();
        tokenAsk = null;
        say('Token kept for this browser tab.');
        resolve();
      });
      main.parentNode.insertBefore(form, main);
      input.focus();
    });
    return tokenAsk;
  }

  // ----------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function errorText(res) {
    const text = await res.text().catch(() => '');
    try {
      const j = JSON.parse(text);
      if (j && typeof j.message === 'string') return j.message;
    } catch { /* not JSON */ }
    return `${res.status} ${res.statusText}`.trim() + (text ? ': ' + text.slice(0, 200) : '');
  }
  /** Calls the API with the token; on 401 asks for it once and retries. */
  async function api(path, { method = 'GET', body, headers = {}, raw = false } = {}) {
    for (let asked = false; ; asked = true) {
      const hdrs = { Accept: 'application/json', ...headers };
      const token = getToken();
      if (token) hdrs.Authorization = 'Bearer ' + token;
      if (body !== undefined) hdrs['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, { method, headers: hdrs, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (e) {
        throw new ApiError(0, `cannot reach the worker (${e.message})`);
      }
      if (res.status === 401 && !asked) {
        await askToken(await errorText(res));
        continue;
      }
      if (!res.ok) throw new ApiError(res.status, (res.status === 401 ? 'the token was refused: ' : '') + await errorText(res));
      return raw ? res : res.json();
    }
  }

  // ---------------------------------------------------------- formatting
  const pad = (n) => String(n).padStart(2, '0');
  /** Local time, ISO-like: 2026-03-01 14:05:09. */
  function fmtTime(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  /** A <time> for ms since the epoch (or an RFC 3339 string). */
  function timeEl(t) {
    if (t == null || t === '') return '—';
    const d = new Date(typeof t === 'string' ? Date.parse(t) : t);
    if (isNaN(d)) return String(t);
    return h('time', { datetime: d.toISOString(), title: d.toISOString() }, fmtTime(d));
  }
  /** 1.2 s, 3 min 4 s, 2 h 5 min, 1 d 3 h. */
  function fmtDur(ms) {
    if (ms == null || !isFinite(ms)) return '—';
    ms = Math.max(0, ms);
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.floor(ms / 1000);
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  /** end - start, or "running for ..." (kept current) while it runs. */
  function durEl(start, end, running) {
    if (start == null) return '—';
    if (end != null) return fmtDur(end - start);
    if (!running) return '—';
    return h('span', { 'data-since': start }, 'running for ' + fmtDur(Date.now() - start));
  }
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-since]')) {
      el.textContent = 'running for ' + fmtDur(Date.now() - Number(el.dataset.since));
    }
  }, 1000);

  const stateText = (s) => `${SYMBOLS[s] || '•'} ${s}`;
  function badgeKids(state, extra) {
    return [h('span', { class: 'sym', 'aria-hidden': 'true' }, SYMBOLS[state] || '•'), ' ', state || '—', extra || ''];
  }
  /** A state written out, with its symbol, coloured by data-state. */
  function badge(state, attrs = {}, extra = '') {
    return h('span', { class: 'badge', 'data-state': state, ...attrs }, badgeKids(state, extra));
  }
  function setBadge(el, state) {
    el.dataset.state = state;
    el.replaceChildren(...badgeKids(state));
  }
  /** An error: its first line as the summary, all of it inside. */
  function errorBlock(err, key = 'error') {
    if (!err) return '—';
    return h('details', { class: 'error-text', 'data-key': key },
      h('summary', {}, clip(String(err).split(/\r?\n/)[0], 160)), h('pre', {}, err));
  }
  /** Jobs counted by state: "3 jobs: ✓ FINISHED 2, ✗ FAILED 1". */
  function countsEl(total, byState) {
    const list = h('ul', { class: 'counts' });
    for (const s of [...JOB_STATES, ...Object.keys(byState).filter((k) => !JOB_STATES.includes(k))]) {
      if (byState[s]) list.append(h('li', {}, badge(s, {}, ' ' + byState[s])));
    }
    return h('div', { class: 'count-cell' }, `${total} job${total === 1 ? '' : 's'}`, list);
  }
  function table(caption, cols, rows, empty = 'Nothing to show.', attrs = {}) {
    const t = h('table', attrs, h('caption', {}, caption),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', { class: 'empty' }, h('td', { colspan: cols.length }, empty))));
    return h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: 0 }, t);
  }
  /** Refills a row, keeping which <details> were open and where focus was. */
  function fillRow(tr, cells) {
    const open = new Set([...tr.querySelectorAll('details[open]')].map((d) => d.dataset.key));
    const active = tr.contains(document.activeElement) ? document.activeElement : null;
    const cell = active && active.closest('td, th');
    const at = cell ? cell.cellIndex : -1;
    const action = active && active.dataset.action;
    tr.replaceChildren(...cells);
    for (const d of tr.querySelectorAll('details')) if (open.has(d.dataset.key)) d.open = true;
    if (at >= 0 && tr.cells[at]) {
      const c = tr.cells[at];
      const target = (action && c.querySelector(`[data-action="${action}"]`)) || c.querySelector('a, button, summary') || tr.querySelector('a');
      if (target) target.focus();
    }
  }
  function facts(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter((p) => p).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v == null || v === '' ? '—' : v)]));
  }

  // -------------------------------------------------------------- pages
  function setPage(title, heading = title) {
    document.title = `${title} — redrelay`;
    main.replaceChildren(h('h1', { id: 'page-title' }, heading));
  }
  function markNav() {
    const p = location.pathname;
    const section = p.startsWith('/jobs') ? 'jobs' : p.startsWith('/schedules') ? 'schedules' : p.startsWith('/triggers') ? 'triggers' : p.startsWith('/inbox') ? 'inbox' : 'runs';
    for (const a of document.querySelectorAll('nav a[data-nav]')) {
      if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    }
  }
  function field(label, input) {
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
  }
  function textInput(name, value) {
    return h('input', { type: 'text', id: 'f-' + name, name, value: value || '' });
  }
  function selectInput(name, options, value) {
    return h('select', { id: 'f-' + name, name },
      options.map(([v, t]) => h('option', { value: v, selected: v === (value || '') }, t)));
  }
  /** A filter form: GET to this page, whose script passes the values on to the API. */
  function filterForm(fields) {
    return h('form', { class: 'filters', method: 'get', action: location.pathname, role: 'search', 'aria-label': 'Filters' },
      fields, h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Apply'), ' ', link(location.pathname, 'Clear filters')));
  }
  /** "Next page" (next_cursor) and "First page" links. */
  function pager(next) {
    const nav = h('nav', { class: 'pager', 'aria-label': 'Pages' });
    const q = new URLSearchParams(location.search);
    if (q.has('cursor')) {
      q.delete('cursor');
      nav.append(h('a', { href: location.pathname + qs(q) }, 'First page'), ' ');
    }
    if (next) {
      q.set('cursor', next);
      nav.append(h('a', { href: location.pathname + qs(q), rel: 'next', id: 'next-page' }, 'Next page'));
    }
    return nav;
  }
  /** A datetime-local value (local time) as RFC 3339 UTC. */
  function toRfc3339(v) {
    if (!v) return null;
    const d = new Date(v);
    return isNaN(d) ? v : d.toISOString().replace(/\.000Z$/, 'Z');
  }
  function jobButtons(j) {
    return [
      RETRYABLE.has(j.state) && h('button', { type: 'button', 'data-action': 'retry', 'data-job-id': j.id }, 'Retry'),
      CANCELLABLE.has(j.state) && h('button', { type: 'button', 'data-action': 'cancel', 'data-job-id': j.id, 'data-job-name': j.name }, 'Cancel'),
    ];
  }
  function attemptsTable(attempts, caption) {
    return table(caption, ['Attempt', 'State', 'Statement id', 'Started', 'Submitted', 'Finished', 'Duration', 'Rows', 'Error'],
      attempts.map((a) => h('tr', { 'data-attempt': a.attempt, 'data-state': a.state },
        h('th', { scope: 'row' }, String(a.attempt)), h('td', {}, badge(a.state)), h('td', {}, code(a.statement_id)),
        h('td', {}, timeEl(a.started_at)), h('td', {}, timeEl(a.submitted_at)), h('td', {}, timeEl(a.finished_at)),
        h('td', {}, durEl(a.submitted_at, a.finished_at, false)), h('td', { class: 'num' }, num(a.rows)),
        h('td', {}, errorBlock(a.error, `attempt-${a.attempt}-error`)))),
      'No attempts yet.', { class: 'attempts' });
  }

  // ---------------------------------------------------------- runs list
  async function runsPage() {
    setPage('Runs');
    const q = new URLSearchParams(location.search);
    main.append(filterForm([
      field('State', selectInput('state', [['', 'Any state'], ...RUN_STATES.map((s) => [s, s])], q.get('state'))),
      field('Pipeline', textInput('pipeline', q.get('pipeline'))),
      field('Since (local time)', h('input', { type: 'datetime-local', id: 'f-since', name: 'since', value: q.get('since') || '' })),
    ]));
    const data = await api('/api/v1/runs' + qs({
      state: q.get('state'), pipeline: q.get('pipeline'), since: toRfc3339(q.get('since')),
      until: q.get('until'), limit: q.get('limit'), cursor: q.get('cursor'),
    }));
    const rows = data.runs.map((r) => h('tr', { 'data-run-id': r.id, 'data-state': r.state },
      h('th', { scope: 'row' }, h('a', { href: '/runs/' + enc(r.id) }, h('code', {}, r.id))),
      h('td', {}, badge(r.state)),
      h('td', {}, r.pipeline),
      h('td', {}, timeEl(r.created_at)),
      h('td', {}, durEl(r.created_at, r.finished_at, r.state === 'RUNNING')),
      h('td', {}, countsEl(r.jobs_total || 0, r.jobs_by_state || {}))));
    main.append(table('Runs, newest first', ['Run', 'State', 'Pipeline', 'Started', 'Duration', 'Jobs'], rows,
      'No runs match.', { id: 'runs' }), pager(data.next_cursor));
  }

  // ----------------------------------------------------------- run page
  const NW = 210, NH = 58, GX = 70, GY = 18, PAD = 14;

  /** The job graph: layer = longest path from a root along the edges. */
  function drawGraph(jobs, edges) {
    const ids = new Set(jobs.map((j) => j.id));
    const parents = new Map(jobs.map((j) => [j.id, []]));
    const es = edges.filter((e) => ids.has(e.from) && ids.has(e.to) && e.from !== e.to);
    for (const e of es) parents.get(e.to).push(e.from);
    const layer = new Map();
    const depth = (id, seen) => {
      if (layer.has(id)) return layer.get(id);
      if (seen.has(id)) return 0; // a cycle, which a run cannot have
      seen.add(id);
      const d = Math.max(-1, ...parents.get(id).map((p) => depth(p, seen))) + 1;
      seen.delete(id);
      layer.set(id, d);
      return d;
    };
    const layers = [];
    for (const j of jobs) {
      const d = depth(j.id, new Set());
      (layers[d] = layers[d] || []).push(j.id);
    }
    const pos = new Map();
    layers.forEach((col, k) => {
      if (k > 0) { // order by the parents' mean position: fewer crossings
        const bary = (id) => parents.get(id).reduce((s, p) => s + pos.get(p), 0) / (parents.get(id).length || 1);
        col.sort((a, b) => bary(a) - bary(b) || a - b);
      }
      col.forEach((id, i) => pos.set(id, i));
    });
    const rowsMax = Math.max(1, ...layers.map((c) => c.length));
    const width = PAD * 2 + layers.length * NW + Math.max(0, layers.length - 1) * GX;
    const height = PAD * 2 + rowsMax * NH + (rowsMax - 1) * GY;
    const xy = new Map();
    layers.forEach((col, k) => col.forEach((id, i) => xy.set(id, [
      PAD + k * (NW + GX),
      PAD + ((rowsMax - col.length) * (NH + GY)) / 2 + i * (NH + GY),
    ])));
    const byId = new Map(jobs.map((j) => [j.id, j]));
    return svg('svg', { id: 'job-graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-labelledby': 'graph-title' },
      svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z' }))),
      svg('g', { class: 'edges' }, es.map((e) => {
        const [x1, y1] = xy.get(e.from), [x2, y2] = xy.get(e.to);
        const a = [x1 + NW, y1 + NH / 2], b = [x2 - 1, y2 + NH / 2], mx = (a[0] + b[0]) / 2;
        return svg('path', { class: 'edge', 'data-from': e.from, 'data-to': e.to, 'marker-end': 'url(#arrow)',
          d: `M${a[0]},${a[1]} C${mx},${a[1]} ${mx},${b[1]} ${b[0]},${b[1]}` });
      })),
      svg('g', { class: 'nodes' }, [...xy].map(([id, [x, y]]) => {
        const j = byId.get(id);
        return svg('g', { class: 'node', 'data-job-id': id, 'data-state': j.state, role: 'img', 'aria-label': `job ${j.name}: ${j.state}`, transform: `translate(${x},${y})` },
          svg('title', {}, `${j.name} (job ${id}): ${j.state}`),
          svg('rect', { width: NW, height: NH, rx: 6 }),
          svg('a', { href: `/jobs/${id}` }, svg('text', { class: 'name', x: 10, y: 23 }, clip(j.name, 25))),
          svg('text', { class: 'state', x: 10, y: 45 }, stateText(j.state)));
      })));
  }
  function setNodeState(node, j) {
    node.dataset.state = j.state;
    node.setAttribute('aria-label', `job ${j.name}: ${j.state}`);
    node.querySelector('text.state').textContent = stateText(j.state);
    node.querySelector('title').textContent = `${j.name} (job ${j.id}): ${j.state}`;
  }
  function runJobCells(j) {
    return [
      h('th', { scope: 'row' }, link(`/jobs/${j.id}`, j.name), ' ', h('span', { class: 'muted' }, `#${j.id}`)),
      h('td', { class: 'state' }, badge(j.state)),
      h('td', { class: 'attempt' }, `${j.attempt}/${j.max_attempts}`),
      h('td', {}, timeEl(j.submitted_at)),
      h('td', {}, timeEl(j.finished_at)),
      h('td', {}, durEl(j.submitted_at, j.finished_at, j.state === 'SUBMITTED')),
      h('td', { class: 'num' }, num(j.rows)),
      h('td', {}, code(j.statement_id)),
      h('td', { class: 'error-cell' }, errorBlock(j.error)),
      h('td', {}, (j.attempts || []).length
        ? h('details', { class: 'attempts', 'data-key': 'attempts' }, h('summary', {}, `${j.attempts.length} attempt${j.attempts.length === 1 ? '' : 's'}`),
          attemptsTable(j.attempts, `Attempts of job ${j.name}`))
        : 'none'),
      h('td', { class: 'actions' }, jobButtons(j)),
    ];
  }

  async function runPage(id) {
    setPage(`Run ${short(id)}`, ['Run ', h('code', {}, id)]);
    const data = await api(`/api/v1/runs/${enc(id)}`);
    const jobs = new Map();
    const stateEl = badge(data.run.state, { id: 'run-state' });
    const cancelBtn = h('button', { type: 'button', 'data-action': 'cancel-run', 'data-run-id': id }, 'Cancel run');
    const finishedEl = h('span'), durationEl = h('span'), countsSlot = h('div', { id: 'job-counts' });
    const liveEl = h('p', { id: 'live-status', class: 'live', 'data-live': 'connecting' }, 'Live updates: connecting…');
    const graphWrap = h('div', { class: 'graph-wrap', role: 'region', 'aria-label': 'Job graph (scrolls)', tabindex: 0 });
    const tbody = h('tbody');
    const cols = ['Job', 'State', 'Attempt', 'Submitted', 'Ended', 'Duration', 'Rows', 'Statement id', 'Error', 'Attempts', 'Actions'];
    main.append(
      h('section', { class: 'summary', 'aria-label': 'Run' },
        facts([['Pipeline', data.run.pipeline], ['State', stateEl], ['Started', timeEl(data.run.created_at)],
          ['Finished', finishedEl], ['Duration', durationEl], ['Jobs', countsSlot],
          ...(data.trigger_event ? [['Started by', startedBy(data.trigger_event)]] : [])]),
        h('p', { class: 'actions' }, cancelBtn), liveEl),
      h('section', { 'aria-labelledby': 'graph-title' }, h('h2', { id: 'graph-title' }, 'Job graph'), graphWrap),
      h('section', { 'aria-labelledby': 'jobs-title' }, h('h2', { id: 'jobs-title' }, 'Jobs'),
        h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Jobs of this run', tabindex: 0 },
          h('table', { id: 'jobs' }, h('caption', {}, 'Jobs of this run'),
            h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), tbody))));

    let run = data.run;
    const showRun = (r) => {
      run = r;
      setBadge(stateEl, r.state);
      cancelBtn.hidden = r.state !== 'RUNNING';
      finishedEl.replaceChildren(kids([timeEl(r.finished_at)])[0]);
      durationEl.replaceChildren(kids([durEl(r.created_at, r.finished_at, r.state === 'RUNNING')])[0]);
    };
    const showCounts = () => {
      const by = {};
      for (const j of jobs.values()) by[j.state] = (by[j.state] || 0) + 1;
      countsSlot.replaceChildren(countsEl(jobs.size, by));
    };
    const drawAll = (d) => {
      jobs.clear();
      for (const j of d.jobs) jobs.set(j.id, j);
      graphWrap.replaceChildren(d.jobs.length ? drawGraph(d.jobs, d.edges || []) : h('p', {}, 'This run has no jobs.'));
      tbody.replaceChildren(...d.jobs.map((j) => h('tr', { 'data-job-id': j.id, 'data-state': j.state }, runJobCells(j))));
      showCounts();
    };
    const showJob = (j) => {
      const node = graphWrap.querySelector(`.node[data-job-id="${j.id}"]`);
      if (node) setNodeState(node, j);
      const tr = tbody.querySelector(`tr[data-job-id="${j.id}"]`);
      if (tr) {
        tr.dataset.state = j.state;
        fillRow(tr, runJobCells(j));
      }
    };
    const update = (d) => {
      showRun(d.run);
      const same = d.jobs.length === jobs.size && d.jobs.every((j) => jobs.has(j.id));
      if (!same) return drawAll(d);
      for (const j of d.jobs) { jobs.set(j.id, j); showJob(j); }
      showCounts();
    };
    showRun(data.run);
    drawAll(data);

    // A job or run change: shown at once, then the run read again (debounced).
    let timer = null, busy = false, again = false;
    const refresh = async () => {
      if (busy) { again = true; return; }
      busy = true;
      try { update(await api(`/api/v1/runs/${enc(id)}`)); } catch (e) { fail(e); }
      busy = false;
      if (again) { again = false; scheduleRefresh(); }
    };
    const scheduleRefresh = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
    const applyJob = (jobId, state, attempt) => {
      const j = jobs.get(jobId);
      if (!j) return;
      if (state) j.state = state;
      if (attempt != null) j.attempt = attempt;
      showJob(j);
      showCounts();
    };
    page.reload = scheduleRefresh;
    page.job = (j) => { // a Job the API answered: newer than what is shown
      if (jobs.has(j.id)) Object.assign(jobs.get(j.id), j);
      applyJob(j.id, j.state, j.attempt);
      scheduleRefresh();
    };
    page.run = (r) => { showRun(r); scheduleRefresh(); };

    openStream('/api/v1/events' + qs({ run: id }), liveEl, scheduleRefresh, (type, d) => {
      const kind = d.kind || type;
      const rid = d.run_id != null ? d.run_id : kind === 'run' ? d.id : null;
      if (rid != null && String(rid) !== String(id)) return;
      if (kind === 'job') {
        applyJob(Number(d.job_id != null ? d.job_id : d.id), d.state, d.attempt);
        scheduleRefresh();
      } else if (kind === 'run') {
        const was = run.state;
        showRun({ ...run, state: d.state, finished_at: d.state === 'RUNNING' ? null : run.finished_at || d.at });
        if (was !== d.state) say(`run ${short(id)} is ${d.state}`);
        scheduleRefresh();
      }
    });
  }

  /** Server-sent events read with fetch (to send the token), reconnecting
   *  with backoff and Last-Event-ID. onEvent(type, data) per JSON event. */
  function openStream(path, liveEl, onConnect, onEvent) {
    let lastId = null, delay = 1000;
    const show = (state, text) => { liveEl.dataset.live = state; liveEl.textContent = text; };
    (async () => {
      for (;;) {
        let began = Date.now();
        try {
          const headers = { Accept: 'text/event-stream' };
          if (lastId !== null) headers['Last-Event-ID'] = lastId;
          const res = await api(path, { headers, raw: true });
          began = Date.now();
          window.redrelayLive = true;
          show('connected', 'Live updates: connected.');
          onConnect();
          await readEvents(res.body, (id) => { lastId = id; }, (type, text) => {
            window.redrelayEventsSeen += 1;
            let d;
            try { d = JSON.parse(text); } catch { return; }
            if (type === 'error') say(d.message || text, true);
            else onEvent(type, d);
          });
          show('reconnecting', 'Live updates: the stream ended; reconnecting…');
        } catch (e) {
          show('reconnecting', `Live updates: ${e.message}; trying again in ${Math.round(delay / 1000)} s.`);
          if (e.status === 400) lastId = null; // a resume point the server no longer takes
        }
        if (Date.now() - began > 10000) delay = 1000;
        await sleep(delay);
        delay = Math.min(delay * 2, 30000);
      }
    })();
  }
  async function readEvents(body, onId, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '', type = '', data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      const lines = buf.split(/\r\n|\r|\n/);
      buf = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (data.length) onEvent(type || 'message', data.join('\n'));
          type = '';
          data = [];
          continue;
        }
        if (line[0] === ':') continue; // a comment: keep-alive
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        let val = i < 0 ? '' : line.slice(i + 1);
        if (val[0] === ' ') val = val.slice(1);
        if (name === 'event') type = val;
        else if (name === 'data') data.push(val);
        else if (name === 'id' && !val.includes('\0')) onId(val);
      }
    }
  }

  // ----------------------------------------------------------- job page
  async function jobPage(id) {
    setPage(`Job ${id}`);
    const j = await api(`/api/v1/jobs/${enc(id)}`);
    setPage(`Job ${j.id}: ${j.name}`, ['Job ', h('span', { class: 'muted' }, `#${j.id}`), ' ', j.name]);
    const target = j.workgroup ? ['workgroup ', h('code', {}, j.workgroup)] : j.cluster ? ['cluster ', h('code', {}, j.cluster)] : null;
    const resultText = j.result_state
      ? [j.result_state, j.result_rows != null ? `, ${j.result_rows} rows` : '', j.result_error ? ` (${j.result_error})` : '']
      : null;
    const params = j.param_names || [];
    main.append(
      facts([
        ['Name', j.name],
        ['Run', j.run_id ? runLink(j.run_id) : 'none (submitted on its own)'],
        ['State', badge(j.state, { id: 'job-state' })],
        ['Attempt', `${j.attempt} of ${j.max_attempts}`],
        ['Target', target],
        ['Database', j.database],
        j.db_user && ['Database user', j.db_user],
        ['Statement id', code(j.statement_id)],
        ['Created', timeEl(j.created_at)],
        ['Ready', timeEl(j.ready_at)],
        ['Submitted', timeEl(j.submitted_at)],
        ['Ended', timeEl(j.finished_at)],
        ['Duration', durEl(j.submitted_at, j.finished_at, j.state === 'SUBMITTED')],
        ['Rows', num(j.rows)],
        ['Result', resultText],
        j.not_before != null && ['Not before', timeEl(j.not_before)],
        j.retry && ['Retry policy', j.retry],
        j.timeout_secs != null && ['Timeout', fmtDur(j.timeout_secs * 1000)],
        j.timed_out_at != null && ['Timed out', timeEl(j.timed_out_at)],
        j.execution_mode && ['Execution mode', j.execution_mode],
        j.result_formats && ['Result formats', j.result_formats],
        j.session_keep_alive_secs != null && ['Session kept alive', fmtDur(j.session_keep_alive_secs * 1000)],
        j.expire_at != null && ['Results expire', timeEl(j.expire_at)],
        j.results_pruned_at != null && ['Result files pruned', timeEl(j.results_pruned_at)],
        ['Depends on', (j.depends_on || []).length ? h('ul', { class: 'inline' }, j.depends_on.map((p) => h('li', {}, link(`/jobs/${p}`, `job ${p}`)))) : 'nothing'],
        ['Parameters', params.length ? h('ul', { class: 'inline', id: 'param-names' }, params.map((p) => h('li', {}, h('code', {}, ':' + p)))) : 'none'],
      ]),
      h('p', { class: 'actions' }, jobButtons(j)));
    if (j.error) {
      main.append(h('section', { 'aria-labelledby': 'error-title' }, h('h2', { id: 'error-title' }, 'Error'), h('pre', { class: 'error-text' }, j.error)));
    }
    main.append(h('section', { 'aria-labelledby': 'sql-title' },
      h('h2', { id: 'sql-title' }, (j.sqls || []).length > 1 ? `SQL (a batch of ${j.sqls.length})` : 'SQL'),
      (j.sqls || []).map((s, i) => [j.sqls.length > 1 ? h('h3', {}, `Statement ${i + 1}`) : null, h('pre', { class: 'sql' }, h('code', {}, s))])));
    main.append(h('section', { 'aria-labelledby': 'attempts-title' }, h('h2', { id: 'attempts-title' }, 'Attempts'),
      attemptsTable(j.attempts || [], `Attempts of job ${j.name}`)));
    const files = j.results || [];
    main.append(h('section', { 'aria-labelledby': 'files-title' }, h('h2', { id: 'files-title' }, 'Result files'),
      table('Result files kept by the worker', ['Sub-statement', 'Statement id', 'Rows', 'CSV', 'JSON Lines'],
        files.map((f) => h('tr', { 'data-sub': f.sub }, h('th', { scope: 'row' }, String(f.sub)), h('td', {}, code(f.statement_id)),
          h('td', { class: 'num' }, num(f.rows)), h('td', {}, f.csv_path ? code(f.csv_path) : 'not kept'),
          h('td', {}, f.jsonl_path ? code(f.jsonl_path) : 'not kept'))),
        'No result files.', { id: 'result-files' })));

    const results = h('section', { 'aria-labelledby': 'results-title' }, h('h2', { id: 'results-title' }, 'Results'));
    main.append(results);
    if (j.result_state !== 'FETCHED') {
      results.append(h('p', {}, `No rows to show: the result is ${j.result_state || 'not fetched'}.`));
      return;
    }
    const dl = (format, text) => h('button', { type: 'button', 'data-action': 'download', 'data-job-id': j.id, 'data-format': format }, text);
    results.append(h('p', { class: 'actions' },
      (files.length === 0 || files.some((f) => f.csv_path)) && dl('csv', 'Download CSV'), ' ',
      files.some((f) => f.jsonl_path) && dl('jsonl', 'Download JSON Lines')));
    try {
      const r = await api(`/api/v1/jobs/${enc(id)}/rows?limit=20`);
      const cell = (v) => (v === null ? h('span', { class: 'null' }, 'NULL') : typeof v === 'object' ? JSON.stringify(v) : String(v));
      results.append(table(`First ${r.rows.length} of ${r.total_rows} rows`, r.columns,
        r.rows.map((row) => h('tr', {}, row.map((v) => h('td', {}, cell(v))))), 'The result has no rows.', { id: 'result-rows' }));
    } catch (e) {
      results.append(h('p', { class: 'error-text' }, 'The rows cannot be shown: ' + e.message));
    }
  }

  // ----------------------------------------------------------- jobs list
  async function jobsPage() {
    setPage('Jobs');
    const q = new URLSearchParams(location.search);
    main.append(filterForm([
      field('State', selectInput('state', [['', 'Any state'], ...JOB_STATES.map((s) => [s, s])], q.get('state'))),
      field('Run id', textInput('run', q.get('run'))),
      field('Name', textInput('name', q.get('name'))),
    ]));
    const data = await api('/api/v1/jobs' + qs({ state: q.get('state'), run: q.get('run'), name: q.get('name'), limit: q.get('limit'), cursor: q.get('cursor') }));
    const rows = data.jobs.map((j) => h('tr', { 'data-job-id': j.id, 'data-state': j.state },
      h('th', { scope: 'row' }, link(`/jobs/${j.id}`, `#${j.id}`)),
      h('td', {}, link(`/jobs/${j.id}`, j.name)),
      h('td', {}, j.run_id ? link('/runs/' + enc(j.run_id), short(j.run_id)) : '—'),
      h('td', {}, badge(j.state)),
      h('td', {}, `${j.attempt}/${j.max_attempts}`),
      h('td', {}, timeEl(j.created_at)),
      h('td', {}, timeEl(j.finished_at)),
      h('td', {}, durEl(j.submitted_at, j.finished_at, j.state === 'SUBMITTED')),
      h('td', { class: 'num' }, num(j.rows)),
      h('td', {}, errorBlock(j.error))));
    main.append(table('Jobs, newest first', ['Job', 'Name', 'Run', 'State', 'Attempt', 'Created', 'Ended', 'Duration', 'Rows', 'Error'],
      rows, 'No jobs match.', { id: 'jobs' }), pager(data.next_cursor));
  }

  // ----------------------------------------------------------- schedules
  function scheduleCells(s) {
    return [
      h('th', { scope: 'row' }, s.name),
      h('td', {}, s.pipeline),
      h('td', { class: 'num' }, num(s.jobs)),
      h('td', {}, s.error ? errorBlock(s.error) : code(s.cron)),
      h('td', {}, s.timezone || '—'),
      h('td', { class: 'paused' }, s.paused ? 'paused' : 'no'),
      h('td', {}, timeEl(s.last_fired_at)),
      h('td', {}, s.paused ? 'none while paused' : timeEl(s.next_fire_at)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'data-action': s.paused ? 'resume' : 'pause', 'data-schedule': s.name }, s.paused ? 'Resume' : 'Pause'), ' ',
        h('button', { type: 'button', 'data-action': 'trigger', 'data-schedule': s.name }, 'Trigger now'), ' ',
        h('span', { class: 'triggered' })),
    ];
  }
  async function schedulesPage() {
    setPage('Schedules');
    const list = await api('/api/v1/schedules');
    main.append(table('Schedules', ['Name', 'Pipeline', 'Jobs', 'Cron', 'Time zone', 'Paused', 'Last fired', 'Next firing', 'Actions'],
      list.map((s) => h('tr', { 'data-schedule': s.name, 'data-paused': String(!!s.paused) }, scheduleCells(s))),
      'No schedules (redrelay schedules add stores one).', { id: 'schedules' }));
  }
  const scheduleRow = (name) => [...document.querySelectorAll('tr[data-schedule]')].find((tr) => tr.dataset.schedule === name);

  // ------------------------------------------------------------ triggers
  /** The event that started a run: its trigger, parameters and body. */
  function startedBy(e) {
    return h('details', { id: 'started-by', class: 'body' },
      h('summary', {}, `trigger ${e.trigger}, event ${e.event_id || e.dedupe_key}`),
      facts([['Parameters', code(e.params)], ['Received', timeEl(e.received_at)]]),
      h('pre', {}, e.body || ''));
  }
  async function triggersPage() {
    setPage('Triggers');
    const list = await api('/api/v1/triggers');
    const counts = (ev) => Object.entries(ev || {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none yet';
    main.append(table('Triggers', ['Name', 'Pipeline', 'Pattern', 'Parameters', 'Overlap', 'Paused', 'Events'],
      list.map((t) => h('tr', { 'data-trigger': t.name, 'data-paused': String(!!t.paused) },
        h('th', { scope: 'row' }, t.name),
        h('td', {}, t.pipeline || '—'),
        h('td', {}, t.error ? errorBlock(t.error) : code(JSON.stringify(t.pattern))),
        h('td', {}, code(JSON.stringify(t.params))),
        h('td', {}, t.overlap || '—'),
        h('td', { class: 'paused' }, t.paused ? 'paused' : 'no'),
        h('td', {}, counts(t.events)))),
      'No triggers (redrelay triggers add stores one).', { id: 'triggers' }));
  }

  // --------------------------------------------------------------- inbox
  async function inboxPage() {
    setPage('Events inbox');
    const q = new URLSearchParams(location.search);
    main.append(filterForm([
      field('Disposition', selectInput('disposition', [['', 'All'], ...DISPOSITIONS.map((d) => [d, d])], q.get('disposition'))),
    ]));
    const data = await api('/api/v1/inbox' + qs({ disposition: q.get('disposition'), limit: q.get('limit') }));
    const rows = data.events.map((e) => h('tr', { 'data-seq': e.seq, 'data-disposition': e.disposition },
      h('th', { scope: 'row' }, String(e.seq)),
      h('td', {}, timeEl(e.received_at)),
      h('td', {}, h('span', { class: 'disposition', 'data-disposition': e.disposition }, e.disposition)),
      h('td', {}, e.state || '—'),
      h('td', {}, e.job_id != null ? link(`/jobs/${e.job_id}`, `job ${e.job_id}`) : '—'),
      h('td', {}, code(e.statement_id)),
      h('td', {}, e.reason || '—'),
      h('td', {}, h('details', { class: 'body' }, h('summary', {}, `Body (${(e.body || '').length} characters)`),
        facts([['Event id', code(e.event_id)], ['Message id', code(e.message_id)]]),
        h('pre', {}, e.body || '')))));
    main.append(table('Consumed event messages, newest first',
      ['Seq', 'Received', 'Disposition', 'State', 'Job', 'Statement id', 'Reason', 'Body'], rows, 'No messages.', { id: 'inbox' }));
  }

  // ------------------------------------------------------------- actions
  /** What the current page does after an action changed something. */
  const page = { reload: () => route(), job: null, run: null };
  const ACTIONS = {
    async retry({ jobId }) {
      const j = await api(`/api/v1/jobs/${jobId}/retry`, { method: 'POST' });
      say(`job ${jobId} retried`);
      if (page.job) page.job(j); else page.reload();
    },
    async cancel({ jobId, jobName }) {
      if (!window.confirm(`Cancel job ${jobName || jobId}?`)) return;
      const j = await api(`/api/v1/jobs/${jobId}/cancel`, { method: 'POST' });
      say(`job ${jobId} cancelled`);
      if (page.job) page.job(j); else page.reload();
    },
    async 'cancel-run'({ runId }) {
      if (!window.confirm(`Cancel run ${runId}? Running statements are stopped and waiting jobs cancelled.`)) return;
      const r = await api(`/api/v1/runs/${enc(runId)}/cancel`, { method: 'POST' });
      say(`run ${short(runId)} cancelled (${r.cancelled_jobs} job${r.cancelled_jobs === 1 ? '' : 's'} cancelled)`);
      if (page.run) page.run(r.run); else page.reload();
    },
    pause: (d) => setPaused(d.schedule, 'pause'),
    resume: (d) => setPaused(d.schedule, 'resume'),
    async trigger({ schedule }) {
      const { run } = await api(`/api/v1/schedules/${enc(schedule)}/trigger`, { method: 'POST' });
      const to = () => h('a', { href: '/runs/' + enc(run.id) }, `run ${run.id}`);
      say([`schedule ${schedule} triggered: `, to()]);
      const tr = scheduleRow(schedule);
      if (tr) tr.querySelector('.triggered').replaceChildren('→ ', to());
    },
    async download({ jobId, format }) {
      const res = await api(`/api/v1/jobs/${jobId}/results` + qs({ format }), { raw: true, headers: { Accept: '*/*' } });
      const blob = await res.blob();
      const m = /filename="?([^";]+)"?/.exec(res.headers.get('Content-Disposition') || '');
      const name = m ? m[1] : `job-${jobId}.${format}`;
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      say(`job ${jobId}: ${name} saved (${blob.size} bytes)`);
    },
  };
  async function setPaused(name, verb) {
    const s = await api(`/api/v1/schedules/${enc(name)}/${verb}`, { method: 'POST' });
    const tr = scheduleRow(name);
    if (tr) {
      tr.dataset.paused = String(!!s.paused);
      fillRow(tr, scheduleCells(s));
    }
    say(`schedule ${name} ${s.paused ? 'paused' : 'resumed'}`);
  }
  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest && ev.target.closest('button[data-action]');
    if (!b || b.disabled || !ACTIONS[b.dataset.action]) return;
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    try { await ACTIONS[b.dataset.action]({ ...b.dataset }); } catch (e) { fail(e); }
    b.disabled = false;
    b.removeAttribute('aria-busy');
  });

  // -------------------------------------------------------------- router
  async function route() {
    const path = location.pathname.replace(/\/+$/, '') || '/';
    let m;
    try {
      if (path === '/' || path === '/runs') await runsPage();
      else if ((m = /^\/runs\/([^/]+)$/.exec(path))) await runPage(decodeURIComponent(m[1]));
      else if (path === '/jobs') await jobsPage();
      else if ((m = /^\/jobs\/([^/]+)$/.exec(path))) await jobPage(decodeURIComponent(m[1]));
      else if (path === '/schedules') await schedulesPage();
      else if (path === '/triggers') await triggersPage();
      else if (path === '/inbox') await inboxPage();
      else { setPage('Not found'); main.append(h('p', {}, 'The console has no page here. ', link('/', 'See the runs.'))); }
    } catch (e) {
      main.append(h('p', { class: 'error-text', id: 'page-error' }, 'Error: ' + e.message));
      fail(e);
    }
  }

  takeTokenFromHash();
  markNav();
  route();
})();
