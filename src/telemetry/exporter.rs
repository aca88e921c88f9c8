//! The Prometheus endpoint: installs the `metrics` recorder (sink request
//! durations as real histograms with explicit buckets from 1 ms to 30 s),
//! describes every metric of the catalog, and serves `/metrics` (the
//! recorder's text, then the hook timings of [`super::hooks`]), `/healthz`
//! and `/readyz` on `metrics.listen`.
//!
//! In: a bound listener and a readiness flag. Out: an HTTP task. The HTTP side
//! is deliberately small (GET only, one request per connection, bounded
//! request size and read time): it answers Prometheus and probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::catalog::{Kind, METRICS};

/// Buckets of `flowhook_sink_request_duration_seconds`: 1 ms … 30 s.
pub const REQUEST_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Installs the global recorder. Call before any stage registers a metric.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("flowhook_sink_request_duration_seconds".into()),
            &REQUEST_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, metrics::Unit::Seconds, m.help),
        }
    }
    metrics::gauge!("flowhook_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Readiness: listeners bound, scripts loaded, databases open.
#[derive(Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Not ready any more (a stage stopped): `/readyz` answers 503.
    pub fn unset(&self) {
        self.0.store(false, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves the endpoint until `cancel`.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    ready: Ready,
    cancel: CancellationToken,
) {
    let process = Arc::new(metrics_process::Collector::new("flowhook_"));
    process.describe();
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let (handle, ready, process) = (handle.clone(), ready.clone(), process.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => {
                    let p = process.clone();
                    let _ = tokio::task::spawn_blocking(move || p.collect()).await;
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        handle.render() + &super::hooks::render(),
                    )
                }
                ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
                ("GET", "/readyz") if ready.get() => {
                    ("200 OK", "text/plain", "ready\n".to_string())
                }
                ("GET", "/readyz") => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready\n".to_string(),
                ),
                ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET only\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
