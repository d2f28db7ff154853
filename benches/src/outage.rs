//! `--transport outage`: the spool's drain rate. iocd reaches ClickHouse through a TCP relay
//! of this process; the relay is cut for `--outage-s` while MQTT readings arrive at `--rate`
//! a second (QoS 1, acknowledged once spooled), then restored, and the time until ClickHouse
//! holds every reading gives the drain rate. Peak RSS (this process: iocd runs in it) and the
//! spool file's size are reported.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ioc_simulator::{Fleet, Generator, SimulatorConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{rss_kib, Args, Pipeline};

/// A TCP relay to `upstream` that can be cut: while cut, open connections are closed and new
/// ones are dropped at once, as a stopped server's would be.
async fn relay(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if *cut.borrow() {
            drop(inbound);
            continue;
        }
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|c| *c) => {}
            }
        });
    }
}

fn host_port(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .context("the ClickHouse URL must be http://host:port")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .context("the ClickHouse URL names no address")
}

/// A spool metric from the pipeline's `/metrics`.
async fn spool(pipeline: &Pipeline, name: &str) -> f64 {
    pipeline.gauge(&format!("ioc_store_spool_{name}")).await
}

#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: &Args, run: &str) -> anyhow::Result<()> {
    let upstream = host_port(&args.clickhouse_url)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_url = format!("http://{}", listener.local_addr()?);
    let (cut, cut_rx) = watch::channel(false);
    tokio::spawn(relay(listener, upstream, cut_rx));

    let mut config = iocd::Config::default();
    config.mqtt.host = args.mqtt_host.clone();
    config.mqtt.port = args.mqtt_port;
    config.mqtt.client_id = format!("load-iocd-{run}-outage");
    config.mqtt.clean_session = true;
    // Retried at least every second, so the drain starts soon after the relay is back.
    let database = format!("ioc_load_{run}_outage");
    let pipeline = Pipeline::start_via(args, config, database, &relay_url, |c| {
        c.retry_max_ms = 1_000;
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let total = args.rate * args.outage_s;
    let sim = SimulatorConfig {
        real_time: false,
        max_messages: Some(total),
        ..SimulatorConfig::default()
    };
    // Generated as published: 3 M readings would not fit this process's memory bound.
    let mut messages = Generator::new(Fleet::da_nang(7), 7, &sim, 1_795_827_600_000)?;
    let mut options = MqttOptions::new(
        format!("load-pub-{run}-outage"),
        &args.mqtt_host,
        args.mqtt_port,
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < total {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await? {
                acked += 1;
            }
        }
        Ok::<_, rumqttc::ConnectionError>(acked)
    });

    cut.send_replace(true);
    println!(
        "clickhouse cut; publishing {total} readings at {} a second for {} s",
        args.rate, args.outage_s
    );
    let started = Instant::now();
    let mut peak_rss = rss_kib();
    let mut published = 0u64;
    let tick = Duration::from_millis(100);
    let per_tick = (args.rate / 10).max(1);
    let mut next = Instant::now();
    while published < total {
        for _ in 0..per_tick.min(total - published) {
            let Some(m) = messages.next() else { break };
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await?;
            published += 1;
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
        if published % (args.rate * 30) < per_tick {
            peak_rss = peak_rss.max(rss_kib());
            println!(
                "  {:>4.0} s: {published} published, {} spooled ({:.0} MiB, file {:.0} MiB), rss {:.0} MiB",
                started.elapsed().as_secs_f64(),
                spool(&pipeline, "rows").await,
                spool(&pipeline, "bytes").await / f64::from(1 << 20),
                spool(&pipeline, "file_bytes").await / f64::from(1 << 20),
                rss_kib() as f64 / 1024.0
            );
        }
    }
    let publishing = started.elapsed();
    let acked = tokio::time::timeout(Duration::from_secs(60), acks)
        .await
        .context("not every reading was acknowledged while clickhouse was cut")???;
    let spooled_rows = spool(&pipeline, "rows").await;
    let spooled_bytes = spool(&pipeline, "bytes").await;
    let file_bytes = spool(&pipeline, "file_bytes").await;
    peak_rss = peak_rss.max(rss_kib());

    cut.send_replace(false);
    let restored = Instant::now();
    pipeline.wait_for(total, restored, false).await?;
    let drain = restored.elapsed();
    peak_rss = peak_rss.max(pipeline.peak_rss());
    let (rows, ids): (u64, u64) = pipeline
        .client
        .query("SELECT count(), uniqExact(message_id) FROM readings FINAL")
        .fetch_one()
        .await?;
    if rows != total || ids != total {
        bail!("{rows} rows and {ids} distinct ids stored of {total}");
    }
    println!("transport: mqtt through the spool, clickhouse cut for the whole publishing");
    println!(
        "published {total} readings in {:.0} s ({:.0}/s), all {acked} acknowledged while cut",
        publishing.as_secs_f64(),
        total as f64 / publishing.as_secs_f64()
    );
    println!(
        "spool when clickhouse came back: {spooled_rows} rows, {:.0} MiB of rows, file {:.0} MiB",
        spooled_bytes / f64::from(1 << 20),
        file_bytes / f64::from(1 << 20)
    );
    println!(
        "drained into clickhouse in {:.1} s: {:.0} rows/s ({:.0} readings/s)",
        drain.as_secs_f64(),
        spooled_rows / drain.as_secs_f64(),
        total as f64 / drain.as_secs_f64()
    );
    println!(
        "peak rss (load generator and iocd in one process): {:.0} MiB",
        peak_rss as f64 / 1024.0
    );
    pipeline.finish().await?.drop().await
}
