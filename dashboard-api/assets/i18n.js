// Labels of the operator page in Vietnamese (default) and English.

export const DISTRICTS = [
  ['hai_chau', 'Hải Châu'],
  ['thanh_khe', 'Thanh Khê'],
  ['son_tra', 'Sơn Trà'],
  ['ngu_hanh_son', 'Ngũ Hành Sơn'],
  ['lien_chieu', 'Liên Chiểu'],
  ['cam_le', 'Cẩm Lệ'],
  ['hoa_vang', 'Hòa Vang'],
];

const LABELS = {
  vi: {
    title: 'Trung tâm Giám sát, Điều hành Đô thị thông minh Đà Nẵng',
    subtitle: 'IOC · Bảng điều hành trực tuyến',
    'login.title': 'Đăng nhập',
    'login.hint': 'Nhập mã truy cập (token) do quản trị viên cấp.',
    'login.token': 'Mã truy cập',
    'login.submit': 'Đăng nhập',
    'login.refused': 'Mã truy cập không hợp lệ hoặc đã hết hiệu lực.',
    'login.failed': 'Không kết nối được máy chủ.',
    logout: 'Đăng xuất',
    'conn.connecting': 'Đang kết nối',
    'conn.live': 'Trực tuyến',
    'conn.reconnecting': 'Đang kết nối lại',
    'conn.offline': 'Mất kết nối',
    'status.newest': 'Dữ liệu mới nhất',
    'status.messages': 'Bản tin',
    'status.devices': 'Thiết bị',
    'system.degraded': 'Hệ thống đang suy giảm',
    'map.title': 'Bản đồ thiết bị',
    'map.no_tiles': 'Không tải được nền bản đồ',
    'device.online': 'Trực tuyến',
    'device.offline': 'Mất tín hiệu',
    'device.never_seen': 'Chưa từng nhận',
    'districts.title': 'Chỉ số theo quận, huyện',
    'kpi.traffic': 'Giao thông',
    'kpi.veh_h': 'xe/giờ',
    'kpi.speed': 'km/h',
    'kpi.aqi': 'AQI',
    'kpi.devices': 'Thiết bị',
    'kpi.alerts': 'Cảnh báo',
    'kpi.rain': 'Mưa 1 giờ',
    'kpi.window': 'Cửa sổ đến',
    'aqi.title': 'Chất lượng không khí (VN_AQI giờ)',
    'aqi.empty': 'Chưa có số liệu AQI giờ.',
    'aqi.good': 'Tốt',
    'aqi.moderate': 'Trung bình',
    'aqi.poor': 'Kém',
    'aqi.bad': 'Xấu',
    'aqi.very_bad': 'Rất xấu',
    'aqi.hazardous': 'Nguy hại',
    'alerts.title': 'Cảnh báo trực tiếp',
    'alerts.empty': 'Không có cảnh báo.',
    'alerts.ack': 'Xác nhận',
    'alerts.resolve': 'Đóng',
    'alerts.open': 'đang mở',
    'alerts.failed': 'Thao tác thất bại',
    'alerts.forbidden': 'Mã truy cập không có quyền thao tác',
    'sev.info': 'Thông tin',
    'sev.warning': 'Chú ý',
    'sev.major': 'Nghiêm trọng',
    'sev.critical': 'Khẩn cấp',
    'state.active': 'Mới',
    'state.acknowledged': 'Đã xác nhận',
    'state.resolved': 'Đã đóng',
    citywide: 'Toàn thành phố',
  },
  en: {
    title: 'Da Nang Intelligent Operations Center',
    subtitle: 'IOC · Live operations dashboard',
    'login.title': 'Sign in',
    'login.hint': 'Enter the access token your administrator issued.',
    'login.token': 'Access token',
    'login.submit': 'Sign in',
    'login.refused': 'The token was refused (unknown or revoked).',
    'login.failed': 'Cannot reach the server.',
    logout: 'Sign out',
    'conn.connecting': 'Connecting',
    'conn.live': 'Live',
    'conn.reconnecting': 'Reconnecting',
    'conn.offline': 'Disconnected',
    'status.newest': 'Newest data',
    'status.messages': 'Messages',
    'status.devices': 'Devices',
    'system.degraded': 'System degraded',
    'map.title': 'Device map',
    'map.no_tiles': 'Map tiles unavailable',
    'device.online': 'Online',
    'device.offline': 'Offline',
    'device.never_seen': 'Never seen',
    'districts.title': 'District KPIs',
    'kpi.traffic': 'Traffic',
    'kpi.veh_h': 'veh/h',
    'kpi.speed': 'km/h',
    'kpi.aqi': 'AQI',
    'kpi.devices': 'Devices',
    'kpi.alerts': 'Alerts',
    'kpi.rain': 'Rain 1 h',
    'kpi.window': 'Window to',
    'aqi.title': 'Air quality (hourly VN_AQI)',
    'aqi.empty': 'No hourly AQI yet.',
    'aqi.good': 'Good',
    'aqi.moderate': 'Moderate',
    'aqi.poor': 'Poor',
    'aqi.bad': 'Bad',
    'aqi.very_bad': 'Very bad',
    'aqi.hazardous': 'Hazardous',
    // The decision's advice (Quyết định 1459/QĐ-TCMT) in English; Vietnamese uses the KPI row's own text.
    'aqi.advice.good': 'Everyone: enjoy outdoor activities.',
    'aqi.advice.moderate': 'Sensitive groups: watch for coughing or shortness of breath; outdoor activity is still fine.',
    'aqi.advice.poor': 'Anyone with sore eyes, a cough or a sore throat should consider less time outdoors; sensitive groups should cut strenuous activity and time outdoors.',
    'aqi.advice.bad': 'Everyone: cut strenuous activity outdoors and avoid long exercise; sensitive groups should stay indoors.',
    'aqi.advice.very_bad': 'Everyone: keep outdoor activity to a minimum and move it indoors; wear a certified mask outside.',
    'aqi.advice.hazardous': 'Everyone: stay indoors with doors and windows closed; wear a certified mask if you must go out.',
    'alerts.title': 'Live alerts',
    'alerts.empty': 'No alerts.',
    'alerts.ack': 'Acknowledge',
    'alerts.resolve': 'Resolve',
    'alerts.open': 'open',
    'alerts.failed': 'Action failed',
    'alerts.forbidden': 'This token may not act on alerts',
    'sev.info': 'Info',
    'sev.warning': 'Warning',
    'sev.major': 'Major',
    'sev.critical': 'Critical',
    'state.active': 'Active',
    'state.acknowledged': 'Acknowledged',
    'state.resolved': 'Resolved',
    citywide: 'City-wide',
  },
};

const KEY = 'ioc.lang';
let lang = LABELS[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : 'vi';

export function getLang() {
  return lang;
}

export function setLang(next) {
  lang = LABELS[next] ? next : 'vi';
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
  applyStatic();
}

/** The label `key` in the current language (the key itself when there is none). */
export function t(key) {
  return LABELS[lang][key] ?? LABELS.vi[key] ?? key;
}

/** Fills every element with `data-i18n` (text) or `data-i18n-placeholder`. */
export function applyStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.title = t('title');
}

export function districtName(slug) {
  const found = DISTRICTS.find(([s]) => s === slug);
  return found ? found[1] : slug ? String(slug) : t('citywide');
}

/** Epoch ms as city time (UTC+7), `HH:MM:SS dd/mm`. */
const TIME = new Intl.DateTimeFormat('vi-VN', {
  timeZone: 'Asia/Ho_Chi_Minh',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  day: '2-digit',
  month: '2-digit',
  hour12: false,
});

export function cityTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  const p = Object.fromEntries(TIME.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return `${p.hour}:${p.minute}:${p.second} ${p.day}/${p.month}`;
}

export function number(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString(lang === 'vi' ? 'vi-VN' : 'en-GB', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}
