//! The spool against the real ClickHouse on 127.0.0.1:8123: rows appended are acknowledged
//! once on disk, drained into ClickHouse in full, deleted from the spool once inserted, and a
//! spool left by a stopped run is drained by the next one without inserting anything twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use ioc_schemas::{
    Ack, Body, DeadLetter, District, EventTime, Feed, Ingested, IngestedReading, Reading,
    RejectCode, Rejection, SensorBody, Topology, Transport,
};
use ioc_store::{
    ClickHouseConfig, DeadLetterRow, DecodeStored, ReadingRow, Spool, SpoolConfig, SpoolMetrics,
    SpoolRow, Store, StoreMetrics,
};
use prometheus::Registry;
use tokio::sync::watch;

const T0: u64 = 1_795_827_600_000;

fn ingested(i: u64) -> IngestedReading {
    let reading = Reading {
        message_id: format!("m{i}"),
        device_id: format!("gauge-{}", i % 7),
        event_time: EventTime(T0 + i * 10),
        body: Body::Sensor(SensorBody {
            metric: "water_level_m".into(),
            value: i as f64 / 8.0,
            unit: "m".into(),
        }),
    };
    let payload = serde_json::to_string(&reading).expect("a reading serialises");
    IngestedReading {
        source: "ioc/v1/sensor/son_tra/x".into(),
        reading,
        district: District::SonTra,
        transport: Transport::Mqtt,
        received_at_ms: T0 + i * 10 + 5,
        payload,
    }
}

fn reading(i: u64) -> SpoolRow {
    SpoolRow::Reading(ReadingRow::new(&ingested(i), false))
}

fn dead_letter(i: u64) -> SpoolRow {
    SpoolRow::DeadLetter(DeadLetterRow::from(&DeadLetter::new(
        T0 + i,
        Transport::Kafka,
        format!("ioc.sensor/0@{i}"),
        b"{not json",
        Rejection::new(
            RejectCode::MalformedJson,
            "expected value at line 1 column 2",
        ),
    )))
}

fn open(dir: &std::path::Path) -> Result<Spool> {
    Ok(Spool::open(
        dir,
        &SpoolConfig {
            drain_batch_rows: 300,
            ..SpoolConfig::default()
        },
        SpoolMetrics::new(&Registry::new())?,
    )?)
}

async fn counts(client: &clickhouse::Client) -> (u64, u64, u64) {
    let (rows, ids): (u64, u64) = client
        .query("SELECT count(), uniqExact(message_id) FROM readings")
        .fetch_one()
        .await
        .unwrap_or((0, 0));
    let dead: u64 = client
        .query("SELECT count() FROM dead_letters")
        .fetch_one()
        .await
        .unwrap_or(0);
    (rows, ids, dead)
}

/// Drains `spool` into `store` until every row is in, then stops the drain and the writers.
async fn drain_all(spool: &Spool, store: &Store) -> Result<()> {
    let (writers, tasks) = store.writers();
    let (stop, stop_rx) = watch::channel(false);
    let (caught_up, mut caught_up_rx) = watch::channel(false);
    let drain = tokio::spawn({
        let spool = spool.clone();
        async move { spool.drain(writers, stop_rx, caught_up).await }
    });
    tokio::time::timeout(Duration::from_secs(30), caught_up_rx.wait_for(|c| *c)).await??;
    stop.send_replace(true);
    drain.await?;
    tasks.join().await?;
    spool.deleted().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_rows_reach_clickhouse_once_across_a_restart() -> Result<()> {
    let cfg = ClickHouseConfig {
        database: format!("ioc_test_spool_{}", std::process::id()),
        batch_max_wait_ms: 50,
        batch_max_rows: 250,
        ..ClickHouseConfig::default()
    };
    let store = Store::connect(cfg.clone(), StoreMetrics::new(&Registry::new())?).await?;
    let client = store.client().clone();
    let dir = std::env::temp_dir().join(format!("ioc-spool-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // A first run spools 2,000 readings and 10 dead letters; every ack fires once they are
    // on disk, with nothing in ClickHouse yet.
    let acked = Arc::new(AtomicUsize::new(0));
    let spool = open(&dir)?;
    for i in 0..2_000 {
        let acked = Arc::clone(&acked);
        let ack = Ack::new(move || {
            acked.fetch_add(1, Ordering::SeqCst);
        });
        spool.append(&reading(i), Some(ack));
        if i % 200 == 0 {
            spool.append(&dead_letter(i), None);
        }
    }
    spool.close().await;
    ensure!(acked.load(Ordering::SeqCst) == 2_000, "acks on commit");
    ensure!(counts(&client).await == (0, 0, 0), "nothing inserted yet");
    ensure!(spool.backlog().rows == 2_010);
    spool.shutdown().await;

    // The next run finds them and drains them; the spool is then empty.
    let spool = open(&dir)?;
    ensure!(spool.backlog().rows == 2_010, "left by the last run");
    drain_all(&spool, &store).await?;
    ensure!(
        counts(&client).await == (2_000, 2_000, 10),
        "{:?}",
        counts(&client).await
    );
    ensure!(spool.backlog().rows == 0 && spool.backlog().bytes == 0);
    spool.shutdown().await;

    // A third run has nothing to insert: the plain MergeTree of dead letters shows no repeat.
    let spool = open(&dir)?;
    ensure!(spool.backlog().rows == 0, "nothing left after the drain");
    drain_all(&spool, &store).await?;
    ensure!(counts(&client).await == (2_000, 2_000, 10));
    spool.shutdown().await;

    client
        .query(&format!("DROP DATABASE IF EXISTS {}", cfg.database))
        .execute()
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_is_acknowledged_with_its_ledger_row_and_on_time_ones_replay() -> Result<()>
{
    let dir = std::env::temp_dir().join(format!("ioc-spool-late-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = open(&dir)?;
    let acked = Arc::new(AtomicUsize::new(0));
    let ack = || {
        let acked = Arc::clone(&acked);
        Some(Ack::new(move || {
            acked.fetch_add(1, Ordering::SeqCst);
        }))
    };
    spool.append_reading(ingested(1), None, ack());
    spool.append_reading(ingested(2), Some(T0 + 1_000), ack());
    let mut broken = ingested(3);
    broken.payload = "{}".into();
    spool.append_reading(broken, None, ack());
    spool.close().await;
    ensure!(acked.load(Ordering::SeqCst) == 3, "every ack called once");
    ensure!(
        spool.backlog().rows == 4,
        "three raw rows and one ledger row: {:?}",
        spool.backlog()
    );
    // The late reading is in no window and the broken one no longer decodes: one replay.
    // Decoded as ingest does, by the envelope's serde (ingest is not a dependency here).
    let decode: DecodeStored = |payload| {
        serde_json::from_str(payload)
            .map_err(|e| Rejection::new(RejectCode::MalformedJson, e.to_string()))
    };
    let (tx, queues) = Feed::new(Topology::single(1), 16);
    let mut rx = queues.queues.into_iter().next().expect("one queue");
    ensure!(spool.feed_readings(0, &tx, decode).await? == 1);
    drop(tx);
    match rx.recv().await {
        Some(Ingested::Replayed(r)) => ensure!(r.reading == ingested(1).reading),
        other => anyhow::bail!("expected the first reading replayed, got {other:?}"),
    }
    ensure!(rx.recv().await.is_none());
    // A dataflow that has gone ends the replay with an error.
    let (tx, queues) = Feed::new(Topology::single(1), 16);
    drop(queues);
    let e = spool.feed_readings(0, &tx, decode).await.unwrap_err();
    ensure!(
        e.to_string() == "the dataflow stopped while replaying",
        "{e}"
    );
    spool.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
