// The operator page in headless Chromium against a running iocd (see scripts/browser-test).
//
//   BASE_URL=http://127.0.0.1:8080 TOKEN=ioc_... [SCREENSHOT=out.png] node dashboard.mjs
//
// Checks: without a token the API refuses (401) and the page shows its login (a wrong token
// is refused there too); with the token the map shows the fleet's markers and the seven
// district tiles; live data arrives (message counter, KPI tiles, newest-data time, hourly
// AQI in its VN_AQI colour, with the decision's health advice); the history charts (district
// traffic, hourly AQI, water level against the flood alarm levels, rain) draw exactly what
// GET /api/v1/kpis/... answers for the same query, show an empty history and an API error as
// messages, and close with Esc; an alert appears and acknowledging / resolving it in the page
// changes it in the API; alert texts follow the language switch, which is remembered; times
// are city time (UTC+7) although the browser runs in New York; the dead-letter panel shows
// what GET /api/v1/dead-letters answers, pages back with "Older", shows a letter pushed live
// and a payload with HTML in it as text (the letters are published to the demo's embedded
// broker, IOC__DEMO__BROKER_LISTEN, as malformed MQTT messages), and a department token gets
// no dead letters. Exits non-zero on failure.
//
// CHART_SCREENSHOTS=dir also saves a screenshot of each chart there (chart-<kind>.png).

import net from 'node:net';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/$/, '');
const TOKEN = process.env.TOKEN || '';
const SCREENSHOT = process.env.SCREENSHOT || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHART_SCREENSHOTS = process.env.CHART_SCREENSHOTS || '';
const OVERALL_TIMEOUT_MS = 360_000;
// The browser runs in another zone than the city, so times must be converted by the page.
const BROWSER_ZONE = 'America/New_York';
const DAY_MS = 24 * 3_600_000;

const DISTRICTS = {
  hai_chau: 'Hải Châu',
  thanh_khe: 'Thanh Khê',
  son_tra: 'Sơn Trà',
  ngu_hanh_son: 'Ngũ Hành Sơn',
  lien_chieu: 'Liên Chiểu',
  cam_le: 'Cẩm Lệ',
  hoa_vang: 'Hòa Vang',
};
// VN_AQI band colours (Quyết định 1459/QĐ-TCMT) as the browser reports them.
const BAND_RGB = {
  good: 'rgb(0, 228, 0)',
  moderate: 'rgb(255, 255, 0)',
  poor: 'rgb(255, 126, 0)',
  bad: 'rgb(255, 0, 0)',
  very_bad: 'rgb(143, 63, 151)',
  hazardous: 'rgb(126, 0, 35)',
};

const t0 = Date.now();
const log = (...args) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s]`, ...args);

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Polls `probe` until it returns something truthy; fails naming `what` after `timeoutMs`. */
async function waitFor(what, probe, timeoutMs, everyMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new Failure(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function api(path, token, init = {}) {
  const headers = { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(`${BASE_URL}${path}`, { ...init, headers: { ...headers, ...init.headers } });
  const body = await res.json().catch(() => null);
  return { status: res.status, body };
}

/** Epoch ms as the page shows city time (UTC+7, no daylight saving): `HH:MM:SS dd/mm`. */
function cityTime(ms) {
  const d = new Date(ms + 7 * 3_600_000);
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${p(d.getUTCDate())}/${p(d.getUTCMonth() + 1)}`;
}
const cityIso = (ms) => new Date(ms + 7 * 3_600_000).toISOString().replace(/\.\d{3}Z$/, '+07:00');
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const count = (page, selector) => page.locator(selector).count();
const text = async (page, selector) => ((await page.locator(selector).first().textContent()) ?? '').trim();
const digits = (s) => Number(String(s).replace(/[^0-9]/g, '') || 0);

const CHART = '[data-testid=chart-dialog] [data-testid=chart]';

/** Waits for the open chart to leave `loading`; its state (ready, empty or error). */
async function chartState(page, what) {
  return waitFor(
    `the ${what} chart to load`,
    async () => {
      const state = await page.locator(CHART).getAttribute('data-state', { timeout: 1_000 }).catch(() => null);
      return state && state !== 'loading' ? state : null;
    },
    15_000,
    100,
  );
}

/** How many pixels of the chart's canvas have each colour (`#rrggbb`, give or take a little). */
function canvasPixels(page, colours) {
  return page.evaluate((hexes) => {
    const canvas = document.querySelector('[data-testid=chart-dialog] [data-testid=chart] canvas');
    if (!canvas) return hexes.map(() => 0);
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const rgb = hexes.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    const n = rgb.map(() => 0);
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 200) continue;
      rgb.forEach((c, k) => {
        if (Math.abs(data[i] - c[0]) + Math.abs(data[i + 1] - c[1]) + Math.abs(data[i + 2] - c[2]) < 24) n[k] += 1;
      });
    }
    return n;
  }, colours);
}

/**
 * Opens a chart with `o.open`, checks that it asked the API for the last 24 hours of
 * `o.family` with `o.params`, that it plots exactly the API's rows for that query (`o.fields`
 * of each row; the API may have newer windows since), that the table for screen readers holds
 * the same rows in city time and that the canvas shows `o.colours(points, rows)`; closes it
 * with Esc (focus back on `o.opener` when given). Returns the plotted points and API rows.
 */
async function checkChart(page, o) {
  await o.open();
  await page.locator('[data-testid=chart-dialog]').waitFor({ state: 'visible', timeout: 5_000 });
  const state = await chartState(page, o.name);
  const status = await page.evaluate((sel) => document.querySelector(`${sel} [data-testid=chart-status]`)?.textContent ?? '', CHART);
  check(state === 'ready', `the ${o.name} chart is ${state}: "${status}"`);
  check((await page.getAttribute(CHART, 'data-kind')) === o.kind, `the ${o.name} chart is of kind ${await page.getAttribute(CHART, 'data-kind')}`);

  const query = await page.getAttribute(CHART, 'data-query');
  const url = new URL(query, BASE_URL);
  check(url.pathname === `/api/v1/kpis/${o.family}`, `the ${o.name} chart asked ${query}`);
  for (const [k, v] of Object.entries(o.params)) {
    check(url.searchParams.get(k) === String(v), `the ${o.name} chart asked ${k}=${url.searchParams.get(k)}, not ${v}`);
  }
  const from = Number(url.searchParams.get('from'));
  const to = Number(url.searchParams.get('to'));
  check(to - from === DAY_MS && Math.abs(Date.now() - to) < 120_000, `the ${o.name} chart's range is not the last 24 hours: ${query}`);

  const points = JSON.parse(await page.getAttribute(CHART, 'data-points'));
  const answer = await api(query, TOKEN);
  check(answer.status === 200, `GET ${query} answered ${answer.status}`);
  const last = points.x.at(-1);
  const rows = answer.body.rows.filter((r) => r.window_start_ms <= last);
  check(points.x.length > 0, `the ${o.name} chart plots no rows`);
  check(same(points.x, rows.map((r) => r.window_start_ms)), `the ${o.name} chart's windows ${JSON.stringify(points.x)} are not the API's ${JSON.stringify(rows.map((r) => r.window_start_ms))}`);
  for (const f of o.fields) {
    const expected = rows.map((r) => r[f] ?? null);
    check(same(points.series[f], expected), `the ${o.name} chart's ${f} ${JSON.stringify(points.series[f])} is not the API's ${JSON.stringify(expected)}`);
  }

  // The same rows, in city time, in the table for screen readers.
  const table = await page.evaluate(
    (sel) => [...document.querySelectorAll(`${sel} [data-testid=chart-table] tbody tr`)].map((tr) => {
      const time = tr.querySelector('time');
      return { text: time.textContent, iso: time.dateTime, cells: tr.cells.length };
    }),
    CHART,
  );
  check(table.length === points.x.length, `the ${o.name} chart's table has ${table.length} rows for ${points.x.length} windows`);
  check(table[0].text === cityTime(points.x[0]) && table[0].iso === cityIso(points.x[0]), `the ${o.name} chart's first time is "${table[0].text}" (${table[0].iso}), not city time ${cityTime(points.x[0])}`);
  check(table.every((r) => r.cells === 1 + o.fields.length), `the ${o.name} chart's table does not have a column per series`);
  const legend = await count(page, `${CHART} .u-legend .u-series`);
  check(legend >= 1 + o.fields.length, `the ${o.name} chart's legend has ${legend} entries`);

  // Drawn: the series' colours are on the canvas.
  const colours = o.colours(points, rows);
  const pixels = await canvasPixels(page, colours);
  colours.forEach((c, i) => check(pixels[i] >= 8, `the ${o.name} chart draws ${pixels[i]} pixels of ${c}`));

  if (CHART_SCREENSHOTS) {
    const path = `${CHART_SCREENSHOTS}/chart-${o.kind}.png`;
    await page.screenshot({ path });
    log(`chart screenshot saved to ${path}`);
  }
  await page.keyboard.press('Escape');
  await page.locator('[data-testid=chart-dialog]').waitFor({ state: 'hidden', timeout: 5_000 });
  if (o.opener) {
    const focused = await page.evaluate(() => document.activeElement?.dataset.testid ?? document.activeElement?.tagName);
    check(focused === o.opener, `after Esc the focus is on ${focused}, not back on ${o.opener}`);
  }
  log(`${o.name} chart: ${points.x.length} windows equal to GET ${query.replace(/&from=.*$/, '&...')}, drawn (${pixels.join('/')} px), closed with Esc`);
  return { points, rows };
}

// ---------------------------------------------------------------- dead letters

// The demo's embedded MQTT broker (scripts/browser-test exports it), where malformed messages
// are published to make dead letters.
const BROKER = process.env.IOC__DEMO__BROKER_LISTEN || '';
const RUN = Date.now().toString(36);
// A payload that would run script if the page inserted it as HTML.
const XSS_PAYLOAD = `<img src=x onerror="window.__xss=1"> "quoted" & <b>bold</b> ${RUN}`;

/** MQTT's variable-length "remaining length". */
function mqttLength(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}
const mqttString = (s) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

/**
 * Publishes `messages` ([topic, payload Buffer|string]) at QoS 0 to the broker at `hostPort`
 * with a minimal MQTT 3.1.1 client (CONNECT, wait for CONNACK, PUBLISH..., DISCONNECT), so the
 * test needs no MQTT library.
 */
function mqttPublish(hostPort, messages) {
  const [host, port] = [hostPort.slice(0, hostPort.lastIndexOf(':')), Number(hostPort.slice(hostPort.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Failure(`no CONNACK from the MQTT broker at ${hostPort}`));
    }, 10_000);
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(new Failure(`MQTT broker at ${hostPort}: ${e.message}`));
    });
    socket.on('connect', () => {
      const body = Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 60]), mqttString(`browser-test-${RUN}-${Math.random().toString(36).slice(2, 8)}`)]);
      socket.write(Buffer.concat([Buffer.from([0x10]), mqttLength(body.length), body]));
    });
    let seen = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      seen = Buffer.concat([seen, chunk]);
      if (seen.length < 4) return;
      clearTimeout(timer);
      if (seen[0] !== 0x20 || seen[3] !== 0) {
        socket.destroy();
        reject(new Failure(`the MQTT broker refused the connection: ${seen.subarray(0, 4).toString('hex')}`));
        return;
      }
      for (const [topic, payload] of messages) {
        const body = Buffer.concat([mqttString(topic), Buffer.from(payload)]);
        socket.write(Buffer.concat([Buffer.from([0x30]), mqttLength(body.length), body]));
      }
      socket.end(Buffer.from([0xe0, 0]), () => resolve());
    });
  });
}

/** Waits until GET /api/v1/dead-letters lists a letter whose source ends with `suffix`. */
function apiLetter(suffix) {
  return waitFor(
    `a dead letter from ...${suffix} in GET /api/v1/dead-letters`,
    async () => {
      const { body } = await api('/api/v1/dead-letters?limit=1000', TOKEN);
      return body?.dead_letters?.find((d) => d.source.endsWith(suffix)) ?? null;
    },
    20_000,
    250,
  );
}

/** The letters the panel shows, top to bottom, as the page renders them. */
function panelLetters(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid=dead-letter]')].map((li) => {
      const f = (id) => li.querySelector(`[data-testid=${id}]`);
      return {
        at: Number(li.dataset.at),
        code: li.dataset.code,
        codeLabel: f('dl-code').textContent,
        codeTitle: f('dl-code').title,
        time: f('dl-time').textContent,
        iso: f('dl-time').dateTime,
        transport: f('dl-transport').textContent,
        source: f('dl-source').textContent,
        reason: f('dl-reason').textContent,
        bytes: f('dl-bytes').textContent,
        bytesHtml: f('dl-bytes').innerHTML,
        truncated: !!f('dl-truncated'),
        elements: li.querySelectorAll('img, b, script').length,
      };
    }),
  );
}

/** Every letter the panel shows is the API's letter of that time and source, newest first. */
async function checkPanelAgainstApi(page, what) {
  const shown = await panelLetters(page);
  check(shown.length > 0, `${what}: the dead-letter panel shows no letters`);
  const { status, body } = await api('/api/v1/dead-letters?limit=1000', TOKEN);
  check(status === 200, `GET /api/v1/dead-letters answered ${status}`);
  const byKey = new Map(body.dead_letters.map((d) => [`${d.received_at_ms}|${d.source}|${d.first_bytes}`, d]));
  for (const [i, row] of shown.entries()) {
    const d = byKey.get(`${row.at}|${row.source}|${row.bytes}`);
    check(d, `${what}: the panel's letter ${JSON.stringify(row)} is not in GET /api/v1/dead-letters`);
    check(row.code === d.code && row.codeTitle === d.code, `${what}: a letter's code is ${row.code}, the API's ${d.code}`);
    check(row.codeLabel && row.codeLabel !== d.code, `${what}: the code ${d.code} has no label ("${row.codeLabel}")`);
    check(row.time === cityTime(d.received_at_ms) && row.iso === cityIso(d.received_at_ms), `${what}: a letter's time is "${row.time}", not city time ${cityTime(d.received_at_ms)}`);
    check(row.transport.toLowerCase() === d.transport, `${what}: transport "${row.transport}", the API's ${d.transport}`);
    check(row.reason === d.reason, `${what}: reason "${row.reason}", the API's "${d.reason}"`);
    check(row.truncated === d.truncated, `${what}: truncated ${row.truncated}, the API's ${d.truncated}`);
    check(row.elements === 0, `${what}: a letter's text became HTML elements: ${row.bytesHtml}`);
    check(i === 0 || shown[i - 1].at >= row.at, `${what}: the letters are not newest first (${shown[i - 1]?.at} before ${row.at})`);
  }
  return shown;
}

const LOS = 'ABCDEF';
// An alert of a rule the page does not know, pushed into the page's socket (not the server).
const FAKE_ALERT = {
  id: 'test_unknown_rule:tsc-hai_chau-001:1',
  rule_id: 'test_unknown_rule',
  entity_id: 'tsc-hai_chau-001',
  district: 'hai_chau',
  department: 'transport',
  category: 'traffic',
  severity: 'critical',
  state: 'active',
  message: 'Thông điệp riêng của quy tắc thử',
  value: 1,
  breaches: 1,
  escalations: 0,
  acknowledged: null,
  resolved: null,
  comments: [],
  suppressed: false,
};
/** The alert texts the page builds, for rules whose text does not depend on a changing threshold. */
const ALERT_TEXT = {
  vi: {
    crowd_gathering: (a) => `Phát hiện tụ tập đông người tại camera ${a.entity_id} (${DISTRICTS[a.district]})`,
    signal_fault: (a) => `Đèn tín hiệu ${a.entity_id} lỗi, nhấp nháy hoặc tắt ≥ 2 phút (${DISTRICTS[a.district]})`,
    congestion_e_f: (a) => `Ùn tắc mức ${LOS[Math.round(a.value) - 1]} kéo dài tại nút ${a.entity_id}, ${DISTRICTS[a.district]}`,
  },
  en: {
    crowd_gathering: (a) => `Crowd detected by camera ${a.entity_id} (${DISTRICTS[a.district]})`,
    signal_fault: (a) => `Traffic signal ${a.entity_id} faulted, flashing or dark for 2 min or more (${DISTRICTS[a.district]})`,
    congestion_e_f: (a) => `Sustained congestion, level ${LOS[Math.round(a.value) - 1]}, at junction ${a.entity_id}, ${DISTRICTS[a.district]}`,
  },
};

/**
 * The first alert rows against the API: the data time (the breach's event time) and the time
 * raised in city time, and the text in `lang` (for the rules in ALERT_TEXT exactly; every text
 * the page builds differs from the server's Vietnamese one in English). Returns a sample text.
 */
async function checkAlertRows(page, lang) {
  const rows = await page.evaluate((fakeId) =>
    [...document.querySelectorAll('[data-testid=alert-row]')].filter((r) => r.dataset.alertId !== fakeId).slice(0, 30).map((r) => {
      const msg = r.querySelector('[data-testid=alert-message]');
      const data = r.querySelector('[data-testid=alert-data-time]');
      const raised = r.querySelector('[data-testid=alert-raised-time]');
      return {
        id: r.dataset.alertId,
        updated: Number(r.dataset.updated),
        text: msg.textContent.trim(),
        source: msg.dataset.source,
        data: [data.textContent, data.dateTime],
        raised: [raised.textContent, raised.dateTime],
      };
    }),
    FAKE_ALERT.id,
  );
  check(rows.length > 0, 'no alert rows');
  // The rule the page does not know keeps the server's text, in either language.
  const fake = await page.evaluate((id) => {
    const msg = document.querySelector(`[data-testid=alert-row][data-alert-id="${id}"] [data-testid=alert-message]`);
    return msg && { text: msg.textContent.trim(), source: msg.dataset.source };
  }, FAKE_ALERT.id);
  check(fake?.source === 'server' && fake.text === FAKE_ALERT.message, `an unknown rule's alert shows ${JSON.stringify(fake)}, not the server's text`);
  let built = 0;
  let exact = 0;
  let sample = '';
  for (const row of rows) {
    const { status, body: a } = await api(`/api/v1/alerts/${encodeURIComponent(row.id)}`, TOKEN);
    check(status === 200, `GET alert ${row.id} answered ${status}`);
    check(same(row.data, [cityTime(a.breach_event_ms), cityIso(a.breach_event_ms)]), `alert ${row.id}: data time ${JSON.stringify(row.data)}, not city time ${cityTime(a.breach_event_ms)}`);
    check(same(row.raised, [cityTime(a.opened_ms), cityIso(a.opened_ms)]), `alert ${row.id}: raised ${JSON.stringify(row.raised)}, not city time ${cityTime(a.opened_ms)}`);
    if (row.source !== 'page') {
      check(row.text === a.message, `alert ${row.id} shows "${row.text}", neither its own text nor the server's "${a.message}"`);
      continue;
    }
    built += 1;
    if (lang === 'en') check(row.text !== a.message, `alert ${row.id} is still in Vietnamese in English: "${row.text}"`);
    const expected = ALERT_TEXT[lang][a.rule_id];
    if (expected) {
      // The page shows the alert as last sent on the socket, and repeat breaches are sent
      // coalesced (`update_event_every_s`), so the API may hold a newer version. Only a
      // congestion alert's text changes with a breach (its level); for an older version the
      // text must still be the rule's, at this junction, at one of the levels.
      const versions = a.updated_ms === row.updated || a.rule_id !== 'congestion_e_f'
        ? [a]
        : [...LOS].map((_, i) => ({ ...a, value: i + 1 }));
      check(versions.some((v) => row.text === expected(v)), `alert ${row.id} in ${lang}: "${row.text}", not "${expected(a)}"`);
      if (lang === 'vi' && a.rule_id !== 'congestion_e_f') check(row.text === a.message, `alert ${row.id}: "${row.text}" differs from the rule's own Vietnamese "${a.message}"`);
      exact += 1;
      sample ||= row.text;
    }
  }
  check(built > 0 && exact > 0, `no alert text built by the page in ${lang} (${built} built, ${exact} checked against their rule's text)`);
  return `${rows.length} rows, ${built} texts built in ${lang} (${exact} checked against their rule's text), e.g. "${sample}"`;
}

async function main() {
  check(BASE_URL && TOKEN, 'set BASE_URL and TOKEN (scripts/browser-test does)');

  // --- the API refuses without a token; the page itself is public -----------------------
  for (const path of ['/api/v1/devices', '/api/v1/alerts']) {
    const { status } = await api(path, '');
    check(status === 401, `GET ${path} without a token answered ${status}, not 401`);
  }
  const config = await api('/ui/config.json', '');
  check(config.status === 200 && config.body?.auth === true, `/ui/config.json: ${JSON.stringify(config)}`);
  const fleet = await api('/api/v1/devices', TOKEN);
  check(fleet.status === 200, `GET /api/v1/devices with the token answered ${fleet.status}`);
  const fleetSize = fleet.body.count;
  log(`API refuses without a token; the fleet has ${fleetSize} devices`);

  // Dead letters before the page opens, more than its first page (50) holds: malformed
  // messages on the demo's broker.
  const BATCH = 70;
  if (BROKER) {
    const batch = Array.from({ length: BATCH }, (_, i) => [`ioc/v1/sensor/hai_chau/dl-${RUN}-${i}`, `{not json ${i}`]);
    await mqttPublish(BROKER, batch);
    const last = await apiLetter(`/dl-${RUN}-${BATCH - 1}`);
    log(`published ${BATCH} malformed messages to ${BROKER}: dead-lettered as ${last.code} ("${last.reason}")`);
  } else {
    log('IOC__DEMO__BROKER_LISTEN is not set: no dead letters are published, the dead-letter checks are skipped');
  }

  // CI containers give /dev/shm 64 MB, too little for Chromium's shared memory.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({
      viewport: { width: 1600, height: 1000 },
      locale: 'vi-VN',
      timezoneId: BROWSER_ZONE,
    });
    // Test instrumentation: keep a handle on the page's WebSockets (to cut them below).
    await context.addInitScript(() => {
      const Native = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') log(`browser console: ${m.text()}`);
    });

    // --- login --------------------------------------------------------------------------
    const response = await page.goto(`${BASE_URL}/`, { waitUntil: 'load' });
    check(response?.status() === 200, `GET / answered ${response?.status()}`);
    await page.locator('[data-testid=login-form]').waitFor({ state: 'visible', timeout: 10_000 });
    check(!(await page.locator('[data-testid=dashboard]').isVisible()), 'the dashboard shows before login');
    check((await page.getAttribute('html', 'lang')) === 'vi', 'the page is not in Vietnamese by default');
    log('without a token the page shows the login form');

    await page.fill('[data-testid=token-input]', 'ioc_not_a_real_token');
    await page.click('[data-testid=login-submit]');
    await page.locator('[data-testid=login-error]').waitFor({ state: 'visible', timeout: 10_000 });
    check(await page.locator('[data-testid=login-form]').isVisible(), 'a wrong token left the login form');
    log(`a wrong token is refused: "${await text(page, '[data-testid=login-error]')}"`);

    await page.fill('[data-testid=token-input]', TOKEN);
    await page.click('[data-testid=login-submit]');
    await page.locator('[data-testid=dashboard]').waitFor({ state: 'visible', timeout: 10_000 });

    // --- (a) map markers and district tiles ---------------------------------------------
    const markers = await waitFor(
      'more than 400 device markers on the map',
      async () => {
        const n = await count(page, '[data-testid=map] path.device-marker');
        return n > 400 ? n : 0;
      },
      20_000,
    );
    check(markers === fleetSize, `the map shows ${markers} markers for ${fleetSize} devices`);
    // Queried inside one evaluate: `$$eval` takes two round trips, and a row the page
    // re-renders in between is detached (it then has no computed style).
    const tiles = await page.evaluate(() =>
      [...document.querySelectorAll('[data-testid=district-tile]')].map((e) => [e.dataset.district, e.querySelector('h3').textContent.trim()]),
    );
    check(tiles.length === 7, `${tiles.length} district tiles, not 7`);
    for (const [slug, name] of Object.entries(DISTRICTS)) {
      check(tiles.some(([s, n]) => s === slug && n === name), `no tile for ${slug} (${name}): ${JSON.stringify(tiles)}`);
    }
    await waitFor(
      'the connection indicator to say live',
      async () => (await page.getAttribute('[data-testid=conn-status]', 'data-state')) === 'live',
      20_000,
    );
    log(`${markers} markers, 7 district tiles, connection live`);

    // --- city time, although the browser runs elsewhere -------------------------------------
    const clock = await waitFor('the clock', () =>
      page.evaluate(() => {
        const c = document.querySelector('[data-testid=clock]');
        return c.dateTime ? { text: c.textContent, iso: c.dateTime, offset: new Date().getTimezoneOffset() } : null;
      }),
      5_000,
    );
    check(clock.offset !== -420, `the browser runs in UTC+7 (offset ${clock.offset}): the time zone check would prove nothing`);
    const clockMs = Date.parse(clock.iso);
    check(/\+07:00$/.test(clock.iso) && Math.abs(clockMs - Date.now()) < 10_000, `the clock says ${clock.iso}`);
    check(clock.text === cityTime(clockMs), `the clock shows "${clock.text}", not city time ${cityTime(clockMs)}`);
    log(`clock in city time: "${clock.text}" (${clock.iso}) in a browser on ${BROWSER_ZONE}`);

    // --- (b) live values change -----------------------------------------------------------
    const volume = await waitFor(
      'a district traffic volume in the tiles',
      async () => {
        const v = await text(page, '[data-testid=district-tile][data-district=hai_chau] [data-testid=kpi-traffic-volume]');
        return /\d/.test(v) ? v : '';
      },
      60_000,
    );
    // The tile marks a window the data covers only part of (as a rule a demo's first), as
    // the row the API answers for that window says.
    const tile = '[data-testid=district-tile][data-district=hai_chau]';
    const coverage = await waitFor(
      'the Hải Châu tile and the newest district traffic row to be of one window',
      async () => {
        const { status, body } = await api('/api/v1/kpis/traffic?scope=district&entity=hai_chau&window_size_ms=300000', TOKEN);
        const row = status === 200 ? body.rows.at(-1) : null;
        const shown = (await page.getAttribute(`${tile} [data-testid=kpi-los]`, 'title')) ?? '';
        if (!row || !shown.endsWith(cityTime(row.window_start_ms + row.window_size_ms))) return null;
        const hidden = await page.locator(`${tile} [data-testid=kpi-partial]`).isHidden();
        const partial = row.covered_ms != null && row.covered_ms < row.window_size_ms;
        check(hidden === !partial, `the tile ${hidden ? 'hides' : 'shows'} "partial" for a window covering ${row.covered_ms} of ${row.window_size_ms} ms`);
        const title = await page.getAttribute(`${tile} [data-testid=kpi-partial]`, 'title');
        check(!partial || title.includes(String(Math.round(row.covered_ms / 1000))), `the partial mark's title "${title}" does not give the ${row.covered_ms} ms covered`);
        return partial ? `partial, ${row.covered_ms} of ${row.window_size_ms} ms, "${title}"` : 'whole';
      },
      30_000,
    );
    log(`coverage: the Hải Châu tile's window is ${coverage}, as GET /api/v1/kpis/traffic says`);
    // Then the values move on: a newer window arrives and the counter grows.
    const messages0 = digits(await text(page, '[data-testid=msg-count]'));
    const newest0 = await text(page, '[data-testid=last-update]');
    const newest1 = await waitFor(
      'the newest-data time to move on',
      async () => {
        const v = await text(page, '[data-testid=last-update]');
        return /\d/.test(v) && v !== newest0 ? v : '';
      },
      60_000,
    );
    const messages1 = digits(await text(page, '[data-testid=msg-count]'));
    check(messages1 > messages0, `the message counter did not grow (${messages0} -> ${messages1})`);
    const devices = await text(page, '[data-testid=district-tile][data-district=hai_chau] [data-testid=kpi-devices]');
    check(/\d+\/\d+/.test(devices), `Hải Châu devices tile shows "${devices}"`);
    const online = await count(page, '[data-testid=map] path.device-marker[data-status=online]');
    check(online > 0, 'no marker turned online');
    log(`live: messages ${messages0} -> ${messages1}, newest data "${newest0}" -> "${newest1}", Hải Châu ${volume} veh/h, devices ${devices}, ${online} markers online`);

    // --- dead letters: the panel against the API, Older, a live letter, HTML shown as text ---
    const DL = '[data-testid=dead-letters]';
    const dlState = () => page.getAttribute(DL, 'data-state');
    if (BROKER) {
      await waitFor('the dead-letter panel to load', async () => (await dlState()) === 'ready', 15_000, 100);
      const first = await waitFor('the first page of dead letters', async () => {
        const n = await count(page, '[data-testid=dead-letter]');
        return n >= 50 ? n : 0;
      }, 10_000, 100);
      await checkPanelAgainstApi(page, 'first page');
      const note = await text(page, '[data-testid=dl-note]');
      check((await page.getAttribute(DL, 'data-source')) === 'memory' && note.includes('no ClickHouse'), `the panel does not say its letters come from memory: "${note}"`);
      check((await page.getAttribute('[data-testid=dl-list]', 'aria-label'))?.length > 0, 'the dead-letter list has no accessible name');
      const shownBefore = await panelLetters(page);
      // "Older", with the keyboard: the letters before the oldest shown, from the API.
      const loads = await page.getAttribute(DL, 'data-loads');
      await page.focus('[data-testid=dl-older]');
      await page.keyboard.press('Enter');
      await waitFor('the answer to Older', async () => (await page.getAttribute(DL, 'data-loads')) !== loads, 10_000, 100);
      check((await count(page, '[data-testid=dead-letter]')) > first, 'Older added no letters');
      const older = await checkPanelAgainstApi(page, 'after Older');
      check(older.at(-1).at <= shownBefore.at(-1).at, `Older did not add older letters (${older.at(-1).at} after ${shownBefore.at(-1).at})`);
      const batchShown = older.filter((r) => r.source.includes(`/dl-${RUN}-`)).length;
      const { body: all } = await api('/api/v1/dead-letters?limit=1000', TOKEN);
      if (all.count <= older.length) check(batchShown === BATCH, `after Older the panel shows ${batchShown} of the ${BATCH} letters published`);
      log(`dead letters: ${first} on the first page, ${older.length} after Older (${batchShown} of the ${BATCH} published; the API has ${all.count}), all as GET /api/v1/dead-letters; "${note}"`);

      // Pushed live: a payload with HTML in it, and one longer than the 256 bytes shown.
      await page.evaluate(() => {
        window.__deadLetterPushes = 0;
        window.__sockets.at(-1).addEventListener('message', (e) => {
          if (JSON.parse(e.data).type === 'dead_letter') window.__deadLetterPushes += 1;
        });
      });
      const badge0 = Number(await page.getAttribute('[data-testid=dl-count]', 'data-count'));
      const long = `{"kind":"sensor","x":"${'x'.repeat(600)}`;
      await mqttPublish(BROKER, [
        [`ioc/v1/sensor/hai_chau/dl-${RUN}-long`, long],
        [`ioc/v1/sensor/hai_chau/dl-${RUN}-xss`, XSS_PAYLOAD],
      ]);
      await waitFor('the letters pushed live in the panel', async () => {
        const sources = (await panelLetters(page)).map((r) => r.source);
        return [`/dl-${RUN}-xss`, `/dl-${RUN}-long`].every((end) => sources.some((x) => x.endsWith(end)));
      }, 15_000, 200);
      const pushes = await page.evaluate(() => window.__deadLetterPushes);
      check(pushes >= 2, `the letters reached the page without ${pushes} dead_letter messages on the socket`);
      const live = await checkPanelAgainstApi(page, 'live');
      const xss = live.find((r) => r.source.endsWith(`/dl-${RUN}-xss`));
      check(xss.bytes === XSS_PAYLOAD && xss.bytesHtml.includes('&lt;img') && xss.elements === 0, `the HTML payload is not shown as text: ${xss.bytesHtml}`);
      check(!(await page.evaluate(() => window.__xss)) && (await count(page, '[data-testid=dl-list] img')) === 0, 'the payload ran as HTML');
      const longShown = live.find((r) => r.source.endsWith(`/dl-${RUN}-long`));
      check(longShown.truncated && longShown.bytes === long.slice(0, 256), `the long payload is not cut at 256 bytes and marked: ${JSON.stringify(longShown)}`);
      check(live.slice(0, 2).some((r) => r.source.endsWith(`/dl-${RUN}-xss`)), 'the newest letter is not at the top');
      const badge1 = Number(await page.getAttribute('[data-testid=dl-count]', 'data-count'));
      check(badge1 >= badge0 + 2 && (await text(page, '[data-testid=dl-count]')) === String(badge1), `the badge went ${badge0} -> ${badge1}`);
      log(`dead letters pushed live (${pushes} on the socket): "${xss.bytes.slice(0, 40)}..." shown as text (${xss.codeLabel}), the long one cut and marked; badge ${badge0} -> ${badge1}`);
    }

    // --- reconnects: after the link drops, and after a gap in `seq` ---------------------------
    const sockets = () => page.evaluate(() => window.__sockets.length);
    const isLive = async () => (await page.getAttribute('[data-testid=conn-status]', 'data-state')) === 'live';
    let opened = await sockets();
    await page.evaluate(() => window.__sockets.at(-1).close());
    await waitFor('a new WebSocket after the link dropped', async () => (await sockets()) > opened, 10_000, 100);
    await waitFor('the page to be live again after the drop', isLive, 15_000, 100);
    opened = await sockets();
    await page.evaluate(() => {
      const ws = window.__sockets.at(-1);
      ws.dispatchEvent(new MessageEvent('message', { data: JSON.stringify({ type: 'heartbeat', seq: 1e9, at_ms: 0 }) }));
    });
    await waitFor('a new WebSocket after a seq gap', async () => (await sockets()) > opened, 10_000, 100);
    await waitFor('the page to be live again after the gap', isLive, 15_000, 100);
    log('the page reconnects after a dropped link and after a seq gap');

    // --- AQI per station in its band colour -----------------------------------------------
    await waitFor('an hourly AQI with a value and band', () => count(page, '[data-testid=aqi-row][data-band]:not([data-band=""])'), 150_000);
    const aqi = await page.evaluate(() =>
      [...document.querySelectorAll('[data-testid=aqi-row]')].map((r) => {
        const chip = r.querySelector('.aqi-chip');
        const advice = r.querySelector('[data-testid=aqi-advice]')?.textContent.trim() ?? '';
        return { station: r.dataset.station, band: r.dataset.band, value: chip.textContent.trim(), bg: getComputedStyle(chip).backgroundColor, advice };
      }),
    );
    for (const row of aqi.filter((r) => r.band)) {
      check(row.bg === BAND_RGB[row.band], `AQI ${row.value} (${row.band}) at ${row.station} is drawn in ${row.bg}, not ${BAND_RGB[row.band]}`);
      // The decision's advice for the band, in its Vietnamese (the page starts in Vietnamese).
      check(row.advice.length > 10, `AQI ${row.value} (${row.band}) at ${row.station} shows no health advice`);
    }
    log(`${aqi.length} AQI rows, e.g. ${aqi.slice(0, 3).map((r) => `${r.station} ${r.value} ${r.band}`).join(', ')}`);

    // --- history charts: what GET /api/v1/kpis/... answers, drawn -------------------------
    // District traffic, opened from the tile with the keyboard.
    const trafficButton = '[data-testid=district-tile][data-district=hai_chau] [data-testid=tile-traffic-chart]';
    await checkChart(page, {
      name: 'Hải Châu traffic',
      kind: 'traffic',
      family: 'traffic',
      params: { scope: 'district', entity: 'hai_chau', window_size_ms: 300000 },
      fields: ['volume_veh_h', 'level'],
      colours: (p) => [p.strokes.volume_veh_h, p.strokes.level],
      opener: 'tile-traffic-chart',
      open: async () => {
        await page.focus(trafficButton);
        await page.keyboard.press('Enter');
      },
    });

    // Hourly VN_AQI of the station with the highest AQI, opened from its row: bars in the rows' band colours.
    const aqiStation = aqi.filter((r) => r.band).sort((x, y) => Number(y.value) - Number(x.value))[0].station;
    const air = await checkChart(page, {
      name: `${aqiStation} VN_AQI`,
      kind: 'air',
      family: 'air',
      params: { entity: aqiStation, window_size_ms: 3600000 },
      fields: ['aqi'],
      colours: (p, rows) => [...new Set(rows.filter((r) => r.aqi != null).map((r) => r.colour))],
      open: () => page.click(`[data-testid=aqi-row][data-station=${JSON.stringify(aqiStation)}] [data-testid=aqi-chart]`),
    });
    check(same(air.points.colours, air.rows.map((r) => r.colour ?? null)), `the AQI bars are coloured ${JSON.stringify(air.points.colours)}, not the rows' ${JSON.stringify(air.rows.map((r) => r.colour))}`);
    for (const r of air.rows.filter((x) => x.aqi != null)) {
      check(BAND_RGB[r.band] === `rgb(${[1, 3, 5].map((i) => parseInt(r.colour.slice(i, i + 2), 16)).join(', ')})`, `AQI ${r.aqi} (${r.band}) comes in ${r.colour}`);
    }

    // Water level against the registry's flood alarm levels, opened from the gauge's popup on the map.
    const gauge = ['hydro-cam_le', 'hydro-ai_nghia'].find((id) => fleet.body.devices.some((d) => d.id === id));
    if (gauge) {
      const registered = await api(`/api/v1/devices/${gauge}`, TOKEN);
      const alarms = registered.body.flood_alarm_m;
      check(Array.isArray(alarms) && alarms.length === 3, `${gauge} has no flood_alarm_m: ${JSON.stringify(registered.body)}`);
      const water = await checkChart(page, {
        name: `${gauge} water level`,
        kind: 'water',
        family: 'hydrology',
        params: { entity: gauge, window_size_ms: 300000 },
        fields: ['water_level_m'],
        // The level, then alarm levels I, II and III (yellow, orange, red dashed lines).
        colours: (p) => [p.strokes.water_level_m, '#facc15', '#f97316', '#ef4444'],
        open: async () => {
          await page.locator(`[data-testid=map] path.device-marker[data-device=${JSON.stringify(gauge)}]`).dispatchEvent('click');
          const button = `[data-testid=device-popup][data-device=${JSON.stringify(gauge)}] [data-testid=popup-chart][data-chart=water]`;
          await page.locator(button).click({ timeout: 5_000 });
        },
      });
      check(same(water.points.alarms, alarms), `the chart's alarm levels ${JSON.stringify(water.points.alarms)} are not the registry's ${JSON.stringify(alarms)}`);
    } else {
      log('the fleet has no river gauge with flood alarm levels: no water-level chart');
    }

    // Rain at Hòa Vang's wettest gauge (the flood episode's rain), opened from the district tile.
    const rainButton = '[data-testid=district-tile][data-district=hoa_vang] [data-testid=tile-rain-chart]';
    await waitFor('a rain gauge behind the Hòa Vang tile', async () => !(await page.locator(rainButton).isDisabled()), 30_000);
    const rainGauge = await page.getAttribute(rainButton, 'data-entity');
    await checkChart(page, {
      name: `${rainGauge} rain`,
      kind: 'rain',
      family: 'hydrology',
      params: { entity: rainGauge, window_size_ms: 300000 },
      fields: ['rain_mm', 'rain_1h_mm', 'rain_24h_mm'],
      colours: (p, rows) => [p.strokes.rain_24h_mm, ...(rows.some((r) => r.rain_mm > 0) ? [p.strokes.rain_mm] : [])],
      opener: 'tile-rain-chart',
      open: () => page.click(rainButton),
    });

    // An empty history and a failing API are said, not shown as a blank box.
    for (const [what, reply, expect] of [
      ['empty', (r) => r.fulfill({ json: { family: 'traffic', from_ms: 0, to_ms: 1, source: 'clickhouse', rows: [], count: 0, truncated: false } }), 'empty'],
      ['failing', (r) => r.fulfill({ status: 503, json: { error: { code: 'unavailable', message: 'cannot read KPI history: test outage' } } }), 'error'],
    ]) {
      await page.route('**/api/v1/kpis/**', reply);
      await page.click(trafficButton);
      const state = await chartState(page, `${what} traffic`);
      const shown = (await page.locator(`${CHART} [data-testid=chart-status]`).textContent()).trim();
      check(state === expect, `an ${what} history leaves the chart ${state}`);
      check(expect === 'empty' ? /\S/.test(shown) : shown.includes('test outage'), `an ${what} history shows "${shown}"`);
      check((await count(page, `${CHART} canvas`)) === 0, `an ${what} history draws a chart`);
      await page.click('[data-testid=chart-close]');
      await page.locator('[data-testid=chart-dialog]').waitFor({ state: 'hidden', timeout: 5_000 });
      await page.unroute('**/api/v1/kpis/**');
      log(`${what} history: "${shown}"`);
    }

    // --- (c) an alert: acknowledge and resolve in the page, check the API ----------------
    const since = Date.now();
    const id = await waitFor(
      'an active alert in the feed',
      async () => {
        const ids = await page.evaluate(() => [...document.querySelectorAll('[data-testid=alert-row][data-state=active]')].map((r) => r.dataset.alertId));
        // A jammed junction stays jammed: its alert is not resolved by the engine meanwhile.
        return ids.find((i) => i.startsWith('congestion_e_f:')) ?? (Date.now() - since > 45_000 ? ids[0] : null);
      },
      90_000,
    );
    const row = `[data-testid=alert-row][data-alert-id=${JSON.stringify(id)}]`;
    const path = `/api/v1/alerts/${encodeURIComponent(id)}`;
    const before = await api(path, TOKEN);
    check(before.status === 200, `GET ${path} answered ${before.status}`);
    log(`alert ${id} is ${before.body.state} in the API`);

    await page.click(`${row} [data-testid=alert-ack]`);
    const acked = await waitFor(
      'the API to report the alert acknowledged',
      async () => {
        const { body } = await api(path, TOKEN);
        return body?.state === 'acknowledged' || body?.state === 'resolved' ? body : null;
      },
      10_000,
    );
    check(acked.state === 'acknowledged', `after acknowledge the API says ${acked.state}`);
    check(Array.isArray(acked.acknowledged) && acked.acknowledged[0] === 'demo-admin', `acknowledged by ${JSON.stringify(acked.acknowledged)}`);
    await waitFor('the page to show it acknowledged', async () => (await page.getAttribute(row, 'data-state')) === 'acknowledged', 10_000);
    log('acknowledged in the page: the API says acknowledged by demo-admin');

    await page.click(`${row} [data-testid=alert-resolve]`);
    const resolved = await waitFor(
      'the API to report the alert resolved',
      async () => {
        const { body } = await api(path, TOKEN);
        return body?.state === 'resolved' ? body : null;
      },
      10_000,
    );
    check(resolved.resolved?.[0] === 'demo-admin', `resolved by ${JSON.stringify(resolved.resolved)}`);
    await waitFor('the page to show it resolved', async () => (await page.getAttribute(row, 'data-state')) === 'resolved', 10_000);
    log('resolved in the page: the API says resolved by demo-admin');

    // --- language switch, remembered across a reload -------------------------------------
    const label = '[data-testid=district-tile][data-district=hai_chau] dt[data-i18n="kpi.alerts"]';
    const vi = await text(page, label);
    const nowMs = Date.now();
    const fakeAlert = { ...FAKE_ALERT, opened_ms: nowMs, updated_ms: nowMs, breach_event_ms: nowMs - 3_600_000 };
    await page.evaluate((alert) => {
      const event = { event_id: `${alert.id}:1`, alert, transition: 'opened', at_ms: alert.opened_ms, actor: 'system', notify: true };
      window.__sockets.at(-1).dispatchEvent(new MessageEvent('message', { data: JSON.stringify({ type: 'alert', event }) }));
    }, fakeAlert);
    await page.locator(`[data-testid=alert-row][data-alert-id="${FAKE_ALERT.id}"]`).waitFor({ timeout: 5_000 });
    log(`alerts in Vietnamese: ${await checkAlertRows(page, 'vi')}`);
    await page.click('[data-testid=lang-switch]');
    const en = await text(page, label);
    check(en === 'Alerts' && vi !== en, `language switch: "${vi}" -> "${en}"`);
    if (BROKER) {
      const labels = (await panelLetters(page)).filter((r) => r.code === 'malformed_json').map((r) => r.codeLabel);
      check(labels.length > 0 && labels.every((l) => l === 'Malformed JSON'), `dead-letter codes in English: ${JSON.stringify(labels.slice(0, 3))}`);
    }
    log(`alerts in English: ${await checkAlertRows(page, 'en')}`);
    await page.reload({ waitUntil: 'load' });
    await page.locator('[data-testid=dashboard]').waitFor({ state: 'visible', timeout: 10_000 });
    check((await page.getAttribute('html', 'lang')) === 'en', 'English was not remembered across a reload');
    check((await text(page, label)) === 'Alerts', 'the reloaded page is not in English');
    await page.click('[data-testid=lang-switch]');
    check((await text(page, label)) === vi, 'switching back did not restore Vietnamese');
    log(`language: "${vi}" <-> "${en}", remembered across a reload (the token too)`);

    // --- map tiles: drawn when they load, dropped for the plain background when they fail ---
    const png = Buffer.from(
      'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
      'base64',
    );
    for (const tilesLoad of [true, false]) {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript((token) => sessionStorage.setItem('ioc.token', token), TOKEN);
      await ctx.route('**/ui/config.json', (r) =>
        r.fulfill({ json: { auth: true, tile_url: 'http://tiles.invalid/{z}/{x}/{y}.png', tile_attribution: '© <b>Test</b> tiles' } }),
      );
      await ctx.route('http://tiles.invalid/**', (r) => (tilesLoad ? r.fulfill({ contentType: 'image/png', body: png }) : r.abort()));
      const p = await ctx.newPage();
      p.on('pageerror', (e) => pageErrors.push(String(e)));
      await p.goto(`${BASE_URL}/`, { waitUntil: 'load' });
      await waitFor('markers on the tiled map', async () => (await count(p, '[data-testid=map] path.device-marker')) > 400, 20_000);
      if (tilesLoad) {
        await waitFor('loaded tiles', () => count(p, 'img.leaflet-tile-loaded'), 10_000);
        check((await p.getAttribute('[data-testid=map]', 'data-tiles')) === 'on', 'tiles that load were dropped');
        const attribution = await text(p, '.leaflet-control-attribution');
        check(attribution.includes('© <b>Test</b> tiles'), `the attribution is not shown as text: "${attribution}"`);
      } else {
        await waitFor('failing tiles to be dropped', async () => (await p.getAttribute('[data-testid=map]', 'data-tiles')) === 'failed', 15_000);
        check((await count(p, '.leaflet-tile-pane img')) === 0, 'failed tiles left in the map');
      }
      await ctx.close();
    }
    log('tiles: shown when they load (attribution escaped), dropped for the plain background when they fail');

    // --- a department token sees no dead letters ----------------------------------------------
    const issued = await api('/api/v1/tokens', TOKEN, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: `dl-desk-${RUN}`, role: 'department', department: 'transport' }),
    });
    check(issued.status === 201 && issued.body?.token, `POST /api/v1/tokens answered ${issued.status}: ${JSON.stringify(issued.body)}`);
    const refused = await api('/api/v1/dead-letters', issued.body.token);
    check(refused.status === 403, `GET /api/v1/dead-letters with a department token answered ${refused.status}`);
    {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript((token) => sessionStorage.setItem('ioc.token', token), issued.body.token);
      const p = await ctx.newPage();
      p.on('pageerror', (e) => pageErrors.push(String(e)));
      await p.goto(`${BASE_URL}/`, { waitUntil: 'load' });
      await p.locator('[data-testid=dashboard]').waitFor({ state: 'visible', timeout: 10_000 });
      await waitFor('the panel to say dead letters are not for this role', async () => (await p.getAttribute(DL, 'data-state')) === 'forbidden', 10_000, 100);
      await waitFor('the department page to be live', async () => (await p.getAttribute('[data-testid=conn-status]', 'data-state')) === 'live', 15_000, 100);
      if (BROKER) {
        await mqttPublish(BROKER, [[`ioc/v1/sensor/hai_chau/dl-${RUN}-dept`, '{not json, department']]);
        await apiLetter(`/dl-${RUN}-dept`);
        await p.waitForTimeout(1_000);
      }
      const rows = await count(p, '[data-testid=dead-letter]');
      const said = await text(p, '[data-testid=dl-note]');
      check(rows === 0 && said.length > 0 && (await p.locator('[data-testid=dl-count]').isHidden()), `a department token's page shows ${rows} dead letters ("${said}")`);
      await ctx.close();
      log(`a department token: GET /api/v1/dead-letters 403, the panel shows none: "${said}"`);
    }

    // --- screenshot --------------------------------------------------------------------------
    if (SCREENSHOT) {
      await waitFor('markers after the reload', async () => (await count(page, '[data-testid=map] path.device-marker')) > 400, 20_000);
      await waitFor('AQI rows after the reload', () => count(page, '[data-testid=aqi-row][data-band]:not([data-band=""])'), 20_000);
      await page.waitForTimeout(1500); // let the last render and the map settle
      await page.screenshot({ path: SCREENSHOT });
      log(`screenshot saved to ${SCREENSHOT}`);
    }

    // --- logout -----------------------------------------------------------------------------
    await page.click('[data-testid=logout]');
    await page.locator('[data-testid=login-form]').waitFor({ state: 'visible', timeout: 5_000 });
    check(!(await page.evaluate(() => sessionStorage.getItem('ioc.token'))), 'the token outlived the logout');
    log('logout returns to the login form and forgets the token');

    check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join('; ')}`);
  } finally {
    await browser.close();
  }
}

const overall = setTimeout(() => {
  console.error(`FAIL: the browser test took longer than ${OVERALL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

main().then(
  () => {
    clearTimeout(overall);
    log('PASS: operator page');
  },
  (e) => {
    clearTimeout(overall);
    console.error(`FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
    process.exitCode = 1;
  },
);
