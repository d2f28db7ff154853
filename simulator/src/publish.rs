//! Publishing the generated stream to an MQTT broker.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, Publish, QoS, Request,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, info, warn, Instrument};

use crate::config::SimulatorConfig;
use crate::error::SimulatorError;
use crate::fleet::Fleet;
use crate::generator::{Generator, MessageClass};

/// What a publishing run sent; every message counted here was acknowledged by the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublishReport {
    /// Messages published (all classes).
    pub sent: u64,
    /// Valid readings in event-time order.
    pub valid: u64,
    /// Malformed messages.
    pub malformed: u64,
    /// Valid readings sent late.
    pub out_of_order: u64,
    /// Re-sends of earlier messages.
    pub duplicates: u64,
}

impl PublishReport {
    pub(crate) fn count(&mut self, class: MessageClass) {
        self.sent += 1;
        match class {
            MessageClass::Valid => self.valid += 1,
            MessageClass::Malformed(_) => self.malformed += 1,
            MessageClass::OutOfOrder => self.out_of_order += 1,
            MessageClass::Duplicate => self.duplicates += 1,
        }
    }
}

/// Messages due within this much of now go out without sleeping, so high rates publish in
/// batches of a few ms instead of waking per message.
pub(crate) const PACING_SLACK: Duration = Duration::from_millis(2);
/// How long a clean disconnect may take once everything is acknowledged.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_PACKET_BYTES: usize = 1 << 20;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where the stream starts: the wall clock in real-time mode, else `cfg.start_ms` (or the wall
/// clock).
pub(crate) fn start_ms(cfg: &SimulatorConfig) -> u64 {
    let now_ms = wall_ms();
    if cfg.real_time {
        now_ms
    } else {
        cfg.start_ms.unwrap_or(now_ms)
    }
}

/// When the next message is due: by the simulated clock in real-time mode, else by the rate.
pub(crate) fn pace_target(
    cfg: &SimulatorConfig,
    generator: &Generator,
    t0: Instant,
    start_ms: u64,
    sent: u64,
) -> Instant {
    if cfg.real_time {
        t0 + Duration::from_millis(generator.clock_ms().saturating_sub(start_ms))
    } else {
        t0 + Duration::from_secs_f64(sent as f64 / cfg.rate_per_s)
    }
}

/// Publishes Da Nang's simulated fleet (`Fleet::da_nang(cfg.seed)`) to the broker at
/// `host:port` with QoS 1: in real-time mode at the devices' registry intervals, with
/// `cfg.rate_per_s` as a ceiling ([`Fleet::paced`]); otherwise at exactly `cfg.rate_per_s`
/// messages per second.
///
/// Stops after `cfg.max_messages` or when `shutdown` completes, then waits (up to
/// `cfg.drain_timeout_ms`) until the broker has acknowledged every message sent, so on `Ok`
/// everything counted reached the broker. Connection errors are retried with exponential
/// backoff; publishes not yet acknowledged when a connection drops are sent again after the
/// reconnect (at-least-once: a receiver may see them twice). While the broker is away,
/// publishing waits once `cfg.channel_capacity` messages are queued; in real-time mode the
/// backlog is then sent at once, with its original event times.
///
/// In real-time mode the stream starts at the wall clock; otherwise at `cfg.start_ms` (or
/// the wall clock).
pub async fn publish_mqtt(
    cfg: &SimulatorConfig,
    host: &str,
    port: u16,
    shutdown: impl Future<Output = ()>,
) -> Result<PublishReport, SimulatorError> {
    cfg.validate()?;
    let start_ms = start_ms(cfg);
    let mut generator = Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, cfg, start_ms)?;

    let mut options = MqttOptions::new(cfg.client_id.clone(), host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(cfg.max_inflight)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        // A clean session leaves nothing behind on the broker; unacknowledged publishes are
        // re-sent by `drive` after a reconnect instead.
        .set_clean_session(true);
    let (client, eventloop) = AsyncClient::new(options, cfg.channel_capacity);
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    let backoff = (
        Duration::from_millis(cfg.reconnect_backoff_initial_ms),
        Duration::from_millis(cfg.reconnect_backoff_max_ms),
    );
    let mut driver = tokio::spawn(
        drive(eventloop, client.clone(), acked_tx, backoff)
            .instrument(tracing::info_span!("simulator_mqtt")),
    );

    info!(
        host,
        port,
        rate_per_s = cfg.rate_per_s,
        real_time = cfg.real_time,
        // In real-time mode what the fleet sends (rate_per_s caps it).
        fleet_rate_per_s = generator.fleet().natural_rate_per_s(),
        devices = generator.fleet().devices.len(),
        run_id = %generator.run_id(),
        start = %ioc_schemas::format_rfc3339_ms(start_ms),
        "simulator publishing"
    );

    let t0 = Instant::now();
    let mut report = PublishReport::default();
    let mut shutdown = pin!(shutdown);
    let mut failed = false;
    while let Some(msg) = generator.next() {
        let target = pace_target(cfg, &generator, t0, start_ms, report.sent);
        if target > Instant::now() + PACING_SLACK {
            tokio::select! {
                () = sleep_until(target) => {}
                () = &mut shutdown => break,
            }
        }
        let class = msg.class;
        tokio::select! {
            r = client.publish(msg.topic, QoS::AtLeastOnce, false, msg.payload) => {
                if r.is_err() {
                    // The event loop has ended; its result says why.
                    failed = true;
                    break;
                }
            }
            () = &mut shutdown => break,
        }
        report.count(class);
    }
    if failed {
        return Err(match (&mut driver).await {
            Ok(Err(e)) => e,
            _ => SimulatorError::EventLoopStopped,
        });
    }

    let sent = report.sent;
    debug!(sent, "publishing stopped; waiting for acknowledgements");
    let drain = Duration::from_millis(cfg.drain_timeout_ms);
    let drained = timeout(drain, acked_rx.wait_for(|&acked| acked >= sent))
        .await
        .map(|r| r.is_ok());
    match drained {
        Ok(true) => {}
        Ok(false) => {
            // The event loop ended before everything was acknowledged.
            return Err(match (&mut driver).await {
                Ok(Err(e)) => e,
                _ => SimulatorError::EventLoopStopped,
            });
        }
        Err(_) => {
            driver.abort();
            let acked = *acked_rx.borrow();
            return Err(SimulatorError::Unacknowledged {
                sent,
                unacked: sent.saturating_sub(acked),
                timeout_ms: cfg.drain_timeout_ms,
            });
        }
    }

    // Everything is acknowledged: a failed disconnect loses nothing.
    if client.disconnect().await.is_ok() {
        if timeout(DISCONNECT_TIMEOUT, &mut driver).await.is_err() {
            driver.abort();
        }
    } else {
        driver.abort();
    }
    info!(
        sent = report.sent,
        valid = report.valid,
        malformed = report.malformed,
        out_of_order = report.out_of_order,
        duplicates = report.duplicates,
        "simulator finished; every message acknowledged"
    );
    Ok(report)
}

/// Runs the MQTT event loop: counts PUBACKs, reconnects with exponential backoff, and sends
/// the unacknowledged publishes of a lost connection again. Ends after a clean disconnect or
/// on an error a retry will not fix.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    acked: watch::Sender<u64>,
    (initial, max): (Duration, Duration),
) -> Result<(), SimulatorError> {
    let mut backoff = initial;
    // What was in flight or queued when the connection dropped (rumqttc forgets it when the new
    // session is clean), to be sent again (at-least-once). It goes back through the request
    // queue, so rumqttc's in-flight window applies: put straight into its pending list, publishes
    // past the window took packet ids still in flight, and each collision lost one.
    let mut resend: VecDeque<Publish> = VecDeque::new();
    loop {
        while let Some(p) = resend.front() {
            let queued = client.try_publish(p.topic.clone(), p.qos, p.retain, p.payload.to_vec());
            if queued.is_err() {
                break;
            }
            resend.pop_front();
        }
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked.send_modify(|n| *n += 1),
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = initial;
                if resend.is_empty() {
                    debug!("connected to the mqtt broker");
                } else {
                    info!(
                        resent = resend.len(),
                        "reconnected; re-sending unacknowledged publishes"
                    );
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code))
                if code != ConnectReturnCode::ServiceUnavailable =>
            {
                return Err(SimulatorError::Refused(format!("{code:?}")));
            }
            Err(ConnectionError::RequestsDone) => return Ok(()),
            Err(e) => {
                // In flight, pending, or queued: the event loop gathered them all here.
                for request in eventloop.pending.drain(..) {
                    if let Request::Publish(p) = request {
                        resend.push_back(p);
                    }
                }
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt connection error; reconnecting");
                sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        }
    }
}
