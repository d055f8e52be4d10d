//! A small MCP client for `check` (talking to upstreams) and `probe` (talking to a gateway): dial a fixed
//! address, send one JSON-RPC message per connection with a chosen `Host` (and SNI for TLS), read a JSON or SSE
//! answer, and run the opening of a session in either protocol era — `server/discover` (2026-07-28) first,
//! falling back to `initialize` (2025-11-25) — then `tools/list` and optionally a `tools/call`.
//!
//! It is deliberately not the forwarder's client: that one only sends with an audit `Recorded` token.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::mcp::sse;

pub const MODERN: &str = "2026-07-28";
pub const LEGACY: &str = "2025-11-25";

/// How to reach one MCP endpoint.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value (authority).
    pub host: String,
    pub path: String,
    /// `None`: plain HTTP.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Bound on each exchange (connect, TLS, request, answer).
    pub timeout: Duration,
}

/// One request and what came back.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub answer: Answer,
}

/// The JSON-RPC answer to our request, if there was one.
#[derive(Debug, Clone)]
pub enum Answer {
    Result(Value),
    Error {
        code: i64,
        message: String,
    },
    /// No body (a notification's 202, or an HTTP error without one).
    Empty,
    /// A body that is not a JSON-RPC answer to our id.
    Other(String),
}

impl Step {
    pub fn result(&self) -> Option<&Value> {
        match &self.answer {
            Answer::Result(v) => Some(v),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get(crate::ctx::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
    }
}

impl Target {
    /// POSTs one JSON-RPC message; for a request (it has an `id`), reads the answer with that id from a
    /// JSON body or an SSE stream.
    pub async fn post(&self, msg: &Value, headers: &[(&str, String)]) -> anyhow::Result<Step> {
        let method = msg["method"].as_str().unwrap_or("?").to_owned();
        tokio::time::timeout(self.timeout, self.exchange(msg, headers))
            .await
            .with_context(|| format!("{method}: no answer within {:?}", self.timeout))?
            .with_context(|| format!("{method} to {} ({})", self.addr, self.host))
    }

    async fn exchange(&self, msg: &Value, headers: &[(&str, String)]) -> anyhow::Result<Step> {
        let mut b = Request::post(self.path.as_str())
            .header("host", self.host.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let req = b.body(Full::new(Bytes::from(msg.to_string())))?;
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        let resp = match &self.tls {
            None => send(TokioIo::new(tcp), req).await?,
            Some((connector, sni)) => {
                let tls = connector
                    .connect(sni.clone(), tcp)
                    .await
                    .context("TLS handshake failed")?;
                send(TokioIo::new(tls), req).await?
            }
        };
        let (parts, mut body) = resp.into_parts();
        let method = msg["method"].as_str().unwrap_or("?").to_owned();
        let Some(id) = msg.get("id") else {
            return Ok(Step {
                method,
                status: parts.status,
                headers: parts.headers,
                answer: Answer::Empty,
            });
        };
        let is_sse = crate::body::is_sse_headers(&parts.headers);
        let answer = if is_sse {
            // Read events until the one answering our id (a stream may carry notifications first).
            let mut split = sse::EventSplitter::default();
            let mut found = None;
            'read: while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    split.push(&data);
                }
                while let Some(ev) = split.next_event() {
                    if let Some(v) =
                        sse::data(&ev).and_then(|d| serde_json::from_str::<Value>(&d).ok())
                        && v.get("id") == Some(id)
                        && v.get("method").is_none()
                    {
                        found = Some(v);
                        break 'read;
                    }
                }
            }
            match found {
                Some(v) => answer_of(&v),
                None => Answer::Other("SSE stream ended without an answer to the request".into()),
            }
        } else {
            let bytes = body.collect().await?.to_bytes();
            if bytes.is_empty() {
                Answer::Empty
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) if v.get("result").is_some() || v.get("error").is_some() => answer_of(&v),
                    _ => Answer::Other(String::from_utf8_lossy(&bytes).chars().take(300).collect()),
                }
            }
        };
        Ok(Step {
            method,
            status: parts.status,
            headers: parts.headers,
            answer,
        })
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

fn answer_of(v: &Value) -> Answer {
    if let Some(r) = v.get("result") {
        return Answer::Result(r.clone());
    }
    let e = &v["error"];
    Answer::Error {
        code: e["code"].as_i64().unwrap_or(0),
        message: e["message"].as_str().unwrap_or("").to_owned(),
    }
}

/// A session opened in one era: what to send with every later request.
#[derive(Debug, Clone)]
pub struct Session {
    pub era: &'static str,
    /// `serverInfo` name and version, when given.
    pub server: String,
    pub session_id: Option<String>,
}

fn meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}})
}

fn server_info(v: &Value) -> String {
    let i = &v["serverInfo"];
    format!(
        "{} {}",
        i["name"].as_str().unwrap_or("(unnamed)"),
        i["version"].as_str().unwrap_or("")
    )
    .trim()
    .to_owned()
}

/// `Mcp-Name` value: as is when header-safe, else the 2026-07-28 `=?base64?…?=` form.
fn header_name(name: &str) -> String {
    use base64::Engine as _;
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) && !name.starts_with("=?") {
        name.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

impl Session {
    /// Headers every request of this session carries (`Mcp-Method`/`Mcp-Name` added per request in 2026-07-28).
    fn headers(&self, method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if self.era == MODERN {
            h.push(("mcp-protocol-version", MODERN.to_owned()));
            h.push(("mcp-method", method.to_owned()));
            if let Some(n) = name {
                h.push(("mcp-name", header_name(n)));
            }
        } else {
            h.push(("mcp-protocol-version", LEGACY.to_owned()));
            if let Some(s) = &self.session_id {
                h.push(("mcp-session-id", s.clone()));
            }
        }
        h
    }

    fn params(&self, mut params: Value) -> Value {
        if self.era == MODERN {
            params["_meta"] = meta();
        }
        params
    }

    pub async fn request(
        &self,
        target: &Target,
        id: u64,
        method: &str,
        params: Value,
        name: Option<&str>,
    ) -> anyhow::Result<Step> {
        let msg =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": self.params(params)});
        target.post(&msg, &self.headers(method, name)).await
    }
}

/// Opens a session: `server/discover` when the server speaks 2026-07-28, else `initialize` +
/// `notifications/initialized`. Returns every step taken (for the probe's decision path) and the session,
/// or `None` when neither worked (the last step says why).
pub async fn open(target: &Target) -> anyhow::Result<(Vec<Step>, Option<Session>)> {
    let mut steps = Vec::new();
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}});
    let d = target
        .post(
            &discover,
            &[
                ("mcp-protocol-version", MODERN.to_owned()),
                ("mcp-method", "server/discover".to_owned()),
            ],
        )
        .await?;
    let modern = d.status.is_success()
        && d.result().is_some_and(|r| {
            r["supportedVersions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == MODERN))
        });
    let server = d.result().map(server_info).unwrap_or_default();
    // A gateway refusal (routing, IP gate, upstream, audit) is the answer for either era: stop here.
    let gateway_refusal =
        matches!(&d.answer, Answer::Error { code, .. } if (-32004..=-32001).contains(code));
    steps.push(d);
    if modern {
        return Ok((
            steps,
            Some(Session {
                era: MODERN,
                server,
                session_id: None,
            }),
        ));
    }
    if gateway_refusal {
        return Ok((steps, None));
    }
    let init = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION")}}});
    let i = target.post(&init, &[]).await?;
    let Some(result) = i.result().cloned().filter(|_| i.status.is_success()) else {
        steps.push(i);
        return Ok((steps, None));
    };
    let session = Session {
        era: LEGACY,
        server: server_info(&result),
        session_id: i
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    steps.push(i);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    steps.push(
        target
            .post(&note, &session.headers("notifications/initialized", None))
            .await?,
    );
    Ok((steps, Some(session)))
}

/// Number of tools in a `tools/list` result.
pub fn tool_count(result: &Value) -> Option<usize> {
    result["tools"].as_array().map(Vec::len)
}
