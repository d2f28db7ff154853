// The operator page: login, device map, district KPI tiles, hourly AQI per station and the
// live alert feed with acknowledge and resolve, and a banner with what /api/v1/health reports
// as not working (polled every 5 s). Data: GET /api/v1/devices and /api/v1/rules once, then
// the WebSocket (protocol v2); actions: POST /api/v1/alerts/{id}/acknowledge|resolve. History
// charts (charts.js) open from a device's popup on the map, a district tile or an AQI row.
// Rejected messages (dead letters): GET /api/v1/dead-letters, then the `dead_letters` channel.

import { applyStatic, cityIso, cityTime, DISTRICTS, districtName, format, getLang, has, number, setLang, t } from './i18n.js';
import { bandColour, closeChart, initCharts, LOS_COLOURS, LOS_LETTERS, openChart } from './charts.js';
import { LiveFeed } from './live.js';
import { DeviceMap, escapeHtml, STATUS_COLOURS } from './map.js';

const TOKEN_KEY = 'ioc.token';
const CHANNELS = ['kpi.traffic', 'kpi.air', 'kpi.health', 'kpi.hydrology', 'alerts', 'dead_letters'];
const SEVERITY_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
const STATE_RANK = { active: 0, acknowledged: 1, resolved: 2 };
const MAX_ALERT_ROWS = 150;
const MAX_RESOLVED_KEPT = 40;

const $ = (sel) => document.querySelector(sel);

const state = {
  config: { auth: true, tile_url: '', tile_attribution: '' },
  devices: new Map(), // id -> DeviceView (shared with the map's markers)
  traffic: new Map(), // district -> district-scope TrafficKpi
  health: new Map(), // district -> district-scope HealthKpi
  air: new Map(), // station id -> hourly AqiKpi
  hydro: new Map(), // gauge id -> HydrologyKpi
  alerts: new Map(), // alert id -> { alert, transition, at_ms }
  rules: new Map(), // rule id -> rule (GET /api/v1/rules), for the thresholds in alert texts
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
  closeChart();
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
  resetDeadLetters();
}

// ---------------------------------------------------------------- start

async function boot() {
  setLang(getLang());
  buildDistrictTiles();
  bindUi();
  setInterval(() => {
    const now = Date.now();
    $('#clock').textContent = cityTime(now);
    $('#clock').dateTime = cityIso(now);
  }, 1000);
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
  loadRules();
  loadDeadLetters();
  if (!deviceMap) deviceMap = new DeviceMap($('#map'), state.config, chartActions);
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

/** The alert rules, for their thresholds in the alert texts; without them the server's text shows. */
async function loadRules() {
  try {
    const { rules } = await api('/api/v1/rules');
    state.rules = new Map(rules.map((r) => [r.id, r]));
    for (const li of alertRows.values()) li.dataset.sig = '';
    render();
  } catch (e) {
    if (e instanceof Unauthorized) logout('login.refused');
    // Otherwise the alerts keep the server's own text.
  }
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
    dl.dirty = true;
    for (const li of dl.rows.values()) li.dataset.lang = '';
    render();
  });
  $('#lang').textContent = getLang() === 'vi' ? 'EN' : 'VI';
  $('#dl-older').addEventListener('click', loadOlderDeadLetters);
  $('#alert-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    const row = button?.closest('[data-alert-id]');
    if (row) act(row.dataset.alertId, button.dataset.action, button);
  });
  initCharts({
    api,
    isUnauthorized: (e) => e instanceof Unauthorized,
    onUnauthorized: () => logout('login.refused'),
  });
  // District tiles and AQI rows: buttons with `data-chart` (the map's popups bind their own).
  $('#app').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-chart]');
    if (!button || button.disabled || !button.dataset.entity) return;
    openChart(button.dataset.chart, chartTarget(button.dataset.entity, button.dataset.scope));
  });
}

/** What a chart is about: a device, or a district for district-scope rows. */
function chartTarget(id, scope) {
  const d = state.devices.get(id);
  if (scope === 'district') return { id, scope, name: districtName(id), district: id };
  return { id, scope, name: d?.name ?? id, district: d?.district };
}

/** The charts a device's popup offers, from its kind, registry and live KPI rows. */
function chartActions(d) {
  const kinds = [];
  if (d.kind === 'traffic_signal') kinds.push(['traffic', 'device']);
  if (state.air.has(d.id)) kinds.push(['air']);
  const h = state.hydro.get(d.id);
  if (Array.isArray(d.flood_alarm_m) || h?.water_level_m != null) kinds.push(['water']);
  if (h && (h.rain_mm != null || h.rain_1h_mm != null || h.rain_24h_mm != null)) kinds.push(['rain']);
  return kinds.map(([kind, scope]) => ({
    kind,
    label: t(`chart.${kind}.button`),
    open: () => openChart(kind, chartTarget(d.id, scope)),
  }));
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
      addDeadLetters(msg.dead_letters ?? []);
      state.snapshotSeen = true;
      break;
    case 'kpi':
      applyKpi(msg.kpi);
      break;
    case 'alert':
      applyAlert(msg.event);
      break;
    case 'dead_letter':
      addDeadLetters([msg.dead_letter]);
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
  renderDeadLetters();
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
      <button type="button" class="traffic" data-chart="traffic" data-scope="district" data-entity="${slug}"
        data-testid="tile-traffic-chart" data-i18n-title="chart.traffic.button">
        <span class="los" data-testid="kpi-los">–</span>
        <span class="traffic-text"><b data-testid="kpi-traffic-volume">—</b> <small data-i18n="kpi.veh_h"></small>
        <small class="partial" data-testid="kpi-partial" data-i18n="kpi.partial" hidden></small>
        <span class="sub"><span data-testid="kpi-speed">—</span> <span data-i18n="kpi.speed"></span></span></span>
      </button>
      <dl>
        <div><dt data-i18n="kpi.aqi"></dt><dd><button type="button" class="tile-open" data-chart="air"
          data-testid="tile-aqi-chart" data-i18n-title="chart.air.button" disabled><span class="aqi-chip" data-testid="kpi-aqi">—</span></button></dd></div>
        <div><dt data-i18n="kpi.devices"></dt><dd data-testid="kpi-devices">—</dd></div>
        <div><dt data-i18n="kpi.alerts"></dt><dd data-testid="kpi-alerts">0</dd></div>
        <div><dt data-i18n="kpi.rain"></dt><dd><button type="button" class="tile-open" data-chart="rain"
          data-testid="tile-rain-chart" data-i18n-title="chart.rain.button" disabled><span data-testid="kpi-rain">—</span></button></dd></div>
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
    // A window the data covers only part of (the first after a start): its volume is per the
    // time covered, and the tile says so.
    const partial = field('kpi-partial');
    partial.hidden = !(tr?.covered_ms != null && tr.covered_ms < tr.window_size_ms);
    partial.title = partial.hidden
      ? ''
      : format('kpi.partial.title', {
          covered: Math.round(tr.covered_ms / 1000),
          window: Math.round(tr.window_size_ms / 1000),
        });
    field('kpi-speed').textContent = number(tr?.mean_speed_kmh, 1);

    const stations = [...state.air.values()].filter((a) => a.district === slug && a.aqi != null);
    const worst = stations.sort((x, y) => y.aqi - x.aqi)[0];
    paintAqi(field('kpi-aqi'), worst);
    chartButton(field('tile-aqi-chart'), worst?.station_id);

    const h = state.health.get(slug);
    field('kpi-devices').textContent = h ? `${number(h.online)}/${number(h.devices)}` : '—';
    field('kpi-devices').classList.toggle('warn', !!h && h.online < 0.95 * h.devices);
    const n = openAlerts.get(slug) || 0;
    field('kpi-alerts').textContent = number(n);
    field('kpi-alerts').classList.toggle('warn', n > 0);

    // The wettest gauge's last hour; its button opens that gauge's rain chart.
    const wettest = [...state.hydro.values()]
      .filter((g) => g.district === slug && g.rain_1h_mm != null)
      .sort((x, y) => y.rain_1h_mm - x.rain_1h_mm)[0];
    const rainEl = field('kpi-rain');
    rainEl.textContent = wettest ? number(wettest.rain_1h_mm, 1) : '—';
    if (wettest) rainEl.insertAdjacentHTML('beforeend', ' <small>mm</small>');
    chartButton(field('tile-rain-chart'), wettest?.gauge_id);
  }
}

/** Points a tile's chart button at `entity` (disabled without one), named in its title. */
function chartButton(button, entity) {
  button.disabled = !entity;
  button.dataset.entity = entity ?? '';
  const name = entity ? (state.devices.get(entity)?.name ?? entity) : '';
  button.title = entity ? `${t(`chart.${button.dataset.chart}.button`)}: ${name}` : '';
}

/** Shows an AQI in its band colour (the row's own `colour`). */
function paintAqi(el, row) {
  el.textContent = row ? String(row.aqi) : '—';
  const colour = bandColour(row?.colour) ?? '';
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
          const colour = bandColour(a.colour) ?? '#475569';
          const pm = a.pm25 != null ? ` · PM2.5 ${number(a.pm25, 1)}` : '';
          // The decision's words in Vietnamese (the row carries them), a translation otherwise.
          const advice = a.band ? (getLang() === 'vi' ? (a.advice?.general ?? '') : t(`aqi.advice.${a.band}`)) : '';
          const sensitive = getLang() === 'vi' && a.advice ? `Người nhạy cảm: ${a.advice.sensitive}` : '';
          return `<li data-testid="aqi-row" data-station="${escapeHtml(a.station_id)}" data-band="${escapeHtml(a.band ?? '')}">
            <button type="button" class="aqi-open" data-chart="air" data-entity="${escapeHtml(a.station_id)}"
              data-testid="aqi-chart" title="${escapeHtml(t('chart.air.button'))}">
            <span class="aqi-chip big" style="background:${colour};color:${textOn(colour)}">${escapeHtml(a.aqi ?? '—')}</span>
            <span class="aqi-text"><span class="name">${escapeHtml(d?.name ?? a.station_id)}</span>
            <span class="meta">${escapeHtml(districtName(a.district))} · ${escapeHtml(a.band ? t(`aqi.${a.band}`) : '—')}${escapeHtml(pm)}
            · ${escapeHtml(cityTime(a.window_start_ms + a.window_size_ms).slice(0, 5))}</span>
            ${advice ? `<span class="advice" data-testid="aqi-advice" title="${escapeHtml(sensitive)}">${escapeHtml(advice)}</span>` : ''}</span></button></li>`;
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
    const sig = `${a.updated_ms}|${a.state}|${a.severity}|${a.breaches}|${getLang()}|${state.rules.size}`;
    if (li.dataset.sig !== sig) {
      li.dataset.sig = sig;
      li.dataset.updated = String(a.updated_ms);
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
  const message = alertMessage(a);
  const time = (ms, testid) =>
    `<time data-testid="${testid}" datetime="${escapeHtml(cityIso(ms))}">${escapeHtml(cityTime(ms))}</time>`;
  return `
    <div class="a-top">
      <span class="sev" data-testid="alert-severity">${escapeHtml(t(`sev.${a.severity}`))}</span>
      <span class="rule">${escapeHtml(a.rule_id)}</span>
      <span class="state" data-testid="alert-state">${escapeHtml(t(`state.${a.state}`) + who)}</span>
    </div>
    <div class="a-msg" data-testid="alert-message" data-source="${message.source}">${escapeHtml(message.text)}</div>
    <div class="a-times">
      <span title="${escapeHtml(t('time.data_title'))}">${escapeHtml(t('time.data'))} ${time(a.breach_event_ms, 'alert-data-time')}</span>
      <span title="${escapeHtml(t('time.raised_title'))}">${escapeHtml(t('time.raised'))} ${time(a.opened_ms, 'alert-raised-time')}</span>
    </div>
    <div class="a-bottom">
      <span class="a-meta">${escapeHtml(entity ? `${entity} (${a.entity_id})` : a.entity_id)} · ${escapeHtml(districtName(a.district))}${a.breaches > 1 ? ` · ×${number(a.breaches)}` : ''}</span>
      <span class="a-actions">
        <button type="button" data-action="acknowledge" data-testid="alert-ack" ${a.state === 'active' ? '' : 'disabled'}>${escapeHtml(t('alerts.ack'))}</button>
        <button type="button" data-action="resolve" data-testid="alert-resolve" ${a.state === 'resolved' ? 'disabled' : ''}>${escapeHtml(t('alerts.resolve'))}</button>
      </span>
    </div>`;
}

// Decimals of each rule's value in its text (the rest: one).
const VALUE_DIGITS = {
  aqi_bad: 0,
  wqi_poor: 0,
  water_rising: 2,
  'storm:rule': 0,
  'storm:department': 0,
  'storm:district': 0,
};

/**
 * An alert's text in the page's language, built from its fields and its rule's threshold;
 * the server's own text for rules the page does not know (or whose threshold it lacks).
 */
function alertMessage(a) {
  const storm = /^storm:(rule|department|district):/.exec(a.rule_id);
  const key = storm ? `rule.storm.${storm[1]}` : `rule.${a.rule_id}`;
  const server = { text: a.message, source: 'server' };
  if (!has(key)) return server;
  let threshold = '';
  if (t(key).includes('{threshold}')) {
    const c = state.rules.get(a.rule_id)?.condition;
    const limit = c?.above ?? c?.below;
    if (!Number.isFinite(limit)) return server;
    threshold = number(limit, Number.isInteger(limit) ? 0 : 1);
  }
  const digits = VALUE_DIGITS[storm ? `storm:${storm[1]}` : a.rule_id] ?? 1;
  let scope = '';
  if (storm) {
    scope = storm[1] === 'rule' ? a.entity_id : storm[1] === 'district' ? districtName(a.entity_id) : t(`dept.${a.entity_id}`);
  }
  const text = format(key, {
    value: number(a.value, digits),
    threshold,
    entity: a.entity_id,
    district: districtName(a.district),
    level: LOS_LETTERS[Math.round(a.value ?? 0) - 1] ?? '—',
    duration: duration(a.value),
    scope,
  });
  return { text, source: 'page' };
}

/** Seconds as `8 phút 10 giây` / `8 min 10 s`. */
function duration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  const total = Math.round(seconds);
  const min = Math.floor(total / 60);
  const s = total % 60;
  return min ? format('duration.min_s', { min: number(min), s: number(s) }) : format('duration.s', { s: number(s) });
}

// ---------------------------------------------------------------- dead letters

// Rejected messages, newest first: the newest page from GET /api/v1/dead-letters, then the
// snapshot's and each `dead_letter` the socket pushes; "Older" pages back with `before`.
// Payload text only ever goes in as textContent.
const MAX_DEAD_LETTERS = 200;
const DEAD_LETTER_PAGE = 50;
const dl = {
  items: [], // newest first, at most MAX_DEAD_LETTERS
  rows: new Map(), // key -> <li>
  openedMs: Date.now(), // letters received since then are counted in the badge
  since: 0,
  access: 'loading', // loading, ready, forbidden, failed
  source: null, // where the last REST answer came from: clickhouse or memory
  note: '',
  error: '',
  more: '', // status of the Older button: '', loading, none, full, failed
  loads: 0, // Older answers handled
  dirty: true,
};

/** What tells two letters apart (they have no id); a letter delivered twice has the same. */
function deadLetterKey(d) {
  return `${d.received_at_ms}|${d.transport}|${d.source}|${d.code}|${d.payload_bytes}|${d.first_bytes}`;
}

function resetDeadLetters() {
  dl.items = [];
  dl.rows.clear();
  dl.openedMs = Date.now();
  dl.since = 0;
  dl.access = 'loading';
  dl.source = null;
  dl.note = '';
  dl.error = '';
  dl.more = '';
  dl.dirty = true;
  $('#dl-list').replaceChildren();
  renderDeadLetters();
}

/** Merges `letters` (any order) into the list: duplicates dropped, newest first, capped. */
function addDeadLetters(letters) {
  if (!letters.length || dl.access === 'forbidden') return;
  const known = new Set(dl.items.map(deadLetterKey));
  let added = 0;
  for (const d of letters) {
    const key = deadLetterKey(d);
    if (known.has(key)) continue;
    const full = dl.items.length >= MAX_DEAD_LETTERS;
    if (full && d.received_at_ms <= dl.items.at(-1).received_at_ms) continue;
    known.add(key);
    let i = 0;
    while (i < dl.items.length && dl.items[i].received_at_ms > d.received_at_ms) i += 1;
    dl.items.splice(i, 0, d);
    if (d.received_at_ms >= dl.openedMs) dl.since += 1;
    added += 1;
  }
  if (dl.items.length > MAX_DEAD_LETTERS) dl.items.length = MAX_DEAD_LETTERS;
  if (added) dl.dirty = true;
}

/** The newest page over REST: whether this token may see dead letters, and their source. */
async function loadDeadLetters() {
  try {
    const answer = await api(`/api/v1/dead-letters?limit=${DEAD_LETTER_PAGE}`);
    dl.access = 'ready';
    dl.source = answer.source;
    dl.note = answer.note ?? '';
    addDeadLetters(answer.dead_letters);
  } catch (e) {
    if (e instanceof Unauthorized) return logout('login.refused');
    if (e.status === 403) {
      // A department token: letters belong to no department, so it sees none.
      dl.access = 'forbidden';
      dl.items = [];
    } else {
      dl.access = dl.items.length ? 'ready' : 'failed';
      dl.error = e.message;
    }
  }
  dl.dirty = true;
  renderDeadLetters();
}

async function loadOlderDeadLetters() {
  const oldest = dl.items.at(-1);
  const room = MAX_DEAD_LETTERS - dl.items.length;
  if (!oldest || room <= 0 || dl.more === 'loading') return;
  dl.more = 'loading';
  renderDeadLetters();
  try {
    // `before` is exclusive and letters have no id: ask from the oldest shown millisecond on,
    // with room for the letters of that millisecond already shown (dropped as duplicates).
    const same = dl.items.filter((d) => d.received_at_ms === oldest.received_at_ms).length;
    const limit = Math.min(1000, same + Math.min(DEAD_LETTER_PAGE, room));
    const answer = await api(`/api/v1/dead-letters?before=${oldest.received_at_ms + 1}&limit=${limit}`);
    dl.source = answer.source;
    dl.note = answer.note ?? '';
    const before = dl.items.length;
    addDeadLetters(answer.dead_letters);
    dl.more = answer.dead_letters.length === 0 || dl.items.length === before ? 'none' : '';
  } catch (e) {
    if (e instanceof Unauthorized) return logout('login.refused');
    dl.more = 'failed';
    dl.error = e.message;
  }
  dl.loads += 1;
  dl.dirty = true;
  renderDeadLetters();
}

function byteSize(n) {
  return n < 1024 ? `${number(n)} B` : `${number(n / 1024, 1)} KiB`;
}

/** One letter's row, every field as text. */
function deadLetterRow(d, li) {
  const el = (tag, cls, text, testid) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (testid) e.dataset.testid = testid;
    e.textContent = text;
    return e;
  };
  const top = el('div', 'dl-top', '');
  const time = el('time', 'dl-time', cityTime(d.received_at_ms), 'dl-time');
  time.dateTime = cityIso(d.received_at_ms);
  const code = el('span', 'dl-code', has(`dl.code.${d.code}`) ? t(`dl.code.${d.code}`) : d.code, 'dl-code');
  code.title = d.code;
  top.append(time, code, el('span', 'dl-transport', d.transport === 'kafka' ? 'Kafka' : 'MQTT', 'dl-transport'), el('span', 'dl-size', byteSize(d.payload_bytes), 'dl-size'));
  const source = el('div', 'dl-source', d.source, 'dl-source');
  source.title = d.source;
  const bytes = el('pre', 'dl-bytes', d.first_bytes, 'dl-bytes');
  bytes.setAttribute('aria-label', t('dl.bytes'));
  li.replaceChildren(top, source, el('div', 'dl-reason', d.reason, 'dl-reason'), bytes);
  if (d.truncated) {
    li.append(el('div', 'dl-truncated', `… ${format('dl.truncated', { size: byteSize(d.payload_bytes) })}`, 'dl-truncated'));
  }
}

function renderDeadLetters() {
  const panel = $('#dl-panel');
  const ready = dl.access === 'ready';
  panel.dataset.state = dl.access;
  panel.dataset.source = dl.source ?? '';
  panel.dataset.loads = String(dl.loads);
  const count = $('#dl-count');
  count.hidden = dl.access === 'forbidden';
  count.textContent = number(dl.since);
  count.dataset.count = String(dl.since);

  const note = $('#dl-note');
  const noteText =
    dl.access === 'forbidden'
      ? t('dl.forbidden')
      : dl.access === 'failed'
        ? `${t('dl.failed')}: ${dl.error}`
        : dl.source === 'memory'
          ? `${t('dl.memory')} (${dl.note})`
          : '';
  note.hidden = !noteText;
  note.textContent = noteText;
  note.title = noteText;
  note.dataset.kind = dl.access === 'ready' ? 'memory' : dl.access;

  if (dl.dirty) {
    dl.dirty = false;
    const list = $('#dl-list');
    const keep = new Map(dl.items.map((d) => [deadLetterKey(d), d]));
    for (const [key, li] of dl.rows) {
      if (!keep.has(key)) {
        li.remove();
        dl.rows.delete(key);
      }
    }
    let previous = null;
    for (const [key, d] of keep) {
      let li = dl.rows.get(key);
      if (!li) {
        li = document.createElement('li');
        li.className = 'dl';
        li.dataset.testid = 'dead-letter';
        li.dataset.at = String(d.received_at_ms);
        li.dataset.code = d.code;
        dl.rows.set(key, li);
      }
      if (li.dataset.lang !== getLang()) {
        li.dataset.lang = getLang();
        deadLetterRow(d, li);
      }
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (expected !== li) list.insertBefore(li, expected);
      previous = li;
    }
  }
  $('#dl-list').hidden = !ready || dl.items.length === 0;
  const empty = $('#dl-empty');
  empty.hidden = !ready || dl.items.length > 0;
  empty.textContent = t('dl.empty');

  const full = dl.items.length >= MAX_DEAD_LETTERS;
  $('#dl-more').hidden = !ready || dl.items.length === 0;
  $('#dl-older').disabled = full || dl.more === 'loading' || dl.more === 'none';
  const status = full ? 'full' : dl.more;
  const statusText = {
    loading: t('dl.loading'),
    none: t('dl.no_older'),
    full: format('dl.full', { n: number(MAX_DEAD_LETTERS) }),
    failed: `${t('dl.failed')}: ${dl.error}`,
  }[status];
  $('#dl-more-status').textContent = statusText ?? '';
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
