use super::*;
use crate::decode::{Decoder, DecoderLimits};
use crate::generate::GenConfig;

fn stream(ip: &str, learned_ms: i64) -> SavedStream {
    SavedStream {
        exporter: ip.parse().unwrap(),
        version: 10,
        domain: 1,
        templates: vec![SavedTemplate {
            set_id: 2,
            id: 256,
            learned_ms,
            bytes: vec![1, 0, 0, 1, 0, 8, 0, 4],
        }],
        sampling: Default::default(),
    }
}

#[test]
fn file_round_trips_and_every_damage_is_named() {
    let p = Path::new("/x/templates.state");
    let data = encode(vec![stream("192.0.2.1", 5)], 7);
    assert_eq!(decode(p, &data).unwrap(), vec![stream("192.0.2.1", 5)]);

    let cut = &data[..data.len() - 3];
    assert_eq!(decode(p, cut).unwrap_err().code(), "truncated");
    let mut flipped = data.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x20;
    assert_eq!(decode(p, &flipped).unwrap_err().code(), "checksum");
    let foreign = String::from_utf8(data.clone()).unwrap().replacen(
        "flowhook-state 1 ",
        "flowhook-state 99 ",
        1,
    );
    let e = decode(p, foreign.as_bytes()).unwrap_err();
    assert_eq!(e.code(), "version");
    assert!(e.to_string().contains("/x/templates.state"), "{e}");
    assert_eq!(decode(p, b"").unwrap_err().code(), "header");
    assert_eq!(decode(p, b"GIF89a\n....").unwrap_err().code(), "header");
    // a body that checks out but is not the state's shape
    let body = b"{\"streams\":1}";
    let mut odd = format!(
        "flowhook-state 1 {} {:08x}\n",
        body.len(),
        crc32fast::hash(body)
    )
    .into_bytes();
    odd.extend_from_slice(body);
    assert_eq!(decode(p, &odd).unwrap_err().code(), "body");
}

#[test]
fn store_replaces_the_file_atomically_and_load_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("nested");
    assert!(load(&d).unwrap().is_none());
    store(&d, &encode(vec![stream("192.0.2.1", 1)], 1)).unwrap();
    store(&d, &encode(vec![stream("192.0.2.2", 2)], 2)).unwrap();
    let got = load(&d).unwrap().unwrap();
    assert_eq!(got, vec![stream("192.0.2.2", 2)]);
    // no temporary files left behind
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
}

#[test]
fn merge_keeps_other_instances_streams_and_drops_old_ones() {
    let day = 86_400_000;
    let now = 10 * day;
    let ours = vec![stream("192.0.2.1", now - 5)];
    let disk = vec![
        stream("192.0.2.1", now - day),     // ours is newer: replaced
        stream("192.0.2.2", now - 10),      // only on disk: kept
        stream("192.0.2.3", now - 8 * day), // too old
    ];
    let m = merge(ours, disk, now, 7 * day, None);
    assert_eq!(
        m,
        vec![stream("192.0.2.1", now - 5), stream("192.0.2.2", now - 10)]
    );
    // with a template TTL, expired templates go (and a stream left empty)
    let m = merge(
        vec![],
        vec![stream("192.0.2.2", now - 10)],
        now,
        7 * day,
        Some(5),
    );
    assert!(m.is_empty());
}

fn generated(version: u16, datagrams: u64) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.pcap");
    let cfg = GenConfig {
        version,
        datagrams: Some(datagrams),
        template_every: 1_000_000,
        pcap: Some(path.clone()),
        send: false,
        start_unix_ms: Some(1_700_000_000_000),
        ..GenConfig::default()
    };
    crate::generate::run(&cfg, |_| {}).unwrap();
    let mut out = Vec::new();
    crate::capture::for_each_datagram(&path, |d| out.push(d.payload.to_vec())).unwrap();
    out
}

/// A decoder's streams, saved and restored into a new decoder, decode the
/// data that follows without its template, as the first decoder does.
#[test]
fn restored_templates_decode_data_without_the_template() {
    for version in [9, 10] {
        let d = generated(version, 6);
        let exporter: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let mut a = Decoder::new(&DecoderLimits::default()).unwrap();
        let mut out = Vec::new();
        a.decode(exporter, &d[0], &mut out).unwrap();
        let saved = a.saved_streams();
        assert_eq!(saved.len(), 1);
        assert!(!saved[0].templates.is_empty());

        // through the file, as after a restart
        let file = encode(saved, 0);
        let back = decode(Path::new("t"), &file).unwrap();
        let mut b = Decoder::new(&DecoderLimits::default()).unwrap();
        b.set_compiled(true);
        let n = b.restore(&back[0], 0, &mut Vec::new());
        assert_eq!(n, back[0].templates.len());
        for dg in &d[1..] {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.decode(exporter, dg, &mut x).unwrap();
            let o = b.decode(exporter, dg, &mut y).unwrap();
            assert_eq!(o.missing_templates, 0);
            assert_eq!(x.len(), y.len());
            assert!(!y.is_empty());
            for (r, s) in x.iter().zip(&y) {
                assert_eq!(
                    (r.src_addr, r.bytes, r.packets),
                    (s.src_addr, s.bytes, s.packets)
                );
            }
        }
        // restoring again changes nothing (every template is known)
        assert_eq!(b.restore(&back[0], 0, &mut Vec::new()), 0);
        // the restored times are kept, not the time of the restore
        assert_eq!(b.saved_streams()[0].templates, back[0].templates);
    }
}

#[test]
fn template_ttl_is_honoured_on_restore() {
    let d = generated(10, 1);
    let exporter: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut a = Decoder::new(&DecoderLimits::default()).unwrap();
    a.decode(exporter, &d[0], &mut Vec::new()).unwrap();
    let saved = a.saved_streams();
    let learned = saved[0].learned_ms();
    let limits = DecoderLimits {
        template_ttl: Some(std::time::Duration::from_secs(60)),
        ..DecoderLimits::default()
    };
    let mut b = Decoder::new(&limits).unwrap();
    assert_eq!(b.restore(&saved[0], learned + 61_000, &mut Vec::new()), 0);
    let mut c = Decoder::new(&limits).unwrap();
    assert!(c.restore(&saved[0], learned + 1_000, &mut Vec::new()) > 0);
}
