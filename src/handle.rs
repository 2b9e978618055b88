//! [`UsageHandle`]: what handlers and inner layers tell the record while a request runs.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::inflight::{Anchor, Base, Extracted, InFlight, Measured, OnRecorded, Slot};
use crate::record::{Outcome, TokenUsage, UsageRecord};

/// A handle to the usage record of the request being served.
///
/// [`UsageLayer`](crate::UsageLayer) puts one into the request extensions, so a handler (or
/// any layer inside the usage layer) can say what the request consumed. What the handle
/// holds wins over the layer's extractors and [`OnResponse`](crate::extract::OnResponse)
/// hooks: the handler knows best.
///
/// Cloning is cheap; all clones speak of the same record. Once the record is finished (the
/// response body ended, failed or was dropped), further calls are ignored.
///
/// ```
/// use axum::{routing::post, Extension, Router};
/// use tower_usage::UsageHandle;
///
/// async fn chat(Extension(usage): Extension<UsageHandle>) -> &'static str {
///     usage.set_model("gpt-4o");
///     usage.set_provider("openai");
///     usage.add_tokens(1000, 100);
///     usage.set_cost_micros(2_500);
///     "hello"
/// }
///
/// let app: Router = Router::new().route("/chat", post(chat));
/// ```
///
/// Outside a request, [`UsageHandle::detached`] makes a handle whose values can be read
/// back, for testing handlers on their own.
#[derive(Debug, Clone)]
pub struct UsageHandle {
    inner: Arc<Mutex<InFlight>>,
}

impl Default for UsageHandle {
    fn default() -> Self {
        Self::detached()
    }
}

impl UsageHandle {
    /// A handle that belongs to no request: what it is told can be read back with its
    /// getters, and goes nowhere else.
    ///
    /// ```
    /// use tower_usage::UsageHandle;
    ///
    /// let usage = UsageHandle::detached();
    /// usage.add_tokens(10, 2);
    /// usage.add_tokens(5, 1);
    /// assert_eq!(usage.tokens().map(|t| t.total()), Some(18));
    /// ```
    pub fn detached() -> Self {
        Self::attached(UsageRecord::builder().build(), Extracted::default())
    }

    /// A handle whose record starts as `record` (detached handles and tests).
    pub(crate) fn attached(record: UsageRecord, extracted: Extracted) -> Self {
        let measured = Measured::of(&record);
        Self::new_state(measured, extracted, Base::Used(Box::new(record)))
    }

    fn new_state(measured: Measured, extracted: Extracted, base: Base) -> Self {
        UsageHandle {
            inner: Arc::new(Mutex::new(InFlight::new(measured, extracted, base))),
        }
    }

    /// The handle of a request the layer meters. Its state lives in `slot`, an emptied
    /// one handed back by the recorder, when there is one.
    pub(crate) fn attached_in(
        slot: Option<Slot>,
        measured: Measured,
        extracted: Extracted,
    ) -> Self {
        if let Some(mut slot) = slot {
            if let Some(mutex) = Arc::get_mut(&mut slot) {
                mutex.clear_poison();
                let reused = mutex.get_mut().unwrap_or_else(PoisonError::into_inner);
                reused.reuse(measured, extracted);
                return UsageHandle { inner: slot };
            }
        }
        Self::new_state(measured, extracted, Base::None)
    }

    /// The emptied state, for reuse, when no clone of this handle is left.
    pub(crate) fn into_slot(mut self) -> Option<Slot> {
        Arc::get_mut(&mut self.inner)?;
        Some(self.inner)
    }

    /// A poisoned lock only means another thread panicked while holding it: the values
    /// are still plain data, so keep using them rather than panic here as well.
    pub(crate) fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets `f` write into the whole record before the request ends (a response hook).
    /// `None` once the record is finished.
    pub(crate) fn with_record<T>(&self, f: impl FnOnce(&mut UsageRecord) -> T) -> Option<T> {
        self.lock().with_record(f)
    }

    /// Marks the request as ended and lets `f` complete what was measured. Returns
    /// `false` (and does nothing) if it had already ended.
    pub(crate) fn finish(&self, f: impl FnOnce(&mut Measured)) -> bool {
        self.lock().finish(f)
    }

    /// Takes the record out, completed (see [`InFlight::take_record`]; `None` if taken
    /// already), and what is to run with it (the recorder's worker), under one lock.
    pub(crate) fn take_finished(
        &self,
        anchor: &Anchor,
    ) -> (Option<UsageRecord>, Option<OnRecorded>) {
        self.lock().take_finished(anchor)
    }

    fn with_overrides(&self, f: impl FnOnce(&mut crate::inflight::Overrides)) {
        self.lock().with_overrides(f);
    }

    fn read<T>(&self, f: impl FnOnce(&crate::inflight::Overrides) -> T) -> T {
        match self.lock().overrides() {
            Some(overrides) => f(overrides),
            None => f(&Default::default()),
        }
    }

    /// Fills what a response body said it used, where the handle holds nothing yet (what
    /// a handler set wins), in one lock.
    pub(crate) fn fill_from_response(&self, tokens: Option<TokenUsage>, model: Option<String>) {
        self.with_overrides(|o| {
            if o.tokens.is_none() {
                o.tokens = tokens;
            }
            if o.model.is_none() {
                o.model = model;
            }
        });
    }

    /// Sets the user (for example once the handler has authenticated the caller).
    pub fn set_user(&self, user: impl Into<String>) {
        let user = user.into();
        self.with_overrides(|o| o.user = Some(user));
    }

    /// Sets the service.
    pub fn set_service(&self, service: impl Into<String>) {
        let service = service.into();
        self.with_overrides(|o| o.service = Some(service));
    }

    /// Sets the model.
    pub fn set_model(&self, model: impl Into<String>) {
        let model = model.into();
        self.with_overrides(|o| o.model = Some(model));
    }

    /// Sets the model the request asked for (the model that answered may differ).
    pub fn set_requested_model(&self, model: impl Into<String>) {
        let model = model.into();
        self.with_overrides(|o| o.requested_model = Some(model));
    }

    /// Sets the provider.
    pub fn set_provider(&self, provider: impl Into<String>) {
        let provider = provider.into();
        self.with_overrides(|o| o.provider = Some(provider));
    }

    /// Adds input and output tokens to what the handle holds.
    pub fn add_tokens(&self, input: u64, output: u64) {
        self.add_token_usage(TokenUsage::new(input, output));
    }

    /// Adds a whole [`TokenUsage`] (cached input included).
    pub fn add_token_usage(&self, usage: TokenUsage) {
        self.with_overrides(|o| *o.tokens.get_or_insert_with(TokenUsage::default) += usage);
    }

    /// Replaces the tokens the handle holds.
    pub fn set_tokens(&self, usage: TokenUsage) {
        self.with_overrides(|o| o.tokens = Some(usage));
    }

    /// Sets the cost in integer micro-units.
    pub fn set_cost_micros(&self, cost: i64) {
        self.with_overrides(|o| o.cost_micros = Some(cost));
    }

    /// Adds to the cost in integer micro-units (saturating).
    pub fn add_cost_micros(&self, cost: i64) {
        self.with_overrides(|o| {
            o.cost_micros = Some(o.cost_micros.unwrap_or(0).saturating_add(cost));
        });
    }

    /// Adds `key: value` to the record's metadata.
    pub fn insert_metadata(&self, key: impl Into<String>, value: impl Into<serde_json::Value>) {
        let (key, value) = (key.into(), value.into());
        self.with_overrides(|o| {
            o.metadata
                .get_or_insert_with(Default::default)
                .insert(key, value);
        });
    }

    /// The user set through the handle.
    pub fn user(&self) -> Option<String> {
        self.read(|o| o.user.clone())
    }

    /// The model set through the handle.
    pub fn model(&self) -> Option<String> {
        self.read(|o| o.model.clone())
    }

    /// The provider set through the handle.
    pub fn provider(&self) -> Option<String> {
        self.read(|o| o.provider.clone())
    }

    /// The service set through the handle.
    pub fn service(&self) -> Option<String> {
        self.read(|o| o.service.clone())
    }

    /// The tokens counted through the handle.
    pub fn tokens(&self) -> Option<TokenUsage> {
        self.read(|o| o.tokens)
    }

    /// The cost set through the handle.
    pub fn cost_micros(&self) -> Option<i64> {
        self.read(|o| o.cost_micros)
    }

    /// The metadata set through the handle.
    pub fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        self.read(|o| o.metadata.clone().unwrap_or_default())
    }

    /// Marks the request as failed although its HTTP exchange succeeded (a JSON-RPC error
    /// in a 200 response, say): a record that would end as
    /// [`Success`](Outcome::Success) ends with `outcome` instead.
    /// [`Refused`](Outcome::Refused) replaces whatever outcome the record would have.
    ///
    /// ```
    /// use tower_usage::{Outcome, UsageHandle};
    /// let usage = UsageHandle::detached();
    /// usage.mark_failed(Outcome::ClientError);
    /// ```
    pub fn mark_failed(&self, outcome: Outcome) {
        self.with_overrides(|o| o.failed = Some(outcome));
    }

    /// Runs `f` with the request's finished record, in the recorder's worker after
    /// pricing and before the record is written: what an inner layer does to learn what
    /// a request it let through really used. If the record never reaches the worker (a
    /// full queue drops it, the recorder shut down) `f` is dropped without running, so
    /// whatever it owns is released either way. Ignored once the request has ended, and
    /// on a [`detached`](Self::detached) handle `f` is dropped with the handle.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use tower_usage::UsageHandle;
    ///
    /// let tokens = Arc::new(AtomicU64::new(0));
    /// let usage = UsageHandle::detached();
    /// let seen = Arc::clone(&tokens);
    /// usage.on_recorded(move |record| {
    ///     seen.fetch_add(record.tokens.total(), Ordering::Relaxed);
    /// });
    /// ```
    pub fn on_recorded(&self, f: impl FnOnce(&UsageRecord) + Send + 'static) {
        self.lock().on_recorded(OnRecorded(Box::new(f)));
    }

    /// Reads the request's user, service, model and provider as its record will hold
    /// them so far: a value set through the handle, else the layer's extractor's, with
    /// surrounding white space trimmed and blanks left out.
    // Read by the budget layer, which needs a store.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn with_names<T>(&self, f: impl FnOnce([Option<&str>; 4]) -> T) -> T {
        let state = self.lock();
        let extracted = state.extracted();
        let texts = [
            extracted.and_then(|e| e.user.as_ref()).map(|v| v.as_str()),
            extracted
                .and_then(|e| e.service.as_ref())
                .map(|v| v.as_str()),
            extracted.and_then(|e| e.model.as_ref()).map(|v| v.as_str()),
            extracted
                .and_then(|e| e.provider.as_ref())
                .map(|v| v.as_str()),
        ];
        let set = state.overrides().map(|o| {
            [
                o.user.as_deref(),
                o.service.as_deref(),
                o.model.as_deref(),
                o.provider.as_deref(),
            ]
        });
        let mut names = [None; 4];
        for (i, name) in names.iter_mut().enumerate() {
            let value = set.and_then(|set| set[i]).or_else(|| texts[i].as_deref());
            *name = value.map(str::trim).filter(|v| !v.is_empty());
        }
        f(names)
    }

    /// Whether the record has been finished (further calls are ignored).
    pub fn is_finished(&self) -> bool {
        self.lock().is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_values_win_over_the_record() {
        let record = UsageRecord::builder()
            .user("from-header")
            .model("requested")
            .tokens(TokenUsage::new(1, 1))
            .metadata(serde_json::json!({"a": 1, "b": 1}))
            .build();
        let handle = UsageHandle::attached(record, Extracted::default());
        handle.set_model("resolved");
        handle.add_tokens(10, 20);
        handle.add_token_usage(TokenUsage::new(1, 0).with_cached_input(1));
        handle.add_cost_micros(5);
        handle.add_cost_micros(5);
        handle.insert_metadata("b", 2);
        let record = handle.take_finished(&Anchor::now()).0.unwrap();
        assert_eq!(record.user.as_deref(), Some("from-header"));
        assert_eq!(record.model.as_deref(), Some("resolved"));
        assert_eq!(record.tokens, TokenUsage::new(11, 20).with_cached_input(1));
        assert_eq!(record.cost_micros, Some(10));
        assert_eq!(record.metadata, serde_json::json!({"a": 1, "b": 2}));
    }

    #[test]
    fn functions_told_of_the_record_run_in_order_and_once() {
        use std::sync::{Arc, Mutex};
        let handle = UsageHandle::attached(UsageRecord::builder().build(), Extracted::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for name in ["first", "second"] {
            let seen = Arc::clone(&seen);
            handle.on_recorded(move |_| seen.lock().unwrap().push(name));
        }
        let (record, run) = handle.take_finished(&Anchor::now());
        (run.expect("the functions").0)(&record.unwrap());
        assert_eq!(*seen.lock().unwrap(), ["first", "second"]);
        assert!(handle.take_finished(&Anchor::now()).1.is_none());
    }

    #[test]
    fn calls_after_finish_are_ignored() {
        let handle = UsageHandle::detached();
        assert!(!handle.is_finished());
        assert!(handle.finish(|measured| measured.response_bytes = 7));
        assert!(handle.is_finished());
        assert!(
            !handle.finish(|measured| measured.response_bytes = 8),
            "only once"
        );
        handle.set_user("late");
        assert_eq!(handle.user(), None);
        let record = handle.take_finished(&Anchor::now()).0.unwrap();
        assert_eq!((record.user, record.response_bytes), (None, 7));
        assert!(handle.take_finished(&Anchor::now()).0.is_none());
    }

    #[test]
    fn a_poisoned_handle_keeps_working() {
        let handle = UsageHandle::detached();
        let clone = handle.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.lock();
            panic!("poison the lock");
        })
        .join();
        handle.set_user("still fine");
        assert_eq!(handle.user().as_deref(), Some("still fine"));
    }
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    fn finished(handle: &UsageHandle) -> UsageRecord {
        assert!(handle.finish(|_| {}));
        handle.take_finished(&Anchor::now()).0.expect("a record")
    }

    #[test]
    fn a_reused_state_keeps_nothing_of_the_last_request() {
        let first = UsageHandle::attached(UsageRecord::builder().build(), Extracted::default());
        first.set_model("gpt-4o");
        first.add_tokens(10, 1);
        first.insert_metadata("k", "v");
        first.mark_failed(Outcome::ServerError);
        let record = finished(&first);
        assert_eq!(record.model.as_deref(), Some("gpt-4o"));
        let slot = first.into_slot().expect("no clone left");

        let second = UsageHandle::attached_in(
            Some(slot),
            Measured::arrived(http::Method::GET, None),
            Extracted::default(),
        );
        assert_eq!(second.model(), None);
        second.set_user("bob");
        let record = finished(&second);
        assert_eq!(record.model, None);
        assert_eq!(record.tokens, TokenUsage::default());
        assert!(record.metadata.is_null());
        assert_eq!(record.outcome, Outcome::Success);
        assert_eq!(record.user.as_deref(), Some("bob"));
    }

    #[test]
    fn a_hook_writes_under_the_handle_and_its_record_is_not_reused() {
        let measured = || Measured::arrived(http::Method::POST, Some(10));
        let handle = UsageHandle::attached_in(None, measured(), Extracted::default());
        handle.set_model("from-handle");
        handle.with_record(|record| {
            assert_eq!(record.method, Some(http::Method::POST), "measured so far");
            record.model = Some("from-hook".into());
            record.provider = Some("from-hook".into());
            record.request_bytes = Some(12);
        });
        assert!(handle.finish(|m| m.status = Some(http::StatusCode::OK)));
        assert!(handle.with_record(|_| ()).is_none(), "finished");
        let record = handle.take_finished(&Anchor::now()).0.unwrap();
        assert_eq!(record.model.as_deref(), Some("from-handle"));
        assert_eq!(record.provider.as_deref(), Some("from-hook"));
        assert_eq!(record.request_bytes, Some(12), "the hook's change wins");
        assert_eq!(record.status, Some(http::StatusCode::OK));

        let slot = handle.into_slot().expect("no clone left");
        let next = UsageHandle::attached_in(Some(slot), measured(), Extracted::default());
        assert!(next.finish(|_| {}));
        let record = next.take_finished(&Anchor::now()).0.unwrap();
        assert_eq!((record.model, record.provider), (None, None));
        assert_eq!(record.request_bytes, Some(10));
    }

    #[test]
    fn a_state_a_handler_still_holds_is_not_reused() {
        let handle = UsageHandle::attached(UsageRecord::builder().build(), Extracted::default());
        let kept = handle.clone();
        finished(&handle);
        assert!(handle.into_slot().is_none());
        kept.set_model("late");
        assert!(kept.into_slot().is_some(), "the last clone gives it back");
    }
}
