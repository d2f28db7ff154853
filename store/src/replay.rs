//! Reading back what is stored: the readings that rebuild open windows after a restart, fed
//! back into the dataflow as replays.

use ioc_schemas::{
    District, Ingested, IngestedReading, Kind, Reading, Rejection, Transport, WindowResult,
};

use crate::rows::{ReadingRow, WindowRow};
use crate::{Store, StoreError};

/// A stored on-time reading, as the restart rebuild needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    /// The payload exactly as received.
    pub payload: String,
    /// The reading kind.
    pub kind: Kind,
    /// The device's district.
    pub district: District,
    /// The transport it came in on.
    pub transport: Transport,
    /// Its source (topic).
    pub source: String,
    /// When it was received, epoch ms.
    pub received_at_ms: u64,
}

fn from_code<T: Copy>(all: &[T], code: i8, what: &str) -> Result<T, StoreError> {
    usize::try_from(code)
        .ok()
        .and_then(|c| c.checked_sub(1))
        .and_then(|i| all.get(i).copied())
        .ok_or_else(|| StoreError::Config(format!("stored {what} code {code} is unknown")))
}

impl StoredReading {
    pub(crate) fn from_row(row: ReadingRow) -> Result<StoredReading, StoreError> {
        Ok(StoredReading {
            kind: from_code(&Kind::ALL, row.kind, "kind")?,
            district: from_code(&District::ALL, row.district, "district")?,
            transport: from_code(
                &[Transport::Mqtt, Transport::Kafka],
                row.transport,
                "transport",
            )?,
            payload: row.payload,
            source: row.source,
            received_at_ms: row.received_at_ms,
        })
    }
}

/// Decodes a stored payload back into its reading: ingest's decoder
/// (`ioc_ingest::decode_stored`), handed in by whoever replays, since the store and ingest
/// are crates of one layer and do not depend on each other.
pub type DecodeStored = fn(&str) -> Result<Reading, Rejection>;

impl StoredReading {
    /// The reading as a replay (counted in windows, not stored again); `None`, logged, for a
    /// payload that no longer decodes.
    pub fn into_replayed(self, decode: DecodeStored) -> Option<Ingested> {
        match decode(&self.payload) {
            Ok(reading) => Some(Ingested::Replayed(IngestedReading {
                reading,
                district: self.district,
                transport: self.transport,
                source: self.source,
                received_at_ms: self.received_at_ms,
                payload: self.payload,
            })),
            Err(e) => {
                tracing::warn!(error = %e, "a stored reading no longer decodes; left out");
                None
            }
        }
    }
}

/// Sends a stored reading into the dataflow's `input` as a replay. `false`: its payload no
/// longer decodes (logged, left out).
pub(crate) async fn send_replay(
    stored: StoredReading,
    decode: DecodeStored,
    input: &ioc_schemas::Feed,
) -> Result<bool, StoreError> {
    let Some(record) = stored.into_replayed(decode) else {
        return Ok(false);
    };
    input
        .send(record)
        .await
        .map_err(|_| StoreError::ReplayStopped)?;
    Ok(true)
}

impl WindowRow {
    fn to_result(&self) -> Result<WindowResult, StoreError> {
        Ok(WindowResult {
            kind: from_code(&Kind::ALL, self.kind, "kind")?,
            district: from_code(&District::ALL, self.district, "district")?,
            device_id: self.device_id.clone(),
            metric: self.metric.clone(),
            window_start_ms: self.window_start_ms,
            window_size_ms: self.window_size_ms,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: self.mean,
            emitted_at_ms: self.emitted_at_ms,
            version: self.version,
            is_final: self.is_final == 1,
        })
    }
}

impl Store {
    /// The final results of the tumbling windows of `size_ms` starting in `[from_ms, to_ms)`
    /// for `metrics`, oldest first: the history the KPIs with long horizons (NowCast, 24-hour
    /// rain) are rebuilt from after a restart.
    pub async fn final_windows(
        &self,
        size_ms: u64,
        from_ms: u64,
        to_ms: u64,
        metrics: &[&str],
    ) -> Result<Vec<WindowResult>, StoreError> {
        if metrics.is_empty() || from_ms >= to_ms {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; metrics.len()].join(", ");
        let mut query = self
            .client()
            .query(&format!(
                "SELECT ?fields FROM window_results FINAL \
                 WHERE window_size_ms = ? AND window_start_ms >= ? AND window_start_ms < ? \
                   AND window_start_ms % ? = 0 AND is_final = 1 AND metric IN ({placeholders}) \
                 ORDER BY window_start_ms, device_id, metric"
            ))
            .bind(size_ms)
            .bind(from_ms)
            .bind(to_ms)
            .bind(size_ms);
        for metric in metrics {
            query = query.bind(*metric);
        }
        let rows: Vec<WindowRow> = query
            .fetch_all()
            .await
            .map_err(|e| StoreError::clickhouse("reading final windows", e))?;
        rows.iter().map(WindowRow::to_result).collect()
    }

    /// The newest event time of a stored on-time reading, if any.
    pub async fn newest_on_time_event_ms(&self) -> Result<Option<u64>, StoreError> {
        let (count, newest): (u64, u64) = self
            .client()
            .query("SELECT count(), max(event_time_ms) FROM readings WHERE late = 0")
            .fetch_one()
            .await
            .map_err(|source| StoreError::ClickHouse {
                context: "reading the newest event time".into(),
                source,
            })?;
        Ok((count > 0).then_some(newest))
    }

    /// Every stored on-time reading with an event time at or after `from_ms`, in event time
    /// order, streamed (memory does not grow with the range).
    pub fn replay_on_time_readings(&self, from_ms: u64) -> Result<ReplayCursor, StoreError> {
        self.stored_readings(from_ms, u64::MAX, false)
    }

    /// Every stored reading with an event time in `[from_ms, to_ms)`, late ones too when
    /// `include_late`, in event time order, streamed.
    pub fn stored_readings(
        &self,
        from_ms: u64,
        to_ms: u64,
        include_late: bool,
    ) -> Result<ReplayCursor, StoreError> {
        let cursor = self
            .client()
            .query(
                "SELECT ?fields FROM readings FINAL \
                 WHERE event_time_ms >= ? AND event_time_ms < ? AND late <= ? \
                 ORDER BY event_time_ms, device_id, message_id",
            )
            .bind(from_ms)
            .bind(to_ms)
            .bind(u8::from(include_late))
            .fetch::<ReadingRow>()
            .map_err(replay_error)?;
        Ok(ReplayCursor { cursor })
    }

    /// How many stored readings have an event time in `[from_ms, to_ms)`.
    pub async fn count_readings(&self, from_ms: u64, to_ms: u64) -> Result<u64, StoreError> {
        self.client()
            .query(
                "SELECT count() FROM readings FINAL WHERE event_time_ms >= ? AND event_time_ms < ?",
            )
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one()
            .await
            .map_err(replay_error)
    }
}

fn replay_error(source: clickhouse::error::Error) -> StoreError {
    StoreError::ClickHouse {
        context: "replaying readings".into(),
        source,
    }
}

/// Stored readings, one at a time.
pub struct ReplayCursor {
    cursor: clickhouse::query::RowCursor<ReadingRow>,
}

impl std::fmt::Debug for ReplayCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayCursor")
    }
}

impl ReplayCursor {
    /// The next reading, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<StoredReading>, StoreError> {
        match self.cursor.next().await.map_err(replay_error)? {
            Some(row) => StoredReading::from_row(row).map(Some),
            None => Ok(None),
        }
    }

    /// Feeds the rest of the readings, decoded by `decode`, into the dataflow's `input` as
    /// replays (counted in windows, not stored again), calling `each` with the number read so
    /// far. Returns `(read, fed)`: a stored payload that no longer decodes is logged and left
    /// out.
    pub async fn feed(
        &mut self,
        input: &ioc_schemas::Feed,
        decode: DecodeStored,
        mut each: impl FnMut(u64),
    ) -> Result<(u64, u64), StoreError> {
        let (mut read, mut fed) = (0u64, 0u64);
        while let Some(stored) = self.next().await? {
            read += 1;
            fed += u64::from(send_replay(stored, decode, input).await?);
            each(read);
        }
        Ok((read, fed))
    }
}
