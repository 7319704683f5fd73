// kala web UI: plain JavaScript, no build step, no network beyond this
// server. Hash routes: #/jobs, #/job/<id>, #/new, #/dashboard, #/cluster.
'use strict';

const PAGE = 100;
const POLL_MS = 2000;

const state = {
  token: sessionStorage.getItem('kala-token') || '',
  list: { cursors: [null], page: 0, filter: '', status: 'all', sort: 'name', asc: true, jobs: [], next: null },
  timer: null,
  renderId: 0,
  // The caller as /api/v1/whoami/ tells it: name, role, owners.
  me: null,
};

const ROLES = ['reader', 'operator', 'editor', 'admin'];
// Whether the signed-in caller has at least `role` (unknown until asked: yes,
// and the server's 403 says otherwise).
function can(role) {
  if (!state.me) return true;
  return ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);
}
// A button the caller may not use: disabled, with the reason as its title.
function gate(role, attrs) {
  return can(role) ? attrs : { ...attrs, disabled: true, title: `needs the ${role} role (you are ${state.me.role})` };
}

async function loadMe() {
  try {
    state.me = await api('GET', '/api/v1/whoami/');
  } catch (_) {
    state.me = null;
  }
  const who = $('#who');
  const out = $('#sign-out');
  if (state.me && state.me.via !== 'none') {
    const scope = state.me.owners ? ` · ${state.me.owners.join(', ')}` : '';
    who.textContent = `${state.me.name} · ${state.me.role}${scope}`;
    who.hidden = false;
    out.hidden = false;
  } else {
    who.hidden = true;
    out.hidden = true;
  }
  $('a[data-nav="new"]').hidden = !can('editor');
}

function signOut() {
  state.token = '';
  sessionStorage.removeItem('kala-token');
  state.me = null;
  askToken().then(() => loadMe()).then(() => route());
}

// ---------- helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'cannot reach the server: ' + e.message);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (r.status === 401) {
    await askToken(data && data.error);
    return api(method, path, body);
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.error) || text || r.statusText);
  return data;
}

let tokenPrompt = null;
function askToken(message) {
  if (tokenPrompt) return tokenPrompt;
  const dlg = $('#login');
  const err = $('#login-error');
  err.hidden = !state.token;
  err.textContent = state.token ? 'That token was refused.' : '';
  if (message && !state.token) { err.hidden = false; err.textContent = message; }
  tokenPrompt = new Promise((resolve) => {
    $('#login-form').onsubmit = (ev) => {
      ev.preventDefault();
      state.token = $('#login-token').value.trim();
      sessionStorage.setItem('kala-token', state.token);
      $('#login-token').value = '';
      dlg.close();
      tokenPrompt = null;
      resolve();
      // Who the new token is (the role shown, buttons it may use).
      loadMe();
    };
  });
  if (!dlg.open) dlg.showModal();
  $('#login-token').focus();
  return tokenPrompt;
}

function confirmDialog(title, body, okLabel) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  const b = $('#confirm-body');
  b.replaceChildren(body);
  $('#confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dlg.onclose = () => resolve(dlg.returnValue === 'ok');
    dlg.returnValue = 'cancel';
    dlg.showModal();
  });
}

function parseTime(s) {
  if (!s || s.startsWith('0001-01-01')) return null;
  const t = new Date(s);
  return isNaN(t) ? null : t;
}

function relative(t) {
  if (!t) return '—';
  const d = (t.getTime() - Date.now()) / 1000;
  const a = Math.abs(d);
  let s;
  if (a < 1) return 'now';
  if (a < 60) s = Math.round(a) + ' s';
  else if (a < 3600) s = Math.round(a / 60) + ' min';
  else if (a < 86400 * 2) s = Math.round(a / 3600) + ' h';
  else s = Math.round(a / 86400) + ' days';
  return d > 0 ? 'in ' + s : s + ' ago';
}

function absolute(t) {
  return t ? t.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '';
}

function timeCell(s) {
  const t = parseTime(s);
  return h('span', { title: absolute(t), 'data-time': s || '' }, relative(t));
}

function duration(ns) {
  const ms = ns / 1e6;
  if (ms < 1) return (ns / 1e3).toFixed(0) + ' µs';
  if (ms < 1000) return ms.toFixed(ms < 10 ? 2 : 0) + ' ms';
  const s = ms / 1000;
  return s < 120 ? s.toFixed(2) + ' s' : (s / 60).toFixed(1) + ' min';
}

const UNITS = { Y: 'year', M: 'month', W: 'week', D: 'day', H: 'hour', m: 'minute', S: 'second' };

function describeDuration(d) {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(d);
  if (!m) return d;
  const keys = ['Y', 'M', 'W', 'D', 'H', 'm', 'S'];
  const parts = [];
  keys.forEach((k, i) => {
    const n = m[i + 1];
    if (n && n !== '0') parts.push(n === '1' ? UNITS[k] : `${n} ${UNITS[k]}s`);
  });
  return parts.length ? parts.join(' ') : '0 seconds';
}

// Schedules in words, for the list. ISO schedules are described here;
// cron expressions are described by the server's preview route, once per
// distinct expression (the list shows them on its next refresh).
const cronWords = new Map();
function describeCron(s, tz) {
  const key = tz + '\n' + s;
  if (!cronWords.has(key)) {
    cronWords.set(key, null);
    api('POST', '/api/v1/schedule/preview/', { schedule: s, time_zone: tz || '', count: 1 })
      .then((p) => cronWords.set(key, p.description))
      .catch(() => {});
  }
  const words = cronWords.get(key);
  return words ? 'cron: ' + words : 'cron: ' + s;
}

function describeSchedule(job) {
  const s = job.schedule;
  if ((job.parent_jobs || []).length) {
    const n = job.parent_jobs.length;
    return n === 1 ? 'after its parent succeeds' : `after its ${n} parents succeed`;
  }
  if (!s) return 'once, right away';
  const parts = s.split('/');
  if (parts.length !== 3) return describeCron(s, job.time_zone);
  const [rep, start, interval] = parts;
  const t = parseTime(start.replace(/\[.*\]$/, ''));
  const from = t ? ' from ' + absolute(t) : '';
  if (rep === 'R0') return 'once' + (t ? ' at ' + absolute(t) : '');
  const n = rep === 'R' || rep === 'R-1' ? null : parseInt(rep.slice(1), 10);
  const every = 'every ' + describeDuration(interval);
  return n === null ? every + from : `${every}, ${n + 1} times${from}`;
}

function lastResult(job) {
  const m = job.metadata || {};
  const ok = parseTime(m.last_success);
  const bad = parseTime(m.last_error);
  if (!ok && !bad) return h('span', { class: 'muted' }, 'never ran');
  if (bad && (!ok || bad > ok)) return h('span', { class: 'badge bad', title: absolute(bad) }, 'failed');
  return h('span', { class: 'badge ok', title: absolute(ok) }, 'succeeded');
}

function jobState(job) {
  if (job.disabled) return h('span', { class: 'badge off' }, 'disabled');
  if (job.is_done) return h('span', { class: 'badge warn' }, 'done');
  return h('span', { class: 'badge ok' }, 'enabled');
}

function setView(...nodes) {
  $('#view').replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

function banner(kind, text) {
  return h('div', { class: 'banner ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

function markLive(ok) {
  const el = $('#live');
  el.classList.toggle('stale', !ok);
  el.title = ok ? 'refreshes every 2 seconds' : 'cannot reach the server';
}

// ---------- job list ----------

function matches(job, filter, status) {
  const f = filter.trim().toLowerCase();
  if (f && !(job.name || '').toLowerCase().includes(f) && !(job.owner || '').toLowerCase().includes(f)
      && !(job.id || '').startsWith(f)) return false;
  const failing = parseTime(job.metadata.last_error) > (parseTime(job.metadata.last_success) || 0);
  switch (status) {
    case 'enabled': return !job.disabled && !job.is_done;
    case 'disabled': return !!job.disabled;
    case 'done': return !!job.is_done;
    case 'failing': return failing;
    default: return true;
  }
}

const SORTS = {
  name: (j) => (j.name || '').toLowerCase(),
  owner: (j) => (j.owner || '').toLowerCase(),
  next: (j) => (parseTime(j.next_run_at) || new Date(8.64e15)).getTime(),
  last: (j) => (parseTime(j.metadata.last_attempted_run) || new Date(0)).getTime(),
  success: (j) => j.metadata.success_count || 0,
  errors: (j) => j.metadata.error_count || 0,
};

async function loadJobs() {
  const L = state.list;
  const cursor = L.cursors[L.page];
  const q = `?limit=${PAGE}&stats=false` + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
  const data = await api('GET', '/api/v1/job/' + q);
  L.jobs = Object.values(data.jobs || {});
  L.next = data.next_cursor || null;
}

function jobsTable() {
  const L = state.list;
  const key = SORTS[L.sort];
  const rows = L.jobs.filter((j) => matches(j, L.filter, L.status))
    .sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (L.asc ? 1 : -1);
    });
  const th = (label, sort) => h('th', {
    class: 'sortable' + (L.sort === sort ? ' sorted' + (L.asc ? ' asc' : '') : ''),
    'data-sort': sort,
    onclick: () => { if (L.sort === sort) L.asc = !L.asc; else { L.sort = sort; L.asc = true; } renderList(); },
  }, label);
  if (!rows.length) {
    return h('div', { class: 'card empty' }, L.jobs.length ? 'No job on this page matches the filter.'
      : 'No jobs yet. ', L.jobs.length ? null : h('a', { href: '#/new' }, 'Create one.'));
  }
  return h('table', { id: 'jobs' },
    h('thead', {}, h('tr', {}, th('Name', 'name'), th('Owner', 'owner'), h('th', {}, 'Schedule'),
      th('Next run', 'next'), th('Last run', 'last'), h('th', {}, 'Result'), th('OK', 'success'),
      th('Errors', 'errors'), h('th', {}, 'State'))),
    h('tbody', {}, rows.map((j) => h('tr', { 'data-id': j.id },
      h('td', {}, h('a', { href: '#/job/' + j.id }, j.name || '(no name)')),
      h('td', { class: 'muted' }, j.owner || ''),
      h('td', {}, describeSchedule(j), h('br'), h('code', { class: 'muted small' }, j.schedule || '')),
      h('td', {}, j.disabled || j.is_done ? h('span', { class: 'muted' }, '—') : timeCell(j.next_run_at)),
      h('td', {}, timeCell(j.metadata.last_attempted_run)),
      h('td', {}, lastResult(j)),
      h('td', { class: 'mono' }, j.metadata.success_count || 0),
      h('td', { class: 'mono' }, j.metadata.error_count || 0),
      h('td', {}, jobState(j))))));
}

function renderList(error) {
  const L = state.list;
  const filter = h('input', { id: 'filter', type: 'search', placeholder: 'Filter by name, owner or id', value: L.filter,
    oninput: (e) => { L.filter = e.target.value; $('#jobs-area').replaceChildren(jobsTable()); } });
  const status = h('select', { id: 'status', onchange: (e) => { L.status = e.target.value; renderList(); } },
    ['all', 'enabled', 'disabled', 'done', 'failing'].map((s) => h('option', { value: s, selected: L.status === s }, s)));
  const prev = h('button', { id: 'prev', disabled: L.page === 0, onclick: async () => { L.page--; await refreshList(); } }, '← Previous');
  const next = h('button', { id: 'next', disabled: !L.next, onclick: async () => {
    L.cursors[L.page + 1] = L.next; L.page++; await refreshList();
  } }, 'Next →');
  const focused = document.activeElement && document.activeElement.id;
  setView(
    h('h1', {}, 'Jobs'),
    error ? banner('error', error) : null,
    h('div', { class: 'toolbar' }, filter, status, h('span', { class: 'grow' }),
      h('span', { class: 'muted small' }, `page ${L.page + 1} · ${L.jobs.length} ${L.jobs.length === 1 ? 'job' : 'jobs'} on this page`), prev, next,
      can('editor') ? h('a', { href: '#/new' }, h('button', { class: 'primary' }, 'New job')) : null),
    h('div', { id: 'jobs-area' }, jobsTable()));
  if (focused === 'filter') { const f = $('#filter'); f.focus(); f.setSelectionRange(f.value.length, f.value.length); }
}

async function refreshList() {
  try {
    await loadJobs();
    markLive(true);
    renderList();
  } catch (e) {
    markLive(false);
    renderList(e.message);
  }
}

// ---------- create ----------

const FIELDS = [
  ['name', 'Name', 'text', 'What the job is called.'],
  ['owner', 'Owner', 'text', 'An e-mail address or team (the server may fill a default).'],
  ['type', 'Type', 'select', 'Local runs a command on this machine; remote makes an HTTP request; publish sends a message to a broker the server names (--broker).', [['0', 'local command'], ['1', 'remote HTTP request'], ['3', 'publish to a broker']]],
  ['command', 'Command', 'text', 'Split like a shell would, run without a shell: bash -c \'…\' for pipes.'],
  ['schedule', 'Schedule', 'text', 'R[n]/start/interval, e.g. R/2030-01-01T09:00:00Z/PT1H; cron like "0 9 * * 1-5"; empty = once, now.'],
  ['time_zone', 'Time zone', 'text', 'IANA name such as Europe/Berlin (for schedules without an offset and for cron).'],
  ['epsilon', 'Epsilon', 'text', 'ISO duration, e.g. PT5S: a run later than this is skipped.'],
  ['retries', 'Retries', 'number', 'Extra attempts when a run fails.'],
  ['retry_delay', 'Retry delay', 'text', 'ISO duration before the first retry; doubles each time.'],
  ['timeout', 'Timeout', 'text', 'ISO duration; a local command is killed after it.'],
  ['parent_jobs', 'Parent jobs', 'text', 'Comma-separated ids: this job runs after each successful run of a parent.'],
  ['on_failure_job', 'On-failure job', 'text', 'Id of a job to run when every attempt of a run failed.'],
  ['overlap', 'Overlap', 'select', 'Skip a run while the previous one is still going?', [['allow', 'allow'], ['skip', 'skip']]],
  ['disabled', 'Disabled', 'checkbox', 'Create it without scheduling it.'],
  ['resume_at_next_scheduled_time', 'Resume at next time', 'checkbox', 'After enabling, wait for the next point instead of running a missed one.'],
  ['run_on.tags', 'Run on', 'text', 'Optional, in a cluster: tags an instance must have, e.g. role=etl, zone=eu-1.'],
  ['run_on.count', 'Instances', 'number', 'How many matching instances run each point (default 1).'],
  ['run_on.every', 'Every match', 'checkbox', 'Every live matching instance runs each point.'],
  ['notify.webhook', 'Notify webhook', 'text', 'Optional: a URL that gets a signed JSON POST on the events below.'],
  ['notify.email', 'Notify email', 'text', 'Optional: an address that gets an email on the events below (the server needs --smtp-url).'],
  ['notify.on', 'Notify on', 'events', 'The events the webhook and the email hear about.'],
  ['remote.url', 'URL', 'text', 'Remote jobs: the URL to call.'],
  ['remote.method', 'Method', 'select', '', [['GET', 'GET'], ['POST', 'POST'], ['PUT', 'PUT'], ['PATCH', 'PATCH'], ['DELETE', 'DELETE']]],
  ['remote.headers', 'Headers', 'textarea', 'JSON object of lists, e.g. {"X-Token": ["abc"]}.'],
  ['remote.body', 'Body', 'textarea', ''],
  ['remote.timeout', 'Timeout (s)', 'number', 'Seconds; default 30.'],
  ['remote.expected_response_codes', 'Expected codes', 'text', 'Comma-separated; default 200.'],
  ['publish.broker', 'Broker', 'text', 'The name of a broker the server was started with (--broker NAME=URL).'],
  ['publish.to', 'To', 'text', 'The NATS subject, AMQP routing key or MQTT topic.'],
  ['publish.exchange', 'Exchange', 'text', 'AMQP only; empty: the default exchange.'],
  ['publish.payload', 'Payload', 'textarea', 'A template: {{.Run.ScheduledAt}}, {{.Name}}, …'],
  ['publish.headers', 'Headers', 'textarea', 'JSON object, e.g. {"X-Team": "billing"}.'],
  ['publish.qos', 'MQTT QoS', 'select', 'MQTT only.', [['', 'default (1)'], ['0', '0'], ['1', '1'], ['2', '2']]],
  ['publish.retain', 'MQTT retain', 'checkbox', 'MQTT only: the broker keeps it as the topic\'s last message.'],
];

const EVENTS = ['failure', 'success', 'retry', 'skipped', 'interrupted'];

// The events of a notification target, as checkboxes (failure checked).
function eventBoxes(prefix, checked) {
  return h('div', { class: 'events', id: prefix }, EVENTS.map((e) => h('label', { class: 'inline' },
    h('input', { type: 'checkbox', id: `${prefix}-${e}`, name: `${prefix}-${e}`, checked: checked.includes(e) }), ' ', e)));
}

// "failure, retry → webhook https://…" for each target.
function describeTargets(targets) {
  if (!targets || !targets.length) return h('span', { class: 'muted' }, 'none');
  return h('ul', { class: 'targets', id: 'notify-targets' }, targets.map((t) => h('li', {},
    h('span', { class: 'muted' }, (t.on || []).join(', '), ' → '),
    t.webhook ? ['webhook ', h('code', {}, t.webhook), t.format ? ` (${t.format})` : ''] : ['email ', h('code', {}, t.email)])));
}

// "broker events → orders.tick", the payload below.
function describePublish(p) {
  if (!p) return '—';
  const extra = [p.exchange ? `exchange ${p.exchange}` : '', p.qos !== undefined ? `QoS ${p.qos}` : '', p.retain ? 'retained' : '']
    .filter(Boolean).join(', ');
  return h('div', { id: 'job-publish' }, h('div', {}, 'broker ', h('code', {}, p.broker), ' → ', h('code', {}, p.to), extra ? ` (${extra})` : ''),
    p.payload ? h('pre', { class: 'payload' }, p.payload) : null,
    p.headers ? h('div', { class: 'muted small' }, Object.entries(p.headers).map(([k, v]) => `${k}: ${v}`).join(' · ')) : null);
}

// "2 instances with role=etl", or where the partition is held.
function describeRunOn(r) {
  if (!r) return h('span', { class: 'muted', id: 'job-run-on' }, 'the instance holding its partition');
  const tags = Object.entries(r.tags || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  const how = r.every ? 'every instance' : `${r.count || 1} instance${(r.count || 1) > 1 ? 's' : ''}`;
  return h('span', { id: 'job-run-on' }, tags ? `${how} with ${tags}` : `${how} (any)`);
}

// A notification's delivery, as a badge with its details in the tooltip.
function noticeBadge(n) {
  const kind = n.state === 'delivered' || n.state === 'summarized' ? 'ok' : n.state === 'dropped' ? 'bad' : 'warn';
  const title = [`${n.event} → ${n.kind} ${n.target}`, `${n.attempts} attempt(s)`,
    n.last_error ? `last error: ${n.last_error}` : '', n.next_attempt_at ? `next try: ${n.next_attempt_at}` : ''].filter(Boolean).join('\n');
  return h('span', { class: 'badge notice ' + kind, title }, `${n.kind} ${n.state}`);
}

function fieldInput(name, kind, options) {
  const id = 'f-' + name.replace('.', '-');
  if (kind === 'events') return eventBoxes(id, ['failure']);
  if (kind === 'select') return h('select', { id, name }, options.map(([v, l]) => h('option', { value: v }, l)));
  if (kind === 'textarea') return h('textarea', { id, name });
  if (kind === 'checkbox') return h('input', { id, name, type: 'checkbox' });
  return h('input', { id, name, type: kind, autocomplete: 'off', min: kind === 'number' ? '0' : undefined });
}

function formBody(form) {
  const v = (n) => form.elements[n];
  const text = (n) => v(n).value.trim();
  const body = { name: text('name'), owner: text('owner'), type: parseInt(v('type').value, 10) };
  const put = (k, x) => { if (x !== '' && x !== undefined) body[k] = x; };
  put('command', text('command'));
  put('schedule', text('schedule'));
  put('time_zone', text('time_zone'));
  put('epsilon', text('epsilon'));
  if (text('retries') !== '') body.retries = Number(text('retries'));
  put('retry_delay', text('retry_delay'));
  put('timeout', text('timeout'));
  if (text('parent_jobs')) body.parent_jobs = text('parent_jobs').split(',').map((s) => s.trim()).filter(Boolean);
  put('on_failure_job', text('on_failure_job'));
  if (v('overlap').value !== 'allow') body.overlap = v('overlap').value;
  if (v('disabled').checked) body.disabled = true;
  if (v('resume_at_next_scheduled_time').checked) body.resume_at_next_scheduled_time = true;
  const on = EVENTS.filter((e) => v(`f-notify-on-${e}`).checked);
  const notify = [];
  if (text('notify.webhook')) notify.push({ on, webhook: text('notify.webhook') });
  if (text('notify.email')) notify.push({ on, email: text('notify.email') });
  if (notify.length) body.notify = notify;
  const tags = text('run_on.tags');
  if (tags || text('run_on.count') !== '' || v('run_on.every').checked) {
    const runOn = {};
    if (tags) {
      runOn.tags = {};
      for (const pair of tags.split(',').map((x) => x.trim()).filter(Boolean)) {
        const i = pair.indexOf('=');
        if (i < 1) throw new FieldError('run_on.tags', `run_on.tags: ${JSON.stringify(pair)} is not key=value`);
        runOn.tags[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
      }
    }
    if (text('run_on.count') !== '') runOn.count = Number(text('run_on.count'));
    if (v('run_on.every').checked) runOn.every = true;
    body.run_on = runOn;
  }
  if (body.type === 3) {
    const p = { broker: text('publish.broker'), to: text('publish.to') };
    if (text('publish.exchange')) p.exchange = text('publish.exchange');
    if (v('publish.payload').value) p.payload = v('publish.payload').value;
    const headers = text('publish.headers');
    if (headers) {
      try { p.headers = JSON.parse(headers); } catch (e) { throw new FieldError('publish.headers', 'publish.headers: not JSON: ' + e.message); }
    }
    if (v('publish.qos').value !== '') p.qos = Number(v('publish.qos').value);
    if (v('publish.retain').checked) p.retain = true;
    body.publish = p;
    delete body.command;
  }
  if (body.type === 1) {
    const rp = { url: text('remote.url'), method: v('remote.method').value };
    const headers = text('remote.headers');
    if (headers) {
      try { rp.headers = JSON.parse(headers); } catch (e) { throw new FieldError('remote.headers', 'headers: not JSON: ' + e.message); }
    }
    if (text('remote.body')) rp.body = v('remote.body').value;
    if (text('remote.timeout') !== '') rp.timeout = Number(text('remote.timeout'));
    if (text('remote.expected_response_codes')) {
      rp.expected_response_codes = text('remote.expected_response_codes').split(',').map((s) => Number(s.trim()));
    }
    body.remote_properties = rp;
  }
  return body;
}

class FieldError extends Error {
  constructor(field, message) { super(message); this.field = field; }
}

// The server names the field first: "schedule: …", "remote_properties.url: …".
function fieldOf(message) {
  const t = /^notify\[\d+\]\.(webhook|email)/.exec(message || '');
  if (t) return 'notify.' + t[1];
  const m = /^([A-Za-z_.]+)(?:\[\d+\])?:/.exec(message || '');
  if (!m) return null;
  const f = m[1].replace(/^remote_properties\./, 'remote.').replace(/^run_on\.tags\..*/, 'run_on.tags');
  return f;
}

function showFormError(form, message, field) {
  form.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
  const box = $('#form-error');
  box.hidden = false;
  box.textContent = message;
  const el = field && form.elements[field];
  if (el) { el.classList.add('invalid'); el.focus(); }
}

let previewTimer = null;
async function previewSchedule() {
  const out = $('#schedule-preview');
  if (!out) return;
  const schedule = $('#f-schedule').value.trim();
  const tz = $('#f-time_zone').value.trim();
  if (!schedule) { out.replaceChildren(h('span', { class: 'muted' }, 'Runs once, as soon as it is created.')); return; }
  try {
    const p = await api('POST', '/api/v1/schedule/preview/', { schedule, time_zone: tz, count: 5 });
    out.replaceChildren(h('div', {}, h('strong', {}, p.description)),
      p.next.length ? h('ol', { id: 'next-runs' }, p.next.map((t) => h('li', {}, absolute(parseTime(t)), ' ',
        h('span', { class: 'muted' }, '(' + relative(parseTime(t)) + ')')))) : h('div', { class: 'muted' }, 'No future runs.'));
    $('#f-schedule').classList.remove('invalid');
  } catch (e) {
    out.replaceChildren(h('span', { class: 'error', id: 'schedule-error' }, e.message));
  }
}

function renderNew() {
  const rows = [];
  let section = null;
  for (const [name, label, kind, hint, options] of FIELDS) {
    const group = name.startsWith('remote.') ? 'remote' : name.startsWith('publish.') ? 'publish' : name === 'command' ? 'local' : null;
    if ((group === 'remote' || group === 'publish') && section !== group) {
      section = group;
      rows.push(h('div', { class: 'section', 'data-group': group }, group === 'remote' ? 'Remote request' : 'Message'));
    }
    rows.push(h('label', { for: 'f-' + name.replace('.', '-'), 'data-group': group }, label));
    const field = h('div', { class: 'field', 'data-group': group }, fieldInput(name, kind, options), hint ? h('div', { class: 'hint' }, hint) : null);
    if (name === 'schedule') field.append(h('div', { id: 'schedule-preview', class: 'preview' }));
    rows.push(field);
  }
  const form = h('form', { class: 'job', id: 'new-job', novalidate: true }, rows,
    h('span'), h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit', id: 'create' }, 'Create job'),
      h('a', { href: '#/jobs' }, h('button', { type: 'button' }, 'Cancel'))));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let body;
    try { body = formBody(form); } catch (e) { showFormError(form, e.message, e.field); return; }
    $('#create').disabled = true;
    try {
      const r = await api('POST', '/api/v1/job/', body);
      location.hash = '#/job/' + r.id;
    } catch (e) {
      showFormError(form, e.message, fieldOf(e.message));
    } finally {
      const b = $('#create');
      if (b) b.disabled = false;
    }
  });
  setView(h('h1', {}, 'New job'), h('div', { class: 'banner error', id: 'form-error', role: 'alert', hidden: true }),
    h('div', { class: 'card' }, form));
  const showGroups = () => {
    const type = $('#f-type').value;
    const of = { local: '0', remote: '1', publish: '3' };
    form.querySelectorAll('[data-group]').forEach((el) => { el.hidden = of[el.dataset.group] !== type; });
  };
  $('#f-type').addEventListener('change', showGroups);
  if (state.me && !can(state.me.commands_need)) {
    // The server refuses local commands from this role (--allow-commands).
    const local = $('#f-type option[value="0"]');
    local.disabled = true;
    local.textContent += ` (needs the ${state.me.commands_need} role)`;
    $('#f-type').value = '1';
  }
  showGroups();
  for (const id of ['#f-schedule', '#f-time_zone']) {
    $(id).addEventListener('input', () => { clearTimeout(previewTimer); previewTimer = setTimeout(previewSchedule, 250); });
  }
  previewSchedule();
}

// ---------- job detail ----------

function chart(runs) {
  const shown = runs.filter((r) => r.outcome !== 'skipped').slice(-60);
  const W = 600, H = 110, pad = 4;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('id', 'durations');
  if (!shown.length) return svg;
  const max = Math.max(...shown.map((r) => r.execution_duration), 1);
  const bw = (W - pad * 2) / 60;
  // Grid lines at the scale's marks (the labels are HTML beside the
  // chart: the SVG stretches to its box, which would distort text).
  for (const f of [0, 0.5, 1]) {
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    const y = H - pad - f * (H - pad * 2);
    line.setAttribute('x1', 0); line.setAttribute('x2', W);
    line.setAttribute('y1', y); line.setAttribute('y2', y);
    line.setAttribute('stroke', '#e3e6eb');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.append(line);
  }
  shown.forEach((r, i) => {
    const bh = Math.max(2, (r.execution_duration / max) * (H - pad * 2));
    const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    rect.setAttribute('x', pad + i * bw + 1);
    rect.setAttribute('y', H - pad - bh);
    rect.setAttribute('width', Math.max(1, bw - 2));
    rect.setAttribute('height', bh);
    rect.setAttribute('fill', r.outcome === 'succeeded' ? '#2f9e6b' : '#d4473d');
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = `${absolute(parseTime(r.ran_at))}: ${duration(r.execution_duration)} (${r.outcome})`;
    rect.append(title);
    svg.append(rect);
  });
  const first = shown[0], last = shown[shown.length - 1];
  return h('div', { class: 'chartbox', id: 'duration-chart' },
    h('div', { class: 'yaxis', 'aria-label': 'run duration' },
      h('span', {}, duration(max)), h('span', {}, duration(max / 2)), h('span', {}, '0')),
    svg,
    h('div', { class: 'xaxis' },
      h('span', {}, absolute(parseTime(first.ran_at))),
      h('span', { class: 'muted' }, `run duration of the last ${shown.length} ${shown.length === 1 ? 'run' : 'runs'}, oldest to newest`),
      h('span', {}, absolute(parseTime(last.ran_at)))));
}

async function renderJob(id, rid) {
  let job, runs, all;
  try {
    [job, runs] = await Promise.all([
      api('GET', `/api/v1/job/${encodeURIComponent(id)}/?stats=false`).then((d) => d.job),
      api('GET', `/api/v1/job/${encodeURIComponent(id)}/runs/?limit=100`).then((d) => d.runs),
    ]);
    markLive(true);
  } catch (e) {
    if (rid !== state.renderId) return;
    markLive(e.status !== 0);
    setView(h('h1', {}, 'Job'), banner('error', e.message), h('a', { href: '#/jobs' }, '← all jobs'));
    return;
  }
  if (rid !== state.renderId) return;
  const m = job.metadata || {};
  const link = (x) => h('a', { href: '#/job/' + x }, x);
  const links = (xs) => (xs && xs.length ? xs.map((x, i) => [i ? ', ' : '', link(x)]) : h('span', { class: 'muted' }, 'none'));
  const rp = job.remote_properties || {};
  const rows = [
    ['Id', h('code', {}, job.id)], ['Owner', job.owner || '—'],
    ['Type', job.type === 1 ? 'remote HTTP request' : job.type === 3 ? 'publish to a broker' : 'local command'],
    job.type === 1 ? ['Request', h('code', {}, `${rp.method || 'GET'} ${rp.url || ''}`)]
      : job.type === 3 ? ['Message', describePublish(job.publish)] : ['Command', h('code', {}, job.command)],
    ['Runs on', describeRunOn(job.run_on)],
    ['Schedule', [describeSchedule(job), ' ', h('code', { class: 'muted' }, job.schedule || '(none)')]],
    ['Next run', job.disabled || job.is_done ? '—' : [timeCell(job.next_run_at), ' ', h('span', { class: 'muted small' }, absolute(parseTime(job.next_run_at)))]],
    ['State', jobState(job)],
    ['Parents', links(job.parent_jobs)], ['Children', links(job.dependent_jobs)],
    ['On failure', job.on_failure_job ? link(job.on_failure_job) : '—'],
    ['Retries', job.retries || 0], ['Retry delay', job.retry_delay || '—'], ['Epsilon', job.epsilon || '—'],
    ['Timeout', job.timeout || '—'], ['Time zone', job.time_zone || '—'], ['Overlap', job.overlap || 'allow'],
    ['Notifications', [describeTargets(job.notify), ' ', h('button', gate('editor', { id: 'edit-notify', class: 'small', onclick: () => editNotify() }), 'Edit')]],
    ['Successes / errors', `${m.success_count || 0} / ${m.error_count || 0}`],
    ['Last success', timeCell(m.last_success)], ['Last error', timeCell(m.last_error)],
    ['Last attempted run', timeCell(m.last_attempted_run)],
  ];
  const act = async (what) => {
    try {
      await api('POST', `/api/v1/job/${what}/${encodeURIComponent(id)}/`);
      renderJob(id, state.renderId);
    } catch (e) { $('#job-error').replaceChildren(banner('error', e.message)); }
  };
  const del = async () => {
    // Children whose only parent is this job are deleted with it; others are unlinked.
    // A child that cannot be read is named as possibly deleted, not left out.
    const kids = await Promise.all((job.dependent_jobs || []).map((c) =>
      api('GET', `/api/v1/job/${encodeURIComponent(c)}/?stats=false`).then((d) => d.job)
        .catch((e) => ({ id: c, name: `(could not be read: ${e.message}; it may be deleted too)`, parent_jobs: [id] }))));
    const going = kids.filter((k) => (k.parent_jobs || []).every((p) => p === id));
    const body = h('div', {}, h('p', {}, 'Delete ', h('strong', {}, job.name), ' and its run history?'),
      going.length ? [h('p', {}, 'These children have no other parent and will be deleted too:'),
        h('ul', { id: 'cascade' }, going.map((k) => h('li', {}, k.name, ' ', h('code', { class: 'muted' }, k.id))))]
        : h('p', { class: 'muted' }, 'No other job is deleted with it.'));
    if (!(await confirmDialog('Delete job', body, 'Delete'))) return;
    try {
      await api('DELETE', `/api/v1/job/${encodeURIComponent(id)}/`);
      location.hash = '#/jobs';
    } catch (e) { $('#job-error').replaceChildren(banner('error', e.message)); }
  };
  // The targets as JSON in a dialog; saved with PUT …/notify/.
  const editNotify = async () => {
    const area = h('textarea', { id: 'notify-json', rows: 8, cols: 60 }, JSON.stringify(job.notify || [], null, 2));
    const help = h('p', { class: 'muted small' }, 'A list of targets: {"on": ["failure", "retry"], "webhook": "https://…"} or {"on": ["failure"], "email": "ops@example.com"}; [] removes them.');
    if (!(await confirmDialog('Notifications', h('div', {}, help, area), 'Save'))) return;
    let targets;
    try { targets = JSON.parse(area.value); } catch (e) {
      $('#job-error').replaceChildren(banner('error', 'notify: not JSON: ' + e.message)); return;
    }
    try {
      await api('PUT', `/api/v1/job/${encodeURIComponent(id)}/notify/`, targets);
      renderJob(id, state.renderId);
    } catch (e) { $('#job-error').replaceChildren(banner('error', e.message)); }
  };
  const history = runs.slice().reverse();
  setView(
    h('div', { class: 'toolbar' }, h('a', { href: '#/jobs' }, '← all jobs')),
    h('h1', { id: 'job-name' }, job.name || '(no name)'),
    h('div', { id: 'job-error' }),
    h('div', { class: 'actions spaced' },
      h('button', gate('operator', { id: 'run-now', class: 'primary', onclick: () => act('start'), disabled: job.disabled }), 'Run now'),
      job.disabled ? h('button', gate('operator', { id: 'enable', onclick: () => act('enable') }), 'Enable')
        : h('button', gate('operator', { id: 'disable', onclick: () => act('disable') }), 'Disable'),
      h('button', gate('editor', { id: 'delete', class: 'danger', onclick: del }), 'Delete')),
    h('div', { class: 'card' }, h('dl', { class: 'fields' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    h('h2', {}, 'Durations'), chart(runs),
    h('h2', {}, `Run history (${runs.length})`),
    history.length ? h('table', { id: 'runs' },
      h('thead', {}, h('tr', {}, ['Started', 'Trigger', 'Result', 'Duration', 'Retries', 'Exit', 'Notified', 'Output', 'Run'].map((t) => h('th', {}, t)))),
      h('tbody', {}, history.map((r) => h('tr', { class: 'run' },
        h('td', {}, timeCell(r.ran_at)),
        h('td', { class: 'muted' }, r.trigger),
        h('td', {}, h('span', { class: 'badge ' + (r.outcome === 'succeeded' ? 'ok' : r.outcome === 'failed' ? 'bad' : 'off') }, r.outcome)),
        h('td', { class: 'mono' }, duration(r.execution_duration)),
        h('td', { class: 'mono' }, r.number_of_retries),
        h('td', { class: 'mono' }, r.exit_code ?? '—'),
        h('td', { class: 'notified' }, r.notifications && r.notifications.length ? r.notifications.map(noticeBadge) : h('span', { class: 'muted' }, '—')),
        h('td', {}, r.error ? h('div', { class: 'error small' }, r.error) : null,
          r.output ? h('details', {}, h('summary', { class: 'small' }, 'output'), h('pre', { class: 'out' }, r.output)) : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'run-id small' }, r.node ? h('div', { class: 'mono' }, r.node) : null,
          r.run_id ? h('div', { class: 'mono muted', title: 'KALA_RUN_ID ' + r.run_id }, r.run_id.slice(0, 8)) : null)))))
      : h('div', { class: 'card empty', id: 'no-runs' }, 'No runs yet.'));
}

// ---------- dashboard ----------

function parseMetrics(text) {
  const out = { runs: {}, recent: { runs: 0, failed: 0 }, buckets: [], lateCount: 0, lateSum: 0, storeErrors: 0, running: 0, scheduled: 0 };
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const [, name, labels, v] = m;
    const val = Number(v);
    const label = (k) => { const x = new RegExp(k + '="([^"]*)"').exec(labels || ''); return x && x[1]; };
    if (name === 'kala_runs_total') out.runs[label('result')] = val;
    else if (name === 'kala_runs_last_minute') out.recent[label('result') === 'failed' ? 'failed' : 'runs'] = val;
    else if (name === 'kala_run_lateness_seconds_bucket') out.buckets.push([label('le') === '+Inf' ? Infinity : Number(label('le')), val]);
    else if (name === 'kala_run_lateness_seconds_count') out.lateCount = val;
    else if (name === 'kala_run_lateness_seconds_sum') out.lateSum = val;
    else if (name === 'kala_store_errors_total') out.storeErrors = val;
    else if (name === 'kala_runs_running') out.running = val;
    else if (name === 'kala_jobs_scheduled') out.scheduled = val;
  }
  return out;
}

function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  for (const [le, c] of buckets) if (c >= q * total) return le;
  return Infinity;
}

function fmtSeconds(s) {
  if (s === null) return '—';
  if (s === Infinity) return '> largest bucket';
  return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms' : s.toFixed(1) + ' s';
}

async function renderDashboard(rid) {
  let stats, metrics, health;
  try {
    stats = (await api('GET', '/api/v1/stats/')).Stats;
    // With tokens, /metrics is a reader's too.
    const r = await fetch('/metrics', { headers: state.token ? { Authorization: 'Bearer ' + state.token } : {} });
    if (!r.ok) throw new ApiError(r.status, 'metrics: ' + r.status + ' ' + r.statusText);
    metrics = parseMetrics(await r.text());
    // /healthz answers 503 with the same body while the store is unhealthy.
    health = await (await fetch('/healthz')).json();
    markLive(true);
  } catch (e) {
    if (rid !== state.renderId) return;
    markLive(false);
    setView(h('h1', {}, 'Dashboard'), banner('error', e.message));
    return;
  }
  if (rid !== state.renderId) return;
  // Rates are the server's own (runs that finished in its last minute),
  // right at first sight, not measured from when this page opened.
  const perMin = metrics.recent.runs;
  const failPerMin = metrics.recent.failed;
  const stat = (k, v, id) => h('div', { class: 'stat', id }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v));
  setView(
    h('h1', {}, 'Dashboard'),
    h('div', { class: 'grid' },
      stat('Jobs', stats.jobs, 'stat-jobs'), stat('Enabled', stats.active_jobs), stat('Disabled', stats.disabled_jobs),
      stat('Scheduled', metrics.scheduled), stat('Running now', metrics.running),
      stat('Successes', stats.success_count, 'stat-success'), stat('Errors', stats.error_count, 'stat-errors'),
      stat('Runs / minute', perMin, 'stat-rpm'),
      stat('Failures / minute', failPerMin, 'stat-fpm'),
      stat('Skipped runs', metrics.runs.skipped || 0),
      stat('Lateness p50', fmtSeconds(quantile(metrics.buckets, 0.5))),
      stat('Lateness p99', fmtSeconds(quantile(metrics.buckets, 0.99))),
      stat('Lateness mean', metrics.lateCount ? fmtSeconds(metrics.lateSum / metrics.lateCount) : '—'),
      stat('Store errors', metrics.storeErrors)),
    h('h2', {}, 'Times'),
    h('div', { class: 'card' }, h('dl', { class: 'fields' },
      h('dt', {}, 'Next run'), h('dd', {}, timeCell(stats.next_run_at), ' ', h('span', { class: 'muted small' }, absolute(parseTime(stats.next_run_at)))),
      h('dt', {}, 'Last attempted run'), h('dd', {}, timeCell(stats.last_attempted_run)),
      h('dt', {}, 'Server started'), h('dd', { id: 'server-started' }, absolute(parseTime(health.started))),
      h('dt', {}, 'Stats as of'), h('dd', {}, absolute(parseTime(stats.created))))),
    h('p', { class: 'muted small' }, 'Rates: runs that finished in the server\'s last minute; lateness is the bucket bound from /metrics.'));
}

// ---------- cluster ----------

function tagList(tags) {
  return Object.entries(tags).map(([k, v]) => h('span', { class: 'badge off tag' }, `${k}=${v}`));
}

function partitionList(parts) {
  if (!parts.length) return '—';
  // Runs of consecutive partitions as ranges: 0–21, 40, 42–44.
  const out = [];
  let a = parts[0], b = parts[0];
  for (const p of parts.slice(1).concat([null])) {
    if (p === b + 1) { b = p; continue; }
    out.push(a === b ? String(a) : a + '–' + b);
    a = b = p;
  }
  return out.join(', ');
}

async function renderCluster(rid) {
  let c;
  try {
    c = await api('GET', '/api/v1/cluster/');
    markLive(true);
  } catch (e) {
    if (rid !== state.renderId) return;
    markLive(false);
    setView(h('h1', {}, 'Cluster'), banner('error', e.message));
    return;
  }
  if (rid !== state.renderId) return;
  if (!c.clustered) {
    setView(h('h1', {}, 'Cluster'),
      h('p', {}, 'This instance (', h('code', {}, c.node), ') runs alone: its store is not shared with other instances.'),
      c.tags ? h('p', {}, 'Tags: ', tagList(c.tags)) : null,
      h('p', { class: 'muted small' }, 'Several instances on one PostgreSQL or MySQL database form a cluster by themselves.'));
    return;
  }
  const held = c.nodes.reduce((n, x) => n + (x.alive ? x.partitions.length : 0), 0);
  const rows = c.nodes.map((n) => h('tr', { class: n.alive ? '' : 'muted' },
    h('td', {}, n.name, n.name === c.node ? h('span', { class: 'muted small' }, ' (this one)') : null),
    h('td', {}, n.address || '—'),
    h('td', {}, n.leaving ? 'leaving' : n.alive ? 'alive' : 'gone'),
    h('td', {}, timeCell(n.last_heartbeat)),
    h('td', {}, timeCell(n.started)),
    h('td', { title: partitionList(n.partitions) }, String(n.partitions.length)),
    h('td', {}, String(n.runs_done)),
    h('td', { class: 'tags' }, n.tags ? tagList(n.tags) : '—')));
  setView(
    h('h1', {}, 'Cluster'),
    h('p', {}, c.nodes.filter((n) => n.alive).length, ' instances alive; ', held, ' of ', c.partitions,
      ' partitions of the job ids held.', held < c.partitions ? h('span', { class: 'error' }, ' Some are being taken over.') : null),
    h('table', { id: 'cluster-table' },
      h('thead', {}, h('tr', {}, ...['Instance', 'Address', 'State', 'Last heartbeat', 'Started', 'Partitions', 'Runs done', 'Tags'].map((t) => h('th', {}, t)))),
      h('tbody', {}, ...rows)),
    h('p', { class: 'muted small' }, 'Each job runs on the instance holding its partition; a dead instance\'s partitions are taken over when its leases run out.'));
}

// ---------- audit log ----------

// The audit log, newest first: filters by job and actor, one page at a time
// (the cursors of the pages seen are kept for "Previous").
state.audit = { cursors: [null], page: 0, job: '', actor: '', next: null };

function describeDiff(d) {
  if (!d || typeof d !== 'object') return '';
  return Object.entries(d).map(([k, v]) => {
    if (v && typeof v === 'object' && ('before' in v || 'after' in v)) {
      const show = (x) => (x === undefined ? '—' : JSON.stringify(x));
      return `${k}: ${show(v.before)} → ${show(v.after)}`;
    }
    return `${k}: ${JSON.stringify(v)}`;
  }).join('\n');
}

async function renderAudit(rid) {
  const A = state.audit;
  const q = new URLSearchParams({ limit: '50' });
  if (A.job) q.set('job', A.job);
  if (A.actor) q.set('actor', A.actor);
  if (A.cursors[A.page]) q.set('cursor', A.cursors[A.page]);
  let page;
  try {
    page = await api('GET', '/api/v1/audit/?' + q.toString());
    markLive(true);
  } catch (e) {
    if (rid !== state.renderId) return;
    markLive(e.status !== 0);
    setView(h('h1', {}, 'Audit log'), banner('error', e.message));
    return;
  }
  if (rid !== state.renderId) return;
  A.next = page.next_cursor;
  const focused = document.activeElement && document.activeElement.id;
  const filter = (id, key, placeholder) => h('input', { id, type: 'search', placeholder, value: A[key],
    onchange: (e) => { A[key] = e.target.value.trim(); A.cursors = [null]; A.page = 0; renderAudit(state.renderId); } });
  const rows = page.entries.map((e) => h('tr', { class: 'audit-entry' },
    h('td', {}, timeCell(e.at)),
    h('td', {}, e.actor, e.source ? h('div', { class: 'muted small mono' }, e.source) : null),
    h('td', {}, h('span', { class: 'badge ' + (e.action === 'refused' ? 'bad' : e.action.startsWith('delete') ? 'off' : 'ok') }, e.action)),
    h('td', {}, e.job_id ? [h('a', { href: '#/job/' + e.job_id }, e.job_name || e.job_id)] : h('span', { class: 'muted' }, '—')),
    h('td', {}, Object.keys(e.diff || {}).length
      ? h('details', {}, h('summary', { class: 'small' }, Object.keys(e.diff).slice(0, 4).join(', ')), h('pre', { class: 'out' }, describeDiff(e.diff)))
      : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'small mono muted' }, e.node || '', e.request_id ? h('div', { title: 'request id' }, e.request_id.slice(0, 12)) : null)));
  setView(
    h('h1', {}, 'Audit log'),
    h('div', { class: 'toolbar' }, filter('audit-job', 'job', 'Job id'), filter('audit-actor', 'actor', 'Actor'),
      h('span', { class: 'grow' }),
      h('button', { id: 'audit-prev', disabled: A.page === 0, onclick: () => { A.page--; renderAudit(state.renderId); } }, '← Newer'),
      h('button', { id: 'audit-next', disabled: !A.next, onclick: () => { A.cursors[A.page + 1] = A.next; A.page++; renderAudit(state.renderId); } }, 'Older →')),
    rows.length ? h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Job', 'What changed', 'Instance'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows))
      : h('div', { class: 'card muted' }, 'No entries.'),
    h('p', { class: 'muted small' }, 'Every change, who made it and from where. Entries cannot be changed; they are kept for --audit-keep-days.'));
  if (focused && $('#' + focused)) $('#' + focused).focus();
}

// ---------- routing ----------

async function route(initial) {
  const rid = ++state.renderId;
  const hash = location.hash || '#/jobs';
  const [, page, arg] = hash.split('/');
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === page || (page === 'job' && a.dataset.nav === 'jobs')));
  if (page === 'new') { if (initial !== 'poll') renderNew(); return; }
  if (page === 'job' && arg) return renderJob(decodeURIComponent(arg), rid);
  if (page === 'dashboard') return renderDashboard(rid);
  if (page === 'cluster') return renderCluster(rid);
  if (page === 'audit') return renderAudit(rid);
  return refreshList();
}

function poll() {
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (document.hidden || $('#confirm').open || $('#login').open) return;
    const page = (location.hash || '#/jobs').split('/')[1];
    if (page === 'new') return;
    // Keep what the user is doing: an open output stays open.
    if (document.querySelector('details[open]')) return;
    route('poll');
  }, POLL_MS);
}

window.addEventListener('hashchange', () => route());
$('#sign-out').addEventListener('click', signOut);
loadMe().then(() => route());
poll();
