//! Hostile clients and edge cases found by review: token lifetimes, slow clients, connection caps,
//! the shared body budget, login and failed-authentication limits per address, the data directory
//! lock. Each test drives the behaviour through real sockets.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_testkit::{HttpConn, NODE, TIMEOUT, TestServer, WsClient, http_once, now_ms};

fn with(mut request: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (request.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    request
}

/// createFirstAdmin (with `reset`) over `c`: user `admin`, password `admin-pw`.
async fn first_admin(c: &mut WsClient) {
    let r = c
        .call(json!({"controller":"security","action":"createFirstAdmin","_id":"admin","reset":true,
            "body":{"content":{},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
}

fn ws_login(password: &str, extra: Value) -> Value {
    with(
        json!({"controller":"auth","action":"login","strategy":"local",
            "body":{"username":"admin","password":password}}),
        extra,
    )
}

/// Waits until the wall clock is at least `ms` (the behaviour under test is the passing of time).
async fn wait_until_ms(ms: u64) {
    while now_ms() <= ms {
        tokio::time::sleep(Duration::from_millis(
            ms.saturating_sub(now_ms()).clamp(1, 50),
        ))
        .await;
    }
}

/// Waits for the start of a fresh window of `window_ms`, so a burst sent now falls in one window.
async fn start_of_window(window_ms: u64) {
    let now = now_ms();
    let into = now % window_ms;
    // Inside the first tenth of a window: it is fresh enough.
    if into > window_ms / 10 {
        wait_until_ms(now - into + window_ms + 5).await;
    }
}

/// Waits, if needed, so that at least `room_ms` remain in the current window of `window_ms`;
/// returns the window's number.
async fn room_in_window(window_ms: u64, room_ms: u64) -> u64 {
    let now = now_ms();
    if window_ms - now % window_ms < room_ms {
        wait_until_ms(now - now % window_ms + window_ms + 5).await;
    }
    now_ms() / window_ms
}

/// Whether the server closes `stream` (EOF or reset) within `within`, reading and discarding.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn login_with_a_sub_second_expires_in_is_valid_until_its_expires_at() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let r = c
        .call(ws_login("admin-pw", json!({"expiresIn": "700ms"})))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["ttl"], 700, "{r}");
    let jwt = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    let expires_at = r["result"]["expiresAt"].as_u64().unwrap_or(0);
    // At once: valid, by the gate and by checkToken, with the same expiresAt.
    let r = c
        .call(json!({"controller":"server","action":"now","jwt":jwt}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(json!({"controller":"auth","action":"checkToken","body":{"token":jwt}}))
        .await;
    assert_eq!(
        r["result"],
        json!({"expiresAt": expires_at, "kuid": "admin", "valid": true})
    );
    // Once expiresAt has passed: expired (on a fresh socket: this one gets the TokenExpired
    // notification).
    wait_until_ms(expires_at).await;
    let r = s
        .ws()
        .await
        .call(json!({"controller":"server","action":"now","jwt":jwt}))
        .await;
    assert_eq!(r["error"]["id"], "security.token.expired", "{r}");
    assert_eq!(r["status"], 401);
}

#[tokio::test]
async fn http_head_sent_byte_by_byte_is_cut_at_the_head_timeout() {
    let s = TestServer::start_with(|c| c.http.head_timeout_ms = 1000, vec![]).await;
    let mut stream = TcpStream::connect(s.addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "GET /_now HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200)
    );
    let mut sent = 0;
    let mut closed = false;
    // One byte every 50 ms would take 11 s for this head; each byte must not extend the timeout.
    for byte in head.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        if closed_within(&mut stream, Duration::from_millis(50)).await {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection stayed open for the whole dripped head"
    );
    assert!(
        sent < head.len(),
        "the whole head was accepted ({sent} bytes)"
    );
}

#[tokio::test]
async fn http_body_that_stops_arriving_is_answered_then_closed() {
    let s = TestServer::start_with(
        |c| {
            c.http.body_timeout_ms = 300;
            c.http.body_min_rate = 0;
        },
        vec![],
    )
    .await;
    let mut conn = HttpConn::connect(s.addr).await;
    conn.send_raw(b"POST /_query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"contr")
        .await;
    let r = conn.read_response(false).await;
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.text(),
        r#"{"code":50397186,"id":"network.http.unexpected_error","message":"Caught an unexpected HTTP error: the request body did not arrive in time","props":["the request body did not arrive in time"],"status":400}"#
    );
    assert!(conn.is_closed().await);
}

#[tokio::test]
async fn http_slow_body_at_the_minimum_rate_is_received() {
    let s = TestServer::start_with(
        |c| {
            c.http.body_timeout_ms = 300;
            // 100 bytes per second: each byte buys 10 ms.
            c.http.body_min_rate = 100;
        },
        vec![],
    )
    .await;
    let body = format!(
        r#"{{"controller":"server","action":"now","pad":"{}"}}"#,
        "x".repeat(100)
    );
    let mut conn = HttpConn::connect(s.addr).await;
    conn.send_raw(
        format!(
            "POST /_query HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    // 50 bytes at once (0.5 s earned), then the rest after longer than the base timeout.
    let (first, rest) = body.as_bytes().split_at(50);
    conn.send_raw(first).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    conn.send_raw(rest).await;
    let r = conn.read_response(false).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn silent_and_half_finished_websocket_upgrades_are_closed() {
    let s = TestServer::start_with(|c| c.http.head_timeout_ms = 1000, vec![]).await;
    let mut streams = Vec::new();
    for i in 0..40 {
        let mut stream = TcpStream::connect(s.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i % 2 == 1 {
            // An upgrade request whose head never ends.
            let partial = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
            stream
                .write_all(partial.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        streams.push(stream);
    }
    let mut open = 0;
    for stream in &mut streams {
        if !closed_within(stream, TIMEOUT).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections still open past the head timeout");
}

#[tokio::test]
async fn connections_per_client_address_are_capped() {
    let s = TestServer::start_with(|c| c.server.max_connections_per_ip = 3, vec![]).await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        let mut conn = HttpConn::connect(s.addr).await;
        assert_eq!(conn.request("GET", "/_now", &[], b"").await.status, 200);
        kept.push(conn);
    }
    let mut fourth = TcpStream::connect(s.addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = fourth
        .write_all(b"GET /_now HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, fourth.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the fourth connection was served: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // Closing one frees its slot.
    drop(kept.pop());
    let mut served = false;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !served && tokio::time::Instant::now() < deadline {
        let mut stream = TcpStream::connect(s.addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = stream
            .write_all(b"GET /_now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
        served = answer.starts_with(b"HTTP/1.1 200 OK");
        if !served {
            // The server notices the closed connection asynchronously.
            tokio::task::yield_now().await;
        }
    }
    assert!(served, "no slot was freed by closing a connection");
}

#[tokio::test]
async fn bodies_past_the_shared_budget_are_refused_with_503() {
    let s = TestServer::start_with(
        |c| {
            c.server.max_request_size = 64 * 1024;
            c.http.max_buffered_body_bytes = 100 * 1024;
        },
        vec![],
    )
    .await;
    // A body of 64 KiB being received holds 64 KiB of the 100 KiB budget.
    let mut holder = HttpConn::connect(s.addr).await;
    holder
        .send_raw(b"POST /_query HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n{")
        .await;
    let body = br#"{"controller":"server","action":"now"}"#;
    let len = (64 * 1024).to_string();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let refused = loop {
        // Declares 64 KiB too: only 36 KiB are left.
        let mut other = HttpConn::connect(s.addr).await;
        let mut padded = body.to_vec();
        padded.resize(64 * 1024, b' ');
        let r = other
            .request(
                "POST",
                "/_query",
                &[("Content-Length", len.as_str())],
                &padded,
            )
            .await;
        if r.status == 503 || tokio::time::Instant::now() > deadline {
            break r;
        }
        // The holder's head may not have been read yet.
        tokio::task::yield_now().await;
    };
    assert_eq!(
        refused.text(),
        r#"{"code":33685506,"id":"api.process.overloaded","message":"Request discarded: Kuzzle Server is temporarily overloaded.","props":[],"status":503}"#
    );
    // Once the first body is complete and answered, its share is back.
    let mut rest = vec![b' '; 64 * 1024 - 1];
    rest[..body.len() - 1].copy_from_slice(&body[1..]);
    holder.send_raw(&rest).await;
    assert_eq!(holder.read_response(false).await.status, 200);
    let small = http_once(s.addr, "POST", "/_query", &[], body).await;
    assert_eq!(small.status, 200, "{}", small.text());
}

#[tokio::test]
async fn websocket_logins_are_limited_per_address_across_sockets() {
    let s = TestServer::start_with(
        |c| {
            c.security.logins_per_second = 0;
            c.security.logins_per_second_per_ip = 2;
        },
        vec![],
    )
    .await;
    let mut admin = s.ws().await;
    first_admin(&mut admin).await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(s.ws().await);
    }
    start_of_window(1000).await;
    let mut statuses = Vec::new();
    for c in &mut sockets {
        let r = c.call(ws_login("admin-pw", json!({}))).await;
        statuses.push(r["status"].as_u64().unwrap_or(0));
        if r["status"] == 429 {
            assert_eq!(r["error"]["id"], "api.process.too_many_logins_requests");
        }
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

#[tokio::test]
async fn failed_logins_lock_the_address_out_for_the_minute() {
    let s = TestServer::start_with(
        |c| {
            c.security.logins_per_second = 0;
            c.security.logins_per_second_per_ip = 0;
            c.security.failed_auth_per_minute_per_ip = 3;
        },
        vec![],
    )
    .await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    // The failures are counted per minute: the whole scenario runs within one.
    let minute = room_in_window(60_000, 5_000).await;
    for _ in 0..3 {
        let r = c.call(ws_login("wrong", json!({}))).await;
        assert_eq!(r["error"]["id"], "plugin.strategy.missing_user", "{r}");
    }
    // The right password too, from any socket or protocol of this address.
    let r = c.call(ws_login("admin-pw", json!({}))).await;
    assert_eq!(
        r["error"]["id"], "api.process.too_many_logins_requests",
        "{r}"
    );
    let body = json!({"username":"admin","password":"admin-pw"}).to_string();
    let r = http_once(s.addr, "POST", "/_login/local", &[], body.as_bytes()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        now_ms() / 60_000,
        minute,
        "the scenario straddled two minutes"
    );
}

#[tokio::test]
async fn refused_tokens_count_as_failed_authentications() {
    let s = TestServer::start_with(|c| c.security.failed_auth_per_minute_per_ip = 2, vec![]).await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let r = c.call(ws_login("admin-pw", json!({}))).await;
    let jwt = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    // Revoked: signed by the server, but logged out.
    let r = c
        .call(json!({"controller":"auth","action":"logout","jwt":jwt}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let minute = room_in_window(60_000, 5_000).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = c
            .call(json!({"controller":"server","action":"now","jwt":jwt}))
            .await;
        ids.push(r["error"]["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        ids,
        vec![
            "security.token.invalid",
            "security.token.invalid",
            "api.process.too_many_logins_requests"
        ]
    );
    assert_eq!(
        now_ms() / 60_000,
        minute,
        "the scenario straddled two minutes"
    );
    // A request without a token is not locked out: it goes on to the rights check, as anonymous.
    let r = c.call(json!({"controller":"server","action":"now"})).await;
    assert_eq!(r["error"]["id"], "security.rights.unauthorized", "{r}");
    assert_eq!(r["node"], NODE);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let first = TestServer::start().await;
    let mut config = tollgate_server::Config::default();
    config.server.listen = "127.0.0.1:0".to_owned();
    config.server.data_dir = first.data_dir.path().to_owned();
    let settings = config.validate().unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match tollgate_server::Server::start(listener, settings, Default::default()).await {
        Ok(_) => panic!("a second server opened the same data directory"),
        Err(e) => assert!(
            e.to_string()
                .contains("is in use by another Tollgate process"),
            "{e}"
        ),
    }
    // The first one is unaffected, and once stopped it releases the directory.
    assert_eq!(
        http_once(first.addr, "GET", "/_now", &[], b"").await.status,
        200
    );
    let dir = std::sync::Arc::clone(&first.data_dir);
    assert!(first.stop().await);
    let again = TestServer::start_in(dir, |_| {}, vec![]).await;
    assert_eq!(
        http_once(again.addr, "GET", "/_now", &[], b"").await.status,
        200
    );
}

#[tokio::test]
async fn every_head_over_the_limit_gets_431_however_long_its_target() {
    let s = TestServer::start().await;
    let head_too_large = "HTTP/1.1 431 Request Header Fields Too Large";
    // Past the limit by the target alone (past hyper's 65,534-byte URI limit too).
    for len in [65_540, 70 * 1024, 100 * 1024, 1024 * 1024] {
        let path = format!("/profiles/{}", "p".repeat(len));
        let r = HttpConn::connect(s.addr)
            .await
            .request("GET", &path, &[], b"")
            .await;
        assert_eq!(r.status_line, head_too_large, "target of {len} bytes");
        assert!(r.body.is_empty());
    }
    // A target within it, headers taking the head past it.
    let path = format!("/profiles/{}", "p".repeat(40 * 1024));
    let pad = "x".repeat(30 * 1024);
    let r = HttpConn::connect(s.addr)
        .await
        .request("GET", &path, &[("X-Pad", pad.as_str())], b"")
        .await;
    assert_eq!(r.status_line, head_too_large);
    // Within it: an ordinary answer (here: the id is over its own 512-byte limit).
    let r = HttpConn::connect(s.addr)
        .await
        .request("GET", &path, &[], b"")
        .await;
    assert_eq!(
        r.json()["error"]["id"],
        "api.assert.invalid_argument",
        "{}",
        r.text()
    );
}
