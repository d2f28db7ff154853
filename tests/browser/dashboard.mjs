// The operator page in headless Chromium against a running iocd (see scripts/browser-test).
//
//   BASE_URL=http://127.0.0.1:8080 TOKEN=ioc_... [SCREENSHOT=out.png] node dashboard.mjs
//
// Checks: without a token the API refuses (401) and the page shows its login (a wrong token
// is refused there too); with the token the map shows the fleet's markers and the seven
// district tiles; live data arrives (message counter, KPI tiles, newest-data time, hourly
// AQI in its VN_AQI colour, with the decision's health advice); an alert appears and acknowledging / resolving it in the page
// changes it in the API; the language switch is remembered. Exits non-zero on failure.

import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/$/, '');
const TOKEN = process.env.TOKEN || '';
const SCREENSHOT = process.env.SCREENSHOT || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OVERALL_TIMEOUT_MS = 240_000;

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

const count = (page, selector) => page.locator(selector).count();
const text = async (page, selector) => ((await page.locator(selector).first().textContent()) ?? '').trim();
const digits = (s) => Number(String(s).replace(/[^0-9]/g, '') || 0);

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
      timezoneId: 'Asia/Ho_Chi_Minh',
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

    // --- (b) live values change -----------------------------------------------------------
    const volume = await waitFor(
      'a district traffic volume in the tiles',
      async () => {
        const v = await text(page, '[data-testid=district-tile][data-district=hai_chau] [data-testid=kpi-traffic-volume]');
        return /\d/.test(v) ? v : '';
      },
      60_000,
    );
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
    await page.click('[data-testid=lang-switch]');
    const en = await text(page, label);
    check(en === 'Alerts' && vi !== en, `language switch: "${vi}" -> "${en}"`);
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
