//! The running alert manager: one task owns the rule engine and the alert book, takes
//! observations from the pipeline and commands from the REST API, persists every changed alert
//! before it is told to anyone, hands the events to the caller (ClickHouse, the WebSocket) and
//! the notifications to the webhook dispatcher.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ioc_alert_engine::engine::Engine;
use ioc_alert_engine::lifecycle::{AlertBook, AlertFilter, LifecycleConfig, LifecycleError};
use ioc_alert_engine::model::Alert;
use ioc_alert_engine::observe::{
    observations_of_kpi, observations_of_samples_where, Observation, ReadingSamples,
};
use ioc_alert_engine::rules::{Rule, RuleError, RuleSet, SourceRef};
use ioc_schemas::{AlertEvent, Department, District, Kpi, Reading};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::state::{AlertState, StateError};
use crate::webhooks::{AttemptLog, Dispatcher, WebhookConfig, WebhookError};

/// Settings of the alert manager (`[alerts]` in iocd's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate the rules and deliver webhooks.
    pub enabled: bool,
    /// A rules file (TOML, `[[rule]]` entries); the checked-in Da Nang rules when absent.
    /// Rules changed through the API are kept in the state folder and laid over it.
    pub rules_path: Option<PathBuf>,
    /// Folder of the durable state: `alerts.redb` (alerts, rule changes) and `outbox.redb`
    /// (webhook deliveries). Keep it across restarts.
    pub state_dir: PathBuf,
    /// How often wall-clock transitions run (escalation, hold expiry, storm windows), ms.
    pub tick_ms: u64,
    /// Capacity of the bounded queue of observations into the manager. The dataflow never
    /// waits on it: when it is full the observations are shed and counted in
    /// `ioc_alerts_observations_shed_total`.
    pub queue_capacity: usize,
    /// The alert lifecycle: storm caps, summaries, escalation limits, memory bounds.
    pub lifecycle: LifecycleConfig,
    /// Webhook delivery and the subscriptions declared in config.
    pub webhooks: WebhookConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules_path: None,
            state_dir: PathBuf::from("iocd-state"),
            tick_ms: 1_000,
            queue_capacity: 4_096,
            lifecycle: LifecycleConfig::default(),
            webhooks: WebhookConfig::default(),
        }
    }
}

/// What can go wrong running alerts. Each variant says what failed; its source, when it has
/// one, why.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A rule is invalid. Permanent.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// An operator's action was refused. Permanent.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Webhook delivery failed to start or a subscription change was refused.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The rules file could not be read. Permanent until the file is fixed.
    #[error("cannot read the rules file {path}")]
    RulesFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The manager has stopped. Permanent.
    #[error("the alert manager has stopped")]
    Stopped,
    /// A metric could not be registered (a name taken twice). Permanent.
    #[error("cannot register the alert metrics")]
    Metrics(#[from] prometheus::Error),
}

impl AlertsError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AlertsError::State(e) => e.is_retryable(),
            AlertsError::Webhook(e) => e.is_retryable(),
            AlertsError::Rule(_)
            | AlertsError::Lifecycle(_)
            | AlertsError::RulesFile { .. }
            | AlertsError::Metrics(_)
            | AlertsError::Stopped => false,
        }
    }
}

/// What the manager needs to know of a device: its owner and reporting interval.
pub trait DeviceLookup: Send + Sync + 'static {
    /// The device's department and expected interval in seconds, if registered.
    fn device(&self, id: &str) -> Option<(Department, u32)>;
}

/// A command from the REST API.
enum Command {
    ListAlerts(AlertFilter, oneshot::Sender<Vec<Alert>>),
    GetAlert(String, oneshot::Sender<Option<Alert>>),
    Act(Action, oneshot::Sender<Result<AlertEvent, LifecycleError>>),
    ListRules(oneshot::Sender<Vec<Rule>>),
    PutRule {
        rule: Box<Rule>,
        create_only: bool,
        reply: oneshot::Sender<Result<bool, AlertsError>>,
    },
    DeleteRule(String, oneshot::Sender<Result<Rule, AlertsError>>),
}

/// An operator's action on an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Acknowledge it.
    Acknowledge {
        /// The alert.
        id: String,
        /// Who.
        actor: String,
    },
    /// Resolve it.
    Resolve {
        /// The alert.
        id: String,
        /// Who.
        actor: String,
    },
    /// Comment on it.
    Comment {
        /// The alert.
        id: String,
        /// Who.
        actor: String,
        /// What.
        text: String,
    },
}

/// The handle on the running manager. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    observations: mpsc::Sender<Vec<Observation>>,
    /// `ioc_alerts_observations_shed_total`: observations dropped because the queue was full.
    shed: prometheus::IntCounter,
    commands: mpsc::Sender<Command>,
    /// Metrics of readings any rule watches: other readings are not sent to the manager.
    reading_metrics: Arc<RwLock<HashSet<String>>>,
    devices: Arc<dyn DeviceLookup>,
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

/// The manager task, returned by [`Alerts::start`] to be awaited on shutdown.
#[derive(Debug)]
pub struct AlertsTask {
    task: tokio::task::JoinHandle<()>,
}

impl AlertsTask {
    /// Waits until the manager has handled what it was given and stopped (after every
    /// [`Alerts`] handle is dropped).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// The rules to start with: the file (or the Da Nang set), with the API's changes on top.
fn initial_rules(config: &AlertsConfig, state: &AlertState) -> Result<RuleSet, AlertsError> {
    let mut rules = match &config.rules_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| AlertsError::RulesFile {
                path: path.clone(),
                source,
            })?;
            RuleSet::from_toml(&text)?
        }
        None => RuleSet::da_nang()?,
    };
    let stored = state.load_rules()?;
    for id in &stored.removed {
        if rules.get(id).is_some() {
            if let Err(e) = rules.remove(id) {
                tracing::warn!(rule = %id, error = %e, "a rule removed through the api is back");
            }
        }
    }
    for (id, json) in &stored.rules {
        match serde_json::from_str::<Rule>(json) {
            Ok(rule) => {
                if let Err(e) = rules.upsert(rule) {
                    tracing::warn!(rule = %id, error = %e, "a rule stored through the api no longer fits; left out");
                }
            }
            Err(e) => {
                tracing::warn!(rule = %id, error = %e, "a stored rule is unreadable; left out")
            }
        }
    }
    Ok(rules)
}

fn reading_metrics_of(rules: &RuleSet) -> HashSet<String> {
    rules
        .rules()
        .iter()
        .filter_map(|r| r.source.as_ref().and_then(|s| s.resolve()))
        .filter_map(|s| match s {
            SourceRef::Reading { metric, .. } => Some(metric),
            SourceRef::Kpi { .. } => None,
        })
        .collect()
}

impl Alerts {
    /// Loads the rules and the alerts stored at the last stop, opens the webhook outbox and
    /// starts the manager. Returns the handle and the stream of every alert event (for
    /// ClickHouse and the WebSocket), which the caller must keep draining: the manager waits
    /// when it is full.
    pub async fn start(
        config: &AlertsConfig,
        devices: Arc<dyn DeviceLookup>,
        attempts: Arc<dyn AttemptLog>,
        registry: &prometheus::Registry,
    ) -> Result<(Alerts, AlertsTask, mpsc::Receiver<AlertEvent>), AlertsError> {
        let state = AlertState::open(&config.state_dir.join("alerts.redb"))?;
        let rules = initial_rules(config, &state)?;
        let stored = state.load_alerts()?;
        tracing::info!(
            rules = rules.len(),
            alerts = stored.len(),
            "alert manager starting"
        );
        let mut book = AlertBook::from_alerts(stored, config.lifecycle.clone());
        book.set_rule_timings(&rules);
        let dispatcher = Dispatcher::open(
            &config.state_dir.join("outbox.redb"),
            config.webhooks.clone(),
            attempts,
        )
        .await?;
        dispatcher.register_metrics(registry)?;
        let reading_metrics = Arc::new(RwLock::new(reading_metrics_of(&rules)));
        let (observations, observations_rx) = mpsc::channel(config.queue_capacity.max(1));
        let shed = prometheus::IntCounter::new(
            "ioc_alerts_observations_shed_total",
            "Observations not evaluated by the alert rules because the manager's queue was full.",
        )?;
        registry.register(Box::new(shed.clone()))?;
        let (commands, commands_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(config.queue_capacity.max(1));
        let runner = Runner {
            engine: Engine::new(rules),
            book,
            state,
            dispatcher: dispatcher.clone(),
            events: events_tx,
            reading_metrics: Arc::clone(&reading_metrics),
            saved: HashSet::new(),
        };
        let tick = Duration::from_millis(config.tick_ms.max(10));
        let task = tokio::spawn(
            runner
                .run(observations_rx, commands_rx, tick)
                .instrument(tracing::info_span!("alert_manager")),
        );
        Ok((
            Alerts {
                observations,
                shed,
                commands,
                reading_metrics,
                devices,
                dispatcher,
            },
            AlertsTask { task },
            events_rx,
        ))
    }

    /// The webhook dispatcher (its REST API is part of [`crate::api::router`]).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Fills in what the registry knows (owner, reporting interval) and queues the
    /// observations; sheds them (counted) when the queue is full, so it never blocks.
    fn queue(&self, mut observations: Vec<Observation>) {
        if observations.is_empty() {
            return;
        }
        for o in &mut observations {
            let Some(device) = o.device_id.as_deref() else {
                continue;
            };
            // The registry knows the device's owner and interval better than a KPI row.
            if let Some((department, interval_s)) = self.devices.device(device) {
                o.department = Some(department);
                o.expected_interval_s = Some(interval_s);
            }
        }
        match self.observations.try_send(observations) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(shed)) => {
                // The live path never waits on the alert manager; say so once per 1,000.
                if self.shed.get().is_multiple_of(1000) {
                    tracing::warn!(
                        shed = self.shed.get() + 1,
                        "alert manager queue full; observations shed"
                    );
                }
                self.shed.inc_by(shed.len() as u64);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("alert manager stopped; observations not evaluated");
            }
        }
    }

    /// Evaluates a KPI row (shed, and counted, when the manager's queue is full).
    pub fn observe_kpi(&self, kpi: &Kpi) {
        self.queue(observations_of_kpi(kpi));
    }

    /// Evaluates a reading's samples that some rule watches (shed, and counted, when the
    /// manager's queue is full).
    pub fn observe_reading(&self, reading: &Reading, district: District) {
        let samples = reading.samples();
        let samples: Vec<(&str, f64)> = samples.iter().map(|(m, v)| (m.as_str(), *v)).collect();
        self.observe_samples(&ReadingSamples {
            device_id: &reading.device_id,
            kind: reading.kind(),
            district,
            event_ms: reading.event_time.0,
            samples: &samples,
        });
    }

    /// Whether some rule watches one of `metrics`: a caller holding samples in another shape
    /// builds [`ReadingSamples`] only then (most readings carry no watched metric).
    pub fn watches_any<'m>(&self, mut metrics: impl Iterator<Item = &'m str>) -> bool {
        self.reading_metrics
            .read()
            .is_ok_and(|wanted| metrics.any(|m| wanted.contains(m)))
    }

    /// [`observe_reading`](Self::observe_reading) of a reading as the dataflow carries it.
    pub fn observe_samples(&self, reading: &ReadingSamples<'_>) {
        let observations: Vec<Observation> = {
            let Ok(wanted) = self.reading_metrics.read() else {
                return;
            };
            if wanted.is_empty() {
                return;
            }
            observations_of_samples_where(reading, None, |m| wanted.contains(m))
        };
        self.queue(observations);
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, AlertsError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| AlertsError::Stopped)?;
        answer.await.map_err(|_| AlertsError::Stopped)
    }

    /// The alerts matching `filter`, newest first.
    pub async fn list(&self, filter: AlertFilter) -> Result<Vec<Alert>, AlertsError> {
        self.ask(|reply| Command::ListAlerts(filter, reply)).await
    }

    /// One alert.
    pub async fn get(&self, id: &str) -> Result<Option<Alert>, AlertsError> {
        let id = id.to_owned();
        self.ask(|reply| Command::GetAlert(id, reply)).await
    }

    /// Acknowledges, resolves or comments on an alert; the event is stored, pushed and (when
    /// it notifies) delivered like any other.
    pub async fn act(&self, action: Action) -> Result<AlertEvent, AlertsError> {
        Ok(self.ask(|reply| Command::Act(action, reply)).await??)
    }

    /// The rules running.
    pub async fn rules(&self) -> Result<Vec<Rule>, AlertsError> {
        self.ask(Command::ListRules).await
    }

    /// Adds a rule (`create_only`: refused if its id exists) or replaces it; validated against
    /// the whole set, stored, and in force for the next observation. Returns whether it is new.
    pub async fn put_rule(&self, rule: Rule, create_only: bool) -> Result<bool, AlertsError> {
        self.ask(|reply| Command::PutRule {
            rule: Box::new(rule),
            create_only,
            reply,
        })
        .await?
    }

    /// Removes a rule; its open alerts resolve.
    pub async fn delete_rule(&self, id: &str) -> Result<Rule, AlertsError> {
        let id = id.to_owned();
        self.ask(|reply| Command::DeleteRule(id, reply)).await?
    }
}

/// The task that owns the engine and the book.
struct Runner {
    engine: Engine,
    book: AlertBook,
    state: AlertState,
    dispatcher: Dispatcher,
    events: mpsc::Sender<AlertEvent>,
    reading_metrics: Arc<RwLock<HashSet<String>>>,
    /// Ids of alerts in the state file, to forget those the book has let go of.
    saved: HashSet<String>,
}

/// Attempts to write a notification to the webhook outbox.
const NOTIFY_ATTEMPTS: u32 = 4;

/// How often alerts the book no longer holds are removed from the state file.
const FORGET_EVERY: Duration = Duration::from_secs(600);

impl Runner {
    async fn run(
        mut self,
        mut observations: mpsc::Receiver<Vec<Observation>>,
        mut commands: mpsc::Receiver<Command>,
        tick: Duration,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut forget = tokio::time::interval(FORGET_EVERY);
        let mut observing = true;
        loop {
            let events = tokio::select! {
                batch = observations.recv(), if observing => match batch {
                    Some(batch) => self.observe(batch),
                    None => {
                        // The pipeline has stopped; the API may still act on alerts.
                        observing = false;
                        Vec::new()
                    }
                },
                command = commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    None if !observing => break,
                    None => Vec::new(),
                },
                _ = ticker.tick() => self.book.tick(ioc_schemas::now_ms()),
                _ = forget.tick() => {
                    self.forget();
                    Vec::new()
                }
            };
            if !events.is_empty() {
                let span = tracing::debug_span!("alert_publish", events = events.len());
                self.publish(events).instrument(span).await;
            }
            if !observing && commands.is_closed() {
                break;
            }
        }
    }

    /// Runs a batch of observations through the engine and the book, in an
    /// `alert_observe` span.
    fn observe(&mut self, batch: Vec<Observation>) -> Vec<AlertEvent> {
        let _span = tracing::debug_span!("alert_observe", observations = batch.len()).entered();
        let now = ioc_schemas::now_ms();
        let mut events = Vec::new();
        for o in &batch {
            let verdicts = self.engine.observe(o);
            events.extend(self.book.apply_all(verdicts, now));
        }
        if let Some(newest) = batch.iter().map(|o| o.event_ms).max() {
            let verdicts = self.engine.advance(newest);
            events.extend(self.book.apply_all(verdicts, now));
        }
        events
    }

    async fn command(&mut self, command: Command) -> Vec<AlertEvent> {
        let now = ioc_schemas::now_ms();
        match command {
            Command::ListAlerts(filter, reply) => {
                let _ = reply.send(self.book.list(&filter));
                Vec::new()
            }
            Command::GetAlert(id, reply) => {
                let _ = reply.send(self.book.get(&id).cloned());
                Vec::new()
            }
            Command::Act(action, reply) => {
                let result = match action {
                    Action::Acknowledge { id, actor } => self.book.acknowledge(&id, &actor, now),
                    Action::Resolve { id, actor } => self.book.resolve(&id, &actor, now),
                    Action::Comment { id, actor, text } => {
                        self.book.comment(&id, &actor, &text, now)
                    }
                };
                match result {
                    Ok(event) => {
                        // Stored before the operator is told it is done.
                        self.persist(std::slice::from_ref(&event));
                        let _ = reply.send(Ok(event.clone()));
                        vec![event]
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        Vec::new()
                    }
                }
            }
            Command::ListRules(reply) => {
                let _ = reply.send(self.engine.rules().rules().to_vec());
                Vec::new()
            }
            Command::PutRule {
                rule,
                create_only,
                reply,
            } => {
                let mut next = self.engine.rules().clone();
                let id = rule.id.clone();
                let json = serde_json::to_string(&rule).unwrap_or_default();
                let changed = if create_only {
                    next.insert(*rule).map(|()| true)
                } else {
                    next.upsert(*rule).map(|old| old.is_none())
                };
                self.change_rules(
                    changed,
                    next,
                    |state| state.save_rule(&id, &json),
                    reply,
                    now,
                )
            }
            Command::DeleteRule(id, reply) => {
                let mut next = self.engine.rules().clone();
                let removed = next.remove(&id);
                self.change_rules(removed, next, |state| state.remove_rule(&id), reply, now)
            }
        }
    }

    /// Puts a validated rule change in force once it is stored, and answers the API.
    fn change_rules<T>(
        &mut self,
        validated: Result<T, RuleError>,
        next: RuleSet,
        store: impl FnOnce(&AlertState) -> Result<(), StateError>,
        reply: oneshot::Sender<Result<T, AlertsError>>,
        now: u64,
    ) -> Vec<AlertEvent> {
        let stored = validated.map_err(AlertsError::from).and_then(|value| {
            store(&self.state)
                .map(|()| value)
                .map_err(AlertsError::from)
        });
        match stored {
            Ok(value) => {
                let events = self.set_rules(next, now);
                let _ = reply.send(Ok(value));
                events
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Vec::new()
            }
        }
    }

    fn set_rules(&mut self, rules: RuleSet, now: u64) -> Vec<AlertEvent> {
        self.book.set_rule_timings(&rules);
        if let Ok(mut metrics) = self.reading_metrics.write() {
            *metrics = reading_metrics_of(&rules);
        }
        let verdicts = self.engine.set_rules(rules);
        self.book.apply_all(verdicts, now)
    }

    /// Records the alerts the events changed; on failure the events still go out (the
    /// alerts are in memory), and the next change of each alert records it again.
    fn persist(&mut self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        let mut latest: std::collections::HashMap<&str, &Alert> = Default::default();
        for e in events {
            latest.insert(e.alert.id.as_str(), &e.alert);
        }
        match self.state.save_alerts(latest.values().copied()) {
            Ok(()) => self.saved.extend(latest.keys().map(|id| (*id).to_owned())),
            Err(e) => tracing::error!(
                error = &e as &dyn std::error::Error,
                "alert state not saved; a restart may lose these changes"
            ),
        }
    }

    fn forget(&mut self) {
        let gone: Vec<String> = self
            .saved
            .iter()
            .filter(|id| self.book.get(id).is_none())
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        match self.state.forget(gone.iter().map(String::as_str)) {
            Ok(()) => {
                for id in &gone {
                    self.saved.remove(id);
                }
            }
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "old alerts not removed from the state file"
            ),
        }
    }

    /// Puts a notification in the webhook outbox, retrying a failed write a few times (the
    /// outbox skips a repeat of the same webhook id, so a retry never delivers twice).
    async fn queue_notification(&self, event: &AlertEvent) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=NOTIFY_ATTEMPTS {
            match self.dispatcher.notify(event).await {
                Ok(_) => return,
                Err(e) if e.is_retryable() && attempt < NOTIFY_ATTEMPTS => {
                    tracing::warn!(
                        event = %event.event_id,
                        error = &e as &dyn std::error::Error,
                        "webhook outbox write failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(e) => {
                    tracing::error!(
                        event = %event.event_id,
                        error = &e as &dyn std::error::Error,
                        "alert not queued for webhook delivery"
                    );
                    return;
                }
            }
        }
    }

    /// Persists, then hands each event to the caller's stream and, when it notifies, to the
    /// webhook outbox.
    async fn publish(&mut self, events: Vec<AlertEvent>) {
        if events.is_empty() {
            return;
        }
        self.persist(&events);
        for event in events {
            if event.notify {
                self.queue_notification(&event).await;
            }
            if self.events.send(event).await.is_err() {
                tracing::debug!("alert event stream closed");
            }
        }
    }
}
