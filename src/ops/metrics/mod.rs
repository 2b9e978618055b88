//! [`Metrics`]: the crate's counters for Prometheus (feature `prometheus`) and
//! OpenTelemetry (feature `otel`).

#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "axum")]
mod router;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::record::{Outcome, UsageRecord};
use crate::recorder::{RecorderWatch, WriteObserver};

/// Label sets beyond which usage is counted under `service="(other)", model="(other)"`:
/// names come from requests, and an unbounded number of series would sink the scraper.
const MAX_SERIES: usize = 1_000;

/// The label value of usage beyond [`MAX_SERIES`].
const OTHER: &str = "(other)";

/// The crate's counters in one place: what the recorder saw (requests, tokens and cost
/// by service, model and outcome), how its writes went (duration of each attempt) and
/// its state (queued, written, retried, failed, dropped), and the answer cache's hits,
/// misses and size. Cheap to clone; every clone counts into the same figures.
///
/// Give it to a recorder as its [observer](crate::recorder::RecorderBuilder::observer)
/// and let it [watch](Self::watch) the recorder; then serve [`render`](Self::render)
/// (or [`router`](Self::router), `GET /metrics`) to Prometheus, add it to a registry of
/// your own with [`register`](Self::register), or send it to an OpenTelemetry meter
/// with [`export_to`](Self::export_to) (feature `otel`).
///
/// ```
/// use tower_usage::ops::Metrics;
/// use tower_usage::{MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let metrics = Metrics::new();
/// let recorder = Recorder::builder(MemorySink::new()).observer(metrics.clone()).spawn();
/// metrics.watch(recorder.watch());
///
/// recorder.record_usage("alice", "chat", Some("gpt-4o"), 1000, 100, serde_json::Value::Null).unwrap();
/// recorder.flush().await;
///
/// let text = metrics.render();
/// assert!(text.contains(r#"tower_usage_requests_total{service="chat",model="gpt-4o",outcome="success"} 1"#));
/// assert!(text.contains(r#"tower_usage_tokens_total{service="chat",model="gpt-4o",outcome="success",direction="input"} 1000"#));
/// assert!(text.contains("tower_usage_recorder_written_total 1"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: Family<UsageLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<UsageLabels, Counter>,
    writes: Family<WriteLabels, Histogram, fn() -> Histogram>,
    /// Label sets in `requests`.
    series: AtomicUsize,
    watched: Mutex<Watched>,
    #[cfg(feature = "otel")]
    otel: std::sync::OnceLock<otel::Instruments>,
}

/// What the metrics read at each scrape.
#[derive(Debug, Default, Clone)]
struct Watched {
    recorder: Option<RecorderWatch>,
    #[cfg(all(
        feature = "store",
        any(feature = "sqlite", feature = "postgres", feature = "mysql")
    ))]
    cache: Option<crate::store::AnswerCache>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsageLabels {
    service: String,
    model: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    #[prometheus(flatten)]
    usage: UsageLabels,
    direction: Direction,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The label values as they are written.
enum Direction {
    input,
    output,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    result: WriteResult,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum WriteResult {
    written,
    failed,
}

/// 1 ms to about 16 s, doubling: a batch write on a local database takes a few
/// milliseconds; the write timeout is 30 s by default.
fn write_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What one batch adds to one label set.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    requests: u64,
    input: u64,
    output: u64,
    cost_micros: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counters at zero, watching nothing yet.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                requests: Family::default(),
                tokens: Family::default(),
                cost: Family::default(),
                writes: Family::new_with_constructor(write_histogram),
                series: AtomicUsize::new(0),
                watched: Mutex::default(),
                #[cfg(feature = "otel")]
                otel: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Reads the recorder's counters (recorded, written, retried, failed, dropped,
    /// queued, the queue's capacity) at each scrape. A second call replaces the first.
    pub fn watch(&self, recorder: RecorderWatch) {
        self.watched().recorder = Some(recorder);
    }

    /// Reads the answer cache's counters (hits, misses, invalidations, entries, bytes)
    /// at each scrape. A second call replaces the first.
    #[cfg(all(
        feature = "store",
        any(feature = "sqlite", feature = "postgres", feature = "mysql")
    ))]
    pub fn watch_cache(&self, cache: crate::store::AnswerCache) {
        self.watched().cache = Some(cache);
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.inner
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds every metric to `registry`, for a service that serves metrics of its own.
    /// The names start with `tower_usage_`.
    pub fn register(&self, registry: &mut Registry) {
        let inner = &self.inner;
        registry.register(
            "tower_usage_requests",
            "Requests (and hand-made records) the recorder took, by service, model and outcome",
            inner.requests.clone(),
        );
        registry.register(
            "tower_usage_tokens",
            "Tokens of the recorded requests, by service, model, outcome and direction",
            inner.tokens.clone(),
        );
        registry.register(
            "tower_usage_cost_micros",
            "Cost of the recorded requests in micro-units of the account currency",
            inner.cost.clone(),
        );
        registry.register_with_unit(
            "tower_usage_write_duration",
            "Duration of each attempt at writing a batch, by whether the sink took it",
            Unit::Seconds,
            inner.writes.clone(),
        );
        registry.register_collector(Box::new(stats::Collector(self.clone())));
    }

    /// The Prometheus (OpenMetrics) text exposition of every metric.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Adds one batch's records to the usage counters.
    fn count(&self, records: &[UsageRecord]) {
        let mut sums: HashMap<(&str, &str, Outcome), Sums> = HashMap::new();
        for record in records {
            let service = record.service.as_deref().unwrap_or("");
            let model = record.model.as_deref().unwrap_or("");
            let sums = sums.entry((service, model, record.outcome)).or_default();
            sums.requests += 1;
            sums.input = sums.input.saturating_add(record.tokens.input);
            sums.output = sums.output.saturating_add(record.tokens.output);
            let cost = record.cost_micros.unwrap_or(0).max(0).unsigned_abs();
            sums.cost_micros = sums.cost_micros.saturating_add(cost);
        }
        let inner = &self.inner;
        for ((service, model, outcome), sums) in sums {
            let mut labels = UsageLabels {
                service: service.to_owned(),
                model: model.to_owned(),
                outcome: outcome.as_str().to_owned(),
            };
            if inner.requests.get(&labels).is_none() {
                // Several recorders may share these metrics: the bound is approximate.
                if inner.series.fetch_add(1, Relaxed) >= MAX_SERIES {
                    labels.service = OTHER.to_owned();
                    labels.model = OTHER.to_owned();
                }
            }
            inner.requests.get_or_create(&labels).inc_by(sums.requests);
            inner.cost.get_or_create(&labels).inc_by(sums.cost_micros);
            #[cfg(feature = "otel")]
            if let Some(otel) = inner.otel.get() {
                otel.count(&labels, &sums);
            }
            for (direction, n) in [
                (Direction::input, sums.input),
                (Direction::output, sums.output),
            ] {
                let labels = TokenLabels {
                    usage: labels.clone(),
                    direction,
                };
                inner.tokens.get_or_create(&labels).inc_by(n);
            }
        }
    }
}

impl WriteObserver for Metrics {
    fn batch(&self, records: &[UsageRecord]) {
        self.count(records);
    }

    fn attempt(&self, took: Duration, written: bool) {
        let result = if written {
            WriteResult::written
        } else {
            WriteResult::failed
        };
        let seconds = took.as_secs_f64();
        self.inner
            .writes
            .get_or_create(&WriteLabels { result })
            .observe(seconds);
        #[cfg(feature = "otel")]
        if let Some(otel) = self.inner.otel.get() {
            otel.attempt(seconds, written);
        }
    }
}
