//! The checked-in JSON Schemas of the alerts crate must match the Rust types: the webhook
//! payload departments receive, and a rule as the API and the rules file take it. Regenerate
//! with `IOC_BLESS=1 cargo test -p ioc-alerts --test json_schemas`.

use std::path::PathBuf;

#[test]
fn checked_in_json_schemas_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let mut rule =
        serde_json::to_string_pretty(&schemars::schema_for!(ioc_alerts::rules::Rule)).unwrap();
    rule.push('\n');
    let files = [
        (
            "webhook-payload.schema.json",
            ioc_alerts::webhooks::payload_schema(),
        ),
        ("rule.schema.json", rule),
    ];
    let bless = std::env::var_os("IOC_BLESS").is_some();
    for (name, text) in files {
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{name} is stale: run `IOC_BLESS=1 cargo test -p ioc-alerts --test json_schemas`"
        );
    }
}
