//! The MQTT source against a raw MQTT 3.1.1 peer written here from the specification, which
//! plays the broker and records exactly what the client sends back:
//! - PUBACKs leave in the order the PUBLISHes arrived (§4.6, [MQTT-4.6.0-2]) whatever order the
//!   pipeline stores the messages in;
//! - a burst of PUBACKs larger than the client's request queue all reach the broker, in order,
//!   on the same connection;
//! - a payload over `max_payload_bytes` is a dead letter and is acknowledged in its turn, on
//!   the same connection;
//! - a packet over `max_packet_bytes` costs the connection, is counted, and the reconnects that
//!   follow back off instead of spinning.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioc_ingest::{run_mqtt, IngestMetrics, MqttConfig};
use ioc_schemas::{Feed, Ingested, RejectCode, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NOW_TOPIC: &str = "ioc/v1/sensor/cam_le/rain-1";

/// Reads one control packet: `(first byte, body)`.
async fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = stream.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = stream.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

fn remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

/// A QoS 1 PUBLISH (§3.3).
fn publish(pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x32];
    remaining_length(2 + topic.len() + 2 + payload.len(), &mut p);
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic.as_bytes());
    p.extend_from_slice(&pkid.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// What the peer saw.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    pubacks: Vec<u16>,
}

/// Plays the broker: CONNACK, SUBACK, then `messages` as QoS 1 PUBLISHes with packet ids
/// 1, 2, ... on every connection; records every PUBACK.
async fn peer(listener: TcpListener, messages: Vec<(String, Vec<u8>)>, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        seen.lock().unwrap().connections += 1;
        let messages = messages.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some((first, body)) = read_packet(&mut stream).await {
                let reply: Vec<u8> = match first >> 4 {
                    1 => vec![0x20, 0x02, 0x00, 0x00], // CONNECT → CONNACK, accepted
                    8 => {
                        // SUBSCRIBE → SUBACK granting QoS 1, then the messages.
                        let mut r = vec![0x90, 0x03, body[0], body[1], 0x01];
                        for (i, (topic, payload)) in messages.iter().enumerate() {
                            r.extend(publish(i as u16 + 1, topic, payload));
                        }
                        r
                    }
                    4 => {
                        seen.lock()
                            .unwrap()
                            .pubacks
                            .push(u16::from_be_bytes([body[0], body[1]]));
                        continue;
                    }
                    12 => vec![0xd0, 0x00], // PINGREQ → PINGRESP
                    14 => return,           // DISCONNECT
                    _ => continue,
                };
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn reading(i: usize) -> Vec<u8> {
    format!(
        r#"{{"message_id":"m{i}","device_id":"rain-1","event_time":1795827600000,"kind":"sensor","body":{{"metric":"rainfall_mm","value":1.5,"unit":"mm"}}}}"#
    )
    .into_bytes()
}

struct Client {
    records: mpsc::Receiver<Ingested>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    registry: prometheus::Registry,
}

impl Client {
    async fn next_record(&mut self) -> Ingested {
        tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("a record within 10 s")
            .expect("the source is running")
    }
}

async fn start(
    messages: Vec<(String, Vec<u8>)>,
    tune: impl FnOnce(&mut MqttConfig),
) -> (Client, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(peer(listener, messages, Arc::clone(&seen)));
    let mut config = MqttConfig {
        port,
        client_id: "raw-peer-test".into(),
        max_future_ms: u64::MAX / 4,
        ..MqttConfig::default()
    };
    tune(&mut config);
    let registry = prometheus::Registry::new();
    let metrics = IngestMetrics::new(&registry).unwrap();
    let (tx, queues) = Feed::new(Topology::single(1), 1000);
    let records = queues.queues.into_iter().next().expect("one queue");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_mqtt(
            config,
            tx,
            metrics,
            async move {
                let _ = stopped.await;
            },
            async {},
        )
        .await
        .unwrap();
    });
    (
        Client {
            records,
            stop,
            task,
            registry,
        },
        seen,
    )
}

fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[tokio::test]
async fn pubacks_leave_in_arrival_order_whatever_order_messages_are_stored_in() {
    // Valid readings, malformed ones, a payload over the 64 KiB limit and a bad topic, mixed.
    let mut messages = Vec::new();
    for i in 0..40 {
        let (topic, payload) = match i % 8 {
            3 => (NOW_TOPIC.to_owned(), b"{not json".to_vec()),
            5 => ("ioc/v1/sensor/atlantis/rain-1".to_owned(), reading(i)),
            7 if i == 15 => (NOW_TOPIC.to_owned(), vec![b'x'; 70 * 1024]),
            _ => (NOW_TOPIC.to_owned(), reading(i)),
        };
        messages.push((topic, payload));
    }
    let (mut client, seen) = start(messages, |_| {}).await;
    let mut acks = Vec::new();
    let mut too_large = Vec::new();
    while acks.len() < 40 {
        let record = client.next_record().await;
        match record {
            Ingested::Reading(_, ack) => acks.push(ack.expect("QoS 1 carries an ack")),
            Ingested::DeadLetter(letter, ack) => {
                if letter.rejection.code == RejectCode::PayloadTooLarge {
                    too_large.push((letter.payload.len(), letter.payload_bytes));
                }
                acks.push(ack.expect("QoS 1 carries an ack"));
            }
            Ingested::Replayed(_) | Ingested::Source(_) => {
                unreachable!("the MQTT source replays nothing and has no partitions")
            }
        }
    }
    assert_eq!(too_large, vec![(1024, 70 * 1024)]);
    // Stored in a scrambled order (each index once: 17 and 40 are coprime), as tables
    // with different batch timings would store them.
    let mut acks: Vec<Option<_>> = acks.into_iter().map(Some).collect();
    for k in 0..40 {
        let i = (k * 17 + 5) % 40;
        acks[i].take().unwrap().done();
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (pubacks, connections) = {
        let seen = seen.lock().unwrap();
        (seen.pubacks.clone(), seen.connections)
    };
    let expected: Vec<u16> = (1..=40).collect();
    assert_eq!(pubacks, expected, "PUBACKs in arrival order");
    assert_eq!(connections, 1, "no message cost the connection");
    assert_eq!(metric(&client.registry, "ioc_ingest_reconnects_total"), 0.0);
    assert_eq!(
        metric(&client.registry, "ioc_ingest_mqtt_unacked_messages"),
        0.0
    );
    let _ = client.stop.send(());
    client.task.await.unwrap();
}

#[tokio::test]
async fn a_burst_of_pubacks_larger_than_the_request_queue_reaches_the_broker_in_order() {
    // A spool commit releases every message it made durable at once: here 2,000 PUBACKs
    // into a request queue of 8.
    const MESSAGES: usize = 2_000;
    let messages = (0..MESSAGES)
        .map(|i| (NOW_TOPIC.to_owned(), reading(i)))
        .collect();
    let (mut client, seen) = start(messages, |c| c.request_capacity = 8).await;
    let mut acks = Vec::new();
    while acks.len() < MESSAGES {
        let record = client.next_record().await;
        match record {
            Ingested::Reading(_, ack) => acks.push(ack.expect("QoS 1 carries an ack")),
            other => panic!("a valid reading was not read as one: {other:?}"),
        }
    }
    for ack in acks {
        ack.done();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().pubacks.len() < MESSAGES && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (pubacks, connections) = {
        let seen = seen.lock().unwrap();
        (seen.pubacks.clone(), seen.connections)
    };
    let expected: Vec<u16> = (1..=MESSAGES as u16).collect();
    assert_eq!(pubacks.len(), MESSAGES, "every PUBACK reached the broker");
    assert_eq!(pubacks, expected, "in arrival order");
    assert_eq!(connections, 1);
    assert_eq!(
        metric(&client.registry, "ioc_ingest_ack_failures_total"),
        0.0
    );
    assert_eq!(
        metric(&client.registry, "ioc_ingest_mqtt_unacked_messages"),
        0.0
    );
    let _ = client.stop.send(());
    client.task.await.unwrap();
}

#[tokio::test]
async fn a_packet_over_the_client_limit_is_counted_and_reconnects_back_off() {
    let messages = vec![
        (NOW_TOPIC.to_owned(), reading(1)),
        (NOW_TOPIC.to_owned(), vec![b'x'; 200_000]),
    ];
    let (mut client, seen) = start(messages, |c| {
        c.max_payload_bytes = 1024;
        c.max_packet_bytes = 100_000;
    })
    .await;
    // Each connection delivers the reading, then the packet the client refuses.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let connections = seen.lock().unwrap().connections;
    // 200, 400, 800, 1600 ms between attempts: at most 5 connections in 4 s, where a delay
    // reset at every CONNACK would make about 20.
    assert!(
        (2..=5).contains(&connections),
        "{connections} connections in 4 s"
    );
    let oversized = metric(&client.registry, "ioc_ingest_mqtt_oversized_packets_total");
    assert!(
        oversized >= (connections - 1) as f64 && oversized <= connections as f64,
        "{oversized} oversized packets over {connections} connections"
    );
    let mut readings = 0;
    while let Ok(record) = client.records.try_recv() {
        assert!(matches!(record, Ingested::Reading(..)));
        readings += 1;
    }
    assert!(
        readings >= 2,
        "the reading before the big packet is delivered each time"
    );
    let _ = client.stop.send(());
    client.task.await.unwrap();
}
