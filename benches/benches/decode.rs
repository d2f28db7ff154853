//! Decoding and validating one reading of each kind (about 200 bytes of JSON each).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ioc_ingest::decode_reading;
use ioc_schemas::ValidationLimits;

const NOW: u64 = 1_795_827_600_000;

const PAYLOADS: [(&str, &str); 4] = [
    (
        "sensor",
        r#"{"message_id":"rain-cam_le-03-000042","device_id":"rain-cam_le-03","event_time":"2026-11-28T08:00:00+07:00","kind":"sensor","body":{"metric":"rainfall_mm","value":2.5,"unit":"mm"}}"#,
    ),
    (
        "traffic_signal",
        r#"{"message_id":"tsc-hai_chau-001-000042","device_id":"tsc-hai_chau-001","event_time":1795827600000,"kind":"traffic_signal","body":{"junction_id":"tsc-hai_chau-001","state":"green","mode":"adaptive","approaches":[{"approach":"north","vehicles":12,"occupancy_pct":23.5,"mean_speed_kmh":31.2,"queue_length_m":18.0},{"approach":"south","vehicles":9,"occupancy_pct":17.0,"mean_speed_kmh":35.0,"queue_length_m":6.0}]}}"#,
    ),
    (
        "camera_event",
        r#"{"message_id":"cam-thanh_khe-017-000042","device_id":"cam-thanh_khe-017","event_time":"2026-11-28T01:00:00Z","kind":"camera_event","body":{"camera_id":"cam-thanh_khe-017","event_type":"red_light_violation","confidence":0.93,"plate":"43A-123.45","lane":2}}"#,
    ),
    (
        "environment",
        r#"{"message_id":"aq-son_tra-000042","device_id":"aq-son_tra","event_time":1795827600000,"kind":"environment","body":{"station_id":"aq-son_tra","medium":"air","measurements":{"pm25":38.2,"pm10":61.0,"o3":45.0,"no2":22.1,"so2":8.0,"co":900.0}}}"#,
    ),
];

fn decode(c: &mut Criterion) {
    let limits = ValidationLimits::default();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (kind, payload) in PAYLOADS {
        assert!(decode_reading(payload.as_bytes(), 65_536, NOW, &limits).is_ok());
        group.bench_function(kind, |b| {
            b.iter(|| {
                decode_reading(
                    std::hint::black_box(payload.as_bytes()),
                    65_536,
                    NOW,
                    &limits,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
