//! `outbound::Client`, the client for services the operator configures (here as the trace exporter uses
//! it): one idle connection is kept and reused, a server that closes it is dialled again without losing or
//! repeating the request, and `Connection: close` is honoured.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_gateway::outbound::Client;

/// Counts of what a test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1 server on 127.0.0.1 answering `200 <n>` to the n-th request. With `close`, it answers
/// `Connection: close`; with `requests_per_connection`, it closes each connection after that many.
async fn server(close: bool, requests_per_connection: Option<usize>) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let served = Arc::new(AtomicUsize::new(0));
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (s, served) = (s.clone(), served.clone());
                    async move {
                        let _ = req.into_body().collect().await;
                        let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let here = served.fetch_add(1, Ordering::SeqCst) + 1;
                        let mut resp = http::Response::new(Full::new(Bytes::from(n.to_string())));
                        if close || requests_per_connection.is_some_and(|m| here >= m) {
                            resp.headers_mut()
                                .insert(http::header::CONNECTION, "close".parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn post(client: &Client, url: &str) -> String {
    let answer = client
        .request(
            &url.parse().unwrap(),
            Method::POST,
            &[(http::header::CONTENT_TYPE, "application/x-protobuf".into())],
            Bytes::from_static(b"spans"),
            1024,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body.to_vec()).unwrap()
}

#[tokio::test]
async fn one_connection_carries_requests_in_turn() {
    let (url, seen) = server(false, None).await;
    let client = Client::new(None).unwrap();
    for n in 1..=5 {
        assert_eq!(post(&client, &url).await, n.to_string());
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn connection_close_is_honoured_and_a_closed_idle_connection_is_replaced() {
    // `Connection: close` on every answer: each request dials anew.
    let (url, seen) = server(true, None).await;
    let client = Client::new(None).unwrap();
    for n in 1..=3 {
        assert_eq!(post(&client, &url).await, n.to_string());
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);

    // The server drops a connection after two requests: the third goes out once, on a new connection.
    let (url, seen) = server(false, Some(2)).await;
    let client = Client::new(None).unwrap();
    for n in 1..=6 {
        assert_eq!(post(&client, &url).await, n.to_string(), "request {n}");
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        6,
        "none lost, none repeated"
    );
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}
