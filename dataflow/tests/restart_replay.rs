//! After a restart, a reading the source delivers again is a repeat of its replayed copy:
//! counted once, never flagged late. The replay itself does not move the watermark: a reading
//! the sources had not yet delivered is judged against what the sources deliver, as an
//! unbroken run would judge it.

use std::sync::Arc;

use ioc_dataflow::{Collected, DataflowConfig, DataflowMetrics, ManualClock, RunOptions};
use ioc_schemas::{
    Body, District, EventTime, Ingested, IngestedReading, Reading, SensorBody, Transport,
};

const BASE: u64 = 1_795_827_600_000;

fn reading(id: &str, t: u64) -> IngestedReading {
    IngestedReading {
        reading: Reading {
            message_id: id.into(),
            device_id: "gauge".into(),
            event_time: EventTime(t),
            body: Body::Sensor(SensorBody {
                metric: "water_level_m".into(),
                value: 1.0,
                unit: "m".into(),
            }),
        },
        district: District::SonTra,
        transport: Transport::Kafka,
        source: "ioc.sensor/0@7".into(),
        received_at_ms: t,
        payload: String::new(),
    }
}

#[test]
fn a_redelivered_reading_is_a_repeat_not_late() {
    let config = DataflowConfig {
        allowed_lateness_ms: 10_000,
        ..DataflowConfig::default()
    };
    let seen = Collected::default();
    let clock = Arc::new(ManualClock::new(BASE));
    let (tx, rx) = ioc_dataflow::Feed::new(ioc_dataflow::Topology::single(config.workers), 10);
    let handle = ioc_dataflow::spawn(
        config,
        RunOptions::default(),
        rx,
        ioc_dataflow::RegistryFeed::fixed(Vec::new()),
        seen.clone(),
        DataflowMetrics::new(&prometheus::Registry::new()).unwrap(),
        clock.clone(),
    )
    .unwrap();
    // The replay: two stored readings, up to 400 s.
    tx.blocking_send(Ingested::Replayed(reading("early", BASE + 100_000)))
        .unwrap();
    tx.blocking_send(Ingested::Replayed(reading("newest", BASE + 400_000)))
        .unwrap();
    // Let the replay be taken.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The source gets to the early one again (it was stored but not committed) long after the
    // restart, behind a backlog, with a new reading just as old.
    clock.advance(3_600_000);
    tx.blocking_send(Ingested::Reading(reading("early", BASE + 100_000), None))
        .unwrap();
    tx.blocking_send(Ingested::Reading(reading("unseen", BASE + 100_000), None))
        .unwrap();
    // The source moves on to 400 s (watermark 390 s): now a reading at 100 s is late.
    tx.blocking_send(Ingested::Reading(reading("live", BASE + 400_000), None))
        .unwrap();
    tx.blocking_send(Ingested::Reading(reading("too-late", BASE + 100_000), None))
        .unwrap();
    drop(tx);
    handle.join().unwrap();
    let emitted = seen.emitted();
    let ids = |readings: &mut dyn Iterator<Item = &IngestedReading>| -> Vec<String> {
        readings.map(|r| r.reading.message_id.clone()).collect()
    };
    assert_eq!(ids(&mut emitted.duplicates.iter()), ["early"]);
    let late = &mut emitted
        .raw
        .iter()
        .filter(|(_, late)| late.is_some())
        .map(|(r, _)| r);
    assert_eq!(ids(late), ["too-late"]);
}
