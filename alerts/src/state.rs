//! The alert manager's durable state, in an embedded redb file: every alert as it last
//! changed (so a restart neither duplicates an open alert nor loses an acknowledgement) and the
//! rules changed through the API (so they outlive a restart too).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use ioc_alert_engine::model::Alert;

use crate::storage::redb_is_transient;

/// `alert id → Alert as JSON`.
const ALERTS: TableDefinition<'_, &str, &str> = TableDefinition::new("alerts");
/// `rule id → the rule as JSON`, for rules created or changed through the API.
const RULES: TableDefinition<'_, &str, &str> = TableDefinition::new("rules");
/// `rule id → ""`, for rules removed through the API (even ones the rules file lists).
const REMOVED_RULES: TableDefinition<'_, &str, &str> = TableDefinition::new("removed_rules");

/// What can go wrong with the state file. Each variant says what failed; its source why.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state file's folder could not be created.
    #[error("alert state folder")]
    Folder(#[source] std::io::Error),
    /// The database could not be opened, read or written.
    #[error("alert state {context}")]
    Store {
        /// What was being done.
        context: &'static str,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// An alert could not be written as JSON.
    #[error("alert state: alert `{id}` cannot be written")]
    Encode {
        /// The alert's id.
        id: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored record no longer parses.
    #[error("alert state: stored {what} `{id}` is unreadable")]
    Corrupt {
        /// `alert` or `rule`.
        what: &'static str,
        /// Its id.
        id: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    /// Whether retrying may succeed: a folder that could not be made, or a redb failure that
    /// may pass (I/O, a lock, a transaction in the way), may; a corrupt or newer file, an
    /// alert that cannot be written, a record that no longer parses will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Folder(_) => true,
            StateError::Store { source, .. } => redb_is_transient(source),
            StateError::Encode { .. } | StateError::Corrupt { .. } => false,
        }
    }
}

/// A redb failure while doing `context`.
fn store_error<E: Into<redb::Error>>(context: &'static str) -> impl Fn(E) -> StateError {
    move |e| StateError::Store {
        context,
        source: e.into(),
    }
}

/// The rules stored through the API, to lay over the rules file at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredRules {
    /// Rules created or replaced through the API, as JSON, by id.
    pub rules: Vec<(String, String)>,
    /// Ids removed through the API.
    pub removed: Vec<String>,
}

/// The state file.
#[derive(Debug)]
pub struct AlertState {
    db: Database,
}

impl AlertState {
    /// Opens (or creates) the state file at `path`, creating its folder.
    pub fn open(path: &Path) -> Result<AlertState, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StateError::Folder)?;
        }
        let db = Database::create(path).map_err(store_error("open"))?;
        let txn = db.begin_write().map_err(store_error("open"))?;
        for table in [ALERTS, RULES, REMOVED_RULES] {
            txn.open_table(table).map_err(store_error("open"))?;
        }
        txn.commit().map_err(store_error("open"))?;
        Ok(AlertState { db })
    }

    /// Records alerts as they are now, in one durable transaction; resolved alerts older
    /// than the book keeps in memory are forgotten by [`AlertState::forget`].
    pub fn save_alerts<'a>(
        &self,
        alerts: impl IntoIterator<Item = &'a Alert>,
    ) -> Result<(), StateError> {
        let context = "save alerts";
        let txn = self.db.begin_write().map_err(store_error(context))?;
        {
            let mut table = txn.open_table(ALERTS).map_err(store_error(context))?;
            for alert in alerts {
                let json = serde_json::to_string(alert).map_err(|source| StateError::Encode {
                    id: alert.id.clone(),
                    source,
                })?;
                table
                    .insert(alert.id.as_str(), json.as_str())
                    .map_err(store_error(context))?;
            }
        }
        txn.commit().map_err(store_error(context))
    }

    /// Drops alerts from the file (resolved ones the book no longer keeps).
    pub fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<(), StateError> {
        let context = "forget alerts";
        let txn = self.db.begin_write().map_err(store_error(context))?;
        {
            let mut table = txn.open_table(ALERTS).map_err(store_error(context))?;
            for id in ids {
                table.remove(id).map_err(store_error(context))?;
            }
        }
        txn.commit().map_err(store_error(context))
    }

    /// Every stored alert.
    pub fn load_alerts(&self) -> Result<Vec<Alert>, StateError> {
        let context = "load alerts";
        let txn = self.db.begin_read().map_err(store_error(context))?;
        let table = txn.open_table(ALERTS).map_err(store_error(context))?;
        let mut alerts = Vec::new();
        for entry in table.iter().map_err(store_error(context))? {
            let (id, json) = entry.map_err(store_error(context))?;
            let alert: Alert =
                serde_json::from_str(json.value()).map_err(|e| StateError::Corrupt {
                    what: "alert",
                    id: id.value().to_owned(),
                    source: e,
                })?;
            alerts.push(alert);
        }
        Ok(alerts)
    }

    /// Records a rule created or replaced through the API (`json` is the rule).
    pub fn save_rule(&self, id: &str, json: &str) -> Result<(), StateError> {
        self.set_rule(id, Some(json), "save rule")
    }

    /// Records a rule removed through the API.
    pub fn remove_rule(&self, id: &str) -> Result<(), StateError> {
        self.set_rule(id, None, "remove rule")
    }

    /// Stores a rule (`Some`) or its removal (`None`) in one transaction.
    fn set_rule(
        &self,
        id: &str,
        json: Option<&str>,
        context: &'static str,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(store_error(context))?;
        {
            let mut rules = txn.open_table(RULES).map_err(store_error(context))?;
            let mut removed = txn
                .open_table(REMOVED_RULES)
                .map_err(store_error(context))?;
            match json {
                Some(json) => {
                    rules.insert(id, json).map_err(store_error(context))?;
                    removed.remove(id).map_err(store_error(context))?;
                }
                None => {
                    rules.remove(id).map_err(store_error(context))?;
                    removed.insert(id, "").map_err(store_error(context))?;
                }
            }
        }
        txn.commit().map_err(store_error(context))
    }

    /// The rules stored through the API.
    pub fn load_rules(&self) -> Result<StoredRules, StateError> {
        let context = "load rules";
        let txn = self.db.begin_read().map_err(store_error(context))?;
        let mut stored = StoredRules::default();
        let rules = txn.open_table(RULES).map_err(store_error(context))?;
        for entry in rules.iter().map_err(store_error(context))? {
            let (id, json) = entry.map_err(store_error(context))?;
            stored
                .rules
                .push((id.value().to_owned(), json.value().to_owned()));
        }
        let removed = txn
            .open_table(REMOVED_RULES)
            .map_err(store_error(context))?;
        for entry in removed.iter().map_err(store_error(context))? {
            let (id, _) = entry.map_err(store_error(context))?;
            stored.removed.push(id.value().to_owned());
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use ioc_schemas::{AlertState as State, Category, Department, District, Severity};

    use super::*;

    fn alert(id: &str, state: State) -> Alert {
        Alert {
            id: id.into(),
            rule_id: "r".into(),
            entity_id: "e".into(),
            district: Some(District::HaiChau),
            department: Department::Transport,
            category: Category::Traffic,
            severity: Severity::Major,
            state,
            message: "m".into(),
            value: Some(1.0),
            opened_ms: 1,
            breach_event_ms: 1,
            updated_ms: 1,
            breaches: 1,
            escalations: 0,
            acknowledged: None,
            resolved: None,
            comments: Vec::new(),
            suppressed: false,
        }
    }

    #[test]
    fn alerts_and_rules_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("ioc-alert-state-{}", std::process::id()));
        let path = dir.join("alerts.redb");
        {
            let state = AlertState::open(&path).unwrap();
            let mut acked = alert("a1", State::Acknowledged);
            acked.acknowledged = Some(("op".into(), 5));
            state
                .save_alerts([&acked, &alert("a2", State::Active)])
                .unwrap();
            state.forget(["a2"]).unwrap();
            state.save_rule("r1", r#"{"id":"r1"}"#).unwrap();
            state.save_rule("r2", r#"{"id":"r2"}"#).unwrap();
            state.remove_rule("r2").unwrap();
            state.remove_rule("from-file").unwrap();
        }
        let state = AlertState::open(&path).unwrap();
        let alerts = state.load_alerts().unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].acknowledged, Some(("op".into(), 5)));
        let rules = state.load_rules().unwrap();
        assert_eq!(
            rules.rules,
            vec![("r1".to_owned(), r#"{"id":"r1"}"#.to_owned())]
        );
        assert_eq!(rules.removed, vec!["from-file".to_owned(), "r2".to_owned()]);
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
