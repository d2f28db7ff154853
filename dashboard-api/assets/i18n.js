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
    'kpi.partial': 'một phần',
    'kpi.partial.title': 'Số liệu {covered} s trong cửa sổ {window} s: lưu lượng tính theo thời gian có số liệu',
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
    'time.data': 'Dữ liệu',
    'time.raised': 'Phát',
    'time.data_title': 'Thời điểm dữ liệu (giờ sự kiện) của lần đo gây ra cảnh báo, giờ Việt Nam',
    'time.raised_title': 'Thời điểm hệ thống phát cảnh báo, giờ Việt Nam',
    'clock.title': 'Giờ Việt Nam (UTC+7)',
    'dept.transport': 'Sở Giao thông Vận tải',
    'dept.environment': 'Sở Tài nguyên và Môi trường',
    'dept.police': 'Công an thành phố',
    'dept.construction': 'Sở Xây dựng',
    'dept.industry_trade': 'Sở Công Thương',
    'dept.disaster_prevention': 'Ban chỉ huy Phòng chống thiên tai và TKCN',
    'dept.information': 'Sở Thông tin và Truyền thông',
    // Alert messages built on the page from the alert's fields (rule, value, entity, district)
    // and the rule's threshold; rules not listed here show the server's message.
    'rule.aqi_bad': 'VN_AQI giờ {value} (ngưỡng {threshold}, mức Xấu trở lên) tại trạm {entity}, {district}',
    'rule.pm25_hourly_high': 'PM2.5 (NowCast giờ) {value} µg/m³ (ngưỡng {threshold} µg/m³) tại trạm {entity}, {district}',
    'rule.congestion_e_f': 'Ùn tắc mức {level} kéo dài tại nút {entity}, {district}',
    'rule.signal_fault': 'Đèn tín hiệu {entity} lỗi, nhấp nháy hoặc tắt ≥ 2 phút ({district})',
    'rule.heavy_rain_1h': 'Mưa {value} mm/giờ (ngưỡng {threshold} mm) tại {entity}, {district}',
    'rule.water_rising': 'Mực nước tại {entity} lên {value} m/giờ (ngưỡng {threshold} m/giờ), {district}',
    'rule.rain_12h_50mm': 'Mưa {value} mm trong 12 giờ (ngưỡng {threshold} mm) tại {entity}, {district}',
    'rule.rain_24h_100mm': 'Mưa {value} mm trong 24 giờ (ngưỡng {threshold} mm) tại {entity}, {district}',
    'rule.rain_24h_200mm': 'Mưa rất lớn: {value} mm trong 24 giờ (ngưỡng {threshold} mm) tại {entity}, {district}',
    'rule.rain_24h_400mm': 'Mưa đặc biệt lớn: {value} mm trong 24 giờ (ngưỡng {threshold} mm) tại {entity}, {district}',
    'rule.flood_alarm_1': 'Mực nước tại {entity} ({district}) đạt báo động I',
    'rule.flood_alarm_2': 'Mực nước tại {entity} ({district}) đạt báo động II',
    'rule.flood_alarm_3': 'Mực nước tại {entity} ({district}) đạt báo động III: nguy hiểm',
    'rule.wqi_poor': 'VN_WQI {value} (ngưỡng {threshold}, mức Xấu trở xuống) tại trạm {entity}, {district}',
    'rule.flood_warning': 'Cảnh báo ngập tại {district}: mưa lớn và mực nước lên nhanh',
    'rule.bridge_wind_high': 'Gió giật {value} m/s (ngưỡng {threshold} m/s) tại thiết bị quan trắc cầu {entity} ({district})',
    'rule.bridge_wind_force6': 'Gió cấp 6 ({value} m/s trung bình 5 phút) tại cầu {entity}: bố trí lực lượng hướng dẫn trên cầu',
    'rule.bridge_wind_force7': 'Gió cấp 7 ({value} m/s trung bình 5 phút) tại cầu {entity}: cấm xe máy qua cầu Thuận Phước',
    'rule.bridge_wind_force10': 'Gió cấp 10 ({value} m/s trung bình 5 phút) tại cầu {entity}: đóng cầu',
    'rule.crowd_gathering': 'Phát hiện tụ tập đông người tại camera {entity} ({district})',
    'rule.device_offline': 'Thiết bị {entity} ({district}) không gửi dữ liệu ({duration})',
    'rule.storm.rule': 'Bão cảnh báo: {value} cảnh báo của quy tắc `{scope}` vượt ngưỡng thông báo, gộp vào bản tóm tắt này',
    'rule.storm.department': 'Bão cảnh báo: {value} cảnh báo của {scope} vượt ngưỡng thông báo, gộp vào bản tóm tắt này',
    'rule.storm.district': 'Bão cảnh báo: {value} cảnh báo tại {scope} vượt ngưỡng thông báo, gộp vào bản tóm tắt này',
    'duration.min_s': '{min} phút {s} giây',
    'duration.s': '{s} giây',
    'chart.close': 'Đóng biểu đồ',
    'chart.none': 'Không có biểu đồ cho thiết bị này.',
    'chart.traffic.title': 'Lưu lượng và mức phục vụ giao thông, 24 giờ qua',
    'chart.traffic.button': 'Giao thông 24 giờ',
    'chart.air.title': 'VN_AQI giờ, 24 giờ qua',
    'chart.air.button': 'VN_AQI 24 giờ',
    'chart.water.title': 'Mực nước và mức báo động lũ, 24 giờ qua',
    'chart.water.button': 'Mực nước 24 giờ',
    'chart.rain.title': 'Lượng mưa, 24 giờ qua',
    'chart.rain.button': 'Lượng mưa 24 giờ',
    'chart.loading': 'Đang tải lịch sử…',
    'chart.empty': 'Chưa có số liệu trong 24 giờ qua.',
    'chart.failed': 'Không tải được lịch sử',
    'chart.memory': 'Chỉ có số liệu từ khi máy chủ khởi động (lịch sử trong bộ nhớ).',
    'chart.truncated': 'Chỉ hiển thị {n} dòng đầu tiên.',
    'chart.time': 'Thời gian (giờ Việt Nam)',
    'chart.time_axis': 'Giờ Việt Nam (UTC+7)',
    'chart.range': '{from} – {to}, giờ Việt Nam',
    'chart.volume': 'Lưu lượng',
    'chart.los': 'Mức phục vụ (LOS)',
    'chart.aqi': 'VN_AQI giờ',
    'chart.water_level': 'Mực nước',
    'chart.alarm': 'Báo động',
    'chart.no_alarms': 'Thiết bị chưa đăng ký mức báo động lũ.',
    'chart.alarms_failed': 'Không đọc được mức báo động lũ của thiết bị',
    'chart.rain_window': 'Mưa mỗi 5 phút',
    'chart.rain_1h': 'Mưa 1 giờ (cộng dồn)',
    'chart.rain_24h': 'Mưa 24 giờ (cộng dồn)',
    'chart.rain_totals': 'Lượng mưa cộng dồn',
    'chart.bands': 'Mức VN_AQI',
    'chart.data_table': 'Số liệu của biểu đồ',
    'chart.hint': 'Kéo chuột để phóng to, nhấp đúp để xem lại cả khoảng. Esc để đóng.',
    'unit.veh_h': 'xe/giờ',
    'unit.m': 'm',
    'unit.mm': 'mm',
    'dl.title': 'Bản tin bị từ chối',
    'dl.count_title': 'Số bản tin bị từ chối từ khi mở trang',
    'dl.list': 'Bản tin bị từ chối, mới nhất trước',
    'dl.empty': 'Chưa có bản tin bị từ chối.',
    'dl.forbidden': 'Mã truy cập của đơn vị không được xem bản tin bị từ chối.',
    'dl.failed': 'Không tải được bản tin bị từ chối',
    'dl.memory': 'Chỉ các bản tin từ khi máy chủ khởi động (lưu trong bộ nhớ)',
    'dl.older': 'Cũ hơn',
    'dl.loading': 'Đang tải…',
    'dl.no_older': 'Không còn bản tin cũ hơn.',
    'dl.full': 'Đã hiển thị {n} bản tin; xem thêm qua API /api/v1/dead-letters.',
    'dl.truncated': 'còn nữa, tổng {size}',
    'dl.bytes': 'Những byte đầu của bản tin',
    'dl.code.payload_too_large': 'Bản tin quá lớn',
    'dl.code.invalid_utf8': 'Không phải UTF-8',
    'dl.code.malformed_json': 'JSON sai cú pháp',
    'dl.code.missing_field': 'Thiếu trường',
    'dl.code.wrong_type': 'Sai kiểu dữ liệu',
    'dl.code.unknown_field': 'Trường không hợp lệ',
    'dl.code.unknown_kind': 'Loại bản tin không rõ',
    'dl.code.out_of_range': 'Giá trị ngoài phạm vi',
    'dl.code.future_event_time': 'Thời gian ở tương lai',
    'dl.code.source_mismatch': 'Sai nguồn gửi',
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
    'kpi.partial': 'partial',
    'kpi.partial.title': 'Data for {covered} s of the {window} s window: the volume is per the time covered',
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
    'time.data': 'Data',
    'time.raised': 'Raised',
    'time.data_title': 'Event time of the observation that raised the alert, Vietnam time',
    'time.raised_title': 'When the system raised the alert, Vietnam time',
    'clock.title': 'Vietnam time (UTC+7)',
    'dept.transport': 'Department of Transport',
    'dept.environment': 'Department of Natural Resources and Environment',
    'dept.police': 'City Police',
    'dept.construction': 'Department of Construction',
    'dept.industry_trade': 'Department of Industry and Trade',
    'dept.disaster_prevention': 'Disaster Prevention and Search and Rescue Command',
    'dept.information': 'Department of Information and Communications',
    'rule.aqi_bad': 'Hourly VN_AQI {value} (threshold {threshold}, Bad or worse) at station {entity}, {district}',
    'rule.pm25_hourly_high': 'Hourly PM2.5 (NowCast) {value} µg/m³ (threshold {threshold} µg/m³) at station {entity}, {district}',
    'rule.congestion_e_f': 'Sustained congestion, level {level}, at junction {entity}, {district}',
    'rule.signal_fault': 'Traffic signal {entity} faulted, flashing or dark for 2 min or more ({district})',
    'rule.heavy_rain_1h': '{value} mm of rain in an hour (threshold {threshold} mm) at {entity}, {district}',
    'rule.water_rising': 'Water at {entity} rising {value} m/h (threshold {threshold} m/h), {district}',
    'rule.rain_12h_50mm': '{value} mm of rain in 12 hours (threshold {threshold} mm) at {entity}, {district}',
    'rule.rain_24h_100mm': '{value} mm of rain in 24 hours (threshold {threshold} mm) at {entity}, {district}',
    'rule.rain_24h_200mm': 'Very heavy rain: {value} mm in 24 hours (threshold {threshold} mm) at {entity}, {district}',
    'rule.rain_24h_400mm': 'Exceptionally heavy rain: {value} mm in 24 hours (threshold {threshold} mm) at {entity}, {district}',
    'rule.flood_alarm_1': 'Water level at {entity} ({district}) reached flood alarm level I',
    'rule.flood_alarm_2': 'Water level at {entity} ({district}) reached flood alarm level II',
    'rule.flood_alarm_3': 'Water level at {entity} ({district}) reached flood alarm level III: danger',
    'rule.wqi_poor': 'VN_WQI {value} (threshold {threshold}, Poor or worse) at station {entity}, {district}',
    'rule.flood_warning': 'Flood warning for {district}: heavy rain and fast-rising water',
    'rule.bridge_wind_high': 'Gust of {value} m/s (threshold {threshold} m/s) at bridge monitor {entity} ({district})',
    'rule.bridge_wind_force6': 'Beaufort 6 wind ({value} m/s, 5-minute mean) at bridge {entity}: post guides on the bridge',
    'rule.bridge_wind_force7': 'Beaufort 7 wind ({value} m/s, 5-minute mean) at bridge {entity}: motorbikes off Thuận Phước bridge',
    'rule.bridge_wind_force10': 'Beaufort 10 wind ({value} m/s, 5-minute mean) at bridge {entity}: close the bridges',
    'rule.crowd_gathering': 'Crowd detected by camera {entity} ({district})',
    'rule.device_offline': 'Device {entity} ({district}) has sent no data for {duration}',
    'rule.storm.rule': 'Alert storm: {value} alerts of rule `{scope}` over the notification cap, folded into this summary',
    'rule.storm.department': 'Alert storm: {value} alerts of {scope} over the notification cap, folded into this summary',
    'rule.storm.district': 'Alert storm: {value} alerts in {scope} over the notification cap, folded into this summary',
    'duration.min_s': '{min} min {s} s',
    'duration.s': '{s} s',
    'chart.close': 'Close chart',
    'chart.none': 'No chart for this device.',
    'chart.traffic.title': 'Traffic volume and level of service, last 24 hours',
    'chart.traffic.button': 'Traffic, 24 h',
    'chart.air.title': 'Hourly VN_AQI, last 24 hours',
    'chart.air.button': 'VN_AQI, 24 h',
    'chart.water.title': 'Water level and flood alarm levels, last 24 hours',
    'chart.water.button': 'Water level, 24 h',
    'chart.rain.title': 'Rainfall, last 24 hours',
    'chart.rain.button': 'Rainfall, 24 h',
    'chart.loading': 'Loading history…',
    'chart.empty': 'No data in the last 24 hours yet.',
    'chart.failed': 'Could not load the history',
    'chart.memory': 'Only data since the server started (history kept in memory).',
    'chart.truncated': 'Only the first {n} rows are shown.',
    'chart.time': 'Time (Vietnam)',
    'chart.time_axis': 'Vietnam time (UTC+7)',
    'chart.range': '{from} – {to}, Vietnam time',
    'chart.volume': 'Volume',
    'chart.los': 'Level of service (LOS)',
    'chart.aqi': 'Hourly VN_AQI',
    'chart.water_level': 'Water level',
    'chart.alarm': 'Alarm',
    'chart.no_alarms': 'No flood alarm levels are registered for this device.',
    'chart.alarms_failed': 'Could not read the device\'s flood alarm levels',
    'chart.rain_window': 'Rain per 5 min',
    'chart.rain_1h': 'Rain, last hour',
    'chart.rain_24h': 'Rain, last 24 hours',
    'chart.rain_totals': 'Running totals',
    'chart.bands': 'VN_AQI bands',
    'chart.data_table': 'Chart data',
    'chart.hint': 'Drag to zoom, double-click to see the whole range. Esc closes.',
    'unit.veh_h': 'veh/h',
    'unit.m': 'm',
    'unit.mm': 'mm',
    'dl.title': 'Rejected messages',
    'dl.count_title': 'Messages rejected since this page opened',
    'dl.list': 'Rejected messages, newest first',
    'dl.empty': 'No rejected messages yet.',
    'dl.forbidden': 'Department tokens may not see rejected messages.',
    'dl.failed': 'Could not load the rejected messages',
    'dl.memory': 'Only messages since the server started (kept in memory)',
    'dl.older': 'Older',
    'dl.loading': 'Loading…',
    'dl.no_older': 'No older messages.',
    'dl.full': '{n} messages shown; see /api/v1/dead-letters for more.',
    'dl.truncated': 'more follows, {size} in all',
    'dl.bytes': 'The message\'s first bytes',
    'dl.code.payload_too_large': 'Too large',
    'dl.code.invalid_utf8': 'Not UTF-8',
    'dl.code.malformed_json': 'Malformed JSON',
    'dl.code.missing_field': 'Missing field',
    'dl.code.wrong_type': 'Wrong type',
    'dl.code.unknown_field': 'Unknown field',
    'dl.code.unknown_kind': 'Unknown kind',
    'dl.code.out_of_range': 'Out of range',
    'dl.code.future_event_time': 'Time in the future',
    'dl.code.source_mismatch': 'Wrong source',
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

/** Whether there is a label `key`. */
export function has(key) {
  return key in LABELS.vi;
}

/** The label `key` with each `{name}` replaced by `vars[name]` (kept when there is none). */
export function format(key, vars) {
  return t(key).replace(/\{(\w+)\}/g, (m, name) => (vars[name] ?? m));
}

/** Fills every element with `data-i18n` (text), `data-i18n-placeholder`, `-title` or `-label`. */
export function applyStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
  document.title = t('title');
}

export function districtName(slug) {
  const found = DISTRICTS.find(([s]) => s === slug);
  return found ? found[1] : slug ? String(slug) : t('citywide');
}

/** The city's time zone: Vietnam keeps UTC+7 all year (no daylight saving since 1975). */
export const TIME_ZONE = 'Asia/Ho_Chi_Minh';
const CITY_OFFSET_MS = 7 * 3_600_000;

/** Epoch ms as city time (UTC+7), whatever the browser's zone, `HH:MM:SS dd/mm`. */
const TIME = new Intl.DateTimeFormat('vi-VN', {
  timeZone: TIME_ZONE,
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  day: '2-digit',
  month: '2-digit',
  hour12: false,
});

/** The fields of `ms` in city time: hour, minute, second, day, month (two digits each). */
export function cityParts(ms) {
  return Object.fromEntries(TIME.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
}

export function cityTime(ms) {
  if (!Number.isFinite(ms)) return '—';
  const p = cityParts(ms);
  return `${p.hour}:${p.minute}:${p.second} ${p.day}/${p.month}`;
}

/** Epoch ms as an RFC 3339 city time (`2026-11-28T07:00:00+07:00`), for `<time datetime>`. */
export function cityIso(ms) {
  if (!Number.isFinite(ms)) return '';
  return new Date(ms + CITY_OFFSET_MS).toISOString().replace(/\.\d{3}Z$/, '+07:00');
}

export function number(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString(lang === 'vi' ? 'vi-VN' : 'en-GB', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}
