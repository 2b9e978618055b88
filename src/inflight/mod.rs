//! What the layer, the [`UsageHandle`](crate::UsageHandle) and the recorder's worker
//! share about a request in flight, below all three: its state, the values taken from
//! its head, and the clock that dates it.

mod anchor;
mod extracted;
mod state;

pub(crate) use anchor::Anchor;
pub(crate) use extracted::{Extracted, Route};
pub(crate) use state::{Base, InFlight, Measured, OnRecorded, Overrides, Slot};
