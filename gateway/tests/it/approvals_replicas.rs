//! Two gateway replicas on one PostgreSQL database (a real server, [`PgCluster`]) in front of one upstream:
//! a call held on replica A is released by an approval made on replica B's admin API; a call whose wait ran
//! out on A passes once when retried on B after the approval; approvers racing on both replicas get exactly
//! one winner. The sample upstream records every call it receives, so "exactly once" is counted there.
//!
//! `poll_interval` is set longer than the hold, so only `LISTEN/NOTIFY` can release the held call in time;
//! the same scenario on a shared SQLite file (poll only, the default 500ms) is measured for comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_gateway::demo::upstream;

use crate::approvals::{
    ALICE, BOB, Gw, admin, approval_id, call_json, delete, pending, start_on, text, upstream_calls,
};
use crate::common::postgres::PgCluster;

async fn cluster() -> (PgCluster, String) {
    tokio::task::spawn_blocking(|| {
        let c = PgCluster::start();
        let url = c.create_db("approvals");
        (c, url)
    })
    .await
    .unwrap()
}

/// Two replicas with the same `approvals:` settings in front of one sample upstream.
async fn replicas(settings: &str) -> (Arc<Gw>, Arc<Gw>, upstream::Sample) {
    let up = upstream::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let a = start_on(&up, settings).await;
    let b = start_on(&up, settings).await;
    (Arc::new(a), Arc::new(b), up)
}

/// Holds a call on `a`, approves it on `b`; how long after the approval answered the held call returned.
async fn release_across(a: &Arc<Gw>, b: &Arc<Gw>, customer: &str, n: usize) -> Duration {
    let g = a.clone();
    let body = delete(n as u64, customer);
    let held = tokio::spawn(async move {
        let v = call_json(&g, &body).await;
        (v, Instant::now())
    });
    let ids = pending(b, 1).await;
    assert_eq!(pending(a, 1).await, ids, "both replicas see one queue");
    let (status, v) = admin(
        b,
        "POST",
        &format!("/approvals/{}/approve", ids[0]),
        Some(ALICE),
        Some(serde_json::json!({"comment": "via replica B"})),
    )
    .await;
    let approved = Instant::now();
    assert_eq!(status, StatusCode::OK, "{v}");
    let (answer, at) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .expect("the held call was not released")
        .unwrap();
    assert_eq!(
        text(&answer),
        format!("customer {customer} deleted"),
        "{answer}"
    );
    at.saturating_duration_since(approved)
}

fn report(what: &str, mut d: Vec<Duration>) -> Duration {
    d.sort();
    let median = d[d.len() / 2];
    eprintln!(
        "{what}: release after the approval on the other replica: median {median:?}, min {:?}, max {:?} ({} calls)",
        d[0],
        d[d.len() - 1],
        d.len()
    );
    median
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_held_on_replica_a_is_released_by_an_approval_on_replica_b() {
    let (_pg, url) = cluster().await;
    // The poll alone (every 60s) could not release the call within the 20s hold: NOTIFY must.
    let (a, b, _up) = replicas(&format!(
        "  wait: 20s\n  expire: 1h\n  poll_interval: 60s\n  postgres: {{url: '{url}'}}"
    ))
    .await;
    let mut lat = Vec::new();
    for i in 0..5 {
        lat.push(release_across(&a, &b, &format!("c-{i}"), i).await);
        assert_eq!(
            upstream_calls(&a).len(),
            i + 1,
            "the upstream saw each call exactly once"
        );
    }
    let median = report("PostgreSQL LISTEN/NOTIFY", lat);
    assert!(median < Duration::from_millis(500), "{median:?}");
    // And the other way round.
    let back = release_across(&b, &a, "c-back", 9).await;
    assert!(back < Duration::from_secs(2), "{back:?}");
    assert_eq!(upstream_calls(&a).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poll_only_release_across_replicas_for_comparison() {
    // Two replicas on one SQLite file (one host): no push, held calls see the decision at their next poll.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("approvals.db");
    let (a, b, _up) = replicas(&format!(
        "  wait: 20s\n  poll_interval: 500ms\n  db: {}",
        db.display()
    ))
    .await;
    let mut lat = Vec::new();
    for i in 0..5 {
        lat.push(release_across(&a, &b, &format!("c-{i}"), i).await);
    }
    let median = report("poll every 500ms (shared SQLite file)", lat);
    assert!(median < Duration::from_millis(1500), "{median:?}");
    assert_eq!(upstream_calls(&a).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_that_timed_out_on_a_passes_once_when_retried_on_b_after_approval() {
    let (_pg, url) = cluster().await;
    let (a, b, _up) = replicas(&format!("  wait: 1s\n  postgres: {{url: '{url}'}}")).await;
    let first = call_json(&a, &delete(1, "c-9")).await;
    assert_eq!(first["result"]["isError"], true, "{first}");
    let t = text(&first);
    assert!(t.contains("retry the identical call"), "{t}");
    let id = approval_id(&t);
    assert!(upstream_calls(&a).is_empty());

    let (status, v) = admin(
        &b,
        "POST",
        &format!("/approvals/{id}/approve"),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Changed arguments do not match the grant (on either replica): held again under a new id.
    let other = call_json(&b, &delete(2, "c-10")).await;
    assert_eq!(other["result"]["isError"], true, "{other}");
    assert_ne!(approval_id(&text(&other)), id);
    assert!(upstream_calls(&a).is_empty());
    // The identical retry, on the other replica, passes at once and once.
    let started = Instant::now();
    let retry = call_json(&b, &delete(3, "c-9")).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the retry was held"
    );
    assert_eq!(text(&retry), "customer c-9 deleted", "{retry}");
    assert_eq!(upstream_calls(&a), ["delete_customer"]);
    // The grant was single-use: a second identical retry (on either replica) is held again.
    for gw in [&b, &a] {
        let again = call_json(gw, &delete(4, "c-9")).await;
        assert_eq!(again["result"]["isError"], true, "{again}");
        assert_ne!(approval_id(&text(&again)), id);
    }
    assert_eq!(upstream_calls(&a), ["delete_customer"]);
    let (status, v) = admin(&a, "GET", &format!("/approvals/{id}"), Some(BOB), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            v["status"].as_str(),
            v["approver"].as_str(),
            v["grant_uses_left"].as_u64()
        ),
        (Some("approved"), Some("bob"), Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvers_racing_on_both_replicas_have_exactly_one_winner() {
    let (_pg, url) = cluster().await;
    let (a, b, _up) = replicas(&format!("  wait: 30s\n  postgres: {{url: '{url}'}}")).await;
    const N: usize = 6;
    let mut held = Vec::new();
    for i in 0..N {
        let g = if i % 2 == 0 { a.clone() } else { b.clone() };
        held.push(tokio::spawn(async move {
            call_json(&g, &delete(i as u64, &format!("r-{i}"))).await
        }));
    }
    let ids = pending(&a, N).await;
    for id in &ids {
        let path = format!("/approvals/{id}/approve");
        let (on_a, on_b) = tokio::join!(
            admin(&a, "POST", &path, Some(ALICE), None),
            admin(&b, "POST", &path, Some(BOB), None)
        );
        let mut answers = [on_a, on_b];
        answers.sort_by_key(|(s, _)| *s);
        assert_eq!(
            (answers[0].0, answers[1].0),
            (StatusCode::OK, StatusCode::CONFLICT),
            "{answers:?}"
        );
        assert_eq!(
            answers[1].1["error"],
            format!("approval request `{id}` is already approved"),
        );
        let winner = answers[0].1["approver"].as_str().unwrap().to_owned();
        assert!(winner == "alice" || winner == "bob");
    }
    for h in held {
        let v = tokio::time::timeout(Duration::from_secs(15), h)
            .await
            .unwrap()
            .unwrap();
        assert!(text(&v).ends_with("deleted"), "{v}");
    }
    assert_eq!(
        upstream_calls(&a).len(),
        N,
        "each approved call reached the upstream once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_down_refuses_held_calls_and_its_return_heals_both_replicas() {
    let (pg, url) = cluster().await;
    let (a, b, _up) = replicas(&format!("  wait: 20s\n  postgres: {{url: '{url}'}}")).await;
    tokio::task::block_in_place(|| pg.stop());
    let refused = call_json(&a, &delete(1, "c-1")).await;
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    assert!(
        text(&refused).contains("cannot reach its approval store, so the call was not executed"),
        "{refused}"
    );
    let (status, _) = admin(&b, "GET", "/approvals?status=pending", Some(BOB), None).await;
    assert!(status.is_server_error(), "{status}");
    assert!(upstream_calls(&a).is_empty());
    // Back up (same port): the next calls reconnect; the LISTEN connections too (release still prompt).
    tokio::task::block_in_place(|| pg.restart());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = release_across(&a, &b, "c-2", 2).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(upstream_calls(&a), ["delete_customer"]);
}
