// The operator page: login, device map, district KPI tiles, hourly AQI per station and the
// live alert feed with acknowledge and resolve, and a banner with what /api/v1/health reports
// as not working (polled every 5 s). Data: GET /api/v1/devices once, then the
// WebSocket (protocol v2); actions: POST /api/v1/alerts/{id}/acknowledge|resolve.

import { applyStatic, cityTime, DISTRICTS, districtName, getLang, number, setLang, t } from './i18n.js';
import { LiveFeed } from './live.js';
import { DeviceMap, escapeHtml, STATUS_COLOURS } from './map.js';

const TOKEN_KEY = 'ioc.token';
const CHANNELS = ['kpi.traffic', 'kpi.air', 'kpi.health', 'kpi.hydrology', 'alerts'];
const SEVERITY_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
const STATE_RANK = { active: 0, acknowledged: 1, resolved: 2 };
const MAX_ALERT_ROWS = 150;
const MAX_RESOLVED_KEPT = 40;
const LOS_COLOURS = { A: '#16a34a', B: '#65a30d', C: '#ca8a04', D: '#ea580c', E: '#dc2626', F: '#7f1d1d' };

const $ = (sel) => document.querySelector(sel);

const state = {
  config: { auth: true, tile_url: '', tile_attribution: '' },
  devices: new Map(), // id -> DeviceView (shared with the map's markers)
  traffic: new Map(), // district -> district-scope TrafficKpi
  health: new Map(), // district -> district-scope HealthKpi
  air: new Map(), // station id -> hourly AqiKpi
  hydro: new Map(), // gauge id -> HydrologyKpi
  alerts: new Map(), // alert id -> { alert, transition, at_ms }
  messages: 0,
  newestMs: null,
  conn: 'connecting',
  snapshotSeen: false,
};
let deviceMap = null;
let feed = null;
let renderTimer = null;

class Unauthorized extends Error {}

// ---------------------------------------------------------------- REST

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.config.auth && token()) headers.Authorization = `Bearer ${token()}`;
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) throw new Unauthorized();
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(body?.error?.message || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---------------------------------------------------------------- login

function showLogin(errorKey) {
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#logout').hidden = true;
  $('#status-line').hidden = true;
  const error = $('#login-error');
  error.hidden = !errorKey;
  error.dataset.i18n = errorKey || '';
  error.textContent = errorKey ? t(errorKey) : '';
  $('#token').value = '';
  $('#token').focus();
}

function showDashboard() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#status-line').hidden = false;
  $('#logout').hidden = !state.config.auth;
}

/** Shows what the server reports as not working, such as ClickHouse down and rows spooled. */
async function refreshSystemHealth() {
  const banner = $('#system-banner');
  if ($('#app').hidden) {
    banner.hidden = true;
    return;
  }
  try {
    const report = await api('/api/v1/health');
    const down = Object.entries(report.components || {}).filter(([, c]) => !c.ok);
    banner.hidden = down.length === 0;
    banner.innerHTML = down.length
      ? `<b>${escapeHtml(t('system.degraded'))}</b>` +
        down.map(([name, c]) => `${escapeHtml(name)}: ${escapeHtml(c.detail)}`).join(' · ')
      : '';
  } catch {
    // The connection indicator already says when the server cannot be reached.
  }
}

function logout(errorKey) {
  feed?.stop();
  feed = null;
  sessionStorage.removeItem(TOKEN_KEY);
  resetData();
  showLogin(errorKey);
}

function resetData() {
  for (const m of [state.traffic, state.health, state.air, state.hydro, state.alerts]) m.clear();
  state.messages = 0;
  state.newestMs = null;
  state.snapshotSeen = false;
  alertRows.clear();
  $('#alert-list').replaceChildren();
}

// ---------------------------------------------------------------- start

async function boot() {
  setLang(getLang());
  buildDistrictTiles();
  bindUi();
  setInterval(() => ($('#clock').textContent = cityTime(Date.now())), 1000);
  setInterval(refreshSystemHealth, 5000);
  try {
    const res = await fetch('/ui/config.json');
    state.config = await res.json();
  } catch {
    showLogin('login.failed');
    return;
  }
  if (state.config.auth && !token()) showLogin();
  else start();
}

async function start() {
  showDashboard();
  let list;
  try {
    list = await api('/api/v1/devices');
  } catch (e) {
    if (e instanceof Unauthorized) return logout('login.refused');
    setConn('offline');
    toast(t('login.failed'));
    setTimeout(() => {
      if (!state.config.auth || token()) start();
    }, 5000);
    return;
  }
  state.devices = new Map(list.devices.map((d) => [d.id, d]));
  if (!deviceMap) deviceMap = new DeviceMap($('#map'), state.config);
  deviceMap.invalidate();
  deviceMap.setDevices(list.devices);
  feed?.stop();
  feed = new LiveFeed({
    url: wsUrl,
    channels: CHANNELS,
    onMessage,
    onState: setConn,
    onRefused: checkToken,
  });
  feed.start();
  render();
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const query = state.config.auth ? `?token=${encodeURIComponent(token())}` : '';
  return `${scheme}://${location.host}/ws${query}`;
}

/** The socket closed before `hello`: a refused token looks the same, so ask the REST API. */
async function checkToken() {
  if (!state.config.auth) return;
  try {
    await api('/api/v1/devices/unknown');
  } catch (e) {
    if (e instanceof Unauthorized) logout('login.refused');
  }
}

function bindUi() {
  $('#login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('#token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    start();
  });
  $('#logout').addEventListener('click', () => logout());
  $('#lang').addEventListener('click', () => {
    setLang(getLang() === 'vi' ? 'en' : 'vi');
    $('#lang').textContent = getLang() === 'vi' ? 'EN' : 'VI';
    const error = $('#login-error');
    if (error.dataset.i18n) error.textContent = t(error.dataset.i18n);
    for (const li of alertRows.values()) li.dataset.sig = ''; // re-render in the new language
    render();
  });
  $('#lang').textContent = getLang() === 'vi' ? 'EN' : 'VI';
  $('#alert-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    const row = button?.closest('[data-alert-id]');
    if (row) act(row.dataset.alertId, button.dataset.action, button);
  });
}

// ---------------------------------------------------------------- live data

function onMessage(msg) {
  state.messages += 1;
  switch (msg.type) {
    case 'snapshot':
      for (const m of [state.traffic, state.health, state.air, state.hydro]) m.clear();
      for (const k of msg.kpis) applyKpi(k);
      // Open alerts are replaced; the resolved ones stay as recent history.
      for (const [id, a] of state.alerts) if (a.alert.state !== 'resolved') state.alerts.delete(id);
      for (const ev of msg.alerts) applyAlert(ev);
      state.snapshotSeen = true;
      break;
    case 'kpi':
      applyKpi(msg.kpi);
      break;
    case 'alert':
      applyAlert(msg.event);
      break;
    default:
      break; // heartbeat: counted, nothing to show
  }
  scheduleRender();
}

function newer(map, key, row) {
  const old = map.get(key);
  if (old && old.window_start_ms > row.window_start_ms) return;
  if (old && old.window_start_ms === row.window_start_ms && (old.coverage ?? 0) > (row.coverage ?? 0)) return;
  map.set(key, row);
}

function applyKpi(k) {
  const end = k.window_start_ms + k.window_size_ms;
  if (k.period !== 'day' && !(state.newestMs >= end)) state.newestMs = end;
  switch (k.family) {
    case 'traffic':
      if (k.scope === 'district') newer(state.traffic, k.district, k);
      break;
    case 'health':
      if (k.scope === 'district') newer(state.health, k.district, k);
      else if (k.scope === 'device') deviceHealth(k, end);
      break;
    case 'air':
      if (k.period === 'hour') newer(state.air, k.station_id, k);
      break;
    case 'hydrology':
      newer(state.hydro, k.gauge_id, k);
      break;
    default:
      break;
  }
}

/** A device-scope health row: the newest window end sets the device's status. */
function deviceHealth(k, end) {
  const d = state.devices.get(k.entity_id);
  if (!d || !k.status || (d.status_at_ms && end < d.status_at_ms)) return;
  d.status_at_ms = end;
  if (k.last_seen_ms) d.last_seen_ms = k.last_seen_ms;
  if (d.status !== k.status) {
    d.status = k.status;
    deviceMap?.refresh(d.id);
  }
}

function applyAlert(ev) {
  const a = ev.alert;
  const old = state.alerts.get(a.id);
  if (old && old.alert.updated_ms > a.updated_ms) return;
  state.alerts.set(a.id, { alert: a, transition: ev.transition, at_ms: ev.at_ms });
  if (a.state === 'resolved') {
    const resolved = [...state.alerts.values()].filter((x) => x.alert.state === 'resolved');
    resolved.sort((x, y) => x.alert.updated_ms - y.alert.updated_ms);
    for (const x of resolved.slice(0, Math.max(0, resolved.length - MAX_RESOLVED_KEPT))) {
      state.alerts.delete(x.alert.id);
    }
  }
}

// Alerts the operator acted on stay in view this long, even when more open alerts than the
// list holds come first (an acknowledged alert must not vanish from under the click).
const ACTED_ON_VISIBLE_MS = 120_000;
const actedOn = new Map(); // alert id -> when the operator acted on it (ms)

async function act(id, action, button) {
  const row = button.closest('[data-alert-id]');
  actedOn.set(id, Date.now());
  for (const b of row.querySelectorAll('button')) b.disabled = true;
  try {
    const body = state.config.auth ? {} : { actor: 'dashboard' };
    const path = `/api/v1/alerts/${encodeURIComponent(id)}/${action}`;
    const event = await api(path, { method: 'POST', body: JSON.stringify(body) });
    applyAlert(event);
  } catch (e) {
    if (e instanceof Unauthorized) return logout('login.refused');
    toast(e.status === 403 ? t('alerts.forbidden') : `${t('alerts.failed')}: ${e.message}`);
    row.dataset.sig = ''; // re-enable the buttons at the next render
  }
  render();
}

// ---------------------------------------------------------------- rendering

function scheduleRender() {
  if (renderTimer) return;
  renderTimer = setTimeout(render, 300);
}

function render() {
  clearTimeout(renderTimer);
  renderTimer = null;
  renderStatus();
  renderDistricts();
  renderAqi();
  renderAlerts();
}

function setConn(next) {
  state.conn = next;
  const el = $('#conn');
  el.dataset.state = next;
  el.querySelector('.label').textContent = t(`conn.${next}`);
}

function renderStatus() {
  setConn(state.conn);
  $('#last-update').textContent = cityTime(state.newestMs);
  $('#msg-count').textContent = number(state.messages);
  const counts = { online: 0, offline: 0, never_seen: 0 };
  for (const d of state.devices.values()) counts[d.status] = (counts[d.status] || 0) + 1;
  $('#legend').innerHTML = Object.entries(counts)
    .map(
      ([s, n]) =>
        `<span class="legend-item" data-status="${escapeHtml(s)}"><i style="background:${STATUS_COLOURS[s] ?? '#64748b'}"></i>` +
        `${escapeHtml(t(`device.${s}`))} <b data-testid="legend-${s}">${number(n)}</b></span>`,
    )
    .join('');
}

function buildDistrictTiles() {
  $('#districts').innerHTML = DISTRICTS.map(
    ([slug, name]) => `
    <article class="district" data-testid="district-tile" data-district="${slug}">
      <h3>${escapeHtml(name)}</h3>
      <div class="traffic">
        <span class="los" data-testid="kpi-los">–</span>
        <div><b data-testid="kpi-traffic-volume">—</b> <small data-i18n="kpi.veh_h"></small>
        <div class="sub"><span data-testid="kpi-speed">—</span> <span data-i18n="kpi.speed"></span></div></div>
      </div>
      <dl>
        <div><dt data-i18n="kpi.aqi"></dt><dd><span class="aqi-chip" data-testid="kpi-aqi">—</span></dd></div>
        <div><dt data-i18n="kpi.devices"></dt><dd data-testid="kpi-devices">—</dd></div>
        <div><dt data-i18n="kpi.alerts"></dt><dd data-testid="kpi-alerts">0</dd></div>
        <div><dt data-i18n="kpi.rain"></dt><dd data-testid="kpi-rain">—</dd></div>
      </dl>
    </article>`,
  ).join('');
  applyStatic($('#districts'));
}

function renderDistricts() {
  const openAlerts = new Map();
  for (const { alert } of state.alerts.values()) {
    if (alert.state !== 'resolved' && alert.district) {
      openAlerts.set(alert.district, (openAlerts.get(alert.district) || 0) + 1);
    }
  }
  for (const [slug] of DISTRICTS) {
    const tile = document.querySelector(`.district[data-district="${slug}"]`);
    const field = (id) => tile.querySelector(`[data-testid="${id}"]`);
    const tr = state.traffic.get(slug);
    const los = field('kpi-los');
    los.textContent = tr?.level ?? '–';
    los.style.background = LOS_COLOURS[tr?.level] ?? '';
    los.title = tr ? `${t('kpi.window')} ${cityTime(tr.window_start_ms + tr.window_size_ms)}` : '';
    field('kpi-traffic-volume').textContent = number(tr?.volume_veh_h);
    field('kpi-speed').textContent = number(tr?.mean_speed_kmh, 1);

    const stations = [...state.air.values()].filter((a) => a.district === slug && a.aqi != null);
    const worst = stations.sort((x, y) => y.aqi - x.aqi)[0];
    paintAqi(field('kpi-aqi'), worst);

    const h = state.health.get(slug);
    field('kpi-devices').textContent = h ? `${number(h.online)}/${number(h.devices)}` : '—';
    field('kpi-devices').classList.toggle('warn', !!h && h.online < 0.95 * h.devices);
    const n = openAlerts.get(slug) || 0;
    field('kpi-alerts').textContent = number(n);
    field('kpi-alerts').classList.toggle('warn', n > 0);

    const rain = [...state.hydro.values()]
      .filter((g) => g.district === slug && g.rain_1h_mm != null)
      .map((g) => g.rain_1h_mm);
    const rainEl = field('kpi-rain');
    rainEl.textContent = rain.length ? number(Math.max(...rain), 1) : '—';
    if (rain.length) rainEl.insertAdjacentHTML('beforeend', ' <small>mm</small>');
  }
}

/** Shows an AQI in its band colour (the row's own `colour`). */
function paintAqi(el, row) {
  el.textContent = row ? String(row.aqi) : '—';
  const colour = /^#[0-9a-f]{6}$/i.test(row?.colour ?? '') ? row.colour : '';
  el.style.background = colour;
  el.style.color = colour ? textOn(colour) : '';
  el.title = row?.band ? t(`aqi.${row.band}`) : '';
}

function textOn(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? '#111' : '#fff';
}

function renderAqi() {
  const rows = [...state.air.values()].sort((x, y) => (y.aqi ?? -1) - (x.aqi ?? -1));
  const html = rows.length
    ? rows
        .map((a) => {
          const d = state.devices.get(a.station_id);
          const colour = /^#[0-9a-f]{6}$/i.test(a.colour ?? '') ? a.colour : '#475569';
          const pm = a.pm25 != null ? ` · PM2.5 ${number(a.pm25, 1)}` : '';
          // The decision's words in Vietnamese (the row carries them), a translation otherwise.
          const advice = a.band ? (getLang() === 'vi' ? (a.advice?.general ?? '') : t(`aqi.advice.${a.band}`)) : '';
          const sensitive = getLang() === 'vi' && a.advice ? `Người nhạy cảm: ${a.advice.sensitive}` : '';
          return `<li data-testid="aqi-row" data-station="${escapeHtml(a.station_id)}" data-band="${escapeHtml(a.band ?? '')}">
            <span class="aqi-chip big" style="background:${colour};color:${textOn(colour)}">${escapeHtml(a.aqi ?? '—')}</span>
            <div class="aqi-text"><div class="name">${escapeHtml(d?.name ?? a.station_id)}</div>
            <div class="meta">${escapeHtml(districtName(a.district))} · ${escapeHtml(a.band ? t(`aqi.${a.band}`) : '—')}${escapeHtml(pm)}
            · ${escapeHtml(cityTime(a.window_start_ms + a.window_size_ms).slice(0, 5))}</div>
            ${advice ? `<div class="advice" data-testid="aqi-advice" title="${escapeHtml(sensitive)}">${escapeHtml(advice)}</div>` : ''}</div></li>`;
        })
        .join('')
    : `<li class="empty">${escapeHtml(t('aqi.empty'))}</li>`;
  const list = $('#aqi-list');
  if (list.dataset.html !== html) {
    list.innerHTML = html;
    list.dataset.html = html;
  }
}

const alertRows = new Map(); // alert id -> <li>

function renderAlerts() {
  const all = [...state.alerts.values()].map((x) => x.alert);
  all.sort(
    (x, y) =>
      STATE_RANK[x.state] - STATE_RANK[y.state] ||
      SEVERITY_RANK[x.severity] - SEVERITY_RANK[y.severity] ||
      y.updated_ms - x.updated_ms,
  );
  const now = Date.now();
  for (const [id, at] of actedOn) if (now - at > ACTED_ON_VISIBLE_MS) actedOn.delete(id);
  const shown = all.filter((a, i) => i < MAX_ALERT_ROWS || actedOn.has(a.id));
  const open = all.filter((a) => a.state !== 'resolved').length;
  $('#alert-count').textContent = `${number(open)} ${t('alerts.open')}`;
  $('#alert-count').dataset.open = String(open);
  const list = $('#alert-list');
  const keep = new Set(shown.map((a) => a.id));
  for (const [id, li] of alertRows) {
    if (!keep.has(id)) {
      li.remove();
      alertRows.delete(id);
    }
  }
  let previous = null;
  for (const a of shown) {
    let li = alertRows.get(a.id);
    if (!li) {
      li = document.createElement('li');
      li.setAttribute('data-testid', 'alert-row');
      li.dataset.alertId = a.id;
      if (state.snapshotSeen && list.childElementCount) {
        li.dataset.fresh = '1';
        li.addEventListener('animationend', () => delete li.dataset.fresh, { once: true });
      }
      alertRows.set(a.id, li);
    }
    const sig = `${a.updated_ms}|${a.state}|${a.severity}|${a.breaches}|${getLang()}`;
    if (li.dataset.sig !== sig) {
      li.dataset.sig = sig;
      li.dataset.state = a.state;
      li.dataset.severity = a.severity;
      li.className = `alert sev-${a.severity} state-${a.state}`;
      li.innerHTML = alertHtml(a);
    }
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== li) list.insertBefore(li, expected);
    previous = li;
  }
  $('#alerts-empty').hidden = shown.length > 0;
}

function alertHtml(a) {
  const entity = state.devices.get(a.entity_id)?.name;
  const who = a.acknowledged ? ` · ${a.acknowledged[0]}` : '';
  return `
    <div class="a-top">
      <span class="sev" data-testid="alert-severity">${escapeHtml(t(`sev.${a.severity}`))}</span>
      <span class="rule">${escapeHtml(a.rule_id)}</span>
      <span class="state" data-testid="alert-state">${escapeHtml(t(`state.${a.state}`) + who)}</span>
      <time>${escapeHtml(cityTime(a.opened_ms))}</time>
    </div>
    <div class="a-msg">${escapeHtml(a.message)}</div>
    <div class="a-bottom">
      <span class="a-meta">${escapeHtml(entity ? `${entity} (${a.entity_id})` : a.entity_id)} · ${escapeHtml(districtName(a.district))}${a.breaches > 1 ? ` · ×${number(a.breaches)}` : ''}</span>
      <span class="a-actions">
        <button type="button" data-action="acknowledge" data-testid="alert-ack" ${a.state === 'active' ? '' : 'disabled'}>${escapeHtml(t('alerts.ack'))}</button>
        <button type="button" data-action="resolve" data-testid="alert-resolve" ${a.state === 'resolved' ? 'disabled' : ''}>${escapeHtml(t('alerts.resolve'))}</button>
      </span>
    </div>`;
}

let toastTimer = null;
function toast(text) {
  const el = $('#toast');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 6000);
}

boot();
