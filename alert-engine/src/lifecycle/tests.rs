//! The lifecycle's unit tests: opening, updating, holding, resolving, escalating, rebuilding
//! after a restart, listing, memory bounds and storm control.

use ioc_schemas::{Department, District};

use super::*;
use crate::engine::Verdict;
use crate::model::{Alert, AlertEvent, AlertState, Category, Severity, Transition};
use crate::rules::RuleSet;
use crate::testkit::{MIN, S, T0};

fn verdict(entity: &str, breached: bool, event_ms: u64) -> Verdict {
    Verdict {
        rule_id: "wind".into(),
        entity_id: entity.into(),
        district: Some(District::SonTra),
        department: Department::Construction,
        severity: Severity::Warning,
        category: Category::Structure,
        breached,
        value: Some(if breached { 30.0 } else { 10.0 }),
        event_ms,
        message: format!("gió tại {entity}"),
        hold_s: 300,
        escalate_after_s: Some(600),
    }
}

fn transitions(events: &[AlertEvent]) -> Vec<(Transition, bool)> {
    events.iter().map(|e| (e.transition, e.notify)).collect()
}

#[test]
fn open_update_not_duplicate_then_auto_resolve_after_hold() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let ev = book.apply(verdict("b-1", true, T0), T0);
    assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
    let id = ev[0].alert.id.clone();
    assert_eq!(id, format!("wind:b-1:{T0}"));
    assert_eq!(ev[0].event_id, format!("{id}:1"));
    assert_eq!(ev[0].actor, "system");
    // A repeat breach within a minute is counted, without an event.
    assert!(book.apply(verdict("b-1", true, T0 + S), T0 + S).is_empty());
    // A repeat breach a minute later is an update event, not a new alert.
    let ev = book.apply(verdict("b-1", true, T0 + 61 * S), T0 + 61 * S);
    assert_eq!(transitions(&ev), vec![(Transition::Updated, false)]);
    assert_eq!(ev[0].alert.id, id);
    assert_eq!(ev[0].alert.breaches, 3);
    assert_eq!(ev[0].event_id, format!("{id}:3"));
    assert_eq!(book.list(&AlertFilter::default()).len(), 1);
    // Clear: held for 300 s of event time before resolving.
    assert!(book
        .apply(verdict("b-1", false, T0 + 2 * MIN), T0 + 2 * MIN)
        .is_empty());
    assert!(book.tick(T0 + 6 * MIN).is_empty());
    let ev = book.tick(T0 + 7 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
    let a = &ev[0].alert;
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.resolved, Some(("auto".to_owned(), T0 + 7 * MIN)));
    assert!(book.open_alert("wind", "b-1").is_none());
    // A new breach opens a new alert.
    let ev = book.apply(verdict("b-1", true, T0 + 8 * MIN), T0 + 8 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
    assert_ne!(ev[0].alert.id, id);
}

#[test]
fn a_breach_during_the_hold_keeps_the_alert() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    book.apply(verdict("b-1", true, T0), T0);
    book.apply(verdict("b-1", false, T0 + 10 * S), T0 + 10 * S);
    book.apply(verdict("b-1", true, T0 + 20 * S), T0 + 20 * S);
    assert!(book
        .tick(T0 + 10 * MIN)
        .iter()
        .all(|e| e.transition != Transition::Resolved));
    assert_eq!(book.list(&AlertFilter::default()).len(), 1);
    // Event time from other verdicts also runs the hold out.
    book.apply(verdict("b-1", false, T0 + 11 * MIN), T0 + 11 * MIN);
    let ev = book.apply(verdict("b-2", false, T0 + 16 * MIN), T0 + 11 * MIN + S);
    assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
}

#[test]
fn acknowledge_resolve_comment_and_errors() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
    let e = book.acknowledge(&id, "op.lan", T0 + S).unwrap();
    assert_eq!(
        (e.transition, e.notify, e.actor.as_str()),
        (Transition::Acknowledged, false, "op.lan")
    );
    assert_eq!(e.alert.state, AlertState::Acknowledged);
    assert_eq!(e.alert.acknowledged, Some(("op.lan".to_owned(), T0 + S)));
    assert_eq!(
        book.acknowledge(&id, "op.lan", T0 + S).unwrap_err(),
        LifecycleError::AlreadyAcknowledged(id.clone())
    );
    let e = book
        .comment(&id, "op.lan", "Đã cử đội kiểm tra", T0 + 2 * S)
        .unwrap();
    assert_eq!((e.transition, e.notify), (Transition::Commented, false));
    assert_eq!(e.alert.comments.len(), 1);
    assert_eq!(
        book.comment(&id, "op.lan", "  ", T0).unwrap_err(),
        LifecycleError::InvalidComment
    );
    assert_eq!(
        book.comment(&id, "", "x", T0).unwrap_err(),
        LifecycleError::InvalidActor
    );
    // An acknowledged alert still updates on repeat breaches.
    let ev = book.apply(verdict("b-1", true, T0 + 2 * MIN), T0 + 2 * MIN);
    assert_eq!(ev[0].alert.state, AlertState::Acknowledged);
    let e = book.resolve(&id, "op.lan", T0 + 3 * MIN).unwrap();
    assert_eq!((e.transition, e.notify), (Transition::Resolved, true));
    assert_eq!(e.alert.resolved, Some(("op.lan".to_owned(), T0 + 3 * MIN)));
    assert_eq!(
        book.resolve(&id, "op.lan", T0).unwrap_err(),
        LifecycleError::AlreadyResolved(id.clone())
    );
    assert_eq!(
        book.acknowledge(&id, "op.lan", T0).unwrap_err(),
        LifecycleError::AlreadyResolved(id.clone())
    );
    assert_eq!(
        book.acknowledge("nope", "op.lan", T0).unwrap_err(),
        LifecycleError::NotFound("nope".into())
    );
    // Comments on a resolved alert are kept.
    book.comment(&id, "op.lan", "Nguyên nhân: gió giật", T0 + 4 * MIN)
        .unwrap();
    // Event ids never repeat.
    let a = book.get(&id).unwrap();
    assert_eq!(a.comments.len(), 2);
    assert!(e.alert.id == id);
}

#[test]
fn event_ids_are_unique_and_increasing() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let mut ids = Vec::new();
    let ev = book.apply(verdict("b-1", true, T0), T0);
    let id = ev[0].alert.id.clone();
    ids.extend(ev.into_iter().map(|e| e.event_id));
    for i in 1..200u64 {
        ids.extend(
            book.apply(verdict("b-1", true, T0 + i * 7 * S), T0 + i * 7 * S)
                .into_iter()
                .map(|e| e.event_id),
        );
        if i % 50 == 0 {
            ids.push(
                book.comment(&id, "op", "x", T0 + i * 7 * S)
                    .unwrap()
                    .event_id,
            );
        }
        ids.extend(book.tick(T0 + i * 7 * S).into_iter().map(|e| e.event_id));
    }
    ids.push(book.acknowledge(&id, "op", T0 + 2000 * S).unwrap().event_id);
    ids.extend(book.tick(T0 + 3000 * S).into_iter().map(|e| e.event_id));
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    let seqs: Vec<u64> = ids
        .iter()
        .map(|i| i.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn escalation_raises_severity_and_notifies_until_acknowledged() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
    assert!(book.tick(T0 + 9 * MIN).is_empty());
    let ev = book.tick(T0 + 10 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Escalated, true)]);
    assert_eq!(ev[0].alert.severity, Severity::Major);
    assert_eq!(ev[0].alert.escalations, 1);
    assert!(book.tick(T0 + 15 * MIN).is_empty());
    let ev = book.tick(T0 + 20 * MIN);
    assert_eq!(ev[0].alert.severity, Severity::Critical);
    book.acknowledge(&id, "op", T0 + 21 * MIN).unwrap();
    assert!(book.tick(T0 + 60 * MIN).is_empty());
    assert_eq!(book.get(&id).unwrap().escalations, 2);
}

#[test]
fn escalation_stops_at_the_limit() {
    let config = LifecycleConfig {
        max_escalations: 1,
        ..LifecycleConfig::default()
    };
    let mut book = AlertBook::new(config);
    book.apply(verdict("b-1", true, T0), T0);
    assert_eq!(book.tick(T0 + 10 * MIN).len(), 1);
    assert!(book.tick(T0 + 100 * MIN).is_empty());
}

#[test]
fn rebuild_from_alerts_keeps_the_open_alert_and_its_acknowledgement() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let id = book.apply(verdict("b-1", true, T0), T0)[0].alert.id.clone();
    let ack = book.acknowledge(&id, "op", T0 + S).unwrap();
    let other = book.apply(verdict("b-2", true, T0), T0)[0].alert.id.clone();
    book.resolve(&other, "op", T0 + 2 * S).unwrap();
    let persisted: Vec<Alert> = book.alerts().cloned().collect();

    let mut book = AlertBook::from_alerts(persisted, LifecycleConfig::default());
    assert_eq!(book.len(), 2);
    assert_eq!(book.open_count(), 1);
    let ev = book.apply(verdict("b-1", true, T0 + 5 * MIN), T0 + 5 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Updated, false)]);
    assert_eq!(ev[0].alert.id, id);
    assert_eq!(ev[0].alert.state, AlertState::Acknowledged);
    assert_ne!(ev[0].event_id, ack.event_id);
    assert_eq!(
        book.list(&AlertFilter {
            rule_id: Some("wind".into()),
            entity_id: Some("b-1".into()),
            ..AlertFilter::default()
        })
        .len(),
        1
    );
    // A clear after the restart resolves it after the hold.
    book.apply(verdict("b-1", false, T0 + 6 * MIN), T0 + 6 * MIN);
    let ev = book.tick(T0 + 12 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Resolved, true)]);
}

#[test]
fn rebuilt_alerts_escalate_with_rule_timings() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    book.apply(verdict("b-1", true, T0), T0);
    let persisted: Vec<Alert> = book.alerts().cloned().collect();
    let mut book = AlertBook::from_alerts(persisted, LifecycleConfig::default());
    assert!(book.tick(T0 + 11 * MIN).is_empty(), "no timing known yet");
    let rules = RuleSet::from_toml(
        r#"[[rule]]
        id = "wind"
        name = "wind"
        severity = "warning"
        category = "structure"
        department = "construction"
        source = { reading = "wind_speed_ms" }
        condition = { type = "threshold", above = 25 }
        escalate_after_s = 600
        message = "x"
        "#,
    )
    .unwrap();
    book.set_rule_timings(&rules);
    let ev = book.tick(T0 + 11 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Escalated, true)]);
}

#[test]
fn the_latest_event_of_an_alert_is_the_one_it_last_sent() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    let opened = book.apply(verdict("a", true, T0), T0);
    let alert = &book.list(&AlertFilter::default())[0];
    assert_eq!(latest_event(alert).event_id, opened[0].event_id);
    assert_eq!(latest_event(alert).transition, Transition::Opened);
    let id = alert.id.clone();
    let acked = book.acknowledge(&id, "op", T0 + S).unwrap();
    let alert = &book.list(&AlertFilter::default())[0];
    let latest = latest_event(alert);
    assert_eq!(
        (&latest.event_id, latest.transition, latest.actor.as_str()),
        (&acked.event_id, Transition::Acknowledged, "op")
    );
    assert!(!latest.notify, "a snapshot never notifies again");
}

#[test]
fn list_filters_and_orders_newest_first() {
    let mut book = AlertBook::new(LifecycleConfig::default());
    for (i, e) in ["a", "b", "c"].iter().enumerate() {
        book.apply(verdict(e, true, T0), T0 + i as u64 * S);
    }
    let all = book.list(&AlertFilter::default());
    assert_eq!(
        all.iter().map(|a| a.entity_id.as_str()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    let f = AlertFilter {
        limit: Some(2),
        min_severity: Some(Severity::Warning),
        department: Some(Department::Construction),
        district: Some(District::SonTra),
        category: Some(Category::Structure),
        state: Some(AlertState::Active),
        ..AlertFilter::default()
    };
    assert_eq!(book.list(&f).len(), 2);
    let f = AlertFilter {
        min_severity: Some(Severity::Major),
        ..AlertFilter::default()
    };
    assert!(book.list(&f).is_empty());
    let f: AlertFilter = serde_json::from_str(r#"{"open": true, "rule_id": "wind"}"#).unwrap();
    assert_eq!(book.list(&f).len(), 3);
}

#[test]
fn resolved_alerts_are_bounded() {
    let config = LifecycleConfig {
        max_resolved: 5,
        keep_resolved_s: 3600,
        ..LifecycleConfig::default()
    };
    let mut book = AlertBook::new(config);
    for i in 0..10u64 {
        let id = book.apply(verdict(&format!("d{i}"), true, T0), T0)[0]
            .alert
            .id
            .clone();
        book.resolve(&id, "op", T0 + i).unwrap();
    }
    book.tick(T0 + S);
    assert_eq!(book.len(), 5);
    book.tick(T0 + 2 * 3600 * S);
    assert_eq!(book.len(), 0);
}

#[test]
fn storm_control_caps_and_summarises() {
    let config = LifecycleConfig {
        max_per_rule: 3,
        ..LifecycleConfig::default()
    };
    let mut book = AlertBook::new(config);
    let mut events = Vec::new();
    for i in 0..10 {
        events.extend(book.apply(verdict(&format!("d{i}"), true, T0), T0));
    }
    let notified: Vec<_> = events.iter().filter(|e| e.notify).collect();
    assert_eq!(notified.len(), 4, "3 alerts and the summary");
    let summary = book.open_alert("storm:rule:wind", "wind").unwrap();
    assert_eq!(summary.category, Category::Storm);
    assert_eq!(summary.breaches, 7);
    assert_eq!(
        book.list(&AlertFilter {
            suppressed: Some(true),
            ..AlertFilter::default()
        })
        .len(),
        7
    );
    // The summary's growth is notified once a minute later.
    let ev = book.tick(T0 + MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Updated, true)]);
    // Suppressed alerts do not escalate; the summary resolves when the storm is over.
    let ev = book.tick(T0 + 15 * MIN);
    assert!(
        ev.iter().all(|e| !e.alert.suppressed),
        "{:?}",
        transitions(&ev)
    );
    let resolved: Vec<_> = ev
        .iter()
        .filter(|e| e.transition == Transition::Resolved)
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].alert.category, Category::Storm);
    // A new window: notified again.
    let ev = book.apply(verdict("d99", true, T0 + 16 * MIN), T0 + 16 * MIN);
    assert_eq!(transitions(&ev), vec![(Transition::Opened, true)]);
}
