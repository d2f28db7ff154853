//! The KPI tables, the stored registry and the analyst queries of
//! `store/sql/analyst_queries.sql`, against the real ClickHouse on 127.0.0.1:8123
//! (`.ci/servers.sh start`). Every test uses its own database and drops it at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ioc_schemas::{
    AqiBand, AqiKpi, AqiPeriod, BridgeKpi, CameraKpi, Congestion, Department, Device, DeviceChange,
    DeviceStatus, District, HealthKpi, HydrologyKpi, Kind, Kpi, KpiFamily, Medium, Scope,
    TrafficKpi, WaterKpi,
};
use ioc_store::{
    bootstrap_sql, kpi_table, migrations, AqiKpiRow, ClickHouseConfig, HealthKpiRow,
    KpiHistoryQuery, KpiWriter, Store, StoreError, StoreMetrics, KPI_HISTORY_MAX_ROWS,
};
use prometheus::Registry;

const ANALYST_QUERIES: &str = include_str!("../sql/analyst_queries.sql");

const MIN5_MS: u64 = 300_000;
const HOUR_S: u64 = 3_600;
const DAY_S: u64 = 86_400;
/// Da Nang is UTC+7 all year.
const VN_OFFSET_S: u64 = 7 * HOUR_S;

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A config for a database no other test uses, with quick batches and retries.
fn test_config(test: &str) -> ClickHouseConfig {
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    ClickHouseConfig {
        database: format!("ioc_test_kpi_{}_{n}_{test}", std::process::id()),
        batch_max_wait_ms: 50,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        ..ClickHouseConfig::default()
    }
}

fn server_client(cfg: &ClickHouseConfig) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(cfg.url.clone())
        .with_validation(false)
        .with_setting("wait_end_of_query", "1")
}

async fn drop_database(cfg: &ClickHouseConfig) -> Result<()> {
    server_client(cfg)
        .query(&format!("DROP DATABASE IF EXISTS {}", cfg.database))
        .execute()
        .await?;
    Ok(())
}

fn rows_written(registry: &Registry, table: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "ioc_store_rows_written_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "table" && l.value() == table)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The server's clock, in seconds: the queries compare with its `now()`.
async fn server_now_s(client: &clickhouse::Client) -> Result<u64> {
    let now: u32 = client.query("SELECT toUInt32(now())").fetch_one().await?;
    Ok(u64::from(now))
}

/// `(year, month, day)` of a count of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A Da Nang date, as ClickHouse prints a `Date`.
fn local_date(utc_s: u64) -> String {
    let (y, m, d) = civil_from_days((utc_s + VN_OFFSET_S) / DAY_S);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A Da Nang time, as ClickHouse prints a `DateTime`.
fn local_time(utc_s: u64) -> String {
    let s = (utc_s + VN_OFFSET_S) % DAY_S;
    format!(
        "{} {:02}:{:02}:{:02}",
        local_date(utc_s),
        s / 3_600,
        s % 3_600 / 60,
        s % 60
    )
}

/// `(comment, sql)` of every query of the file, in order.
fn analyst_queries() -> Vec<(String, String)> {
    ANALYST_QUERIES
        .split(';')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| {
            let comment = q
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("-- "))
                .unwrap_or_else(|| panic!("a query starts with a `-- ` comment: {q}"));
            (comment.to_owned(), q.to_owned())
        })
        .collect()
}

/// Runs a query and returns its TSV cells.
async fn tsv(client: &clickhouse::Client, sql: &str) -> Result<Vec<Vec<String>>> {
    let mut cursor = client
        .query(sql)
        .fetch_bytes("TSV")
        .with_context(|| format!("running {sql}"))?;
    let bytes = cursor
        .collect()
        .await
        .with_context(|| format!("running {sql}"))?;
    let text = String::from_utf8(bytes.to_vec())?;
    Ok(text
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn device(id: &str, kind: Kind, name: &str, district: District, department: Department) -> Device {
    Device {
        id: id.into(),
        kind,
        name: name.into(),
        district,
        lat: 16.06,
        lon: 108.22,
        department,
        expected_interval_s: 60,
        free_flow_kmh: (kind == Kind::TrafficSignal).then_some(50.0),
        water_class: None,
        flood_alarm_m: id.starts_with("hydro-").then_some(CAM_LE_ALARM_M),
    }
}

fn junction_name(n: usize) -> String {
    match n {
        1 => "Nút giao Hà Huy Tập – Huỳnh Ngọc Huệ".to_owned(),
        2 => "Nút giao Lê Duẩn – Trần Phú".to_owned(),
        3 => "Nút giao Nguyễn Văn Linh – Hàm Nghi".to_owned(),
        n => format!("Nút giao Hải Châu số {n}"),
    }
}

/// The registry as the test leaves it, the changes in the order they are saved (each with its
/// time offset in ms), and the removed ids.
struct Fleet {
    changes: Vec<(DeviceChange, u64)>,
    live: BTreeMap<String, Device>,
    removed: BTreeSet<String>,
}

fn fleet() -> Fleet {
    use DeviceChange::{Remove, Upsert};
    let aq_hc = device(
        "aq-hai_chau-1",
        Kind::Environment,
        "Trạm quan trắc không khí Hải Châu",
        District::HaiChau,
        Department::Environment,
    );
    let aq_hc_renamed = Device {
        name: "Trạm QTKK Hải Châu – Lê Duẩn".into(),
        lat: 16.0712,
        ..aq_hc.clone()
    };
    let aq_st = device(
        "aq-son_tra-1",
        Kind::Environment,
        "Trạm quan trắc không khí Sơn Trà",
        District::SonTra,
        Department::Environment,
    );
    let mut live = vec![
        aq_hc_renamed.clone(),
        aq_st.clone(),
        device(
            "tl-thanh_khe-003",
            Kind::TrafficSignal,
            "Nút giao Điện Biên Phủ – Hà Huy Tập",
            District::ThanhKhe,
            Department::Transport,
        ),
        device(
            "rain-hoa_vang-1",
            Kind::Sensor,
            "Trạm đo mưa Hòa Vang",
            District::HoaVang,
            Department::DisasterPrevention,
        ),
        device(
            "rain-hai_chau-1",
            Kind::Sensor,
            "Trạm đo mưa Hải Châu",
            District::HaiChau,
            Department::DisasterPrevention,
        ),
        device(
            "hydro-cam_le",
            Kind::Sensor,
            "Trạm thủy văn Cẩm Lệ",
            District::CamLe,
            Department::DisasterPrevention,
        ),
        device(
            "wq-han-1",
            Kind::Environment,
            "Trạm quan trắc nước sông Hàn",
            District::HaiChau,
            Department::Environment,
        ),
        device(
            "wq-cu_de-1",
            Kind::Environment,
            "Trạm quan trắc nước sông Cu Đê",
            District::LienChieu,
            Department::Environment,
        ),
        device(
            "bridge-son_tra-1",
            Kind::Sensor,
            "Cầu Rồng",
            District::SonTra,
            Department::Construction,
        ),
        device(
            "bridge-hai_chau-1",
            Kind::Sensor,
            "Cầu sông Hàn",
            District::HaiChau,
            Department::Construction,
        ),
    ];
    for n in 1..=11 {
        live.push(device(
            &format!("tl-hai_chau-{n:03}"),
            Kind::TrafficSignal,
            &junction_name(n),
            District::HaiChau,
            Department::Transport,
        ));
    }
    let camera = device(
        "cam-son_tra-7",
        Kind::CameraEvent,
        "Camera Cầu Rồng",
        District::SonTra,
        Department::Police,
    );

    let mut changes: Vec<(DeviceChange, u64)> = Vec::new();
    let mut at = 1_000;
    for d in live.iter().filter(|d| d.id != aq_hc.id) {
        changes.push((Upsert(d.clone()), at));
        at += 1_000;
    }
    changes.push((Upsert(camera), at));
    // An update: the newest change wins.
    changes.push((Upsert(aq_hc), at + 1_000));
    changes.push((Upsert(aq_hc_renamed), at + 2_000));
    // A stale change (older than the stored one) loses.
    changes.push((
        Upsert(Device {
            name: "Tên cũ".into(),
            ..aq_st
        }),
        500,
    ));
    // Removals: a known device (the tombstone keeps its fields) and an unknown id.
    changes.push((
        Remove {
            id: "cam-son_tra-7".into(),
        },
        at + 3_000,
    ));
    changes.push((
        Remove {
            id: "ghost-1".into(),
        },
        at + 4_000,
    ));
    // Removed, then added back.
    changes.push((
        Remove {
            id: "tl-hai_chau-011".into(),
        },
        at + 5_000,
    ));
    let back = live
        .iter()
        .find(|d| d.id == "tl-hai_chau-011")
        .cloned()
        .expect("junction 11 is in the fleet");
    changes.push((Upsert(back), at + 6_000));

    Fleet {
        changes,
        live: live.into_iter().map(|d| (d.id.clone(), d)).collect(),
        removed: ["cam-son_tra-7".to_owned(), "ghost-1".to_owned()].into(),
    }
}

/// The times the KPI rows are placed at, from the server's clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Start of the current hour, s.
    hour: u64,
    /// Start of today in Da Nang, s.
    day: u64,
    /// Now rounded down to 5 minutes, s.
    min5: u64,
}

impl Clock {
    fn new(now_s: u64) -> Clock {
        Clock {
            hour: now_s / HOUR_S * HOUR_S,
            day: (now_s + VN_OFFSET_S) / DAY_S * DAY_S - VN_OFFSET_S,
            min5: now_s / 300 * 300,
        }
    }
}

fn ms(s: u64) -> u64 {
    s * 1_000
}

fn traffic(
    scope: Scope,
    entity: &str,
    district: District,
    start_s: u64,
    size_ms: u64,
    level: Congestion,
    speed: f64,
) -> Kpi {
    Kpi::Traffic(TrafficKpi {
        scope,
        entity_id: entity.into(),
        district,
        window_start_ms: ms(start_s),
        window_size_ms: size_ms,
        junctions: 1,
        volume_veh_h: 1_200.0,
        occupancy_pct: 30.0,
        mean_speed_kmh: speed,
        queue_m: 40.0,
        level,
        availability_pct: 100.0,
        free_flow_kmh: Some(45.0),
        worst_level: Some(level.max(Congestion::D)),
        covered_ms: Some(size_ms),
    })
}

fn aqi(
    station: &str,
    district: District,
    period: AqiPeriod,
    start_s: u64,
    value: Option<u32>,
    dominant: Option<&str>,
    coverage: u32,
) -> Kpi {
    let band = value.map(AqiBand::of);
    Kpi::Air(AqiKpi {
        station_id: station.into(),
        district,
        period,
        window_start_ms: ms(start_s),
        window_size_ms: match period {
            AqiPeriod::Hour => ms(HOUR_S),
            AqiPeriod::Day => ms(DAY_S),
        },
        pm25: value.map(|_| 25.0),
        pm10: value.map(|_| 40.0),
        o3: None,
        no2: Some(40.0),
        so2: None,
        co: None,
        o3_8h: (period == AqiPeriod::Day).then_some(95.0),
        aqi_pm25: value,
        aqi_pm10: value.map(|v| v / 2),
        aqi_o3: None,
        aqi_no2: Some(20),
        aqi_so2: None,
        aqi_co: None,
        aqi: value,
        dominant: dominant.map(str::to_owned),
        band,
        colour: band.map(|b| b.colour().to_owned()),
        advice: band.map(|b| b.advice()),
        coverage,
    })
}

/// The river station's flood alarm levels I, II and III, m.
const CAM_LE_ALARM_M: [f64; 3] = [1.0, 1.8, 2.5];

fn hydrology(
    gauge: &str,
    district: District,
    start_s: u64,
    rain_24h: Option<f64>,
    level_m: Option<f64>,
    coverage: u32,
) -> Kpi {
    Kpi::Hydrology(HydrologyKpi {
        gauge_id: gauge.into(),
        district,
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        rain_mm: rain_24h.map(|_| 1.2),
        rain_1h_mm: rain_24h.map(|_| 6.0),
        rain_3h_mm: rain_24h.map(|_| 15.0),
        rain_24h_mm: rain_24h,
        rain_12h_mm: None,
        water_level_m: level_m,
        rise_rate_m_per_h: level_m.map(|_| 0.12),
        coverage,
        alarm_level: level_m.map(|m| CAM_LE_ALARM_M.iter().filter(|a| m >= **a).count() as u8),
    })
}

fn health_device(id: &str, d: District, dept: Department, start_s: u64, s: DeviceStatus) -> Kpi {
    let online = u32::from(s == DeviceStatus::Online);
    Kpi::Health(HealthKpi {
        scope: Scope::Device,
        entity_id: id.into(),
        district: Some(d),
        department: Some(dept),
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        devices: 1,
        online,
        offline: 1 - online,
        readings: u64::from(online) * 5,
        expected: 5,
        completeness_pct: f64::from(online) * 100.0,
        last_seen_ms: (s != DeviceStatus::NeverSeen).then(|| ms(start_s) - 60_000),
        status: Some(s),
    })
}

fn city_health(start_s: u64) -> HealthKpi {
    HealthKpi {
        scope: Scope::City,
        entity_id: "da_nang".into(),
        district: None,
        department: None,
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        devices: 1_134,
        online: 1_100,
        offline: 34,
        readings: 21_000,
        expected: 22_000,
        completeness_pct: 95.45,
        last_seen_ms: None,
        status: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn water(
    station: &str,
    district: District,
    medium: Medium,
    start_s: u64,
    parameter: &str,
    value: f64,
    limits: (Option<f64>, Option<f64>),
    standard: &str,
) -> Kpi {
    let (limit_min, limit_max) = limits;
    let exceeded = limit_min.is_some_and(|l| value < l) || limit_max.is_some_and(|l| value > l);
    Kpi::Water(WaterKpi {
        station_id: station.into(),
        district,
        medium,
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        parameter: parameter.into(),
        value,
        limit_min,
        limit_max,
        standard: standard.into(),
        exceeded,
    })
}

fn camera(
    district: District,
    event_type: &str,
    start_s: u64,
    events: u64,
    per100: Option<f64>,
) -> Kpi {
    Kpi::Camera(CameraKpi {
        district,
        event_type: event_type.into(),
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        events,
        cameras: 2,
        per_hour: events as f64 * 12.0,
        violations_per_100_vehicles: per100,
        covered_ms: Some(MIN5_MS),
    })
}

fn bridge(
    id: &str,
    district: District,
    start_s: u64,
    wind: Option<(f64, f64)>,
    strain: Option<f64>,
) -> Kpi {
    Kpi::Bridge(BridgeKpi {
        device_id: id.into(),
        district,
        window_start_ms: ms(start_s),
        window_size_ms: MIN5_MS,
        wind_mean_ms: wind.map(|w| w.0),
        wind_max_ms: wind.map(|w| w.1),
        strain_mean_ue: strain.map(|s| s - 50.0),
        strain_min_ue: strain.map(|s| s - 120.0),
        strain_max_ue: strain,
        temperature_c: Some(29.5),
        humidity_pct: Some(78.0),
    })
}

const QCVN_08: &str = "QCVN 08-MT:2015/BTNMT, cột A2";

/// The KPI rows of every family, one per key.
fn kpis(c: Clock) -> Vec<Kpi> {
    use Congestion::{A, B, C, D, E, F};
    use District::{CamLe, HaiChau, HoaVang, LienChieu, SonTra, ThanhKhe};
    let mut k = Vec::new();

    // Traffic: four 5-minute windows today for each of 11 junctions of Hải Châu.
    let junctions: [([Congestion; 4], [f64; 4]); 3] = [
        ([C, E, F, D], [30.0, 18.0, 10.0, 22.0]),
        ([B, C, E, E], [40.0, 35.0, 15.0, 14.0]),
        ([A, A, B, B], [50.0, 48.0, 44.0, 42.0]),
    ];
    for n in 1..=11 {
        let (levels, speeds) = junctions
            .get(n - 1)
            .copied()
            .unwrap_or(([A; 4], [if n == 11 { 60.0 } else { 55.0 }; 4]));
        for w in 0..4 {
            k.push(traffic(
                Scope::Device,
                &format!("tl-hai_chau-{n:03}"),
                HaiChau,
                c.day + w as u64 * 300,
                MIN5_MS,
                levels[w],
                speeds[w],
            ));
        }
    }
    // Not in the query: a district row, another district, yesterday, a 1-minute window.
    k.push(traffic(
        Scope::District,
        "hai_chau",
        HaiChau,
        c.day,
        MIN5_MS,
        F,
        9.0,
    ));
    k.push(traffic(
        Scope::Device,
        "tl-thanh_khe-003",
        ThanhKhe,
        c.day,
        MIN5_MS,
        F,
        8.0,
    ));
    k.push(traffic(
        Scope::Device,
        "tl-hai_chau-001",
        HaiChau,
        c.day - HOUR_S,
        MIN5_MS,
        F,
        7.0,
    ));
    k.push(traffic(
        Scope::Device,
        "tl-hai_chau-001",
        HaiChau,
        c.day,
        60_000,
        F,
        6.0,
    ));

    // AQI: three complete hours in the last day, one 2 days old, a daily row, a station
    // without PM (no AQI).
    let hour = AqiPeriod::Hour;
    k.push(aqi(
        "aq-hai_chau-1",
        HaiChau,
        hour,
        c.hour - 3 * HOUR_S,
        Some(42),
        Some("pm25"),
        12,
    ));
    k.push(aqi(
        "aq-hai_chau-1",
        HaiChau,
        hour,
        c.hour - 2 * HOUR_S,
        Some(78),
        Some("pm10"),
        12,
    ));
    k.push(aqi(
        "aq-hai_chau-1",
        HaiChau,
        hour,
        c.hour - HOUR_S,
        Some(120),
        Some("pm25"),
        12,
    ));
    k.push(aqi(
        "aq-hai_chau-1",
        HaiChau,
        hour,
        c.hour - 48 * HOUR_S,
        Some(150),
        Some("pm25"),
        12,
    ));
    k.push(aqi(
        "aq-hai_chau-1",
        HaiChau,
        AqiPeriod::Day,
        c.day - DAY_S,
        Some(70),
        Some("pm25"),
        288,
    ));
    k.push(aqi(
        "aq-son_tra-1",
        SonTra,
        hour,
        c.hour - HOUR_S,
        None,
        None,
        12,
    ));

    // Rain: today and yesterday in Hòa Vang, yesterday in Hải Châu, a river station without
    // rain (at báo động II, then III), a row 10 days old.
    k.push(hydrology(
        "rain-hoa_vang-1",
        HoaVang,
        c.day + HOUR_S,
        Some(48.0),
        None,
        288,
    ));
    k.push(hydrology(
        "rain-hoa_vang-1",
        HoaVang,
        c.day + 2 * HOUR_S,
        Some(62.4),
        None,
        288,
    ));
    k.push(hydrology(
        "rain-hoa_vang-1",
        HoaVang,
        c.day - 12 * HOUR_S,
        Some(20.1),
        None,
        288,
    ));
    k.push(hydrology(
        "rain-hai_chau-1",
        HaiChau,
        c.day - 22 * HOUR_S,
        Some(15.5),
        None,
        288,
    ));
    for (at, metres) in [(c.day + HOUR_S, 1.85), (c.day + 2 * HOUR_S, 2.6)] {
        k.push(hydrology("hydro-cam_le", CamLe, at, None, Some(metres), 3));
    }
    k.push(hydrology(
        "rain-hai_chau-1",
        HaiChau,
        c.day - 10 * DAY_S,
        Some(99.0),
        None,
        288,
    ));

    // Health: two windows two hours ago; the newest decides.
    let (w1, w2) = (c.hour - 2 * HOUR_S, c.hour - 2 * HOUR_S + 300);
    let (tr, env, dis, pol) = (
        Department::Transport,
        Department::Environment,
        Department::DisasterPrevention,
        Department::Police,
    );
    use DeviceStatus::{NeverSeen, Offline, Online};
    k.push(health_device("tl-hai_chau-002", HaiChau, tr, w1, Online));
    k.push(health_device("tl-hai_chau-002", HaiChau, tr, w2, Offline));
    k.push(health_device("rain-hoa_vang-1", HoaVang, dis, w1, Offline));
    k.push(health_device("rain-hoa_vang-1", HoaVang, dis, w2, Online));
    k.push(health_device("wq-han-1", HaiChau, env, w1, NeverSeen));
    k.push(health_device("wq-han-1", HaiChau, env, w2, NeverSeen));
    k.push(health_device("aq-son_tra-1", SonTra, env, w2, Offline));
    // Removed from the registry: not counted.
    k.push(health_device("cam-son_tra-7", SonTra, pol, w2, Offline));
    // Too old.
    k.push(health_device(
        "tl-hai_chau-003",
        HaiChau,
        tr,
        c.hour - 2 * DAY_S,
        Offline,
    ));
    k.push(Kpi::Health(HealthKpi {
        scope: Scope::District,
        entity_id: "hai_chau".into(),
        district: Some(HaiChau),
        ..city_health(w2)
    }));
    k.push(Kpi::Health(city_health(w2)));

    // Water: three days of a river station, one day of another, one row 10 days old.
    let (han, cu_de) = ("wq-han-1", "wq-cu_de-1");
    let sw = Medium::SurfaceWater;
    let ph = (Some(6.0), Some(8.5));
    let day = |n: u64| c.min5 - n * DAY_S;
    k.push(water(han, HaiChau, sw, day(1), "ph", 7.1, ph, QCVN_08));
    k.push(water(han, HaiChau, sw, day(2), "ph", 9.2, ph, QCVN_08));
    k.push(water(han, HaiChau, sw, day(3), "ph", 5.8, ph, QCVN_08));
    k.push(water(
        han,
        HaiChau,
        sw,
        day(1),
        "do",
        6.2,
        (Some(5.0), None),
        QCVN_08,
    ));
    k.push(water(
        han,
        HaiChau,
        sw,
        day(2),
        "do",
        3.5,
        (Some(5.0), None),
        QCVN_08,
    ));
    k.push(water(
        han,
        HaiChau,
        sw,
        day(1),
        "cod",
        12.0,
        (None, Some(15.0)),
        QCVN_08,
    ));
    k.push(water(
        cu_de,
        LienChieu,
        Medium::RiverWater,
        day(1),
        "nh4",
        0.9,
        (None, Some(0.3)),
        QCVN_08,
    ));
    k.push(water(han, HaiChau, sw, day(10), "ph", 9.9, ph, QCVN_08));

    // Camera: violations today in two districts, plate reads, yesterday.
    k.push(camera(HaiChau, "violations", c.day, 3, Some(1.5)));
    k.push(camera(HaiChau, "violations", c.day + 300, 2, Some(1.0)));
    k.push(camera(HaiChau, "violations", c.day + HOUR_S, 4, Some(2.0)));
    k.push(camera(SonTra, "violations", c.day + 600, 1, Some(0.5)));
    k.push(camera(HaiChau, "plate_read", c.day, 120, None));
    k.push(camera(HaiChau, "violations", c.day - 600, 7, Some(3.0)));

    // Bridges: today and yesterday; a window without wind or strain; 10 days old.
    let (rong, han_bridge) = ("bridge-son_tra-1", "bridge-hai_chau-1");
    k.push(bridge(
        rong,
        SonTra,
        c.day + HOUR_S,
        Some((6.0, 12.3)),
        Some(410.0),
    ));
    k.push(bridge(
        rong,
        SonTra,
        c.day + HOUR_S + 300,
        Some((8.0, 18.9)),
        Some(455.5),
    ));
    k.push(bridge(
        rong,
        SonTra,
        c.day - 12 * HOUR_S,
        Some((10.0, 22.4)),
        Some(380.0),
    ));
    k.push(bridge(
        han_bridge,
        HaiChau,
        c.day + HOUR_S,
        Some((7.0, 15.0)),
        Some(300.0),
    ));
    k.push(bridge(
        han_bridge,
        HaiChau,
        c.day + HOUR_S + 300,
        None,
        None,
    ));
    k.push(bridge(
        rong,
        SonTra,
        c.day - 10 * DAY_S,
        Some((30.0, 40.0)),
        Some(900.0),
    ));
    k
}

/// Rows written after the first ones are in: rebuilt partial periods (a lower coverage, which
/// must not replace the complete ones) and a replayed traffic window.
fn late_kpis(c: Clock) -> Vec<Kpi> {
    vec![
        aqi(
            "aq-hai_chau-1",
            District::HaiChau,
            AqiPeriod::Hour,
            c.hour - HOUR_S,
            Some(60),
            Some("pm25"),
            4,
        ),
        hydrology(
            "rain-hoa_vang-1",
            District::HoaVang,
            c.day + 2 * HOUR_S,
            Some(12.0),
            None,
            40,
        ),
        traffic(
            Scope::Device,
            "tl-hai_chau-001",
            District::HaiChau,
            c.day + 300,
            MIN5_MS,
            Congestion::E,
            18.0,
        ),
    ]
}

/// What each analyst query must return from [`fleet`] and [`kpis`], with a word its comment
/// must contain (so a reordered file fails clearly).
fn expected_results(c: Clock) -> Vec<(&'static str, Vec<Vec<String>>)> {
    let today = local_date(c.day);
    let yesterday = local_date(c.day - DAY_S);
    let aq_hc = "Trạm QTKK Hải Châu – Lê Duẩn";
    let mut worst = vec![
        row(&["tl-hai_chau-001", &junction_name(1), "4", "2", "F", "20"]),
        row(&["tl-hai_chau-002", &junction_name(2), "4", "2", "E", "26"]),
        row(&["tl-hai_chau-003", &junction_name(3), "4", "0", "B", "46"]),
    ];
    for n in 4..=10 {
        worst.push(row(&[
            &format!("tl-hai_chau-{n:03}"),
            &junction_name(n),
            "4",
            "0",
            "A",
            "55",
        ]));
    }
    let han = "Trạm quan trắc nước sông Hàn";
    vec![
        (
            "VN_AQI",
            vec![
                row(&[
                    "aq-hai_chau-1",
                    aq_hc,
                    "hai_chau",
                    &local_time(c.hour - 3 * HOUR_S),
                    "42",
                    "good",
                    "pm25",
                    "12",
                ]),
                row(&[
                    "aq-hai_chau-1",
                    aq_hc,
                    "hai_chau",
                    &local_time(c.hour - 2 * HOUR_S),
                    "78",
                    "moderate",
                    "pm10",
                    "12",
                ]),
                row(&[
                    "aq-hai_chau-1",
                    aq_hc,
                    "hai_chau",
                    &local_time(c.hour - HOUR_S),
                    "120",
                    "poor",
                    "pm25",
                    "12",
                ]),
                row(&[
                    "aq-son_tra-1",
                    "Trạm quan trắc không khí Sơn Trà",
                    "son_tra",
                    &local_time(c.hour - HOUR_S),
                    "\\N",
                    "\\N",
                    "\\N",
                    "12",
                ]),
            ],
        ),
        ("congested junctions", worst),
        (
            "rainfall",
            vec![
                row(&[&yesterday, "hai_chau", "15.5", "rain-hai_chau-1"]),
                row(&[&yesterday, "hoa_vang", "20.1", "rain-hoa_vang-1"]),
                row(&[&today, "hoa_vang", "62.4", "rain-hoa_vang-1"]),
            ],
        ),
        (
            "offline",
            vec![
                row(&["transport", "1", "['tl-hai_chau-002']"]),
                row(&["environment", "2", "['aq-son_tra-1','wq-han-1']"]),
            ],
        ),
        (
            "Water-quality",
            vec![
                row(&[
                    "wq-han-1",
                    han,
                    "surface_water",
                    "ph",
                    "3",
                    "2",
                    "5.8",
                    "9.2",
                    QCVN_08,
                ]),
                row(&[
                    "wq-cu_de-1",
                    "Trạm quan trắc nước sông Cu Đê",
                    "river_water",
                    "nh4",
                    "1",
                    "1",
                    "0.9",
                    "0.9",
                    QCVN_08,
                ]),
                row(&[
                    "wq-han-1",
                    han,
                    "surface_water",
                    "do",
                    "2",
                    "1",
                    "3.5",
                    "6.2",
                    QCVN_08,
                ]),
            ],
        ),
        (
            "Flood alarm",
            vec![row(&[
                &today,
                "hydro-cam_le",
                "Trạm thủy văn Cẩm Lệ",
                "3",
                "2.6",
                "[1,1.8,2.5]",
            ])],
        ),
        (
            "Camera violations",
            vec![
                row(&["hai_chau", &local_time(c.day), "5", "1.25"]),
                row(&["hai_chau", &local_time(c.day + HOUR_S), "4", "2"]),
                row(&["son_tra", &local_time(c.day), "1", "0.5"]),
            ],
        ),
        (
            "bridge",
            vec![
                row(&[
                    &yesterday,
                    "bridge-son_tra-1",
                    "Cầu Rồng",
                    "22.4",
                    "10",
                    "380",
                ]),
                row(&[
                    &today,
                    "bridge-hai_chau-1",
                    "Cầu sông Hàn",
                    "15",
                    "7",
                    "300",
                ]),
                row(&[&today, "bridge-son_tra-1", "Cầu Rồng", "18.9", "7", "455.5"]),
            ],
        ),
    ]
}

#[test]
fn the_query_file_is_well_formed() {
    let queries = analyst_queries();
    assert!(queries.len() >= 6, "{} queries", queries.len());
    for (comment, sql) in &queries {
        assert!(!comment.trim().is_empty());
        assert!(sql.contains("SELECT"), "{sql}");
        assert!(
            sql.contains("FROM ioc."),
            "tables are prefixed with ioc.: {sql}"
        );
        // `?` would be taken for a bind placeholder by the client.
        assert!(!sql.contains('?'), "{sql}");
        for absent in ["DateTime64", "LowCardinality", "{", "FORMAT"] {
            assert!(!sql.contains(absent), "{absent} in {sql}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_and_devices_are_stored_and_the_analyst_queries_answer() -> Result<()> {
    let cfg = test_config("queries");
    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let client = store.client().clone();

    // Anchor on the server's clock; keep clear of midnight in Da Nang so "today" holds for
    // the whole test.
    let mut now_s = server_now_s(&client).await?;
    let to_midnight = Clock::new(now_s).day + DAY_S - now_s;
    if to_midnight < 120 {
        tokio::time::sleep(Duration::from_secs(to_midnight + 2)).await;
        now_s = server_now_s(&client).await?;
    }
    let clock = Clock::new(now_s);

    // The registry: inserts, an update, a stale change, removals, a device added back.
    let fleet = fleet();
    let base_ms = ms(now_s) - 3_600_000;
    for (change, offset) in &fleet.changes {
        store.save_device_change(change, base_ms + offset).await?;
    }
    let stored = store.load_devices().await?;
    assert_eq!(stored.devices, fleet.live);
    assert_eq!(stored.removed, fleet.removed);
    let (name, deleted): (String, u8) = client
        .query("SELECT name, deleted FROM devices FINAL WHERE id = 'cam-son_tra-7'")
        .fetch_one()
        .await?;
    assert_eq!(
        (name.as_str(), deleted),
        ("Camera Cầu Rồng", 1),
        "a tombstone keeps the last known fields"
    );
    // Start-up precedence: the file, then the stored changes.
    let file_only = device(
        "tl-cam_le-001",
        Kind::TrafficSignal,
        "Nút giao Cách Mạng Tháng Tám",
        District::CamLe,
        Department::Transport,
    );
    let file: BTreeMap<String, Device> = [
        fleet.changes[0].0.clone(),
        DeviceChange::Upsert(file_only.clone()),
    ]
    .into_iter()
    .filter_map(|c| match c {
        DeviceChange::Upsert(d) => Some(d),
        DeviceChange::Remove { .. } => None,
    })
    .chain(std::iter::once(device(
        "cam-son_tra-7",
        Kind::CameraEvent,
        "Camera Cầu Rồng",
        District::SonTra,
        Department::Police,
    )))
    .map(|d| (d.id.clone(), d))
    .collect();
    let merged = stored.overlay(file);
    let mut expected = fleet.live.clone();
    expected.insert(file_only.id.clone(), file_only);
    assert_eq!(merged, expected);

    // KPIs of every family through the writers, some from a blocking thread.
    let (writers, tasks) = store.writers();
    let rows = kpis(clock);
    let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
    for k in &rows {
        *per_table.entry(KpiWriter::table_of(k)).or_default() += 1;
    }
    assert_eq!(per_table.len(), 7, "every family: {per_table:?}");
    let (blocking, async_rows): (Vec<Kpi>, Vec<Kpi>) = rows
        .iter()
        .cloned()
        .partition(|k| matches!(k, Kpi::Health(_) | Kpi::Bridge(_)));
    for k in &async_rows {
        writers.kpis.send(k).await?;
    }
    let kw = writers.kpis.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        for k in &blocking {
            kw.blocking_send(k)?;
        }
        Ok(())
    })
    .await??;
    wait_until("the first KPI rows", Duration::from_secs(10), || {
        per_table
            .iter()
            .all(|(table, n)| rows_written(&registry, table) >= *n as f64)
    })
    .await?;
    // In separate inserts, as after a restart.
    let late = late_kpis(clock);
    for k in &late {
        writers.kpis.send(k).await?;
    }
    drop(writers);
    tasks.join().await?;

    for (table, n) in &per_table {
        let extra = late
            .iter()
            .filter(|k| KpiWriter::table_of(k) == *table)
            .count() as f64;
        assert_eq!(rows_written(&registry, table), *n as f64 + extra, "{table}");
        let stored: u64 = client
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await?;
        assert_eq!(stored, *n, "{table}: one row per key after FINAL");
    }

    // The history the API serves reads every family back into the KPIs written: one per key,
    // each as written (the late ones where they replaced a row), oldest window first.
    let written: Vec<&Kpi> = rows.iter().chain(&late).collect();
    for family in KpiFamily::ALL {
        let query = KpiHistoryQuery {
            family,
            from_ms: ms(clock.day) - 30 * 86_400_000,
            to_ms: ms(now_s) + 86_400_000,
            entity: None,
            district: None,
            scope: None,
            window_size_ms: None,
            limit: KPI_HISTORY_MAX_ROWS,
        };
        let history = store.kpi_history(&query).await?;
        let (table, _) = kpi_table(family);
        assert_eq!(history.len() as u64, per_table[table], "{table}");
        for kpi in &history {
            assert!(written.contains(&kpi), "{table}: {kpi:?} was not written");
        }
        assert!(history
            .windows(2)
            .all(|w| w[0].window_start_ms() <= w[1].window_start_ms()));
    }
    // Camera rows are per district: an entity that is no district matches nothing.
    for (entity, some) in [("hai_chau", true), ("not a district", false)] {
        let camera = KpiHistoryQuery {
            family: KpiFamily::Camera,
            from_ms: 0,
            to_ms: ms(now_s) + 86_400_000,
            entity: Some(entity.into()),
            district: None,
            scope: None,
            window_size_ms: None,
            limit: 100,
        };
        let found = store.kpi_history(&camera).await?;
        assert_eq!(!found.is_empty(), some, "{entity}: {found:?}");
        assert!(found.iter().all(|k| k.entity_id() == entity));
    }
    let one = KpiHistoryQuery {
        family: KpiFamily::Health,
        from_ms: 0,
        to_ms: ms(now_s) + 86_400_000,
        entity: Some("da_nang".into()),
        district: None,
        scope: Some(Scope::City),
        window_size_ms: None,
        limit: 10,
    };
    assert_eq!(
        store.kpi_history(&one).await?,
        vec![Kpi::Health(city_health(clock.hour - 2 * HOUR_S + 300))]
    );

    // Nullable and Enum8 columns round-trip.
    let city: Vec<HealthKpiRow> = client
        .query("SELECT ?fields FROM kpi_health FINAL WHERE scope = 'city'")
        .fetch_all()
        .await?;
    assert_eq!(
        city,
        vec![HealthKpiRow::from(&city_health(
            clock.hour - 2 * HOUR_S + 300
        ))]
    );
    let no_pm: Vec<AqiKpiRow> = client
        .query("SELECT ?fields FROM kpi_aqi FINAL WHERE station_id = 'aq-son_tra-1'")
        .fetch_all()
        .await?;
    let expected_no_pm: Vec<AqiKpiRow> = rows
        .iter()
        .filter_map(|k| match k {
            Kpi::Air(a) if a.station_id == "aq-son_tra-1" => Some(AqiKpiRow::from(a)),
            _ => None,
        })
        .collect();
    assert_eq!(no_pm, expected_no_pm);
    assert_eq!(no_pm[0].band, None);

    // Every analyst query, against this database.
    let queries = analyst_queries();
    let expected = expected_results(clock);
    assert_eq!(
        queries.len(),
        expected.len(),
        "a new query needs its expected rows here"
    );
    // A daily row says which city day it is.
    let local_day = tsv(
        &client,
        &format!(
            "SELECT toString(local_day) FROM {}.kpi_aqi FINAL WHERE period = 'day'",
            cfg.database
        ),
    )
    .await?;
    assert_eq!(local_day, [row(&[&local_date(clock.day - DAY_S)])]);
    let mut answers = Vec::new();
    for ((comment, sql), (word, rows)) in queries.iter().zip(expected) {
        assert!(
            comment.contains(word),
            "`{comment}` is not the {word} query"
        );
        let sql = sql.replace("ioc.", &format!("{}.", cfg.database));
        let got = tsv(&client, &sql).await?;
        assert_eq!(got, rows, "{comment}");
        answers.push(got);
    }
    if let Some(dir) = std::env::var_os("IOC_CHDB_EXPORT") {
        let raw = raw_rows_and_the_readme_first_queries(&client, &cfg).await?;
        let dir = std::path::Path::new(&dir);
        export_for_second_engine(&client, &cfg, dir).await?;
        write_answers(dir, "raw_answer", &raw)?;
        write_answers(dir, "answer", &answers)?;
    }

    drop_database(&cfg).await
}

/// For the second engine: a few raw rows (a final traffic window, dead letters, a late reading,
/// an air reading) and the answers of the first queries of docs/data-model.md (windows, dead letters, late
/// readings, payloads) over them on this server.
async fn raw_rows_and_the_readme_first_queries(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
) -> Result<Vec<Vec<Vec<String>>>> {
    let db = cfg.database.as_str();
    let rows = [
        format!(
            "INSERT INTO {db}.window_results (kind, district, device_id, metric, window_size_ms, \
             window_start, window_start_ms, count, sum, min, max, mean, emitted_at, \
             emitted_at_ms, version, is_final) VALUES ('traffic_signal', 'hai_chau', \
             'tl-hai_chau-001', 'vehicles', 300000, toStartOfHour(now() - 3600), \
             toUInt64(toStartOfHour(now() - 3600)) * 1000, 10, 420, 30, 50, 42, now(), \
             toUInt64(now()) * 1000, 1, 1)"
        ),
        format!(
            "INSERT INTO {db}.dead_letters (received_at, received_at_ms, transport, source, code, \
             reason, payload) VALUES (now() - 60, 1, 'mqtt', 'ioc/v1/x', 'malformed_json', \
             'not json', '{{'), (now() - 30, 2, 'kafka', 'ioc.sensor/0@7', 'out_of_range', \
             'pm25: -3 is below 0', '{{}}'), (now() - 20, 3, 'mqtt', 'ioc/v1/y', 'malformed_json', \
             'not json', 'x')"
        ),
        format!(
            "INSERT INTO {db}.late_readings (message_id, device_id, kind, district, event_time, \
             event_time_ms, received_at, received_at_ms, watermark_ms, late_by_ms, source) \
             VALUES ('late-1', 'rain-hai_chau-1', 'sensor', 'hai_chau', now() - 600, 1, now(), 2, \
             3, 45000, 'ioc/v1/z')"
        ),
        format!(
            "INSERT INTO {db}.readings (message_id, device_id, kind, district, event_time, \
             event_time_ms, received_at, received_at_ms, transport, source, late, payload) \
             VALUES ('air-1', 'aq-hai_chau-1', 'environment', 'hai_chau', \
             toStartOfHour(now() - 7200), 1, now(), 2, 'mqtt', 'ioc/v1/a', 0, \
             '{{\"pm25\":31.5,\"pm10\":60}}')"
        ),
    ];
    for sql in rows {
        client.query(&sql).execute().await?;
    }
    let readme = include_str!("../../docs/data-model.md");
    let block = readme
        .split("```sql")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .context("docs/data-model.md has an sql block")?;
    let mut answers = Vec::new();
    for q in block.split(';').map(str::trim).filter(|q| !q.is_empty()) {
        let got = tsv(client, &q.replace("ioc.", &format!("{db}."))).await?;
        ensure!(!got.is_empty(), "no rows for the data-model query {q}");
        answers.push(got);
    }
    Ok(answers)
}

/// Leaves for `scripts/chdb-check` (a second ClickHouse engine, current, in process): the
/// schema as the migrations build it for database `ioc` and every table's rows as
/// `JSONEachRow`.
async fn export_for_second_engine(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
    dir: &std::path::Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut schema: Vec<String> = bootstrap_sql("ioc")?;
    for m in migrations("ioc")? {
        schema.extend(m.statements);
    }
    std::fs::write(dir.join("schema.sql"), schema.join(";\n") + ";\n")?;
    let tables: Vec<String> = client
        .query(
            "SELECT name FROM system.tables WHERE database = ? AND engine != 'View' ORDER BY name",
        )
        .bind(cfg.database.as_str())
        .fetch_all()
        .await?;
    for table in tables {
        let sql = format!("SELECT * FROM {}.{table}", cfg.database);
        let bytes = client
            .query(&sql)
            .fetch_bytes("JSONEachRow")?
            .collect()
            .await?;
        std::fs::write(dir.join(format!("{table}.jsonl")), bytes)?;
    }
    Ok(())
}

/// Each query's answer on this server as `<prefix>_NN.tsv`, NN its place in its sql block.
fn write_answers(dir: &std::path::Path, prefix: &str, answers: &[Vec<Vec<String>>]) -> Result<()> {
    for (i, rows) in answers.iter().enumerate() {
        let text: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
        std::fs::write(dir.join(format!("{prefix}_{i:02}.tsv")), text)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_migrates_to_version_3() -> Result<()> {
    let cfg = test_config("upgrade");
    let db = cfg.database.as_str();
    let server = server_client(&cfg);
    // The database as migrations 1 and 2 left it, with a row in it.
    for sql in bootstrap_sql(db)? {
        server.query(&sql).execute().await?;
    }
    for m in migrations(db)?.into_iter().take(2) {
        for sql in &m.statements {
            server.query(sql).execute().await?;
        }
        server
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES (?, ?, now())"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
    }
    server
        .query(&format!(
            "INSERT INTO {db}.dead_letters \
             (received_at, received_at_ms, transport, source, code, reason, payload) \
             VALUES (now(), 1, 'mqtt', 'ioc/v1/x', 'malformed_json', 'not json', '{{')"
        ))
        .execute()
        .await?;

    let registry = Registry::new();
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&registry)?).await?;
    let report = store.migration_report().context("migrated")?;
    assert_eq!(report.applied, vec![3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(report.already_applied, vec![1, 2]);

    let client = store.client();
    let kept: u64 = client
        .query("SELECT count() FROM dead_letters")
        .fetch_one()
        .await?;
    assert_eq!(kept, 1, "the upgrade keeps the data");
    let size: u64 = client
        .query("SELECT payload_bytes FROM dead_letters")
        .fetch_one()
        .await?;
    assert_eq!(size, 1, "an older dead letter's size is its payload's");
    let kpi_tables: u64 = client
        .query("SELECT count() FROM system.tables WHERE database = ? AND (name LIKE 'kpi_%' OR name = 'devices')")
        .bind(db)
        .fetch_one()
        .await?;
    assert_eq!(kpi_tables, 8);

    // The new tables work on the upgraded database.
    assert!(store.load_devices().await?.is_empty());
    let d = device(
        "aq-hoa_vang-1",
        Kind::Environment,
        "Trạm quan trắc không khí Hòa Vang",
        District::HoaVang,
        Department::Environment,
    );
    store
        .save_device_change(&DeviceChange::Upsert(d.clone()), 1_795_827_600_000)
        .await?;
    assert_eq!(
        store
            .load_devices()
            .await?
            .devices
            .into_values()
            .collect::<Vec<_>>(),
        vec![d]
    );
    let again = ioc_store::migrate(&cfg).await?;
    assert!(again.applied.is_empty(), "{again:?}");

    drop_database(&cfg).await
}
