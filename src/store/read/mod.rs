//! The read path: a query's range planned into parts (rollups for whole slots, raw rows
//! for the edges and for what the rollups do not keep), written as one statement,
//! merged into the [`query`](crate::query) module's result types.
//!
//! | module | what it holds |
//! |---|---|
//! | [`plan`] | the parts of a range, and the statements that read them |
//! | [`detail`] | reading a heavy user's detail rows |
//! | [`analytics`] | the `DieselStore` queries: metrics, breakdowns, series, rankings |
//! | [`export`] | every selected record, streamed a page at a time |

pub(crate) mod analytics;
pub(crate) mod detail;
pub(crate) mod export;
pub(crate) mod plan;
