//! [`Health`]: is this process able to keep records and answer questions?
//!
//! A health check runs every [`HealthCheck`] it holds at once, each within a time limit,
//! and answers healthy only when all are. The built-in checks:
//!
//! | check | unhealthy when |
//! |---|---|
//! | [`RecorderWatch`](crate::recorder::RecorderWatch) (`recorder`) | the worker has stopped; the queue is 90% full; the sink has failed [`FAILING_ATTEMPTS`] times in a row |
//! | [`DieselStore`](crate::store::DieselStore) (`store`) | a trivial query fails or takes longer than the time limit |
//! | [`AnswerCache`](crate::store::AnswerCache) (`answer_cache`) | never: its counters are shown |
//!
//! The recorder's check also shows its [spill](crate::recorder::Spill): records spilled,
//! written from it and refused by it, and the bytes it holds.

mod checks;
#[cfg(feature = "axum")]
mod router;

pub use checks::FAILING_ATTEMPTS;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

/// One part of a process whose health can be asked: the store, the recorder, a cache,
/// or anything of yours (a Redis server, an upstream).
///
/// ```
/// use async_trait::async_trait;
/// use serde_json::{json, Value};
/// use tower_usage::ops::{HealthCheck, Unhealthy};
///
/// #[derive(Debug)]
/// struct Upstream;
///
/// #[async_trait]
/// impl HealthCheck for Upstream {
///     fn name(&self) -> &str {
///         "upstream"
///     }
///     async fn check(&self) -> Result<Value, Unhealthy> {
///         Ok(json!({ "url": "http://127.0.0.1:8000" }))
///     }
/// }
/// ```
#[async_trait]
pub trait HealthCheck: std::fmt::Debug + Send + Sync + 'static {
    /// The check's name in the report (`store`, `recorder`).
    fn name(&self) -> &str;

    /// What the part says of itself when healthy, or why it is not.
    async fn check(&self) -> Result<Value, Unhealthy>;
}

/// Why a part is unhealthy, and what it says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Unhealthy {
    /// One line for an operator: `"the store does not answer: ..."`.
    pub reason: String,
    /// What the part says of itself (counters, settings); `Value::Null` for nothing.
    pub detail: Value,
}

impl Unhealthy {
    /// Unhealthy for `reason`, with nothing more to say.
    pub fn new(reason: impl Into<String>) -> Self {
        Unhealthy {
            reason: reason.into(),
            detail: Value::Null,
        }
    }

    /// The same, with what the part says of itself.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The checks of one process; cheap to clone.
///
/// ```
/// use tower_usage::ops::Health;
/// use tower_usage::{MemorySink, Recorder};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let health = Health::new().check(recorder.watch());
/// let report = health.report().await;
/// assert!(report.healthy());
///
/// recorder.shutdown().await;
/// let report = health.report().await;
/// assert_eq!(report.reasons, ["recorder: the recorder's worker has stopped"]);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Health {
    checks: Vec<Arc<dyn HealthCheck>>,
    timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// No checks yet (healthy), each to answer within two seconds.
    pub fn new() -> Self {
        Health {
            checks: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }

    /// Adds a check.
    pub fn check(mut self, check: impl HealthCheck) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// How long one check may take before it counts as unhealthy (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs every check at once and gathers what they say.
    pub async fn report(&self) -> HealthReport {
        // Each check in a task of its own: one that panics or hangs is that check's
        // failure, not the report's.
        let mut runs = tokio::task::JoinSet::new();
        let mut order = std::collections::HashMap::new();
        for (index, check) in self.checks.iter().enumerate() {
            let check = Arc::clone(check);
            let timeout = self.timeout;
            let task = runs.spawn(async move {
                let said = tokio::time::timeout(timeout, check.check()).await;
                said.unwrap_or_else(|_| {
                    Err(Unhealthy::new(format!("no answer within {timeout:?}")))
                })
            });
            order.insert(task.id(), index);
        }
        let mut said = Vec::with_capacity(self.checks.len());
        while let Some(joined) = runs.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(error) => (error.id(), Err(Unhealthy::new("the check panicked"))),
            };
            said.push((order.get(&id).copied().unwrap_or(usize::MAX), result));
        }
        said.sort_by_key(|(index, _)| *index);
        let mut reasons = Vec::new();
        let mut checks = Map::new();
        for (index, said) in said {
            let name = self
                .checks
                .get(index)
                .map_or("unknown", |check| check.name())
                .to_owned();
            let (status, detail) = match said {
                Ok(detail) => ("ok", detail),
                Err(unhealthy) => {
                    reasons.push(format!("{name}: {}", unhealthy.reason));
                    ("unavailable", unhealthy.detail)
                }
            };
            let mut entry = Map::new();
            entry.insert("status".to_owned(), Value::from(status));
            match detail {
                Value::Object(fields) => entry.extend(fields),
                Value::Null => {}
                other => {
                    entry.insert("detail".to_owned(), other);
                }
            }
            checks.insert(name, Value::Object(entry));
        }
        HealthReport { reasons, checks }
    }
}

/// What a [`Health`] check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Why the process is unhealthy, one line per failing check, `"<check>: <reason>"`;
    /// empty when healthy.
    pub reasons: Vec<String>,
    /// What each check said, by name: `{"status": "ok" | "unavailable", ...}`.
    pub checks: Map<String, Value>,
}

impl HealthReport {
    /// Whether every check passed.
    pub fn healthy(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The report as served: `{"status": "ok" | "unavailable", "reasons": [...], "checks": {...}}`.
    pub fn to_json(&self) -> Value {
        let status = if self.healthy() { "ok" } else { "unavailable" };
        serde_json::json!({
            "status": status,
            "reasons": self.reasons,
            "checks": self.checks,
        })
    }
}
