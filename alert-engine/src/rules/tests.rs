//! The rules' unit tests: parsing, validation, sets and their changes.

use ioc_schemas::{Department, Kind, KpiFamily, Scope};

use super::*;
use crate::model::{Category, Severity};

fn rule(id: &str) -> Rule {
    Rule {
        id: id.to_owned(),
        name: "Gió mạnh trên cầu".to_owned(),
        enabled: true,
        raises_alerts: true,
        severity: Severity::Major,
        category: Category::Structure,
        department: RuleDepartment::Fixed(Department::Construction),
        source: Some(RuleSource {
            reading: Some("wind_speed_ms".to_owned()),
            kind: Some(Kind::Sensor),
            ..RuleSource::default()
        }),
        condition: Condition::Threshold {
            above: Some(25.0),
            below: None,
            clear: Some(20.0),
        },
        for_s: 0,
        hold_s: 300,
        escalate_after_s: Some(900),
        clear_after_s: None,
        districts: vec![],
        devices: vec![],
        message: "Gió {value} m/s tại {entity}".to_owned(),
    }
}

fn composite(id: &str, of: &[&str]) -> Rule {
    Rule {
        source: None,
        condition: Condition::Composite {
            op: CompositeOp::All,
            of: of.iter().map(|s| (*s).to_owned()).collect(),
            scope: CompositeScope::District,
        },
        ..rule(id)
    }
}

#[test]
fn the_default_set_parses_validates_and_round_trips() {
    let set = RuleSet::da_nang().unwrap();
    assert!(set.len() >= 8, "{}", set.len());
    for id in [
        "aqi_bad",
        "pm25_hourly_high",
        "congestion_e_f",
        "signal_fault",
        "flood_warning",
        "bridge_wind_high",
        "crowd_gathering",
        "device_offline",
    ] {
        assert!(set.get(id).is_some(), "missing {id}");
    }
    let text = set.to_toml().unwrap();
    assert_eq!(RuleSet::from_toml(&text).unwrap(), set);
    // JSON is the same form: each rule round-trips through it.
    for r in set.rules() {
        let json = serde_json::to_string(r).unwrap();
        let back: Rule = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, r);
    }
}

#[test]
fn toml_and_json_read_the_same_rule() {
    let toml_text = r#"
        [[rule]]
        id = "wind"
        name = "Gió mạnh"
        severity = "major"
        category = "structure"
        department = "owner"
        source = { reading = "wind_speed_ms", kind = "sensor" }
        condition = { type = "threshold", above = 25, clear = 20 }
        hold_s = 600
        message = "Gió {value} m/s tại {entity}"
    "#;
    let json_text = r#"{
        "id": "wind", "name": "Gió mạnh", "severity": "major", "category": "structure",
        "department": "owner",
        "source": {"reading": "wind_speed_ms", "kind": "sensor"},
        "condition": {"type": "threshold", "above": 25, "clear": 20},
        "hold_s": 600, "message": "Gió {value} m/s tại {entity}"
    }"#;
    let from_toml = RuleSet::from_toml(toml_text).unwrap();
    let from_json: Rule = serde_json::from_str(json_text).unwrap();
    assert_eq!(from_toml.rules(), std::slice::from_ref(&from_json));
    assert!(from_json.enabled && from_json.raises_alerts);
    assert_eq!(from_json.for_s, 0);
    assert_eq!(from_json.department, RuleDepartment::Owner);
}

#[test]
fn errors_name_the_rule_and_the_field() {
    type Breaks = fn(&mut Rule);
    let cases: [(&str, Breaks); 16] = [
        ("id", |r| r.id = "Bad Id".into()),
        ("name", |r| r.name = " ".into()),
        ("category", |r| r.category = Category::Storm),
        ("for_s", |r| r.for_s = -5),
        ("hold_s", |r| r.hold_s = -1),
        ("escalate_after_s", |r| r.escalate_after_s = Some(0)),
        ("message", |r| r.message = "{valeur}".into()),
        ("message", |r| r.message = "{value".into()),
        ("source", |r| r.source = None),
        ("source.field", |r| {
            r.source = Some(RuleSource {
                kpi: Some(KpiFamily::Air),
                field: Some("aqii".into()),
                ..RuleSource::default()
            })
        }),
        ("source.scope", |r| {
            r.source = Some(RuleSource {
                kpi: Some(KpiFamily::Air),
                field: Some("aqi".into()),
                scope: Some(Scope::City),
                ..RuleSource::default()
            })
        }),
        ("source", |r| {
            r.source = Some(RuleSource {
                reading: Some("x".into()),
                kpi: Some(KpiFamily::Air),
                ..RuleSource::default()
            })
        }),
        ("condition.above", |r| {
            r.condition = Condition::Threshold {
                above: Some(1.0),
                below: Some(0.0),
                clear: None,
            }
        }),
        ("condition.clear", |r| {
            r.condition = Condition::Threshold {
                above: Some(1.0),
                below: None,
                clear: Some(2.0),
            }
        }),
        ("condition.over_s", |r| {
            r.condition = Condition::RateOfChange {
                over_s: -60,
                rise_above: Some(1.0),
                fall_below: None,
            }
        }),
        ("condition.intervals", |r| {
            r.source = None;
            r.condition = Condition::Absence { intervals: 0.0 }
        }),
    ];
    for (field, break_it) in cases {
        let mut r = rule("wind");
        break_it(&mut r);
        let rule_id = r.id.clone();
        match r.validate() {
            Err(RuleError::Invalid { rule, field: f, .. }) => {
                assert_eq!((rule.as_str(), f.as_str()), (rule_id.as_str(), field));
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn unknown_fields_and_bad_types_name_the_rule() {
    let text = r#"
        [[rule]]
        id = "wind"
        name = "x"
        severity = "major"
        category = "structure"
        department = "construction"
        source = { reading = "wind_speed_ms" }
        condition = { type = "threshold", above = 25 }
        message = "x"
        colour = "red"
    "#;
    let e = RuleSet::from_toml(text).unwrap_err();
    assert!(
        matches!(&e, RuleError::Malformed { rule, reason } if rule == "wind" && reason.contains("colour")),
        "{e}"
    );
    let e = RuleSet::from_toml(&text.replace("colour = \"red\"", "department2 = 1")).unwrap_err();
    assert!(e.to_string().starts_with("rule `wind`:"), "{e}");
    let e = RuleSet::from_toml(
        &text
            .replace("\"construction\"", "\"roads\"")
            .replace("colour = \"red\"", ""),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown department `roads`"), "{e}");
    let e = RuleSet::from_toml(
        &text
            .replace("colour = \"red\"", "")
            .replace("above = 25", "above = 25, below = 3, hysteresis = 1"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("hysteresis"), "{e}");
    let e = RuleSet::from_toml("[rules]\nx = 1").unwrap_err();
    assert!(matches!(e, RuleError::Syntax(_)), "{e}");
    let e = RuleSet::from_toml("[[rule]\n").unwrap_err();
    assert!(matches!(e, RuleError::Syntax(_)), "{e}");
}

#[test]
fn sets_refuse_duplicates_missing_inputs_and_cycles() {
    let e = RuleSet::from_rules(vec![rule("a"), rule("a")]).unwrap_err();
    assert_eq!(e, RuleError::Duplicate("a".into()));

    let e = RuleSet::from_rules(vec![rule("a"), composite("c", &["a", "zz"])]).unwrap_err();
    assert!(
        matches!(&e, RuleError::Invalid { rule, field, reason } if rule == "c" && field == "condition.of" && reason.contains("zz")),
        "{e}"
    );

    let e = RuleSet::from_rules(vec![
        rule("a"),
        composite("c1", &["a", "c2"]),
        composite("c2", &["c1"]),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
    assert!(
        e.to_string().contains("c1 -> c2 -> c1") || e.to_string().contains("c2 -> c1 -> c2"),
        "{e}"
    );

    // Nested composites without a cycle are fine.
    RuleSet::from_rules(vec![
        rule("a"),
        rule("b"),
        composite("c1", &["a", "b"]),
        composite("c2", &["c1", "a"]),
    ])
    .unwrap();
}

#[test]
fn single_rule_changes_are_validated_and_atomic() {
    let mut set = RuleSet::from_rules(vec![rule("a"), rule("b")]).unwrap();
    set.insert(composite("c", &["a", "b"])).unwrap();
    assert_eq!(
        set.insert(rule("a")).unwrap_err(),
        RuleError::Duplicate("a".into())
    );
    assert_eq!(
        set.replace(rule("zz")).unwrap_err(),
        RuleError::NotFound("zz".into())
    );
    let mut changed = rule("a");
    changed.severity = Severity::Critical;
    let old = set.replace(changed).unwrap();
    assert_eq!(old.severity, Severity::Major);
    assert_eq!(set.get("a").map(|r| r.severity), Some(Severity::Critical));
    assert_eq!(set.rules()[0].id, "a", "replaced in place");

    // An invalid rule leaves the set as it was.
    let before = set.clone();
    let mut broken = rule("b");
    broken.for_s = -1;
    assert!(set.upsert(broken).is_err());
    assert_eq!(set, before);
    // A composite that would form a cycle is refused too.
    assert!(set.upsert(composite("a", &["c"])).is_err());
    assert_eq!(set, before);

    assert_eq!(
        set.remove("a").unwrap_err(),
        RuleError::InUse {
            rule: "a".into(),
            by: "c".into()
        }
    );
    set.remove("c").unwrap();
    set.remove("a").unwrap();
    assert_eq!(
        set.remove("a").unwrap_err(),
        RuleError::NotFound("a".into())
    );
    assert_eq!(set.len(), 1);
}

#[test]
fn rules_parse_from_json_and_have_a_schema() {
    let json = serde_json::to_string(&rule("wind")).unwrap();
    assert_eq!(Rule::from_json(&json).unwrap(), rule("wind"));
    let e = Rule::from_json(&json.replace("\"hold_s\":300", "\"hold_s\":-3")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule `wind`: hold_s: -3 s must be 0 to 604800 seconds"
    );
    let e = Rule::from_json(&json.replace("\"message\"", "\"mesage\"")).unwrap_err();
    assert!(
        matches!(&e, RuleError::Malformed { rule, reason } if rule == "wind" && reason.contains("mesage")),
        "{e}"
    );
    assert!(matches!(
        Rule::from_json("{"),
        Err(RuleError::Malformed { .. })
    ));
    let schema = serde_json::to_string(&schemars::schema_for!(Rule)).unwrap();
    for word in [
        "condition",
        "rate_of_change",
        "composite",
        "department",
        "hold_s",
    ] {
        assert!(schema.contains(word), "{word}");
    }
}

#[test]
fn kpi_sources_default_to_the_family_scope() {
    let s = RuleSource {
        kpi: Some(KpiFamily::Camera),
        field: Some("events.crowd_gathering".into()),
        ..RuleSource::default()
    };
    assert_eq!(
        s.resolve(),
        Some(SourceRef::Kpi {
            family: KpiFamily::Camera,
            scope: Scope::District,
            field: "events.crowd_gathering".into()
        })
    );
    s.validate("x").unwrap();
    let t = RuleSource {
        kpi: Some(KpiFamily::Traffic),
        field: Some("level".into()),
        scope: Some(Scope::District),
        ..RuleSource::default()
    };
    t.validate("x").unwrap();
}
