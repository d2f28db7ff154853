//! The MQTT source: a persistent QoS 1 subscription whose messages are acknowledged only once
//! the pipeline has stored them, in the order they arrived ([`PubackOrder`]).
//!
//! The event loop is never blocked by a slow pipeline: decoded records wait in a bounded stash
//! while the loop keeps the connection alive. Only when the stash is full does the loop stop
//! reading; the broker then holds the unacknowledged messages and redelivers them on reconnect,
//! so nothing is lost (see README, "Delivery guarantees").
//!
//! No message can cost the connection: the client accepts packets up to
//! `max_packet_bytes` (set it at or above the broker's own limit), and a payload over
//! `max_payload_bytes` becomes a `payload_too_large` dead letter like any other bad input.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_schemas::{parse_topic, Feed, Ingested, Transport, ValidationLimits};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, PubAck, Publish, QoS,
    StateError,
};
use serde::{Deserialize, Serialize};
use tracing::field::Empty;
use tracing::Instrument;

use crate::decode::{decode_mqtt, DecodeLimits};
use crate::metrics::IngestMetrics;
use crate::puback::PubackOrder;
use crate::record::{self, Arrival};
use crate::{now_ms, IngestError};

/// How long a connection must have lasted before a failure of it starts the reconnect delay
/// from the beginning again; a connection that fails sooner (a broker that keeps sending a
/// packet the client refuses, say, even after a few good ones) backs off up to
/// `reconnect_max_ms`.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// How to reach and read the MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Read from MQTT; off for a Kafka-only deployment.
    pub enabled: bool,
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; with a persistent session the broker keeps unacknowledged messages under it,
    /// so it must stay the same across restarts of one instance and differ between instances.
    /// Empty (the default): iocd derives one from the host name and the state folder.
    pub client_id: String,
    /// Topic filters to subscribe to with QoS 1 (`$share/<group>/ioc/v1/#` to share a load).
    pub topics: Vec<String>,
    /// Keep-alive interval in seconds.
    pub keep_alive_s: u64,
    /// Start a fresh session on connect, dropping what the broker held for this client id.
    pub clean_session: bool,
    /// Acknowledge a message only once it is stored (at-least-once across a crash). `false`
    /// acknowledges on receipt: faster, but a crash loses what was received and not yet stored.
    pub ack_after_store: bool,
    /// User name, if the broker requires one.
    pub username: Option<String>,
    /// Password, with `username`.
    pub password: Option<String>,
    /// First reconnect delay in ms; doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay in ms.
    pub reconnect_max_ms: u64,
    /// Largest accepted payload in bytes; larger ones are dead-lettered as
    /// `payload_too_large`, keeping their first KiB.
    pub max_payload_bytes: usize,
    /// Largest MQTT packet the client reads. Keep it at or above the broker's own limit
    /// (mosquitto `max_packet_size`, rumqttd `max_payload_size`): a packet above it costs the
    /// connection, and the broker sends it again on every reconnect.
    pub max_packet_bytes: usize,
    /// How far ahead of this machine's clock (ms) an event time may be.
    pub max_future_ms: u64,
    /// Records held while the pipeline is behind before the connection stops reading.
    pub stash_capacity: usize,
    /// Capacity of the client's request queue (subscriptions and the disconnect;
    /// acknowledgements are written to the connection directly, in batches).
    pub request_capacity: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            topics: vec!["ioc/v1/#".into()],
            keep_alive_s: 30,
            clean_session: false,
            ack_after_store: true,
            username: None,
            password: None,
            reconnect_initial_ms: 200,
            reconnect_max_ms: 10_000,
            max_payload_bytes: 64 * 1024,
            max_packet_bytes: 16 * 1024 * 1024,
            max_future_ms: 5 * 60 * 1000,
            stash_capacity: 10_000,
            request_capacity: 65_536,
        }
    }
}

impl MqttConfig {
    fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_keep_alive(Duration::from_secs(self.keep_alive_s.max(5)))
            .set_clean_session(self.clean_session)
            .set_manual_acks(self.ack_after_store)
            // What iocd sends is small: acknowledgements and subscriptions.
            .set_max_packet_size(
                self.max_packet_bytes.max(self.max_payload_bytes + 1024),
                64 * 1024,
            );
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            options.set_credentials(user, password);
        }
        options
    }
}

/// Subscribes and forwards decoded records to `out` until `stop` resolves. After that it keeps
/// the connection open until `drained` resolves, so acknowledgements of records still being
/// stored reach the broker, then disconnects. Messages arriving after `stop` are left
/// unacknowledged for the broker to redeliver.
pub async fn run_mqtt(
    config: MqttConfig,
    out: Feed,
    metrics: IngestMetrics,
    stop: impl Future<Output = ()>,
    drained: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    if config.topics.is_empty() {
        return Err(IngestError::Config("mqtt.topics is empty".into()));
    }
    if config.client_id.is_empty() {
        return Err(IngestError::Config(
            "mqtt.client_id is empty; give each instance its own".into(),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(config.options(), config.request_capacity);
    let acks = config.ack_after_store.then(|| {
        PubackOrder::new(
            metrics.mqtt_unacked.clone(),
            metrics.ack_failures.with_label_values(&["mqtt"]),
        )
    });
    // The packet ids of the PUBACKs being written.
    let mut pubacks = Vec::new();
    let validation = ValidationLimits {
        max_future_ms: config.max_future_ms,
        ..ValidationLimits::default()
    };
    let mut stash: VecDeque<Ingested> = VecDeque::new();
    let mut backoff = config.reconnect_initial_ms;
    let mut connected_at: Option<Instant> = None;
    let reconnects = metrics.reconnects.with_label_values(&["mqtt"]);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            permit = out.reserve(stash.front()), if !stash.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(record) = stash.pop_front() {
                    permit.send(record);
                }
                out.send_ready(&mut stash);
                metrics.stashed.set(stash.len() as i64);
            }
            () = due(acks.as_deref()) => {
                write_pubacks(&mut eventloop, acks.as_deref(), &mut pubacks).await;
            }
            event = eventloop.poll(), if stash.len() < config.stash_capacity => {
                let failed = match event {
                    Ok(event) => {
                        // One network read brings a bunch of packets, which the event loop
                        // then hands out without reading again: they are one batch.
                        let span = tracing::debug_span!("mqtt_batch", messages = Empty);
                        async {
                            let mut event = event;
                            let mut messages = 0usize;
                            loop {
                                match event {
                                    Event::Incoming(Packet::ConnAck(ack)) => {
                                        tracing::info!(host = %config.host, port = config.port, session_present = ack.session_present, "mqtt connected");
                                        metrics.connected.set(1);
                                        connected_at = Some(Instant::now());
                                        for topic in &config.topics {
                                            client
                                                .try_subscribe(topic.clone(), QoS::AtLeastOnce)
                                                .map_err(|source| IngestError::Subscribe {
                                                    topic: topic.clone(),
                                                    source,
                                                })?;
                                        }
                                    }
                                    Event::Incoming(Packet::Publish(publish)) => {
                                        messages += 1;
                                        let limits = DecodeLimits {
                                            max_payload_bytes: config.max_payload_bytes,
                                            now_ms: now_ms(),
                                            validation,
                                        };
                                        let record = to_record(&publish, acks.as_ref(), &limits, &metrics);
                                        match out.try_reserve(&record) {
                                            Some(permit) if stash.is_empty() => permit.send(record),
                                            _ => {
                                                stash.push_back(record);
                                                metrics.stashed.set(stash.len() as i64);
                                            }
                                        }
                                    }
                                    _ => {}
                                }
                                // Polling again returns what the last read brought, at once.
                                if eventloop.state.events.is_empty()
                                    || stash.len() >= config.stash_capacity
                                {
                                    break;
                                }
                                match eventloop.poll().await {
                                    Ok(next) => event = next,
                                    Err(e) => return Ok(Some(e)),
                                }
                            }
                            tracing::Span::current().record("messages", messages);
                            Ok::<_, IngestError>(None)
                        }
                        .instrument(span)
                        .await?
                    }
                    Err(e) => Some(e),
                };
                if let Some(e) = failed {
                    metrics.connected.set(0);
                    reconnects.inc();
                    if let Some(acks) = &acks {
                        acks.forget_connection();
                    }
                    if connected_at.take().is_some_and(|at| at.elapsed() >= STABLE_CONNECTION) {
                        backoff = config.reconnect_initial_ms;
                    }
                    if let Some(size) = oversized_packet(&e) {
                        metrics.oversized_packets.inc();
                        tracing::error!(
                            packet_bytes = size,
                            max_packet_bytes = config.max_packet_bytes,
                            retry_in_ms = backoff,
                            "the broker sent a packet larger than mqtt.max_packet_bytes and will \
                             send it again on every reconnect; raise mqtt.max_packet_bytes to the \
                             broker's packet limit or lower the broker's limit below it"
                        );
                    } else {
                        tracing::warn!(error = %e, retry_in_ms = backoff, "mqtt connection failed");
                    }
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(Duration::from_millis(backoff)) => {}
                    }
                    backoff = (backoff * 2).min(config.reconnect_max_ms);
                }
            }
        }
    }
    // Hand over what is stashed, then let the pipeline finish; keep polling so acks go out.
    for record in stash.drain(..) {
        if out.send(record).await.is_err() {
            break;
        }
    }
    drop(out);
    for topic in &config.topics {
        let _ = client.try_unsubscribe(topic.clone());
    }
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            () = due(acks.as_deref()) => {
                write_pubacks(&mut eventloop, acks.as_deref(), &mut pubacks).await;
            }
            event = eventloop.poll() => {
                if event.is_err() {
                    break;
                }
            }
        }
    }
    // Send the acknowledgements released by the last batches, then leave.
    write_pubacks(&mut eventloop, acks.as_deref(), &mut pubacks).await;
    let _ = client.try_disconnect();
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    metrics.connected.set(0);
    Ok(())
}

/// Resolves when PUBACKs are due (never without acknowledgement after store).
async fn due(acks: Option<&PubackOrder>) {
    match acks {
        Some(acks) => acks.due().await,
        None => std::future::pending().await,
    }
}

/// Writes the PUBACKs due, in order, to the connection and flushes them together. Through the
/// client's request queue, rumqttc would write and flush each on its own: a system call, and
/// a wake-up of the broker, per message. Those a failed connection could not take are counted
/// lost; the broker redelivers their messages.
async fn write_pubacks(eventloop: &mut EventLoop, acks: Option<&PubackOrder>, ids: &mut Vec<u16>) {
    let Some(acks) = acks else { return };
    acks.take(ids);
    if ids.is_empty() {
        return;
    }
    let count = ids.len();
    let timeout = Duration::from_secs(eventloop.network_options().connection_timeout());
    let written = match eventloop.network.as_mut() {
        Some(network) => tokio::time::timeout(timeout, async {
            for pkid in ids.drain(..) {
                network.write(Packet::PubAck(PubAck::new(pkid))).await?;
            }
            network.flush().await
        })
        .await
        .is_ok_and(|r| r.is_ok()),
        None => false,
    };
    ids.clear();
    if !written {
        acks.lost(count);
    }
}

/// The size of a packet the client refused for being over its packet limit.
fn oversized_packet(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// Decodes one message into a record carrying its acknowledgement (none for QoS 0, or when
/// the client acknowledges on receipt).
fn to_record(
    publish: &Publish,
    acks: Option<&Arc<PubackOrder>>,
    limits: &DecodeLimits,
    metrics: &IngestMetrics,
) -> Ingested {
    let ack = match (acks, publish.qos) {
        // Subscriptions are QoS 1, so the broker sends nothing at QoS 2.
        (Some(acks), QoS::AtLeastOnce) => Some(acks.arrived(publish.pkid)),
        _ => None,
    };
    let topic = publish.topic.as_str();
    let arrival = Arrival {
        transport: Transport::Mqtt,
        source: topic.to_owned(),
        payload: &publish.payload,
        received_at_ms: limits.now_ms,
        kind: parse_topic(topic).ok().map(|p| p.kind),
    };
    record::to_record(
        arrival,
        decode_mqtt(topic, &publish.payload, limits),
        ack,
        metrics,
    )
}
