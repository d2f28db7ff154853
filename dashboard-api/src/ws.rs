//! One WebSocket connection: a reader, a forwarder and a writer joined by bounded queues.
//!
//! ```text
//! socket ──reader──> commands (16) ──forwarder──┐
//!    │        └── pong / error ────────────────┤
//!    │        live feed (windows, kpi) ────────┤
//!    └──────────── writer <── out queue (ws_buffer)
//! ```
//! The writer owns the socket's sink, so a slow client only fills its own out queue; the
//! forwarder then waits, its broadcast receiver falls behind and the client is told it
//! lagged, then sent a fresh snapshot (which supersedes the backlog it skipped). The
//! forwarder numbers what it sends (`seq`) and sends heartbeats while subscribed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ioc_schemas::{AlertEvent, Department, Kpi, WindowResult};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn, Instrument};

use crate::dead_letters::DeadLetterView;
use crate::feed::LiveFeed;
use crate::protocol::{
    alert_json, dead_letter_json, kpi_json, snapshot_json, window_json, Channel, ClientMessage,
    Feed, Filter, ServerMessage, PROTOCOL_VERSION,
};
use crate::state::ApiState;

/// Largest client message accepted; a subscribe naming thousands of devices still fits.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 1 << 20;
/// Subscribe/unsubscribe commands waiting for the forwarder.
const COMMAND_QUEUE: usize = 16;
/// Most queued messages written before one flush.
const WRITE_BATCH: usize = 256;
/// Pings a client may leave unanswered (sending nothing at all) before it is dropped.
const MISSED_PINGS: u32 = 3;

enum Command {
    Subscribe(Filter),
    Unsubscribe,
}

/// Keeps `ioc_api_ws_clients` right however the connection ends.
struct ClientGuard(IntGauge);

impl ClientGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        ClientGuard(gauge)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Milliseconds since the connection opened when the client last sent anything.
struct LastSeen {
    opened: Instant,
    ms: AtomicU64,
}

impl LastSeen {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let since = Duration::from_millis(self.ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(since)
    }
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

/// Serves one upgraded connection until either side ends it or the server shuts down. With
/// `confined` (a department token) the `alerts` channel carries that department's alerts only.
pub(crate) async fn serve_socket(socket: WebSocket, state: ApiState, confined: Option<Department>) {
    let _client = ClientGuard::new(state.metrics().ws_clients.clone());
    debug!("websocket client connected");
    let (sink, stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel(state.ws_buffer());
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let last_seen = Arc::new(LastSeen {
        opened: Instant::now(),
        ms: AtomicU64::new(0),
    });
    // The queue is new and at least 1 long, so this cannot wait.
    if out_tx
        .send(text(&ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            channels: Channel::all(),
        }))
        .await
        .is_err()
    {
        return;
    }
    // Inside the session's span: the writer's logs say which session they are of.
    let mut writer = tokio::spawn(
        write_loop(
            sink,
            out_rx,
            state.closing(),
            state.ws_ping_interval(),
            Arc::clone(&last_seen),
        )
        .instrument(tracing::info_span!("ws_writer")),
    );
    let reader = read_loop(stream, cmd_tx, out_tx.clone(), state.closing(), last_seen);
    let forwarder = Forwarder {
        out: out_tx,
        feed: state.feed().clone(),
        lagged: state.metrics().ws_lagged.clone(),
        confined,
        seq: 0,
        subscription: None,
    }
    .run(cmd_rx, state.ws_ping_interval());
    tokio::select! {
        // Reader and forwarder done: their queue senders are gone, so the writer drains what
        // is queued, closes the socket and ends.
        _ = async { tokio::join!(reader, forwarder) } => {
            if let Err(e) = (&mut writer).await {
                warn!(error = %e, "websocket writer task failed");
            }
        }
        // The socket cannot be written (or the client went silent): drop everything.
        _ = &mut writer => {}
    }
    debug!("websocket client disconnected");
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    commands: mpsc::Sender<Command>,
    out: mpsc::Sender<Message>,
    mut closing: watch::Receiver<bool>,
    last_seen: Arc<LastSeen>,
) {
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = shutting_down(&mut closing) => break,
        };
        let message = match next {
            None => break,
            Some(Err(e)) => {
                debug!(error = %e, "websocket read failed");
                break;
            }
            Some(Ok(message)) => message,
        };
        last_seen.touch();
        let reply = match message {
            Message::Text(body) => match serde_json::from_str::<ClientMessage>(body.as_str()) {
                Ok(ClientMessage::Subscribe(filter)) => {
                    if commands.send(Command::Subscribe(filter)).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(ClientMessage::Unsubscribe) => {
                    if commands.send(Command::Unsubscribe).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(ClientMessage::Ping) => ServerMessage::Pong,
                Err(e) => ServerMessage::Error {
                    message: format!("invalid message: {e}"),
                },
            },
            Message::Binary(_) => ServerMessage::Error {
                message: "binary messages are not supported: send json text".into(),
            },
            Message::Close(_) => break,
            // tungstenite answers pings itself; either frame shows the client is alive.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if out.send(text(&reply)).await.is_err() {
            break;
        }
    }
}

/// Resolves once the server starts shutting down; never if it cannot tell.
async fn shutting_down(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What the client subscribed to, with a receiver for each broadcast its channels need.
struct Subscription {
    filter: Filter,
    windows: Option<broadcast::Receiver<Arc<WindowResult>>>,
    kpis: Option<broadcast::Receiver<Arc<Kpi>>>,
    alerts: Option<broadcast::Receiver<Arc<AlertEvent>>>,
    dead_letters: Option<broadcast::Receiver<Arc<DeadLetterView>>>,
}

impl Subscription {
    /// Fresh receivers for the broadcasts `filter` needs. Subscribed before the snapshot is
    /// taken, so every update published after the snapshot reaches the client (one
    /// published in between may come both in the snapshot and as an update).
    fn new(filter: Filter, feed: &LiveFeed) -> Self {
        Subscription {
            windows: filter.wants_windows().then(|| feed.subscribe()),
            kpis: filter.wants_kpis().then(|| feed.subscribe_kpis()),
            alerts: filter.wants_alerts().then(|| feed.subscribe_alerts()),
            dead_letters: filter
                .wants_dead_letters()
                .then(|| feed.subscribe_dead_letters()),
            filter,
        }
    }

    /// Updates waiting in `feed`'s receiver.
    fn backlog(&self, feed: Feed) -> usize {
        match feed {
            Feed::Windows => self.windows.as_ref().map_or(0, broadcast::Receiver::len),
            Feed::Kpi => self.kpis.as_ref().map_or(0, broadcast::Receiver::len),
            Feed::Alerts => self.alerts.as_ref().map_or(0, broadcast::Receiver::len),
            Feed::DeadLetters => self
                .dead_letters
                .as_ref()
                .map_or(0, broadcast::Receiver::len),
        }
    }
}

enum Event {
    Command(Option<Command>),
    Window(Result<Arc<WindowResult>, RecvError>),
    Kpi(Result<Arc<Kpi>, RecvError>),
    Alert(Result<Arc<AlertEvent>, RecvError>),
    DeadLetter(Result<Arc<DeadLetterView>, RecvError>),
    Heartbeat,
}

/// The next update of `rx`; never resolves without a receiver.
async fn next_update<T: Clone>(rx: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The forwarder's side of one connection: its subscription and its sequence numbers.
struct Forwarder {
    out: mpsc::Sender<Message>,
    feed: LiveFeed,
    lagged: IntCounter,
    confined: Option<Department>,
    /// `seq` of the last numbered message queued (0: none yet).
    seq: u64,
    /// No receiver until the client subscribes, so an idle page costs the feed nothing.
    subscription: Option<Subscription>,
}

impl Forwarder {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Queues `message`, waiting while the client's queue is full (its broadcast receivers
    /// fall behind meanwhile, and it is resynchronised by `lagged` + `snapshot`). `false`
    /// once the writer is gone.
    async fn send(&self, message: Message) -> bool {
        self.out.send(message).await.is_ok()
    }

    /// Subscribes fresh receivers for `filter`, then queues the latest values matching it.
    async fn resubscribe(&mut self, filter: Filter) -> bool {
        let sub = Subscription::new(filter, &self.feed);
        let snapshot = self.feed.snapshot(&sub.filter, self.confined);
        self.subscription = Some(sub);
        let seq = self.next_seq();
        self.send(Message::Text(snapshot_json(&snapshot, seq).into()))
            .await
    }

    /// The client fell behind on `feed`: tells it, drops every backlog (the snapshot that
    /// follows supersedes it) and resubscribes with a fresh snapshot.
    async fn lag(&mut self, feed: Feed, skipped: u64) -> bool {
        let Some(sub) = self.subscription.take() else {
            return true;
        };
        let skipped = skipped.saturating_add(sub.backlog(feed) as u64);
        self.lagged.inc_by(skipped);
        debug!(
            skipped,
            ?feed,
            "websocket client lagged; sending a snapshot"
        );
        if !self
            .send(text(&ServerMessage::Lagged { feed, skipped }))
            .await
        {
            return false;
        }
        self.resubscribe(sub.filter).await
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, heartbeat_every: Duration) {
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let event = match self.subscription.as_mut() {
                None => Event::Command(commands.recv().await),
                // Commands first, so an unsubscribe takes effect before a backlog drains; the
                // feeds are polled fairly.
                Some(sub) => match commands.try_recv() {
                    Ok(command) => Event::Command(Some(command)),
                    Err(TryRecvError::Disconnected) => Event::Command(None),
                    Err(TryRecvError::Empty) => tokio::select! {
                        command = commands.recv() => Event::Command(command),
                        update = next_update(&mut sub.windows) => Event::Window(update),
                        update = next_update(&mut sub.kpis) => Event::Kpi(update),
                        update = next_update(&mut sub.alerts) => Event::Alert(update),
                        update = next_update(&mut sub.dead_letters) => Event::DeadLetter(update),
                        _ = heartbeat.tick() => Event::Heartbeat,
                    },
                },
            };
            let Some(filter) = self.subscription.as_ref().map(|s| &s.filter) else {
                // Not subscribed: only commands come.
                let ok = match event {
                    Event::Command(Some(Command::Subscribe(filter))) => {
                        heartbeat.reset();
                        self.subscribe(filter).await
                    }
                    Event::Command(Some(Command::Unsubscribe)) => {
                        self.send(text(&ServerMessage::Subscribed { filter: None }))
                            .await
                    }
                    Event::Command(None) => false,
                    _ => true,
                };
                if !ok {
                    break;
                }
                continue;
            };
            let message = match event {
                Event::Command(None) => break,
                Event::Command(Some(Command::Subscribe(filter))) => {
                    heartbeat.reset();
                    if !self.subscribe(filter).await {
                        break;
                    }
                    continue;
                }
                Event::Command(Some(Command::Unsubscribe)) => {
                    self.subscription = None;
                    text(&ServerMessage::Subscribed { filter: None })
                }
                Event::Heartbeat => {
                    let seq = self.next_seq();
                    text(&ServerMessage::Heartbeat {
                        seq,
                        at_ms: ioc_schemas::now_ms(),
                    })
                }
                Event::Window(Ok(result)) => {
                    if !filter.matches(&result) {
                        continue;
                    }
                    let seq = self.next_seq();
                    Message::Text(window_json(&result, seq).into())
                }
                Event::Kpi(Ok(kpi)) => {
                    if !filter.matches_kpi(&kpi) {
                        continue;
                    }
                    let seq = self.next_seq();
                    Message::Text(kpi_json(&kpi, seq).into())
                }
                Event::Alert(Ok(event)) => {
                    if !(self
                        .confined
                        .is_none_or(|own| event.alert.department == own)
                        && filter.matches_alert(&event))
                    {
                        continue;
                    }
                    let seq = self.next_seq();
                    Message::Text(alert_json(&event, seq).into())
                }
                Event::DeadLetter(Ok(letter)) => {
                    // Dead letters belong to no department.
                    if self.confined.is_some() {
                        continue;
                    }
                    let seq = self.next_seq();
                    Message::Text(dead_letter_json(&letter, seq).into())
                }
                Event::DeadLetter(Err(RecvError::Lagged(skipped))) => {
                    if !self.lag(Feed::DeadLetters, skipped).await {
                        break;
                    }
                    continue;
                }
                Event::Window(Err(RecvError::Lagged(skipped))) => {
                    if !self.lag(Feed::Windows, skipped).await {
                        break;
                    }
                    continue;
                }
                Event::Kpi(Err(RecvError::Lagged(skipped))) => {
                    if !self.lag(Feed::Kpi, skipped).await {
                        break;
                    }
                    continue;
                }
                Event::Alert(Err(RecvError::Lagged(skipped))) => {
                    if !self.lag(Feed::Alerts, skipped).await {
                        break;
                    }
                    continue;
                }
                Event::Window(Err(RecvError::Closed))
                | Event::Kpi(Err(RecvError::Closed))
                | Event::Alert(Err(RecvError::Closed))
                | Event::DeadLetter(Err(RecvError::Closed)) => {
                    // The feed lives as long as the server state; nothing more will come.
                    warn!("live feed closed");
                    self.subscription = None;
                    continue;
                }
            };
            if !self.send(message).await {
                break;
            }
        }
    }

    /// Takes a new filter: `subscribed`, then a `snapshot` for it.
    async fn subscribe(&mut self, filter: Filter) -> bool {
        let ack = text(&ServerMessage::Subscribed {
            filter: Some(filter.clone()),
        });
        // Nothing of the old filter may follow the ack.
        self.subscription = None;
        self.send(ack).await && self.resubscribe(filter).await
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<Message>,
    closing: watch::Receiver<bool>,
    ping_interval: Duration,
    last_seen: Arc<LastSeen>,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = out.recv() => {
                let Some(message) = next else { break };
                if sink.feed(message).await.is_err() {
                    return;
                }
                // Batch what is already queued into one flush.
                for _ in 1..WRITE_BATCH {
                    let Ok(message) = out.try_recv() else { break };
                    if sink.feed(message).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if last_seen.silent_for() > ping_interval * MISSED_PINGS {
                    info!("websocket client silent for {MISSED_PINGS} pings; disconnecting");
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::POLICY,
                            reason: "no pong".into(),
                        })))
                        .await;
                    return;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    if *closing.borrow() {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "server shutting down".into(),
            })))
            .await;
    }
    let _ = sink.close().await;
}
