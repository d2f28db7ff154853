//! Dataflow metrics.

use ioc_schemas::{Kind, KpiFamily, WindowResult};
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// The `op` of a registry change applied.
const REGISTRY_OPS: [&str; 2] = ["upsert", "remove"];

/// One counter of a `kind`-labelled family per reading kind, resolved once, so the per-reading
/// paths count without looking a label up.
#[derive(Debug, Clone)]
pub struct ByKind([IntCounter; Kind::ALL.len()]);

impl ByKind {
    fn of(family: &IntCounterVec) -> ByKind {
        ByKind(Kind::ALL.map(|kind| family.with_label_values(&[kind.as_str()])))
    }

    /// The counter of `kind`.
    pub fn get(&self, kind: Kind) -> &IntCounter {
        // `Kind::ALL` lists the kinds in declaration order (checked by a test).
        &self.0[kind as usize]
    }
}

/// The series the per-reading and per-result paths count, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) late: ByKind,
    pub(crate) duplicates: ByKind,
    pub(crate) windows: ByKind,
    pub(crate) unknown_device_readings: ByKind,
    pub(crate) unnamed_readings: ByKind,
    /// By family, in `KpiFamily::ALL` order (its declaration order, checked by a test).
    kpis: [IntCounter; KpiFamily::ALL.len()],
    /// `upsert` and `remove`.
    pub(crate) registry_changes: [IntCounter; 2],
}

impl Resolved {
    /// `ioc_dataflow_kpis_total` of `family`.
    pub(crate) fn kpis(&self, family: KpiFamily) -> &IntCounter {
        &self.kpis[family as usize]
    }
}

/// Counters and gauges of the dataflow.
#[derive(Debug, Clone)]
pub struct DataflowMetrics {
    /// `ioc_dataflow_late_readings_total{kind}`: readings later than the allowed lateness.
    pub late: IntCounterVec,
    /// `ioc_dataflow_duplicates_total{kind}`: repeats of a message id already taken.
    pub duplicates: IntCounterVec,
    /// `ioc_dataflow_windows_emitted_total{kind}`.
    pub windows: IntCounterVec,
    /// `ioc_dataflow_window_emit_delay_seconds`: wall time of emission minus the window's end.
    pub emit_delay: Histogram,
    /// `ioc_dataflow_watermark_ms`: the global watermark, epoch ms.
    pub watermark_ms: IntGauge,
    /// `ioc_dataflow_source_watermark_ms{source}`: each source's own watermark (a Kafka
    /// `topic/partition`, or `mqtt`), epoch ms.
    pub source_watermark_ms: IntGaugeVec,
    /// `ioc_dataflow_pending_sources`: assigned Kafka partitions that have delivered nothing
    /// and not caught up; while any exists, the watermark waits for them.
    pub pending_sources: IntGauge,
    /// `ioc_dataflow_unknown_device_readings_total{kind}`: readings from devices the registry
    /// does not know (stored and windowed under their topic's district).
    pub unknown_device_readings: IntCounterVec,
    /// `ioc_dataflow_unnamed_readings_total{kind}`: on-time readings left out of windows
    /// because their device or a metric was new and the name table was full
    /// ([`crate::NAME_LIMIT`]); they are stored raw.
    pub unnamed_readings: IntCounterVec,
    /// `ioc_dataflow_kpis_total{family}`: KPI rows emitted.
    pub kpis: IntCounterVec,
    /// `ioc_dataflow_registry_changes_total{op}`: registry changes applied (`upsert`, `remove`).
    pub registry_changes: IntCounterVec,
    /// The series above that are counted per reading, resolved.
    pub(crate) resolved: Resolved,
}

impl DataflowMetrics {
    /// Registers the metrics.
    pub fn new(registry: &Registry) -> Result<DataflowMetrics, prometheus::Error> {
        let late = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_late_readings_total",
                "Readings that arrived later than the allowed lateness; stored raw, not windowed.",
            ),
            &["kind"],
        )?;
        let duplicates = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_duplicates_total",
                "Repeats of a message id already taken, counted once.",
            ),
            &["kind"],
        )?;
        let windows = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_windows_emitted_total",
                "Window results emitted.",
            ),
            &["kind"],
        )?;
        let emit_delay = Histogram::with_opts(
            HistogramOpts::new(
                "ioc_dataflow_window_emit_delay_seconds",
                "Wall-clock time from a window's end to its emission (includes the allowed lateness).",
            )
            .buckets(exponential_buckets(0.05, 2.0, 14)?),
        )?;
        let watermark_ms = IntGauge::new(
            "ioc_dataflow_watermark_ms",
            "The input watermark (newest event time minus the allowed lateness), epoch ms.",
        )?;
        registry.register(Box::new(late.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        registry.register(Box::new(windows.clone()))?;
        registry.register(Box::new(emit_delay.clone()))?;
        let source_watermark_ms = IntGaugeVec::new(
            Opts::new(
                "ioc_dataflow_source_watermark_ms",
                "Each input source's watermark (a Kafka topic/partition, or mqtt), epoch ms.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(watermark_ms.clone()))?;
        registry.register(Box::new(source_watermark_ms.clone()))?;
        let pending_sources = IntGauge::new(
            "ioc_dataflow_pending_sources",
            "Assigned Kafka partitions that have delivered nothing and not caught up; the watermark waits for them.",
        )?;
        registry.register(Box::new(pending_sources.clone()))?;
        let unknown_device_readings = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_unknown_device_readings_total",
                "Readings from devices the registry does not know; stored and windowed all the same.",
            ),
            &["kind"],
        )?;
        let unnamed_readings = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_unnamed_readings_total",
                "On-time readings not windowed because the table of device and metric ids was full; stored raw.",
            ),
            &["kind"],
        )?;
        let kpis = IntCounterVec::new(
            Opts::new("ioc_dataflow_kpis_total", "KPI rows emitted."),
            &["family"],
        )?;
        let registry_changes = IntCounterVec::new(
            Opts::new(
                "ioc_dataflow_registry_changes_total",
                "Device registry changes applied to the running dataflow.",
            ),
            &["op"],
        )?;
        // Every series whose labels are known up front is exported from the start, at 0, by
        // resolving it; the per-source watermarks appear with their source.
        let resolved = Resolved {
            late: ByKind::of(&late),
            duplicates: ByKind::of(&duplicates),
            windows: ByKind::of(&windows),
            unknown_device_readings: ByKind::of(&unknown_device_readings),
            unnamed_readings: ByKind::of(&unnamed_readings),
            kpis: KpiFamily::ALL.map(|family| kpis.with_label_values(&[family.as_str()])),
            registry_changes: REGISTRY_OPS.map(|op| registry_changes.with_label_values(&[op])),
        };
        registry.register(Box::new(unknown_device_readings.clone()))?;
        registry.register(Box::new(unnamed_readings.clone()))?;
        registry.register(Box::new(kpis.clone()))?;
        registry.register(Box::new(registry_changes.clone()))?;
        Ok(DataflowMetrics {
            unknown_device_readings,
            unnamed_readings,
            kpis,
            registry_changes,
            late,
            duplicates,
            windows,
            emit_delay,
            watermark_ms,
            source_watermark_ms,
            pending_sources,
            resolved,
        })
    }

    /// Records one emitted window.
    pub fn observe_window(&self, result: &WindowResult, now_ms: u64) {
        self.resolved.windows.get(result.kind).inc();
        let delay_ms = now_ms.saturating_sub(result.window_end_ms());
        self.emit_delay.observe(delay_ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_exported_from_the_start() {
        let registry = Registry::new();
        DataflowMetrics::new(&registry).unwrap();
        let families = registry.gather();
        let series = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        for name in [
            "ioc_dataflow_late_readings_total",
            "ioc_dataflow_duplicates_total",
            "ioc_dataflow_windows_emitted_total",
            "ioc_dataflow_unknown_device_readings_total",
            "ioc_dataflow_unnamed_readings_total",
        ] {
            assert_eq!(series(name), Kind::ALL.len(), "{name}");
        }
        assert_eq!(series("ioc_dataflow_kpis_total"), KpiFamily::ALL.len());
        assert_eq!(series("ioc_dataflow_registry_changes_total"), 2);
        assert_eq!(series("ioc_dataflow_source_watermark_ms"), 0, "per source");
    }

    #[test]
    fn resolved_counters_are_the_labelled_series() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "Kind::ALL follows the declaration order");
        }
        for (i, family) in KpiFamily::ALL.into_iter().enumerate() {
            assert_eq!(
                family as usize, i,
                "KpiFamily::ALL follows the declaration order"
            );
        }
        let m = DataflowMetrics::new(&Registry::new()).unwrap();
        m.resolved.late.get(Kind::CameraEvent).inc();
        m.resolved.kpis(KpiFamily::Hydrology).inc_by(2);
        m.resolved.registry_changes[1].inc();
        assert_eq!(m.late.with_label_values(&["camera_event"]).get(), 1);
        assert_eq!(m.late.with_label_values(&["sensor"]).get(), 0);
        assert_eq!(m.kpis.with_label_values(&["hydrology"]).get(), 2);
        assert_eq!(m.registry_changes.with_label_values(&["remove"]).get(), 1);
    }
}
