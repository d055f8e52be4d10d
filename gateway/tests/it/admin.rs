//! The admin listener, in-process over real sockets: metrics scraped over HTTP and parsed, `/readyz`
//! following the audit log's health. Hot reload is in `admin_reload.rs` (same harness).

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_gateway::demo::client::post;
use mcp_gateway::demo::upstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::{TD, json_of, rpc, wasm};

/// A gateway started from a config *file*, with reload on, and its admin listener.
pub(crate) struct Running {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The config file: fixed header (loopback listeners, the harness CA, audit in the directory) + `body`.
pub(crate) fn config_text(dir: &Path, body: &str) -> String {
    format!(
        "listen_addr: 127.0.0.1:0\nshutdown_timeout: 3s\ntunnel_domain: {TD}\n\
         tls: {{cert_file: {d}/tls.crt, key_file: {d}/tls.key, reload_interval: 100ms}}\n\
         audit: {{dir: {d}/audit}}\nadmin: {{listen: 127.0.0.1:0}}\nupstream: {{allowed_ips: [127.0.0.0/8]}}\n{body}\n",
        d = dir.display()
    )
}

/// Replaces the config file in one step (as config management tools do), so a poll never reads half a file.
pub(crate) fn write_config(dir: &Path, text: &str) {
    let tmp = dir.join("config.yaml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.yaml")).unwrap();
}

impl Running {
    pub(crate) async fn start(dir: tempfile::TempDir, body: &str) -> Running {
        mcp_gateway::certs::issue(TD, mcp_gateway::certs::KeyKind::EcdsaP256)
            .unwrap()
            .write_to(dir.path())
            .unwrap();
        write_config(dir.path(), &config_text(dir.path(), body));
        let path = dir.path().join("config.yaml");
        let config = mcp_gateway::config::load(&path).unwrap();
        let server = mcp_gateway::server::Server::bind(config)
            .await
            .unwrap()
            .with_config_file(path);
        let addr = server.local_addr();
        let admin = server.admin_addr().expect("admin listener configured");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Running {
            dir,
            addr,
            admin,
            stop: Some(tx),
            task,
        }
    }

    pub(crate) fn rewrite(&self, body: &str) {
        write_config(self.dir.path(), &config_text(self.dir.path(), body));
    }

    pub(crate) fn client(&self, route: &str) -> mcp_gateway::demo::client::PinnedClient {
        let ca = std::fs::read(self.dir.path().join("ca.crt")).unwrap();
        mcp_gateway::demo::client::PinnedClient::new(self.addr, &format!("{route}.{TD}"), &ca)
            .unwrap()
    }

    pub(crate) async fn call(&self, route: &str, body: String) -> (StatusCode, Value) {
        let resp = self
            .client(route)
            .send(post(&format!("{route}.{TD}"), "/mcp", body, &[]))
            .await
            .unwrap();
        let (status, _, v) = json_of(resp).await;
        (status, v)
    }

    pub(crate) async fn admin_get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).await
    }

    pub(crate) async fn metrics(&self) -> Metrics {
        let (status, text) = self.admin_get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        Metrics::parse(&text)
    }

    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.dir
    }
}

/// A plaintext HTTP/1.1 GET: status and body.
async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A Prometheus text exposition, parsed strictly: every sample belongs to a family declared by `# HELP` and
/// `# TYPE` before it, label values unescaped.
#[derive(Debug)]
pub(crate) struct Metrics {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Metrics {
    pub(crate) fn parse(text: &str) -> Metrics {
        let mut types = BTreeMap::new();
        let mut helped = std::collections::BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').unwrap();
                assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice for {name}"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let s = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| {
                    s.name
                        .strip_suffix(suf)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&s.name);
            assert!(types.contains_key(family), "sample without TYPE: {line}");
            if types[family] == "counter" {
                assert!(family.ends_with("_total"), "counter {family} lacks _total");
            }
            samples.push(s);
        }
        Metrics { types, samples }
    }

    /// The value of the sample `name` whose labels include `labels` (0 when absent: counters that were never
    /// incremented are not exported).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map_or(0.0, |s| s.value)
    }

    /// Checks every series of histogram `name`: buckets ascending by `le`, cumulative counts non-decreasing,
    /// `+Inf` equal to `_count`. Returns the series' label sets (without `le`) and counts.
    pub(crate) fn check_histogram(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some("histogram"),
            "{name}"
        );
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
        {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").expect("bucket without le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series.entry(labels).or_default().push((le, s.value));
        }
        assert!(!series.is_empty(), "{name} has no series");
        series
            .into_iter()
            .map(|(labels, buckets)| {
                assert!(
                    buckets.windows(2).all(|w| w[0].0 < w[1].0),
                    "{name} {labels:?}: le order"
                );
                assert!(
                    buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{name} {labels:?}: buckets decrease: {buckets:?}"
                );
                let (le, inf) = *buckets.last().unwrap();
                assert!(le.is_infinite(), "{name} {labels:?}: no +Inf bucket");
                let l: Vec<_> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let count = self.value(&format!("{name}_count"), &l);
                assert_eq!(inf, count, "{name} {labels:?}: +Inf != _count");
                (labels, count)
            })
            .collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let (name_labels, value) = line.rsplit_once(' ').unwrap();
    let value = value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    let Some((name, rest)) = name_labels.split_once('{') else {
        return Sample {
            name: name_labels.to_owned(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut v = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("{line}")) {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(c @ ('\\' | '"')) => v.push(c),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                c => v.push(c),
            }
        }
        labels.insert(key, v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

#[test]
fn the_test_parser_reads_escapes_and_rejects_undeclared_samples() {
    let m = Metrics::parse(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\",y=\"\"} 3\n",
    );
    assert_eq!(m.value("a_total", &[("x", "q\"\\\n")]), 3.0);
    let undeclared = std::panic::catch_unwind(|| Metrics::parse("b_total 1\n"));
    assert!(undeclared.is_err());
}

pub(crate) fn tool_call(id: u64, name: &str) -> String {
    rpc(
        id,
        "tools/call",
        json!({"name": name, "arguments": {"query": "q", "id": "c-1"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_requests_and_histograms_are_well_formed() {
    let sample = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let body = format!(
        "policies:\n  modules:\n    allow: {{ path: {}, settings: {{ allow: [search_docs] }} }}\n\
         routes:\n  metrics-crm: {{ upstream: 'http://{}', policies: [allow] }}\n",
        wasm("tool_allowlist").display(),
        sample.addr
    );
    let gw = Running::start(tempfile::tempdir().unwrap(), &body).await;
    let (status, text) = gw.admin_get("/healthz").await;
    assert_eq!((status, text.as_str()), (200, r#"{"status":"alive"}"#));
    let before = gw.metrics().await;
    let route = [("route", "metrics-crm")];
    let calls = |m: &Metrics, decision: &str| {
        m.value(
            "mcp_gateway_requests_total",
            &[route[0], ("method", "tools/call"), ("decision", decision)],
        )
    };

    for i in 0..5 {
        let (status, v) = gw.call("metrics-crm", tool_call(i, "search_docs")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(v["result"].is_object(), "{v}");
    }
    for i in 0..2 {
        let (status, v) = gw
            .call("metrics-crm", tool_call(10 + i, "delete_customer"))
            .await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (StatusCode::OK, &json!(-32602)),
            "{v}"
        );
    }
    // A host no route serves: refused before routing.
    let resp = gw
        .client("metrics-crm")
        .send(post(
            &format!("nowhere.{TD}"),
            "/mcp",
            rpc(99, "ping", json!({})),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);

    let after = gw.metrics().await;
    assert_eq!(calls(&after, "allow") - calls(&before, "allow"), 5.0);
    assert_eq!(calls(&after, "hidden") - calls(&before, "hidden"), 2.0);
    let refused = |m: &Metrics| m.value("mcp_gateway_refusals_total", &[("reason", "no_route")]);
    assert!(refused(&after) - refused(&before) >= 1.0);
    // Histograms are well formed and saw these requests.
    let count = |m: &Metrics, name: &str, labels: &[(&str, &str)]| {
        m.check_histogram(name);
        m.value(&format!("{name}_count"), labels)
    };
    assert!(
        count(&after, "mcp_gateway_policy_evaluation_seconds", &[])
            - count(&before, "mcp_gateway_policy_evaluation_seconds", &[])
            >= 7.0
    );
    assert!(
        count(&after, "mcp_gateway_upstream_response_seconds", &route)
            - count(&before, "mcp_gateway_upstream_response_seconds", &route)
            >= 5.0
    );
    // (Process-wide: other tests in this binary write too, so only growth is checked.)
    for h in [
        "mcp_gateway_audit_batch_records",
        "mcp_gateway_audit_sync_seconds",
    ] {
        assert!(count(&after, h, &[]) > count(&before, h, &[]), "{h}");
    }
    assert!(
        after.value("mcp_gateway_audit_records_total", &[])
            >= before.value("mcp_gateway_audit_records_total", &[]) + 5.0
    );
    assert_eq!(after.value("mcp_gateway_audit_writable", &[]), 1.0);
    // The harness certificate is valid for 90 days.
    let expiry = after.value("mcp_gateway_tls_cert_expiry_seconds", &[]);
    assert!(
        (89.0 * 86400.0..=91.0 * 86400.0).contains(&expiry),
        "{expiry}"
    );
    assert_eq!(after.value("mcp_gateway_approvals_pending", &[]), 0.0);
    assert_eq!(
        after.value(
            "mcp_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    for kind in ["timeout", "out_of_memory", "trap"] {
        after.value("mcp_gateway_policy_failures_total", &[("kind", kind)]);
    }
    assert!(
        after
            .types
            .contains_key("mcp_gateway_policy_failures_total")
    );
    assert!(after.types.contains_key("mcp_gateway_config_reloads_total"));
    gw.stop().await;
}

/// Mounts a small tmpfs on `dir/audit` (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(dir: &Path) -> Option<Tmpfs> {
        let mnt = dir.join("audit");
        std::fs::create_dir_all(&mnt).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(mnt))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_then_503_while_the_audit_log_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(dir.path()) else {
        crate::common::cannot_run(
            "readyz_is_ready_then_503_while_the_audit_log_cannot_write",
            "cannot mount a tmpfs (needs root)",
        );
        return;
    };
    let sample = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gw = Running::start(dir, &format!("routes:\n  crm: http://{}\n", sample.addr)).await;
    let (status, text) = gw.admin_get("/readyz").await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "ready");
    for name in ["config", "policies", "audit", "tls"] {
        assert_eq!(check(&report, name)["ok"], true, "{report}");
    }

    // Fill the disk and call until the log cannot write.
    let filler = mnt.0.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let mut failing = false;
    for i in 0..500 {
        let (status, _) = gw.call("crm", rpc(i, "ping", json!({}))).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            failing = true;
            break;
        }
    }
    assert!(failing, "the full disk never stopped forwarding");
    let (status, text) = gw.admin_get("/readyz").await;
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["status"], "not_ready");
    let audit = check(&report, "audit");
    assert_eq!(audit["ok"], false, "{report}");
    assert!(
        audit["detail"].as_str().unwrap().contains("cannot write"),
        "{report}"
    );
    assert_eq!(check(&report, "tls")["ok"], true, "{report}");
    assert_eq!(
        gw.admin_get("/healthz").await.0,
        200,
        "alive while not ready"
    );
    let m = gw.metrics().await;
    assert_eq!(m.value("mcp_gateway_audit_writable", &[]), 0.0);
    assert!(m.value("mcp_gateway_audit_failed_batches_total", &[]) >= 1.0);

    // Space returns: the next write recovers the log, and the gateway is ready again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.call("crm", rpc(7, "ping", json!({}))).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    let _dir = gw.stop().await;
    drop(mnt);
}
