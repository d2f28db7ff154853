//! The history routes over a [`HistorySource`] the test controls: rows from the source when
//! it answers, from memory while it is unavailable or not reached yet, `503` when it fails
//! for good and `400` when it refuses the query; the query the API hands it.

mod common;

use std::sync::{Arc, Mutex};

use common::{http_get, Server};
use ioc_dashboard_api::{
    ApiState, DeadLetterQuery, HistoryError, HistoryFuture, HistorySource, KpiHistoryQuery,
};
use ioc_schemas::{
    AqiBand, AqiKpi, AqiPeriod, DeadLetter, District, Kpi, KpiFamily, RejectCode, Rejection,
    Transport,
};

/// How the fake source answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Answer,
    Unavailable,
    BadQuery,
    Failed,
}

#[derive(Debug)]
struct Fake {
    mode: Mutex<Mode>,
    kpi_queries: Mutex<Vec<KpiHistoryQuery>>,
    letter_queries: Mutex<Vec<DeadLetterQuery>>,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            mode: Mutex::new(Mode::Answer),
            kpi_queries: Mutex::default(),
            letter_queries: Mutex::default(),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn fail<T>(&self) -> Option<Result<T, HistoryError>> {
        // A cause with a cause of its own: the API shows the whole chain.
        let cause = || {
            Box::new(Chained(
                "clickhouse reading kpi_aqi",
                Cause("connection refused"),
            ))
        };
        match *self.mode.lock().unwrap() {
            Mode::Answer => None,
            Mode::Unavailable => Some(Err(HistoryError::Unavailable(cause()))),
            Mode::BadQuery => Some(Err(HistoryError::BadQuery("no such filter".into()))),
            Mode::Failed => Some(Err(HistoryError::Failed("unreadable row".into()))),
        }
    }
}

/// An error whose message does not repeat its cause.
#[derive(Debug)]
struct Chained(&'static str, Cause);

impl std::fmt::Display for Chained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Chained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

#[derive(Debug)]
struct Cause(&'static str);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Cause {}

impl HistorySource for Fake {
    fn kpi_history<'a>(&'a self, query: &'a KpiHistoryQuery) -> HistoryFuture<'a, Vec<Kpi>> {
        Box::pin(async move {
            self.kpi_queries.lock().unwrap().push(query.clone());
            if let Some(failed) = self.fail() {
                return failed;
            }
            Ok(vec![air("stored-1", query.from_ms, 70)])
        })
    }

    fn dead_letters<'a>(
        &'a self,
        query: &'a DeadLetterQuery,
    ) -> HistoryFuture<'a, Vec<DeadLetter>> {
        Box::pin(async move {
            self.letter_queries.lock().unwrap().push(*query);
            if let Some(failed) = self.fail() {
                return failed;
            }
            Ok(vec![DeadLetter::new(
                5,
                Transport::Kafka,
                "readings/0@7".into(),
                b"{oops",
                Rejection::new(RejectCode::MalformedJson, "expected value"),
            )])
        })
    }
}

fn air(station: &str, start: u64, aqi: u32) -> Kpi {
    Kpi::Air(AqiKpi {
        station_id: station.into(),
        district: District::SonTra,
        period: AqiPeriod::Hour,
        window_start_ms: start,
        window_size_ms: 3_600_000,
        pm25: Some(30.0),
        pm10: None,
        o3: None,
        no2: None,
        so2: None,
        co: None,
        o3_8h: None,
        aqi_pm25: Some(aqi),
        aqi_pm10: None,
        aqi_o3: None,
        aqi_no2: None,
        aqi_so2: None,
        aqi_co: None,
        aqi: Some(aqi),
        dominant: Some("pm25".into()),
        band: Some(AqiBand::Moderate),
        colour: Some("#ffff00".into()),
        advice: None,
        coverage: 12,
    })
}

const T0: u64 = 1_795_827_600_000;

#[tokio::test]
async fn history_comes_from_the_source_or_memory_as_it_answers() -> anyhow::Result<()> {
    let state = ApiState::new(&common::open_config(), prometheus::Registry::new())?;
    state.feed().publish_kpi(air("live-1", T0, 40));
    state.feed().publish_dead_letter(&DeadLetter::new(
        3,
        Transport::Mqtt,
        "ioc/v1/sensor/hai_chau/x".into(),
        b"\xff",
        Rejection::new(RejectCode::InvalidUtf8, "not utf-8"),
    ));
    state.expect_history_store();
    let server = Server::serve_state(state.clone()).await?;
    let kpis = format!(
        "/api/v1/kpis/air?from={T0}&to={}&entity=x&district=son_tra&window_size_ms=3600000&limit=5",
        T0 + 3_600_000
    );

    // Expected but not reached: memory, saying so.
    let answer = http_get(server.addr, &kpis).await?.json()?;
    assert_eq!(answer["source"], "memory", "{answer}");
    assert!(answer["note"]
        .as_str()
        .is_some_and(|n| n.starts_with("ClickHouse is not reached yet: ")));
    let letters = http_get(server.addr, "/api/v1/dead-letters")
        .await?
        .json()?;
    assert_eq!(letters["source"], "memory", "{letters}");
    assert!(letters["note"]
        .as_str()
        .is_some_and(|n| n.starts_with("ClickHouse is not reached yet: ")));

    // Reached: the source's rows, no note, and the query as the request asked it.
    let fake = Fake::new();
    state.set_history_source(fake.clone());
    let answer = http_get(server.addr, &kpis).await?.json()?;
    assert_eq!(answer["source"], "clickhouse", "{answer}");
    assert!(answer.get("note").is_none(), "{answer}");
    assert_eq!(answer["rows"][0]["station_id"], "stored-1");
    assert_eq!(
        (answer["count"].as_u64(), &answer["truncated"]),
        (Some(1), &false.into())
    );
    assert_eq!(
        fake.kpi_queries.lock().unwrap().last(),
        Some(&KpiHistoryQuery {
            family: KpiFamily::Air,
            from_ms: T0,
            to_ms: T0 + 3_600_000,
            entity: Some("x".into()),
            district: Some(District::SonTra),
            scope: None,
            window_size_ms: Some(3_600_000),
            limit: 5,
        })
    );
    let letters = http_get(
        server.addr,
        "/api/v1/dead-letters?code=malformed_json&transport=kafka&before=10&limit=2",
    )
    .await?
    .json()?;
    assert_eq!(letters["source"], "clickhouse", "{letters}");
    assert_eq!(letters["dead_letters"][0]["source"], "readings/0@7");
    assert_eq!(letters["dead_letters"][0]["first_bytes"], "{oops");
    assert_eq!(
        fake.letter_queries.lock().unwrap().last(),
        Some(&DeadLetterQuery {
            code: Some(RejectCode::MalformedJson),
            transport: Some(Transport::Kafka),
            before_ms: Some(10),
            limit: 2,
        })
    );

    // Unavailable: memory again, the note naming the whole cause.
    fake.set(Mode::Unavailable);
    let answer = http_get(server.addr, &kpis).await?.json()?;
    assert_eq!(answer["source"], "memory", "{answer}");
    let note = answer["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(
            "ClickHouse is unavailable (clickhouse reading kpi_aqi: connection refused): "
        ),
        "{note}"
    );
    let letters = http_get(server.addr, "/api/v1/dead-letters")
        .await?
        .json()?;
    assert_eq!(letters["source"], "memory", "{letters}");
    assert_eq!(letters["dead_letters"][0]["code"], "invalid_utf8");

    // Failed for good: 503; a query the source refuses: 400.
    fake.set(Mode::Failed);
    let failed = http_get(server.addr, &kpis).await?;
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert_eq!(failed.header("cache-control"), Some("no-store"));
    assert_eq!(
        failed.json()?,
        serde_json::json!({"error": {"code": "unavailable",
            "message": "cannot read kpi history: unreadable row"}})
    );
    fake.set(Mode::BadQuery);
    let refused = http_get(server.addr, "/api/v1/dead-letters").await?;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        refused.json()?,
        serde_json::json!({"error": {"code": "invalid_query",
            "message": "cannot read dead letters: no such filter"}})
    );
    server.shutdown().await
}
