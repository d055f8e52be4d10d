//! `Mcp-Method` / `Mcp-Name` checks and their `=?base64?…?=` decoding (`gateway/src/mcp/headers.rs`).
//!
//! Properties:
//! 1. Any header bytes and any body: `check` returns, never panics.
//! 2. Encode round-trips: a name (any Unicode) sent as `=?base64?<base64 of its UTF-8>?=` — encoded by this
//!    target's own RFC 4648 encoder — matches the body, in both eras; so does a header-safe name sent raw.
//! 3. The verdict is exactly the decoding: with both headers on a `tools/call`, `check` passes iff each
//!    header, decoded by an independent decoder (visible ASCII, trimmed, strict canonical base64 inside
//!    `=?base64?` … `?=`, UTF-8), equals the body's method and name. Nothing that decodes differently passes.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_gateway::mcp::headers;
use mcp_gateway::mcp::jsonrpc;
use mcp_gateway_fuzz::{base64_decode, base64_encode};
use serde_json::json;

/// Input: NUL-separated fields — flags (bit 0: modern era), body method, body name, raw `Mcp-Method`, raw
/// `Mcp-Name`, then extra headers (first byte selects the name) for property 1.
#[derive(Debug)]
struct Input<'a> {
    modern: bool,
    method: String,
    name: String,
    method_header: &'a [u8],
    name_header: &'a [u8],
    extra: Vec<(u8, &'a [u8])>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let mut parts = data.split(|&b| b == 0);
        let flags = parts.next()?;
        let method = String::from_utf8(parts.next()?.to_vec()).ok()?;
        let name = String::from_utf8(parts.next()?.to_vec()).ok()?;
        let method_header = parts.next().unwrap_or_default();
        let name_header = parts.next().unwrap_or_default();
        let extra = parts
            .filter_map(|p| p.split_first().map(|(k, v)| (*k, v)))
            .collect();
        Some(Input {
            modern: flags.first().is_some_and(|f| f & 1 == 1),
            method,
            name,
            method_header,
            name_header,
            extra,
        })
    }
}

/// What a header value means, written from the rules (independently of the gateway).
fn decode(raw: &[u8]) -> Option<String> {
    // `HeaderValue::to_str`: visible ASCII, space and tab only.
    if !raw.iter().all(|&b| b == b'\t' || (0x20..0x7F).contains(&b)) {
        return None;
    }
    let s = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    match s
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => String::from_utf8(base64_decode(b64)?).ok(),
        None => Some(s.to_owned()),
    }
}

fn body(method: &str, name: &str) -> jsonrpc::Payload {
    let field = if method == "resources/read" {
        "uri"
    } else {
        "name"
    };
    let text = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {field: name, "arguments": {}}})
        .to_string();
    jsonrpc::parse(text.as_bytes()).expect("a well-formed request")
}

fn headers(pairs: &[(&'static str, &[u8])]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_bytes(v).ok()?);
    }
    Some(h)
}

fn encoded(s: &str) -> String {
    format!("=?base64?{}?=", base64_encode(s.as_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let Some(x) = Input::parse(data) else {
        return;
    };
    let version: &[u8] = if x.modern {
        b"2026-07-28"
    } else {
        b"2025-11-25"
    };

    // 1. anything goes in, a verdict comes out
    {
        const NAMES: [&str; 4] = ["mcp-method", "mcp-name", "mcp-protocol-version", "x-other"];
        let mut h = HeaderMap::new();
        for (k, v) in &x.extra {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append(NAMES[*k as usize % 4], v);
            }
        }
        let _ = headers::check(&h, &body(&x.method, &x.name));
        let _ = headers::check(&h, &body("tools/call", &x.name));
    }

    // 2. round trip for tools/call, prompts/get and resources/read
    for method in ["tools/call", "prompts/get", "resources/read"] {
        let p = body(method, &x.name);
        let enc_name = encoded(&x.name);
        let enc_method = encoded(method);
        for (m, n) in [
            (method.as_bytes(), enc_name.as_bytes()),
            (enc_method.as_bytes(), enc_name.as_bytes()),
        ] {
            let h = headers(&[
                ("mcp-protocol-version", version),
                ("mcp-method", m),
                ("mcp-name", n),
            ])
            .expect("base64 is header-safe");
            if let Err(e) = headers::check(&h, &p) {
                panic!("encoded name {:?} did not round-trip: {e}", x.name);
            }
        }
        let raw_safe = !x.name.is_empty()
            && x.name
                .bytes()
                .all(|b| (0x21..0x7F).contains(&b) || b == b' ')
            && x.name.trim() == x.name
            && !(x.name.starts_with("=?base64?") && x.name.ends_with("?="));
        if raw_safe {
            let h = headers(&[
                ("mcp-protocol-version", version),
                ("mcp-method", method.as_bytes()),
                ("mcp-name", x.name.as_bytes()),
            ])
            .unwrap();
            if let Err(e) = headers::check(&h, &p) {
                panic!("header-safe name {:?} sent raw refused: {e}", x.name);
            }
        }
    }

    // 3. the verdict is the decoding
    let p = body("tools/call", &x.name);
    let Some(h) = headers(&[
        ("mcp-protocol-version", version),
        ("mcp-method", x.method_header),
        ("mcp-name", x.name_header),
    ]) else {
        return; // not a header value at all: hyper never hands us one
    };
    let want = decode(x.method_header).as_deref() == Some("tools/call")
        && decode(x.name_header).as_deref() == Some(x.name.as_str());
    let got = headers::check(&h, &p);
    assert_eq!(
        got.is_ok(),
        want,
        "headers {:?} / {:?} for name {:?}: gateway says {got:?}",
        String::from_utf8_lossy(x.method_header),
        String::from_utf8_lossy(x.name_header),
        x.name
    );
});
