//! The same counters sent to an OpenTelemetry meter (feature `otel`).

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

use super::stats::Kind;
use super::{Metrics, Sums, UsageLabels};

/// The instruments the usage counters and write durations are added to as they happen.
#[derive(Debug)]
pub(super) struct Instruments {
    requests: Counter<u64>,
    tokens: Counter<u64>,
    cost: Counter<u64>,
    writes: Histogram<f64>,
}

impl Instruments {
    pub(super) fn count(&self, labels: &UsageLabels, sums: &Sums) {
        let attributes = [
            KeyValue::new("service", labels.service.clone()),
            KeyValue::new("model", labels.model.clone()),
            KeyValue::new("outcome", labels.outcome.clone()),
        ];
        self.requests.add(sums.requests, &attributes);
        self.cost.add(sums.cost_micros, &attributes);
        for (direction, n) in [("input", sums.input), ("output", sums.output)] {
            let mut attributes = attributes.to_vec();
            attributes.push(KeyValue::new("direction", direction));
            self.tokens.add(n, &attributes);
        }
    }

    pub(super) fn attempt(&self, seconds: f64, written: bool) {
        let result = if written { "written" } else { "failed" };
        self.writes
            .record(seconds, &[KeyValue::new("result", result)]);
    }
}

impl Metrics {
    /// Sends the same figures to an OpenTelemetry `meter` (feature `otel`), for teams
    /// whose metrics all go through a collector: the usage counters (`tower_usage.requests`,
    /// `tower_usage.tokens`, `tower_usage.cost`, counted from this call on) and the write
    /// durations (`tower_usage.write.duration`, seconds) as they happen, and the recorder's
    /// and the cache's figures (`tower_usage.recorder.written`, ...) whenever the meter's
    /// reader collects. A second call does nothing.
    ///
    /// The crate depends on the OpenTelemetry API only: build the meter with the SDK and
    /// exporter of your choice.
    ///
    /// ```
    /// use tower_usage::ops::Metrics;
    ///
    /// let metrics = Metrics::new();
    /// // With the SDK: `opentelemetry::global::meter("my-service")` once a provider is set.
    /// metrics.export_to(&opentelemetry::global::meter("my-service"));
    /// ```
    pub fn export_to(&self, meter: &Meter) {
        let mut registered = false;
        self.inner.otel.get_or_init(|| {
            registered = true;
            Instruments {
                requests: meter
                    .u64_counter("tower_usage.requests")
                    .with_description("Requests the recorder took, by service, model and outcome")
                    .build(),
                tokens: meter
                    .u64_counter("tower_usage.tokens")
                    .with_description(
                        "Tokens of the recorded requests, by service, model, outcome and direction",
                    )
                    .build(),
                cost: meter
                    .u64_counter("tower_usage.cost")
                    .with_description(
                        "Cost of the recorded requests in micro-units of the account currency",
                    )
                    .with_unit("{micro}")
                    .build(),
                writes: meter
                    .f64_histogram("tower_usage.write.duration")
                    .with_description("Duration of each attempt at writing a batch")
                    .with_unit("s")
                    .build(),
            }
        });
        if !registered {
            return;
        }
        for figure in self.figures() {
            let name = format!("tower_usage.{}.{}", figure.group, figure.name);
            let metrics = self.clone();
            let wanted = (figure.group, figure.name);
            let read = move || {
                metrics
                    .figures()
                    .into_iter()
                    .find(|f| (f.group, f.name) == wanted)
                    .and_then(|f| f.value)
            };
            match figure.kind {
                Kind::Counter => {
                    meter
                        .u64_observable_counter(name)
                        .with_description(figure.help)
                        .with_callback(move |observer| {
                            if let Some(value) = read() {
                                observer.observe(value, &[]);
                            }
                        })
                        .build();
                }
                Kind::Gauge => {
                    meter
                        .u64_observable_gauge(name)
                        .with_description(figure.help)
                        .with_callback(move |observer| {
                            if let Some(value) = read() {
                                observer.observe(value, &[]);
                            }
                        })
                        .build();
                }
            }
        }
    }
}
