//! The MQTT source: a persistent QoS 1 subscription whose messages are acknowledged only once
//! the pipeline has stored them.
//!
//! The event loop is never blocked by a slow pipeline: decoded records wait in a bounded stash
//! while the loop keeps the connection alive. Only when the stash is full does the loop stop
//! reading; the broker then holds the unacknowledged messages and redelivers them on reconnect,
//! so nothing is lost (see README, "Delivery guarantees").

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use ioc_schemas::{parse_topic, Ack, Ingested, RejectCode, Rejection, Transport, ValidationLimits};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::decode::decode_reading;
use crate::metrics::IngestMetrics;
use crate::record::{self, Arrival};
use crate::{now_ms, IngestError};

/// How to reach and read the MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Read from MQTT; off for a Kafka-only deployment.
    pub enabled: bool,
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; with a persistent session the broker keeps unacknowledged messages under it.
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
    /// Largest accepted payload in bytes; larger ones are dead-lettered.
    pub max_payload_bytes: usize,
    /// How far ahead of this machine's clock (ms) an event time may be.
    pub max_future_ms: u64,
    /// Records held while the pipeline is behind before the connection stops reading.
    pub stash_capacity: usize,
    /// Capacity of the client's request queue (acknowledgements and subscriptions).
    pub request_capacity: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "iocd".into(),
            topics: vec!["ioc/v1/#".into()],
            keep_alive_s: 30,
            clean_session: false,
            ack_after_store: true,
            username: None,
            password: None,
            reconnect_initial_ms: 200,
            reconnect_max_ms: 10_000,
            max_payload_bytes: 64 * 1024,
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
            .set_max_packet_size(self.max_payload_bytes + 1024, self.max_payload_bytes + 1024);
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
    out: mpsc::Sender<Ingested>,
    metrics: IngestMetrics,
    stop: impl Future<Output = ()>,
    drained: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    if config.topics.is_empty() {
        return Err(IngestError::Config("mqtt.topics is empty".into()));
    }
    let (client, mut eventloop) = AsyncClient::new(config.options(), config.request_capacity);
    let limits = ValidationLimits {
        max_future_ms: config.max_future_ms,
        ..ValidationLimits::default()
    };
    let mut stash: VecDeque<Ingested> = VecDeque::new();
    let mut backoff = config.reconnect_initial_ms;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            permit = out.reserve(), if !stash.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(record) = stash.pop_front() {
                    permit.send(record);
                }
                metrics.stashed.set(stash.len() as i64);
            }
            event = eventloop.poll(), if stash.len() < config.stash_capacity => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(host = %config.host, port = config.port, session_present = ack.session_present, "mqtt connected");
                    metrics.connected.set(1);
                    backoff = config.reconnect_initial_ms;
                    for topic in &config.topics {
                        client
                            .try_subscribe(topic.clone(), QoS::AtLeastOnce)
                            .map_err(|e| IngestError::Mqtt(format!("cannot subscribe to {topic}: {e}")))?;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let record = to_record(&publish, &client, &config, &limits, &metrics);
                    match out.try_reserve() {
                        Ok(permit) if stash.is_empty() => permit.send(record),
                        _ => {
                            stash.push_back(record);
                            metrics.stashed.set(stash.len() as i64);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.connected.set(0);
                    metrics.reconnects.with_label_values(&["mqtt"]).inc();
                    tracing::warn!(error = %e, retry_in_ms = backoff, "mqtt connection failed");
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(Duration::from_millis(backoff)) => {}
                    }
                    backoff = (backoff * 2).min(config.reconnect_max_ms);
                }
            },
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
            event = eventloop.poll() => if event.is_err() { break },
        }
    }
    // Flush the acknowledgements queued by the last batches, then leave.
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

/// Decodes one message into a record carrying its acknowledgement.
fn to_record(
    publish: &Publish,
    client: &AsyncClient,
    config: &MqttConfig,
    limits: &ValidationLimits,
    metrics: &IngestMetrics,
) -> Ingested {
    let received_at_ms = now_ms();
    let ack = if config.ack_after_store {
        ack_for(publish, client, metrics)
    } else {
        None
    };
    let topic = publish.topic.as_str();
    let parts = parse_topic(topic);
    let kind_label = parts.as_ref().map_or("unknown", |p| p.kind.as_str());
    let decoded = parts.and_then(|parts| {
        let reading = decode_reading(
            &publish.payload,
            config.max_payload_bytes,
            received_at_ms,
            limits,
        )?;
        if reading.kind() != parts.kind || reading.device_id != parts.device_id {
            return Err(Rejection::new(
                RejectCode::SourceMismatch,
                format!(
                    "payload is {} from device `{}` but the topic `{topic}` says {} from `{}`",
                    reading.kind(),
                    reading.device_id,
                    parts.kind,
                    parts.device_id
                ),
            ));
        }
        Ok((reading, parts.district))
    });
    let arrival = Arrival {
        transport: Transport::Mqtt,
        source: topic.to_owned(),
        payload: &publish.payload,
        received_at_ms,
        kind_label,
    };
    record::to_record(arrival, decoded, ack, metrics)
}

/// The PUBACK to send once the message is durable; none for QoS 0.
fn ack_for(publish: &Publish, client: &AsyncClient, metrics: &IngestMetrics) -> Option<Ack> {
    if publish.qos == QoS::AtMostOnce {
        return None;
    }
    let mut receipt = Publish::new("", publish.qos, Vec::<u8>::new());
    receipt.pkid = publish.pkid;
    let client = client.clone();
    let failures = metrics.ack_failures.with_label_values(&["mqtt"]);
    Some(Ack::new(move || {
        // The queue holds more than the broker may have in flight, so it is full only when the
        // connection is gone; the broker then redelivers the message, which is stored once.
        if let Err(e) = client.try_ack(&receipt) {
            failures.inc();
            tracing::warn!(error = %e, "cannot queue mqtt acknowledgement");
        }
    }))
}
