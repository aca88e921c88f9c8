//! Syslog sink: RFC 5424 messages over UDP (RFC 5426), TCP or TLS (RFC 6587
//! octet counting, RFC 5425).
//!
//! In: queued alerts (and event lines with `events = true`). Out: one
//! message per alert: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID alert
//! [flowhook@32473 script=… status=… severity=… score=… exporter=… cli_ip=…
//! cli_port=… srv_ip=… srv_port=… proto_l4=… proto_l7=… flow_key=… info=…]
//! name: message (flow)`; events go with MSGID `event` and the JSON line as
//! their text. The severity maps onto syslog's (info 6 … emergency 0). TCP
//! and TLS connect on first use and again after an error; before each batch
//! a closed connection is noticed and replaced, so a restarted collector
//! loses nothing that was still queued.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::http::now_ms;
use super::queue::{Deliver, Failure};
use super::{AlertError, AlertRecord, Item};
use crate::config::{SyslogConfig, TlsConfig, severity_rank};

/// Private enterprise number of the structured data id (RFC 5612's example number).
pub const SD_ID: &str = "flowhook@32473";
/// Longest UDP message; longer ones are cut.
const UDP_MAX: usize = 65_000;

enum Transport {
    Udp(String),
    Tcp(String),
    Tls(String, Arc<rustls::ClientConfig>, ServerName<'static>),
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Header fields shared by every message.
pub struct Header {
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub procid: u32,
}

pub struct Syslog {
    transport: Transport,
    conn: Option<Conn>,
    header: Header,
    timeout: Duration,
    /// `timeout`, or less while shutting down.
    effective_timeout: Duration,
}

/// A batch of framed-to-be messages and how many were written.
pub struct Batch {
    msgs: Vec<Vec<u8>>,
    next: usize,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "-".into();
    }
    let n = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let h: String = String::from_utf8_lossy(&buf[..n])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    if h.is_empty() { "-".into() } else { h }
}

/// Escapes an SD-PARAM value (`"`, `\` and `]`).
fn sd_escape(out: &mut String, v: &str) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Syslog severity of a flowhook severity (info 6 … emergency 0).
pub fn syslog_severity(s: &str) -> u8 {
    6 - severity_rank(s).unwrap_or(0).min(6) as u8
}

impl Header {
    fn start(&self, severity: u8, time_ms: i64, msgid: &str) -> String {
        format!(
            "<{}>1 {} {} {} {} {} ",
            u32::from(self.facility) * 8 + u32::from(severity),
            crate::record::rfc3339_ms(time_ms),
            self.hostname,
            self.app_name,
            self.procid,
            msgid
        )
    }

    /// The RFC 5424 message of an alert.
    pub fn alert(&self, a: &AlertRecord) -> Vec<u8> {
        let mut m = self.start(syslog_severity(a.severity), a.time_ms, "alert");
        m.push('[');
        m.push_str(SD_ID);
        let params = [
            ("script", a.script.to_string()),
            ("status", a.status.clone().unwrap_or_default()),
            ("severity", a.severity.to_string()),
            ("score", a.score.to_string()),
            ("exporter", a.exporter.to_string()),
            ("cli_ip", a.cli_ip.to_string()),
            ("cli_port", a.cli_port.to_string()),
            ("srv_ip", a.srv_ip.to_string()),
            ("srv_port", a.srv_port.to_string()),
            ("proto_l4", a.l4().into_owned()),
            ("proto_l7", a.l7.to_string()),
            ("flow_key", format!("{:016x}", a.flow_key)),
            ("info", a.info_text()),
        ];
        for (k, v) in params {
            m.push(' ');
            m.push_str(k);
            m.push_str("=\"");
            sd_escape(&mut m, &v);
            m.push('"');
        }
        m.push_str("] ");
        m.push_str(a.name());
        if !a.message.is_empty() {
            m.push_str(": ");
            m.push_str(&a.message());
        }
        m.push_str(" (");
        m.push_str(&a.flow_summary());
        m.push(')');
        m.into_bytes()
    }

    /// The RFC 5424 message of an event line (MSGID `event`, the line as text).
    pub fn event(&self, line: &[u8]) -> Vec<u8> {
        let mut m = self.start(6, now_ms(), "event").into_bytes();
        m.extend_from_slice(b"- ");
        m.extend_from_slice(line);
        m
    }
}

/// Accepts any server certificate (`tls.insecure_skip_verify`).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn file_err(path: &std::path::Path, detail: impl std::fmt::Display) -> AlertError {
    AlertError::File {
        key: "syslog.tls",
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// The rustls client settings of `t`.
fn client_config(t: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, AlertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AlertError::Setup {
            key: "syslog.tls",
            detail: e.to_string(),
        })?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_file {
            Some(ca) => {
                let certs: Vec<_> = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| file_err(ca, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| file_err(ca, e))?;
                if certs.is_empty() {
                    return Err(file_err(ca, "no PEM certificate in it"));
                }
                for c in certs {
                    roots.add(c).map_err(|e| file_err(ca, e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let cfg = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(c)
                .map_err(|e| file_err(c, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(c, e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| file_err(k, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_err(c, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

fn fail(code: &'static str, e: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        retry: true,
        detail: e.to_string(),
        status: None,
    }
}

fn io_code(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe => {
            "connect"
        }
        TimedOut | WouldBlock => "timeout",
        InvalidData => "tls",
        _ => "io",
    }
}

impl Syslog {
    /// The sink for `target` (`udp://`, `tcp://`, `tls://` host:port).
    pub fn new(cfg: &SyslogConfig, target: &str) -> Result<Syslog, AlertError> {
        let (scheme, addr) = target.split_once("://").unwrap_or(("udp", target));
        let transport = match scheme {
            "tcp" => Transport::Tcp(addr.to_string()),
            "tls" => {
                let host = addr
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                    .unwrap_or(addr);
                let name =
                    ServerName::try_from(host.to_string()).map_err(|e| AlertError::Setup {
                        key: "syslog.target",
                        detail: format!("{target}: {e}"),
                    })?;
                Transport::Tls(addr.to_string(), client_config(&cfg.tls)?, name)
            }
            _ => Transport::Udp(addr.to_string()),
        };
        Ok(Syslog {
            transport,
            conn: None,
            header: Header {
                facility: cfg.facility_code(),
                hostname: if cfg.hostname.is_empty() {
                    hostname()
                } else {
                    cfg.hostname.clone()
                },
                app_name: cfg.app_name.clone(),
                procid: std::process::id(),
            },
            timeout: cfg.timeout,
            effective_timeout: cfg.timeout,
        })
    }

    fn tcp(&self, addr: &str) -> Result<TcpStream, Failure> {
        let mut last = None;
        let addrs = addr.to_socket_addrs().map_err(|e| fail("connect", e))?;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.effective_timeout) {
                Ok(s) => {
                    let _ = s.set_write_timeout(Some(self.effective_timeout));
                    let _ = s.set_read_timeout(Some(self.effective_timeout));
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => fail(io_code(&e), format!("{addr}: {e}")),
            None => fail("connect", format!("{addr}: no address")),
        })
    }

    fn connect(&self) -> Result<Conn, Failure> {
        Ok(match &self.transport {
            Transport::Udp(addr) => {
                let a = addr
                    .to_socket_addrs()
                    .map_err(|e| fail("connect", e))?
                    .next()
                    .ok_or_else(|| fail("connect", format!("{addr}: no address")))?;
                let local = if a.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let s = UdpSocket::bind(local).map_err(|e| fail("io", e))?;
                s.connect(a).map_err(|e| fail("connect", e))?;
                Conn::Udp(s)
            }
            Transport::Tcp(addr) => Conn::Tcp(self.tcp(addr)?),
            Transport::Tls(addr, cfg, name) => {
                let sock = self.tcp(addr)?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name.clone())
                    .map_err(|e| fail("tls", e))?;
                let mut s = rustls::StreamOwned::new(conn, sock);
                // complete the handshake now, so certificate problems show as `tls`
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| fail("tls", format!("{addr}: {e}")))?;
                }
                Conn::Tls(Box::new(s))
            }
        })
    }

    /// Whether a stream connection was closed by the peer (or broke). For
    /// TLS the records the peer sent since (session tickets, alerts) are
    /// read and processed: a `close_notify` or EOF among them means closed.
    fn closed(conn: &mut Conn) -> bool {
        use std::io::Read;
        let sock = match conn {
            Conn::Udp(_) => return false,
            Conn::Tcp(s) => s,
            Conn::Tls(s) => &s.sock,
        };
        if sock.set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match conn {
            Conn::Udp(_) => false,
            Conn::Tcp(s) => {
                let mut b = [0u8; 1];
                match s.peek(&mut b) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                }
            }
            Conn::Tls(s) => loop {
                match s.conn.read_tls(&mut s.sock) {
                    Ok(0) => break true,
                    Ok(_) => match s.conn.process_new_packets() {
                        Ok(st) if st.peer_has_closed() => break true,
                        Ok(_) => {
                            // a collector sends nothing to read: discard it
                            let mut buf = [0u8; 1024];
                            while matches!(s.conn.reader().read(&mut buf), Ok(n) if n > 0) {}
                        }
                        Err(_) => break true,
                    },
                    Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
                }
            },
        };
        let sock = match conn {
            Conn::Tcp(s) => Some(&*s),
            Conn::Tls(s) => Some(&s.sock),
            Conn::Udp(_) => None,
        };
        if let Some(s) = sock {
            let _ = s.set_nonblocking(false);
        }
        closed
    }

    fn write(conn: &mut Conn, msg: &[u8]) -> std::io::Result<()> {
        match conn {
            Conn::Udp(s) => s.send(&msg[..msg.len().min(UDP_MAX)]).map(|_| ()),
            Conn::Tcp(s) => {
                s.write_all(format!("{} ", msg.len()).as_bytes())?;
                s.write_all(msg)
            }
            Conn::Tls(s) => {
                s.write_all(format!("{} ", msg.len()).as_bytes())?;
                s.write_all(msg)
            }
        }
    }
}

impl Deliver for Syslog {
    type Batch = Batch;

    fn prepare(&mut self, items: Vec<Item>) -> Option<(Batch, usize)> {
        let msgs: Vec<Vec<u8>> = items
            .iter()
            .filter_map(|i| match i {
                Item::Alert(a) => Some(self.header.alert(a)),
                Item::Event(line) => Some(self.header.event(line)),
                Item::FlowEnded(_) => None,
            })
            .collect();
        if msgs.is_empty() {
            return None;
        }
        let n = msgs.len();
        Some((Batch { msgs, next: 0 }, n))
    }

    fn send(&mut self, batch: &mut Batch) -> Result<(), Failure> {
        if self.conn.as_mut().is_some_and(Self::closed) {
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        while batch.next < batch.msgs.len() {
            if let Err(e) = Self::write(&mut conn, &batch.msgs[batch.next]) {
                return Err(fail(io_code(&e), e));
            }
            batch.next += 1;
        }
        let flushed = match &mut conn {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        };
        if let Err(e) = flushed {
            return Err(fail(io_code(&e), e));
        }
        self.conn = Some(conn);
        Ok(())
    }

    fn left(&self, batch: &Batch, _total: usize) -> usize {
        batch.msgs.len() - batch.next
    }

    fn limit(&mut self, left: Option<Duration>) {
        let t = left.map_or(self.timeout, |l| {
            l.min(self.timeout).max(Duration::from_millis(1))
        });
        self.effective_timeout = t;
        let sock = match &self.conn {
            Some(Conn::Tcp(s)) => Some(s),
            Some(Conn::Tls(s)) => Some(&s.sock),
            _ => None,
        };
        if let Some(s) = sock {
            let _ = s.set_write_timeout(Some(t));
            let _ = s.set_read_timeout(Some(t));
        }
    }
}
