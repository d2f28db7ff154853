//! The load generator: pushes N simulated readings through MQTT into ClickHouse with the full
//! pipeline, and measures the broker's own delivery rate to a null subscriber
//! (`mosquitto_sub ... > /dev/null`) in the same run, for comparison.
//!
//! Needs mosquitto on 127.0.0.1:1883, `mosquitto_sub` on the PATH and ClickHouse on
//! 127.0.0.1:8123 (`.ci/servers.sh start`). Run:
//! `cargo run --release -p ioc-benches --bin ioc-load -- --readings 200000`

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ioc_simulator::{Fleet, Generator, SimulatorConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

/// Pushes readings through MQTT into ClickHouse and reports readings/s.
#[derive(Debug, Parser)]
struct Args {
    /// How many readings to push.
    #[arg(long, default_value_t = 200_000)]
    readings: u64,
    /// MQTT broker host.
    #[arg(long, default_value = "127.0.0.1")]
    mqtt_host: String,
    /// MQTT broker port.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// ClickHouse HTTP URL.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// Timely workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn messages(count: u64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let config = SimulatorConfig {
        real_time: false,
        max_messages: Some(count),
        ..SimulatorConfig::default()
    };
    let start = 1_795_827_600_000;
    Ok(Generator::new(Fleet::da_nang(7), 7, &config, start)?
        .map(|m| (m.topic, m.payload))
        .collect())
}

/// Publishes every message with QoS 1 as fast as the broker acknowledges them.
async fn publish(
    args: &Args,
    client_id: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(client_id, &args.mqtt_host, args.mqtt_port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let total = messages.len();
    let publisher = client.clone();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
        }
        Ok::<_, rumqttc::ClientError>(())
    });
    // Disconnect only once every publish is acknowledged: disconnecting right after the last
    // publish is queued drops the PUBACKs of the up to 1000 still in flight.
    let mut acked = 0;
    while acked < total {
        if let Event::Incoming(Packet::PubAck(_)) =
            eventloop.poll().await.context("publisher connection")?
        {
            acked += 1;
        }
    }
    sender.await??;
    client.disconnect().await?;
    loop {
        if let Event::Outgoing(Outgoing::Disconnect) =
            eventloop.poll().await.context("publisher connection")?
        {
            break;
        }
    }
    Ok(())
}

/// The broker alone: time until a null subscriber has received every message.
async fn broker_baseline(
    args: &Args,
    run: &str,
    messages: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<f64> {
    let count = messages.len();
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", &args.mqtt_host, "-p", &args.mqtt_port.to_string()])
        .args([
            "-i",
            &format!("load-null-{run}"),
            "-q",
            "1",
            "-t",
            "ioc/v1/#",
        ])
        .args(["-C", &count.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start mosquitto_sub")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    publish(args, &format!("load-pub-null-{run}"), messages).await?;
    tokio::time::timeout(Duration::from_secs(600), sub.wait())
        .await
        .context("mosquitto_sub did not receive everything")??;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The pipeline: time until ClickHouse holds every reading.
async fn pipeline(args: &Args, run: &str, messages: Vec<(String, Vec<u8>)>) -> anyhow::Result<f64> {
    let count = messages.len() as u64;
    let database = format!("ioc_load_{run}");
    let mut config = iocd::Config::default();
    config.mqtt.host = args.mqtt_host.clone();
    config.mqtt.port = args.mqtt_port;
    config.mqtt.client_id = format!("load-iocd-{run}");
    config.mqtt.clean_session = true;
    config.dataflow.workers = args.workers;
    config.http.listen = "127.0.0.1:0".parse()?;
    config.clickhouse = Some(ioc_store::ClickHouseConfig {
        url: args.clickhouse_url.clone(),
        database: database.clone(),
        ..Default::default()
    });
    let listener = ioc_dashboard_api::bind(&config.http).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(iocd::pipeline::run(config, listener, async move {
        let _ = stop_rx.await;
    }));
    let client = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_database(&database)
        .with_validation(false)
        .with_setting("wait_end_of_query", "1");
    // Ready once the schema exists and the subscription is up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    publish(args, &format!("load-pub-{run}"), messages).await?;
    loop {
        let stored: u64 = client
            .query("SELECT count() FROM readings")
            .fetch_one()
            .await
            .unwrap_or(0);
        if stored >= count {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {stored} of {count} readings stored after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    running.await??;
    client
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("{}", std::process::id());
    let messages = messages(args.readings)?;
    let baseline = broker_baseline(&args, &run, messages.clone()).await?;
    let through = pipeline(&args, &run, messages).await?;
    #[allow(clippy::print_stdout)]
    {
        println!("readings:                         {}", args.readings);
        println!("mosquitto -> null subscriber:     {baseline:>10.0} readings/s");
        println!("mqtt -> iocd -> clickhouse:       {through:>10.0} readings/s");
        println!(
            "ratio (pipeline / broker alone):  {:>10.2}",
            through / baseline
        );
    }
    Ok(())
}
