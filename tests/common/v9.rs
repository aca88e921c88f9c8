//! A NetFlow v9 message builder for black-box tests (RFC 3954 §5).

#![allow(dead_code)]

/// NetFlow v9 with template 256: src4, dst4, sport, dport, proto, flags, bytes, packets, first, last, end reason.
const FIELDS: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 4),
    (2, 4),
    (22, 4),
    (21, 4),
    (136, 1),
];

pub struct Rec {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub flags: u8,
    pub bytes: u32,
    pub packets: u32,
    pub first_up: u32,
    pub last_up: u32,
    pub end: u8,
}

pub fn v9(uptime: u32, unix: u32, seq: u32, recs: &[Rec], with_template: bool) -> Vec<u8> {
    let mut sets = Vec::new();
    if with_template {
        let mut t = vec![0, 0, 0, 0, 1, 0, 0, FIELDS.len() as u8];
        for (id, len) in FIELDS {
            t.extend_from_slice(&id.to_be_bytes());
            t.extend_from_slice(&len.to_be_bytes());
        }
        let len = t.len() as u16;
        t[2..4].copy_from_slice(&len.to_be_bytes());
        sets.extend_from_slice(&t);
    }
    let mut d = vec![1, 0, 0, 0];
    for r in recs {
        d.extend_from_slice(&r.src);
        d.extend_from_slice(&r.dst);
        d.extend_from_slice(&r.sport.to_be_bytes());
        d.extend_from_slice(&r.dport.to_be_bytes());
        d.push(r.proto);
        d.push(r.flags);
        d.extend_from_slice(&r.bytes.to_be_bytes());
        d.extend_from_slice(&r.packets.to_be_bytes());
        d.extend_from_slice(&r.first_up.to_be_bytes());
        d.extend_from_slice(&r.last_up.to_be_bytes());
        d.push(r.end);
    }
    while d.len() % 4 != 0 {
        d.push(0);
    }
    let len = d.len() as u16;
    d[2..4].copy_from_slice(&len.to_be_bytes());
    sets.extend_from_slice(&d);
    let mut m = vec![0, 9];
    m.extend_from_slice(&((recs.len() + usize::from(with_template)) as u16).to_be_bytes());
    m.extend_from_slice(&uptime.to_be_bytes());
    m.extend_from_slice(&unix.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&sets);
    m
}
