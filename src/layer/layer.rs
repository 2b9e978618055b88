use std::sync::{Arc, OnceLock};

use tower::Layer;

use super::extractors::Extractors;
use super::service::{LayerState, Usage};
use crate::recorder::Recorder;

/// Meters every request of the service it wraps; see the [module docs](crate::layer) for
/// what is recorded when.
///
/// Each setter swaps one type parameter, so fields that are not configured cost nothing.
///
/// ```
/// use axum::{routing::post, Extension, Router};
/// use tower_usage::{extract, MemorySink, Recorder, UsageHandle, UsageLayer};
///
/// async fn chat(Extension(usage): Extension<UsageHandle>) -> &'static str {
///     usage.set_model("gpt-4o");
///     usage.add_tokens(1000, 100);
///     "…"
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let recorder = Recorder::builder(MemorySink::new()).spawn();
/// let app: Router = Router::new()
///     .route("/v1/chat/completions", post(chat))
///     .layer(
///         UsageLayer::new(recorder.clone())
///             .user(extract::header("x-user-id"))
///             .service(extract::fixed("chat"))
///             .model(extract::header("x-model"))
///             .country(extract::header("cf-ipcountry"))
///             .on_response(extract::usage_headers()),
///     );
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct UsageLayer<E = Extractors, R = ()> {
    recorder: Recorder,
    extractors: E,
    on_response: R,
    max_value_len: usize,
    /// What the services share, made by the first [`Layer::layer`] call of this layer
    /// or any of its clones, and shared by the later ones: axum clones the layer and
    /// calls `layer` again for every request to a route of a router without state,
    /// which must not cost an allocation each time. A setter starts a new one.
    state: Arc<OnceLock<Arc<LayerState<E, R>>>>,
}

/// The default for [`UsageLayer::max_value_len`].
const DEFAULT_MAX_VALUE_LEN: usize = 256;

impl UsageLayer {
    /// A layer that records into `recorder`, with no extractor configured yet.
    pub fn new(recorder: Recorder) -> Self {
        UsageLayer {
            recorder,
            extractors: Extractors::default(),
            on_response: (),
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            state: Arc::default(),
        }
    }
}

impl<U, S, M, P, C, R> UsageLayer<Extractors<U, S, M, P, C>, R> {
    /// Where the user comes from.
    pub fn user<T>(self, user: T) -> UsageLayer<Extractors<T, S, M, P, C>, R> {
        self.map_extractors(|x| Extractors {
            user,
            service: x.service,
            model: x.model,
            provider: x.provider,
            country: x.country,
        })
    }

    /// Where the service name comes from.
    pub fn service<T>(self, service: T) -> UsageLayer<Extractors<U, T, M, P, C>, R> {
        self.map_extractors(|x| Extractors {
            user: x.user,
            service,
            model: x.model,
            provider: x.provider,
            country: x.country,
        })
    }

    /// Where the model comes from (the requested one; a handler can set the resolved one
    /// through the [`UsageHandle`](crate::UsageHandle)).
    pub fn model<T>(self, model: T) -> UsageLayer<Extractors<U, S, T, P, C>, R> {
        self.map_extractors(|x| Extractors {
            user: x.user,
            service: x.service,
            model,
            provider: x.provider,
            country: x.country,
        })
    }

    /// Where the provider comes from.
    pub fn provider<T>(self, provider: T) -> UsageLayer<Extractors<U, S, M, T, C>, R> {
        self.map_extractors(|x| Extractors {
            user: x.user,
            service: x.service,
            model: x.model,
            provider,
            country: x.country,
        })
    }

    /// Where the country comes from, typically a header set by the CDN or load balancer
    /// (`extract::header("cf-ipcountry")`).
    pub fn country<T>(self, country: T) -> UsageLayer<Extractors<U, S, M, P, T>, R> {
        self.map_extractors(|x| Extractors {
            user: x.user,
            service: x.service,
            model: x.model,
            provider: x.provider,
            country,
        })
    }
}

impl<E, R> UsageLayer<E, R> {
    fn map_extractors<E2>(self, f: impl FnOnce(E) -> E2) -> UsageLayer<E2, R> {
        UsageLayer {
            recorder: self.recorder,
            extractors: f(self.extractors),
            on_response: self.on_response,
            max_value_len: self.max_value_len,
            state: Arc::default(),
        }
    }

    /// The hook that reads usage from the response head (see
    /// [`OnResponse`](crate::extract::OnResponse)). It is cloned for each request, so keep
    /// it cheap to clone (the built-ins and plain closures are).
    pub fn on_response<T>(self, on_response: T) -> UsageLayer<E, T> {
        UsageLayer {
            recorder: self.recorder,
            extractors: self.extractors,
            on_response,
            max_value_len: self.max_value_len,
            state: Arc::default(),
        }
    }

    /// The longest extracted value kept, in bytes (default 256). Longer values are cut on
    /// a character boundary, so a huge header cannot bloat the records.
    pub fn max_value_len(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self.state = Arc::default();
        self
    }

    /// The recorder this layer writes to.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

impl<Svc, E: Clone, R: Clone> Layer<Svc> for UsageLayer<E, R> {
    type Service = Usage<Svc, E, R>;

    fn layer(&self, inner: Svc) -> Self::Service {
        let state = self.state.get_or_init(|| {
            Arc::new(LayerState {
                recorder: self.recorder.clone(),
                extractors: self.extractors.clone(),
                on_response: self.on_response.clone(),
                max_value_len: self.max_value_len,
            })
        });
        Usage::new(inner, Arc::clone(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySink;

    #[tokio::test]
    async fn clones_share_the_services_state_until_a_setter_changes_it() {
        let recorder = Recorder::builder(MemorySink::new()).spawn();
        let layer = UsageLayer::new(recorder.clone());
        // As axum does for every request to a route of a router without state.
        let first = layer.clone().layer(());
        let again = layer.clone().layer(());
        assert!(Arc::ptr_eq(first.state(), again.state()));
        let changed = layer.max_value_len(64).layer(());
        assert!(!Arc::ptr_eq(first.state(), changed.state()));
        assert_eq!(changed.state().max_value_len, 64);
        recorder.shutdown().await;
    }
}
