//! Stage 0 for cloudflared deployments. cloudflared (`tunnel run --url http://localhost:8080`) reaches the
//! gateway's listener with plaintext HTTP and upgrades it to a WebSocket whose **binary messages carry the
//! inner TLS connection as a byte stream**; the gateway then terminates that TLS exactly as it does a direct
//! connection, and everything after (routing, IP gate, policies, audit) is the same code.
//!
//! Anthropic does not publish the framing. This implements the documented shape: binary messages in order,
//! their boundaries meaningless (a TLS record may span messages, a message may hold several records); text
//! messages are a protocol error and end the tunnel; close ends it.
//!
//! One listener serves both shapes, told apart by the first byte: a TLS handshake record starts with `0x16`,
//! HTTP with a method name. So Anthropic's proxy config (`listen_addr: ":8080"`, cloudflared pointed at it)
//! works unchanged, and so does a direct TLS client. Plaintext that is not a WebSocket upgrade is refused (the
//! connection is closed and the log says why): nothing but TLS is ever served.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// Buffer between the WebSocket and the TLS engine, each way.
const PIPE_BYTES: usize = 64 << 10;

/// How a connection to the listener starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    Tls,
    /// Anything else: read as HTTP, for the WebSocket tunnel.
    Http,
}

/// Looks at the first byte without consuming it. `UnexpectedEof` when the peer closes before sending any.
pub async fn opening(tcp: &TcpStream) -> io::Result<Opening> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(if first[0] == TLS_HANDSHAKE {
        Opening::Tls
    } else {
        Opening::Http
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "plaintext that is not a WebSocket upgrade ({0}); this listener speaks TLS, or a cloudflared WebSocket tunnel carrying TLS"
    )]
    NotAWebSocket(String),
    #[error("the WebSocket handshake did not finish within {0:?}")]
    Timeout(Duration),
}

/// Completes the WebSocket handshake on `tcp` (server side) and returns the byte stream the tunnel carries.
/// Generic over the stream so the fuzz target (`fuzz/fuzz_targets/tunnel_ws.rs`) can drive it in memory.
pub async fn accept<S>(tcp: S, timeout: Duration) -> Result<DuplexStream, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = tokio::time::timeout(timeout, tokio_tungstenite::accept_async(tcp))
        .await
        .map_err(|_| TunnelError::Timeout(timeout))?
        .map_err(|e| TunnelError::NotAWebSocket(e.to_string()))?;
    Ok(bytes_of(ws))
}

/// The byte stream carried by `ws`'s binary messages, as an `AsyncRead + AsyncWrite` (either role: the
/// gateway's listener and a client of the tunnel use the same framing). Two tasks pump the directions; both
/// end when either side closes.
pub fn bytes_of<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (mut from_tls, mut to_tls) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let keep_going = match msg {
                Ok(Message::Binary(b)) => to_tls.write_all(&b).await.is_ok(),
                // Pings are answered by the WebSocket layer; pongs and raw frames carry nothing for us.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => true,
                Ok(Message::Text(_)) => {
                    tracing::debug!("text message on a WebSocket tunnel: closing it");
                    false
                }
                Ok(Message::Close(_)) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket tunnel read failed");
                    false
                }
            };
            if !keep_going {
                break;
            }
        }
        let _ = to_tls.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match from_tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    theirs
}
