// The device map: Leaflet (bundled, global `L`) with one circle marker per device coloured
// by status, optional tiles, and district labels placed at the middle of their devices. A
// marker's tooltip names the device; its popup (on click) adds the device's history charts.

import { districtName, t, cityTime } from './i18n.js';

export const STATUS_COLOURS = {
  online: '#22c55e',
  offline: '#ef4444',
  never_seen: '#94a3b8',
};
const MAX_TILE_ERRORS = 4;

export class DeviceMap {
  /**
   * @param {(device: object) => {kind: string, label: string, open: () => void}[]} chartActions
   *   the charts a device's popup offers
   */
  constructor(element, config, chartActions = () => []) {
    this.element = element;
    this.chartActions = chartActions;
    this.markers = new Map();
    this.labels = [];
    this.map = L.map(element, {
      zoomControl: true,
      attributionControl: true,
      preferCanvas: false, // SVG: every marker is an element the test can count
      zoomSnap: 0.25,
    });
    this.map.attributionControl.setPrefix('Leaflet');
    this.map.setView([16.05, 108.2], 11);
    this.setTiles(config.tile_url, config.tile_attribution);
  }

  setTiles(url, attribution) {
    this.element.classList.toggle('no-tiles', !url);
    if (!url) return;
    let errors = 0;
    const layer = L.tileLayer(url, { maxZoom: 19, attribution: escapeHtml(attribution || '') });
    layer.on('tileerror', () => {
      errors += 1;
      if (errors === MAX_TILE_ERRORS) {
        this.map.removeLayer(layer);
        this.element.classList.add('no-tiles');
        this.element.dataset.tiles = 'failed';
        this.element.title = t('map.no_tiles');
      }
    });
    layer.addTo(this.map);
    this.element.dataset.tiles = 'on';
  }

  /** Draws every device (replacing what was drawn) and fits the view to them. */
  setDevices(devices) {
    for (const m of this.markers.values()) m.remove();
    this.markers.clear();
    for (const d of devices) {
      if (!Number.isFinite(d.lat) || !Number.isFinite(d.lon)) continue;
      const marker = L.circleMarker([d.lat, d.lon], {
        radius: 5,
        weight: 1,
        color: '#0b1220',
        fillOpacity: 0.9,
        fillColor: STATUS_COLOURS[d.status] || STATUS_COLOURS.never_seen,
        className: 'device-marker',
      });
      marker.device = d;
      marker.bindTooltip(() => tooltip(marker.device), { direction: 'top', offset: [0, -4] });
      marker.bindPopup(() => this.popup(marker), { maxWidth: 320, autoPanPadding: [24, 24] });
      marker.on('popupopen', () => marker.closeTooltip());
      marker.addTo(this.map);
      this.markers.set(d.id, marker);
      this.mark(marker);
    }
    this.element.dataset.markers = String(this.markers.size);
    this.drawLabels(devices);
    if (this.markers.size) {
      const bounds = L.latLngBounds([...this.markers.values()].map((m) => m.getLatLng()));
      this.map.fitBounds(bounds, { padding: [24, 24] });
    }
  }

  /** Restyles a device's marker after its status (in the shared device object) changed. */
  refresh(id) {
    const marker = this.markers.get(id);
    if (!marker) return;
    marker.setStyle({ fillColor: STATUS_COLOURS[marker.device.status] || STATUS_COLOURS.never_seen });
    this.mark(marker);
  }

  mark(marker) {
    const el = marker.getElement();
    if (el) {
      el.dataset.status = marker.device.status;
      el.dataset.device = marker.device.id;
    }
  }

  drawLabels(devices) {
    for (const l of this.labels) l.remove();
    this.labels = [];
    const sums = new Map();
    for (const d of devices) {
      const s = sums.get(d.district) || { lat: 0, lon: 0, n: 0 };
      s.lat += d.lat;
      s.lon += d.lon;
      s.n += 1;
      sums.set(d.district, s);
    }
    for (const [slug, s] of sums) {
      const icon = L.divIcon({
        className: 'district-label',
        html: `<span>${escapeHtml(districtName(slug))}</span>`,
        iconSize: null,
      });
      const label = L.marker([s.lat / s.n, s.lon / s.n], {
        icon,
        interactive: false,
        keyboard: false,
      });
      label.addTo(this.map);
      this.labels.push(label);
    }
  }

  invalidate() {
    this.map.invalidateSize();
  }

  /** A device's popup: what the tooltip says, then a button per history chart. */
  popup(marker) {
    const d = marker.device;
    const box = tooltip(d);
    box.className = 'device-popup';
    box.setAttribute('data-testid', 'device-popup');
    box.dataset.device = d.id;
    const actions = this.chartActions(d);
    const list = document.createElement('div');
    list.className = 'popup-actions';
    for (const a of actions) {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.chart = a.kind;
      button.setAttribute('data-testid', 'popup-chart');
      button.textContent = a.label;
      button.addEventListener('click', () => {
        marker.closePopup();
        a.open();
      });
      list.append(button);
    }
    if (!actions.length) {
      const none = document.createElement('div');
      none.className = 'tt-meta';
      none.textContent = t('chart.none');
      list.append(none);
    }
    box.append(list);
    return box;
  }
}

function tooltip(d) {
  const box = document.createElement('div');
  const add = (cls, text) => {
    const el = document.createElement('div');
    el.className = cls;
    el.textContent = text;
    box.append(el);
  };
  add('tt-name', d.name || d.id);
  add('tt-meta', `${d.id} · ${d.kind} · ${districtName(d.district)}`);
  const seen = d.last_seen_ms ? ` · ${cityTime(d.last_seen_ms)}` : '';
  add(`tt-status status-${d.status}`, t(`device.${d.status}`) + seen);
  return box;
}

export function escapeHtml(s) {
  return String(s ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
}
