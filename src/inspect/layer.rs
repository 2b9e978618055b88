//! [`InspectLayer`]; its service, future and body are in the files of those names, split
//! as tower-http splits its middlewares.

use tower::Layer;

use super::service::Inspect;

/// Reads token usage and the model from response bodies; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectLayer {
    _private: (),
}

impl InspectLayer {
    /// The inspector, for JSON and server-sent-event responses.
    pub fn new() -> Self {
        InspectLayer::default()
    }
}

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inspect::new(inner)
    }
}
