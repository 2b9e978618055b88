//! The built-in health checks: the recorder, the store and the answer cache.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{HealthCheck, Unhealthy};
use crate::recorder::RecorderWatch;

/// Failed attempts in a row at one batch after which the recorder counts as unhealthy:
/// one failure is a hiccup the retry absorbs, three are an outage.
pub const FAILING_ATTEMPTS: u64 = 3;

/// The share of the queue (in percent) past which the recorder counts as unhealthy:
/// records are about to be dropped.
const BACKLOG_PERCENT: u64 = 90;

#[async_trait]
impl HealthCheck for RecorderWatch {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn check(&self) -> Result<Value, Unhealthy> {
        let stats = self.stats();
        let capacity = u64::try_from(self.capacity()).unwrap_or(u64::MAX);
        let failing = self.failing_attempts();
        let in_queue = u64::try_from(self.queue_len()).unwrap_or(u64::MAX);
        let detail = json!({
            "queued": stats.queued,
            "in_queue": in_queue,
            "capacity": capacity,
            "recorded": stats.recorded,
            "written": stats.written,
            "retried": stats.retried,
            "failed": stats.failed,
            "dropped": stats.dropped,
            "failing_attempts": failing,
            "spilled": stats.spilled,
            "replayed": stats.replayed,
            "recovered": stats.recovered,
            "spill_refused": stats.spill_refused,
            "spill_damaged": stats.spill_damaged,
            "spill_bytes": stats.spill_bytes,
        });
        let unhealthy = |reason: String| Err(Unhealthy::new(reason).with_detail(detail.clone()));
        if self.stopped() {
            return unhealthy("the recorder's worker has stopped".to_owned());
        }
        if in_queue.saturating_mul(100) >= capacity.saturating_mul(BACKLOG_PERCENT) {
            return unhealthy(format!(
                "the recorder's queue is nearly full ({in_queue} of {capacity} records)"
            ));
        }
        if failing >= FAILING_ATTEMPTS {
            return unhealthy(format!("the sink has failed {failing} writes in a row"));
        }
        Ok(detail)
    }
}

#[cfg(all(
    feature = "store",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
mod store {
    use std::time::Instant;

    use async_trait::async_trait;
    use serde_json::{json, Value};

    use super::super::{HealthCheck, Unhealthy};
    use crate::store::{AnswerCache, DieselStore};

    #[async_trait]
    impl HealthCheck for DieselStore {
        fn name(&self) -> &str {
            "store"
        }

        async fn check(&self) -> Result<Value, Unhealthy> {
            let started = Instant::now();
            let pinged = self.ping().await;
            let detail = json!({
                "backend": self.backend_name(),
                "latency_ms": started.elapsed().as_secs_f64() * 1e3,
            });
            match pinged {
                Ok(()) => Ok(detail),
                Err(error) => Err(
                    Unhealthy::new(format!("the store does not answer: {error}"))
                        .with_detail(detail),
                ),
            }
        }
    }

    #[async_trait]
    impl HealthCheck for AnswerCache {
        fn name(&self) -> &str {
            "answer_cache"
        }

        async fn check(&self) -> Result<Value, Unhealthy> {
            Ok(serde_json::to_value(self.stats()).unwrap_or(Value::Null))
        }
    }
}
