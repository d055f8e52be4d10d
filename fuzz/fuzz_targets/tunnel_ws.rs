//! The tunnel's WebSocket framing (`gateway/src/tunnel.rs`: `accept`, `bytes_of`) against RFC 6455 framing
//! written in this crate (`mcp_gateway_fuzz::ws`).
//!
//! Properties:
//! 1. Server → client: bytes written into the tunnel come out, for a client decoding the frames itself, as
//!    unmasked binary frames (no RSV bits) whose payloads concatenate to exactly those bytes; when the tunnel
//!    closes only close frames follow.
//! 2. Client → server: for any bytes a client sends — frames built here (binary messages, fragmented, with
//!    pings and pongs between fragments, text, close) or raw bytes — the tunnel's byte stream is exactly the
//!    payloads of the complete binary messages before the first text message, close, protocol error or end.
//!    So an encoded frame decodes to its payload, and nothing that is not binary payload reaches the TLS
//!    engine.
//! 3. The upgrade handshake (`accept`): any request bytes end in an error or a `101` answer, never a panic or
//!    a hang; a `101` only for a request carrying `Sec-WebSocket-Key`.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_gateway::tunnel;
use mcp_gateway_fuzz::ws::{self, BINARY, CLOSE, CONT, PING, PONG, TEXT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

#[derive(Arbitrary, Debug)]
enum Sent {
    Binary {
        payload: Vec<u8>,
        /// Fragment sizes (each mod 64, 0 allowed); the rest goes in the last fragment.
        fragments: Vec<u8>,
        ping_between: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Text(String),
    Close,
}

/// Input: byte 0 selects the mode. 0: frames described by the rest (`arbitrary`); 1: byte 1 = length of the
/// bytes written into the tunnel, those bytes, then the raw client bytes; 2: the rest is an upgrade request.
#[derive(Arbitrary, Debug)]
struct FramesInput {
    sent: Vec<Sent>,
    mask: [u8; 4],
    to_client: Vec<u8>,
}

fn encode(sent: &[Sent], mask: [u8; 4]) -> Vec<u8> {
    let mut w = Vec::new();
    let m = Some(mask);
    for s in sent {
        match s {
            Sent::Binary {
                payload,
                fragments,
                ping_between,
            } => {
                let mut rest = &payload[..];
                let mut first = true;
                for &f in fragments {
                    let n = (f as usize % 64).min(rest.len());
                    let (frag, r) = rest.split_at(n);
                    w.extend(ws::encode(
                        false,
                        if first { BINARY } else { CONT },
                        frag,
                        m,
                    ));
                    if *ping_between {
                        w.extend(ws::encode(true, PING, b"p", m));
                    }
                    rest = r;
                    first = false;
                }
                w.extend(ws::encode(true, if first { BINARY } else { CONT }, rest, m));
            }
            Sent::Ping(p) => w.extend(ws::encode(true, PING, &p[..p.len().min(125)], m)),
            Sent::Pong(p) => w.extend(ws::encode(true, PONG, &p[..p.len().min(125)], m)),
            Sent::Text(t) => w.extend(ws::encode(true, TEXT, t.as_bytes(), m)),
            Sent::Close => w.extend(ws::encode(true, CLOSE, &1000u16.to_be_bytes(), m)),
        }
    }
    w
}

/// What the frames built here carry, from their own description (checks the reference decoder too).
fn described(sent: &[Sent]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sent {
        match s {
            Sent::Binary { payload, .. } => out.extend_from_slice(payload),
            Sent::Text(_) | Sent::Close => break,
            Sent::Ping(_) | Sent::Pong(_) => {}
        }
    }
    out
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Frames a client reads: all unmasked, no RSV bits, binary or close.
fn server_frames(mut b: &[u8]) -> (Vec<u8>, usize) {
    let mut payload = Vec::new();
    let mut closes = 0;
    while let Some((f, n)) = ws::decode_one(b) {
        assert!(!f.masked && f.rsv == 0 && f.fin, "bad server frame {f:?}");
        match f.opcode {
            BINARY => {
                assert_eq!(closes, 0, "binary frame after a close");
                payload.extend_from_slice(&f.payload)
            }
            CLOSE | PONG => closes += (f.opcode == CLOSE) as usize,
            op => panic!("server sent opcode {op}"),
        }
        b = &b[n..];
    }
    assert!(b.is_empty(), "a partial frame from the server: {b:?}");
    (payload, closes)
}

async fn tunnel_run(wire: Vec<u8>, to_client: Vec<u8>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
    let (mut t_read, mut t_write) = tokio::io::split(tunnel::bytes_of(ws));
    let (mut c_read, mut c_write) = tokio::io::split(client);

    // 1. server → client: read frames until the payload is all there
    let mut seen = Vec::new();
    if !to_client.is_empty() {
        t_write.write_all(&to_client).await.unwrap();
        let mut buf = [0u8; 8192];
        loop {
            let n = c_read.read(&mut buf).await.unwrap();
            assert!(n > 0, "the tunnel closed before delivering its bytes");
            seen.extend_from_slice(&buf[..n]);
            let mut b = &seen[..];
            let mut got = Vec::new();
            while let Some((f, n)) = ws::decode_one(b) {
                assert!(
                    !f.masked && f.rsv == 0 && f.fin && f.opcode == BINARY,
                    "bad server frame {f:?}"
                );
                got.extend_from_slice(&f.payload);
                b = &b[n..];
            }
            assert!(to_client.starts_with(&got), "server payload differs");
            if got.len() == to_client.len() {
                assert!(b.is_empty());
                break;
            }
        }
    }

    // 2. client → server
    let expected = ws::tunnel_bytes_from_client(&wire);
    let writer = tokio::spawn(async move {
        let _ = c_write.write_all(&wire).await;
        let _ = c_write.shutdown().await;
    });
    let mut got = Vec::new();
    t_read.read_to_end(&mut got).await.unwrap();
    assert_eq!(
        got, expected,
        "the tunnel delivered other bytes than the binary messages"
    );
    writer.await.unwrap();

    // ending: only close (or pong) frames follow
    let _ = t_write.shutdown().await;
    drop((t_read, t_write));
    let mut rest = Vec::new();
    let _ = c_read.read_to_end(&mut rest).await;
    let before = seen.len();
    seen.extend_from_slice(&rest);
    let (payload, _) = server_frames(&seen);
    assert_eq!(payload, to_client);
    let _ = before;
}

async fn handshake(request: Vec<u8>) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    client.write_all(&request).await.unwrap();
    client.shutdown().await.unwrap();
    let r = tunnel::accept(server, Duration::from_secs(30)).await;
    if let Ok(t) = r {
        drop(t);
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 101 "), "{answer:?}");
        let lower = String::from_utf8_lossy(&request).to_ascii_lowercase();
        assert!(lower.contains("sec-websocket-key"), "101 without a key");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(x) = FramesInput::arbitrary(&mut arbitrary::Unstructured::new(rest)) else {
                return;
            };
            let wire = encode(&x.sent, x.mask);
            assert_eq!(
                ws::tunnel_bytes_from_client(&wire),
                described(&x.sent),
                "reference decoder disagrees with the encoder"
            );
            rt().block_on(tunnel_run(wire, x.to_client));
        }
        1 => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let n = (n as usize).min(rest.len());
            let (to_client, wire) = rest.split_at(n);
            rt().block_on(tunnel_run(wire.to_vec(), to_client.to_vec()));
        }
        _ => rt().block_on(handshake(rest.to_vec())),
    }
});
