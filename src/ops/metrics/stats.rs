//! The recorder's and the answer cache's counters, read at each scrape.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Metrics;
use crate::recorder::RecorderWatch;

/// Reads what [`Metrics`] watches when the registry is encoded.
#[derive(Debug)]
pub(super) struct Collector(pub(super) Metrics);

/// One figure: a counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
}

/// One figure read at a scrape.
pub(super) struct Figure {
    pub(super) kind: Kind,
    /// What it tells of: `recorder`, `answer_cache`.
    pub(super) group: &'static str,
    /// Within the group, without a counter's `_total`.
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    /// `None` when what it reads is not watched.
    pub(super) value: Option<u64>,
}

impl Figure {
    fn counter(
        group: &'static str,
        name: &'static str,
        help: &'static str,
        value: Option<u64>,
    ) -> Self {
        Figure {
            kind: Kind::Counter,
            group,
            name,
            help,
            value,
        }
    }

    fn gauge(
        group: &'static str,
        name: &'static str,
        help: &'static str,
        value: Option<u64>,
    ) -> Self {
        Figure {
            kind: Kind::Gauge,
            group,
            name,
            help,
            value,
        }
    }
}

impl Metrics {
    /// Every figure, with the values of what is watched as they stand.
    pub(super) fn figures(&self) -> Vec<Figure> {
        let watched = self.watched().clone();
        let mut figures = Vec::new();
        {
            let recorder = watched.recorder.as_ref();
            let stats = recorder.map(RecorderWatch::stats);
            let capacity = recorder.map(|r| u64::try_from(r.capacity()).unwrap_or(u64::MAX));
            figures.extend([
                Figure::counter(
                    "recorder",
                    "recorded",
                    "Records accepted into the recorder's queue",
                    stats.map(|s| s.recorded),
                ),
                Figure::counter(
                    "recorder",
                    "written",
                    "Records the sink confirmed",
                    stats.map(|s| s.written),
                ),
                Figure::counter(
                    "recorder",
                    "retried",
                    "Batch writes that failed transiently and were tried again",
                    stats.map(|s| s.retried),
                ),
                Figure::counter(
                    "recorder",
                    "failed",
                    "Accepted records given up after the sink refused or kept failing",
                    stats.map(|s| s.failed),
                ),
                Figure::counter(
                    "recorder",
                    "dropped",
                    "Records refused because the queue was full or the recorder had stopped",
                    stats.map(|s| s.dropped),
                ),
                Figure::gauge(
                    "recorder",
                    "queued",
                    "Records accepted but not yet written or given up",
                    stats.map(|s| s.queued),
                ),
                Figure::counter(
                    "recorder",
                    "spilled",
                    "Records moved to the spill on disk while the sink failed",
                    stats.map(|s| s.spilled),
                ),
                Figure::counter(
                    "recorder",
                    "replayed",
                    "Records written from the spill",
                    stats.map(|s| s.replayed),
                ),
                Figure::counter(
                    "recorder",
                    "spill_refused",
                    "Records the spill could not take (full, or the disk failed)",
                    stats.map(|s| s.spill_refused),
                ),
                Figure::gauge(
                    "recorder",
                    "spill_bytes",
                    "Bytes the recorder's spill holds on disk",
                    stats.map(|s| s.spill_bytes),
                ),
                Figure::gauge(
                    "recorder",
                    "queue_capacity",
                    "How many records the recorder's queue holds at most",
                    capacity,
                ),
                Figure::gauge(
                    "recorder",
                    "failing_attempts",
                    "Failed attempts in a row at the batch being written now",
                    recorder.map(RecorderWatch::failing_attempts),
                ),
                Figure::gauge(
                    "recorder",
                    "running",
                    "1 while the recorder's worker runs, 0 once it has stopped",
                    recorder.map(|r| u64::from(!r.stopped())),
                ),
            ]);
        }
        #[cfg(all(
            feature = "store",
            any(feature = "sqlite", feature = "postgres", feature = "mysql")
        ))]
        {
            let stats = watched.cache.as_ref().map(crate::store::AnswerCache::stats);
            figures.extend([
                Figure::counter(
                    "answer_cache",
                    "hits",
                    "Analytics reads answered from the answer cache",
                    stats.map(|s| s.hits),
                ),
                Figure::counter(
                    "answer_cache",
                    "misses",
                    "Analytics reads that went to the database",
                    stats.map(|s| s.misses),
                ),
                Figure::counter(
                    "answer_cache",
                    "invalidations",
                    "Cached pieces found stale after a write into their range",
                    stats.map(|s| s.invalidations),
                ),
                Figure::gauge(
                    "answer_cache",
                    "entries",
                    "Pieces and answers kept in the answer cache",
                    stats.map(|s| s.entries),
                ),
                Figure::gauge(
                    "answer_cache",
                    "bytes",
                    "Estimated bytes the answer cache holds",
                    stats.map(|s| s.bytes),
                ),
                Figure::gauge(
                    "answer_cache",
                    "capacity_bytes",
                    "The bound on the answer cache's bytes",
                    stats.map(|s| s.capacity_bytes),
                ),
            ]);
        }
        figures
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for Figure {
            kind,
            group,
            name,
            help,
            value,
        } in self.0.figures()
        {
            let Some(value) = value else { continue };
            let name = format!("tower_usage_{group}_{name}");
            match kind {
                Kind::Counter => {
                    let metric = ConstCounter::new(value);
                    metric.encode(encoder.encode_descriptor(
                        &name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
                Kind::Gauge => {
                    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                    metric.encode(encoder.encode_descriptor(
                        &name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
            }
        }
        Ok(())
    }
}
