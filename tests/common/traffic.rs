//! A generated packet capture of real conversations, with its ground truth,
//! for exporters under test (softflowd) to turn into flow exports.
//!
//! Conversations: TCP over IPv4 with handshake, data both ways and FIN close;
//! the same over IPv6; a TCP connection refused by RST; a UDP request and
//! response; ICMP and ICMPv6 echo. Servers sit in networks the generated
//! MaxMind fixtures know (`mmdb.rs`), so geolocation can be checked too.
//! Ground truth per direction: packets and bytes as IP total length (what
//! NetFlow counts), and which side is the client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use etherparse::PacketBuilder;

use super::Pcap;

/// One direction of a conversation, as an exporter keys it. ICMP ports are 0
/// (exporters carry type/code in different fields; compare on addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dir {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A conversation and its truth.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub name: &'static str,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub proto: u8,
    /// (packets, bytes) client→server and server→client.
    pub c2s: (u64, u64),
    pub s2c: (u64, u64),
    /// Expected server country and AS (from the fixture databases), if any.
    pub srv_country: Option<&'static str>,
    pub srv_asn: Option<u32>,
    pub refused: bool,
}

impl Conversation {
    pub fn is_v6(&self) -> bool {
        self.client.0.is_ipv6()
    }

    /// Its two directions as exporters key them.
    pub fn dirs(&self) -> [(Dir, (u64, u64)); 2] {
        let icmp = matches!(self.proto, 1 | 58);
        let p = |x: u16| if icmp { 0 } else { x };
        [
            (
                Dir {
                    src: self.client.0,
                    dst: self.server.0,
                    sport: p(self.client.1),
                    dport: p(self.server.1),
                    proto: self.proto,
                },
                self.c2s,
            ),
            (
                Dir {
                    src: self.server.0,
                    dst: self.client.0,
                    sport: p(self.server.1),
                    dport: p(self.client.1),
                    proto: self.proto,
                },
                self.s2c,
            ),
        ]
    }
}

/// The capture and its conversations.
pub struct Traffic {
    pub pcap: Vec<u8>,
    pub conversations: Vec<Conversation>,
}

impl Traffic {
    /// Expected (packets, bytes) per direction, for the conversations `keep` selects.
    pub fn truth(&self, keep: impl Fn(&Conversation) -> bool) -> BTreeMap<Dir, (u64, u64)> {
        let mut m = BTreeMap::new();
        for c in self.conversations.iter().filter(|c| keep(c)) {
            for (d, v) in c.dirs() {
                if v.0 > 0 {
                    m.insert(d, v);
                }
            }
        }
        m
    }
}

fn v4(s: &str) -> [u8; 4] {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => a.octets(),
        _ => unreachable!(),
    }
}

fn v6(s: &str) -> [u8; 16] {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V6(a) => a.octets(),
        _ => unreachable!(),
    }
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

struct Gen {
    pcap: Pcap,
    t_us: u64,
}

#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
    RstAck,
}

impl Gen {
    /// Writes one frame; returns its IP total length.
    fn frame(&mut self, frame: Vec<u8>) -> u64 {
        self.t_us += 7_000;
        let ip_len = (frame.len() - 14) as u64;
        self.pcap.frame(self.t_us, &frame);
        ip_len
    }

    fn ip(&self, src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(s.octets(), d.octets(), 64)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(s.octets(), d.octets(), 64)
            }
            _ => unreachable!(),
        }
    }

    fn tcp(
        &mut self,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        seq: u32,
        ack: u32,
        flags: Flags,
        payload: &[u8],
    ) -> u64 {
        let b = self.ip(src.0, dst.0).tcp(src.1, dst.1, seq, 65535);
        let b = match flags {
            Flags::Syn => b.syn(),
            Flags::SynAck => b.syn().ack(ack),
            Flags::Ack => b.ack(ack),
            Flags::PshAck => b.psh().ack(ack),
            Flags::FinAck => b.fin().ack(ack),
            Flags::RstAck => b.rst().ack(ack),
        };
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).unwrap();
        self.frame(out)
    }

    fn udp(&mut self, src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) -> u64 {
        let b = self.ip(src.0, dst.0).udp(src.1, dst.1);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).unwrap();
        self.frame(out)
    }

    fn echo(&mut self, src: IpAddr, dst: IpAddr, reply: bool, seq: u16, payload: &[u8]) -> u64 {
        let ip = self.ip(src, dst);
        let mut out = Vec::new();
        match (src.is_ipv6(), reply) {
            (false, false) => ip
                .icmpv4_echo_request(7, seq)
                .write(&mut out, payload)
                .unwrap(),
            (false, true) => ip
                .icmpv4_echo_reply(7, seq)
                .write(&mut out, payload)
                .unwrap(),
            (true, false) => ip
                .icmpv6_echo_request(7, seq)
                .write(&mut out, payload)
                .unwrap(),
            (true, true) => ip
                .icmpv6_echo_reply(7, seq)
                .write(&mut out, payload)
                .unwrap(),
        }
        self.frame(out)
    }

    /// A full TCP conversation: handshake, `rounds` request/response exchanges, FIN close.
    fn tcp_conversation(
        &mut self,
        c: (IpAddr, u16),
        s: (IpAddr, u16),
        rounds: usize,
    ) -> ((u64, u64), (u64, u64)) {
        let (mut c2s, mut s2c) = ((0, 0), (0, 0));
        let add = |acc: &mut (u64, u64), b: u64| {
            acc.0 += 1;
            acc.1 += b;
        };
        let (mut cs, mut ss) = (1000u32, 5000u32);
        add(&mut c2s, self.tcp(c, s, cs, 0, Flags::Syn, &[]));
        add(&mut s2c, self.tcp(s, c, ss, cs + 1, Flags::SynAck, &[]));
        cs += 1;
        ss += 1;
        add(&mut c2s, self.tcp(c, s, cs, ss, Flags::Ack, &[]));
        for r in 0..rounds {
            let req = vec![b'q'; 100 + 37 * r];
            let resp = vec![b'r'; 900 + 211 * r];
            add(&mut c2s, self.tcp(c, s, cs, ss, Flags::PshAck, &req));
            cs += req.len() as u32;
            add(&mut s2c, self.tcp(s, c, ss, cs, Flags::PshAck, &resp));
            ss += resp.len() as u32;
            add(&mut c2s, self.tcp(c, s, cs, ss, Flags::Ack, &[]));
        }
        add(&mut c2s, self.tcp(c, s, cs, ss, Flags::FinAck, &[]));
        add(&mut s2c, self.tcp(s, c, ss, cs + 1, Flags::FinAck, &[]));
        add(&mut c2s, self.tcp(c, s, cs + 1, ss + 1, Flags::Ack, &[]));
        (c2s, s2c)
    }
}

/// The standard capture, starting at Unix time `t0_secs`.
pub fn generate(t0_secs: u64) -> Traffic {
    let mut g = Gen {
        pcap: Pcap::new(),
        t_us: t0_secs * 1_000_000,
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let _ = (v4, v6);
    let mut conv = Vec::new();

    let (c, s) = ((ip("10.1.0.1"), 40001), (ip("81.2.69.142"), 443));
    let (c2s, s2c) = g.tcp_conversation(c, s, 3);
    conv.push(Conversation {
        name: "tcp-v4-tls",
        client: c,
        server: s,
        proto: 6,
        c2s,
        s2c,
        srv_country: Some("GB"),
        srv_asn: Some(20712),
        refused: false,
    });

    let (c, s) = ((ip("fd00::1"), 40002), (ip("2001:218::1"), 80));
    let (c2s, s2c) = g.tcp_conversation(c, s, 2);
    conv.push(Conversation {
        name: "tcp-v6-http",
        client: c,
        server: s,
        proto: 6,
        c2s,
        s2c,
        srv_country: Some("JP"),
        srv_asn: Some(2914),
        refused: false,
    });

    let (c, s) = ((ip("10.1.0.1"), 40003), (ip("175.16.199.1"), 25));
    let a = g.tcp(c, s, 77, 0, Flags::Syn, &[]);
    let b = g.tcp(s, c, 0, 78, Flags::RstAck, &[]);
    conv.push(Conversation {
        name: "tcp-refused",
        client: c,
        server: s,
        proto: 6,
        c2s: (1, a),
        s2c: (1, b),
        srv_country: Some("CN"),
        srv_asn: Some(4837),
        refused: true,
    });

    let (c, s) = ((ip("10.1.0.2"), 33333), (ip("89.160.20.112"), 53));
    let a = g.udp(c, s, &[0x12; 40]);
    let b = g.udp(s, c, &[0x34; 180]);
    let a2 = g.udp(c, s, &[0x56; 44]);
    let b2 = g.udp(s, c, &[0x78; 120]);
    conv.push(Conversation {
        name: "udp-dns",
        client: c,
        server: s,
        proto: 17,
        c2s: (2, a + a2),
        s2c: (2, b + b2),
        srv_country: Some("SE"),
        srv_asn: None,
        refused: false,
    });

    let (c, s) = ((ip("10.1.0.3"), 0), (ip("1.128.0.1"), 0));
    let mut c2s = (0, 0);
    let mut s2c = (0, 0);
    for seq in 0..3 {
        c2s.0 += 1;
        c2s.1 += g.echo(c.0, s.0, false, seq, &[0xab; 56]);
        s2c.0 += 1;
        s2c.1 += g.echo(s.0, c.0, true, seq, &[0xab; 56]);
    }
    conv.push(Conversation {
        name: "icmp-echo",
        client: c,
        server: s,
        proto: 1,
        c2s,
        s2c,
        srv_country: None,
        srv_asn: Some(1221),
        refused: false,
    });

    let (c, s) = ((ip("fd00::2"), 0), (ip("2001:218::2"), 0));
    let mut c2s = (0, 0);
    let mut s2c = (0, 0);
    for seq in 0..2 {
        c2s.0 += 1;
        c2s.1 += g.echo(c.0, s.0, false, seq, &[0xcd; 32]);
        s2c.0 += 1;
        s2c.1 += g.echo(s.0, c.0, true, seq, &[0xcd; 32]);
    }
    conv.push(Conversation {
        name: "icmpv6-echo",
        client: c,
        server: s,
        proto: 58,
        c2s,
        s2c,
        srv_country: Some("JP"),
        srv_asn: Some(2914),
        refused: false,
    });

    Traffic {
        pcap: g.pcap.bytes().to_vec(),
        conversations: conv,
    }
}

/// An address and port.
pub type Endpoint<'a> = (&'a str, u16);

/// A capture of complete TCP sessions (handshake, `exchanges` request and
/// response pairs, FIN close) between the given (client, server) endpoints.
pub fn tcp_sessions(t0_secs: u64, pairs: &[(Endpoint, Endpoint)]) -> Traffic {
    let mut g = Gen {
        pcap: Pcap::new(),
        t_us: t0_secs * 1_000_000,
    };
    let mut conv = Vec::new();
    for ((ca, cp), (sa, sp)) in pairs {
        let (c, s) = ((ca.parse().unwrap(), *cp), (sa.parse().unwrap(), *sp));
        let (c2s, s2c) = g.tcp_conversation(c, s, 2);
        conv.push(Conversation {
            name: "tcp-session",
            client: c,
            server: s,
            proto: 6,
            c2s,
            s2c,
            srv_country: None,
            srv_asn: None,
            refused: false,
        });
    }
    Traffic {
        pcap: g.pcap.bytes().to_vec(),
        conversations: conv,
    }
}

/// softflowd reads `pcap` and exports it as NetFlow v9 to 127.0.0.1:`port`,
/// then exits. `tag` (one character) names its control socket and
/// pid file: softflowd 1.1.0 exports nothing when the socket path is long.
pub fn softflowd_replay(pcap: &std::path::Path, port: u16, tag: &str) {
    use std::process::{Command, Stdio};
    assert_eq!(
        tag.len(),
        1,
        "softflowd's control socket path must stay short"
    );
    let ctl = format!("/tmp/sf{tag}.ctl");
    let _ = std::fs::remove_file(&ctl);
    let mut sf = Command::new("softflowd")
        .args(["-d", "-r"])
        .arg(pcap)
        .args(["-n", &format!("127.0.0.1:{port}"), "-v", "9", "-c", &ctl])
        .args(["-p", &format!("/tmp/sf{tag}.pid")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while sf.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // softflowd 1.1.0 exits at the end of the capture; older ones export on SIGTERM
    if sf.try_wait().unwrap().is_none() {
        unsafe { libc::kill(sf.id() as i32, libc::SIGTERM) };
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = sf.kill();
    }
    let _ = sf.wait();
}
