//! Turning a decoded (or rejected) message into a record, the same for every transport.

use ioc_schemas::{
    Ack, DeadLetter, District, Ingested, IngestedReading, Kind, Reading, Rejection, Transport,
};

use crate::metrics::IngestMetrics;

/// Where a message came from and what it said.
pub(crate) struct Arrival<'a> {
    pub transport: Transport,
    /// MQTT topic, or Kafka `topic/partition@offset`.
    pub source: String,
    pub payload: &'a [u8],
    pub received_at_ms: u64,
    /// The kind the transport says the message is, for metrics; `None` (`unknown`) when it
    /// cannot say.
    pub kind: Option<Kind>,
}

/// Counts the message and builds the record: a reading, or a dead letter with its reason.
pub(crate) fn to_record(
    arrival: Arrival<'_>,
    decoded: Result<(Reading, District), Rejection>,
    ack: Option<Ack>,
    metrics: &IngestMetrics,
) -> Ingested {
    let counters = metrics.messages(arrival.transport);
    counters.received(arrival.kind).inc();
    match decoded {
        Ok((reading, district)) => {
            counters.accepted(arrival.kind).inc();
            Ingested::Reading(
                IngestedReading {
                    reading,
                    district,
                    transport: arrival.transport,
                    source: arrival.source,
                    received_at_ms: arrival.received_at_ms,
                    // Validated as UTF-8 by the decoder.
                    payload: String::from_utf8_lossy(arrival.payload).into_owned(),
                },
                ack,
            )
        }
        Err(rejection) => {
            counters.rejected(arrival.kind, rejection.code).inc();
            tracing::debug!(source = %arrival.source, reason = %rejection, "rejected message");
            Ingested::DeadLetter(
                DeadLetter::new(
                    arrival.received_at_ms,
                    arrival.transport,
                    arrival.source,
                    arrival.payload,
                    rejection,
                ),
                ack,
            )
        }
    }
}
