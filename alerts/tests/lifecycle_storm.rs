//! Storm control and flapping, end to end: observations → engine → alert book, with the
//! default Da Nang rules.

use ioc_alerts::engine::{observations_of_kpi, observations_of_reading, Engine, Verdict};
use ioc_alerts::lifecycle::{AlertBook, AlertFilter, LifecycleConfig};
use ioc_alerts::rules::RuleSet;
use ioc_alerts::{AlertEvent, AlertState, Category, Transition};
use ioc_schemas::{
    Body, Department, DeviceStatus, District, EventTime, HealthKpi, Kpi, Reading, Scope, SensorBody,
};

const T0: u64 = 1_795_827_600_000;
const S: u64 = 1000;
const MIN: u64 = 60 * S;

fn health(device: &str, i: usize, end: u64, last_seen: u64) -> Kpi {
    let departments = [
        Department::Transport,
        Department::Environment,
        Department::Police,
        Department::DisasterPrevention,
    ];
    Kpi::Health(HealthKpi {
        scope: Scope::Device,
        entity_id: device.to_owned(),
        district: Some(District::ALL[i % District::ALL.len()]),
        department: Some(departments[i % departments.len()]),
        window_start_ms: end - 5 * MIN,
        window_size_ms: 5 * MIN,
        devices: 1,
        online: 1,
        offline: 0,
        readings: 5,
        expected: 5,
        completeness_pct: 100.0,
        last_seen_ms: Some(last_seen),
        status: Some(DeviceStatus::Online),
    })
}

/// Runs the health rows of 1,000 devices for one window through the engine.
fn window(engine: &mut Engine, end: u64, last_seen: u64) -> Vec<Verdict> {
    (0..1000)
        .flat_map(|i| observations_of_kpi(&health(&format!("dev-{i:04}"), i, end, last_seen)))
        .flat_map(|o| engine.observe(&o))
        .collect()
}

fn notified(events: &[AlertEvent]) -> Vec<&AlertEvent> {
    events.iter().filter(|e| e.notify).collect()
}

#[test]
fn a_thousand_devices_going_offline_at_once_make_one_storm_summary() {
    let rules = RuleSet::da_nang().unwrap();
    let mut engine = Engine::new(rules.clone());
    let config = LifecycleConfig::default();
    let mut book = AlertBook::new(config.clone());
    book.set_rule_timings(&rules);

    // Everything reports: no alert.
    let verdicts = window(&mut engine, T0, T0 - 10 * S);
    assert!(verdicts.iter().all(|v| !v.breached));
    assert!(book.apply_all(verdicts, T0 + 10 * S).is_empty());

    // A power cut: a thousand devices silent for more than 3 intervals, in one window.
    let now = T0 + 5 * MIN + 10 * S;
    let verdicts = window(&mut engine, T0 + 5 * MIN, T0 - 10 * S);
    assert_eq!(verdicts.iter().filter(|v| v.breached).count(), 1000);
    let events = book.apply_all(verdicts, now);

    // Every device has its alert, listed; only the first ones under the caps are notified.
    let all = book.list(&AlertFilter {
        rule_id: Some("device_offline".into()),
        ..AlertFilter::default()
    });
    assert_eq!(all.len(), 1000);
    let first = notified(&events);
    let caps = config
        .max_per_rule
        .min(config.max_per_department)
        .min(config.max_per_district) as usize;
    assert!(first.len() <= caps + 1, "{} notified", first.len());
    let opened_alerts: Vec<_> = first
        .iter()
        .filter(|e| e.transition == Transition::Opened && e.alert.category != Category::Storm)
        .collect();
    assert_eq!(opened_alerts.len(), config.max_per_rule as usize);

    // Exactly one storm summary, opened and notified.
    let storms: Vec<_> = events
        .iter()
        .filter(|e| e.alert.category == Category::Storm)
        .collect();
    assert_eq!(storms.len(), 1, "{storms:?}");
    assert_eq!(storms[0].transition, Transition::Opened);
    assert!(storms[0].notify);
    let summary = book
        .list(&AlertFilter {
            category: Some(Category::Storm),
            ..AlertFilter::default()
        })
        .pop()
        .unwrap();
    assert_eq!(summary.rule_id, "storm:rule:device_offline");
    assert_eq!(summary.state, AlertState::Active);
    assert_eq!(summary.breaches, 1000 - config.max_per_rule);

    // The rest are suppressed: listed, marked, one unnotified event each.
    let suppressed = book.list(&AlertFilter {
        suppressed: Some(true),
        ..AlertFilter::default()
    });
    assert_eq!(suppressed.len(), 1000 - config.max_per_rule as usize);
    let suppressed_events: Vec<_> = events
        .iter()
        .filter(|e| e.transition == Transition::Suppressed)
        .collect();
    assert_eq!(suppressed_events.len(), suppressed.len());
    assert!(suppressed_events
        .iter()
        .all(|e| !e.notify && e.alert.suppressed));

    // Event ids are unique.
    let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), events.len());

    // The next window repeats the breaches: updates, not new alerts, and nothing notified.
    let verdicts = window(&mut engine, T0 + 10 * MIN, T0 - 10 * S);
    let events = book.apply_all(verdicts, now + 20 * S);
    assert!(notified(&events).is_empty(), "{:?}", notified(&events));
    assert!(events.iter().all(|e| e.transition != Transition::Opened));
    assert_eq!(book.len(), 1001);

    // Ticks over the next minutes: no escalation storm (the rule does not escalate, and
    // suppressed alerts never do), no new summary.
    let mut later = Vec::new();
    for s in (30..600).step_by(10) {
        later.extend(book.tick(now + s * S));
    }
    assert!(later
        .iter()
        .all(|e| e.alert.category != Category::Storm || e.transition != Transition::Opened));
    // Only the summary's growth is notified, once.
    let later_notified = notified(&later);
    assert_eq!(later_notified.len(), 1, "{later_notified:?}");
    assert_eq!(later_notified[0].transition, Transition::Updated);
    assert_eq!(later_notified[0].alert.category, Category::Storm);
}

#[test]
fn storm_summaries_grow_quietly_and_resolve_when_the_storm_is_over() {
    let rules = RuleSet::da_nang().unwrap();
    let mut engine = Engine::new(rules);
    let config = LifecycleConfig::default();
    let mut book = AlertBook::new(config.clone());
    window(&mut engine, T0, T0 - 10 * S);
    let now = T0 + 5 * MIN;
    book.apply_all(window(&mut engine, T0 + 5 * MIN, T0 - 10 * S), now);
    // The alerts folded after the summary opened are notified once, a minute on.
    let ev = book.tick(now + 30 * S);
    assert!(notified(&ev).is_empty());
    let ev = book.tick(now + 60 * S);
    let n = notified(&ev);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].transition, Transition::Updated);
    assert_eq!(n[0].alert.breaches, 980);
    assert!(n[0].alert.message.contains("980"), "{}", n[0].alert.message);
    assert!(notified(&book.tick(now + 120 * S)).is_empty());
    // Nothing more is folded; the summary resolves after its hold.
    let ev = book.tick(now + config.summary_hold_s * S);
    let resolved: Vec<_> = ev
        .iter()
        .filter(|e| e.transition == Transition::Resolved && e.alert.category == Category::Storm)
        .collect();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0].notify);
    // The suppressed alerts stay open: they are still offline.
    assert_eq!(
        book.list(&AlertFilter {
            open: Some(true),
            suppressed: Some(true),
            ..AlertFilter::default()
        })
        .len(),
        980
    );
}

fn wind(t: u64, value: f64) -> Reading {
    Reading {
        message_id: format!("m-{t}"),
        device_id: "bridge-thuan_phuoc-wind".into(),
        event_time: EventTime(t),
        body: Body::Sensor(SensorBody {
            metric: "wind_speed_ms".into(),
            value,
            unit: "m/s".into(),
        }),
    }
}

/// Feeds a bridge wind sensor one value every 5 s for an hour, then calm air for 30 minutes.
fn flap(high: f64, low: f64) -> (AlertBook, Vec<AlertEvent>) {
    let rules = RuleSet::da_nang().unwrap();
    let mut engine = Engine::new(rules);
    let mut book = AlertBook::new(LifecycleConfig::default());
    let mut events = Vec::new();
    let hour = 3600 / 5;
    for i in 0..(hour + 360) {
        let t = T0 + i * 5 * S;
        let value = if i >= hour {
            8.0
        } else if i % 2 == 0 {
            high
        } else {
            low
        };
        for o in observations_of_reading(
            &wind(t, value),
            District::SonTra,
            Some(Department::Construction),
        ) {
            events.extend(book.apply_all(engine.observe(&o), t));
        }
        events.extend(book.tick(t));
    }
    (book, events)
}

#[test]
fn a_flapping_value_gives_one_alert() {
    // Crossing both the threshold (25) and the clear level (20) every 5 seconds.
    let (book, events) = flap(27.0, 15.0);
    let alerts = book.list(&AlertFilter {
        rule_id: Some("bridge_wind_high".into()),
        ..AlertFilter::default()
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let count = |t: Transition| events.iter().filter(|e| e.transition == t).count();
    assert_eq!(count(Transition::Opened), 1);
    assert_eq!(
        count(Transition::Resolved),
        1,
        "resolved once the calm outlasted the hold"
    );
    let a = &alerts[0];
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.breaches, 360, "every breach counted on the one alert");
    // Updates are coalesced: about one event a minute, not one per breach.
    assert!(
        count(Transition::Updated) <= 61,
        "{}",
        count(Transition::Updated)
    );
    // Notified: the opening, its escalations (unacknowledged for 15, 30, 45 min), the
    // resolution.
    assert_eq!(notified(&events).len(), 1 + 3 + 1);
}

#[test]
fn a_value_wobbling_inside_the_hysteresis_band_gives_one_alert() {
    let (book, events) = flap(26.0, 22.0);
    assert_eq!(book.len(), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.transition == Transition::Opened)
            .count(),
        1
    );
}
