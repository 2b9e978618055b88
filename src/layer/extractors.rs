//! [`Extractors`]: the layer's per-field extractors, one type parameter each.

/// The values the layer takes from each request, one extractor per field.
///
/// Built through the [`UsageLayer`](super::UsageLayer) setters; `()` means "not configured".
#[derive(Debug, Clone, Copy, Default)]
pub struct Extractors<U = (), S = (), M = (), P = (), C = ()> {
    pub(crate) user: U,
    pub(crate) service: S,
    pub(crate) model: M,
    pub(crate) provider: P,
    pub(crate) country: C,
}
