//! Lifecycle events and the flow snapshot they carry.
//!
//! In: built by the flow table. Out: to the sinks as JSON
//! (`{"event": …, "time": …, "flow": {…}}`) and
//! to the script runner. `FlowView` uses the flat key vocabulary of
//! `docs/flow-record.md` ("Flow vocabulary"), the same keys scripts read from
//! `flow.getInfo()`.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::classify::l4_name;
use super::status::StatusSet;
use crate::enrich::GeoInfo;
use crate::record::rfc3339_ms;

/// The four events of the ntopng flow-script model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ProtocolDetected,
    StatusChanged,
    PeriodicUpdate,
    FlowEnd,
}

impl EventKind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [EventKind; 4] = [
        EventKind::ProtocolDetected,
        EventKind::StatusChanged,
        EventKind::PeriodicUpdate,
        EventKind::FlowEnd,
    ];

    /// ntopng's hook name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ProtocolDetected => "protocolDetected",
            EventKind::StatusChanged => "statusChanged",
            EventKind::PeriodicUpdate => "periodicUpdate",
            EventKind::FlowEnd => "flowEnd",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn configuration_knows_every_event_name() {
        let names: Vec<&str> = super::EventKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, crate::config::EVENT_NAMES);
    }

    /// Telemetry indexes its counters with `as usize`.
    #[test]
    fn all_lists_follow_declaration_order() {
        for (i, k) in super::EventKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, r) in super::EndReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No record for the idle timeout.
    Idle,
    /// The exporter said so (IE 136: idle timeout at the exporter).
    ExporterIdle,
    /// IE 136 end of flow detected.
    EndOfFlow,
    /// IE 136 forced end.
    ForcedEnd,
    /// IE 136 lack of resources.
    LackOfResources,
    /// TCP FIN seen in both directions.
    TcpFin,
    /// TCP RST seen.
    TcpRst,
    /// The table was full and this flow was the least recently updated.
    Evicted,
    /// flowhook stopped (or the capture of `replay` ended).
    Shutdown,
}

impl EndReason {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [EndReason; 9] = [
        EndReason::Idle,
        EndReason::ExporterIdle,
        EndReason::EndOfFlow,
        EndReason::ForcedEnd,
        EndReason::LackOfResources,
        EndReason::TcpFin,
        EndReason::TcpRst,
        EndReason::Evicted,
        EndReason::Shutdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::ExporterIdle => "exporter_idle",
            EndReason::EndOfFlow => "end_of_flow",
            EndReason::ForcedEnd => "forced_end",
            EndReason::LackOfResources => "lack_of_resources",
            EndReason::TcpFin => "tcp_fin",
            EndReason::TcpRst => "tcp_rst",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// A snapshot of one flow, oriented client → server.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowView {
    /// Stable flow id (hash of the flow key).
    pub key: u64,
    pub exporter: IpAddr,
    pub observation_domain: u32,
    pub vlan: u16,
    pub cli_ip: IpAddr,
    pub srv_ip: IpAddr,
    pub cli_port: u16,
    pub srv_port: u16,
    pub proto: u8,
    pub l7: Arc<str>,
    pub cli2srv_bytes: u64,
    pub srv2cli_bytes: u64,
    pub cli2srv_packets: u64,
    pub srv2cli_packets: u64,
    pub cli_tcp_flags: u8,
    pub srv_tcp_flags: u8,
    pub first_ms: i64,
    pub last_ms: i64,
    pub in_if: u32,
    pub out_if: u32,
    /// Exporter's sampling interval (1 in N; 0: not sampled or unknown); counters are already scaled.
    pub sampling_interval: u32,
    /// Where the sampling interval came from (absent when no rate is known).
    pub sampling_source: Option<crate::record::SamplingSource>,
    /// Enrichment of the client's and the server's address.
    pub cli_geo: Arc<GeoInfo>,
    pub srv_geo: Arc<GeoInfo>,
    pub status: StatusSet,
    pub score: u16,
    /// Client and server scores scripts gave (ntopng 4.x `triggerStatus`); 0 when none.
    pub cli_score: u16,
    pub srv_score: u16,
    pub end_reason: Option<EndReason>,
}

impl FlowView {
    pub fn duration_ms(&self) -> i64 {
        self.last_ms.saturating_sub(self.first_ms).max(0)
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Serialize for FlowView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("key", &format!("{:016x}", self.key))?;
        m.serialize_entry("cli.ip", &self.cli_ip)?;
        m.serialize_entry("srv.ip", &self.srv_ip)?;
        m.serialize_entry("cli.port", &self.cli_port)?;
        m.serialize_entry("srv.port", &self.srv_port)?;
        match l4_name(self.proto) {
            Some(n) => m.serialize_entry("proto.l4", n)?,
            None => m.serialize_entry("proto.l4", &self.proto)?,
        }
        m.serialize_entry("proto.l7", &*self.l7)?;
        m.serialize_entry("cli2srv.bytes", &self.cli2srv_bytes)?;
        m.serialize_entry("srv2cli.bytes", &self.srv2cli_bytes)?;
        m.serialize_entry("cli2srv.packets", &self.cli2srv_packets)?;
        m.serialize_entry("srv2cli.packets", &self.srv2cli_packets)?;
        m.serialize_entry("cli2srv.tcp_flags", &self.cli_tcp_flags)?;
        m.serialize_entry("srv2cli.tcp_flags", &self.srv_tcp_flags)?;
        m.serialize_entry("first_seen", &secs(self.first_ms))?;
        m.serialize_entry("last_seen", &secs(self.last_ms))?;
        m.serialize_entry("duration", &secs(self.duration_ms()))?;
        m.serialize_entry("exporter", &self.exporter)?;
        m.serialize_entry("observation_domain", &self.observation_domain)?;
        m.serialize_entry("vlan", &self.vlan)?;
        m.serialize_entry("in_if", &self.in_if)?;
        m.serialize_entry("out_if", &self.out_if)?;
        m.serialize_entry("sampling_interval", &self.sampling_interval)?;
        if let Some(s) = self.sampling_source {
            m.serialize_entry("sampling_source", s.as_str())?;
        }
        for (side, g) in [("cli", &self.cli_geo), ("srv", &self.srv_geo)] {
            geo_entries(&mut m, side, g)?;
        }
        let owned = self.status.names();
        let names: Vec<&str> = owned.iter().map(|n| &**n).collect();
        m.serialize_entry("status", &names)?;
        m.serialize_entry("score", &self.score)?;
        if self.cli_score > 0 || self.srv_score > 0 {
            m.serialize_entry("cli.score", &self.cli_score)?;
            m.serialize_entry("srv.score", &self.srv_score)?;
        }
        if let Some(r) = self.end_reason {
            m.serialize_entry("end_reason", r.name())?;
        }
        m.end()
    }
}

/// Keys of one side's enrichment (`cli.country`, …); values it does not have are left out.
fn geo_entries<M: SerializeMap>(m: &mut M, side: &str, g: &GeoInfo) -> Result<(), M::Error> {
    if let Some(v) = &g.country {
        m.serialize_entry(&format!("{side}.country"), &**v)?;
    }
    if let Some(v) = &g.city {
        m.serialize_entry(&format!("{side}.city"), &**v)?;
    }
    if let (Some(lat), Some(lon)) = (g.latitude, g.longitude) {
        m.serialize_entry(&format!("{side}.latitude"), &lat)?;
        m.serialize_entry(&format!("{side}.longitude"), &lon)?;
    }
    if let Some(v) = g.asn {
        m.serialize_entry(&format!("{side}.asn"), &v)?;
    }
    if let Some(v) = &g.as_name {
        m.serialize_entry(&format!("{side}.as_name"), &**v)?;
    }
    if let Some(n) = &g.network {
        m.serialize_entry(&format!("{side}.network"), &*n.name)?;
    }
    m.serialize_entry(&format!("{side}.private"), &g.private)?;
    m.serialize_entry(&format!("{side}.local"), &g.local)?;
    Ok(())
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEvent {
    pub kind: EventKind,
    /// Table clock when it happened (wall clock in `serve`, capture time in `replay`), Unix ms.
    pub time_ms: i64,
    pub flow: FlowView,
}

impl Serialize for FlowEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("event", self.kind.name())?;
        m.serialize_entry("time", &rfc3339_ms(self.time_ms))?;
        m.serialize_entry("flow", &self.flow)?;
        m.end()
    }
}
