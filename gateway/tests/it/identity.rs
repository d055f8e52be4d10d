//! Caller identity: JWT verification (algorithms, issuer, audience, expiry, claims), the JWKS cache (file and a
//! real local HTTP server, counting fetches), and the gateway in-process: 401 challenges on routes that require
//! identity (upstream never contacted), the principal in audit records and reaching the upstream's token.
//! Keys are generated at test time (rcgen/ring for ES256 and Ed25519, the `rsa` crate for RS256).

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_gateway::config::{IdentityConfig, JwksSource, JwtSettings};
use mcp_gateway::demo::client::post;
use mcp_gateway::identity::{IdentityError, Verifier};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use common::*;

const ISS: &str = "https://idp.example.test/";
const AUD: &str = "mcp-gateway";

/// A signing key with its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn es256(kid: &str) -> Signer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw(); // 0x04 || x || y
        Signer {
            kid: kid.into(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}),
        }
    }

    fn eddsa(kid: &str) -> Signer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Signer {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&kp.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(kp.public_key_raw())}),
        }
    }

    fn rs256(kid: &str) -> Signer {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        Signer {
            kid: kid.into(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": B64.encode(key.n().to_bytes_be()), "e": B64.encode(key.e().to_bytes_be())}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }
}

fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Good claims for `sub`, valid for 5 minutes.
fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 300,
           "email": format!("{sub}@example.test"), "groups": ["support"], "secret_claim": "not selected"})
}

fn settings(jwks: JwksSource) -> IdentityConfig {
    IdentityConfig {
        jwt: JwtSettings {
            issuer: ISS.into(),
            audience: vec![AUD.into()],
            jwks,
            jwks_ca_file: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            claims: vec!["email".into(), "groups".into()],
            refresh: Duration::from_secs(600),
            leeway: Duration::from_secs(30),
        },
        forward_authorization: true,
        resource_metadata: None,
    }
}

fn jwks_file(dir: &tempfile::TempDir, signers: &[&Signer]) -> PathBuf {
    let p = dir.path().join("jwks.json");
    std::fs::write(&p, jwks(signers)).unwrap();
    p
}

fn kind(r: Result<impl std::fmt::Debug, IdentityError>) -> &'static str {
    match r {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.kind(),
    }
}

#[tokio::test]
async fn only_a_valid_token_is_accepted_with_its_subject_and_selected_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (es, ed, rs) = (
        Signer::es256("es"),
        Signer::eddsa("ed"),
        Signer::rs256("rs"),
    );
    let v = Verifier::new(&settings(JwksSource::File(jwks_file(
        &dir,
        &[&es, &ed, &rs],
    ))));

    for s in [&es, &ed, &rs] {
        let p = v.verify(&s.sign(&claims("alice"))).await.unwrap();
        assert_eq!(p.subject(), "alice", "{:?}", s.alg);
        assert_eq!(
            serde_json::Value::Object(p.claims().clone()),
            json!({"email": "alice@example.test", "groups": ["support"]})
        );
    }

    let with = |patch: Value| {
        let mut c = claims("alice");
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        es.sign(&c)
    };
    // Expired beyond the leeway; within the leeway it still passes.
    assert_eq!(
        kind(v.verify(&with(json!({"exp": now() - 120}))).await),
        "token_expired"
    );
    v.verify(&with(json!({"exp": now() - 10}))).await.unwrap();
    assert_eq!(
        kind(v.verify(&with(json!({"nbf": now() + 600}))).await),
        "token_not_yet_valid"
    );
    assert_eq!(
        kind(v.verify(&with(json!({"aud": "another-service"}))).await),
        "token_wrong_audience"
    );
    assert_eq!(
        kind(
            v.verify(&with(json!({"iss": "https://evil.example/"})))
                .await
        ),
        "token_wrong_issuer"
    );
    assert_eq!(
        kind(v.verify(&with(json!({"exp": null}))).await),
        "token_invalid"
    );
    assert!(matches!(
        v.verify(&with(json!({"sub": null}))).await,
        Err(IdentityError::Invalid(_))
    ));

    // Signed by a key that is not in the set, under a kid that is.
    let impostor = Signer::es256("es");
    assert_eq!(
        kind(v.verify(&impostor.sign(&claims("mallory"))).await),
        "token_bad_signature"
    );

    // `alg: none`: an unsigned token.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = B64.encode(claims("mallory").to_string());
    assert!(matches!(
        v.verify(&format!("{header}.{body}.")).await,
        Err(IdentityError::Malformed(_))
    ));

    // HS256 with the public key material as the secret (the classic alg confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("es".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims("mallory"),
        &EncodingKey::from_secret(es.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&forged).await,
        Err(IdentityError::AlgorithmNotAllowed(Algorithm::HS256))
    ));

    // An algorithm the config does not allow, with a key that would verify it.
    let mut only_es = settings(JwksSource::File(jwks_file(&dir, &[&es, &ed, &rs])));
    only_es.jwt.algorithms = vec![Algorithm::ES256];
    let v2 = Verifier::new(&only_es);
    assert!(matches!(
        v2.verify(&rs.sign(&claims("alice"))).await,
        Err(IdentityError::AlgorithmNotAllowed(Algorithm::RS256))
    ));
    v2.verify(&es.sign(&claims("alice"))).await.unwrap();

    assert_eq!(kind(v.verify("not-a-jwt").await), "token_invalid");
}

/// A JWKS endpoint on 127.0.0.1 serving whatever `doc` holds, counting requests.
async fn jwks_server(doc: Arc<Mutex<String>>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (doc, hits) = (doc.clone(), counted.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (doc, hits) = (doc.clone(), hits.clone());
                    async move {
                        assert_eq!(req.uri().path(), "/jwks.json");
                        hits.fetch_add(1, Ordering::SeqCst);
                        let body = doc.lock().unwrap().clone();
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn jwks_url_is_cached_refetched_on_an_unknown_kid_at_most_once_and_refreshed_periodically() {
    let (k1, k2) = (Signer::es256("k1"), Signer::eddsa("k2"));
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let (addr, hits) = jwks_server(doc.clone()).await;
    let url: http::Uri = format!("http://{addr}/jwks.json").parse().unwrap();
    let mut cfg = settings(JwksSource::Url(url));
    cfg.jwt.refresh = Duration::from_millis(400);
    let v = Verifier::new(&cfg);

    assert_eq!(hits.load(Ordering::SeqCst), 0, "fetched lazily");
    for _ in 0..5 {
        v.verify(&k1.sign(&claims("alice"))).await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");

    // The provider rotates in k2: the unknown kid triggers one refetch, which finds it.
    *doc.lock().unwrap() = jwks(&[&k1, &k2]);
    v.verify(&k2.sign(&claims("bob"))).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Made-up kids right after: rejected without hammering the provider.
    for i in 0..5 {
        let ghost = Signer::es256(&format!("ghost{i}"));
        assert!(matches!(
            v.verify(&ghost.sign(&claims("x"))).await,
            Err(IdentityError::UnknownKey { .. })
        ));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "unknown-kid refetches are rate limited"
    );

    // Periodic refresh: after `refresh`, the next verification refetches (and k1 is gone now).
    *doc.lock().unwrap() = jwks(&[&k2]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    v.verify(&k2.sign(&claims("bob"))).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(
        v.verify(&k1.sign(&claims("alice"))).await.is_err(),
        "a key removed upstream stops verifying"
    );

    // The provider goes away: the keys already held keep serving.
    *doc.lock().unwrap() = "oops".into();
    tokio::time::sleep(Duration::from_millis(500)).await;
    v.verify(&k2.sign(&claims("bob"))).await.unwrap();
    // (k1's kid was unknown again above, but within the unknown-kid rate limit: no fetch for it.)
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "the failed refresh was attempted once"
    );
    assert_eq!(v.keys().fetches(), 4);
}

#[tokio::test]
async fn no_key_set_means_tokens_are_refused_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let v = Verifier::new(&settings(JwksSource::File(dir.path().join("missing.json"))));
    let k = Signer::es256("k");
    assert_eq!(
        kind(v.verify(&k.sign(&claims("alice"))).await),
        "identity_unavailable"
    );
    // A dead URL too (nothing listens on port 9 of loopback).
    let v = Verifier::new(&settings(JwksSource::Url(
        "http://127.0.0.1:9/jwks.json".parse().unwrap(),
    )));
    assert_eq!(
        kind(v.verify(&k.sign(&claims("alice"))).await),
        "identity_unavailable"
    );
}

/// The gateway with `identity:` over a JWKS file; `crm` requires identity, `docs` does not.
async fn gateway(dir: &tempfile::TempDir, signers: &[&Signer], up: SocketAddr, extra: &str) -> Gw {
    let f = jwks_file(dir, signers);
    Gw::start(
        &format!("  crm: {{upstream: http://{up}, require_identity: true}}\n  docs: http://{up}"),
        &format!(
            "upstream: {{allowed_ips: [127.0.0.0/8]}}\nidentity:\n  jwt: {{issuer: '{ISS}', audience: {AUD}, jwks_file: {}, \
             algorithms: [ES256, EdDSA], claims: [email, groups]}}\n{extra}",
            f.display()
        ),
    )
    .await
}

async fn call(gw: &Gw, route: &str, token: Option<&str>) -> (StatusCode, http::HeaderMap, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    json_of(
        gw.client(route)
            .send(post(
                &format!("{route}.{TD}"),
                "/mcp",
                rpc(7, "tools/list", json!({})),
                &headers,
            ))
            .await
            .unwrap(),
    )
    .await
}

/// Audit records of the stopped gateway's log, as JSON lines.
fn audit_lines(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        if f.extension().is_some_and(|e| e == "jsonl") || f.to_string_lossy().contains("segment") {
            for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiring_route_answers_401_with_a_challenge_and_never_reaches_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let k = Signer::es256("k");
    let (up, connections) = counting_listener().await;
    let gw = gateway(&dir, &[&k], up, "").await;

    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let cases = [
        (None, None, "token_missing"),
        (
            Some(k.sign(&expired)),
            Some("the token has expired"),
            "token_expired",
        ),
        (
            Some(k.sign(&wrong_aud)),
            Some("the token is not issued for this resource"),
            "token_wrong_audience",
        ),
        (
            Some(Signer::es256("k").sign(&claims("mallory"))),
            Some("the token signature is invalid"),
            "token_bad_signature",
        ),
    ];
    for (token, description, why) in cases {
        let (status, headers, body) = call(&gw, "crm", token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"mcp-gateway\""),
            "{challenge}"
        );
        assert!(
            challenge.contains(&format!(
                "resource_metadata=\"https://crm.{TD}/.well-known/oauth-protected-resource/mcp\""
            )),
            "{challenge}"
        );
        match description {
            None => assert!(
                !challenge.contains("error="),
                "no error code without credentials: {challenge}"
            ),
            Some(d) => assert!(
                challenge.contains(&format!(
                    "error=\"invalid_token\", error_description=\"{d}\""
                )),
                "{challenge}"
            ),
        }
        assert_eq!(body["error"]["code"], -32005);
        assert_eq!(body["error"]["data"]["identity"], why);
    }
    // A token is also checked on a route that does not require one: a bad one is refused, not ignored.
    let (status, _, _) = call(&gw, "docs", Some(&k.sign(&expired))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the upstream was never contacted"
    );

    let dir = gw.stop().await;
    let refusals: Vec<Value> = audit_lines(dir.path())
        .into_iter()
        .filter(|r| r["kind"] == "refusal")
        .collect();
    assert_eq!(refusals.len(), 5, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|r| r["data"]["reason"] == "unauthenticated"),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_is_forwarded_and_its_principal_is_audited_and_anonymous_works_where_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let k = Signer::eddsa("k");
    let up = echo_upstream().await;
    let gw = gateway(&dir, &[&k], up, "").await;
    let token = k.sign(&claims("alice"));

    let (status, _, body) = call(&gw, "crm", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["headers"]["authorization"],
        format!("Bearer {token}"),
        "the token passes through unchanged"
    );

    // No token where none is required: forwarded, anonymously.
    let (status, _, body) = call(&gw, "docs", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["headers"].get("authorization").is_none());

    // Discovery documents need no token even on a requiring route (clients fetch them to get one).
    let resp = gw
        .client("crm")
        .send(
            http::Request::get(format!(
                "https://crm.{TD}/.well-known/oauth-protected-resource/mcp"
            ))
            .header("host", format!("crm.{TD}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let dir = gw.stop().await;
    let decisions: Vec<Value> = audit_lines(dir.path())
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .collect();
    let crm = decisions
        .iter()
        .find(|r| r["data"]["route"] == "crm" && r["data"]["method"] == "tools/list")
        .unwrap();
    assert_eq!(crm["data"]["principal"], "alice");
    assert_eq!(
        crm["data"]["principal_claims"],
        json!({"email": "alice@example.test", "groups": ["support"]})
    );
    let docs = decisions
        .iter()
        .find(|r| r["data"]["route"] == "docs")
        .unwrap();
    assert!(docs["data"].get("principal").is_none(), "{docs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_authorization_false_keeps_the_token_from_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let k = Signer::es256("k");
    let up = echo_upstream().await;
    let gw = gateway(&dir, &[&k], up, "  forward_authorization: false").await;
    let (status, _, body) = call(&gw, "crm", Some(&k.sign(&claims("alice")))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["headers"].get("authorization").is_none(), "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_identity_block_tokens_are_not_looked_at() {
    let up = echo_upstream().await;
    let gw = Gw::start(
        &format!("  crm: http://{up}"),
        "upstream: {allowed_ips: [127.0.0.0/8]}",
    )
    .await;
    let (status, _, body) = call(&gw, "crm", Some("opaque-upstream-token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["headers"]["authorization"],
        "Bearer opaque-upstream-token"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_see_the_principal_the_token_names() {
    let hostile = std::env::var_os("MCP_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/policy")
        })
        .join("hostile_policy.wasm");
    assert!(
        hostile.exists(),
        "{} is missing: run `bash policies/build.sh hostile-policy`",
        hostile.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let k = Signer::es256("k");
    let up = echo_upstream().await;
    let gw = gateway(
        &dir,
        &[&k],
        up,
        &format!(
            "policies:\n  modules:\n    echo: {{path: {}, settings: {{mode: echo_principal}}}}\n  default: [echo]",
            hostile.display()
        ),
    )
    .await;
    let ask = |token: Option<String>, route: &'static str| {
        let gw = &gw;
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let body = rpc(3, "tools/call", json!({"name": "search", "arguments": {}}));
            let (status, _, v) = json_of(
                gw.client(route)
                    .send(post(&format!("{route}.{TD}"), "/mcp", body, &headers))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(v["result"]["isError"], true, "{v}");
            v["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let text = ask(Some(k.sign(&claims("alice"))), "crm").await;
    assert!(
        text.contains(
            r#"principal=alice claims={"email":"alice@example.test","groups":["support"]}"#
        ),
        "{text}"
    );
    let text = ask(None, "docs").await;
    assert!(text.contains("principal=none"), "{text}");
    gw.stop().await;
}
