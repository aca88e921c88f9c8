use super::*;
use crate::decode::{Decoder, DecoderLimits};
use crate::record::RecordKind;

/// Generates into a pcap and decodes it back: every record, every packet,
/// sequence numbers without gaps, both address families.
fn round_trip(version: u16, exporters: u16, domains: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.pcap");
    let cfg = GenConfig {
        version,
        exporters,
        domains,
        flows: 3600,
        datagrams: Some(500),
        rate: 1000,
        pcap: Some(path.clone()),
        send: false,
        start_unix_ms: Some(1_700_000_000_000),
        ..GenConfig::default()
    };
    let sum = run(&cfg, |_| {}).unwrap();
    assert_eq!(sum.datagrams, 500);
    assert_eq!(sum.records, 500 * 30);
    let mut dec = Decoder::new(&DecoderLimits::default()).unwrap();
    let (mut records, mut packets, mut v6, mut exporters_seen) =
        (0u64, 0u64, 0u64, std::collections::BTreeSet::new());
    let mut recs = Vec::new();
    crate::capture::for_each_datagram(&path, |d| {
        recs.clear();
        let o = dec.decode(d.exporter, &d.payload, &mut recs).unwrap();
        assert!(o.partial_error.is_none(), "{:?}", o.partial_error);
        exporters_seen.insert(d.exporter);
        for r in &recs {
            assert_eq!(r.kind, RecordKind::Flow);
            records += 1;
            packets += r.packets.unwrap();
            v6 += u64::from(r.src_addr.unwrap().is_ipv6());
            assert!(r.first_ms.unwrap() <= r.last_ms.unwrap());
            assert!((r.last_ms.unwrap() - 1_700_000_000_000).abs() < 3_600_000);
        }
    })
    .unwrap();
    assert_eq!(records, sum.records);
    assert_eq!(packets, sum.packets);
    assert_eq!(exporters_seen.len(), usize::from(exporters));
    assert_eq!(
        dec.stats.seq_gaps, 0,
        "sequence numbers follow the version's rule"
    );
    assert_eq!(dec.stats.seq_late, 0);
    if version != 5 {
        assert!(v6 > 0, "every tenth block is IPv6");
    }
}

#[test]
fn v5_round_trips() {
    round_trip(5, 2, 1);
}

#[test]
fn v9_round_trips() {
    round_trip(9, 3, 2);
}

#[test]
fn ipfix_round_trips() {
    round_trip(10, 1, 1);
}

#[test]
fn repeats_alternate_direction_and_move_counters() {
    let a = sample(7, 0, 5_000_000, false, 9);
    let b = sample(7, 1, 5_060_000, false, 9);
    assert_eq!((a.src, a.dst), (b.dst, b.src));
    assert_eq!(a.tcp_flags, 0x02);
    assert_ne!(a.packets, b.packets);
    assert!(a.last_up < b.last_up);
}

#[test]
fn invalid_settings_are_refused() {
    let bad = [
        GenConfig {
            version: 8,
            ..GenConfig::default()
        },
        GenConfig {
            version: 5,
            records: 31,
            ..GenConfig::default()
        },
        GenConfig {
            exporters: 0,
            ..GenConfig::default()
        },
        GenConfig {
            flows: 10,
            ..GenConfig::default()
        },
        GenConfig {
            send: false,
            pcap: None,
            ..GenConfig::default()
        },
    ];
    for c in bad {
        assert!(matches!(c.validate(), Err(GenError::Invalid(_))), "{c:?}");
    }
}
