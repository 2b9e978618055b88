//! The databases: one module a backend, each opening its pool, running its embedded
//! migrations and writing a batch its own way (see [`write`](super::write) for what a
//! batch writes); and the helpers that run a built statement on any of them.

pub(crate) mod exec;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod native;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod url;
