//! The demo's embedded MQTT broker (rumqttd), so `iocd demo` needs no services.

use std::net::SocketAddr;

use figment::providers::{Format, Toml};
use figment::Figment;

/// Bytes of messages in one segment of a subscription filter's in-memory log.
const SEGMENT_BYTES: usize = 8 << 20;
/// Full segments kept per filter, besides the one being filled.
const SEGMENTS: usize = 4;

/// Starts rumqttd on `listen` in its own thread (its `start` blocks forever) and returns the
/// address it listens on; port 0 takes a free port.
///
/// rumqttd only logs a failure to bind, from its own thread, and a client would then reach
/// whatever else listens there (another demo's broker, with the same client ids). So the
/// address is tried here first, and a busy one is an error that names it.
pub fn start_embedded_broker(listen: &str) -> anyhow::Result<SocketAddr> {
    let listen = std::net::TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map_err(|e| {
            anyhow::anyhow!(
                "the demo's MQTT broker cannot listen on {listen}: {e}; another iocd demo may be \
                 running. Give this one another port with --broker-listen 127.0.0.1:PORT \
                 (or 127.0.0.1:0 for any free port)"
            )
        })?;
    // rumqttd's `Config::default()` is unusable (zero connections and segment size), so every
    // limit is spelled out. In-flight is generous because iocd acknowledges a message only once
    // it is stored. rumqttd keeps every subscription filter's recent messages in memory, up to
    // `max_segment_count` full segments besides the one being filled: 10 × 100 MB let the
    // demo grow by 6 MB/s at 10,000 messages/s until it held a gigabyte. 4 × 8 MiB is 10 s
    // and more of backlog at that rate, for a reader that falls behind for a moment.
    let text = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 20000
max_segment_size = {SEGMENT_BYTES}
max_segment_count = {SEGMENTS}
[v4.1]
name = "iocd-demo"
listen = "{listen}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 20000
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = Figment::from(Toml::string(&text)).extract()?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("iocd-mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded mqtt broker stopped");
            }
        })?;
    Ok(listen)
}
