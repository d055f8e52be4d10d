//! A small MCP server (Streamable HTTP, path `/mcp`, plain HTTP) for the demo, the in-process tests and the
//! benchmarks: a CRM with read-only and destructive tools, annotated per the spec, answering both eras.
//! `export_report` streams progress notifications over SSE when the request carries a progress token.
//! It is a test peer, not a reference server: it does not enforce sessions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::reply::json_response;

/// What one sample server has seen.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: AtomicU64,
    pub with_request_id: AtomicU64,
    /// `tools/call` requests, by tool name, in arrival order.
    pub tool_calls: std::sync::Mutex<Vec<String>>,
    /// Client responses to the server's own requests, by id (the whole JSON-RPC response).
    pub answers: std::sync::Mutex<std::collections::HashMap<String, Value>>,
}

/// A running sample server.
pub struct Sample {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Binds `listen` and serves in a background task.
pub async fn spawn(listen: SocketAddr) -> anyhow::Result<Sample> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Seen::default());
    let stats = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let stats = stats.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let stats = stats.clone();
                    async move { Ok::<_, Infallible>(handle(req, &stats).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(Sample { addr, seen, task })
}

fn tools() -> Value {
    json!([
        {"name": "search_docs", "title": "Search documentation", "description": "Full-text search over the product docs.",
         "inputSchema": {"type": "object", "properties": {"query": {"type": "string", "minLength": 1}}, "required": ["query"]},
         "annotations": {"readOnlyHint": true, "openWorldHint": false}},
        {"name": "get_customer", "description": "Look up a customer by id.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
         "annotations": {"readOnlyHint": true, "openWorldHint": false}},
        {"name": "delete_customer", "description": "Permanently delete a customer and their data.",
         "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
         "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}},
        {"name": "admin_reset_database", "description": "Drop and recreate every table. Operators only.",
         "inputSchema": {"type": "object", "properties": {"confirm": {"type": "boolean"}}},
         "annotations": {"destructiveHint": true}},
        {"name": "ask_confirmation", "description": "Ask the user to confirm (elicitation), then report the answer.",
         "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}},
        {"name": "export_report", "description": "Build a report, reporting progress as it goes.",
         "inputSchema": {"type": "object", "properties": {"steps": {"type": "integer", "minimum": 1, "maximum": 20}}},
         "annotations": {"readOnlyHint": true}}
    ])
}

async fn handle(req: Request<Incoming>, seen: &Arc<Seen>) -> Response<crate::body::Body> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    if req.headers().contains_key(crate::ctx::REQUEST_ID_HEADER) {
        seen.with_request_id.fetch_add(1, Ordering::Relaxed);
    }
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return status(StatusCode::OK),
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    }
    // A client that lists SSE first gets every answer as an SSE stream (as SDK servers may choose to).
    let prefers_sse = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let accepts_sse = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(Value::Null, -32700, "Parse error"),
        );
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    if msg.get("id").is_none() {
        return status(StatusCode::ACCEPTED); // a notification
    }
    if msg.get("method").is_none() {
        // The client answering one of our requests (e.g. elicitation).
        let key = msg["id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| msg["id"].to_string());
        seen.answers
            .lock()
            .expect("stats lock")
            .insert(key, msg.clone());
        return status(StatusCode::ACCEPTED);
    }
    let result = match method {
        "initialize" => {
            let version = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("2025-11-25");
            let mut resp = json_response(
                StatusCode::OK,
                &rpc_result(
                    id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": false}},
                        "serverInfo": {"name": "mcp-gateway-sample-crm", "version": env!("CARGO_PKG_VERSION")}
                    }),
                ),
            );
            let session = uuid::Uuid::new_v4().simple().to_string();
            resp.headers_mut()
                .insert("mcp-session-id", session.parse().expect("hex"));
            return resp;
        }
        "server/discover" => json!({
            "supportedVersions": ["2026-07-28", "2025-11-25"],
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "mcp-gateway-sample-crm", "version": env!("CARGO_PKG_VERSION")}
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            seen.tool_calls
                .lock()
                .expect("stats lock")
                .push(name.to_owned());
            let args = params.get("arguments").cloned().unwrap_or(json!({}));
            let token = params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .cloned();
            match (name, token) {
                ("ask_confirmation", _) if accepts_sse => {
                    return ask_confirmation(id, seen.clone());
                }
                ("export_report", Some(token)) if accepts_sse => {
                    let steps = args
                        .get("steps")
                        .and_then(Value::as_u64)
                        .unwrap_or(3)
                        .clamp(1, 20);
                    return progress_stream(id, token, steps);
                }
                _ => call_tool(name, &args),
            }
        }
        _ => {
            return json_response(
                StatusCode::OK,
                &rpc_error(id, -32601, &format!("Method not found: {method}")),
            );
        }
    };
    if prefers_sse {
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let _ = tx.try_send(Bytes::from_static(b": sample upstream\n\n"));
        let _ = tx.try_send(sse_event(&rpc_result(id, result)));
        let mut resp = Response::new(crate::body::ChannelBody(rx).boxed());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            "text/event-stream".parse().expect("static"),
        );
        return resp;
    }
    json_response(StatusCode::OK, &rpc_result(id, result))
}

fn call_tool(name: &str, args: &Value) -> Value {
    let arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let text = |t: String| json!({"content": [{"type": "text", "text": t}], "isError": false});
    match name {
        "search_docs" => text(format!(
            "3 results for {:?}: refunds.md, billing.md, accounts.md",
            arg("query")
        )),
        "get_customer" => {
            let c = json!({"id": arg("id"), "name": "Ada Lovelace", "plan": "enterprise"});
            json!({"content": [{"type": "text", "text": c.to_string()}], "structuredContent": c})
        }
        "delete_customer" => text(format!("customer {} deleted", arg("id"))),
        "export_report" => text("report ready: 3 sections".into()),
        "admin_reset_database" => text("database reset".into()),
        other => {
            json!({"content": [{"type": "text", "text": format!("Unknown tool: {other}")}], "isError": true})
        }
    }
}

fn progress_stream(id: Value, token: Value, steps: u64) -> Response<crate::body::Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        for i in 1..=steps {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let note = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": token, "progress": i, "total": steps, "message": format!("section {i} of {steps}")}});
            if tx.send(sse_event(&note)).await.is_err() {
                return; // the client went away: closing the stream is cancellation
            }
        }
        let done = rpc_result(
            id,
            json!({"content": [{"type": "text", "text": format!("report ready: {steps} sections")}]}),
        );
        let _ = tx.send(sse_event(&done)).await;
    });
    let mut resp = Response::new(crate::body::ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/event-stream".parse().expect("static"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, "no-cache".parse().expect("static"));
    resp
}

/// Asks the client to confirm (`elicitation/create` on the response stream), waits up to 3 s for its answer,
/// and reports what came back.
fn ask_confirmation(id: Value, seen: Arc<Seen>) -> Response<crate::body::Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let ask_id = format!("elicit-{}", uuid::Uuid::new_v4().simple());
        let ask = json!({"jsonrpc": "2.0", "id": ask_id, "method": "elicitation/create", "params": {
            "message": "Really delete customer c-42?",
            "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}});
        if tx.send(sse_event(&ask)).await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let answer = loop {
            if let Some(a) = seen.answers.lock().expect("stats lock").remove(&ask_id) {
                break a
                    .get("result")
                    .or_else(|| a.get("error"))
                    .cloned()
                    .unwrap_or(Value::Null);
            }
            if tokio::time::Instant::now() >= deadline {
                break Value::Null;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let text = if answer.is_null() {
            "no answer".to_owned()
        } else {
            format!("answered: {answer}")
        };
        let _ = tx
            .send(sse_event(&rpc_result(
                id,
                json!({"content": [{"type": "text", "text": text}]}),
            )))
            .await;
    });
    let mut resp = Response::new(crate::body::ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/event-stream".parse().expect("static"),
    );
    resp
}

fn sse_event(v: &Value) -> Bytes {
    Bytes::from(crate::body::sse_event(v))
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn status(s: StatusCode) -> Response<crate::body::Body> {
    let mut r = Response::new(crate::body::full(Bytes::new()));
    *r.status_mut() = s;
    r
}

/// Shared with tests: the tool list as served.
pub fn tool_names() -> Vec<String> {
    tools()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
