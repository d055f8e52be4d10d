//! `mcp-gateway certs init | inspect | renew` as operators run them: the files and modes `init` writes, what
//! `inspect` says about good, expired and mismatched certificates, and `renew` as a no-op and as a reissue
//! that still chains to the same CA.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use mcp_gateway::certs;
use time::{Duration, OffsetDateTime};

const TD: &str = "t.example.test";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin().args(args).current_dir(dir).output().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn init(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["certs", "init", "--tunnel-domain", TD, "--out", "pki"];
    args.extend_from_slice(extra);
    run(&args, dir)
}

fn inspect_full(dir: &Path) -> Output {
    run(
        &[
            "certs",
            "inspect",
            "pki/tls.crt",
            "--tunnel-domain",
            TD,
            "--key",
            "pki/tls.key",
            "--ca",
            "pki/ca.crt",
        ],
        dir,
    )
}

#[test]
fn init_writes_private_files_and_inspect_passes() {
    let dir = tempfile::tempdir().unwrap();
    let o = init(dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("Upload to the Anthropic Console")
            && out.contains("pki/ca.crt")
            && out.contains("SHA-256 fingerprint"),
        "{out}"
    );
    let pki = dir.path().join("pki");
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert_eq!(mode(&pki.join("tls.key")), 0o600);
    assert_eq!(mode(&pki.join("tls.crt")), 0o644);

    let o = inspect_full(dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "✓ validity",
        "✓ SAN coverage: `*.t.example.test`",
        "✓ private key: matches",
        "✓ AKI = CA SKI",
        "✓ signed by CA",
        "✓ extended key usage: serverAuth",
        "✓ CA basic constraints: CA:TRUE, critical",
        "✓ CA key usage: keyCertSign, cRLSign",
        "ECDSA P-256",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains('✗'), "{out}");

    let o = run(&["certs", "inspect", "pki/ca.crt"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("CA certificate") && out.contains("✓ upload: one PEM certificate"),
        "{out}"
    );

    // A second init would lose the registered CA.
    let o = init(dir.path(), &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));
}

#[test]
fn rsa_4096_server_key_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let o = init(dir.path(), &["--key-type", "rsa-4096"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = inspect_full(dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("✓ key type: RSA 4096") && out.contains("✓ private key: matches"),
        "{out}"
    );
}

/// Replaces `dir/pki/tls.crt` and `tls.key` with a pair signed by the CA in `dir/pki`, valid in the past.
fn write_expired(dir: &Path) {
    let pki = dir.join("pki");
    let ca_pem = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = certs::KeyKind::EcdsaP256.generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let names = vec![format!("*.{TD}")];
    let pem = certs::server_cert(
        &names,
        &key,
        &issuer,
        now - Duration::days(100),
        now - Duration::days(10),
    )
    .unwrap();
    std::fs::write(pki.join("tls.crt"), pem).unwrap();
    std::fs::write(pki.join("tls.key"), key.serialize_pem()).unwrap();
}

#[test]
fn expired_certificate_fails_inspect_and_renew_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &[]).status.success());
    write_expired(dir.path());
    let o = inspect_full(dir.path());
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("✗ validity: EXPIRED 10 days"), "{out}");
    assert!(
        out.contains("✓ signed by CA"),
        "only the expiry is wrong:\n{out}"
    );

    let o = run(&["certs", "renew", "--dir", "pki"], dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("renewed: the old certificate had expired"),
        "{out}"
    );
    let o = inspect_full(dir.path());
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn renew_is_a_noop_while_enough_validity_is_left() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &[]).status.success());
    let pki = dir.path().join("pki");
    let before = (
        std::fs::read(pki.join("tls.crt")).unwrap(),
        std::fs::read(pki.join("tls.key")).unwrap(),
    );
    let o = run(
        &["certs", "renew", "--renew-before", "720h", "--dir", "pki"],
        dir.path(),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("nothing to do") && out.contains("89 days"),
        "{out}"
    );
    assert_eq!(std::fs::read(pki.join("tls.crt")).unwrap(), before.0);
    assert_eq!(std::fs::read(pki.join("tls.key")).unwrap(), before.1);
}

#[test]
fn renew_reissues_from_the_same_ca_with_the_same_san() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        init(dir.path(), &["--key-type", "ecdsa-p384"])
            .status
            .success()
    );
    let pki = dir.path().join("pki");
    let old_cert = std::fs::read(pki.join("tls.crt")).unwrap();
    let old_key = std::fs::read(pki.join("tls.key")).unwrap();
    let old_sans = certs::inspect::dns_sans_of(&old_cert).unwrap();

    // 91 days > 90 days left: due.
    let o = run(
        &["certs", "renew", "--renew-before", "91d", "--dir", "pki"],
        dir.path(),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("renewed") && out.contains("new ECDSA P-384 key"),
        "{out}"
    );
    let new_cert = std::fs::read(pki.join("tls.crt")).unwrap();
    assert_ne!(new_cert, old_cert);
    assert_ne!(std::fs::read(pki.join("tls.key")).unwrap(), old_key);
    assert_eq!(certs::inspect::dns_sans_of(&new_cert).unwrap(), old_sans);
    assert_eq!(mode(&pki.join("tls.key")), 0o600);
    let o = inspect_full(dir.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("✓ signed by CA") && out.contains("ECDSA P-384"),
        "{out}"
    );
    // Only tls.crt/tls.key and the CA pair: no temporary files left behind.
    assert_eq!(std::fs::read_dir(&pki).unwrap().count(), 4);

    // --keep-key: a new certificate for the same key.
    let key_before = std::fs::read(pki.join("tls.key")).unwrap();
    let o = run(
        &[
            "certs",
            "renew",
            "--renew-before",
            "91d",
            "--dir",
            "pki",
            "--keep-key",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(pki.join("tls.key")).unwrap(), key_before);
    assert_ne!(std::fs::read(pki.join("tls.crt")).unwrap(), new_cert);
    assert!(inspect_full(dir.path()).status.success());
}

#[test]
fn renew_refuses_another_ca_and_bad_durations() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &[]).status.success());
    let other = tempfile::tempdir().unwrap();
    assert!(init(other.path(), &[]).status.success());
    let before = std::fs::read(dir.path().join("pki/tls.crt")).unwrap();
    let o = bin()
        .args(["certs", "renew", "--renew-before", "91d", "--dir"])
        .arg(dir.path().join("pki"))
        .arg("--ca-cert")
        .arg(other.path().join("pki/ca.crt"))
        .arg("--ca-key")
        .arg(other.path().join("pki/ca.key"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("was not issued by"), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("pki/tls.crt")).unwrap(),
        before
    );

    let o = run(
        &["certs", "renew", "--renew-before", "30x", "--dir", "pki"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a duration like 720h, 30d or 90m"),
        "{}",
        text(&o)
    );
}

#[test]
fn inspect_names_a_foreign_key_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), &[]).status.success());
    let other = tempfile::tempdir().unwrap();
    assert!(init(other.path(), &[]).status.success());
    let o = bin()
        .arg("certs")
        .arg("inspect")
        .arg(dir.path().join("pki/tls.crt"))
        .args(["--tunnel-domain", "other.example.test", "--key"])
        .arg(other.path().join("pki/tls.key"))
        .arg("--ca")
        .arg(other.path().join("pki/ca.crt"))
        .output()
        .unwrap();
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    for want in [
        "✗ SAN coverage: no name under other.example.test",
        "✗ private key: does NOT match",
        "✗ AKI = CA SKI",
        "✗ signed by CA",
        "FAIL: 4 problem(s)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
