//! The device registry at start-up and its changes at run time.
//!
//! At start-up the registry is the fleet file (the checked-in Da Nang fleet unless
//! `registry.path` names another), with the changes stored in ClickHouse on top: a stored
//! device replaces the file's entry with its id, a stored removal takes the id out. Devices the
//! table does not hold as they are get stored, so analysts can join KPI rows to every device.
//!
//! At run time the API hands each change to [`serve_changes`], which stores it first (when
//! ClickHouse is configured), then feeds it to the dataflow, then confirms it. While
//! ClickHouse is configured but not reached, changes are refused: one not stored would be
//! forgotten at the next start.
//!
//! The registry in use is also kept in a local copy ([`LocalCopy`], `registry.json` in the
//! state folder), from which a start without ClickHouse takes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ioc_dashboard_api::RegistryRequest;
use ioc_schemas::{parse_fleet, Device, DeviceChange};
use ioc_simulator::DA_NANG_FLEET_JSON;
use ioc_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// Where the registry comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// A fleet file (a JSON array of devices, see `schemas/json/device.schema.json`) to start
    /// from; the checked-in Da Nang fleet (`simulator/registry/da_nang.json`) when absent.
    pub path: Option<PathBuf>,
    /// Capacity of the bounded queue of changes into the dataflow; an API change waits while
    /// it is full.
    pub change_capacity: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            path: None,
            change_capacity: 64,
        }
    }
}

/// The registry to start with: the fleet file with the stored changes on top. Stores the
/// devices ClickHouse does not yet hold as they are.
pub async fn initial_devices(
    config: &RegistryConfig,
    store: Option<&Store>,
) -> anyhow::Result<BTreeMap<String, Device>> {
    let text = match &config.path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the fleet file {}", path.display()))?,
        None => DA_NANG_FLEET_JSON.to_owned(),
    };
    let file = parse_fleet(&text).with_context(|| match &config.path {
        Some(path) => format!("fleet file {}", path.display()),
        None => "the checked-in fleet".to_owned(),
    })?;
    let Some(store) = store else {
        return Ok(file);
    };
    let stored = store.load_devices().await?;
    let devices = stored.overlay(file);
    let unstored: Vec<Device> = devices
        .values()
        .filter(|d| stored.devices.get(&d.id) != Some(d))
        .cloned()
        .collect();
    store.save_devices(&unstored, ioc_schemas::now_ms()).await?;
    tracing::info!(
        devices = devices.len(),
        stored_changes = stored.devices.len() + stored.removed.len(),
        newly_stored = unstored.len(),
        "device registry loaded"
    );
    Ok(devices)
}

/// The registry in use, kept on local disk for a start that cannot reach ClickHouse.
#[derive(Debug, Clone)]
pub struct LocalCopy {
    path: PathBuf,
}

impl LocalCopy {
    /// `registry.json` in `dir`.
    pub fn in_dir(dir: &std::path::Path) -> LocalCopy {
        LocalCopy {
            path: dir.join("registry.json"),
        }
    }

    /// The devices last saved, if a copy exists and reads back.
    pub fn load(&self) -> Option<BTreeMap<String, Device>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match parse_fleet(&text) {
            Ok(devices) => Some(devices),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "the local copy of the registry does not read back; ignored");
                None
            }
        }
    }

    /// Replaces the copy (written aside, then renamed, so a crash leaves the old one whole).
    /// A failure is logged: the copy only matters to a start without ClickHouse.
    pub fn save(&self, devices: &BTreeMap<String, Device>) {
        let list: Vec<&Device> = devices.values().collect();
        let aside = self.path.with_extension("json.tmp");
        let written = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&aside, bytes))
            .and_then(|()| std::fs::rename(&aside, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot save the local copy of the registry");
        }
    }
}

/// Where the registry's changes are stored.
#[derive(Debug, Clone)]
pub enum ChangeStore {
    /// No ClickHouse is configured: changes are applied without being stored.
    Unstored,
    /// ClickHouse, once reached (`None` until then).
    ClickHouse(watch::Receiver<Option<Store>>),
}

/// Applies the API's registry changes until the API drops its sender: each is stored, then fed
/// to the dataflow, then confirmed, and the local copy of `devices` is brought up to date. A
/// change that cannot be stored is refused and goes no further.
pub async fn serve_changes(
    mut requests: mpsc::Receiver<RegistryRequest>,
    store: ChangeStore,
    dataflow: mpsc::Sender<DeviceChange>,
    mut devices: BTreeMap<String, Device>,
    copy: LocalCopy,
) {
    while let Some(RegistryRequest { change, reply }) = requests.recv().await {
        let result = apply(&change, &store, &dataflow).await;
        match &result {
            Ok(()) => {
                tracing::info!(device = change.device_id(), "registry change applied");
                match &change {
                    DeviceChange::Upsert(d) => {
                        devices.insert(d.id.clone(), d.clone());
                    }
                    DeviceChange::Remove { id } => {
                        devices.remove(id);
                    }
                }
                copy.save(&devices);
            }
            Err(e) => {
                tracing::warn!(device = change.device_id(), error = %e, "registry change refused")
            }
        }
        // The API may have timed out and gone; the change stands either way.
        let _ = reply.send(result);
    }
}

async fn apply(
    change: &DeviceChange,
    store: &ChangeStore,
    dataflow: &mpsc::Sender<DeviceChange>,
) -> Result<(), String> {
    if let ChangeStore::ClickHouse(store) = store {
        let Some(store) = store.borrow().clone() else {
            return Err(
                "ClickHouse is unavailable, so the change cannot be stored and is not applied; \
                 try again once it is back"
                    .into(),
            );
        };
        store
            .save_device_change(change, ioc_schemas::now_ms())
            .await
            .map_err(|e| {
                let e = ioc_store::DisplayChain(&e);
                format!("not stored, so not applied: {e}")
            })?;
    }
    dataflow
        .send(change.clone())
        .await
        .map_err(|_| "the dataflow has stopped".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_registry_is_the_checked_in_fleet() {
        let devices = initial_devices(&RegistryConfig::default(), None)
            .await
            .unwrap();
        assert_eq!(devices.len(), 476);
        assert!(devices.contains_key("tsc-hai_chau-001"));
    }

    #[tokio::test]
    async fn a_bad_fleet_file_names_the_device() {
        let dir = std::env::temp_dir().join(format!("iocd-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.json");
        std::fs::write(
            &path,
            r#"[{"id":"g1","kind":"sensor","name":"x","district":"hai_chau","lat":95,"lon":108,"department":"transport","expected_interval_s":60}]"#,
        )
        .unwrap();
        let config = RegistryConfig {
            path: Some(path),
            ..RegistryConfig::default()
        };
        let e = initial_devices(&config, None).await.unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("g1") && text.contains("lat"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_local_copy_reads_back_what_was_saved() {
        let dir = std::env::temp_dir().join(format!("iocd-registry-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = LocalCopy::in_dir(&dir);
        assert_eq!(copy.load(), None);
        let mut devices = initial_devices(&RegistryConfig::default(), None)
            .await
            .unwrap();
        devices.remove("tsc-hai_chau-001");
        copy.save(&devices);
        assert_eq!(copy.load(), Some(devices));
        std::fs::write(dir.join("registry.json"), "[{").unwrap();
        assert_eq!(copy.load(), None, "a torn copy is ignored");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
