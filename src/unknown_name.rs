//! [`UnknownName`]: the error of parsing a name the crate's enums do not have.

/// A name that is not one of an enum's serialized names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}: {name:?}")]
pub struct UnknownName {
    kind: &'static str,
    name: String,
}

impl UnknownName {
    pub(crate) fn new(kind: &'static str, name: &str) -> Self {
        UnknownName {
            kind,
            name: name.chars().take(64).collect(),
        }
    }
}
