//! The HTTP client of the Alertmanager and webhook sinks (ureq, rustls).
//!
//! In: an HTTP sink's settings and one endpoint. Out: [`Client::post`] of a
//! JSON body, answering with a [`Failure`] whose code is stable and which
//! says whether a retry makes sense (connection problems, timeouts, 408,
//! 429 and 5xx do; other 4xx do not). CA, client certificate and key are
//! read at start (a bad file stops the start, named); token and password
//! files are read before each request, so rotated secrets take effect.

use std::path::Path;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::AlertError;
use super::queue::Failure;
use crate::config::{HttpSinkConfig, TlsConfig as TlsSettings};

/// How requests authenticate.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

/// A secret given inline or in a file (read at each use).
#[derive(Debug, Clone)]
enum Secret {
    Inline(String),
    File(std::path::PathBuf),
}

impl Secret {
    fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => {
                crate::config::read_secret_file(p).map_err(|e| format!("{}: {e}", p.display()))
            }
        }
    }
}

/// One endpoint.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    auth: Auth,
    /// Shorter time limit while shutting down (what is left until the deadline).
    limit: Option<Duration>,
}

fn read_file(key: &'static str, p: &Path) -> Result<Vec<u8>, AlertError> {
    std::fs::read(p).map_err(|e| AlertError::File {
        key,
        path: p.display().to_string(),
        detail: e.to_string(),
    })
}

fn pem_error(key: &'static str, p: &Path, detail: impl std::fmt::Display) -> AlertError {
    AlertError::File {
        key,
        path: p.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Certificates of a PEM file (at least one).
pub fn read_certs(key: &'static str, p: &Path) -> Result<Vec<Certificate<'static>>, AlertError> {
    let pem = read_file(key, p)?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| pem_error(key, p, e))? {
            PemItem::Certificate(c) => out.push(c),
            _ => continue,
        }
    }
    if out.is_empty() {
        return Err(pem_error(key, p, "no PEM certificate in it"));
    }
    Ok(out)
}

/// The first private key of a PEM file.
pub fn read_key(key: &'static str, p: &Path) -> Result<PrivateKey<'static>, AlertError> {
    let pem = read_file(key, p)?;
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::PrivateKey(k) = item.map_err(|e| pem_error(key, p, e))? {
            return Ok(k);
        }
    }
    Err(pem_error(key, p, "no PEM private key in it"))
}

fn tls_config(key: &'static str, t: &TlsSettings) -> Result<TlsConfig, AlertError> {
    let mut b = TlsConfig::builder().disable_verification(t.insecure_skip_verify);
    if let Some(ca) = &t.ca_file {
        b = b.root_certs(RootCerts::new_with_certs(&read_certs(key, ca)?));
    }
    if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
        let chain = read_certs(key, c)?;
        let k = read_key(key, k)?;
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, k)));
    }
    Ok(b.build())
}

/// `url` without user information, query or fragment, and without its path
/// unless `keep_path` (webhook paths often hold tokens): for metric labels,
/// logs and the printed configuration.
pub fn redact(url: &str, keep_path: bool) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<hidden>".into();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (auth, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
    let path = if keep_path {
        path.to_string()
    } else if path.len() > 1 {
        "/…".to_string()
    } else {
        String::new()
    };
    format!("{scheme}://{host}{path}")
}

impl Client {
    /// A client for `url`, with the sink's authentication and TLS; `kind` names the section.
    pub fn new(cfg: &HttpSinkConfig, url: &str, kind: &'static str) -> Result<Client, AlertError> {
        let tls = tls_config(kind, &cfg.tls)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .max_redirects(0)
            .user_agent(concat!("flowhook/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        let check = |p: &Path| read_file(kind, p).map(|_| ());
        let auth = if let Some(b) = &cfg.basic_auth {
            let password = match (&b.password, &b.password_file) {
                (_, Some(f)) => {
                    check(f)?;
                    Secret::File(f.clone())
                }
                (Some(p), None) => Secret::Inline(p.clone()),
                (None, None) => Secret::Inline(String::new()),
            };
            Auth::Basic {
                user: b.username.clone(),
                password,
            }
        } else if let Some(f) = &cfg.bearer_token_file {
            check(f)?;
            Auth::Bearer(Secret::File(f.clone()))
        } else if let Some(t) = &cfg.bearer_token {
            Auth::Bearer(Secret::Inline(t.clone()))
        } else {
            Auth::None
        };
        Ok(Client {
            agent,
            url: url.to_string(),
            headers: cfg
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            auth,
            limit: None,
        })
    }

    /// Caps the time of the next requests (the shutdown deadline); `None` lifts the cap.
    pub fn set_limit(&mut self, limit: Option<Duration>) {
        self.limit = limit;
    }

    /// POSTs `body` as JSON.
    pub fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(l) = self.limit {
            req = req
                .config()
                .timeout_global(Some(l.max(Duration::from_millis(1))))
                .build();
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let fail = |code, retry, detail: String| Failure {
            code,
            retry,
            detail,
            status: None,
        };
        match &self.auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                use base64::Engine;
                let pw = password.read().map_err(|e| fail("io", true, e))?;
                let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
                req = req.header("Authorization", format!("Basic {v}"));
            }
            Auth::Bearer(t) => {
                let t = t.read().map_err(|e| fail("io", true, e))?;
                req = req.header("Authorization", format!("Bearer {t}"));
            }
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    // read the body so the connection can be reused
                    let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
                    return Ok(());
                }
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let detail = format!("HTTP {status}: {}", text.trim());
                let retry = status >= 500 || status == 408 || status == 429;
                let code = if status >= 500 {
                    "http_5xx"
                } else {
                    "http_4xx"
                };
                Err(fail(code, retry, detail))
            }
            Err(e) => Err(classify(e)),
        }
    }
}

/// The stable code of a transport error; all are worth a retry.
fn classify(e: ureq::Error) -> Failure {
    let code = match &e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => "connect",
        ureq::Error::Io(io)
            if io
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<rustls::Error>().is_some()) =>
        {
            "tls"
        }
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected => "connect",
            std::io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => "tls",
        _ => "io",
    };
    Failure {
        code,
        retry: true,
        detail: e.to_string(),
        status: None,
    }
}

/// A batch sent in chunks: all at once normally; when the endpoint answers
/// 413 (a proxy's body limit) the chunks halve and the rest is sent again.
pub struct Chunked<T> {
    pub items: Vec<T>,
    done: usize,
    chunk: usize,
}

impl<T> Chunked<T> {
    pub fn new(items: Vec<T>) -> Self {
        let chunk = items.len().max(1);
        Chunked {
            items,
            done: 0,
            chunk,
        }
    }

    /// Posts what is left, `body` making each chunk's request body.
    pub fn send(&mut self, client: &Client, body: impl Fn(&[T]) -> Vec<u8>) -> Result<(), Failure> {
        while self.done < self.items.len() {
            let end = (self.done + self.chunk).min(self.items.len());
            match client.post(&body(&self.items[self.done..end])) {
                Ok(()) => self.done = end,
                Err(f) if f.status == Some(413) && self.chunk > 1 => {
                    self.chunk = self.chunk.div_ceil(2);
                }
                Err(f) => return Err(f),
            }
        }
        Ok(())
    }

    /// Items not delivered yet.
    pub fn left(&self) -> usize {
        self.items.len() - self.done
    }
}

/// Milliseconds as RFC 3339 with a `Z` (what Alertmanager and webhooks expect).
pub fn rfc3339(ms: i64) -> String {
    crate::record::rfc3339_ms(ms)
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}
