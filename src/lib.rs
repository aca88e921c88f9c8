//! flowhook: a NetFlow/IPFIX collector that turns flow exports into flow
//! lifecycle events for Lua scripts.
//!
//! # Layout
//! One module per pipeline stage, each owning one type that runs over a
//! bounded receiver (see `docs/architecture.md`):
//! - [`config`]: typed configuration (TOML + `FLOWHOOK__…` environment), validated at start.
//! - [`ingest`]: UDP listeners; datagrams into bounded per-shard queues, drops counted.
//! - [`decode`]: datagram → [`record::FlowRecord`]s, synchronous, per-exporter template state.
//! - [`capture`]: pcap/pcapng reading for `decode` and `replay`.
//! - [`output`]: sinks (JSON lines) behind one trait.
//! - [`telemetry`]: the one place that emits metrics and rate-limited logs.
//! - [`shard`]: the hot path of `serve`: one thread per shard runs decode and the flow table for its exporters.
//! - [`pipeline`]: wires the stages for `serve` and supervises them.
//! - [`offline`]: `decode` and `replay` of captures, inline on one thread.
//! - [`generate`]: the load generator (`flowhook generate`): exports at a set rate or flat out, or into a pcap.

pub mod alert;
pub mod capture;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod flow;
pub mod generate;
pub mod ingest;
pub mod offline;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod script;
pub mod shard;
pub mod state;
pub mod telemetry;
