//! The checked-in JSON Schemas must match the Rust types. Regenerate them with
//! `IOC_BLESS=1 cargo test -p ioc-schemas --test json_schemas`.

use std::path::PathBuf;

#[test]
fn checked_in_json_schemas_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let bless = std::env::var_os("IOC_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, text) in ioc_schemas::wire_schemas() {
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == text => {}
            _ => stale.push(name),
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schemas {stale:?}: run `IOC_BLESS=1 cargo test -p ioc-schemas --test json_schemas`"
    );
}

#[test]
fn reading_schema_lists_every_kind() {
    let (_, text) = ioc_schemas::wire_schemas().remove(0);
    for kind in ioc_schemas::Kind::ALL {
        assert!(text.contains(&format!("\"{kind}\"")), "{kind} missing");
    }
}
