//! [`Alerts`]: evaluates the store's alert rules, once a minute by default, and writes
//! an event each time one starts or stops firing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::events::{self, AlertEvent, EventKind};
use super::rule::Rule;
use crate::query::Metrics;
use crate::store::{DieselStore, StoreError};

/// Evaluates the alert rules of a store; cheap to clone (clones share everything).
///
/// Each round reads the rules and measures each one's signal over its window (rules
/// with the same filter and window share one reading). A rule found past its threshold
/// while its last event is not "fired" fires; one found back while firing resolves;
/// anything else writes nothing, so a rule that stays past its threshold fires once.
/// The event is written under the rule's next number, which only one writer can take:
/// several processes may evaluate the same rules, and each crossing is still one event.
///
/// ```
/// use tower_usage::alert::{Alerts, Condition, Rule, Signal};
/// use tower_usage::store::DieselStore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DieselStore::connect("sqlite::memory:").await?;
/// store.put_rule(Rule::new("no-traffic", Signal::Requests, Condition::Below, 1.0)).await?;
/// let alerts = Alerts::new(store.clone());
/// let fired = alerts.evaluate(chrono::Utc::now()).await?;
/// assert_eq!(fired[0].rule, "no-traffic");
/// assert!(alerts.evaluate(chrono::Utc::now()).await?.is_empty()); // once, until it resolves
/// let task = alerts.spawn(Alerts::EVERY_MINUTE); // from now on, every minute
/// task.abort(); // and no more
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: DieselStore,
    rounds: AtomicU64,
    failures: AtomicU64,
    events: AtomicU64,
}

/// What [`Alerts`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertStats {
    /// Rounds of evaluation that finished.
    pub rounds: u64,
    /// Rounds that failed (the store could not be read or written).
    pub failures: u64,
    /// Events this process wrote.
    pub events: u64,
}

impl Alerts {
    /// How often rules are usually evaluated: [`spawn(Alerts::EVERY_MINUTE)`](Self::spawn).
    pub const EVERY_MINUTE: Duration = Duration::from_secs(60);

    /// Evaluates the rules of `store` when asked ([`evaluate`](Self::evaluate)) or
    /// regularly ([`spawn`](Self::spawn)).
    pub fn new(store: DieselStore) -> Alerts {
        Alerts {
            shared: Arc::new(Shared {
                store,
                rounds: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                events: AtomicU64::new(0),
            }),
        }
    }

    /// Evaluates every `every` (at least a second) on the current tokio runtime, until
    /// the returned task is aborted (or the runtime ends). A failed round is logged
    /// (once in a row) and counted, and the next one tries again.
    pub fn spawn(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.max(Duration::from_secs(1));
        tokio::spawn(evaluate_forever(self.clone(), every))
    }

    /// One round at `now`: the events this process wrote, in the order of the rules'
    /// names.
    pub async fn evaluate(&self, now: DateTime<Utc>) -> Result<Vec<AlertEvent>, StoreError> {
        let result = self.round(now).await;
        let shared = &self.shared;
        match &result {
            Ok(events) => {
                shared.rounds.fetch_add(1, Ordering::Relaxed);
                shared
                    .events
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn round(&self, now: DateTime<Utc>) -> Result<Vec<AlertEvent>, StoreError> {
        let store = &self.shared.store;
        let rules = store.rules().await?;
        let states = events::latest(store).await?;
        // One reading per filter and window, with percentiles if any rule needs them.
        let mut readings: HashMap<String, Metrics> = HashMap::new();
        let mut written = Vec::new();
        for rule in &rules {
            let key = reading_key(rule);
            if !readings.contains_key(&key) {
                let percentiles = rules
                    .iter()
                    .any(|r| reading_key(r) == key && r.signal.needs_percentiles());
                let filter = rule.window_filter(now);
                let metrics = store.light_metrics(&filter, percentiles).await?;
                readings.insert(key.clone(), metrics);
            }
            let Some(metrics) = readings.get(&key) else {
                continue;
            };
            if let Some(event) = transition(rule, metrics, states.get(&rule.name), now) {
                if events::claim(store, &event).await? {
                    written.push(event);
                }
            }
        }
        Ok(written)
    }

    /// What has been done so far.
    pub fn stats(&self) -> AlertStats {
        let s = &self.shared;
        AlertStats {
            rounds: s.rounds.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
        }
    }
}

/// Rules with the same key read the same records.
fn reading_key(rule: &Rule) -> String {
    format!(
        "{}|{}",
        rule.window_minutes,
        serde_json::to_string(&rule.filter).unwrap_or_default()
    )
}

/// The event `rule` calls for, given what its window holds and its last event (its
/// number, and whether it fired); `None` when nothing changes.
fn transition(
    rule: &Rule,
    metrics: &Metrics,
    last: Option<&(u64, bool)>,
    now: DateTime<Utc>,
) -> Option<AlertEvent> {
    if metrics.requests < rule.min_requests {
        return None;
    }
    let value = rule.signal.of(metrics)?;
    let (seq, firing) = last.copied().unwrap_or((0, false));
    let kind = match (rule.crossed(value), firing) {
        (true, false) => EventKind::Fired,
        (false, true) => EventKind::Resolved,
        _ => return None,
    };
    Some(AlertEvent {
        id: crate::id::new_v7(now),
        rule: rule.name.clone(),
        seq: seq + 1,
        kind,
        at: now,
        value,
        threshold: rule.threshold,
        signal: rule.signal,
        condition: rule.condition,
        window_minutes: rule.window_minutes,
        requests: metrics.requests,
    })
}

async fn evaluate_forever(alerts: Alerts, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        match (alerts.evaluate(Utc::now()).await, failing) {
            (Err(e), false) => {
                tracing::warn!("alert rules: evaluation failed (retrying quietly): {e}");
                failing = true;
            }
            (Err(_), true) => {}
            (Ok(events), _) => {
                failing = false;
                for e in events {
                    tracing::warn!(rule = %e.rule, value = e.value, "alert {:?}", e.kind);
                }
            }
        }
    }
}
