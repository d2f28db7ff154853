//! The durable outbox: subscriptions and deliveries in a redb file. Every call is one
//! transaction, committed (fsync) before it returns; they block, so the dispatcher calls them
//! from `spawn_blocking`.
//!
//! Tables: `subscriptions` (id → JSON, secrets included), `deliveries` (id → JSON of
//! [`Delivery`]), `delivery_bodies` (id → the exact body sent), `pending` ((subscription id,
//! delivery id) → next attempt ms: the work left, per subscriber), `webhook_ids` (webhook id
//! → delivery id: one delivery per event and subscription), `meta` (the id counter).

use std::path::Path;

use ioc_schemas::{Department, EpochMs};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::delivery::{Delivery, DeliveryQuery, DeliveryState};
use super::error::WebhookError;
use super::subscription::StoredSubscription;

const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
const BODIES: TableDefinition<u64, &str> = TableDefinition::new("delivery_bodies");
const PENDING: TableDefinition<(&str, u64), u64> = TableDefinition::new("pending");
const WEBHOOK_IDS: TableDefinition<&str, u64> = TableDefinition::new("webhook_ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const NEXT_ID: &str = "next_delivery_id";

/// The most deliveries one listing examines (newest first), so a listing's cost is bounded.
const MAX_SCAN: usize = 100_000;
/// The most deliveries one purge removes (the janitor runs it again until done).
pub(crate) const PURGE_BATCH: usize = 10_000;

/// A delivery to create.
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub(crate) webhook_id: String,
    pub(crate) subscription_id: String,
    pub(crate) department: Department,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) alert_id: String,
}

/// A delivery created (or put back to pending): what its subscriber's task needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scheduled {
    pub(crate) id: u64,
    pub(crate) subscription_id: String,
    pub(crate) due_ms: EpochMs,
}

/// The result of an attempt, to record.
#[derive(Debug, Clone)]
pub(crate) struct AttemptChange {
    pub(crate) attempts: u32,
    pub(crate) at_ms: EpochMs,
    pub(crate) finished_ms: EpochMs,
    pub(crate) state: DeliveryState,
    pub(crate) next_attempt_ms: Option<EpochMs>,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
}

/// A stored delivery and its body.
#[derive(Debug, Clone)]
pub(crate) struct StoredDelivery {
    pub(crate) info: Delivery,
    pub(crate) body: String,
}

/// The outbox file.
#[derive(Debug)]
pub(crate) struct Outbox {
    db: Database,
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, WebhookError> {
    serde_json::to_vec(value).map_err(WebhookError::Record)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(bytes).map_err(WebhookError::Record)
}

impl Outbox {
    /// Opens (or creates) the file and its tables. The file holds the signing secrets: on
    /// Unix it is made readable by its owner only.
    pub(crate) fn open(path: &Path) -> Result<Outbox, WebhookError> {
        let db = Database::create(path).map_err(WebhookError::store)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(WebhookError::Permissions)?;
        }
        let tx = db.begin_write().map_err(WebhookError::store)?;
        {
            tx.open_table(SUBSCRIPTIONS).map_err(WebhookError::store)?;
            tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
            tx.open_table(BODIES).map_err(WebhookError::store)?;
            tx.open_table(PENDING).map_err(WebhookError::store)?;
            tx.open_table(WEBHOOK_IDS).map_err(WebhookError::store)?;
            tx.open_table(META).map_err(WebhookError::store)?;
        }
        tx.commit().map_err(WebhookError::store)?;
        Ok(Outbox { db })
    }

    /// Every stored subscription.
    pub(crate) fn subscriptions(&self) -> Result<Vec<StoredSubscription>, WebhookError> {
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(SUBSCRIPTIONS).map_err(WebhookError::store)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(WebhookError::store)? {
            let (_, value) = entry.map_err(WebhookError::store)?;
            out.push(decode(value.value())?);
        }
        Ok(out)
    }

    /// Stores a subscription (insert or replace).
    pub(crate) fn put_subscription(&self, sub: &StoredSubscription) -> Result<(), WebhookError> {
        let bytes = encode(sub)?;
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        {
            let mut table = tx.open_table(SUBSCRIPTIONS).map_err(WebhookError::store)?;
            table
                .insert(sub.id.as_str(), bytes.as_slice())
                .map_err(WebhookError::store)?;
        }
        tx.commit().map_err(WebhookError::store)
    }

    /// Deletes a subscription; its pending deliveries become dead with `reason`. Returns
    /// whether it existed and the pending count after.
    pub(crate) fn delete_subscription(
        &self,
        id: &str,
        now: EpochMs,
        reason: &str,
    ) -> Result<(bool, u64), WebhookError> {
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        let existed;
        let pending_after;
        {
            let mut subs = tx.open_table(SUBSCRIPTIONS).map_err(WebhookError::store)?;
            existed = subs.remove(id).map_err(WebhookError::store)?.is_some();
            let mut pending = tx.open_table(PENDING).map_err(WebhookError::store)?;
            let mut deliveries = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
            let ids: Vec<u64> = {
                let mut ids = Vec::new();
                for entry in pending
                    .range((id, 0u64)..=(id, u64::MAX))
                    .map_err(WebhookError::store)?
                {
                    let (key, _) = entry.map_err(WebhookError::store)?;
                    ids.push(key.value().1);
                }
                ids
            };
            for delivery_id in ids {
                pending
                    .remove((id, delivery_id))
                    .map_err(WebhookError::store)?;
                let info = match deliveries.get(delivery_id).map_err(WebhookError::store)? {
                    Some(v) => Some(decode::<Delivery>(v.value())?),
                    None => None,
                };
                if let Some(mut info) = info {
                    info.state = DeliveryState::Dead;
                    info.next_attempt_ms = None;
                    info.updated_ms = now;
                    info.last_error = Some(reason.to_owned());
                    let bytes = encode(&info)?;
                    deliveries
                        .insert(delivery_id, bytes.as_slice())
                        .map_err(WebhookError::store)?;
                }
            }
            pending_after = pending.len().map_err(WebhookError::store)?;
        }
        tx.commit().map_err(WebhookError::store)?;
        Ok((existed, pending_after))
    }

    /// Creates one pending delivery per entry, due at `now`, all in one transaction; an entry
    /// whose webhook id already has a delivery is skipped (the same event notified twice).
    /// Returns the deliveries created and the pending count after.
    pub(crate) fn enqueue(
        &self,
        new: &[NewDelivery],
        body: &str,
        now: EpochMs,
    ) -> Result<(Vec<Scheduled>, u64), WebhookError> {
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        let mut created = Vec::with_capacity(new.len());
        let pending_after;
        {
            let mut meta = tx.open_table(META).map_err(WebhookError::store)?;
            let mut next_id = meta
                .get(NEXT_ID)
                .map_err(WebhookError::store)?
                .map_or(1, |v| v.value());
            let mut ids = tx.open_table(WEBHOOK_IDS).map_err(WebhookError::store)?;
            let mut deliveries = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
            let mut bodies = tx.open_table(BODIES).map_err(WebhookError::store)?;
            let mut pending = tx.open_table(PENDING).map_err(WebhookError::store)?;
            for d in new {
                if ids
                    .get(d.webhook_id.as_str())
                    .map_err(WebhookError::store)?
                    .is_some()
                {
                    continue;
                }
                let id = next_id;
                next_id += 1;
                let info = Delivery {
                    id,
                    webhook_id: d.webhook_id.clone(),
                    subscription_id: d.subscription_id.clone(),
                    department: d.department,
                    event_id: d.event_id.clone(),
                    event_type: d.event_type.clone(),
                    alert_id: d.alert_id.clone(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    redeliveries: 0,
                    created_ms: now,
                    updated_ms: now,
                    next_attempt_ms: Some(now),
                    last_attempt_ms: None,
                    delivered_ms: None,
                    last_status: None,
                    last_error: None,
                };
                let bytes = encode(&info)?;
                deliveries
                    .insert(id, bytes.as_slice())
                    .map_err(WebhookError::store)?;
                bodies.insert(id, body).map_err(WebhookError::store)?;
                ids.insert(d.webhook_id.as_str(), id)
                    .map_err(WebhookError::store)?;
                pending
                    .insert((d.subscription_id.as_str(), id), now)
                    .map_err(WebhookError::store)?;
                created.push(Scheduled {
                    id,
                    subscription_id: d.subscription_id.clone(),
                    due_ms: now,
                });
            }
            meta.insert(NEXT_ID, next_id).map_err(WebhookError::store)?;
            pending_after = pending.len().map_err(WebhookError::store)?;
        }
        tx.commit().map_err(WebhookError::store)?;
        Ok((created, pending_after))
    }

    /// A delivery without its body.
    #[cfg(test)]
    pub(crate) fn get(&self, id: u64) -> Result<Option<Delivery>, WebhookError> {
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
        match table.get(id).map_err(WebhookError::store)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// A delivery and its body.
    pub(crate) fn get_with_body(&self, id: u64) -> Result<Option<StoredDelivery>, WebhookError> {
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
        let info: Delivery = match table.get(id).map_err(WebhookError::store)? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        let bodies = tx.open_table(BODIES).map_err(WebhookError::store)?;
        let body = bodies
            .get(id)
            .map_err(WebhookError::store)?
            .map(|v| v.value().to_owned())
            .unwrap_or_default();
        Ok(Some(StoredDelivery { info, body }))
    }

    /// Records an attempt of a pending delivery that had `expected_attempts` attempts before
    /// it. Returns the pending count after, or `None` when the delivery changed meanwhile
    /// (deleted subscription, another attempt) and nothing was written.
    pub(crate) fn finish_attempt(
        &self,
        id: u64,
        expected_attempts: u32,
        change: &AttemptChange,
    ) -> Result<Option<u64>, WebhookError> {
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        let pending_after;
        {
            let mut deliveries = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
            let current: Option<Delivery> = match deliveries.get(id).map_err(WebhookError::store)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            let Some(mut info) = current else {
                return Ok(None);
            };
            if info.state != DeliveryState::Pending || info.attempts != expected_attempts {
                return Ok(None);
            }
            info.attempts = change.attempts;
            info.state = change.state;
            info.next_attempt_ms = change.next_attempt_ms;
            info.last_attempt_ms = Some(change.at_ms);
            info.updated_ms = change.finished_ms;
            info.last_status = change.status;
            info.last_error = change.error.clone();
            if change.state == DeliveryState::Delivered {
                info.delivered_ms = Some(change.finished_ms);
            }
            let bytes = encode(&info)?;
            deliveries
                .insert(id, bytes.as_slice())
                .map_err(WebhookError::store)?;
            let mut pending = tx.open_table(PENDING).map_err(WebhookError::store)?;
            let key = (info.subscription_id.as_str(), id);
            match (change.state, change.next_attempt_ms) {
                (DeliveryState::Pending, Some(next)) => {
                    pending.insert(key, next).map_err(WebhookError::store)?;
                }
                _ => {
                    pending.remove(key).map_err(WebhookError::store)?;
                }
            }
            pending_after = pending.len().map_err(WebhookError::store)?;
        }
        tx.commit().map_err(WebhookError::store)?;
        Ok(Some(pending_after))
    }

    /// The first `limit` pending deliveries of a subscription, by id, with their due times.
    pub(crate) fn pending_of(
        &self,
        subscription_id: &str,
        limit: usize,
    ) -> Result<Vec<(u64, EpochMs)>, WebhookError> {
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(PENDING).map_err(WebhookError::store)?;
        let mut out = Vec::new();
        for entry in table
            .range((subscription_id, 0u64)..=(subscription_id, u64::MAX))
            .map_err(WebhookError::store)?
            .take(limit)
        {
            let (key, due) = entry.map_err(WebhookError::store)?;
            out.push((key.value().1, due.value()));
        }
        Ok(out)
    }

    /// Pending deliveries in all.
    pub(crate) fn pending_count(&self) -> Result<u64, WebhookError> {
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(PENDING).map_err(WebhookError::store)?;
        table.len().map_err(WebhookError::store)
    }

    /// Deliveries matching a query, newest first (examining at most [`MAX_SCAN`]).
    pub(crate) fn list(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>, WebhookError> {
        let limit = query.limit.clamp(1, DeliveryQuery::MAX_LIMIT);
        let tx = self.db.begin_read().map_err(WebhookError::store)?;
        let table = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
        let upper = query.before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for entry in table
            .range(..upper)
            .map_err(WebhookError::store)?
            .rev()
            .take(MAX_SCAN)
        {
            let (_, value) = entry.map_err(WebhookError::store)?;
            let info: Delivery = decode(value.value())?;
            if query.state.is_some_and(|s| s != info.state) {
                continue;
            }
            if query
                .subscription
                .as_deref()
                .is_some_and(|s| s != info.subscription_id)
            {
                continue;
            }
            if query.department.is_some_and(|d| d != info.department) {
                continue;
            }
            out.push(info);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Puts a delivered or dead delivery back to pending, due at `now`, with its attempts
    /// reset (same webhook id and body). Its subscription must exist.
    pub(crate) fn redeliver(&self, id: u64, now: EpochMs) -> Result<(Delivery, u64), WebhookError> {
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        let info;
        let pending_after;
        {
            let mut deliveries = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
            let current: Option<Delivery> = match deliveries.get(id).map_err(WebhookError::store)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            let mut d = current.ok_or_else(|| WebhookError::NotFound {
                kind: "delivery",
                id: id.to_string(),
            })?;
            if d.state == DeliveryState::Pending {
                return Err(WebhookError::Conflict(format!(
                    "delivery {id} is already pending"
                )));
            }
            let subs = tx.open_table(SUBSCRIPTIONS).map_err(WebhookError::store)?;
            if subs
                .get(d.subscription_id.as_str())
                .map_err(WebhookError::store)?
                .is_none()
            {
                return Err(WebhookError::NotFound {
                    kind: "subscription",
                    id: d.subscription_id.clone(),
                });
            }
            d.state = DeliveryState::Pending;
            d.attempts = 0;
            d.redeliveries = d.redeliveries.saturating_add(1);
            d.next_attempt_ms = Some(now);
            d.updated_ms = now;
            d.delivered_ms = None;
            let bytes = encode(&d)?;
            deliveries
                .insert(id, bytes.as_slice())
                .map_err(WebhookError::store)?;
            let mut pending = tx.open_table(PENDING).map_err(WebhookError::store)?;
            pending
                .insert((d.subscription_id.as_str(), id), now)
                .map_err(WebhookError::store)?;
            pending_after = pending.len().map_err(WebhookError::store)?;
            info = d;
        }
        tx.commit().map_err(WebhookError::store)?;
        Ok((info, pending_after))
    }

    /// Removes delivered and dead deliveries last changed before `before_ms`, oldest first,
    /// at most [`PURGE_BATCH`]; returns how many (call again while it returns the batch size).
    pub(crate) fn purge(&self, before_ms: EpochMs) -> Result<usize, WebhookError> {
        let tx = self.db.begin_write().map_err(WebhookError::store)?;
        let removed = purge_in(&tx, before_ms)?;
        tx.commit().map_err(WebhookError::store)?;
        Ok(removed)
    }
}

fn purge_in(tx: &WriteTransaction, before_ms: EpochMs) -> Result<usize, WebhookError> {
    let mut deliveries = tx.open_table(DELIVERIES).map_err(WebhookError::store)?;
    let mut victims: Vec<(u64, String)> = Vec::new();
    for entry in deliveries.iter().map_err(WebhookError::store)? {
        let (key, value) = entry.map_err(WebhookError::store)?;
        let info: Delivery = decode(value.value())?;
        // Ids grow with creation time: nothing after this one is old enough.
        if info.created_ms >= before_ms || victims.len() >= PURGE_BATCH {
            break;
        }
        if info.state != DeliveryState::Pending && info.updated_ms < before_ms {
            victims.push((key.value(), info.webhook_id));
        }
    }
    let mut bodies = tx.open_table(BODIES).map_err(WebhookError::store)?;
    let mut ids = tx.open_table(WEBHOOK_IDS).map_err(WebhookError::store)?;
    for (id, webhook_id) in &victims {
        deliveries.remove(*id).map_err(WebhookError::store)?;
        bodies.remove(*id).map_err(WebhookError::store)?;
        ids.remove(webhook_id.as_str())
            .map_err(WebhookError::store)?;
    }
    Ok(victims.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(webhook_id: &str, sub: &str) -> NewDelivery {
        NewDelivery {
            webhook_id: webhook_id.into(),
            subscription_id: sub.into(),
            department: Department::Police,
            event_id: "e1".into(),
            event_type: "alert.opened".into(),
            alert_id: "a1".into(),
        }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ioc-outbox-{name}-{}-{}",
            std::process::id(),
            ioc_schemas::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("outbox.redb")
    }

    #[test]
    fn enqueue_is_idempotent_and_attempts_move_state() {
        let path = temp_path("state");
        let outbox = Outbox::open(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (created, pending) = outbox
            .enqueue(&[new("msg_e1_a", "a"), new("msg_e1_b", "b")], "{}", 100)
            .unwrap();
        assert_eq!(created.len(), 2);
        assert_eq!(pending, 2);
        let (again, _) = outbox.enqueue(&[new("msg_e1_a", "a")], "{}", 200).unwrap();
        assert!(again.is_empty(), "same webhook id twice");
        let id = created[0].id;
        assert_eq!(outbox.pending_of("a", 10).unwrap(), vec![(id, 100)]);
        let retry = AttemptChange {
            attempts: 1,
            at_ms: 100,
            finished_ms: 110,
            state: DeliveryState::Pending,
            next_attempt_ms: Some(500),
            status: Some(500),
            error: Some("http status 500".into()),
        };
        assert_eq!(outbox.finish_attempt(id, 0, &retry).unwrap(), Some(2));
        // A stale attempt (expected 0 attempts, now 1) changes nothing.
        assert_eq!(outbox.finish_attempt(id, 0, &retry).unwrap(), None);
        assert_eq!(outbox.pending_of("a", 10).unwrap(), vec![(id, 500)]);
        let dead = AttemptChange {
            attempts: 2,
            state: DeliveryState::Dead,
            next_attempt_ms: None,
            ..retry
        };
        assert_eq!(outbox.finish_attempt(id, 1, &dead).unwrap(), Some(1));
        let d = outbox.get(id).unwrap().unwrap();
        assert_eq!((d.state, d.attempts), (DeliveryState::Dead, 2));
        // Redelivery needs the subscription.
        assert!(matches!(
            outbox.redeliver(id, 900),
            Err(WebhookError::NotFound {
                kind: "subscription",
                ..
            })
        ));
        drop(outbox);
        // Reopened: the same state.
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.pending_count().unwrap(), 1);
        let listed = outbox
            .list(&DeliveryQuery {
                state: Some(DeliveryState::Dead),
                ..DeliveryQuery::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        let all = outbox.list(&DeliveryQuery::default()).unwrap();
        assert_eq!(
            all.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![id + 1, id]
        );
        // Purge: the dead one (changed at 110) goes; the pending one stays.
        assert_eq!(outbox.purge(1_000).unwrap(), 1);
        assert!(outbox.get(id).unwrap().is_none());
        assert_eq!(outbox.list(&DeliveryQuery::default()).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
