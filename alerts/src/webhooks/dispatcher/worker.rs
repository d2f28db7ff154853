//! A subscriber's delivery task: the deliveries it knows of, ordered by due time, at most
//! `per_subscriber_queue` in memory (more stay in the outbox and are read back when there is
//! room), and up to `per_subscriber_concurrency` attempts in flight.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ioc_schemas::{now_ms, EpochMs};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::{debug, warn, Instrument};

use super::attempt::{attempt, Step};
use super::shared::{Shared, SubRuntime, STORE_RETRY_MS};
use crate::webhooks::subscription::StoredSubscription;

/// A subscriber's delivery task, as the dispatcher holds it.
pub(super) struct Worker {
    /// Deliveries due: (delivery id, due ms). Bounded by `per_subscriber_queue`; when full the
    /// delivery stays in the outbox and `spilled` tells the task to read it back.
    pub(super) tx: mpsc::Sender<(u64, EpochMs)>,
    pub(super) runtime: Arc<SubRuntime>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) join: JoinHandle<()>,
}

/// Starts the delivery task of a subscription, in a `webhook_worker` span naming it; it
/// reads the subscription's pending deliveries from the outbox first.
pub(super) fn spawn_worker(shared: Arc<Shared>, sub: StoredSubscription) -> Worker {
    let (tx, rx) = mpsc::channel(shared.config.per_subscriber_queue);
    let (stop_tx, stop_rx) = watch::channel(false);
    let span = tracing::info_span!("webhook_worker", subscription = %sub.id);
    let runtime = Arc::new(SubRuntime {
        id: sub.id.clone(),
        target: RwLock::new(Arc::new(sub)),
        // Read the outbox's pending deliveries at start.
        spilled: AtomicBool::new(true),
    });
    let join = tokio::spawn(run_worker(shared, Arc::clone(&runtime), rx, stop_rx).instrument(span));
    Worker {
        tx,
        runtime,
        stop: stop_tx,
        join,
    }
}

/// The task: reads spilled deliveries back, starts the attempts that are due, then waits for
/// the next of: a stop, a delivery handed over, an attempt ending, the next due time.
async fn run_worker(
    shared: Arc<Shared>,
    runtime: Arc<SubRuntime>,
    mut rx: mpsc::Receiver<(u64, EpochMs)>,
    mut stop: watch::Receiver<bool>,
) {
    let concurrency = shared.config.per_subscriber_concurrency;
    let mut queue = Queue::new(shared.config.per_subscriber_queue);
    loop {
        if *stop.borrow() {
            break;
        }
        if !queue.read_back(&shared, &runtime).await {
            continue;
        }
        let now = now_ms();
        queue.start_due(&shared, &runtime, concurrency, now);
        let wait = queue.wait_ms(concurrency, now);
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            message = rx.recv() => match message {
                Some((id, due)) => queue.handed(id, due, &shared, &runtime),
                None => break,
            },
            Some(joined) = queue.inflight.join_next_with_id(), if !queue.inflight.is_empty() => {
                queue.ended(joined, &runtime);
            }
            () = tokio::time::sleep(Duration::from_millis(wait.unwrap_or(0))), if wait.is_some() => {}
        }
    }
    // Stopping: let the attempts in flight finish and record their outcome.
    while queue.inflight.join_next().await.is_some() {}
    debug!(subscription = %runtime.id, "webhook delivery task stopped");
}

/// The deliveries a task knows of: waiting for their due time, or in flight.
struct Queue {
    /// At most this many known deliveries (`per_subscriber_queue`).
    cap: usize,
    /// (due ms, delivery id), soonest first.
    timers: BTreeSet<(EpochMs, u64)>,
    /// Every delivery in `timers` or in flight.
    known: HashSet<u64>,
    inflight: JoinSet<Step>,
    inflight_ids: HashMap<tokio::task::Id, u64>,
    /// Deliveries handed over again while their previous attempt was still in flight (a
    /// redelivery right after it died): scheduled again when that attempt ends.
    again: HashMap<u64, EpochMs>,
}

impl Queue {
    fn new(cap: usize) -> Queue {
        Queue {
            cap,
            timers: BTreeSet::new(),
            known: HashSet::new(),
            inflight: JoinSet::new(),
            inflight_ids: HashMap::new(),
            again: HashMap::new(),
        }
    }

    /// When the outbox may hold deliveries the task does not know of and there is room,
    /// reads them back. False when the outbox failed (after waiting a moment): the task then
    /// starts over.
    async fn read_back(&mut self, shared: &Shared, runtime: &SubRuntime) -> bool {
        if self.known.len() >= self.cap || !runtime.spilled.swap(false, Ordering::SeqCst) {
            return true;
        }
        let room = self.cap - self.known.len();
        let ask = room + self.known.len();
        let id = runtime.id.clone();
        match shared.blocking(move |o| o.pending_of(&id, ask)).await {
            Ok(list) => {
                if list.len() >= ask {
                    // There may be more than fits.
                    runtime.spilled.store(true, Ordering::SeqCst);
                }
                let mut added = 0;
                for (delivery_id, due) in list {
                    if added >= room {
                        break;
                    }
                    if self.known.insert(delivery_id) {
                        self.timers.insert((due, delivery_id));
                        added += 1;
                    }
                }
                true
            }
            Err(e) => {
                warn!(
                    subscription = %runtime.id,
                    error = &e as &dyn std::error::Error,
                    "webhook outbox read failed"
                );
                runtime.spilled.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(STORE_RETRY_MS)).await;
                false
            }
        }
    }

    /// Starts the attempts that are due, up to `concurrency` in flight, each in a
    /// `webhook_attempt` span naming its delivery.
    fn start_due(
        &mut self,
        shared: &Arc<Shared>,
        runtime: &Arc<SubRuntime>,
        concurrency: usize,
        now: EpochMs,
    ) {
        while self.inflight.len() < concurrency {
            match self.timers.first().copied() {
                Some((due, id)) if due <= now => {
                    self.timers.remove(&(due, id));
                    let span = tracing::info_span!("webhook_attempt", delivery = id);
                    let handle = self.inflight.spawn(
                        attempt(Arc::clone(shared), Arc::clone(runtime), id).instrument(span),
                    );
                    self.inflight_ids.insert(handle.id(), id);
                }
                _ => break,
            }
        }
    }

    /// How long until the next delivery is due, when an attempt could start then.
    fn wait_ms(&self, concurrency: usize, now: EpochMs) -> Option<u64> {
        if self.inflight.len() < concurrency {
            self.timers.first().map(|&(due, _)| due.saturating_sub(now))
        } else {
            None
        }
    }

    /// A delivery handed over by the dispatcher: kept, marked to run again after its attempt
    /// in flight, or left in the outbox when the queue is full.
    fn handed(&mut self, id: u64, due: EpochMs, shared: &Shared, runtime: &SubRuntime) {
        if self.known.contains(&id) {
            if self.inflight_ids.values().any(|&v| v == id) {
                self.again.insert(id, due);
            }
            // Otherwise already waiting here (read back from the outbox first).
        } else if self.known.len() >= self.cap {
            // Full: it stays in the outbox and is read back when there is room.
            runtime.spilled.store(true, Ordering::SeqCst);
            shared.metrics.overflow.inc();
        } else {
            self.known.insert(id);
            self.timers.insert((due, id));
        }
    }

    /// An attempt ended: its delivery waits for its retry, runs again if it was handed over
    /// meanwhile, or is done. An attempt task that failed leaves its delivery pending in the
    /// outbox, to be read back.
    fn ended(&mut self, joined: Result<(tokio::task::Id, Step), JoinError>, runtime: &SubRuntime) {
        match joined {
            Ok((task, step)) => {
                let id = self.inflight_ids.remove(&task);
                match (id, step) {
                    (Some(id), Step::Retry(due)) => {
                        self.again.remove(&id);
                        self.timers.insert((due, id));
                    }
                    (Some(id), Step::Done) => match self.again.remove(&id) {
                        Some(due) => {
                            self.timers.insert((due, id));
                        }
                        None => {
                            self.known.remove(&id);
                        }
                    },
                    (None, _) => {}
                }
            }
            Err(e) => {
                if let Some(id) = self.inflight_ids.remove(&e.id()) {
                    self.again.remove(&id);
                    self.known.remove(&id);
                }
                warn!(subscription = %runtime.id, error = %e, "webhook attempt task failed");
                // The delivery is still pending in the outbox: read it back.
                runtime.spilled.store(true, Ordering::SeqCst);
            }
        }
    }
}
