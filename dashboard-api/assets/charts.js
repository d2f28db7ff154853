// History charts: a dialog with the last 24 hours of one KPI of one entity, as
// GET /api/v1/kpis/{family} answers it, drawn with uPlot (bundled, global `uPlot`) on a
// city-time axis (UTC+7 whatever the browser's zone). Four charts:
//   traffic  volume and level of service of a district (scope district) or a junction (device)
//   air      hourly VN_AQI of a station, bars in each row's own VN_AQI band colour
//   water    water level of a gauge against its flood alarm levels (registry `flood_alarm_m`)
//   rain     rain per window and the 1-hour and 24-hour totals of a rain gauge
// Each chart also fills a table (read by screen readers) and puts the plotted values, as the
// API gave them, in the figure's `data-points` (read by the browser test).

import { cityIso, cityParts, cityTime, districtName, format, number, t, TIME_ZONE } from './i18n.js';

const HOUR_MS = 3_600_000;
const RANGE_MS = 24 * HOUR_MS;
const FIVE_MIN_MS = 300_000;
const HEIGHT = 340;

export const LOS_LETTERS = ['A', 'B', 'C', 'D', 'E', 'F'];
export const LOS_COLOURS = { A: '#16a34a', B: '#65a30d', C: '#ca8a04', D: '#ea580c', E: '#dc2626', F: '#7f1d1d' };
const ALARM_COLOURS = ['#facc15', '#f97316', '#ef4444'];
const ROMAN = ['I', 'II', 'III'];
const MIN_MS = 60_000;
const TIME_STEPS = [5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440].map((m) => m * MIN_MS);
const AXIS = '#8fa3bf';
const GRID = 'rgba(143, 163, 191, 0.16)';

/** A VN_AQI band colour as the KPI row carries it (`#rrggbb`), or null. */
export function bandColour(colour) {
  return /^#[0-9a-f]{6}$/i.test(colour ?? '') ? colour : null;
}

const losValue = (letter) => LOS_LETTERS.indexOf(letter) + 1 || null;
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.08 : 1];

/**
 * What each chart asks for and draws. A series reads `field` of each row (through `value`
 * when the plotted number is not the field itself); `unit` and `label` are i18n keys.
 */
const KINDS = {
  traffic: {
    family: 'traffic',
    params: (target) => ({ scope: target.scope || 'district', entity: target.id, window_size_ms: FIVE_MIN_MS }),
    series: [
      { field: 'volume_veh_h', label: 'chart.volume', unit: 'unit.veh_h', colour: '#38bdf8', scale: 'y', digits: 0 },
      {
        field: 'level',
        label: 'chart.los',
        colour: '#f59e0b',
        scale: 'y2',
        step: true,
        value: (row) => losValue(row.level),
        text: (v) => LOS_LETTERS[v - 1] ?? '—',
      },
    ],
    scales: {
      y: { label: 'chart.volume', unit: 'unit.veh_h', range: fromZero, digits: 0 },
      y2: {
        label: 'chart.los',
        range: [0.6, 6.4],
        splits: () => [1, 2, 3, 4, 5, 6],
        values: (u, splits) => splits.map((v) => LOS_LETTERS[v - 1] ?? ''),
      },
    },
  },
  air: {
    family: 'air',
    params: (target) => ({ entity: target.id, window_size_ms: HOUR_MS }),
    series: [
      {
        field: 'aqi',
        label: 'chart.aqi',
        colour: '#94a3b8',
        scale: 'y',
        bars: true,
        digits: 0,
        barColour: (row) => bandColour(row.colour),
      },
    ],
    scales: { y: { label: 'chart.aqi', range: fromZero, digits: 0 } },
    bands: true,
  },
  water: {
    family: 'hydrology',
    params: (target) => ({ entity: target.id, window_size_ms: FIVE_MIN_MS }),
    series: [{ field: 'water_level_m', label: 'chart.water_level', unit: 'unit.m', colour: '#38bdf8', scale: 'y', digits: 2 }],
    scales: { y: { label: 'chart.water_level', unit: 'unit.m', digits: 2 } },
    alarms: true,
  },
  rain: {
    family: 'hydrology',
    params: (target) => ({ entity: target.id, window_size_ms: FIVE_MIN_MS }),
    series: [
      { field: 'rain_mm', label: 'chart.rain_window', unit: 'unit.mm', colour: '#60a5fa', scale: 'y', bars: true, digits: 1 },
      { field: 'rain_1h_mm', label: 'chart.rain_1h', unit: 'unit.mm', colour: '#a78bfa', scale: 'y2', digits: 1 },
      { field: 'rain_24h_mm', label: 'chart.rain_24h', unit: 'unit.mm', colour: '#f472b6', scale: 'y2', digits: 1 },
    ],
    // Rain per window on the left; the running totals, which grow far larger, on the right.
    scales: {
      y: { label: 'chart.rain_window', unit: 'unit.mm', range: fromZero, digits: 1 },
      y2: { label: 'chart.rain_totals', unit: 'unit.mm', range: fromZero, digits: 0 },
    },
  },
};

export const CHART_KINDS = Object.keys(KINDS);

let deps = null; // { api, onUnauthorized, isUnauthorized }
let plot = null; // the open uPlot
let opener = null; // the element focused when the dialog opened
let request = 0; // the newest open's number: older answers are dropped

const $ = (sel) => document.querySelector(sel);

/**
 * @param {object} o
 * @param {(path: string) => Promise<object>} o.api the page's authorised GET
 * @param {(e: Error) => boolean} o.isUnauthorized whether an error is a refused token
 * @param {() => void} o.onUnauthorized called then (the page logs out)
 */
export function initCharts(o) {
  deps = o;
  const dialog = $('#chart-dialog');
  $('#chart-close').addEventListener('click', () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener('click', (e) => {
    if (e.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
    if (!inside) dialog.close();
  });
  dialog.addEventListener('close', () => {
    request += 1;
    plot?.destroy();
    plot = null;
    $('#chart-body').replaceChildren();
    if (opener?.isConnected) opener.focus();
    opener = null;
  });
  window.addEventListener('resize', () => {
    if (plot) plot.setSize({ width: chartWidth(), height: HEIGHT });
  });
}

/** Closes the chart dialog if it is open (on logout). */
export function closeChart() {
  const dialog = $('#chart-dialog');
  if (dialog?.open) dialog.close();
}

/**
 * Opens the dialog with the chart `kind` of `target` ({ id, scope?, name, district }).
 * Returns when the chart (or the empty or error message) is shown.
 */
export async function openChart(kind, target) {
  const spec = KINDS[kind];
  if (!spec || !deps) return;
  const dialog = $('#chart-dialog');
  const n = ++request;
  plot?.destroy();
  plot = null;
  if (!dialog.open) {
    opener = document.activeElement;
    dialog.showModal();
  }
  const to = Date.now();
  const from = to - RANGE_MS;
  const query = new URLSearchParams({ ...spec.params(target), from: String(from), to: String(to), limit: '2000' });
  const path = `/api/v1/kpis/${spec.family}?${query}`;

  $('#chart-title').textContent = t(`chart.${kind}.title`);
  const place = target.district && target.district !== target.id ? ` · ${districtName(target.district)}` : '';
  $('#chart-subtitle').textContent = `${target.name || target.id}${place} · ${format('chart.range', { from: cityTime(from), to: cityTime(to) })}`;

  const figure = document.createElement('figure');
  figure.className = 'chart';
  figure.setAttribute('data-testid', 'chart');
  figure.dataset.kind = kind;
  figure.dataset.entity = target.id;
  figure.dataset.query = path;
  figure.dataset.state = 'loading';
  figure.setAttribute('aria-busy', 'true');
  const status = message('chart-status', t('chart.loading'));
  figure.append(status);
  $('#chart-body').replaceChildren(figure);

  let history;
  let device = null;
  try {
    const devicePath = `/api/v1/devices/${encodeURIComponent(target.id)}`;
    [history, device] = await Promise.all([
      deps.api(path),
      // Without the registry entry the level is still drawn, and the note says why the lines are missing.
      spec.alarms ? deps.api(devicePath).catch((e) => (deps.isUnauthorized(e) ? Promise.reject(e) : { error: e.message })) : null,
    ]);
  } catch (e) {
    if (n !== request) return;
    if (deps.isUnauthorized(e)) {
      dialog.close();
      deps.onUnauthorized();
      return;
    }
    figure.dataset.state = 'error';
    figure.removeAttribute('aria-busy');
    status.textContent = `${t('chart.failed')}: ${e.message}`;
    status.classList.add('error');
    status.setAttribute('role', 'alert');
    return;
  }
  if (n !== request) return;
  draw(figure, status, spec, history, device);
}

function message(testid, text) {
  const p = document.createElement('p');
  p.className = 'chart-message';
  p.setAttribute('data-testid', testid);
  p.textContent = text;
  return p;
}

function chartWidth() {
  const body = $('#chart-body');
  return Math.max(320, Math.floor(body.clientWidth || 800));
}

/** A series' label with its unit: `Lưu lượng (xe/giờ)`. */
function seriesLabel(s) {
  return s.unit ? `${t(s.label)} (${t(s.unit)})` : t(s.label);
}

function draw(figure, status, spec, history, device) {
  figure.removeAttribute('aria-busy');
  // Oldest window first, as the API answers (uPlot needs the x values in order).
  const rows = [...(history.rows ?? [])].sort((x, y) => x.window_start_ms - y.window_start_ms);
  const alarms = device?.flood_alarm_m;
  const xs = rows.map((r) => r.window_start_ms);
  const raw = Object.fromEntries(spec.series.map((s) => [s.field, rows.map((r) => r[s.field] ?? null)]));
  const plotted = spec.series.map((s) => rows.map((r) => (s.value ? s.value(r) : r[s.field]) ?? null));
  const levels = spec.alarms && Array.isArray(alarms) && alarms.length === 3 ? alarms : null;
  const colours = spec.series.find((s) => s.barColour);
  const barColours = colours ? rows.map((r) => colours.barColour(r)) : null;

  figure.dataset.source = history.source ?? '';
  figure.dataset.points = JSON.stringify({
    family: history.family,
    from_ms: history.from_ms,
    to_ms: history.to_ms,
    x: xs,
    series: raw,
    ...(levels ? { alarms: levels } : {}),
    ...(barColours ? { colours: barColours } : {}),
    strokes: Object.fromEntries(spec.series.map((s) => [s.field, s.colour])),
  });

  const notes = [];
  if (history.source === 'memory') notes.push({ text: t('chart.memory'), title: history.note ?? '' });
  if (history.truncated) notes.push({ text: format('chart.truncated', { n: number(rows.length) }) });
  if (spec.alarms && device?.error) notes.push({ text: `${t('chart.alarms_failed')}: ${device.error}` });
  else if (spec.alarms && !levels) notes.push({ text: t('chart.no_alarms') });

  const hasData = plotted.some((values) => values.some((v) => v !== null));
  if (!hasData) {
    figure.dataset.state = 'empty';
    status.textContent = t('chart.empty');
    appendNotes(figure, notes);
    return;
  }
  status.remove();

  const size = rows[0]?.window_size_ms ?? FIVE_MIN_MS;
  const anyBars = spec.series.some((s) => s.bars);
  const series = [
    { label: t('chart.time'), value: (u, v) => (v == null ? '—' : cityTime(v)) },
    ...spec.series.map((s) => seriesOptions(s, barColours)),
  ];
  const data = [xs, ...plotted];
  if (levels) {
    levels.forEach((level, i) => {
      series.push({
        label: `${t('chart.alarm')} ${ROMAN[i]} (${number(level, 2)} ${t('unit.m')})`,
        scale: 'y',
        stroke: ALARM_COLOURS[i],
        width: 1.5,
        dash: [8, 5],
        points: { show: false },
        value: () => `${number(level, 2)} ${t('unit.m')}`,
      });
      data.push(xs.map(() => level));
    });
  }

  const axes = [
    {
      stroke: AXIS,
      grid: { stroke: GRID, width: 1 },
      ticks: { stroke: GRID, width: 1 },
      label: t('chart.time_axis'),
      labelSize: 22,
      size: 46,
      // Steps of whole minutes at least: the windows are 5 minutes or an hour long.
      incrs: TIME_STEPS,
      values: timeValues,
    },
  ];
  const scales = {
    x: {
      time: true,
      range: (u, min, max) => (min === max ? [min - size, max + size] : [min, max + (anyBars ? size : 0)]),
    },
  };
  for (const [key, sc] of Object.entries(spec.scales)) {
    scales[key] = { auto: true, ...(sc.range ? { range: sc.range } : {}) };
    axes.push({
      scale: key,
      side: key === 'y2' ? 1 : 3,
      stroke: AXIS,
      grid: { show: key === 'y', stroke: GRID, width: 1 },
      ticks: { stroke: GRID, width: 1 },
      label: sc.unit ? `${t(sc.label)} (${t(sc.unit)})` : t(sc.label),
      labelSize: 22,
      size: 64,
      ...(sc.splits ? { splits: sc.splits } : {}),
      values: sc.values ?? ((u, splits) => splits.map((v) => number(v, Number.isInteger(v) ? 0 : sc.digits))),
    });
  }

  const wrap = document.createElement('div');
  wrap.className = 'chart-canvas';
  wrap.setAttribute('role', 'img');
  wrap.setAttribute('aria-label', `${$('#chart-title').textContent}: ${$('#chart-subtitle').textContent}. ${summary(spec, rows)}`);
  figure.append(wrap);
  figure.dataset.state = 'ready';
  plot = new uPlot(
    {
      width: chartWidth(),
      height: HEIGHT,
      ms: 1,
      tzDate: (ms) => uPlot.tzDate(new Date(ms), TIME_ZONE),
      series,
      axes,
      scales,
      legend: { live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 7 } },
    },
    data,
    wrap,
  );
  if (spec.bands) figure.append(bandLegend(rows));
  appendNotes(figure, notes);
  const hint = document.createElement('p');
  hint.className = 'chart-hint';
  hint.textContent = t('chart.hint');
  figure.append(hint);
  figure.append(table(spec, rows, plotted, levels));
}

function seriesOptions(s, barColours) {
  const text = s.text ?? ((v) => `${number(v, s.digits)}${s.unit ? ` ${t(s.unit)}` : ''}`);
  const o = {
    label: seriesLabel(s),
    scale: s.scale,
    stroke: s.colour,
    width: 2,
    spanGaps: false,
    value: (u, v) => (v == null ? '—' : text(v)),
  };
  if (s.step) {
    o.paths = uPlot.paths.stepped({ align: 1 });
    o.points = { show: false };
  }
  if (s.bars) {
    const perBar = s.barColour && barColours;
    o.width = 0;
    o.fill = perBar ? 'rgba(148, 163, 184, 0.7)' : s.colour;
    o.points = { show: false };
    o.paths = uPlot.paths.bars({
      align: 1,
      size: [0.86, Infinity],
      ...(perBar ? { disp: { fill: { unit: 3, values: () => barColours } } } : {}),
    });
  }
  return o;
}

/** Time axis labels in city time: `HH:MM`, with the date under the first and each new day. */
function timeValues(u, splits) {
  let day = '';
  return splits.map((ms) => {
    const p = cityParts(ms);
    const date = `${p.day}/${p.month}`;
    const label = `${p.hour}:${p.minute}`;
    if (date === day) return label;
    day = date;
    return `${label}\n${date}`;
  });
}

/** The newest value of each series, for the chart's accessible name. */
function summary(spec, rows) {
  const last = rows.at(-1);
  if (!last) return '';
  const parts = spec.series.map((s) => {
    const v = s.value ? s.value(last) : last[s.field];
    const text = v == null ? '—' : s.text ? s.text(v) : `${number(v, s.digits)}${s.unit ? ` ${t(s.unit)}` : ''}`;
    return `${t(s.label)} ${text}`;
  });
  return `${cityTime(last.window_start_ms)}: ${parts.join(', ')}`;
}

/** The VN_AQI bands present in the rows, in their own colours, lowest AQI first. */
function bandLegend(rows) {
  const bands = new Map();
  for (const r of rows) {
    const colour = bandColour(r.colour);
    if (!r.band || !colour || r.aqi == null) continue;
    const seen = bands.get(r.band);
    if (!seen || r.aqi < seen.aqi) bands.set(r.band, { colour, aqi: r.aqi });
  }
  const list = document.createElement('ul');
  list.className = 'chart-bands';
  list.setAttribute('aria-label', t('chart.bands'));
  list.setAttribute('data-testid', 'chart-bands');
  for (const [band, { colour }] of [...bands].sort((x, y) => x[1].aqi - y[1].aqi)) {
    const li = document.createElement('li');
    li.dataset.band = band;
    const swatch = document.createElement('i');
    swatch.style.background = colour;
    li.append(swatch, t(`aqi.${band}`));
    list.append(li);
  }
  return list;
}

function appendNotes(figure, notes) {
  for (const n of notes) {
    const p = document.createElement('p');
    p.className = 'chart-note';
    p.textContent = n.text;
    if (n.title) p.title = n.title;
    figure.append(p);
  }
}

/** The plotted values as a table: hidden from view, read by screen readers. */
function table(spec, rows, plotted, levels) {
  const el = document.createElement('table');
  el.className = 'visually-hidden';
  el.setAttribute('data-testid', 'chart-table');
  const caption = el.createCaption();
  caption.textContent = `${t('chart.data_table')}: ${$('#chart-title').textContent}, ${$('#chart-subtitle').textContent}`;
  if (levels) {
    caption.textContent += `. ${levels.map((l, i) => `${t('chart.alarm')} ${ROMAN[i]} ${number(l, 2)} ${t('unit.m')}`).join(', ')}`;
  }
  const head = el.createTHead().insertRow();
  for (const name of [t('chart.time'), ...spec.series.map(seriesLabel)]) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = name;
    head.append(th);
  }
  const body = el.createTBody();
  rows.forEach((r, i) => {
    const tr = body.insertRow();
    const th = document.createElement('th');
    th.scope = 'row';
    const time = document.createElement('time');
    time.dateTime = cityIso(r.window_start_ms);
    time.textContent = cityTime(r.window_start_ms);
    th.append(time);
    tr.append(th);
    spec.series.forEach((s, j) => {
      const v = plotted[j][i];
      tr.insertCell().textContent = v == null ? '—' : s.text ? s.text(v) : number(v, s.digits);
    });
  });
  return el;
}
