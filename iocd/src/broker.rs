//! The demo's embedded MQTT broker (rumqttd), so `iocd demo` needs no services.

use figment::providers::{Format, Toml};
use figment::Figment;

/// Starts rumqttd on `listen` in its own thread (its `start` blocks forever).
pub fn start_embedded_broker(listen: &str) -> anyhow::Result<()> {
    // rumqttd's `Config::default()` is unusable (zero connections and segment size), so every
    // limit is spelled out. In-flight is generous because iocd acknowledges a message only once
    // it is stored.
    let text = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 20000
max_segment_size = 104857600
max_segment_count = 10
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
    Ok(())
}
