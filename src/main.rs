//! The `flowhook` command: `serve`, `decode`, `check`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use flowhook::config::Config;
use flowhook::enrich::GeoService;
use flowhook::pipeline;

/// NetFlow v5/v7/v9 and IPFIX collector that runs Lua scripts on flow lifecycle events.
#[derive(Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    /// TOML configuration file; `FLOWHOOK__SECTION__KEY` environment variables override it.
    #[arg(long, short, global = true, env = "FLOWHOOK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

const EXAMPLES: &str = "Examples:
  flowhook serve                                   # listen on UDP 2055 and 4739, JSON lines on stdout
  FLOWHOOK__INGEST__LISTEN=127.0.0.1:9995 flowhook serve
  flowhook serve --config /etc/flowhook/flowhook.toml
  flowhook decode exports.pcap | jq .              # decode a capture offline, one line per record
  flowhook replay exports.pcap                     # lifecycle events of a capture, on its own clock
  flowhook check --config flowhook.toml            # validate and print the effective configuration
  flowhook health                                  # is the instance on metrics.listen ready? (exit 0/1)
  flowhook generate --rate 20000 --duration 10s    # load: v9 exports to 127.0.0.1:2055, 30 records per datagram";

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector.
    Serve,
    /// Decode every UDP datagram of a pcap/pcapng capture; one JSON object per record on stdout.
    Decode {
        /// The capture file.
        file: PathBuf,
        /// Leave out options data records (sampling, interface and application tables).
        #[arg(long)]
        flows_only: bool,
    },
    /// Run a capture of export datagrams through the whole pipeline with the capture's clock; print events as JSON lines.
    Replay {
        /// The capture file (pcap or pcapng).
        file: PathBuf,
        /// Run the Lua flow scripts of this directory (default: `scripts.dir`).
        #[arg(long)]
        scripts: Option<PathBuf>,
    },
    /// Validate the configuration and print it as TOML; exit 2 when it is not valid.
    Check,
    /// Send NetFlow v5/v9/IPFIX exports at a set rate or flat out (load generator); print what was sent as JSON.
    Generate(GenerateArgs),
    /// Ask a running instance whether it is ready (`/readyz` on `metrics.listen`); exit 0 when it is, 1 otherwise (for HEALTHCHECK and exec probes).
    Health {
        /// Metrics address to ask (default: `metrics.listen`, an unspecified address meaning loopback).
        #[arg(long)]
        address: Option<std::net::SocketAddr>,
        /// Endpoint: `/readyz` (ready to receive) or `/healthz` (alive).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Collector address to send to.
    #[arg(long, default_value = "127.0.0.1:2055")]
    target: std::net::SocketAddr,
    /// Export version: 5, 9 or 10 (IPFIX).
    #[arg(long = "export-version", default_value_t = 9)]
    export_version: u16,
    /// Datagrams per second in all; 0 sends flat out.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to send (ignored with --datagrams).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Send exactly this many datagrams.
    #[arg(long)]
    datagrams: Option<u64>,
    /// Simulated exporters, sending from 127.0.0.2, 127.0.0.3, … (IPv4 targets).
    #[arg(long, default_value_t = 1)]
    exporters: u16,
    /// Observation domains (source ids) per exporter.
    #[arg(long, default_value_t = 1)]
    domains: u32,
    /// Records per datagram (v5: at most 30).
    #[arg(long, default_value_t = 30)]
    records: usize,
    /// Distinct flows in all; each pass over them is one more active-timeout export.
    #[arg(long, default_value_t = 100_000)]
    flows: u32,
    /// Resend the templates every this many datagrams of a stream.
    #[arg(long, default_value_t = 20)]
    template_every: u64,
    /// Also write the stream into this pcap (for `flowhook replay`).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Only write the pcap; send nothing (capture times follow --rate).
    #[arg(long, requires = "pcap")]
    no_send: bool,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("flowhook: {e}");
        ExitCode::from(2)
    })
}

/// Opens the configured databases; an unusable one stops the start (exit 2).
fn open_geo(cfg: &Config, announce: bool) -> Result<Arc<GeoService>, ExitCode> {
    let geo = GeoService::open(&cfg.geo, &cfg.networks).map_err(|e| {
        eprintln!("flowhook: {e}");
        ExitCode::from(2)
    })?;
    if announce && !geo.has_databases() {
        tracing::info!(
            "geolocation is off: set geo.city_db, geo.country_db and/or geo.asn_db to MaxMind-format files (docs/geolocation.md)"
        );
    }
    Ok(Arc::new(geo))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.cmd {
        Cmd::Check => {
            if let Err(code) = open_geo(&cfg, false) {
                return code;
            }
            if let Err(e) = flowhook::alert::Delivery::check(&cfg) {
                eprintln!("flowhook: {e}");
                return ExitCode::from(2);
            }
            if let Err(e) = flowhook::output::check_sinks(&cfg) {
                eprintln!("flowhook: {e}");
                return ExitCode::from(2);
            }
            match flowhook::script::check_all(&flowhook::script::HostConfig::from_config(&cfg)) {
                Ok(report) => {
                    print!("{}", cfg.to_toml());
                    let enabled = report.enabled();
                    eprintln!(
                        "flowhook: configuration ok; scripts enabled: {}",
                        if enabled.is_empty() {
                            "none".into()
                        } else {
                            enabled.join(", ")
                        }
                    );
                    eprint!("{}", report.listing());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("flowhook: {e}");
                    }
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Generate(a) => generate(a),
        Cmd::Health { address, path } => {
            use flowhook::telemetry::probe;
            let addr = address.unwrap_or_else(|| probe::local_address(cfg.metrics.listen));
            match probe::status(addr, &path, std::time::Duration::from_secs(2)) {
                Ok(200) => {
                    println!("flowhook health: {addr}{path}: 200");
                    ExitCode::SUCCESS
                }
                Ok(code) => {
                    eprintln!("flowhook health: {addr}{path}: {code}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("flowhook health: {addr}{path}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Decode { file, flows_only } => {
            init_logging(&cfg.log.level);
            decode(&cfg, &file, flows_only)
        }
        Cmd::Replay { file, scripts } => {
            let mut cfg = cfg;
            if let Some(dir) = scripts {
                cfg.scripts.dir = dir;
            }
            init_logging(&cfg.log.level);
            match open_geo(&cfg, false) {
                Ok(geo) => replay(&cfg, geo, &file),
                Err(code) => code,
            }
        }
        Cmd::Serve => {
            init_logging(&cfg.log.level);
            let geo = match open_geo(&cfg, true) {
                Ok(g) => g,
                Err(code) => return code,
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .worker_threads(2)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("flowhook: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cfg, geo)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e)
                    if matches!(
                        e.downcast_ref::<pipeline::PipelineError>(),
                        Some(
                            pipeline::PipelineError::Scripts(_) | pipeline::PipelineError::Alert(_)
                        )
                    ) =>
                {
                    eprintln!("flowhook: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("flowhook: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn generate(a: GenerateArgs) -> ExitCode {
    let cfg = flowhook::generate::GenConfig {
        target: a.target,
        version: a.export_version,
        rate: a.rate,
        duration: a.duration,
        datagrams: a.datagrams,
        exporters: a.exporters,
        domains: a.domains,
        records: a.records,
        flows: a.flows,
        template_every: a.template_every,
        pcap: a.pcap,
        send: !a.no_send,
        start_unix_ms: None,
    };
    let res = flowhook::generate::run(&cfg, |s| {
        eprintln!(
            "flowhook generate: {} datagrams, {} records sent",
            s.datagrams, s.records
        )
    });
    match res {
        Ok(s) => {
            match serde_json::to_string(&s) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("flowhook: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flowhook: {e}");
            ExitCode::from(2)
        }
    }
}

fn decode(cfg: &Config, file: &std::path::Path, flows_only: bool) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write_failed = false;
    let res = flowhook::offline::decode_capture(
        file,
        cfg,
        |r| {
            if flows_only && r.kind != flowhook::record::RecordKind::Flow {
                return;
            }
            if serde_json::to_writer(&mut out, r).is_err() || out.write_all(b"\n").is_err() {
                write_failed = true;
            }
        },
        |frame, e| eprintln!("frame {frame}: {e}"),
    );
    let _ = out.flush();
    match res {
        Ok(s) => {
            tracing::info!(
                frames = s.capture.frames,
                datagrams = s.datagrams,
                records = s.records,
                errors = s.errors,
                not_udp = s.capture.skipped_not_udp,
                "decoded"
            );
            if write_failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("flowhook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay(cfg: &Config, geo: Arc<GeoService>, file: &std::path::Path) -> ExitCode {
    let mut sink: Box<dyn Write> = if cfg.output.path == std::path::Path::new("-") {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.output.path)
        {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("flowhook: {}: {e}", cfg.output.path.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let mut write_failed = false;
    let res = flowhook::offline::replay_capture(
        file,
        cfg,
        geo,
        |lines| write_failed |= sink.write_all(&lines.buf).is_err(),
        |frame, e| eprintln!("frame {frame}: {e}"),
    );
    write_failed |= sink.flush().is_err();
    match res {
        Ok(s) => {
            tracing::info!(
                datagrams = s.datagrams,
                records = s.records,
                events = s.events,
                errors = s.errors,
                "replayed"
            );
            if write_failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e @ pipeline::PipelineError::Scripts(_)) => {
            eprintln!("flowhook: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("flowhook: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config, geo: Arc<GeoService>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // the endpoint first: /healthz answers and /readyz says "not ready" while the pipeline starts
    let handle = flowhook::telemetry::exporter::install()
        .map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))?;
    let listener = tokio::net::TcpListener::bind(cfg.metrics.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind metrics.listen {}: {e}", cfg.metrics.listen))?;
    tracing::info!(local = %listener.local_addr()?, "metrics endpoint listening");
    let ready = flowhook::telemetry::exporter::Ready::default();
    let stop_http = tokio_util::sync::CancellationToken::new();
    tokio::spawn(flowhook::telemetry::exporter::serve(
        listener,
        handle,
        ready.clone(),
        stop_http.clone(),
    ));
    let running = pipeline::start(&cfg, geo).await?;
    ready.set();
    tracing::info!(shards = cfg.decode.effective_shards(), "flowhook serving");
    // supervisor: a stage that ends on its own makes the service not ready and the process fail
    let mut watch = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut failed = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => running.hangup(),
            _ = watch.tick() => {
                if let Some(stage) = running.stopped_stage() {
                    ready.unset();
                    tracing::error!(stage, "a pipeline stage stopped unexpectedly; exiting so the service is restarted");
                    failed = Some(stage);
                    break;
                }
            }
        }
    }
    tracing::info!("shutting down");
    if !running.shutdown().await && failed.is_none() {
        anyhow::bail!(
            "shutdown took longer than flow.shutdown_timeout_secs ({}s)",
            cfg.flow.shutdown_timeout_secs
        );
    }
    stop_http.cancel();
    if let Some(stage) = failed {
        return Err(pipeline::PipelineError::StageStopped(stage).into());
    }
    tracing::info!("stopped");
    Ok(())
}
