//! `docs/configuration.md` must match the config types, and every config field must have a
//! doc comment (it is the key's description there). Regenerate the file with
//! `IOC_BLESS=1 cargo test -p iocd --test config_reference`.

use std::path::PathBuf;

const REGENERATE: &str = "IOC_BLESS=1 cargo test -p iocd --test config_reference";

#[test]
fn every_config_field_is_documented() {
    let reference = iocd::config_reference::generate();
    assert!(
        reference.undocumented.is_empty(),
        "config fields without a `///` doc comment: {:?}; document them, then run `{REGENERATE}`",
        reference.undocumented
    );
}

#[test]
fn configuration_reference_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = iocd::config_reference::generate().markdown;
    if std::env::var_os("IOC_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != text {
        let first_difference = on_disk
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(text.lines().count()));
        panic!(
            "docs/configuration.md is stale (first difference at line {}): run `{REGENERATE}`",
            first_difference + 1
        );
    }
}

#[test]
fn the_reference_covers_sections_nested_tables_and_flags() {
    let reference = iocd::config_reference::generate();
    let md = &reference.markdown;
    for heading in [
        "## `[clickhouse]`",
        "### `[clickhouse.retention]`",
        "### `[alerts.lifecycle]`",
        "### `[alerts.webhooks]`",
        "### `[[alerts.webhooks.subscriptions]]`",
        "### `[simulator.episodes.flood]`",
        "### `[http.auth]`",
        "### `[[http.auth.tokens]]`",
        "## `[restart]`",
    ] {
        assert!(md.contains(heading), "missing {heading}");
    }
    // Defaults come from the `Default` impls.
    assert!(
        md.contains("| `batch_max_rows` | integer | `50000` | `IOC__CLICKHOUSE__BATCH_MAX_ROWS` |")
    );
    assert!(md.contains("| `listen` | string | `\"127.0.0.1:8080\"` | `IOC__HTTP__LISTEN` |"));
    assert!(md.contains("| `iocd demo` | `--rate` | [`simulator.rate_per_s`]"));
    assert!(reference.flags.len() >= 8, "{:?}", reference.flags);
}

/// The environment examples the reference gives work as it says.
#[test]
#[allow(clippy::result_large_err)] // figment::Jail fixes the closure type.
fn the_documented_environment_examples_load() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("IOC__CLICKHOUSE__BATCH_MAX_ROWS", "100000");
        jail.set_env("IOC__CLICKHOUSE__RETENTION__READINGS_DAYS", "30");
        jail.set_env("IOC__MQTT__TOPICS", r#"["ioc/v1/#", "city/#"]"#);
        jail.set_env("IOC__DATAFLOW__WINDOWS", "[{size_ms=60000}]");
        let c = iocd::config::load(None, figment::Figment::new()).expect("loads");
        let clickhouse = c.clickhouse.expect("a key turns the section on");
        assert_eq!(clickhouse.batch_max_rows, 100_000);
        assert_eq!(clickhouse.retention.readings_days, 30);
        assert_eq!(
            clickhouse.url, "http://127.0.0.1:8123",
            "other keys keep defaults"
        );
        assert_eq!(c.mqtt.topics, ["ioc/v1/#", "city/#"]);
        assert_eq!(c.dataflow.windows, [ioc_schemas::WindowSpec::MINUTE]);
        Ok(())
    });
}
