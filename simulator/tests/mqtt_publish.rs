//! Publishing to the real mosquitto on 127.0.0.1:1883 (start it with `.ci/servers.sh start`).
//!
//! Other tests publish on `ioc/v1/#` at the same time, so each test uses its own seed and
//! start time (hence its own message ids) and counts only the messages it generated itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ioc_simulator::{
    publish_mqtt, Fleet, Generator, MessageClass, PublishReport, SimulatorConfig, SimulatorError,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BROKER: (&str, u16) = ("127.0.0.1", 1883);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A suffix no other test (or test process) uses.
fn unique(name: &str) -> (String, u64) {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let pid = u64::from(std::process::id());
    let seed = (pid << 40) ^ (n << 32) ^ nanos;
    (format!("{pid}-{n}-{name}"), seed)
}

/// A config for a replay at a fixed start, so the test can regenerate the expected stream.
fn replay_cfg(name: &str, messages: u64, rate: f64) -> SimulatorConfig {
    let (suffix, seed) = unique(name);
    SimulatorConfig {
        seed,
        rate_per_s: rate,
        real_time: false,
        // An hour ago, at whole seconds: event times stay in the past.
        start_ms: Some((seed % 1_000_000) * 1000 + 1_700_000_000_000),
        malformed_share: 0.03,
        out_of_order_share: 0.03,
        duplicate_share: 0.03,
        max_messages: Some(messages),
        client_id: format!("sim-test-pub-{suffix}"),
        drain_timeout_ms: 20_000,
        ..SimulatorConfig::default()
    }
}

/// The (topic, payload) pairs publish_mqtt will send for `cfg`, with their classes.
fn expected(cfg: &SimulatorConfig) -> anyhow::Result<Vec<(String, Vec<u8>, MessageClass)>> {
    let start = cfg.start_ms.context("replay config has a start")?;
    let g = Generator::new(Fleet::da_nang(cfg.seed), cfg.seed, cfg, start)?;
    Ok(g.map(|m| (m.topic, m.payload, m.class)).collect())
}

async fn subscriber(name: &str) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let (suffix, _) = unique(name);
    let mut opts = MqttOptions::new(format!("sim-test-sub-{suffix}"), BROKER.0, BROKER.1);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client.subscribe("ioc/v1/#", QoS::AtLeastOnce).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .context("no SUBACK from mosquitto; is it running (.ci/servers.sh start)?")??;
        if let Event::Incoming(Packet::SubAck(_)) = event {
            return Ok((client, eventloop));
        }
    }
}

/// What the subscriber saw of the expected messages.
#[derive(Debug)]
struct Seen {
    /// Deliveries that match an expected message (a QoS 1 redelivery counts again).
    deliveries: usize,
    /// Expected (topic, payload) pairs never seen.
    missing: usize,
}

/// Collects deliveries until every expected pair was seen at least `times` times, or 30 s.
fn collect(
    mut eventloop: EventLoop,
    expected: &[(String, Vec<u8>, MessageClass)],
) -> JoinHandle<anyhow::Result<Seen>> {
    let mut want: HashMap<(String, Vec<u8>), usize> = HashMap::new();
    for (topic, payload, _) in expected {
        *want.entry((topic.clone(), payload.clone())).or_default() += 1;
    }
    tokio::spawn(async move {
        let mut seen: HashMap<(String, Vec<u8>), usize> = HashMap::new();
        let mut deliveries = 0;
        let mut satisfied = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while satisfied < want.len() {
            let Ok(event) = tokio::time::timeout_at(deadline, eventloop.poll()).await else {
                break;
            };
            if let Event::Incoming(Packet::Publish(p)) = event? {
                let key = (p.topic.clone(), p.payload.to_vec());
                if let Some(&n) = want.get(&key) {
                    deliveries += 1;
                    let got = seen.entry(key).or_default();
                    *got += 1;
                    if *got == n {
                        satisfied += 1;
                    }
                }
            }
        }
        Ok(Seen {
            deliveries,
            missing: want.len() - satisfied,
        })
    })
}

fn report_of(expected: &[(String, Vec<u8>, MessageClass)]) -> PublishReport {
    let mut r = PublishReport {
        sent: expected.len() as u64,
        ..PublishReport::default()
    };
    for (_, _, class) in expected {
        match class {
            MessageClass::Valid => r.valid += 1,
            MessageClass::Malformed(_) => r.malformed += 1,
            MessageClass::OutOfOrder => r.out_of_order += 1,
            MessageClass::Duplicate => r.duplicates += 1,
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_2000_messages_reach_a_subscriber() -> anyhow::Result<()> {
    let cfg = replay_cfg("all2000", 2_000, 2_000.0);
    let expected = expected(&cfg)?;
    assert_eq!(expected.len(), 2_000);
    let (sub, eventloop) = subscriber("all2000").await?;
    let seen = collect(eventloop, &expected);

    let started = std::time::Instant::now();
    let report = publish_mqtt(&cfg, BROKER.0, BROKER.1, std::future::pending()).await?;
    let took = started.elapsed();
    assert_eq!(report, report_of(&expected));
    assert!(report.malformed > 20 && report.out_of_order > 20 && report.duplicates > 20);
    // Paced at 2000/s: about a second, not a burst.
    assert!(took >= Duration::from_millis(900), "{took:?}");

    let seen = seen.await??;
    assert_eq!(seen.missing, 0, "{seen:?}");
    assert!(seen.deliveries >= 2_000, "{seen:?}");
    drop(sub);
    Ok(())
}

/// A TCP proxy to mosquitto that cuts its first connection after `cut_after`. With
/// `withhold_acks`, that connection stops passing the broker's packets on after its first
/// 100 ms (the CONNACK passes), so the client's in-flight window fills before the cut, and the
/// later ones pass them on 50 ms late.
async fn flaky_proxy(
    cut_after: Duration,
    withhold_acks: bool,
) -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(BROKER).await else {
                    return;
                };
                if !first && withhold_acks {
                    // A slow broker: what it sends comes 50 ms late, so acknowledgements lag
                    // while the client sends its backlog again.
                    let (mut from_client, mut to_client) = inbound.split();
                    let (mut from_broker, mut to_broker) = upstream.split();
                    let upward = tokio::io::copy(&mut from_client, &mut to_broker);
                    let downward = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from_broker.read(&mut buf).await {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::join!(upward, downward);
                    return;
                }
                if !first {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut upstream).await;
                    return;
                }
                // Dropping both sockets mid-stream loses whatever was in flight.
                let (mut from_client, mut to_client) = inbound.split();
                let (mut from_broker, mut to_broker) = upstream.split();
                let upward = tokio::io::copy(&mut from_client, &mut to_broker);
                let downward = async {
                    if withhold_acks {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(100),
                            tokio::io::copy(&mut from_broker, &mut to_client),
                        )
                        .await;
                        std::future::pending::<()>().await;
                    } else {
                        let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
                    }
                };
                let _ =
                    tokio::time::timeout(cut_after, async { tokio::join!(upward, downward) }).await;
            });
        }
    });
    Ok((port, connections))
}

/// Publishes 3,000 messages through a proxy that cuts the first connection after 400 ms, and
/// checks every one is acknowledged and delivered.
async fn publish_through_a_cut(name: &str, withhold_acks: bool) -> anyhow::Result<()> {
    let cfg = SimulatorConfig {
        reconnect_backoff_initial_ms: 50,
        ..replay_cfg(name, 3_000, 3_000.0)
    };
    let expected = expected(&cfg)?;
    let (sub, eventloop) = subscriber(name).await?;
    let seen = collect(eventloop, &expected);
    let (port, connections) = flaky_proxy(Duration::from_millis(400), withhold_acks).await?;

    let report = publish_mqtt(&cfg, "127.0.0.1", port, std::future::pending()).await?;
    assert_eq!(report, report_of(&expected));
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the proxy should have forced a reconnect"
    );
    let seen = seen.await??;
    assert_eq!(seen.missing, 0, "{seen:?}");
    drop(sub);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_loses_nothing() -> anyhow::Result<()> {
    publish_through_a_cut("reconnect", false).await
}

/// The cut comes with the in-flight window full and the request queue holding more: all of
/// them are sent again on the new connection, none lost to a packet id still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_with_its_window_full_loses_nothing() -> anyhow::Result<()> {
    publish_through_a_cut("fullwindow", true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_real_time_run_and_drains() -> anyhow::Result<()> {
    let (suffix, seed) = unique("shutdown");
    let cfg = SimulatorConfig {
        seed,
        rate_per_s: 500.0,
        real_time: true,
        client_id: format!("sim-test-pub-{suffix}"),
        ..SimulatorConfig::default()
    };
    let report = publish_mqtt(
        &cfg,
        BROKER.0,
        BROKER.1,
        tokio::time::sleep(Duration::from_millis(2_000)),
    )
    .await?;
    // In real time the rate is a ceiling: the fleet sends at its registry intervals, about
    // 27.5 messages a second, so about 55 in two seconds.
    assert!((30..=90).contains(&report.sent), "{report:?}");
    assert_eq!(report.sent, report.valid);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_broker_is_reported_as_unacknowledged() -> anyhow::Result<()> {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let cfg = SimulatorConfig {
        drain_timeout_ms: 300,
        ..replay_cfg("absent", 10_000, 200.0)
    };
    let result = publish_mqtt(
        &cfg,
        "127.0.0.1",
        port,
        tokio::time::sleep(Duration::from_millis(300)),
    )
    .await;
    match result {
        Err(e @ SimulatorError::Unacknowledged { sent, unacked, .. }) => {
            assert!(sent > 20, "{e}");
            assert_eq!(unacked, sent);
            assert!(e.is_retryable());
        }
        other => bail!("expected unacknowledged publishes, got {other:?}"),
    }
    let bad = SimulatorConfig {
        rate_per_s: -1.0,
        ..cfg
    };
    let e = publish_mqtt(&bad, "127.0.0.1", port, std::future::pending())
        .await
        .expect_err("a negative rate is refused");
    assert!(!e.is_retryable());
    Ok(())
}
