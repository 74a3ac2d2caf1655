// wpgate admin console: a client of /admin/v1 only.
// The admin token lives in sessionStorage only (never a cookie); every page is built
// with DOM calls (no HTML strings), so nothing the API returns is ever parsed as markup.
'use strict';

const API = '/admin/v1';
const TOKEN_KEY = 'wpgate.console.token';
const STATES = ['auth_failed', 'unreachable', 'unusable', 'degraded', 'disabled', 'unknown', 'healthy'];
const PAGE = 50;

const session = { token: null, scope: null, id: null, label: null };

// ---- DOM helpers ----

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

let uid = 0;
/** A labelled control: [label, control]. */
function field(labelText, control) {
  if (!control.id) control.id = 'f' + (++uid);
  return [h('label', { for: control.id, text: labelText }), control];
}

function main() { return document.getElementById('main'); }

function page(title, ...kids) {
  const m = main();
  m.replaceChildren(h('h1', { text: title }), ...kids);
  document.title = title + ' · wpgate console';
}

function notice(text) {
  document.getElementById('error').textContent = '';
  document.getElementById('notice').textContent = text;
}

function clearMessages() {
  document.getElementById('error').textContent = '';
  document.getElementById('notice').textContent = '';
}

function showError(err) {
  const box = document.getElementById('error');
  if (err && err.isApi) {
    box.replaceChildren(
      h('strong', { text: err.message }),
      ' ',
      h('span', { class: 'muted', text: `(${err.code}, HTTP ${err.status}` + (err.requestId ? `, request id ${err.requestId})` : ')') }),
    );
  } else {
    box.textContent = String(err && err.message ? err.message : err);
  }
}

function badge(state) {
  return h('span', { class: 'badge s-' + (state || 'unknown'), text: state || 'unknown' });
}

function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toLocaleString();
}

function canWrite() { return session.scope === 'write'; }

function confirmDialog(text, okLabel) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel || 'Confirm';
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
  });
}

/** Runs `fn` with the button disabled; errors go to the error region. */
async function busy(button, fn) {
  clearMessages();
  if (button) button.disabled = true;
  try { return await fn(); } catch (e) { showError(e); return undefined; } finally { if (button) button.disabled = false; }
}

// ---- API ----

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.isApi = true;
    this.status = status;
    this.code = e.code || 'http.' + status;
    this.requestId = e.request_id || null;
  }
}

async function api(method, path, body, extraHeaders) {
  const headers = { Authorization: 'Bearer ' + session.token, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, extraHeaders || {});
  const resp = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit', cache: 'no-store',
  });
  let data = null;
  const text = await resp.text();
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && session.token) {
      signOut();
      showError(err);
    }
    throw err;
  }
  return { data, etag: resp.headers.get('ETag') };
}

const get = async (path) => (await api('GET', path)).data;
const q = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
};

/** The health state of each of `ids` (one page of sites), from the admin API. */
async function pageHealth(ids) {
  const states = await Promise.all(ids.map((id) => get('/sites/' + encodeURIComponent(id) + '/health')
    .then((r) => r.state).catch(() => null)));
  return new Map(ids.map((id, i) => [id, states[i] || 'unknown']));
}

// ---- session ----

function signOut() {
  session.token = session.scope = session.id = session.label = null;
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  renderSignIn();
}

/** Checks a token against the API and learns its scope from the token list. */
async function signIn(token) {
  session.token = token;
  const id = token.split('_')[1] || '';
  let list;
  try {
    list = await get('/tokens');
  } catch (e) {
    session.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  const me = (list.tokens || []).find((t) => t.id === id);
  session.id = id;
  session.scope = me ? me.scope : 'read';
  session.label = me && me.label ? me.label : id;
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  document.getElementById('who').textContent = `${session.label} (${session.scope === 'write' ? 'read and write' : 'read only'})`;
}

function renderSignIn() {
  const input = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, name: 'token' });
  const button = h('button', { type: 'submit', text: 'Sign in' });
  const form = h('form', { class: 'grid signin', 'aria-label': 'Sign in' },
    ...field('Admin token', input),
    h('p', { class: 'full muted', text: 'A token from `wpgate admin token create`. It is kept in this tab only and forgotten on sign-out.' }),
    h('div', { class: 'full' }, button));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await busy(button, async () => {
      await signIn(input.value.trim());
      input.value = '';
      clearMessages();
      if (!location.hash || location.hash === '#/signin') location.hash = '#/overview';
      else route();
    });
  });
  page('Sign in', form);
  input.focus();
}

// ---- pages ----

async function overview() {
  const o = await get('/overview');
  const counts = new Map(Object.entries(o.sites_by_state));
  const cards = h('div', { class: 'cards' }, STATES.map((s) =>
    h('a', { class: 'card', href: '#/sites?state=' + s },
      h('span', { class: 'n', text: String(counts.get(s) || 0) }), badge(s))));
  // The sites needing attention, worst state first: the store answers by state.
  const attnStates = STATES.filter((s) => s !== 'healthy' && s !== 'unknown');
  const total = attnStates.reduce((n, s) => n + (counts.get(s) || 0), 0);
  const shown = [];
  for (const s of attnStates) {
    if (shown.length >= 20 || !counts.get(s)) continue;
    const list = await get('/sites' + q({ state: s, limit: 20 - shown.length }));
    for (const site of list.sites) shown.push([site.id, s]);
  }
  const healths = await Promise.all(shown.map(([id]) => get('/sites/' + encodeURIComponent(id) + '/health').catch(() => null)));
  const attnBody = shown.length
    ? h('div', { class: 'tablewrap' }, h('table', {},
      h('caption', { text: `Sites needing attention (${total}${total > shown.length ? ', first ' + shown.length : ''})` }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Site' }), h('th', { scope: 'col', text: 'State' }), h('th', { scope: 'col', text: 'Message' }))),
      h('tbody', {}, shown.map(([id, s], i) => h('tr', {},
        h('td', {}, h('a', { href: '#/site/' + encodeURIComponent(id), text: id })),
        h('td', {}, badge(s)),
        h('td', { text: healths[i] ? healths[i].message : '' }))))))
    : h('p', { text: 'No site needs attention.' });
  const reasons = Object.entries(o.auth_failures_last_hour).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  page('Overview',
    h('section', { 'aria-labelledby': 'ov-health' }, h('h2', { id: 'ov-health', text: 'Sites by health' }),
      h('p', { class: 'muted', text: `Sites in the store: ${o.sites}, by their last health check.` }), cards),
    h('section', { 'aria-labelledby': 'ov-attn' }, h('h2', { id: 'ov-attn', text: 'Needs attention' }), attnBody),
    h('section', { 'aria-labelledby': 'ov-auth' }, h('h2', { id: 'ov-auth', text: 'Refused client authentications by reason' }),
      h('p', { class: 'muted', text: 'In the last hour, by the gateway process that answered this page.' }),
      reasons.length
        ? h('ul', {}, reasons.map(([r, n]) => h('li', {}, h('code', { text: r }), `: ${n}`)))
        : h('p', { text: 'None.' })),
    h('section', { 'aria-labelledby': 'ov-gw' }, h('h2', { id: 'ov-gw', text: 'Gateway' }),
      h('dl', { class: 'kv' },
        h('dt', { text: 'Version' }), h('dd', { text: o.version }),
        h('dt', { text: 'Store' }), h('dd', { text: 'answering' }),
        h('dt', { text: 'Keyring' }), h('dd', { text: `${o.keyring_keys} keys, primary ${o.keyring_primary}` }),
        h('dt', { text: 'Change listener' }), h('dd', { text: o.change_listener_connected ? 'connected' : 'not connected (polling)' }))));
}


function credentialFields(prefix) {
  const kind = h('select', { name: prefix + 'kind' },
    h('option', { value: 'app_password', text: 'WordPress Application Password' }),
    h('option', { value: 'bearer', text: 'Bearer token' }),
    h('option', { value: 'header', text: 'Custom header' }),
    h('option', { value: 'none', text: 'None' }));
  const username = h('input', { name: prefix + 'username', autocomplete: 'off' });
  const header = h('input', { name: prefix + 'header', autocomplete: 'off' });
  const secret = h('input', { name: prefix + 'secret', type: 'password', autocomplete: 'new-password' });
  const rows = {
    username: field('WordPress user', username), header: field('Header name', header), secret: field('Secret', secret),
  };
  const sync = () => {
    const k = kind.value;
    for (const el of rows.username) el.hidden = k !== 'app_password';
    for (const el of rows.header) el.hidden = k !== 'header';
    for (const el of rows.secret) el.hidden = k === 'none';
  };
  kind.addEventListener('change', sync);
  sync();
  return {
    nodes: [...field('Credential', kind), ...rows.username, ...rows.header, ...rows.secret],
    value() {
      const k = kind.value;
      if (k === 'none') return { kind: 'none' };
      const c = { kind: k, secret: secret.value };
      if (k === 'app_password') c.username = username.value.trim();
      if (k === 'header') c.header_name = header.value.trim();
      return c;
    },
    clear() { secret.value = ''; },
  };
}

async function sites(params) {
  // The health column: each shown site's health from the API, asked for after the page
  // is rendered (unless the sort needs it first).
  const state = params.get('state') || '';
  const cursor = params.get('cursor') || '';
  const search = params.get('q') || '';
  const sort = params.get('sort') || 'id';
  // Search and state filter run in the store (the API's q and state), so they cover
  // the whole fleet a page at a time; the sort orders the page shown.
  const list = await get('/sites' + q({ limit: PAGE, cursor, q: search, state }));
  let rows = list.sites;
  const next = list.next_cursor;
  let health = null;
  const loadHealth = () => (health = health || pageHealth(list.sites.map((r) => r.id)));
  const m = sort === 'state' ? await loadHealth() : null;
  const stateOf = (id) => (m ? m.get(id) || 'unknown' : null);
  const cmp = {
    id: (a, b) => a.id.localeCompare(b.id),
    name: (a, b) => (a.name || '').localeCompare(b.name || ''),
    state: (a, b) => STATES.indexOf(stateOf(a.id)) - STATES.indexOf(stateOf(b.id)),
    updated: (a, b) => (b.updated_at || '').localeCompare(a.updated_at || ''),
  }[sort] || (() => 0);
  rows = [...rows].sort(cmp);

  const qIn = h('input', { type: 'search', name: 'q', value: search });
  const stSel = h('select', { name: 'state' }, h('option', { value: '', text: 'Any state' }),
    STATES.map((s) => h('option', { value: s, text: s, selected: s === state })));
  const sortSel = h('select', { name: 'sort' }, [['id', 'Id'], ['name', 'Name'], ['state', 'Health (worst first)'], ['updated', 'Last changed']]
    .map(([v, t]) => h('option', { value: v, text: t, selected: v === sort })));
  const filters = h('form', { class: 'row', role: 'search', 'aria-label': 'Filter sites' },
    ...field('Search id or name', qIn), ...field('State', stSel), ...field('Sort this page', sortSel),
    h('button', { type: 'submit', text: 'Apply' }));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = '#/sites' + q({ q: qIn.value.trim(), state: stSel.value, sort: sortSel.value });
  });
  const goId = h('input', { name: 'goto', autocomplete: 'off' });
  const goForm = h('form', { class: 'row', 'aria-label': 'Open a site by id' }, ...field('Open site id', goId), h('button', { type: 'submit', class: 'secondary', text: 'Open' }));
  goForm.addEventListener('submit', (ev) => { ev.preventDefault(); if (goId.value.trim()) location.hash = '#/site/' + encodeURIComponent(goId.value.trim()); });

  const table = h('div', { class: 'tablewrap' }, h('table', { id: 'sites-table' },
    h('caption', { text: `Sites${state ? ' in state ' + state : ''} (this page: ${rows.length})` }),
    h('thead', {}, h('tr', {}, ['Id', 'Name', 'Upstream', 'Enabled', 'Health'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows.map((r) => h('tr', {},
      h('td', {}, h('a', { href: '#/site/' + encodeURIComponent(r.id), text: r.id })),
      h('td', { text: r.name }), h('td', { text: r.upstream }),
      h('td', { text: r.enabled === null ? '?' : r.enabled ? 'yes' : 'no' }),
      h('td', { 'data-health': r.id }, m ? badge(stateOf(r.id)) : h('span', { class: 'muted', text: 'loading…' })))))));
  const pager = h('div', { class: 'row' },
    cursor ? h('a', { href: '#/sites' + q({ state, sort, q: search }), text: 'First page' }) : null,
    next ? h('a', { href: '#/sites' + q({ state, sort, q: search, cursor: next }), text: 'Next page' }) : null);

  page('Sites', filters, goForm, table, pager, canWrite() ? addSiteForm() : null);
  if (!m) {
    const later = await loadHealth().catch(() => null);
    for (const td of document.querySelectorAll('#sites-table td[data-health]')) {
      td.replaceChildren(later ? badge(later.get(td.dataset.health) || 'unknown') : '?');
    }
  }
}

function addSiteForm() {
  const id = h('input', { name: 'id', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}', autocomplete: 'off' });
  const name = h('input', { name: 'name', autocomplete: 'off' });
  const upstream = h('input', { name: 'upstream', type: 'url', required: true, placeholder: 'https://shop.example.com', autocomplete: 'off' });
  const cred = credentialFields('new-');
  const check = h('input', { type: 'checkbox', name: 'check', checked: true });
  const button = h('button', { type: 'submit', text: 'Add site' });
  const form = h('form', { class: 'grid', 'aria-labelledby': 'add-site' },
    ...field('Site id', id), ...field('Name', name), ...field('Upstream URL', upstream), ...cred.nodes,
    ...field('Check the credential against the site before saving it', check),
    h('div', { class: 'full' }, button));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(button, async () => {
      const credential = cred.value();
      const body = { id: id.value.trim(), upstream: upstream.value.trim() };
      if (name.value.trim()) body.name = name.value.trim();
      const sid = encodeURIComponent(body.id);
      if (check.checked && credential.kind !== 'none') {
        await api('POST', '/sites', body);
        try {
          await api('PUT', `/sites/${sid}/credential?confirm=true`, credential);
        } catch (e) {
          cred.clear();
          location.hash = '#/site/' + sid;
          notice(`Site ${body.id} was created without a credential: the site refused it. Set it below.`);
          showError(e);
          return;
        }
      } else {
        if (credential.kind !== 'none') body.credential = credential;
        const { data } = await api('POST', '/sites', body);
        if (data.warnings && data.warnings.length) notice(data.warnings.join('; '));
      }
      cred.clear();
      location.hash = '#/site/' + sid;
      notice(`Site ${body.id} created.` + (check.checked && credential.kind !== 'none' ? ' Its credential was accepted by the site.' : ''));
    });
  });
  return h('section', {}, h('h2', { id: 'add-site', text: 'Add a site' }), form);
}

/** The doctor's failing checks for one site, each with its fix. */
async function doctorFixes(id) {
  const report = await get('/doctor' + q({ site: id }));
  const site = (report.sites || []).find((s) => s.site_id === id);
  const bad = site ? site.checks.filter((c) => c.status === 'fail' || c.status === 'warn') : [];
  if (!bad.length) return h('p', { class: 'muted', text: 'doctor finds nothing to fix for this site.' });
  return h('div', {}, bad.map((c) => h('div', { class: 'fix' },
    h('strong', { text: `${c.check}: ${c.status}` }), h('p', { text: c.message }),
    c.fix ? h('p', {}, 'Fix: ', h('code', { text: c.fix })) : null)));
}

function healthBlock(health, fixes) {
  return h('div', { id: 'health' },
    h('p', {}, 'State: ', badge(health.state)),
    h('p', { id: 'health-message', text: health.message }),
    fixes,
    h('dl', { class: 'kv' },
      h('dt', { text: 'Last check' }), h('dd', { text: when(health.checked_at) + (health.checked_by ? ` by ${health.checked_by}` : '') }),
      h('dt', { text: 'Took' }), h('dd', { text: health.duration_ms !== undefined ? `${health.duration_ms} ms` : '—' }),
      h('dt', { text: 'WordPress user' }), h('dd', { text: health.wordpress_user || '—' }),
      h('dt', { text: 'Failures in a row' }), h('dd', { text: String(health.consecutive_failures || 0) })));
}

function shownOnce(what, secret) {
  const code = h('code', { id: 'shown-once', text: secret });
  const copy = h('button', { type: 'button', class: 'secondary', text: 'Copy' });
  copy.addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(secret); notice('Copied.'); } catch { showError('Copy failed: select the text and copy it.'); }
  });
  const done = h('button', { type: 'button', text: 'I have stored it' });
  const box = h('div', { class: 'secret', role: 'region', 'aria-label': `New ${what}` },
    h('strong', { text: `The new ${what}. It is shown only this once: store it now.` }), code, h('div', { class: 'row' }, copy, done));
  done.addEventListener('click', () => box.remove());
  return box;
}

async function site(id) {
  const sid = encodeURIComponent(id);
  const [{ data: s, etag }, health, keys] = await Promise.all([
    api('GET', '/sites/' + sid), get(`/sites/${sid}/health`), get(`/sites/${sid}/keys`)]);
  const fixes = health.state !== 'healthy' && health.state !== 'unknown' && health.state !== 'disabled'
    ? await doctorFixes(id).catch((e) => h('p', { text: 'doctor: ' + e.message })) : null;
  const reload = () => site(id);
  const secretSlot = h('div', { id: 'secret-slot' });

  const healthSec = h('section', { 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health', text: 'Health' }), healthBlock(health, fixes));
  if (canWrite()) {
    const test = h('button', { type: 'button', id: 'test-now', text: 'Test now' });
    test.addEventListener('click', () => busy(test, async () => {
      const { data } = await api('POST', `/sites/${sid}/test`);
      const f = data.state !== 'healthy' && data.state !== 'unknown' && data.state !== 'disabled'
        ? await doctorFixes(id).catch((e) => h('p', { text: 'doctor: ' + e.message })) : null;
      document.getElementById('health').replaceWith(healthBlock(data, f));
      notice(`Tested ${id}: ${data.state}.`);
    }));
    healthSec.append(h('div', { class: 'row' }, test));
  }

  const info = h('dl', { class: 'kv' },
    h('dt', { text: 'Id' }), h('dd', { text: s.id }),
    h('dt', { text: 'Name' }), h('dd', { text: s.name }),
    h('dt', { text: 'Upstream' }), h('dd', { text: s.upstream }),
    h('dt', { text: 'Enabled' }), h('dd', { text: s.enabled ? 'yes' : 'no (requests refused: site.disabled)' }),
    h('dt', { text: 'Credential' }), h('dd', { text: s.credential.kind + (s.credential.username ? ` as ${s.credential.username}` : '') + (s.credential.header_name ? ` in ${s.credential.header_name}` : '') }),
    h('dt', { text: 'Created' }), h('dd', { text: when(s.created_at) }),
    h('dt', { text: 'Changed' }), h('dd', { text: when(s.updated_at) + ` (version ${s.version})` }));
  const siteSec = h('section', { 'aria-labelledby': 'h-site' }, h('h2', { id: 'h-site', text: 'Site' }), info);

  const sections = [healthSec, siteSec];
  if (canWrite()) {
    // edit name/upstream
    const name = h('input', { name: 'name', value: s.name, autocomplete: 'off' });
    const upstream = h('input', { name: 'upstream', value: s.upstream, autocomplete: 'off' });
    const save = h('button', { type: 'submit', text: 'Save' });
    const edit = h('form', { class: 'grid', 'aria-label': 'Edit site' }, ...field('Name', name), ...field('Upstream URL', upstream), h('div', { class: 'full' }, save));
    edit.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(save, async () => {
        const body = {};
        if (name.value.trim() !== s.name) body.name = name.value.trim();
        if (upstream.value.trim() !== s.upstream) body.upstream = upstream.value.trim();
        if (!Object.keys(body).length) { notice('Nothing changed.'); return; }
        await api('PATCH', '/sites/' + sid, body, { 'If-Match': etag || `"${s.version}"` });
        await reload();
        notice(`Site ${id} saved.`);
      });
    });
    siteSec.append(h('h2', { text: 'Edit' }), edit);

    const toggle = h('button', { type: 'button', class: s.enabled ? 'danger' : '', text: s.enabled ? 'Disable site' : 'Enable site' });
    toggle.addEventListener('click', async () => {
      if (s.enabled && !(await confirmDialog(`Disable ${id}? Every request to it will be refused (403 site.disabled).`, 'Disable'))) return;
      busy(toggle, async () => {
        await api('POST', `/sites/${sid}/${s.enabled ? 'disable' : 'enable'}`);
        await reload();
        notice(`Site ${id} ${s.enabled ? 'disabled' : 'enabled'}.`);
      });
    });
    const del = h('button', { type: 'button', class: 'danger', text: 'Delete site' });
    del.addEventListener('click', async () => {
      if (!(await confirmDialog(`Delete ${id} and all its API keys? This cannot be undone.`, 'Delete'))) return;
      busy(del, async () => {
        await api('DELETE', '/sites/' + sid);
        location.hash = '#/sites';
        notice(`Site ${id} deleted.`);
      });
    });
    siteSec.append(h('div', { class: 'row' }, toggle, del));

    // credential
    const cred = credentialFields('cred-');
    const confirmIt = h('input', { type: 'checkbox', name: 'confirm', checked: true });
    const replace = h('button', { type: 'submit', text: 'Replace credential' });
    const credForm = h('form', { class: 'grid', 'aria-labelledby': 'h-cred' }, ...cred.nodes,
      ...field('Check it against the site first (keep the old one if refused)', confirmIt), h('div', { class: 'full' }, replace));
    credForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(replace, async () => {
        if (!(await confirmDialog(`Replace the upstream credential of ${id}?`, 'Replace'))) return;
        try {
          await api('PUT', `/sites/${sid}/credential` + (confirmIt.checked ? '?confirm=true' : ''), cred.value());
        } finally { cred.clear(); }
        await reload();
        notice(`Credential of ${id} replaced` + (confirmIt.checked ? ': the site accepted it.' : '.'));
      });
    });
    sections.push(h('section', {}, h('h2', { id: 'h-cred', text: 'Replace the credential' }),
      h('p', { class: 'muted', text: 'Write-only: the secret is never shown again.' }), credForm));
  }

  // keys
  const keyRows = (keys.keys || []).map((k) => {
    const actions = h('td', {});
    if (canWrite() && !k.revoked_at) {
      const grace = h('input', { name: 'grace-' + k.key_id, size: 6, placeholder: '0s', autocomplete: 'off' });
      const rot = h('button', { type: 'button', class: 'secondary', text: 'Rotate' });
      const rev = h('button', { type: 'button', class: 'danger', text: 'Revoke' });
      const body = () => (grace.value.trim() ? { grace: grace.value.trim() } : undefined);
      rot.addEventListener('click', async () => {
        if (!(await confirmDialog(`Rotate key ${k.key_id}? A new key is issued; this one stays accepted for the grace (${grace.value.trim() || 'none'}).`, 'Rotate'))) return;
        busy(rot, async () => {
          const { data } = await api('POST', `/keys/${encodeURIComponent(k.key_id)}/rotate`, body());
          await reload();
          document.getElementById('secret-slot').replaceChildren(shownOnce('API key', data.key));
          notice(`Key ${k.key_id} rotated: new key ${data.key_id}.`);
        });
      });
      rev.addEventListener('click', async () => {
        if (!(await confirmDialog(`Revoke key ${k.key_id}${grace.value.trim() ? ' after ' + grace.value.trim() : ' now'}?`, 'Revoke'))) return;
        busy(rev, async () => {
          await api('POST', `/keys/${encodeURIComponent(k.key_id)}/revoke`, body());
          await reload();
          notice(`Key ${k.key_id} revoked.`);
        });
      });
      actions.append(h('div', { class: 'row' }, ...field('Grace', grace), rot, rev));
    }
    return h('tr', { 'data-key': k.key_id },
      h('td', {}, h('code', { text: k.key_id })), h('td', { text: k.label || '—' }), h('td', { text: when(k.created_at) }),
      h('td', { text: when(k.expires_at) }), h('td', { text: when(k.last_used_at) }),
      h('td', { text: k.revoked_at ? `revoked ${when(k.revoked_at)}` + (k.grace_until ? `, accepted until ${when(k.grace_until)}` : '') : 'active' }),
      actions);
  });
  const keysSec = h('section', { 'aria-labelledby': 'h-keys' }, h('h2', { id: 'h-keys', text: 'API keys' }), secretSlot,
    h('div', { class: 'tablewrap' }, h('table', { id: 'keys-table' },
      h('caption', { text: `${keyRows.length} keys` }),
      h('thead', {}, h('tr', {}, ['Key id', 'Label', 'Created', 'Expires', 'Last used', 'Status', 'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, keyRows))));
  if (canWrite()) {
    const label = h('input', { name: 'label', autocomplete: 'off' });
    const expires = h('input', { name: 'expires_in', placeholder: '90d', autocomplete: 'off' });
    const issue = h('button', { type: 'submit', text: 'Issue key' });
    const form = h('form', { class: 'grid', 'aria-label': 'Issue an API key' }, ...field('Label', label), ...field('Expires in (e.g. 30d, empty: never)', expires), h('div', { class: 'full' }, issue));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(issue, async () => {
        const body = {};
        if (label.value.trim()) body.label = label.value.trim();
        if (expires.value.trim()) body.expires_in = expires.value.trim();
        const { data } = await api('POST', `/sites/${sid}/keys`, Object.keys(body).length ? body : undefined);
        await reload();
        document.getElementById('secret-slot').replaceChildren(shownOnce('API key', data.key));
        notice(`Key ${data.key_id} issued for ${id}.`);
      });
    });
    keysSec.append(h('h2', { text: 'Issue a key' }), form);
  }
  sections.push(keysSec);

  // policy
  // Each editor starts from what the site has, in the shape its PUT takes.
  const auth = s.auth ? { ...s.auth } : { methods: ['api_key'] };
  if (auth.jwt === null) delete auth.jwt;
  const policy = [
    ['auth', 'Client authentication policy', auth, 'auth'],
    ['routes', 'Routes forwarded besides the REST API', s.routes, 'routes'],
    ['cors', 'CORS origins', s.cors, 'cors'],
    ['health-settings', 'Health requirements', s.health, 'health'],
  ];
  const polSec = h('section', { 'aria-labelledby': 'h-policy' }, h('h2', { id: 'h-policy', text: 'Policy' }));
  for (const [path, title, value] of policy) {
    const ta = h('textarea', { name: path, spellcheck: 'false' });
    ta.value = JSON.stringify(value === undefined ? null : value, null, 2);
    polSec.append(h('h3', { text: title }));
    if (!canWrite()) { polSec.append(h('pre', { text: ta.value })); continue; }
    const b = h('button', { type: 'submit', text: 'Save ' + path });
    const f = h('form', { class: 'grid', 'aria-label': title }, h('div', { class: 'full' }, ...field(`${title} (JSON, PUT /sites/${id}/${path})`, ta)), h('div', { class: 'full' }, b));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(b, async () => {
        let body;
        try { body = JSON.parse(ta.value); } catch (e) { throw new Error(`${path}: not JSON (${e.message})`); }
        await api('PUT', `/sites/${sid}/${path}`, body);
        await reload();
        notice(`${title} of ${id} saved.`);
      });
    });
    polSec.append(f);
  }
  sections.push(polSec);
  page(`Site ${s.name && s.name !== s.id ? s.name + ' (' + s.id + ')' : s.id}`, ...sections);
}

async function audit(params) {
  const site = params.get('site') || '';
  const since = params.get('since') || '';
  const cursor = params.get('cursor') || '';
  const list = await get('/audit' + q({ site, since, cursor, limit: PAGE }));
  const siteIn = h('input', { name: 'site', value: site, autocomplete: 'off' });
  const sinceIn = h('input', { name: 'since', type: 'datetime-local' });
  if (since) sinceIn.value = new Date(Number(since) * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const f = h('form', { class: 'row', 'aria-label': 'Filter the audit log' }, ...field('Site', siteIn), ...field('Since', sinceIn), h('button', { type: 'submit', text: 'Apply' }));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = sinceIn.value ? Math.floor(new Date(sinceIn.value).getTime() / 1000) : '';
    location.hash = '#/audit' + q({ site: siteIn.value.trim(), since: t });
  });
  const table = h('div', { class: 'tablewrap' }, h('table', {},
    h('caption', { text: `Audit entries, newest first (${list.entries.length} on this page)` }),
    h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Target', 'Detail', 'Request id'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, list.entries.map((e) => h('tr', {},
      h('td', { text: when(e.at) }), h('td', { text: e.actor }), h('td', {}, h('code', { text: e.action })),
      h('td', { text: e.target }), h('td', { text: e.detail || '' }), h('td', {}, h('code', { text: e.request_id || '' })))))));
  const pager = h('div', { class: 'row' },
    cursor ? h('a', { href: '#/audit' + q({ site, since }), text: 'Newest' }) : null,
    list.next_cursor ? h('a', { href: '#/audit' + q({ site, since, cursor: list.next_cursor }), text: 'Older' }) : null);
  page('Audit log', f, table, pager);
}

async function tokens() {
  const list = await get('/tokens');
  const slot = h('div', { id: 'secret-slot' });
  const rows = list.tokens.map((t) => {
    const act = h('td', {});
    if (canWrite() && !t.revoked_at) {
      const b = h('button', { type: 'button', class: 'danger', text: 'Revoke' });
      b.addEventListener('click', async () => {
        const mine = t.id === session.id ? ' This is the token you are signed in with.' : '';
        if (!(await confirmDialog(`Revoke admin token ${t.label || t.id}?${mine}`, 'Revoke'))) return;
        busy(b, async () => {
          await api('POST', `/tokens/${encodeURIComponent(t.id)}/revoke`);
          if (t.id === session.id) { signOut(); notice('Token revoked; signed out.'); return; }
          await tokens();
          notice(`Admin token ${t.label || t.id} revoked.`);
        });
      });
      act.append(b);
    }
    return h('tr', {}, h('td', {}, h('code', { text: t.id })), h('td', { text: t.label || '—' }), h('td', { text: t.scope }),
      h('td', { text: when(t.created_at) }), h('td', { text: when(t.last_used_at) }), h('td', { text: t.revoked_at ? 'revoked ' + when(t.revoked_at) : 'active' }), act);
  });
  const parts = [slot, h('div', { class: 'tablewrap' }, h('table', {},
    h('caption', { text: `${rows.length} admin tokens` }),
    h('thead', {}, h('tr', {}, ['Id', 'Label', 'Scope', 'Created', 'Last used', 'Status', 'Actions'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, rows)))];
  if (canWrite()) {
    const label = h('input', { name: 'label', pattern: '[A-Za-z0-9._@:\\-]{1,64}', autocomplete: 'off' });
    const scope = h('select', { name: 'scope' }, h('option', { value: 'read', text: 'read' }), h('option', { value: 'write', text: 'write' }));
    const b = h('button', { type: 'submit', text: 'Create token' });
    const f = h('form', { class: 'grid', 'aria-label': 'Create an admin token' }, ...field('Label', label), ...field('Scope', scope), h('div', { class: 'full' }, b));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      busy(b, async () => {
        const body = { scope: scope.value };
        if (label.value.trim()) body.label = label.value.trim();
        const { data } = await api('POST', '/tokens', body);
        await tokens();
        document.getElementById('secret-slot').replaceChildren(shownOnce('admin token', data.token));
        notice(`Admin token ${data.label || data.id} (${data.scope}) created.`);
      });
    });
    parts.push(h('section', {}, h('h2', { text: 'Create a token' }), f));
  }
  page('Admin tokens', ...parts);
}

async function keyring() {
  const k = await get('/keyring');
  const row = (x) => h('tr', {}, h('td', {}, h('code', { text: x.id })), h('td', { text: x.primary ? 'primary' : '' }), h('td', { text: String(x.sealed_records) }));
  const head = h('thead', {}, h('tr', {}, ['Key', 'Role', 'Records it seals'].map((t) => h('th', { scope: 'col', text: t }))));
  page('Keyring',
    h('p', {}, 'Primary key (seals new records): ', h('code', { text: k.primary })),
    h('div', { class: 'tablewrap' }, h('table', {}, h('caption', { text: 'Keys (a key sealing 0 records can be retired)' }), head, h('tbody', {}, k.keys.map(row)))),
    k.missing && k.missing.length
      ? h('div', { class: 'tablewrap' }, h('table', {}, h('caption', { text: 'Records sealed by keys this keyring lacks' }), head.cloneNode(true), h('tbody', {}, k.missing.map(row))))
      : h('p', { text: 'No record is sealed by a missing key.' }));
}

// ---- routing ----

async function route() {
  if (!session.token) { renderSignIn(); return; }
  const hash = location.hash || '#/overview';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('#nav a')) {
    const cur = a.getAttribute('href').slice(2) === parts[0] || (parts[0] === 'site' && a.getAttribute('href') === '#/sites');
    if (cur) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  main().setAttribute('aria-busy', 'true');
  try {
    switch (parts[0]) {
      case 'sites': await sites(params); break;
      case 'site': await site(decodeURIComponent(parts[1] || '')); break;
      case 'audit': await audit(params); break;
      case 'tokens': await tokens(); break;
      case 'keyring': await keyring(); break;
      default: await overview();
    }
  } catch (e) {
    showError(e);
    if (session.token && !main().firstChild) page('Error');
  } finally {
    main().removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', () => {
  route().then(() => main().focus({ preventScroll: true }));
});

document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('signout').addEventListener('click', () => { signOut(); notice('Signed out: the token is forgotten.'); });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    try { await signIn(saved); } catch (e) { showError(e); renderSignIn(); return; }
  }
  document.getElementById('nav').addEventListener('click', clearMessages);
  route();
});
