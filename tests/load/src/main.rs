//! `mcp-loadgen`: a small closed-loop HTTP(S) load generator for the mcp-gateway benchmark.
//!
//! N concurrent keep-alive connections (HTTP/1.1 by default, `--h2` for HTTP/2) each send the same
//! request back to back for a warm-up period and then for the measured duration. Over TLS it
//! connects to `--connect` (an IP:port) but presents `--host` as SNI and as the Host header (the
//! `:authority` with `--h2`), trusting only the CA in `--ca`. Every response's status is checked and
//! its body read in full. The result is one JSON line on stdout; the exit status is 1 if any request
//! failed (non-2xx status, I/O or protocol error, timeout) during warm-up or measurement.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_rustls::TlsConnector;

/// Closed-loop HTTP(S) load generator (one JSON result line on stdout).
#[derive(Parser, Debug)]
#[command(name = "mcp-loadgen", version, about)]
struct Args {
    /// Address to connect to (IP:port); only the TCP destination, see --host.
    #[arg(long)]
    connect: SocketAddr,
    /// Hostname used for TLS SNI, certificate verification and the Host header / :authority.
    /// Defaults to the IP of --connect.
    #[arg(long)]
    host: Option<String>,
    /// PEM file with the CA certificate(s) to trust (required unless --plain-http).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Request path (and query).
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// File whose contents are sent as the request body.
    #[arg(long, conflicts_with = "body")]
    body_file: Option<PathBuf>,
    /// Literal request body.
    #[arg(long)]
    body: Option<String>,
    /// Request method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Number of concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent in-flight requests per connection with --h2 (HTTP/1.1 always uses 1).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Measured duration (e.g. 10s, 1500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before measuring (requests run but are not recorded; errors still count).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Per-request timeout (a timed-out request is an error).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Plain HTTP instead of TLS (with --h2: HTTP/2 with prior knowledge).
    #[arg(long)]
    plain_http: bool,
    /// Use HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    h2: bool,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Free-form label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Everything a connection task needs, shared read-only.
struct Config {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    h2: bool,
    streams: usize,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    measure_start: Instant,
    end: Instant,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

struct Stats {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    warmup_requests: u64,
    warmup_errors: u64,
    connects: u64,
    reconnects: u64,
    resp_bytes: u64,
    /// Distinct error messages (capped) with their counts.
    error_samples: Vec<(String, u64)>,
}

impl Stats {
    fn new() -> Self {
        Self {
            // 1 µs .. 60 s, 3 significant figures.
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            requests: 0,
            errors: 0,
            warmup_requests: 0,
            warmup_errors: 0,
            connects: 0,
            reconnects: 0,
            resp_bytes: 0,
            error_samples: Vec::new(),
        }
    }

    fn error(&mut self, cfg: &Config, msg: String) {
        if Instant::now() >= cfg.measure_start {
            self.errors += 1;
        } else {
            self.warmup_errors += 1;
        }
        self.note_error(msg, 1);
    }

    fn note_error(&mut self, msg: String, n: u64) {
        // Group by status for HTTP errors (bodies often carry unique request ids); keep the first body.
        let key = |m: &str| match m.strip_prefix("status ") {
            Some(rest) => rest.split(':').next().unwrap_or(rest).to_owned(),
            None => m.to_owned(),
        };
        let k = key(&msg);
        if let Some(e) = self.error_samples.iter_mut().find(|(m, _)| key(m) == k) {
            e.1 += n;
        } else if self.error_samples.len() < 20 {
            self.error_samples.push((msg, n));
        }
    }

    fn merge(&mut self, other: Stats) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.requests += other.requests;
        self.errors += other.errors;
        self.warmup_requests += other.warmup_requests;
        self.warmup_errors += other.warmup_errors;
        self.connects += other.connects;
        self.reconnects += other.reconnects;
        self.resp_bytes += other.resp_bytes;
        for (msg, n) in other.error_samples {
            self.note_error(msg, n);
        }
    }
}

async fn handshake<T>(cfg: &Config, io: T) -> Result<Sender, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if cfg.h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {}", chain(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http/1.1 handshake: {}", chain(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H1(sender))
    }
}

async fn connect(cfg: &Config) -> Result<Sender, String> {
    let tcp = TcpStream::connect(cfg.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", cfg.addr))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    match &cfg.tls {
        None => handshake(cfg, tcp).await,
        Some((connector, server_name)) => {
            let tls = connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {}", chain(&e)))?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let want: &[u8] = if cfg.h2 { b"h2" } else { b"http/1.1" };
            // A server that ignores ALPN is fine for HTTP/1.1, but HTTP/2 needs an explicit "h2".
            if alpn.as_deref() != Some(want) && (cfg.h2 || alpn.is_some()) {
                return Err(format!(
                    "server negotiated ALPN {:?}, wanted {:?}",
                    alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
                    String::from_utf8_lossy(want)
                ));
            }
            handshake(cfg, tls).await
        }
    }
}

/// An error with its whole `source()` chain ("http2 error" alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn build_request(cfg: &Config) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(cfg.body.clone()));
    *req.method_mut() = cfg.method.clone();
    *req.uri_mut() = cfg.uri.clone();
    *req.headers_mut() = cfg.headers.clone();
    req
}

enum Outcome {
    /// Measurement window over: stop.
    Done,
    /// The connection failed or was closed: open a new one.
    Reconnect,
}

/// Sends requests back to back on one connection (or one HTTP/2 stream slot) until the window ends
/// or the connection breaks.
async fn request_loop(cfg: &Config, mut sender: Sender, stats: &mut Stats) -> Outcome {
    loop {
        let start = Instant::now();
        if start >= cfg.end {
            return Outcome::Done;
        }
        let deadline = (start + cfg.timeout).min(cfg.end);
        let attempt = timeout_at(deadline, async {
            if let Err(e) = sender.ready().await {
                // Closed between requests (e.g. server-side idle close): not a request failure.
                return Err((false, format!("connection not ready: {e}")));
            }
            let resp = sender
                .send(build_request(cfg))
                .await
                .map_err(|e| (true, format!("send: {}", chain(&e))))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    (
                        true,
                        format!("reading body (status {status}): {}", chain(&e)),
                    )
                })?
                .to_bytes();
            Ok((status, body))
        })
        .await;
        let done = Instant::now();
        match attempt {
            Err(_elapsed) if done >= cfg.end => return Outcome::Done,
            Err(_elapsed) => {
                stats.error(cfg, format!("timeout after {:?}", cfg.timeout));
                return Outcome::Reconnect;
            }
            Ok(Err((false, _msg))) => {
                stats.reconnects += 1;
                return Outcome::Reconnect;
            }
            Ok(Err((true, msg))) => {
                stats.error(cfg, msg);
                return Outcome::Reconnect;
            }
            Ok(Ok((status, body))) => {
                if !status.is_success() {
                    let snippet =
                        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                    stats.error(cfg, format!("status {status}: {snippet}"));
                    continue;
                }
                if done < cfg.measure_start {
                    stats.warmup_requests += 1;
                } else {
                    stats.requests += 1;
                    stats.resp_bytes += body.len() as u64;
                    let us = u64::try_from((done - start).as_micros()).unwrap_or(u64::MAX);
                    stats.hist.saturating_record(us.max(1));
                }
            }
        }
    }
}

/// One connection: (re)connects and drives `streams` concurrent request loops over it.
async fn connection_task(cfg: Arc<Config>) -> Stats {
    let mut stats = Stats::new();
    let mut first = true;
    while Instant::now() < cfg.end {
        if !first {
            // Avoid a hot reconnect loop against a broken server.
            sleep(Duration::from_millis(10)).await;
        }
        first = false;
        let sender = match timeout_at(cfg.end, connect(&cfg)).await {
            Err(_) => break,
            Ok(Err(e)) => {
                stats.error(&cfg, e);
                continue;
            }
            Ok(Ok(s)) => s,
        };
        stats.connects += 1;
        let streams = if cfg.h2 { cfg.streams.max(1) } else { 1 };
        if streams == 1 {
            if let Outcome::Done = request_loop(&cfg, sender, &mut stats).await {
                break;
            }
        } else {
            let Sender::H2(h2) = sender else {
                unreachable!("streams > 1 only with --h2")
            };
            let mut set = JoinSet::new();
            for _ in 0..streams {
                let cfg = cfg.clone();
                let sender = Sender::H2(h2.clone());
                set.spawn(async move {
                    let mut s = Stats::new();
                    request_loop(&cfg, sender, &mut s).await;
                    s
                });
            }
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(s) => stats.merge(s),
                    Err(e) => stats.error(&cfg, format!("stream task failed: {e}")),
                }
            }
        }
    }
    stats
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build_config(args: &Args) -> Result<Config, String> {
    let host = args
        .host
        .clone()
        .unwrap_or_else(|| args.connect.ip().to_string());
    let tls = if args.plain_http {
        None
    } else {
        let ca = args
            .ca
            .as_ref()
            .ok_or("--ca is required unless --plain-http")?;
        let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("parsing {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("adding CA from {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("no certificates in {}", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS config: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if args.h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let name =
            ServerName::try_from(host.clone()).map_err(|e| format!("--host {host:?}: {e}"))?;
        Some((TlsConnector::from(Arc::new(config)), name))
    };

    let body = match (&args.body_file, &args.body) {
        (Some(f), _) => {
            Bytes::from(std::fs::read(f).map_err(|e| format!("reading {}: {e}", f.display()))?)
        }
        (None, Some(b)) => Bytes::from(b.clone()),
        (None, None) => Bytes::new(),
    };

    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("--header {h:?}: {e}"))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|e| format!("--header {h:?}: {e}"))?;
        headers.append(name, value);
    }

    let scheme = if args.plain_http { "http" } else { "https" };
    let uri: Uri = if args.h2 {
        // HTTP/2: the authority travels as :authority, so use an absolute URI.
        let authority = headers
            .remove(HOST)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| host.clone());
        format!("{scheme}://{authority}{}", args.path)
    } else {
        if !headers.contains_key(HOST) {
            headers.insert(
                HOST,
                HeaderValue::from_str(&host).map_err(|e| format!("--host {host:?}: {e}"))?,
            );
        }
        args.path.clone()
    }
    .parse()
    .map_err(|e| format!("--path {:?}: {e}", args.path))?;

    let method =
        Method::from_bytes(args.method.as_bytes()).map_err(|e| format!("--method: {e}"))?;
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }

    let now = Instant::now();
    Ok(Config {
        addr: args.connect,
        tls,
        h2: args.h2,
        streams: args.streams,
        method,
        uri,
        headers,
        body,
        timeout: args.timeout,
        measure_start: now + args.warmup,
        end: now + args.warmup + args.duration,
    })
}

/// CPU time (user + system) this process has used, in ms, from /proc/self/stat (Linux; None elsewhere).
fn own_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) * 10)
}

async fn run(args: Args) -> Result<bool, String> {
    let cpu_start = own_cpu_ms();
    let cfg = Arc::new(build_config(&args)?);
    let mut set = JoinSet::new();
    for _ in 0..args.connections {
        set.spawn(connection_task(cfg.clone()));
    }
    let mut total = Stats::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok(s) => total.merge(s),
            Err(e) => total.error(&cfg, format!("connection task failed: {e}")),
        }
    }
    let secs = args.duration.as_secs_f64();
    let h = &total.hist;
    let q = |p: f64| {
        if total.requests == 0 {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let protocol = if args.h2 { "h2" } else { "http/1.1" };
    let cpu_ms = match (cpu_start, own_cpu_ms()) {
        (Some(a), Some(b)) => b.saturating_sub(a).to_string(),
        _ => "null".to_owned(),
    };
    println!(
        "{{\"label\":{},\"connect\":{},\"host\":{},\"path\":{},\"tls\":{},\"protocol\":{},\"connections\":{},\"streams\":{},\"duration_s\":{:.3},\"warmup_s\":{:.3},\"requests\":{},\"errors\":{},\"warmup_requests\":{},\"warmup_errors\":{},\"connects\":{},\"reconnects\":{},\"rps\":{:.1},\"mean_us\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"avg_resp_bytes\":{:.0},\"loadgen_cpu_ms\":{}}}",
        json_str(&args.label),
        json_str(&args.connect.to_string()),
        json_str(args.host.as_deref().unwrap_or("")),
        json_str(&args.path),
        !args.plain_http,
        json_str(protocol),
        args.connections,
        if args.h2 { args.streams.max(1) } else { 1 },
        secs,
        args.warmup.as_secs_f64(),
        total.requests,
        total.errors,
        total.warmup_requests,
        total.warmup_errors,
        total.connects,
        total.reconnects,
        total.requests as f64 / secs,
        if total.requests == 0 { 0.0 } else { h.mean() },
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        if total.requests == 0 { 0 } else { h.max() },
        if total.requests == 0 {
            0.0
        } else {
            total.resp_bytes as f64 / total.requests as f64
        },
        cpu_ms,
    );
    let failed = total.errors + total.warmup_errors;
    if failed > 0 || total.requests == 0 {
        eprintln!(
            "mcp-loadgen: {} failed request(s) ({} during warm-up), {} succeeded in the measured window",
            failed, total.warmup_errors, total.requests
        );
        for (msg, n) in &total.error_samples {
            eprintln!("  {n:>8} x {msg}");
        }
        return Ok(false);
    }
    Ok(true)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-loadgen: building runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mcp-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
