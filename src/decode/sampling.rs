//! Sampling: which rate applies to a flow record, and where it came from.
//!
//! In: rates as exporters announce them — the v5/v7 header, options data
//! per sampler id (NetFlow v9 `FLOW_SAMPLER_ID` / IPFIX `samplerId`) or per
//! PSAMP selector id (RFC 5476/5477), options data without an id, and the
//! data record itself — plus the operator's `[[sampling]]` rules. Out: for
//! each flow record a rate (1 in N) and a [`SamplingSource`], the record's
//! counters scaled by the caller.
//!
//! Precedence for a flow record (docs/flow-record.md): its own rate; the
//! selector its `selectorId` names; the sampler its `samplerId` names; the
//! exporter's rate without an id (header or options); the exporter's only
//! selector or sampler. A `[[sampling]]` rule then fills in a missing rate
//! or, in `override` mode, replaces it. Announcements are remembered per
//! stream (exporter, version, observation domain), bounded per kind.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::record::SamplingSource;

/// Sampler or selector ids remembered per stream and kind; beyond this the
/// oldest announcement is forgotten.
pub const MAX_IDS: usize = 256;

/// A rate as announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// One packet in N was sampled (N ≥ 1; 0 when the exporter says "not sampled").
    OneIn(u32),
    /// Time-based selection (RFC 5476 `samplingTimeInterval`/`samplingTimeSpace`):
    /// reported, but no packet ratio to scale counters by.
    TimeBased,
}

/// What a record announces about sampling (its own fields).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Announcement {
    pub interval: Option<u32>,
    pub pkt_interval: Option<u64>,
    pub pkt_space: Option<u64>,
    pub size: Option<u64>,
    pub population: Option<u64>,
    pub probability: Option<f64>,
    pub time_interval: Option<u64>,
    pub selector_id: Option<u64>,
    pub sampler_id: Option<u64>,
}

impl Announcement {
    /// The rate the record's own fields give, most explicit first:
    /// `samplingInterval`/`samplerRandomInterval`, packet interval and space,
    /// n-out-of-N size and population, probability; time-based last.
    pub fn rate(&self) -> Option<Rate> {
        if let Some(n) = self.interval {
            return Some(Rate::OneIn(n));
        }
        if let (Some(i), Some(s)) = (self.pkt_interval, self.pkt_space)
            && i > 0
        {
            return u32::try_from((i.saturating_add(s)) / i)
                .ok()
                .map(Rate::OneIn);
        }
        if let (Some(n), Some(pop)) = (self.size, self.population)
            && n > 0
            && pop >= n
        {
            return u32::try_from(pop / n).ok().map(Rate::OneIn);
        }
        if let Some(p) = self.probability.filter(|p| *p > 0.0 && *p <= 1.0) {
            let n = (1.0 / p).round();
            if n <= f64::from(u32::MAX) {
                return Some(Rate::OneIn(n as u32));
            }
        }
        self.time_interval.map(|_| Rate::TimeBased)
    }
}

/// Rates one stream announced (the v5 header's goes straight in the message context).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Announced {
    /// The exporter's rate without an id: options data without sampler or selector id.
    pub default: Option<u32>,
    selectors: Vec<(u64, Rate)>,
    samplers: Vec<(u64, Rate)>,
}

fn remember(list: &mut Vec<(u64, Rate)>, id: u64, rate: Rate) {
    if let Some(e) = list.iter_mut().find(|(i, _)| *i == id) {
        e.1 = rate;
        return;
    }
    if list.len() >= MAX_IDS {
        list.remove(0);
    }
    list.push((id, rate));
}

fn lookup(list: &[(u64, Rate)], id: u64) -> Option<Rate> {
    list.iter().find(|(i, _)| *i == id).map(|(_, r)| *r)
}

/// A rate resolved for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Rate(u32, SamplingSource),
    /// The record's selector is time-based: counters stay raw.
    Unscalable,
    Unknown,
}

impl Announced {
    /// Learns from an options record.
    pub fn learn(&mut self, a: &Announcement) {
        let Some(rate) = a.rate() else {
            return;
        };
        match (a.selector_id, a.sampler_id) {
            (Some(id), _) => remember(&mut self.selectors, id, rate),
            (None, Some(id)) => remember(&mut self.samplers, id, rate),
            (None, None) => {
                if let Rate::OneIn(n) = rate {
                    self.default = Some(n);
                }
            }
        }
    }

    pub fn selectors(&self) -> usize {
        self.selectors.len()
    }

    pub fn samplers(&self) -> usize {
        self.samplers.len()
    }

    /// The rate for a flow record with the ids it carries, `header` being the
    /// v5/v7 header's rate (checked before the exporter's only selector).
    #[inline]
    pub fn resolve(&self, a: &Announcement, header: Option<u32>) -> Resolved {
        // the common case: nothing announced anywhere
        if header.is_none()
            && self.default.is_none()
            && self.selectors.is_empty()
            && self.samplers.is_empty()
            && *a == Announcement::default()
        {
            return Resolved::Unknown;
        }
        self.resolve_slow(a, header)
    }

    fn resolve_slow(&self, a: &Announcement, header: Option<u32>) -> Resolved {
        let found = |r: Option<Rate>, src| match r {
            Some(Rate::OneIn(n)) => Some(Resolved::Rate(n, src)),
            Some(Rate::TimeBased) => Some(Resolved::Unscalable),
            None => None,
        };
        if let Some(r) = a.rate() {
            return found(Some(r), SamplingSource::Record).unwrap_or(Resolved::Unknown);
        }
        if let Some(id) = a.selector_id
            && let Some(r) = found(lookup(&self.selectors, id), SamplingSource::Selector)
        {
            return r;
        }
        if let Some(id) = a.sampler_id
            && let Some(r) = found(lookup(&self.samplers, id), SamplingSource::Options)
        {
            return r;
        }
        if let Some(n) = header {
            return Resolved::Rate(n, SamplingSource::Header);
        }
        if let Some(n) = self.default {
            return Resolved::Rate(n, SamplingSource::Options);
        }
        match (self.selectors.as_slice(), self.samplers.as_slice()) {
            ([(_, r)], []) => found(Some(*r), SamplingSource::Selector),
            ([], [(_, r)]) => found(Some(*r), SamplingSource::Options),
            _ => None,
        }
        .unwrap_or(Resolved::Unknown)
    }
}

/// One `[[sampling]]` rule, ready to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub exporter: IpNet,
    pub domain: Option<u32>,
    pub interface: Option<u32>,
    pub rate: u32,
    /// Replace what the exporter announced; otherwise only fill in a missing rate.
    pub overrides: bool,
}

/// The configured rules, first match wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Self {
        Rules(rules)
    }

    /// The rules `[[sampling]]` configures.
    pub fn from_config(c: &[crate::config::SamplingConfig]) -> Self {
        Rules(
            c.iter()
                .map(|s| Rule {
                    exporter: s.exporter,
                    domain: s.domain,
                    interface: s.interface,
                    rate: s.rate,
                    overrides: s.mode == crate::config::SamplingMode::Override,
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first rule for this exporter, domain and input interface.
    pub fn find(&self, exporter: IpAddr, domain: u32, in_if: Option<u32>) -> Option<&Rule> {
        let exporter = match exporter {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(exporter),
            v4 => v4,
        };
        self.0.iter().find(|r| {
            r.exporter.contains(&exporter)
                && r.domain.is_none_or(|d| d == domain)
                && r.interface.is_none_or(|i| Some(i) == in_if)
        })
    }

    /// Applies the matching rule to what the exporter announced.
    #[inline]
    pub fn apply(
        &self,
        exporter: IpAddr,
        domain: u32,
        in_if: Option<u32>,
        announced: Resolved,
    ) -> Resolved {
        if self.0.is_empty() {
            return announced;
        }
        match self.find(exporter, domain, in_if) {
            Some(r) if r.overrides || !matches!(announced, Resolved::Rate(n, _) if n > 0) => {
                Resolved::Rate(r.rate, SamplingSource::Config)
            }
            _ => announced,
        }
    }
}

/// Flow records counted by where their rate came from (the
/// `flowhook_decode_records_sampling_total` metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts(pub [u64; SourceCounts::LABELS.len()]);

impl SourceCounts {
    /// Metric label values, in index order.
    pub const LABELS: [&'static str; 7] = [
        "none",
        "header",
        "record",
        "options",
        "selector",
        "config",
        "unscalable",
    ];

    pub fn count(&mut self, r: Resolved) {
        let i = match r {
            Resolved::Unknown => 0,
            Resolved::Rate(_, s) => 1 + s as usize,
            Resolved::Unscalable => 6,
        };
        self.0[i] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(id: u64, size: u64, pop: u64) -> Announcement {
        Announcement {
            selector_id: Some(id),
            size: Some(size),
            population: Some(pop),
            ..Default::default()
        }
    }

    #[test]
    fn rates_from_every_form() {
        let a = |f: fn(&mut Announcement)| {
            let mut a = Announcement::default();
            f(&mut a);
            a.rate()
        };
        assert_eq!(a(|a| a.interval = Some(100)), Some(Rate::OneIn(100)));
        assert_eq!(
            a(|a| {
                a.pkt_interval = Some(1);
                a.pkt_space = Some(99)
            }),
            Some(Rate::OneIn(100))
        );
        assert_eq!(
            a(|a| {
                a.size = Some(1);
                a.population = Some(256)
            }),
            Some(Rate::OneIn(256))
        );
        assert_eq!(a(|a| a.probability = Some(0.001)), Some(Rate::OneIn(1000)));
        assert_eq!(a(|a| a.probability = Some(0.0)), None);
        assert_eq!(a(|a| a.time_interval = Some(10)), Some(Rate::TimeBased));
        assert_eq!(
            a(|a| {
                a.size = Some(0);
                a.population = Some(256)
            }),
            None
        );
    }

    #[test]
    fn selectors_by_id_and_the_only_one() {
        let mut s = Announced::default();
        s.learn(&sel(1, 1, 256));
        let none = Announcement::default();
        assert_eq!(
            s.resolve(&none, None),
            Resolved::Rate(256, SamplingSource::Selector)
        );
        s.learn(&sel(2, 1, 1000));
        // two selectors: a record without an id has no rate
        assert_eq!(s.resolve(&none, None), Resolved::Unknown);
        let two = Announcement {
            selector_id: Some(2),
            ..Default::default()
        };
        assert_eq!(
            s.resolve(&two, None),
            Resolved::Rate(1000, SamplingSource::Selector)
        );
        // a rate change applies from then on
        s.learn(&sel(2, 1, 500));
        assert_eq!(
            s.resolve(&two, None),
            Resolved::Rate(500, SamplingSource::Selector)
        );
    }

    #[test]
    fn ids_are_bounded() {
        let mut s = Announced::default();
        for id in 0..(MAX_IDS as u64 + 10) {
            s.learn(&sel(id, 1, 10));
        }
        assert_eq!(s.selectors(), MAX_IDS);
    }

    #[test]
    fn rules_fill_or_override() {
        let rules = Rules::new(vec![
            Rule {
                exporter: "192.0.2.0/24".parse().unwrap(),
                domain: None,
                interface: Some(7),
                rate: 10,
                overrides: true,
            },
            Rule {
                exporter: "192.0.2.0/24".parse().unwrap(),
                domain: None,
                interface: None,
                rate: 100,
                overrides: false,
            },
        ]);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let announced = Resolved::Rate(64, SamplingSource::Options);
        assert_eq!(rules.apply(ip, 0, Some(3), announced), announced);
        assert_eq!(
            rules.apply(ip, 0, Some(3), Resolved::Unknown),
            Resolved::Rate(100, SamplingSource::Config)
        );
        assert_eq!(
            rules.apply(ip, 0, Some(7), announced),
            Resolved::Rate(10, SamplingSource::Config)
        );
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            rules.apply(other, 0, None, Resolved::Unknown),
            Resolved::Unknown
        );
    }
}
