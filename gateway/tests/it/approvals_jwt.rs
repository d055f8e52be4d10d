//! Approvers with OIDC-signed JWTs: verified by the identity module (issuer, audience, key set, algorithms,
//! expiry) plus a required role claim; the approver recorded is the token's subject, and separation of duties
//! holds between JWT subjects. The keys are made at test time; the gateway is the real one, in-process.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::approvals::{admin, start};

const ISS: &str = "https://idp.example.test/";
const AUD: &str = "mcp-gateway-approvals";
const ROLE: &str = "mcp-approver";

struct Signer {
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn es256() -> Signer {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        Signer {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                        "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str, roles: Value) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 300, "roles": roles})
}

/// A gateway whose approvers include JWT holders of `roles: [mcp-approver]`, keys in a JWKS file.
async fn start_jwt(signer: &Signer) -> (crate::approvals::Gw, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [signer.jwk]}).to_string()).unwrap();
    let gw = start(&format!(
        "  jwt: {{ issuer: '{ISS}', audience: {AUD}, jwks_file: {}, algorithms: [ES256] }}\n  role: {{ claim: roles, value: {ROLE} }}",
        jwks.display()
    ))
    .await;
    (gw, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_with_the_approver_role_approves_as_its_subject() {
    let signer = Signer::es256();
    let (gw, _keys) = start_jwt(&signer).await;
    crate::approvals::pending_request(&gw, "apr_jwtapproval1", "carol").await;
    let dave = signer.sign(&claims("dave@example.test", json!(["staff", ROLE])));
    let (s, v) = admin(&gw, "GET", "/approvals?status=pending", Some(&dave), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_jwtapproval1/approve",
        Some(&dave),
        Some(json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["approver"], "dave@example.test", "{v}");
    assert_eq!(v["status"], "approved");
    // A role claim written as one string is accepted too.
    crate::approvals::pending_request(&gw, "apr_jwtapproval2", "carol").await;
    let erin = signer.sign(&claims("erin", json!(ROLE)));
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_jwtapproval2/deny",
        Some(&erin),
        None,
    )
    .await;
    assert_eq!(
        (s, v["approver"].as_str()),
        (StatusCode::OK, Some("erin")),
        "{v}"
    );
    // Static tokens keep working beside JWTs.
    let (s, _) = admin(&gw, "GET", "/approvals", Some(crate::approvals::BOB), None).await;
    assert_eq!(s, StatusCode::OK);
    gw.inner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_without_the_role_or_that_fail_verification_are_refused() {
    let signer = Signer::es256();
    let (gw, _keys) = start_jwt(&signer).await;
    crate::approvals::pending_request(&gw, "apr_jwtrefused01", "carol").await;
    let approve = "/approvals/apr_jwtrefused01/approve";

    // Verified, but not an approver: 403.
    for roles in [
        json!(["staff"]),
        json!("mcp-approver-not"),
        json!(null),
        json!({"mcp-approver": true}),
    ] {
        let mut c = claims("mallory", roles.clone());
        if roles.is_null() {
            c.as_object_mut().unwrap().remove("roles");
        }
        let (s, v) = admin(&gw, "POST", approve, Some(&signer.sign(&c)), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "roles {roles}: {v}");
        assert!(v["error"].as_str().unwrap().contains(ROLE), "{v}");
    }

    // Not verified: 401.
    let with = |patch: Value| {
        let mut c = claims("mallory", json!([ROLE]));
        for (k, val) in patch.as_object().unwrap() {
            c[k] = val.clone();
        }
        c
    };
    let expired = signer.sign(&with(json!({"exp": now() - 600})));
    let wrong_aud = signer.sign(&with(json!({"aud": "mcp-gateway"})));
    let wrong_iss = signer.sign(&with(json!({"iss": "https://evil.example/"})));
    let wrong_key = Signer::es256().sign(&with(json!({})));
    let alg_none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(with(json!({})).to_string())
    );
    for (what, token) in [
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("wrong key", wrong_key),
        ("alg none", alg_none),
    ] {
        let (s, v) = admin(&gw, "POST", approve, Some(&token), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {v}");
    }
    let (s, v) = admin(
        &gw,
        "GET",
        "/approvals/apr_jwtrefused01",
        Some(crate::approvals::BOB),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "nothing was decided"
    );
    gw.inner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_approver_cannot_approve_their_own_call() {
    let signer = Signer::es256();
    let (gw, _keys) = start_jwt(&signer).await;
    crate::approvals::pending_request(&gw, "apr_jwtselfcall1", "frank").await;
    let frank = signer.sign(&claims("frank", json!([ROLE])));
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_jwtselfcall1/approve",
        Some(&frank),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("separation of duties"),
        "{v}"
    );
    let grace = signer.sign(&claims("grace", json!([ROLE])));
    let (s, v) = admin(
        &gw,
        "POST",
        "/approvals/apr_jwtselfcall1/approve",
        Some(&grace),
        None,
    )
    .await;
    assert_eq!(
        (s, v["approver"].as_str()),
        (StatusCode::OK, Some("grace")),
        "{v}"
    );
    gw.inner.stop().await;
}

/// The CLI passes a JWT as the approver's token (`--token` or `MCP_GATEWAY_APPROVER_TOKEN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_approves_with_a_jwt() {
    let signer = Signer::es256();
    let (gw, _keys) = start_jwt(&signer).await;
    crate::approvals::pending_request(&gw, "apr_jwtclicall01", "carol").await;
    let heidi = signer.sign(&claims("heidi", json!([ROLE])));
    let admin_url = format!("http://{}", gw.admin);
    let run = |args: Vec<String>, token: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
                .args(args)
                .env("MCP_GATEWAY_APPROVER_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let args = |a: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["approvals".into()];
        v.extend(a.iter().map(|s| s.to_string()));
        v.extend(["--admin".into(), admin_url.clone()]);
        v
    };
    let out = run(args(&["list"]), heidi.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("apr_jwtclicall01"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the role the CLI fails and says why.
    let nobody = signer.sign(&claims("ivan", json!(["staff"])));
    let out = run(args(&["approve", "apr_jwtclicall01"]), nobody)
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(ROLE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        args(&["approve", "apr_jwtclicall01", "-m", "ticket 1"]),
        heidi,
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, v) = admin(
        &gw,
        "GET",
        "/approvals/apr_jwtclicall01",
        Some(crate::approvals::BOB),
        None,
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str(), v["approver"].as_str()),
        (StatusCode::OK, Some("approved"), Some("heidi")),
        "{v}"
    );
    gw.inner.stop().await;
}

/// Config mistakes around JWT approvers are explained at load, with the field.
#[test]
fn jwt_approver_config_mistakes_are_explained() {
    let load = |approvals: &str, identity: &str| {
        let yaml = format!(
            "listen_addr: 127.0.0.1:0\ntunnel_domain: t.example.test\ntls: {{cert_file: /x/tls.crt, key_file: /x/tls.key}}\nroutes:\n  crm: http://10.0.0.1:9000\n\
             approvals:\n{approvals}\n{identity}\n"
        );
        mcp_gateway::config::from_yaml(&yaml, std::path::Path::new("c.yaml"))
            .map_err(|e| e.to_string())
    };
    let jwt = "{ issuer: 'https://idp.example.test/', audience: a, jwks_file: /x/jwks.json }";
    let e = load("  role: { value: mcp-approver }", "").unwrap_err();
    assert!(
        e.contains("approvals.role") && e.contains("identity.jwt"),
        "{e}"
    );
    let e = load(&format!("  jwt: {jwt}"), "").unwrap_err();
    assert!(
        e.contains("approvals.jwt") && e.contains("approvals.role"),
        "{e}"
    );
    let e = load(
        "  jwt: { issuer: 'https://idp.example.test/', audience: a, jwks_file: /x/j.json, algorithms: [HS256] }\n  role: { value: r }",
        "",
    )
    .unwrap_err();
    assert!(e.contains("approvals.jwt.algorithms"), "{e}");
    let e = load(
        &format!("  jwt: {jwt}\n  role: {{ claim: sub, value: r }}"),
        "",
    )
    .unwrap_err();
    assert!(e.contains("approvals.role.claim"), "{e}");
    // Sharing the callers' `identity.jwt`, the role claim defaults to `roles`.
    let c = load(
        "  role: { value: mcp-approver }",
        &format!("identity:\n  jwt: {jwt}"),
    )
    .unwrap();
    let j = c.approvals.unwrap().jwt.unwrap();
    assert_eq!(
        (j.role_claim.as_str(), j.role.as_str()),
        ("roles", "mcp-approver")
    );
    assert_eq!(j.jwt.claims, ["roles"]);
    assert_eq!(j.jwt.issuer, "https://idp.example.test/");
}
