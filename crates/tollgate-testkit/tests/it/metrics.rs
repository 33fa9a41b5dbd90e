//! `GET /_metrics` (Prometheus text format): off by default, open or guarded by a token with the
//! `server:metrics` right; counters move by exactly the requests made. Through real sockets.

use serde_json::json;
use tollgate_testkit::{TestServer, first_admin, http_once};

/// The value of the sample `name{labels}` in an exposition (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

async fn scrape(s: &TestServer, headers: &[(&str, &str)]) -> String {
    let r = http_once(s.addr, "GET", "/_metrics", headers, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let s = TestServer::start().await;
    let r = http_once(s.addr, "GET", "/_metrics", &[], b"").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["id"], "network.http.url_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_requests_made() {
    let s = TestServer::start_with(|c| c.metrics.mode = "open".into(), vec![]).await;
    let http_now =
        r#"tollgate_requests_total{controller="server",action="now",protocol="http",status="200"}"#;
    let ws_now = r#"tollgate_requests_total{controller="server",action="now",protocol="websocket",status="200"}"#;
    let unknown = r#"tollgate_requests_total{controller="unknown",action="unknown",protocol="http",status="404"}"#;
    let not_found = r#"tollgate_errors_total{id="api.process.action_not_found"}"#;
    let ws_open = r#"tollgate_open_connections{protocol="websocket"}"#;
    let commits = "tollgate_store_commit_duration_seconds_count";
    let http_now_latency = r#"tollgate_request_duration_seconds_count{controller="server",action="now",protocol="http"}"#;
    let ws_now_latency = r#"tollgate_request_duration_seconds_count{controller="server",action="now",protocol="websocket"}"#;
    let missing_profile = r#"tollgate_requests_total{controller="security",action="getProfile",protocol="websocket",status="404"}"#;
    let before = scrape(&s, &[]).await;
    assert_eq!(sample(&before, ws_open), 0.0);
    for _ in 0..3 {
        assert_eq!(
            http_once(s.addr, "GET", "/_now", &[], b"").await.status,
            200
        );
    }
    let mut c = s.ws().await;
    for _ in 0..2 {
        let r = c.call(json!({"controller":"server","action":"now"})).await;
        assert_eq!(r["status"], 200);
    }
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[],
        br#"{"controller":"server","action":"nope"}"#,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c
        .call(json!({"controller":"security","action":"createProfile","_id":"m","body":{"policies":[{"roleId":"default"}]}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(json!({"controller":"security","action":"getProfile","_id":"absent"}))
        .await;
    assert_eq!(r["status"], 404, "{r}");
    let after = scrape(&s, &[]).await;
    for (series, made) in [
        (http_now_latency, 3.0),
        (ws_now_latency, 2.0),
        (missing_profile, 1.0),
    ] {
        assert_eq!(
            sample(&after, series) - sample(&before, series),
            made,
            "{series}: {after}"
        );
    }
    assert_eq!(
        sample(&after, http_now) - sample(&before, http_now),
        3.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, ws_now) - sample(&before, ws_now),
        2.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, unknown) - sample(&before, unknown),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, not_found) - sample(&before, not_found),
        1.0,
        "{after}"
    );
    assert_eq!(sample(&after, ws_open), 1.0, "{after}");
    assert_eq!(
        sample(&after, commits) - sample(&before, commits),
        1.0,
        "{after}"
    );
    // The SQLite writer grouped it: one more group, one more batch (nothing else was written).
    for series in [
        "tollgate_store_commit_groups_total",
        "tollgate_store_grouped_batches_total",
    ] {
        assert_eq!(
            sample(&after, series) - sample(&before, series),
            1.0,
            "{series}: {after}"
        );
    }
    // The three built-in profiles and the new one.
    assert_eq!(sample(&after, "tollgate_cache_profiles"), 4.0, "{after}");
    assert!(
        after.contains("# TYPE tollgate_request_duration_seconds histogram"),
        "{after}"
    );
    drop(c);
    tollgate_testkit::wait_until("the WebSocket is counted closed", async || {
        sample(&scrape(&s, &[]).await, ws_open) == 0.0
    })
    .await;
}

#[tokio::test]
async fn token_mode_needs_the_server_metrics_right() {
    let s = TestServer::start_with(|c| c.metrics.mode = "token".into(), vec![]).await;
    let (_c, jwt) = first_admin(&s).await;
    // Anonymous, after the default rights were restricted: refused.
    let r = http_once(s.addr, "GET", "/_metrics", &[], b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"code":117637121,"id":"security.rights.unauthorized","message":"Unauthorized: authentication required to execute the action \"server:metrics\".","props":["server","metrics"],"status":401}"#
    );
    let auth = format!("Bearer {jwt}");
    let text = scrape(&s, &[("Authorization", &auth)]).await;
    assert!(text.contains("tollgate_requests_total"), "{text}");
    // A bad token is refused like on any action.
    let r = http_once(
        s.addr,
        "GET",
        "/_metrics",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(r.json()["id"], "security.token.invalid", "{}", r.text());
}
