//! Webhook delivery against a real HTTP receiver: retries with backoff, restart from the
//! outbox, subscriber isolation, dead letters and redelivery, secret rotation, filters.

#[path = "webhooks_support.rs"]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_alerts::webhooks::{
    webhook_id, AttemptOutcome, DeliveryQuery, DeliveryState, Dispatcher, MemoryAttemptLog,
    SubscriptionFilter, SubscriptionRequest, SubscriptionSpec, WebhookConfig, WebhookError,
};
use ioc_alerts::{Category, Severity};
use ioc_schemas::{Department, District};
use support::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn request(id: &str, url: String, filter: SubscriptionFilter) -> SubscriptionRequest {
    SubscriptionRequest {
        id: Some(id.to_owned()),
        department: Department::DisasterPrevention,
        url,
        filter,
        enabled: true,
        secret: Some(SECRET.to_owned()),
    }
}

async fn open(dir: &TempDir, config: WebhookConfig) -> (Dispatcher, Arc<MemoryAttemptLog>) {
    let log = Arc::new(MemoryAttemptLog::new(10_000));
    let dispatcher = Dispatcher::open(&dir.outbox(), config, log.clone())
        .await
        .unwrap();
    (dispatcher, log)
}

fn assert_signed(received: &[Received], secret: &str) {
    for r in received {
        assert!(r.verifies_with(secret), "bad signature: {r:?}");
        assert!(r.timestamp_is_recent(), "old timestamp: {r:?}");
        assert_eq!(r.content_type, "application/json");
    }
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_fourth_attempt_after_backoff() {
    let dir = TempDir::new("retry");
    let receiver = Receiver::start().await;
    receiver.fail_first(3);
    let config = WebhookConfig {
        backoff_initial_ms: 40,
        backoff_max_ms: 400,
        ..test_config()
    };
    let (dispatcher, log) = open(&dir, config).await;
    dispatcher
        .create_subscription(request(
            "pctt",
            receiver.url("/hook"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();

    let e = flood("flood_warning:gauge-1:1:1");
    assert_eq!(dispatcher.notify(&e).await.unwrap(), 1);
    assert!(
        wait_until(Duration::from_secs(10), || receiver.accepted().len() == 1).await,
        "not delivered: {:?}",
        log.snapshot()
    );

    // The receiver: 4 requests, the same webhook id, every signature valid.
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 500, 500, 200]
    );
    let id = webhook_id(&e.event_id, "pctt");
    assert!(received.iter().all(|r| r.webhook_id == id));
    assert_signed(&received, SECRET);
    let payload = received[3].json();
    assert_eq!(payload["type"], "alert.opened");
    assert_eq!(payload["data"]["event_id"], e.event_id.as_str());
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));

    // The attempt log: 3 retries and 1 delivered, each retry waiting for its backoff.
    assert!(wait_until(Duration::from_secs(2), || log.snapshot().len() == 4).await);
    let attempts = log.snapshot();
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Delivered
        ]
    );
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(500), Some(500), Some(500), Some(200)]
    );
    for (i, pair) in attempts.windows(2).enumerate() {
        let (this, next) = (&pair[0], &pair[1]);
        let due = this.next_attempt_ms.expect("a retry has a next attempt");
        let finished = this.at_ms + this.latency_ms;
        // The delay is drawn from 0..=min(max, initial * 2^(attempt-1)) (full jitter).
        let ceiling = (40u64 << i).min(400);
        assert!(due >= finished, "{this:?}");
        assert!(
            due <= finished + ceiling + 20,
            "attempt {}: {due} > {finished} + {ceiling}",
            i + 1
        );
        // The next attempt waited for it.
        assert!(
            next.at_ms >= due,
            "attempt {} early: {} < {due}",
            i + 2,
            next.at_ms
        );
        assert_eq!(this.webhook_id, id);
        assert!(this.error.as_deref().unwrap().contains("500"));
    }
    assert_eq!(attempts[3].next_attempt_ms, None);
    assert_eq!(attempts[3].error, None);

    let deliveries = dispatcher
        .deliveries(DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(deliveries[0].attempts, 4);
    assert_eq!(deliveries[0].webhook_id, id);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn pending_deliveries_are_delivered_after_a_restart_with_the_same_webhook_id() {
    let dir = TempDir::new("restart");
    // A port with nothing listening: the receiver is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let config = WebhookConfig {
        backoff_initial_ms: 50,
        backoff_max_ms: 200,
        max_attempts: 1_000,
        subscriptions: vec![SubscriptionSpec {
            id: "pctt".into(),
            department: Department::DisasterPrevention,
            url,
            secret: Some(SECRET.into()),
            filter: SubscriptionFilter::default(),
            enabled: true,
        }],
        ..test_config()
    };
    let events: Vec<_> = (1..=3)
        .map(|i| flood(&format!("flood_warning:gauge-{i}:1:1")))
        .collect();
    let expected: BTreeSet<String> = events
        .iter()
        .map(|e| webhook_id(&e.event_id, "pctt"))
        .collect();

    let (first, log) = open(&dir, config.clone()).await;
    for e in &events {
        assert_eq!(first.notify(e).await.unwrap(), 1);
    }
    // Every delivery failed at least once (connection refused) and waits for a retry.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let tried: BTreeSet<String> =
                log.snapshot().into_iter().map(|a| a.webhook_id).collect();
            tried == expected
        })
        .await
    );
    let attempts = log.snapshot();
    assert!(attempts.iter().all(|a| a.outcome == AttemptOutcome::Retry));
    assert!(attempts
        .iter()
        .all(|a| a.status.is_none() && a.error.is_some()));
    let pending = first
        .deliveries(DeliveryQuery {
            state: Some(DeliveryState::Pending),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    // Killed: dropped without shutdown, attempts in flight abandoned.
    drop(first);

    // The receiver comes up on that port; the dispatcher reopens the same file.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::start_on(listener).await;
    let (second, log2) = open(&dir, config).await;
    assert!(
        wait_until(Duration::from_secs(10), || receiver.accepted().len() >= 3).await,
        "not delivered after restart: {:?}",
        log2.snapshot()
    );
    let accepted = receiver.accepted();
    let ids: BTreeSet<String> = accepted.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!(ids, expected, "the same webhook ids as before the restart");
    assert_signed(&receiver.received(), SECRET);
    // The attempt count went on from where it was.
    assert!(wait_until(Duration::from_secs(2), || log2.snapshot().len() >= 3).await);
    for a in log2
        .snapshot()
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Delivered)
    {
        assert!(a.attempt >= 2, "{a:?}");
    }
    let delivered = second
        .deliveries(DeliveryQuery {
            state: Some(DeliveryState::Delivered),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 3);

    // After a graceful shutdown nothing new is taken.
    second.shutdown().await;
    assert!(matches!(
        second.notify(&flood("late:1:1:1")).await,
        Err(WebhookError::ShuttingDown)
    ));
}

/// Notifies `n` events 15 ms apart and returns, per event, the time from `notify` to the
/// healthy receiver's arrival, ms.
async fn healthy_latencies(
    dispatcher: &Dispatcher,
    healthy: &Receiver,
    tag: &str,
    n: usize,
) -> Vec<f64> {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    for i in 0..n {
        let e = flood(&format!("{tag}:{i}"));
        sent.insert(e.event_id.clone(), Instant::now());
        dispatcher.notify(&e).await.unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(
        wait_until(Duration::from_secs(10), || healthy.accepted().len() >= n).await,
        "the healthy receiver got {} of {n}",
        healthy.accepted().len()
    );
    let mut latencies: Vec<f64> = healthy
        .accepted()
        .iter()
        .map(|r| (r.at - sent[&r.event_id()]).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_the_other_subscribers() {
    const N: usize = 20;
    let config = WebhookConfig {
        request_timeout_ms: 5_000,
        ..test_config()
    };

    // Baseline: the healthy subscriber alone.
    let dir_a = TempDir::new("isolation-a");
    let healthy_a = Receiver::start().await;
    let (alone, _) = open(&dir_a, config.clone()).await;
    alone
        .create_subscription(request(
            "healthy",
            healthy_a.url("/ok"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    let baseline = healthy_latencies(&alone, &healthy_a, "a", N).await;
    alone.shutdown().await;

    // The same, beside a subscriber whose endpoint accepts and never answers, and one whose
    // port refuses connections.
    let dir_b = TempDir::new("isolation-b");
    let healthy_b = Receiver::start().await;
    let dead = Receiver::start().await;
    dead.set_mode(HANG);
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (beside, log) = open(&dir_b, config).await;
    beside
        .create_subscription(request(
            "hanging",
            dead.url("/never"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    beside
        .create_subscription(request(
            "refusing",
            format!("http://127.0.0.1:{refused_port}/x"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    beside
        .create_subscription(request(
            "healthy",
            healthy_b.url("/ok"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    let with_dead = healthy_latencies(&beside, &healthy_b, "b", N).await;

    // The dead endpoint was really being tried (and is holding its attempts), and nothing of
    // it was delivered.
    assert!(dead.count() >= 1);
    let stuck = beside
        .deliveries(DeliveryQuery {
            state: Some(DeliveryState::Pending),
            subscription: Some("hanging".into()),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(stuck.len(), N);
    assert!(log
        .snapshot()
        .iter()
        .any(|a| a.subscription_id == "refusing" && a.outcome == AttemptOutcome::Retry));

    let (m_a, m_b) = (median(&baseline), median(&with_dead));
    let (max_a, max_b) = (baseline[N - 1], with_dead[N - 1]);
    println!("healthy latency ms: alone median {m_a:.1} max {max_a:.1}; beside dead median {m_b:.1} max {max_b:.1}");
    // Generous bounds: the same order as alone, and far below the dead endpoint's 5 s timeout
    // that a shared queue would have made them wait for.
    assert!(
        m_b <= m_a * 3.0 + 50.0,
        "median {m_b:.1} ms vs {m_a:.1} ms alone"
    );
    assert!(
        max_b < 2_500.0,
        "max {max_b:.1} ms: held up by the dead endpoint (5 s timeout)"
    );
    // The healthy receiver got each event once, signed.
    assert_eq!(healthy_b.received().len(), N);
    assert_signed(&healthy_b.received(), SECRET);
    drop(beside);
}

#[tokio::test]
async fn max_attempts_dead_letters_and_redelivery_keeps_the_webhook_id() {
    let dir = TempDir::new("dead");
    let receiver = Receiver::start().await;
    receiver.set_mode(FAIL);
    let config = WebhookConfig {
        max_attempts: 3,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        ..test_config()
    };
    let (dispatcher, log) = open(&dir, config).await;
    let registry = prometheus::Registry::new();
    dispatcher.register_metrics(&registry).unwrap();
    dispatcher
        .create_subscription(request(
            "pctt",
            receiver.url("/hook"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    let e = flood("flood_warning:gauge-9:1:1");
    dispatcher.notify(&e).await.unwrap();

    let dead_query = DeliveryQuery {
        state: Some(DeliveryState::Dead),
        ..DeliveryQuery::default()
    };
    let mut dead = Vec::new();
    for _ in 0..500 {
        dead = dispatcher.deliveries(dead_query.clone()).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1, "not dead-lettered: {:?}", log.snapshot());
    let d = &dead[0];
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status, Some(500));
    assert_eq!(d.next_attempt_ms, None);
    assert_eq!(receiver.count(), 3);
    // The attempt is logged right after its outcome is committed.
    assert!(wait_until(Duration::from_secs(2), || log.snapshot().len() == 3).await);
    assert_eq!(
        log.snapshot().iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![
            AttemptOutcome::Retry,
            AttemptOutcome::Retry,
            AttemptOutcome::Dead
        ]
    );
    // No more attempts once dead.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(receiver.count(), 3);

    // Redelivered by hand once the receiver works.
    receiver.set_mode(OK);
    let again = dispatcher.redeliver(d.id).await.unwrap();
    assert_eq!(again.state, DeliveryState::Pending);
    assert_eq!(again.attempts, 0);
    assert_eq!(again.redeliveries, 1);
    assert!(matches!(
        dispatcher.redeliver(d.id).await,
        Err(WebhookError::Conflict(_)) | Ok(_)
    ));
    assert!(wait_until(Duration::from_secs(5), || receiver.accepted().len() == 1).await);
    let received = receiver.received();
    let id = webhook_id(&e.event_id, "pctt");
    assert!(
        received.iter().all(|r| r.webhook_id == id),
        "same webhook id"
    );
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "same body"
    );
    assert_signed(&received, SECRET);
    assert!(wait_until(Duration::from_secs(2), || log.snapshot().len() == 4).await);
    let last = log.snapshot().pop().unwrap();
    assert_eq!((last.outcome, last.attempt), (AttemptOutcome::Delivered, 1));
    let (delivered, _) = dispatcher.delivery(d.id).await.unwrap();
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert!(matches!(
        dispatcher.redeliver(999_999).await,
        Err(WebhookError::NotFound { .. })
    ));

    // The metrics.
    let text = {
        let families = registry.gather();
        let mut out = String::new();
        for f in families {
            for m in f.get_metric() {
                let labels: Vec<String> = m
                    .get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect();
                let value = if f.name().ends_with("_total") {
                    m.get_counter().get_value()
                } else if f.name().ends_with("_seconds") {
                    m.get_histogram().get_sample_count() as f64
                } else {
                    m.get_gauge().get_value()
                };
                out.push_str(&format!("{}{{{}}} {value}\n", f.name(), labels.join(",")));
            }
        }
        out
    };
    assert!(text.contains("ioc_alerts_webhook_dead_total{} 1"), "{text}");
    assert!(
        text.contains("ioc_alerts_webhook_attempts_total{outcome=retry} 2"),
        "{text}"
    );
    assert!(
        text.contains("ioc_alerts_webhook_attempts_total{outcome=dead} 1"),
        "{text}"
    );
    assert!(
        text.contains("ioc_alerts_webhook_attempts_total{outcome=delivered} 1"),
        "{text}"
    );
    assert!(text.contains("ioc_alerts_webhook_pending{} 0"), "{text}");
    assert!(
        text.contains("ioc_alerts_webhook_latency_seconds{} 4"),
        "{text}"
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn during_the_grace_period_either_secret_verifies() {
    let dir = TempDir::new("rotate");
    let receiver = Receiver::start().await;
    let config = WebhookConfig {
        secret_grace_s: 1,
        ..test_config()
    };
    let (dispatcher, _) = open(&dir, config).await;
    dispatcher
        .create_subscription(request(
            "pctt",
            receiver.url("/hook"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();

    dispatcher.notify(&flood("e:1")).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || receiver.accepted().len() == 1).await);

    let rotated = dispatcher.rotate_secret("pctt").await.unwrap();
    let new = rotated.secret.clone();
    assert!(new.starts_with("whsec_") && new != SECRET);
    assert!(rotated.previous_secret_expires_ms.is_some());
    let shown = serde_json::to_string(&dispatcher.subscription("pctt").unwrap()).unwrap();
    assert!(
        !shown.contains(&new[6..]) && !shown.contains(&SECRET[6..]),
        "{shown}"
    );
    dispatcher.notify(&flood("e:2")).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || receiver.accepted().len() == 2).await);

    // Past the grace period only the new secret signs.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    dispatcher.notify(&flood("e:3")).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || receiver.accepted().len() == 3).await);

    let by_event: HashMap<String, Received> = receiver
        .accepted()
        .into_iter()
        .map(|r| (r.event_id(), r))
        .collect();
    let (r1, r2, r3) = (&by_event["e:1"], &by_event["e:2"], &by_event["e:3"]);
    for r in [r1, r2, r3] {
        assert!(r.timestamp_is_recent());
    }
    assert!(r1.verifies_with(SECRET) && !r1.verifies_with(&new));
    assert_eq!(r1.signature.split(' ').count(), 1);
    // During the grace period: `v1,<new> v1,<old>`, and a receiver holding either verifies.
    assert_eq!(r2.signature.split(' ').count(), 2);
    assert!(r2.verifies_with(SECRET), "old secret during grace");
    assert!(r2.verifies_with(&new), "new secret during grace");
    let first = r2.signature.split(' ').next().unwrap();
    assert!(verify(&new, &r2.webhook_id, &r2.timestamp, &r2.body, first));
    assert_eq!(r3.signature.split(' ').count(), 1);
    assert!(r3.verifies_with(&new) && !r3.verifies_with(SECRET));
    assert_eq!(
        dispatcher
            .subscription("pctt")
            .unwrap()
            .previous_secret_expires_ms,
        None
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn filters_select_the_right_subscriptions() {
    let dir = TempDir::new("filters");
    let receiver = Receiver::start().await;
    let (dispatcher, _) = open(&dir, test_config()).await;
    let subs = [
        (
            "traffic",
            SubscriptionFilter {
                categories: vec![Category::Traffic],
                ..SubscriptionFilter::default()
            },
            true,
        ),
        (
            "severe",
            SubscriptionFilter {
                min_severity: Some(Severity::Major),
                ..SubscriptionFilter::default()
            },
            true,
        ),
        (
            "hai-chau",
            SubscriptionFilter {
                districts: vec![District::HaiChau],
                include_citywide: false,
                ..SubscriptionFilter::default()
            },
            true,
        ),
        (
            "floods",
            SubscriptionFilter {
                rules: vec!["flood_*".into()],
                ..SubscriptionFilter::default()
            },
            true,
        ),
        ("everything", SubscriptionFilter::default(), true),
        ("disabled", SubscriptionFilter::default(), false),
    ];
    for (id, filter, enabled) in subs {
        let mut req = request(id, receiver.url(&format!("/{id}")), filter);
        req.enabled = enabled;
        dispatcher.create_subscription(req).await.unwrap();
    }

    let cases = [
        (
            event(
                "congestion:j1:1:1",
                "congestion",
                Category::Traffic,
                Severity::Warning,
                Some(District::SonTra),
                Department::Transport,
            ),
            vec!["everything", "traffic"],
        ),
        (
            event(
                "aqi_high:s1:1:1",
                "aqi_high",
                Category::AirQuality,
                Severity::Critical,
                Some(District::HaiChau),
                Department::Environment,
            ),
            vec!["everything", "hai-chau", "severe"],
        ),
        (
            event(
                "flood_warning:city:1:1",
                "flood_warning",
                Category::Flood,
                Severity::Major,
                None,
                Department::DisasterPrevention,
            ),
            vec!["everything", "floods", "severe"],
        ),
        (
            event(
                "flood_watch:g1:1:1",
                "flood_watch",
                Category::Flood,
                Severity::Info,
                Some(District::HoaVang),
                Department::DisasterPrevention,
            ),
            vec!["everything", "floods"],
        ),
    ];
    let mut total = 0;
    for (e, expected) in &cases {
        assert_eq!(
            dispatcher.notify(e).await.unwrap(),
            expected.len(),
            "{}",
            e.event_id
        );
        total += expected.len();
    }
    // Not to be notified, and notified twice: nothing new.
    let mut quiet = flood("flood_warning:g2:1:1");
    quiet.notify = false;
    assert_eq!(dispatcher.notify(&quiet).await.unwrap(), 0);
    assert_eq!(dispatcher.notify(&cases[0].0).await.unwrap(), 0);

    let deliveries = dispatcher
        .deliveries(DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(deliveries.len(), total);
    for (e, expected) in &cases {
        let mut got: Vec<&str> = deliveries
            .iter()
            .filter(|d| d.event_id == e.event_id)
            .map(|d| d.subscription_id.as_str())
            .collect();
        got.sort();
        assert_eq!(&got, expected, "{}", e.event_id);
    }
    // And the receiver got exactly those, at each subscription's URL.
    assert!(
        wait_until(Duration::from_secs(5), || receiver.accepted().len()
            == total)
        .await
    );
    let mut paths: Vec<(String, String)> = receiver
        .accepted()
        .iter()
        .map(|r| (r.event_id(), r.path.clone()))
        .collect();
    paths.sort();
    let mut expected_paths: Vec<(String, String)> = cases
        .iter()
        .flat_map(|(e, subs)| subs.iter().map(|s| (e.event_id.clone(), format!("/{s}"))))
        .collect();
    expected_paths.sort();
    assert_eq!(paths, expected_paths);
    assert_signed(&receiver.received(), SECRET);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_leaves_deliveries_in_the_outbox_and_concurrency_is_capped() {
    let dir = TempDir::new("spill");
    let receiver = Receiver::start().await;
    receiver.set_mode(HANG);
    let config = WebhookConfig {
        per_subscriber_queue: 2,
        per_subscriber_concurrency: 2,
        request_timeout_ms: 400,
        backoff_initial_ms: 10,
        backoff_max_ms: 20,
        max_attempts: 100,
        ..test_config()
    };
    let (dispatcher, _) = open(&dir, config).await;
    let registry = prometheus::Registry::new();
    dispatcher.register_metrics(&registry).unwrap();
    dispatcher
        .create_subscription(request(
            "pctt",
            receiver.url("/hook"),
            SubscriptionFilter::default(),
        ))
        .await
        .unwrap();
    let events: Vec<_> = (0..12).map(|i| flood(&format!("spill:{i}"))).collect();
    for e in &events {
        assert_eq!(dispatcher.notify(e).await.unwrap(), 1);
    }
    // Two attempts hang; no third starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 2);
    let overflow = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "ioc_alerts_webhook_queue_overflow_total")
        .map(|f| f.get_metric()[0].get_counter().get_value())
        .unwrap();
    assert!(overflow >= 1.0, "the queue of 2 overflowed into the outbox");

    // The endpoint recovers: everything is delivered, read back from the outbox.
    receiver.set_mode(OK);
    assert!(
        wait_until(Duration::from_secs(10), || receiver.accepted().len() >= 12).await,
        "{} of 12",
        receiver.accepted().len()
    );
    let ids: BTreeSet<String> = receiver
        .accepted()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    let expected: BTreeSet<String> = events
        .iter()
        .map(|e| webhook_id(&e.event_id, "pctt"))
        .collect();
    assert_eq!(ids, expected);
    assert_signed(&receiver.received(), SECRET);
    dispatcher.shutdown().await;
}
