//! OpenTelemetry trace export end to end: a real gateway exports over OTLP/HTTP (protobuf) to a receiver
//! that decodes the requests with the OpenTelemetry project's own message types (`opentelemetry-proto`);
//! real MCP calls (allowed, hidden, refused) go through it with and without a caller `traceparent`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use mcp_gateway::demo::client::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{
    Span, span::SpanKind, status::StatusCode as SpanStatus,
};
use prost::Message as _;
use serde_json::{Value, json};

use crate::common::{self, Gw, TD, call, wasm};

/// What the receiver got: every span, with the `service.name` of its resource, and each request's
/// content type and headers.
#[derive(Default)]
struct Received {
    spans: Vec<(String, Span)>,
    content_types: Vec<String>,
    api_keys: Vec<String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1: decodes `POST /v1/traces` bodies as `ExportTraceServiceRequest`.
async fn receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    receiver_over(None).await
}

/// The same receiver, over TLS when `tls` is set.
async fn receiver_over(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let req =
                    ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf body");
                let mut r = state.lock().unwrap();
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                r.content_types.push(h("content-type"));
                r.api_keys.push(h("x-api-key"));
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            r.spans.push((service.clone(), s));
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let Some(tls) = tls else {
        tokio::spawn(async move { axum::serve(listener, app).await });
        return (addr, got);
    };
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (app, tls) = (app.clone(), tls.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return; // e.g. the client did not trust the certificate
                };
                let svc = hyper::service::service_fn(move |req| {
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, req).await }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, got)
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s.attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    Some(match v.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

fn tool_call(id: u64, name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {"query": "q"}}})
}

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_A: &str = "00f067aa0ba902b7";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_B: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_an_otlp_receiver_and_continue_the_callers_trace() {
    let (otlp, got) = receiver().await;
    let upstream = common::echo_upstream().await;
    let extra = format!(
        "upstream: {{allowed_ips: [127.0.0.0/8]}}\n\
         policies:\n  modules:\n    allow: {{ path: {}, settings: {{ allow: ['search_*'] }} }}\n  default: [allow]\n\
         telemetry:\n  otlp:\n    endpoint: http://{otlp}\n    service_name: gw-under-test\n    headers: {{ x-api-key: k-123 }}\n",
        wasm("tool_allowlist").display()
    );
    let gw = Gw::start(&format!("  crm: http://{upstream}"), &extra).await;

    // Allowed, continuing the caller's trace A: the upstream receives a traceparent in trace A.
    let tp_a = format!("00-{TRACE_A}-{CALLER_SPAN_A}-01");
    let (status, echo) = call(
        &gw,
        "crm",
        tool_call(1, "search_docs"),
        &[("traceparent", &tp_a)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let upstream_tp = echo["headers"]["traceparent"]
        .as_str()
        .expect("traceparent sent upstream")
        .to_owned();
    let parts: Vec<&str> = upstream_tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_tp}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_A, "01"),
        "same trace, still sampled"
    );
    assert_ne!(
        parts[2], CALLER_SPAN_A,
        "the upstream's parent is the gateway's span, not the caller's"
    );
    let upstream_parent = parts[2].to_owned();

    // Hidden by the allowlist (a policy answer, HTTP 200), in trace B: nothing reaches the upstream.
    let tp_b = format!("00-{TRACE_B}-{CALLER_SPAN_B}-01");
    let (status, v) = call(
        &gw,
        "crm",
        tool_call(2, "delete_customer"),
        &[("traceparent", &tp_b)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"]["code"], -32602, "{v}");

    // Refused by the gateway (no such route: 421), no traceparent: a new trace, marked failed.
    let resp = gw
        .client("crm")
        .send(post(
            &format!("nope.{TD}"),
            "/mcp",
            tool_call(3, "search_docs").to_string(),
            &[],
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);

    // Stopping flushes the exporter.
    gw.stop().await;
    let r = got.lock().unwrap();
    assert!(
        r.content_types
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "{:?}",
        r.content_types
    );
    assert!(
        r.api_keys.iter().all(|k| k == "k-123"),
        "configured headers are sent"
    );
    assert!(r.spans.iter().all(|(svc, _)| svc == "gw-under-test"));
    let spans: Vec<&Span> = r.spans.iter().map(|(_, s)| s).collect();
    let in_trace = |t: &str| -> Vec<&Span> {
        spans
            .iter()
            .copied()
            .filter(|s| hex::encode(&s.trace_id) == t)
            .collect()
    };
    let by_name = |trace: &[&Span], name: &str| -> Vec<Span> {
        trace
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (*s).clone())
            .collect()
    };

    // Trace A: root ← caller; every stage a child of the root; each policy evaluation a child of `policy`;
    // the upstream span is the parent named in the forwarded traceparent.
    let a = in_trace(TRACE_A);
    let [root] = by_name(&a, "request")
        .try_into()
        .expect("one root span in trace A");
    assert_eq!(hex::encode(&root.parent_span_id), CALLER_SPAN_A);
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(attr(&root, "mcp_gateway.route").as_deref(), Some("crm"));
    assert_eq!(
        attr(&root, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        attr(&root, "gen_ai.tool.name").as_deref(),
        Some("search_docs")
    );
    assert_eq!(
        attr(&root, "mcp_gateway.decision").as_deref(),
        Some("allow")
    );
    assert_eq!(
        attr(&root, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(&root, "http.request.method").as_deref(), Some("POST"));
    let request_id = attr(&root, "mcp_gateway.request_id").expect("request id");
    assert_eq!(request_id.len(), 36, "{request_id}");
    let names: HashMap<String, Span> = a.iter().map(|s| (s.name.clone(), (*s).clone())).collect();
    for stage in [
        "route",
        "ip_gate",
        "parse",
        "policy",
        "audit.record",
        "upstream",
    ] {
        let s = names
            .get(stage)
            .unwrap_or_else(|| panic!("no `{stage}` span in {:?}", names.keys()));
        assert_eq!(
            s.parent_span_id, root.span_id,
            "`{stage}` is a child of the request span"
        );
        assert!(
            s.start_time_unix_nano >= root.start_time_unix_nano
                && s.end_time_unix_nano <= root.end_time_unix_nano
        );
        assert_ne!(
            s.status.as_ref().map(|s| s.code),
            Some(SpanStatus::Error as i32),
            "`{stage}` did not fail"
        );
    }
    let [eval] = by_name(&a, "policy.evaluate")
        .try_into()
        .expect("one policy evaluation");
    assert_eq!(eval.parent_span_id, names["policy"].span_id);
    assert_eq!(attr(&eval, "mcp_gateway.policy").as_deref(), Some("allow"));
    assert_eq!(
        attr(&eval, "mcp_gateway.policy.answer").as_deref(),
        Some("allow")
    );
    let up = &names["upstream"];
    assert_eq!(up.kind, SpanKind::Client as i32);
    assert_eq!(hex::encode(&up.span_id), upstream_parent);
    assert_eq!(
        attr(up, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&names["parse"], "mcp.method.name").as_deref(),
        Some("tools/call")
    );

    // Trace B: decided `hidden`, never audited-then-forwarded, never sent upstream.
    let b = in_trace(TRACE_B);
    let [root_b] = by_name(&b, "request")
        .try_into()
        .expect("one root span in trace B");
    assert_eq!(hex::encode(&root_b.parent_span_id), CALLER_SPAN_B);
    assert_eq!(
        attr(&root_b, "mcp_gateway.decision").as_deref(),
        Some("hidden")
    );
    assert_eq!(
        attr(&root_b, "gen_ai.tool.name").as_deref(),
        Some("delete_customer")
    );
    let [eval_b] = by_name(&b, "policy.evaluate")
        .try_into()
        .expect("one policy evaluation");
    assert_eq!(
        attr(&eval_b, "mcp_gateway.policy.answer").as_deref(),
        Some("hidden")
    );
    let [policy_b] = by_name(&b, "policy").try_into().unwrap();
    assert_eq!(
        attr(&policy_b, "mcp_gateway.decision").as_deref(),
        Some("hidden")
    );
    assert!(by_name(&b, "upstream").is_empty() && by_name(&b, "audit.record").is_empty());

    // The refused request: a trace of its own, root and `route` marked failed.
    let refused: Vec<&Span> = spans
        .iter()
        .copied()
        .filter(|s| s.name == "request" && attr(s, "mcp_gateway.refusal").is_some())
        .collect();
    let [root_c] = refused.as_slice() else {
        panic!("one refused request span, got {}", refused.len())
    };
    assert!(
        root_c.parent_span_id.is_empty(),
        "no traceparent: a new trace"
    );
    assert_eq!(
        attr(root_c, "http.response.status_code").as_deref(),
        Some("421")
    );
    assert_eq!(
        root_c.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    let c = in_trace(&hex::encode(&root_c.trace_id));
    let [route_c] = by_name(&c, "route").try_into().unwrap();
    assert_eq!(
        route_c.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    assert!(
        by_name(&c, "parse").is_empty(),
        "nothing after the refusing stage"
    );

    assert!(
        mcp_gateway::otel::export::SPANS_EXPORTED.load(Ordering::Relaxed) >= spans.len() as u64
    );
}

/// The receiver is down: every request is answered as usual; the lost spans are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_failure_never_affects_requests() {
    let (dead, _) = common::counting_listener().await; // accepts and closes: every export fails
    let upstream = common::echo_upstream().await;
    let extra = format!(
        "upstream: {{allowed_ips: [127.0.0.0/8]}}\ntelemetry: {{ otlp: {{ endpoint: 'http://{dead}', timeout: 2s }} }}\n"
    );
    let dropped_before = mcp_gateway::otel::export::SPANS_DROPPED.load(Ordering::Relaxed);
    let gw = Gw::start(&format!("  crm: http://{upstream}"), &extra).await;
    for i in 0..20 {
        let (status, echo) = call(&gw, "crm", tool_call(i, "search_docs"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{echo}");
        assert!(
            echo["headers"]["traceparent"].is_string(),
            "the upstream still gets a traceparent"
        );
    }
    gw.stop().await;
    let dropped = mcp_gateway::otel::export::SPANS_DROPPED.load(Ordering::Relaxed) - dropped_before;
    assert!(
        dropped >= 20 * 5,
        "at least 5 spans per request were lost and counted, got {dropped}"
    );
}

/// Without `telemetry:` a caller's traceparent goes to the upstream untouched, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telemetry_the_callers_traceparent_passes_through() {
    let upstream = common::echo_upstream().await;
    let gw = Gw::start(
        &format!("  crm: http://{upstream}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}\n",
    )
    .await;
    let tp = format!("00-{TRACE_A}-{CALLER_SPAN_A}-01");
    let (_, echo) = call(
        &gw,
        "crm",
        tool_call(1, "search_docs"),
        &[("traceparent", &tp)],
    )
    .await;
    assert_eq!(echo["headers"]["traceparent"], tp.as_str());
    gw.stop().await;
}

/// Sampled out (`sample_ratio: 0` and no sampled caller): no span is exported, yet the upstream still gets
/// a `traceparent` in the request's trace, flagged not sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_out_requests_export_nothing_but_still_propagate() {
    let (otlp, got) = receiver().await;
    let upstream = common::echo_upstream().await;
    let extra = format!(
        "upstream: {{allowed_ips: [127.0.0.0/8]}}\ntelemetry: {{ otlp: {{ endpoint: 'http://{otlp}', sample_ratio: 0.0 }} }}\n"
    );
    let gw = Gw::start(&format!("  crm: http://{upstream}"), &extra).await;
    let tp = format!("00-{TRACE_A}-{CALLER_SPAN_A}-00");
    let (status, echo) = call(
        &gw,
        "crm",
        tool_call(1, "search_docs"),
        &[("traceparent", &tp)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let up = echo["headers"]["traceparent"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = up.split('-').collect();
    assert_eq!((parts[1], parts[3]), (TRACE_A, "00"), "{up}");
    assert_ne!(parts[2], CALLER_SPAN_A);
    let (_, echo) = call(&gw, "crm", tool_call(2, "search_docs"), &[]).await;
    assert!(
        echo["headers"]["traceparent"]
            .as_str()
            .unwrap()
            .ends_with("-00"),
        "{echo}"
    );
    gw.stop().await;
    assert!(
        got.lock().unwrap().spans.is_empty(),
        "nothing sampled, nothing exported"
    );
}

/// An `https://` receiver whose certificate comes from a private CA: spans arrive when `ca_file` names the CA,
/// and are refused (counted as dropped, requests unaffected) when the gateway trusts only the system roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_receiver_trusted_through_ca_file_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, ca) = common::localhost_tls(dir.path());
    let (otlp, got) = receiver_over(Some(tls)).await;
    let upstream = common::echo_upstream().await;
    let config = |ca_line: &str| {
        format!(
            "upstream: {{allowed_ips: [127.0.0.0/8]}}\n\
             telemetry:\n  otlp:\n    endpoint: https://localhost:{}\n    headers: {{ x-api-key: k-tls }}\n    timeout: 2s\n{ca_line}",
            otlp.port()
        )
    };

    let gw = Gw::start(
        &format!("  crm: http://{upstream}"),
        &config(&format!("    ca_file: {}\n", ca.display())),
    )
    .await;
    for i in 0..3 {
        let (status, echo) = call(&gw, "crm", tool_call(i, "search_docs"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{echo}");
    }
    gw.stop().await; // flushes the exporter
    {
        let r = got.lock().unwrap();
        let requests = r.spans.iter().filter(|(_, s)| s.name == "request").count();
        assert_eq!(requests, 3, "one request span per call over https");
        assert!(r.api_keys.iter().all(|k| k == "k-tls"), "{:?}", r.api_keys);
        assert!(
            r.content_types
                .iter()
                .all(|c| c == "application/x-protobuf"),
            "{:?}",
            r.content_types
        );
    }

    // The same receiver, but the gateway trusts only the system's roots: the certificate is refused.
    let before = got.lock().unwrap().spans.len();
    let dropped_before = mcp_gateway::otel::export::SPANS_DROPPED.load(Ordering::Relaxed);
    let gw = Gw::start(&format!("  crm: http://{upstream}"), &config("")).await;
    for i in 0..3 {
        let (status, echo) = call(&gw, "crm", tool_call(i, "search_docs"), &[]).await;
        assert_eq!(status, StatusCode::OK, "requests are unaffected: {echo}");
    }
    gw.stop().await;
    assert_eq!(
        got.lock().unwrap().spans.len(),
        before,
        "spans went to a receiver whose certificate is not trusted"
    );
    assert!(
        mcp_gateway::otel::export::SPANS_DROPPED.load(Ordering::Relaxed) > dropped_before,
        "the refused export was not counted"
    );
}

/// The request span and the `upstream` span last until the answer's body has been passed on: a progress
/// stream that runs 600 ms after its headers is inside both, and a client that goes away mid-stream ends
/// them, marked incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_cover_a_streamed_answer_until_its_end() {
    const TRACE_C: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
    const TRACE_D: &str = "6bf92f3577b34da6a3ce929d0e0e4736";
    const TRACE_E: &str = "7bf92f3577b34da6a3ce929d0e0e4736";
    let (otlp, got) = receiver().await;
    let sample = mcp_gateway::demo::upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let extra = format!(
        "upstream: {{allowed_ips: [127.0.0.0/8]}}\ntelemetry: {{ otlp: {{ endpoint: 'http://{otlp}' }} }}\n"
    );
    let gw = Gw::start(&format!("  crm: http://{}", sample.addr), &extra).await;
    let report = |id: u64, steps: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "export_report",
            "arguments": {"steps": steps}, "_meta": {"progressToken": id}}})
        .to_string()
    };
    let client = gw.client("crm");
    let send = |body: String, trace: &str| {
        client.send(post(
            &format!("crm.{TD}"),
            "/mcp",
            body,
            &[("traceparent", &format!("00-{trace}-{CALLER_SPAN_A}-01"))],
        ))
    };

    // Two 300 ms steps after the headers, read to the end.
    let resp = send(report(1, 2), TRACE_C).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let whole = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&whole).contains("\"result\""),
        "the stream ended with the result"
    );

    // A client that reads the first event of a 20-step stream and goes away.
    let resp = send(report(2, 20), TRACE_D).await.unwrap();
    let mut body = resp.into_body();
    let _first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap();
    drop(body);

    // A notification: 202 with an empty body, which nothing may ever poll; it is complete all the same.
    let resp = send(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        TRACE_E,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    drop(resp);
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.stop().await;

    let r = got.lock().unwrap();
    let span = |trace: &str, name: &str| -> Span {
        r.spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| hex::encode(&s.trace_id) == trace && s.name == name)
            .unwrap_or_else(|| panic!("no `{name}` span in trace {trace}"))
            .clone()
    };
    let ms = |s: &Span| (s.end_time_unix_nano - s.start_time_unix_nano) / 1_000_000;
    let (root, upstream) = (span(TRACE_C, "request"), span(TRACE_C, "upstream"));
    assert!(ms(&root) >= 550, "request span: {} ms", ms(&root));
    assert!(ms(&upstream) >= 550, "upstream span: {} ms", ms(&upstream));
    assert!(upstream.end_time_unix_nano <= root.end_time_unix_nano);
    assert_eq!(
        attr(&root, "http.response.body.size").as_deref(),
        Some(whole.len().to_string().as_str()),
        "the bytes the client was given"
    );
    assert_eq!(attr(&root, "mcp_gateway.body_incomplete"), None);

    let root = span(TRACE_E, "request");
    assert_eq!(attr(&root, "mcp_gateway.body_incomplete"), None);

    let (root, upstream) = (span(TRACE_D, "request"), span(TRACE_D, "upstream"));
    for s in [&root, &upstream] {
        assert_eq!(
            attr(s, "mcp_gateway.body_incomplete").as_deref(),
            Some("client went away"),
            "{}",
            s.name
        );
        assert!(
            ms(s) < 5_000,
            "`{}` ended when the client left, not with the stream: {} ms",
            s.name,
            ms(s)
        );
    }
}

/// Waits (up to 10 s) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `telemetry:` follows a reload: spans go to the new receiver from the next request on, the replaced
/// exporter is flushed once its requests are done, and removing the block stops tracing (a caller's
/// `traceparent` then reaches the upstream untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_trace_export_to_the_new_settings() {
    let (a, got_a) = receiver().await;
    let (b, got_b) = receiver().await;
    let upstream = common::echo_upstream().await;
    let body = |telemetry: String| format!("routes:\n  crm: http://{upstream}\n{telemetry}");
    let gw = crate::admin::Running::start(
        tempfile::tempdir().unwrap(),
        &body(format!("telemetry: {{otlp: {{endpoint: 'http://{a}'}}}}")),
    )
    .await;
    let requests = |got: &Arc<Mutex<Received>>| -> Vec<String> {
        got.lock()
            .unwrap()
            .spans
            .iter()
            .filter(|(_, s)| s.name == "request")
            .map(|(svc, _)| svc.clone())
            .collect()
    };
    let reloaded = |n: f64| {
        let gw = &gw;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while gw
                .metrics()
                .await
                .value("mcp_gateway_config_reloads_total", &[("result", "success")])
                < n
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "reload {n} never happened"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let (status, _) = gw
        .call("crm", tool_call(1, "search_docs").to_string())
        .await;
    assert_eq!(status, StatusCode::OK);

    // Point the export at B, under another service name.
    gw.rewrite(&body(format!(
        "telemetry: {{otlp: {{endpoint: 'http://{b}', service_name: after-reload}}}}"
    )));
    reloaded(1.0).await;
    // The replaced exporter is flushed now that nothing uses it: A gets request 1, and only that.
    until("A gets the first request's span", || {
        requests(&got_a).len() == 1
    })
    .await;
    let (status, _) = gw
        .call("crm", tool_call(2, "search_docs").to_string())
        .await;
    assert_eq!(status, StatusCode::OK);

    // Remove the block: B's exporter is flushed in turn, and nothing is traced any more.
    gw.rewrite(&body(String::new()));
    reloaded(2.0).await;
    until("B gets the second request's span", || {
        requests(&got_b) == ["after-reload"]
    })
    .await;
    let tp = format!("00-{TRACE_A}-{CALLER_SPAN_A}-01");
    let resp = gw
        .client("crm")
        .send(post(
            &format!("crm.{TD}"),
            "/mcp",
            tool_call(3, "search_docs").to_string(),
            &[("traceparent", &tp)],
        ))
        .await
        .unwrap();
    let echo: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        echo["headers"]["traceparent"], tp,
        "without telemetry the caller's traceparent passes through"
    );
    gw.stop().await;
    assert_eq!(requests(&got_a).len(), 1, "A got spans after the reload");
    assert_eq!(
        requests(&got_b).len(),
        1,
        "B got spans after the block was removed"
    );
}
