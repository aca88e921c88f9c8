//! Flow stage: normalized records → bidirectional flows → lifecycle events
//! (`protocolDetected`, `statusChanged`, `periodicUpdate`, `flowEnd`).
//!
//! In: batches of [`crate::record::FlowRecord`]s and clock ticks. Out:
//! [`event::FlowEvent`]s. Synchronous: `serve` runs one [`table::FlowTable`]
//! per flow shard thread (records routed by the flow key's hash, so one flow's
//! events come from one shard in order); `replay` runs one inline on the
//! capture's clock. Layout: `key` (normalized keys), `index` (hash → slot,
//! prefetched per datagram), `sources` (exporter and domain → 4-byte id
//! in the flow entries), `table` (state, timers,
//! eviction), `event` (events and the flow snapshot), `status` (named status
//! bits), `classify` (port → application).

pub mod classify;
pub mod event;
pub mod index;
pub mod json;
pub mod key;
pub mod sources;
pub mod status;
pub mod table;
#[cfg(test)]
mod tests;

pub use event::{EndReason, EventKind, FlowEvent, FlowView};
pub use table::{FlowTable, TableConfig};
