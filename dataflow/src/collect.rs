//! Outputs kept in memory: for tests, tools and examples that look at what a run produced.

use std::sync::{Arc, Mutex, MutexGuard};

use ioc_schemas::{Ack, DeadLetter, District, IngestedReading, Kind, Kpi, WindowResult};

use crate::{Observation, Outputs};

/// Everything a run of the dataflow emits, in the order it came. Clones share one store.
/// Acknowledgements are given at once, as by a sink that has kept the record.
#[derive(Debug, Clone, Default)]
pub struct Collected(Arc<Mutex<Emitted>>);

/// What [`Collected`] holds.
#[derive(Debug, Default)]
pub struct Emitted {
    /// Device ids of the on-time readings handed to rules ([`crate::RunOptions::reading_rules`]).
    pub observed: Vec<String>,
    /// Readings to store raw, with the watermark a late one missed.
    pub raw: Vec<(IngestedReading, Option<u64>)>,
    /// Rejected inputs.
    pub dead_letters: Vec<DeadLetter>,
    /// Repeats of messages already taken.
    pub duplicates: Vec<IngestedReading>,
    /// Window results: provisional, corrections and final.
    pub windows: Vec<WindowResult>,
    /// KPI rows.
    pub kpis: Vec<Kpi>,
    /// Readings from unregistered devices: id, kind, district, event time.
    pub unknown: Vec<(String, Kind, District, u64)>,
}

impl Collected {
    /// What has been emitted so far. Panics if a worker panicked while holding it.
    pub fn emitted(&self) -> MutexGuard<'_, Emitted> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with(&self, f: impl FnOnce(&mut Emitted)) {
        f(&mut self.emitted());
    }
}

fn done(ack: Option<Ack>) {
    if let Some(ack) = ack {
        ack.done();
    }
}

impl Outputs for Collected {
    fn raw_reading(&self, reading: IngestedReading, late_behind: Option<u64>, ack: Option<Ack>) {
        self.with(|e| e.raw.push((reading, late_behind)));
        done(ack);
    }

    fn dead_letter(&self, letter: DeadLetter, ack: Option<Ack>) {
        self.with(|e| e.dead_letters.push(letter));
        done(ack);
    }

    fn duplicate(&self, reading: IngestedReading, ack: Option<Ack>) {
        self.with(|e| e.duplicates.push(reading));
        done(ack);
    }

    fn window(&self, result: WindowResult) {
        self.with(|e| e.windows.push(result));
    }

    fn kpi(&self, kpi: Kpi) {
        self.with(|e| e.kpis.push(kpi));
    }

    fn unknown_device(&self, device_id: &str, kind: Kind, district: District, event_ms: u64) {
        self.with(|e| {
            e.unknown
                .push((device_id.to_owned(), kind, district, event_ms))
        });
    }

    fn reading(&self, observation: &Observation) {
        let id = observation.device_id.as_str().to_owned();
        self.with(|e| e.observed.push(id));
    }
}
