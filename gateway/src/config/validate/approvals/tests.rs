//! Unit tests of `approvals.rs`.

use std::path::Path;

use crate::config::{StoreSettings, from_yaml};

fn load(approvals: &str) -> Result<StoreSettings, String> {
    let yaml = format!(
        "tunnel_domain: t.example\ntls: {{cert_file: c, key_file: k}}\nroutes: {{a: http://10.0.0.1:80}}\naudit: {{dir: /var/lib/gw/audit}}\n\
             approvals:\n{approvals}\n"
    );
    from_yaml(&yaml, Path::new("config.yaml"))
        .map(|c| c.approvals.unwrap().store)
        .map_err(|e| e.to_string())
}

#[test]
fn sqlite_is_the_default_beside_the_audit_directory() {
    assert_eq!(
        load("  wait: 5s").unwrap(),
        StoreSettings::Sqlite("/var/lib/gw/approvals.db".into())
    );
    assert_eq!(
        load("  db: /data/a.db").unwrap(),
        StoreSettings::Sqlite("/data/a.db".into())
    );
}

#[test]
fn postgres_url_inline_or_from_a_file_never_shown() {
    let StoreSettings::Postgres(pg) = load(
        "  postgres: {url: 'postgres://gw:s3cret@db.internal:6432/approvals?sslmode=require'}",
    )
    .unwrap() else {
        panic!("not postgres")
    };
    assert_eq!(pg.target, "gw@db.internal:6432/approvals sslmode=require");
    assert!(!format!("{pg:?}").contains("s3cret"), "{pg:?}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("url");
    std::fs::write(
        &f,
        "host=10.0.0.5 user=gw password=s3cret dbname=approvals\n",
    )
    .unwrap();
    let StoreSettings::Postgres(pg) =
        load(&format!("  postgres: {{url_file: {}}}", f.display())).unwrap()
    else {
        panic!("not postgres")
    };
    assert_eq!(
        pg.url,
        "host=10.0.0.5 user=gw password=s3cret dbname=approvals"
    );
    assert_eq!(pg.target, "gw@10.0.0.5:5432/approvals sslmode=prefer");
}

#[test]
fn postgres_mistakes_name_the_field_and_not_the_password() {
    let cases = [
        (
            "  db: /a.db\n  postgres: {url: 'postgres://h/d'}",
            "`approvals.postgres`: and `approvals.db` are both set",
        ),
        (
            "  postgres: {}",
            "`approvals.postgres`: give exactly one of `url`",
        ),
        (
            "  postgres: {url: 'postgres://u:s3cret@h/d', url_file: /x}",
            "give exactly one of",
        ),
        (
            "  postgres: {url_file: /nonexistent/url}",
            "`approvals.postgres.url_file`: cannot read /nonexistent/url",
        ),
        (
            "  postgres: {url: ' '}",
            "`approvals.postgres.url`: is empty",
        ),
        (
            "  postgres: {url: 'postgres://u:s3cret@h/d?sslmode=verify-full'}",
            "write `sslmode=require`",
        ),
        (
            "  postgres: {url: 'postgres://u:s3cret@h/d?sslmode=sometimes'}",
            "`approvals.postgres.url`: is not a PostgreSQL connection string",
        ),
        (
            "  postgres: {url: 'postgres://u:s3cret@h'}",
            "`approvals.postgres.url`: names no database",
        ),
        (
            "  postgres: {url: 'postgres://h/d', ca_file: /nonexistent/ca.pem}",
            "`approvals.postgres.ca_file`: cannot read",
        ),
        ("  postgres: {uri: 'postgres://h/d'}", "unknown field `uri`"),
    ];
    for (yaml, want) in cases {
        let err = load(yaml).unwrap_err();
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(
            !err.contains("s3cret"),
            "{yaml}: the password leaked: {err}"
        );
    }
}
