//! The engine's unit tests: each kind of condition, composites, silence clears, filters,
//! late observations, forgetting, hot swaps, and the default rules on KPI rows.

use std::collections::BTreeSet;

use ioc_schemas::{Congestion, Department, DeviceStatus, HealthKpi, HydrologyKpi, Kpi};

use super::*;
use crate::model::{Category, Severity};
use crate::observe::observations_of_kpi;
use crate::rules::RuleSource;
use crate::testkit::{hydro, traffic_row, MIN, S, T0};

fn base_rule(id: &str, source: RuleSource, condition: Condition) -> Rule {
    Rule {
        id: id.to_owned(),
        name: id.to_owned(),
        enabled: true,
        raises_alerts: true,
        severity: Severity::Warning,
        category: Category::Structure,
        department: RuleDepartment::Owner,
        source: Some(source),
        condition,
        for_s: 0,
        hold_s: 300,
        escalate_after_s: None,
        clear_after_s: None,
        districts: vec![],
        devices: vec![],
        message: "{rule}: {value} at {entity}".to_owned(),
    }
}

fn reading_source(metric: &str) -> RuleSource {
    RuleSource {
        reading: Some(metric.to_owned()),
        ..RuleSource::default()
    }
}

fn kpi_source(family: KpiFamily, field: &str) -> RuleSource {
    RuleSource {
        kpi: Some(family),
        field: Some(field.to_owned()),
        ..RuleSource::default()
    }
}

fn above(level: f64, clear: Option<f64>) -> Condition {
    Condition::Threshold {
        above: Some(level),
        below: None,
        clear,
    }
}

fn obs(metric: &str, device: &str, district: District, t: u64, value: f64) -> Observation {
    Observation {
        source: Source::Reading {
            metric: metric.to_owned(),
            kind: Kind::Sensor,
        },
        entity_id: device.to_owned(),
        device_id: Some(device.to_owned()),
        district: Some(district),
        department: Some(Department::Construction),
        event_ms: t,
        window_ms: 0,
        value,
        expected_interval_s: None,
    }
}

fn engine(rules: Vec<Rule>) -> Engine {
    Engine::new(RuleSet::from_rules(rules).unwrap())
}

/// Feeds values one per `step` ms and returns (time, breached) of each verdict.
fn feed(e: &mut Engine, metric: &str, values: &[f64], step: u64) -> Vec<(u64, bool)> {
    values
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let t = T0 + i as u64 * step;
            e.observe(&obs(metric, "dev-1", District::HaiChau, t, *v))
                .into_iter()
                .map(|v| (v.event_ms - T0, v.breached))
        })
        .collect()
}

#[test]
fn threshold_with_hysteresis_opens_repeats_and_clears_once() {
    let mut e = engine(vec![base_rule(
        "wind",
        reading_source("wind_speed_ms"),
        above(25.0, Some(20.0)),
    )]);
    // 10 clear (initial verdict), 26 breach, 22 still breached (above clear), 19 clears,
    // 24 does not re-breach (below 25).
    let v = feed(
        &mut e,
        "wind_speed_ms",
        &[10.0, 26.0, 22.0, 19.0, 24.0, 25.0],
        S,
    );
    assert_eq!(
        v,
        vec![
            (0, false),
            (S, true),
            (2 * S, true),
            (3 * S, false),
            (5 * S, true)
        ]
    );
    let mut e = engine(vec![base_rule(
        "wind",
        reading_source("wind_speed_ms"),
        above(25.0, Some(20.0)),
    )]);
    let verdicts = e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
    assert_eq!(verdicts.len(), 1);
    let v = &verdicts[0];
    assert_eq!(v.rule_id, "wind");
    assert_eq!(v.entity_id, "b-1");
    assert_eq!(v.district, Some(District::SonTra));
    assert_eq!(
        v.department,
        Department::Construction,
        "owner of the device"
    );
    assert_eq!(v.value, Some(30.0));
    assert_eq!(v.message, "wind: 30 at b-1");
    assert_eq!(v.hold_s, 300);
}

#[test]
fn below_threshold_for_a_while() {
    let mut rule = base_rule(
        "signal",
        reading_source("signal_available"),
        Condition::Threshold {
            above: None,
            below: Some(0.0),
            clear: None,
        },
    );
    rule.for_s = 120;
    let mut e = engine(vec![rule]);
    // Readings every 30 s: faulted from 30 s; 120 s later (at 150 s) it opens.
    let values = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let v = feed(&mut e, "signal_available", &values, 30 * S);
    assert_eq!(
        v,
        vec![
            (0, false),
            (150 * S, true),
            (180 * S, true),
            (210 * S, false)
        ]
    );
    // A fault shorter than for_s raises nothing.
    let mut rule = base_rule(
        "signal",
        reading_source("signal_available"),
        Condition::Threshold {
            above: None,
            below: Some(0.0),
            clear: None,
        },
    );
    rule.for_s = 120;
    let mut e = engine(vec![rule]);
    let v = feed(
        &mut e,
        "signal_available",
        &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0],
        30 * S,
    );
    assert_eq!(v, vec![(0, false)]);
}

/// Feeds one KPI row per step through the default rules and lists, after each, the open
/// rules whose id starts with `prefix` (without it, sorted, comma-joined).
fn open_default_rules(rows: impl IntoIterator<Item = Kpi>, prefix: &str) -> Vec<String> {
    let mut e = Engine::new(RuleSet::da_nang().unwrap());
    let mut open = BTreeSet::new();
    rows.into_iter()
        .map(|row| {
            for o in observations_of_kpi(&row) {
                for v in e.observe(&o) {
                    if v.rule_id.starts_with(prefix) {
                        if v.breached {
                            open.insert(v.rule_id);
                        } else {
                            open.remove(&v.rule_id);
                        }
                    }
                }
            }
            open.iter()
                .map(|r| r.trim_start_matches(prefix))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[test]
fn bridge_wind_steps_by_beaufort_force_on_the_5_minute_mean() {
    let bridge = |i: u64, mean: f64| {
        Kpi::Bridge(ioc_schemas::BridgeKpi {
            device_id: "bridge-thuan_phuoc".into(),
            district: District::SonTra,
            window_start_ms: T0 + i * 5 * MIN,
            window_size_ms: 5 * MIN,
            wind_mean_ms: Some(mean),
            wind_max_ms: Some(mean * 1.4),
            strain_mean_ue: None,
            strain_min_ue: None,
            strain_max_ue: None,
            temperature_c: None,
            humidity_pct: None,
        })
    };
    // Each step at the force's lower bound (WMO): 10.7 is force 5, 10.8 force 6, 13.9
    // force 7, 24.5 force 10; then back down, each clearing below its margin.
    let means = [10.7, 10.8, 13.8, 13.9, 24.4, 24.5, 22.9, 12.9, 9.9];
    let rows = (0..).zip(means).map(|(i, mean)| bridge(i, mean));
    assert_eq!(
        open_default_rules(rows, "bridge_wind_"),
        [
            "",
            "force6",
            "force6",
            "force6,force7",
            "force6,force7",
            "force10,force6,force7",
            "force6,force7",
            "force6",
            "",
        ]
    );
}

fn hydrology_row(i: u64, gauge: &str, f: impl FnOnce(&mut HydrologyKpi)) -> Kpi {
    let mut row = HydrologyKpi {
        gauge_id: gauge.into(),
        district: District::HoaVang,
        window_start_ms: T0 + i * 5 * MIN,
        window_size_ms: 5 * MIN,
        rain_mm: None,
        rain_1h_mm: None,
        rain_3h_mm: None,
        rain_24h_mm: None,
        rain_12h_mm: None,
        water_level_m: None,
        rise_rate_m_per_h: None,
        coverage: 288,
        alarm_level: None,
    };
    f(&mut row);
    Kpi::Hydrology(row)
}

#[test]
fn rain_totals_step_through_the_bands_of_decision_18_2021() {
    // (12-hour, 24-hour) totals, mm: each band's edge, then back down past each clear.
    let totals = [
        (49.9, 60.0),
        (50.0, 99.9),
        (60.0, 100.0),
        (60.0, 199.9),
        (60.0, 200.0),
        (60.0, 399.9),
        (60.0, 400.0),
        (45.0, 360.0),
        (45.0, 340.0),
        (45.0, 160.0),
        (39.9, 79.9),
    ];
    let rows = (0..).zip(totals).map(|(i, (h12, h24))| {
        hydrology_row(i, "rain-hoa_vang-01", |r| {
            r.rain_12h_mm = Some(h12);
            r.rain_24h_mm = Some(h24);
        })
    });
    assert_eq!(
        open_default_rules(rows, "rain_"),
        [
            "",
            "12h_50mm",
            "12h_50mm,24h_100mm",
            "12h_50mm,24h_100mm",
            "12h_50mm,24h_100mm,24h_200mm",
            "12h_50mm,24h_100mm,24h_200mm",
            "12h_50mm,24h_100mm,24h_200mm,24h_400mm",
            "12h_50mm,24h_100mm,24h_200mm,24h_400mm",
            "12h_50mm,24h_100mm,24h_200mm",
            "12h_50mm,24h_100mm",
            "",
        ]
    );
}

#[test]
fn flood_alarm_rules_follow_the_level_reached() {
    let levels = [0, 1, 2, 3, 2, 1, 0];
    let rows = (0..).zip(levels).map(|(i, level)| {
        hydrology_row(i, "hydro-ai_nghia", |r| {
            r.water_level_m = Some(5.0 + f64::from(level));
            r.alarm_level = Some(level);
        })
    });
    assert_eq!(
        open_default_rules(rows, "flood_alarm_"),
        ["", "1", "1,2", "1,2,3", "1,2", "1", ""]
    );
}

#[test]
fn for_s_over_kpi_windows_counts_from_the_window_start() {
    let mut rule = base_rule(
        "congestion",
        kpi_source(KpiFamily::Traffic, "level"),
        above(5.0, None),
    );
    rule.for_s = 600;
    let mut e = engine(vec![rule]);
    let mut out = Vec::new();
    for (i, level) in [
        Congestion::C,
        Congestion::E,
        Congestion::F,
        Congestion::E,
        Congestion::D,
    ]
    .into_iter()
    .enumerate()
    {
        let row = traffic_row("tl-1", T0 + i as u64 * 5 * MIN, level);
        for o in observations_of_kpi(&row) {
            out.extend(
                e.observe(&o)
                    .into_iter()
                    .map(|v| (v.event_ms, v.breached, v.value)),
            );
        }
    }
    // Windows end at T0+5,10,15,20,25 min; E from the window starting at T0+5 min: after
    // two such windows (10 minutes), at T0+15 min, it opens.
    assert_eq!(
        out,
        vec![
            (T0 + 5 * MIN, false, Some(3.0)),
            (T0 + 15 * MIN, true, Some(6.0)),
            (T0 + 20 * MIN, true, Some(5.0)),
            (T0 + 25 * MIN, false, Some(4.0)),
        ]
    );
}

#[test]
fn rate_of_change_per_hour() {
    let rule = base_rule(
        "level_rising",
        reading_source("water_level_m"),
        Condition::RateOfChange {
            over_s: 900,
            rise_above: Some(0.3),
            fall_below: None,
        },
    );
    let mut e = engine(vec![rule]);
    // Every 5 minutes: flat, then rising 0.05 m per 5 min (0.6 m/h), then flat.
    let levels = [1.0, 1.0, 1.0, 1.0, 1.05, 1.10, 1.15, 1.20, 1.20, 1.20, 1.20];
    let v: Vec<(u64, bool, Option<f64>)> = levels
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            e.observe(&obs(
                "water_level_m",
                "fl-1",
                District::CamLe,
                T0 + i as u64 * 5 * MIN,
                *l,
            ))
        })
        .map(|v| {
            (
                (v.event_ms - T0) / MIN,
                v.breached,
                v.value.map(|r| (r * 100.0).round() / 100.0),
            )
        })
        .collect();
    // Nothing until the samples span half of 15 minutes (at 10 min); the rate over 15 min
    // reaches 0.4 m/h at 25 min (1.05 - 1.0 over 15 min = 0.2 m/h at 20 min).
    assert_eq!(
        v,
        vec![
            (10, false, Some(0.0)),
            (25, true, Some(0.4)),
            (30, true, Some(0.6)),
            (35, true, Some(0.6)),
            (40, true, Some(0.4)),
            (45, false, Some(0.2)),
        ]
    );
}

fn health_row(device: &str, end: u64, last_seen: Option<u64>) -> Kpi {
    Kpi::Health(HealthKpi {
        scope: Scope::Device,
        entity_id: device.to_owned(),
        district: Some(District::LienChieu),
        department: Some(Department::DisasterPrevention),
        window_start_ms: end - 5 * MIN,
        window_size_ms: 5 * MIN,
        devices: 1,
        online: 1,
        offline: 0,
        readings: 5,
        expected: 5,
        completeness_pct: 100.0,
        last_seen_ms: last_seen,
        status: Some(if last_seen.is_some() {
            DeviceStatus::Online
        } else {
            DeviceStatus::NeverSeen
        }),
    })
}

fn absence_rule() -> Rule {
    let mut r = base_rule(
        "offline",
        RuleSource::default(),
        Condition::Absence { intervals: 3.0 },
    );
    r.source = None;
    r.category = Category::DeviceHealth;
    r.message = "{entity} silent {value} s".to_owned();
    r
}

#[test]
fn absence_uses_the_expected_interval_and_counts_never_seen() {
    let mut e = engine(vec![absence_rule()]);
    let run = |e: &mut Engine, row: &Kpi| -> Vec<Verdict> {
        observations_of_kpi(row)
            .iter()
            .flat_map(|o| e.observe(o))
            .collect()
    };
    // A 60 s gauge (5 expected per 5 min): absent after 180 s of silence.
    let row = health_row("rg-1", T0, Some(T0 - 30 * S));
    let o: Vec<_> = observations_of_kpi(&row)
        .into_iter()
        .filter(|o| matches!(&o.source, Source::Kpi { field, .. } if field == SILENT_FIELD))
        .collect();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].expected_interval_s, Some(60));
    assert_eq!(o[0].value, 30.0);
    let v = run(&mut e, &row);
    assert_eq!(v.len(), 1);
    assert!(!v[0].breached);
    let v = run(&mut e, &health_row("rg-1", T0 + 5 * MIN, Some(T0 - 30 * S)));
    assert_eq!(v.len(), 1);
    assert!(v[0].breached);
    assert_eq!(v[0].department, Department::DisasterPrevention);
    assert_eq!(v[0].value, Some(330.0));
    assert_eq!(v[0].message, "rg-1 silent 330 s");
    let v = run(
        &mut e,
        &health_row("rg-1", T0 + 10 * MIN, Some(T0 + 9 * MIN)),
    );
    assert!(!v[0].breached);

    // Never seen: silent since the start of the first window the engine saw. A 300 s
    // station (one reading expected per window) is absent after 900 s.
    let never = |end: u64| {
        let mut row = health_row("env-2", end, None);
        if let Kpi::Health(h) = &mut row {
            h.expected = 1;
        }
        row
    };
    let v = run(&mut e, &never(T0));
    assert_eq!(v.len(), 1);
    assert!(!v[0].breached);
    assert!(run(&mut e, &never(T0 + 5 * MIN)).is_empty());
    let v = run(&mut e, &never(T0 + 10 * MIN));
    assert_eq!(v.len(), 1);
    assert!(v[0].breached);
    assert_eq!(v[0].value, None);
    assert_eq!(v[0].message, "env-2 silent – s");
    // A 60 s gauge silent through its whole first window is absent at once.
    let v = run(&mut e, &health_row("rg-2", T0, None));
    assert!(v[0].breached);
}

fn flood_rules(scope: CompositeScope) -> Vec<Rule> {
    let mut rain = base_rule(
        "rain",
        kpi_source(KpiFamily::Hydrology, "rain_1h_mm"),
        above(30.0, None),
    );
    rain.raises_alerts = false;
    let mut rise = base_rule(
        "rise",
        kpi_source(KpiFamily::Hydrology, "rise_rate_m_per_h"),
        above(0.3, None),
    );
    rise.raises_alerts = false;
    let mut flood = base_rule(
        "flood",
        RuleSource::default(),
        Condition::Composite {
            op: CompositeOp::All,
            of: vec!["rain".into(), "rise".into()],
            scope,
        },
    );
    flood.source = None;
    flood.department = RuleDepartment::Fixed(Department::DisasterPrevention);
    flood.category = Category::Flood;
    flood.message = "Cảnh báo ngập: {district}".into();
    vec![rain, rise, flood]
}

fn run_kpi(e: &mut Engine, row: &Kpi) -> Vec<Verdict> {
    observations_of_kpi(row)
        .iter()
        .flat_map(|o| e.observe(o))
        .collect()
}

#[test]
fn composite_in_a_district() {
    let mut e = engine(flood_rules(CompositeScope::District));
    let hc = District::HaiChau;
    // Heavy rain alone: the inputs raise nothing; the composite starts clear.
    let v = run_kpi(&mut e, &hydro("rg-1", hc, T0, Some(40.0), None));
    assert!(
        v.iter().all(|v| v.rule_id == "flood" && !v.breached),
        "{v:?}"
    );
    // Rising water in another district: no flood warning in Hải Châu.
    let v = run_kpi(&mut e, &hydro("fl-9", District::CamLe, T0, None, Some(0.5)));
    assert!(v.iter().all(|v| !v.breached), "{v:?}");
    // Rising water in Hải Châu too: the warning opens for the district.
    let v = run_kpi(&mut e, &hydro("fl-1", hc, T0, None, Some(0.5)));
    let opened: Vec<_> = v.iter().filter(|v| v.breached).collect();
    assert_eq!(opened.len(), 1, "{v:?}");
    assert_eq!(opened[0].rule_id, "flood");
    assert_eq!(opened[0].entity_id, "hai_chau");
    assert_eq!(opened[0].district, Some(hc));
    assert_eq!(opened[0].department, Department::DisasterPrevention);
    assert_eq!(opened[0].message, "Cảnh báo ngập: Hải Châu");
    // The rain stops: the warning clears.
    let v = run_kpi(&mut e, &hydro("rg-1", hc, T0 + 5 * MIN, Some(10.0), None));
    assert_eq!(
        v.iter()
            .map(|v| (v.entity_id.as_str(), v.breached))
            .collect::<Vec<_>>(),
        vec![("hai_chau", false)]
    );
}

#[test]
fn composite_on_linked_devices() {
    let scope = CompositeScope::Devices(vec!["rg-1".into(), "fl-1".into()]);
    let mut e = engine(flood_rules(scope));
    let hc = District::HaiChau;
    // A gauge outside the group does not count.
    run_kpi(&mut e, &hydro("rg-1", hc, T0, Some(40.0), None));
    let v = run_kpi(&mut e, &hydro("fl-2", hc, T0, None, Some(0.5)));
    assert!(v.iter().all(|v| !v.breached), "{v:?}");
    let v = run_kpi(&mut e, &hydro("fl-1", hc, T0, None, Some(0.5)));
    let opened: Vec<_> = v.iter().filter(|v| v.breached).collect();
    assert_eq!(opened.len(), 1, "{v:?}");
    assert_eq!(opened[0].entity_id, "rg-1+fl-1");
    // A repeat breach of an input repeats the composite's breach.
    let v = run_kpi(&mut e, &hydro("fl-1", hc, T0 + 5 * MIN, None, Some(0.6)));
    assert_eq!(v.iter().filter(|v| v.breached).count(), 1, "{v:?}");
    let v = run_kpi(&mut e, &hydro("fl-1", hc, T0 + 10 * MIN, None, Some(0.0)));
    assert_eq!(
        v.iter()
            .map(|v| (v.entity_id.as_str(), v.breached))
            .collect::<Vec<_>>(),
        vec![("rg-1+fl-1", false)]
    );
}

#[test]
fn any_composite_and_nesting() {
    let mut rules = flood_rules(CompositeScope::District);
    if let Condition::Composite { op, .. } = &mut rules[2].condition {
        *op = CompositeOp::Any;
    }
    let mut outer = rules[2].clone();
    outer.id = "outer".into();
    outer.condition = Condition::Composite {
        op: CompositeOp::All,
        of: vec!["flood".into()],
        scope: CompositeScope::District,
    };
    rules.push(outer);
    let mut e = engine(rules);
    let v = run_kpi(
        &mut e,
        &hydro("rg-1", District::HoaVang, T0, Some(40.0), None),
    );
    let breached: Vec<&str> = v
        .iter()
        .filter(|v| v.breached)
        .map(|v| v.rule_id.as_str())
        .collect();
    assert_eq!(breached, vec!["flood", "outer"]);
}

#[test]
fn clear_after_silence_for_event_sources() {
    let mut rule = base_rule("crowd", reading_source("crowd_gathering"), above(1.0, None));
    rule.clear_after_s = Some(600);
    let mut e = engine(vec![rule]);
    let v = e.observe(&obs("crowd_gathering", "cam-1", District::HaiChau, T0, 1.0));
    assert_eq!(v.len(), 1);
    assert!(v[0].breached);
    // Other traffic moves event time on; 10 minutes after the last detection it clears.
    assert!(e.advance(T0 + 9 * MIN).is_empty());
    let v = e.advance(T0 + 11 * MIN);
    assert_eq!(v.len(), 1);
    assert!(!v[0].breached);
    assert_eq!(v[0].event_ms, T0 + 10 * MIN);
}

#[test]
fn filters_kind_district_and_device() {
    let mut rule = base_rule("wind", reading_source("wind_speed_ms"), above(25.0, None));
    rule.districts = vec![District::SonTra];
    rule.devices = vec!["b-1".into()];
    rule.source = Some(RuleSource {
        reading: Some("wind_speed_ms".into()),
        kind: Some(Kind::Sensor),
        ..RuleSource::default()
    });
    let mut e = engine(vec![rule]);
    assert!(e
        .observe(&obs("wind_speed_ms", "b-1", District::HaiChau, T0, 30.0))
        .is_empty());
    assert!(e
        .observe(&obs("wind_speed_ms", "b-2", District::SonTra, T0, 30.0))
        .is_empty());
    let mut o = obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0);
    o.source = Source::Reading {
        metric: "wind_speed_ms".into(),
        kind: Kind::Environment,
    };
    assert!(e.observe(&o).is_empty());
    assert_eq!(
        e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0))
            .len(),
        1
    );
}

#[test]
fn late_observations_are_ignored_and_state_is_forgotten() {
    let mut e = engine(vec![base_rule(
        "wind",
        reading_source("wind_speed_ms"),
        above(25.0, None),
    )]);
    e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
    assert!(e
        .observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0 - S, 5.0))
        .is_empty());
    e.observe(&obs("wind_speed_ms", "b-2", District::SonTra, T0, 5.0));
    assert_eq!(e.tracked(), 2);
    // A day later, another device reports: both old ones are forgotten; the open one is
    // cleared.
    let v = e.observe(&obs(
        "wind_speed_ms",
        "b-3",
        District::SonTra,
        T0 + 25 * 60 * MIN,
        5.0,
    ));
    let cleared: Vec<_> = v
        .iter()
        .filter(|v| !v.breached && v.entity_id == "b-1")
        .collect();
    assert_eq!(cleared.len(), 1, "{v:?}");
    assert_eq!(e.tracked(), 1);
}

#[test]
fn hot_swap_keeps_unchanged_rules_and_clears_removed_ones() {
    let wind = base_rule("wind", reading_source("wind_speed_ms"), above(25.0, None));
    let rain = base_rule("rain", reading_source("rainfall_mm"), above(10.0, None));
    let mut e = engine(vec![wind.clone(), rain.clone()]);
    e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0, 30.0));
    e.observe(&obs("rainfall_mm", "rg-1", District::SonTra, T0, 30.0));
    // The wind rule only changes its severity; the rain rule is removed.
    let mut wind2 = wind.clone();
    wind2.severity = Severity::Critical;
    let v = e.set_rules(RuleSet::from_rules(vec![wind2]).unwrap());
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].rule_id.as_str(), v[0].breached), ("rain", false));
    // The wind state was kept: the next breach is a repeat, with the new severity.
    let v = e.observe(&obs("wind_speed_ms", "b-1", District::SonTra, T0 + S, 31.0));
    assert_eq!(v.len(), 1);
    assert!(v[0].breached);
    assert_eq!(v[0].severity, Severity::Critical);
    // A changed threshold starts afresh: the open entity is cleared.
    let mut wind3 = wind;
    wind3.condition = above(40.0, None);
    let v = e.set_rules(RuleSet::from_rules(vec![wind3]).unwrap());
    assert_eq!(v.len(), 1);
    assert!(!v[0].breached);
}
