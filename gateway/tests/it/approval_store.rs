//! The `ApprovalStore` contract, one set of test bodies run against both backends: the SQLite file and a real
//! PostgreSQL server (a throwaway cluster per test, [`common::postgres::PgCluster`]). "Several stores on one
//! database" stands for several gateway replicas. Then what only the PostgreSQL backend has: reconnecting
//! after the server cut its connections, failing closed while it is down, and `NOTIFY` waking other replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_gateway::approvals::postgres::PostgresStore;
use mcp_gateway::approvals::sqlite::SqliteStore;
use mcp_gateway::approvals::store::{
    ApprovalStore, Decide, GrantKey, Millis, NewApproval, Status, StoreError,
};
use mcp_gateway::config::PostgresSettings;
use serde_json::json;

use crate::common::postgres::PgCluster;

/// One database, opened as many times as a test wants (each open is one replica's store).
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(PgCluster, String),
}

pub fn pg_settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_owned(),
        target: url.to_owned(),
        ca_file: None,
    }
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    pub async fn postgres() -> Db {
        tokio::task::spawn_blocking(|| {
            let cluster = PgCluster::start();
            let url = cluster.create_db("approvals");
            Db::Postgres(cluster, url)
        })
        .await
        .unwrap()
    }

    pub async fn open(&self) -> Arc<dyn ApprovalStore> {
        match self {
            Db::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.path().join("sub/approvals.db")).unwrap())
            }
            Db::Postgres(_, url) => Arc::new(PostgresStore::open(&pg_settings(url)).await.unwrap()),
        }
    }
}

fn key(digest: &str, principal: Option<&str>) -> GrantKey {
    GrantKey {
        route: "crm".into(),
        tool: "delete_customer".into(),
        args_digest: digest.into(),
        principal: principal.map(str::to_owned),
    }
}

fn new(id: &str, k: GrantKey, now: Millis) -> NewApproval {
    NewApproval {
        id: id.into(),
        request_id: format!("req-{id}"),
        key: k,
        arguments: Some(json!({"id": "c-1", "nested": {"b": 1, "a": [true, null]}})),
        reason: "deletes data".into(),
        policy: "guard".into(),
        created_at: now,
        expires_at: now + 60_000,
    }
}

fn approve(by: &str, at: Millis) -> Decide {
    Decide {
        approve: true,
        approver: by.into(),
        comment: Some("ok".into()),
        at,
        grant_expires_at: at + 60_000,
        grant_uses: 1,
    }
}

fn deny(by: &str, at: Millis) -> Decide {
    Decide {
        approve: false,
        ..approve(by, at)
    }
}

async fn a_request_is_decided_once_and_survives_reopen(db: Db) {
    let s = db.open().await;
    let a = s.create(new("a1", key("d", None), 1000)).await.unwrap();
    assert_eq!(a.status, Status::Pending);
    assert_eq!(
        a.arguments,
        Some(json!({"id": "c-1", "nested": {"b": 1, "a": [true, null]}}))
    );
    assert_eq!(s.count_pending().await.unwrap(), 1);
    let done = s.decide("a1", approve("alice", 2000)).await.unwrap();
    assert_eq!(
        (done.status, done.approver.as_deref(), done.grant_uses_left),
        (Status::Approved, Some("alice"), 1)
    );
    // A second decision (here: a deny racing the approval) loses and says why.
    match s.decide("a1", deny("bob", 2100)).await {
        Err(e @ StoreError::NotPending { status, .. }) => {
            assert_eq!(status, Status::Approved);
            assert_eq!(e.to_string(), "approval request `a1` is already approved");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.decide("nope", approve("a", 1)).await,
        Err(StoreError::NotFound(_))
    ));
    drop(s);
    let s = db.open().await;
    assert_eq!(s.get("a1").await.unwrap().unwrap(), done);
    assert_eq!(s.get("missing").await.unwrap(), None);
    assert_eq!(s.count_pending().await.unwrap(), 0);
}

async fn concurrent_decisions_from_two_stores_have_one_winner(db: Db) {
    let (s1, s2) = (db.open().await, db.open().await);
    for i in 0..20 {
        let id = format!("r{i}");
        s1.create(new(&id, key(&id, None), 1000)).await.unwrap();
        let (a, b) = tokio::join!(
            s1.decide(&id, approve("alice", 2000)),
            s2.decide(&id, deny("bob", 2000))
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "exactly one decision wins: {a:?} / {b:?}"
        );
        let stored = s2.get(&id).await.unwrap().unwrap();
        let loser = a.as_ref().err().or(b.as_ref().err()).unwrap();
        assert!(
            matches!(loser, StoreError::NotPending { status, .. } if *status == stored.status),
            "{loser:?}"
        );
        let winner = a.or(b).unwrap();
        assert_eq!(stored.status, winner.status);
    }
}

async fn a_grant_is_used_once_under_concurrent_consumers(db: Db) {
    // Opened at once: on a fresh PostgreSQL database they also race to create the schema.
    let (a, b, c, d) = tokio::join!(db.open(), db.open(), db.open(), db.open());
    let stores = [a, b, c, d];
    stores[0]
        .create(new("g1", key("dg", Some("carol")), 1000))
        .await
        .unwrap();
    stores[0]
        .decide("g1", approve("alice", 2000))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            s.consume_grant(&key("dg", Some("carol")), 3000)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if let Some(a) = t.await.unwrap() {
            assert_eq!(a.id, "g1");
            assert_eq!(a.grant_uses_left, 0);
            assert_eq!(a.grant_used_at, Some(3000));
            won += 1;
        }
    }
    assert_eq!(won, 1, "a single-use grant was used {won} times");
    assert!(
        stores[1]
            .consume_grant_of("g1", 3000)
            .await
            .unwrap()
            .is_none()
    );
}

async fn grants_match_key_exactly_and_expire(db: Db) {
    let s = db.open().await;
    s.create(new("k1", key("dk", None), 1000)).await.unwrap();
    // Not approved yet: no grant.
    assert!(
        s.consume_grant(&key("dk", None), 1500)
            .await
            .unwrap()
            .is_none()
    );
    let mut d = approve("alice", 2000);
    d.grant_expires_at = 5000;
    d.grant_uses = 2;
    s.decide("k1", d).await.unwrap();
    // Other arguments, another principal (also: some principal vs none): no match.
    for k in [key("other", None), key("dk", Some("eve"))] {
        assert!(s.consume_grant(&k, 2500).await.unwrap().is_none(), "{k:?}");
    }
    let mut other_route = key("dk", None);
    other_route.route = "billing".into();
    assert!(s.consume_grant(&other_route, 2500).await.unwrap().is_none());
    // Expired grant: no match, even with uses left.
    assert!(
        s.consume_grant(&key("dk", None), 5000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.consume_grant(&key("dk", None), 4000)
            .await
            .unwrap()
            .unwrap()
            .grant_uses_left,
        1
    );
    assert!(s.consume_grant_of("k1", 4100).await.unwrap().is_some());
    assert!(
        s.consume_grant(&key("dk", None), 4200)
            .await
            .unwrap()
            .is_none()
    );
    // A grant bound to a principal matches that principal only (IS NOT DISTINCT FROM / IS).
    s.create(new("k2", key("dp", Some("carol")), 1000))
        .await
        .unwrap();
    s.decide("k2", approve("alice", 2000)).await.unwrap();
    assert!(
        s.consume_grant(&key("dp", None), 2500)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.consume_grant(&key("dp", Some("carol")), 2500)
            .await
            .unwrap()
            .is_some()
    );
}

async fn pending_requests_expire_once_and_cannot_be_decided_after(db: Db) {
    let s = db.open().await;
    s.create(new("e1", key("d1", None), 1000)).await.unwrap(); // expires at 61_000
    s.create(new("e2", key("d2", None), 50_000)).await.unwrap(); // expires at 110_000
    // Past e1's expiry but not swept yet: deciding it fails as expired.
    match s.decide("e1", approve("alice", 61_000)).await {
        Err(StoreError::NotPending { status, .. }) => assert_eq!(status, Status::Expired),
        other => panic!("{other:?}"),
    }
    let other = db.open().await;
    let (a, b) = tokio::join!(s.expire_due(70_000), other.expire_due(70_000));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "each expiry is reported once");
    assert_eq!(a.iter().chain(&b).next().unwrap().id, "e1");
    assert_eq!(s.get("e1").await.unwrap().unwrap().status, Status::Expired);
    assert_eq!(s.get("e2").await.unwrap().unwrap().status, Status::Pending);
    let pending = s.list(Some(Status::Pending), 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["e2"]
    );
    let all = s.list(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["e2", "e1"],
        "newest first"
    );
    assert_eq!(s.list(None, 1).await.unwrap().len(), 1);
}

/// Each body once per backend: `approval_store::sqlite::NAME` and `approval_store::postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Db::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Db::postgres().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_request_is_decided_once_and_survives_reopen,
    concurrent_decisions_from_two_stores_have_one_winner,
    a_grant_is_used_once_under_concurrent_consumers,
    grants_match_key_exactly_and_expire,
    pending_requests_expire_once_and_cannot_be_decided_after,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reconnects_after_the_server_cut_its_connections() {
    let db = Db::postgres().await;
    let Db::Postgres(cluster, _) = &db else {
        unreachable!()
    };
    let s = db.open().await;
    s.create(new("c1", key("d", None), 1000)).await.unwrap();
    // The query and LISTEN connections (at least those two) are cut, the server stays up.
    let cut = tokio::task::block_in_place(|| cluster.terminate_connections("approvals"));
    assert!(cut >= 2, "{cut} connections cut");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The next call reconnects (at most this one call may see the cut; none should, since the closed
    // client is noticed before it is used).
    assert_eq!(s.get("c1").await.unwrap().unwrap().status, Status::Pending);
    s.decide("c1", approve("alice", 2000)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_fails_closed_while_the_server_is_down_and_recovers() {
    let db = Db::postgres().await;
    let Db::Postgres(cluster, _) = &db else {
        unreachable!()
    };
    let s = db.open().await;
    s.create(new("f1", key("df", None), 1000)).await.unwrap();
    s.decide("f1", approve("alice", 2000)).await.unwrap();
    tokio::task::block_in_place(|| cluster.stop());
    let t = Instant::now();
    match s.consume_grant(&key("df", None), 3000).await {
        Err(e @ StoreError::Backend(_)) => {
            let msg = e.to_string();
            assert!(msg.starts_with("approval store: "), "{msg}");
        }
        other => panic!("a store that cannot answer must fail, not say {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(11), "{:?}", t.elapsed());
    tokio::task::block_in_place(|| cluster.restart());
    // The grant was not used by the failed call.
    let a = s
        .consume_grant(&key("df", None), 3000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.id, "f1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_decisions_wake_every_replica_at_once() {
    let db = Db::postgres().await;
    let (a, b) = (db.open().await, db.open().await);
    let signal = a.decisions().expect("PostgreSQL pushes decisions");
    let mut latencies = Vec::new();
    for i in 0..10 {
        let id = format!("n{i}");
        a.create(new(&id, key(&id, None), mcp_gateway::approvals::now_ms()))
            .await
            .unwrap();
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let t = Instant::now();
        b.decide(&id, approve("alice", mcp_gateway::approvals::now_ms()))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), woken)
            .await
            .expect("replica A was not notified of replica B's decision");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    eprintln!(
        "NOTIFY wake-up after a decision on another store (decide round trip included): median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_over_tls_verifies_the_server_certificate_and_name() {
    // The server's certificate is issued for *.t.example.test by a throwaway CA; the client dials 127.0.0.1
    // (`hostaddr`) but verifies the certificate against the name in `host`.
    let (cluster, ca) = tokio::task::spawn_blocking(|| {
        let mut ca = None;
        let cluster = PgCluster::start_with(|dir| {
            let tls = dir.join("tls");
            mcp_gateway::certs::issue(crate::common::TD, mcp_gateway::certs::KeyKind::EcdsaP256)
                .unwrap()
                .write_to(&tls)
                .unwrap();
            ca = Some(std::fs::read(tls.join("ca.crt")).unwrap());
            format!(
                "-c ssl=on -c ssl_cert_file={0}/tls.crt -c ssl_key_file={0}/tls.key",
                tls.display()
            )
        });
        cluster.create_db("approvals");
        (cluster, ca.unwrap())
    })
    .await
    .unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let url = |host: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=approvals sslmode=require",
            cluster.port()
        )
    };
    let settings = |host: &str, ca: bool| PostgresSettings {
        url: url(host),
        target: host.to_owned(),
        ca_file: ca.then(|| ca_file.clone()),
    };

    let s = PostgresStore::open(&settings("db.t.example.test", true))
        .await
        .unwrap();
    s.create(new("t1", key("dt", None), 1000)).await.unwrap();
    let encrypted = tokio::task::block_in_place(|| {
        cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'approvals' AND s.ssl",
        )
    });
    assert_eq!(encrypted, "2", "the query and LISTEN connections use TLS");

    // An unknown issuer, or a name the certificate does not cover: no connection, the store does not open.
    for (host, ca, want) in [
        ("db.t.example.test", false, "UnknownIssuer"),
        ("localhost", true, "NotValidForName"),
    ] {
        let err = PostgresStore::open(&settings(host, ca)).await.unwrap_err();
        assert!(
            err.to_string().contains(want) || format!("{err:?}").contains(want),
            "{host}: {err:?}"
        );
    }
}

#[test]
#[should_panic(expected = "PostgreSQL is not installed: run `bash tests/setup.sh`")]
fn without_postgresql_the_tests_fail_and_say_to_run_setup() {
    // An empty tree where /usr/lib/postgresql would be (a version directory without initdb): the helper fails
    // (never skips) and says what to run.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("15/bin")).unwrap();
    crate::common::postgres::bin_dir_in(empty.path());
}
