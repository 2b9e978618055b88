//! The state of one request in flight: what the layer measured and took from the
//! request head, what a response hook or the handle set, and whether it ended. The
//! layer writes it, the [`UsageHandle`](crate::UsageHandle) wraps it for handlers, and
//! the recorder's worker takes the finished record out of it; it lives below all three.

use std::sync::{Arc, Mutex};

use super::{Anchor, Extracted};
use crate::record::{Outcome, TokenUsage, UsageRecord};

/// The shared state of one request, reusable once its record is taken.
pub(crate) type Slot = Arc<Mutex<InFlight>>;

/// The record of a request in flight, and what the handle said about it.
///
/// A request writes only what it measured and what it read from the request head; the
/// whole [`UsageRecord`] is assembled by the recorder's worker. The state then stays a
/// few cache lines long, which matters because it is written on one core and read on
/// another for every request.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// `None` once the recorder's worker has taken the record.
    measured: Option<Measured>,
    /// The request-side values, not yet turned into the record's text fields.
    extracted: Option<Extracted>,
    /// A record begun before the request ended (see [`Base`]).
    base: Base,
    /// Boxed, and only once a value is set: most requests set none. Kept, emptied,
    /// when the state is reused.
    overrides: Option<Box<Overrides>>,
    /// Set when the request ended: from then on the handle changes nothing.
    finished: bool,
    /// What runs with the finished record (see [`OnRecorded`]); `None` for most
    /// requests. Several are chained into one, so a request that has one allocates
    /// only that.
    on_recorded: Option<OnRecorded>,
}

/// A function told the finished, priced record of its request by the recorder's worker,
/// before the record is written; dropped unrun if the record never gets there (a full
/// queue, a recorder that shut down).
pub(crate) struct OnRecorded(pub(crate) Box<dyn FnOnce(&UsageRecord) + Send>);

impl std::fmt::Debug for OnRecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRecorded")
    }
}

/// What the layer measured of a request: the record's fields known on the request path.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) method: Option<http::Method>,
    pub(crate) request_bytes: Option<u64>,
    pub(crate) status: Option<http::StatusCode>,
    pub(crate) ttfb: Option<std::time::Duration>,
    pub(crate) outcome: Outcome,
    pub(crate) duration: std::time::Duration,
    pub(crate) response_bytes: u64,
}

impl InFlight {
    /// The state of a request that has just begun.
    pub(crate) fn new(measured: Measured, extracted: Extracted, base: Base) -> Self {
        InFlight {
            measured: Some(measured),
            extracted: Some(extracted),
            base,
            overrides: None,
            finished: false,
            on_recorded: None,
        }
    }

    /// Makes an emptied state (its record taken) the state of a new request. The
    /// overrides and the base were emptied when the record was taken.
    pub(crate) fn reuse(&mut self, measured: Measured, extracted: Extracted) {
        self.measured = Some(measured);
        self.extracted = Some(extracted);
        self.finished = false;
    }

    /// Whether the request ended: from then on nothing changes the record.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Lets `f` write into the whole record before the request ends (a response hook).
    /// `None` once the record is finished.
    pub(crate) fn with_record<T>(&mut self, f: impl FnOnce(&mut UsageRecord) -> T) -> Option<T> {
        if self.finished {
            return None;
        }
        let measured = self.measured.as_mut()?;
        let mut record = match std::mem::replace(&mut self.base, Base::None) {
            Base::Used(record) => record,
            Base::Spare(record) => record,
            Base::None => Box::new(UsageRecord::unstarted()),
        };
        // What the request measured so far is the record's; what `f` changes of it wins.
        record.method.clone_from(&measured.method);
        record.request_bytes = measured.request_bytes;
        let result = f(&mut record);
        measured.method.clone_from(&record.method);
        measured.request_bytes = record.request_bytes;
        self.base = Base::Used(record);
        Some(result)
    }

    /// Marks the request as ended and lets `f` complete what was measured. Returns
    /// `false` (and does nothing) if it had already ended.
    pub(crate) fn finish(&mut self, f: impl FnOnce(&mut Measured)) -> bool {
        if self.finished {
            return false;
        }
        self.finished = true;
        if let Some(measured) = self.measured.as_mut() {
            f(measured);
        }
        true
    }

    /// Takes the record out, completed: what the response hook set wins over the
    /// extractors' values, and the handle's values win over both. `None` if already taken.
    pub(crate) fn take_record(&mut self, anchor: &Anchor) -> Option<UsageRecord> {
        // `take` leaves only a tag behind: the request's core keeps the rest of the state.
        let measured = self.measured.take()?;
        let mut record = match std::mem::replace(&mut self.base, Base::None) {
            Base::Used(mut boxed) => {
                let record = std::mem::replace(&mut *boxed, UsageRecord::unstarted());
                self.base = Base::Spare(boxed);
                record
            }
            spare => {
                self.base = spare;
                UsageRecord::unstarted()
            }
        };
        measured.apply(&mut record);
        if let Some(extracted) = self.extracted.take() {
            extracted.fill(&mut record, anchor);
        }
        if let Some(overrides) = self.overrides.as_deref_mut() {
            std::mem::take(overrides).apply(&mut record);
        }
        Some(record)
    }

    /// Adds a function to run with the finished record (after those added before),
    /// unless the request ended.
    pub(crate) fn on_recorded(&mut self, f: OnRecorded) {
        if self.finished {
            return;
        }
        self.on_recorded = Some(match self.on_recorded.take() {
            None => f,
            Some(first) => OnRecorded(Box::new(move |record: &UsageRecord| {
                (first.0)(record);
                (f.0)(record);
            })),
        });
    }

    /// Takes the record out, completed, with what is to run with it; in one go, so that
    /// the worker locks the state once.
    pub(crate) fn take_finished(
        &mut self,
        anchor: &Anchor,
    ) -> (Option<UsageRecord>, Option<OnRecorded>) {
        (self.take_record(anchor), self.on_recorded.take())
    }

    /// Lets `f` change the values set through the handle, unless the request ended.
    pub(crate) fn with_overrides(&mut self, f: impl FnOnce(&mut Overrides)) {
        if !self.finished {
            f(self.overrides.get_or_insert_with(Box::default));
        }
    }

    /// The values taken from the request head, until the record is taken.
    // Read by the budget layer, which needs a store.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn extracted(&self) -> Option<&Extracted> {
        self.extracted.as_ref()
    }

    /// The values set through the handle.
    pub(crate) fn overrides(&self) -> Option<&Overrides> {
        self.overrides.as_deref()
    }
}

impl Measured {
    /// A request that has just arrived.
    pub(crate) fn arrived(method: http::Method, request_bytes: Option<u64>) -> Self {
        Measured {
            method: Some(method),
            request_bytes,
            status: None,
            ttfb: None,
            outcome: Outcome::Success,
            duration: std::time::Duration::ZERO,
            response_bytes: 0,
        }
    }

    pub(crate) fn of(record: &UsageRecord) -> Self {
        Measured {
            method: record.method.clone(),
            request_bytes: record.request_bytes,
            status: record.status,
            ttfb: record.ttfb,
            outcome: record.outcome,
            duration: record.duration,
            response_bytes: record.response_bytes,
        }
    }

    pub(crate) fn apply(self, record: &mut UsageRecord) {
        record.method = self.method;
        record.request_bytes = self.request_bytes;
        record.status = self.status;
        record.ttfb = self.ttfb;
        record.outcome = self.outcome;
        record.duration = self.duration;
        record.response_bytes = self.response_bytes;
    }
}

/// A whole record written into before the request ended: by a response hook, or the
/// record a detached handle starts from. Most requests need none; the allocation of one
/// that did is kept for the state's next request.
#[derive(Debug)]
pub(crate) enum Base {
    None,
    /// An allocation to reuse, holding a blank record.
    Spare(Box<UsageRecord>),
    /// This request's record so far.
    Used(Box<UsageRecord>),
}

/// Values set through the handle; applied over the record when it is finished.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub(crate) user: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) requested_model: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) tokens: Option<TokenUsage>,
    pub(crate) cost_micros: Option<i64>,
    pub(crate) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) failed: Option<Outcome>,
}

impl Overrides {
    fn apply(self, record: &mut UsageRecord) {
        let Overrides {
            user,
            service,
            model,
            requested_model,
            provider,
            tokens,
            cost_micros,
            metadata,
            failed,
        } = self;
        for (field, value) in [
            (&mut record.user, user),
            (&mut record.service, service),
            (&mut record.model, model),
            (&mut record.requested_model, requested_model),
            (&mut record.provider, provider),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        // A response that named no model: the one asked for is the best known.
        if record.model.is_none() {
            record.model.clone_from(&record.requested_model);
        }
        if let Some(tokens) = tokens {
            record.tokens = tokens;
        }
        if cost_micros.is_some() {
            record.cost_micros = cost_micros;
        }
        for (key, value) in metadata.into_iter().flatten() {
            record.insert_metadata(key, value);
        }
        // An application-level failure only replaces a success: a cancelled or failed
        // transfer says more. A refusal replaces anything: the service never ran.
        match (failed, record.outcome) {
            (Some(Outcome::Refused), _) => record.outcome = Outcome::Refused,
            (Some(outcome), Outcome::Success) => record.outcome = outcome,
            _ => {}
        }
    }
}
