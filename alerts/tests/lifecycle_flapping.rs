//! Property: flapping input around a threshold with hysteresis and a hold time never gives
//! more than one open alert per (rule, entity), and opens exactly one alert per breach episode
//! separated by a clear longer than the hold.

use ioc_alerts::engine::{Engine, Observation, Source};
use ioc_alerts::lifecycle::{AlertBook, AlertFilter, LifecycleConfig};
use ioc_alerts::rules::RuleSet;
use ioc_schemas::{Department, District, Kind};
use proptest::prelude::*;

const T0: u64 = 1_795_827_600_000;
const HOLD_S: u64 = 60;
const ABOVE: f64 = 10.0;
const CLEAR: f64 = 8.0;

fn rules() -> RuleSet {
    RuleSet::from_toml(&format!(
        r#"[[rule]]
        id = "level_high"
        name = "level high"
        severity = "warning"
        category = "flood"
        department = "disaster_prevention"
        source = {{ reading = "water_level_m" }}
        condition = {{ type = "threshold", above = {ABOVE}, clear = {CLEAR} }}
        hold_s = {HOLD_S}
        message = "{{value}} m at {{entity}}"
        "#
    ))
    .unwrap()
}

fn observation(t: u64, value: f64) -> Observation {
    Observation {
        source: Source::Reading {
            metric: "water_level_m".into(),
            kind: Kind::Sensor,
        },
        entity_id: "fl-1".into(),
        device_id: Some("fl-1".into()),
        district: Some(District::CamLe),
        department: Some(Department::DisasterPrevention),
        event_ms: t,
        window_ms: 0,
        value,
        expected_interval_s: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn flapping_gives_one_alert_per_episode(
        steps in proptest::collection::vec((1u64..=40, 0u8..3), 1..300)
    ) {
        let mut engine = Engine::new(rules());
        let mut book = AlertBook::new(LifecycleConfig::default());
        let open = AlertFilter { open: Some(true), ..AlertFilter::default() };

        // The hysteresis state as the rule defines it, to measure the clear periods.
        let mut breached = false;
        let mut clear_since: Option<u64> = None;
        let mut episodes = 0usize;
        let mut long_clears = 0usize;

        let mut t = T0;
        for (dt, level) in steps {
            t += dt * 1000;
            let value = match level {
                0 => 5.0,  // clear
                1 => 9.0,  // between the clear level and the threshold
                _ => 12.0, // breach
            };
            let now_breached = if breached { value >= CLEAR } else { value >= ABOVE };
            if now_breached && !breached {
                match clear_since {
                    None => episodes += 1,
                    Some(c) if t - c >= HOLD_S * 1000 => long_clears += 1,
                    Some(_) => {}
                }
            }
            if !now_breached && breached {
                clear_since = Some(t);
            }
            breached = now_breached;

            let verdicts = engine.observe(&observation(t, value));
            book.apply_all(verdicts, t);
            book.tick(t);
            prop_assert!(book.list(&open).len() <= 1);
        }
        let alerts = book.list(&AlertFilter::default()).len();
        prop_assert!(alerts <= episodes + long_clears);
        prop_assert_eq!(alerts, episodes + long_clears);
    }
}
