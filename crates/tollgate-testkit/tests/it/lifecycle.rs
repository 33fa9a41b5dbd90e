//! Start, shutdown and the binary's configuration handling.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tollgate_testkit::{
    Hold, HttpConn, TestServer, frames_until_close, http_once, wait_refusing_connections,
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let hold = Hold::new();
    let mut s = TestServer::start_with(|_| {}, hold.controller()).await;
    let addr = s.addr;
    let mut ws = s.ws().await;
    ws.send_text(r#"{"controller":"test","action":"hold","requestId":"held-ws"}"#)
        .await;
    let http = tokio::spawn(async move { http_once(addr, "GET", "/_test/hold", &[], b"").await });
    hold.entered(2).await;

    let stopping = s.begin_stop();
    // No new connection is accepted once the shutdown started, while both requests are in flight.
    wait_refusing_connections(addr).await;
    assert!(
        !http.is_finished(),
        "the HTTP request ended before its release"
    );

    // Both in-flight requests complete normally...
    hold.release();
    let r = ws.recv_json().await;
    assert_eq!(r["requestId"], "held-ws");
    assert_eq!(r["result"], json!({"held": "held-ws"}));
    let r = http.await.map(|r| r.json()).unwrap_or_default();
    assert_eq!(r["result"], json!({"held": r["requestId"]}));
    // ...then the socket gets a close frame.
    let (frames, close) = frames_until_close(&mut ws).await;
    assert_eq!(frames, Vec::<Value>::new());
    assert_eq!(close, Some(CloseCode::Away));
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_requests_on_open_sockets() {
    let hold = Hold::new();
    let mut s = TestServer::start_with(|_| {}, hold.controller()).await;
    let addr = s.addr;
    let mut ws = s.ws().await;
    ws.send_text(r#"{"controller":"test","action":"hold","requestId":"held"}"#)
        .await;
    hold.entered(1).await;
    let stopping = s.begin_stop();
    wait_refusing_connections(addr).await;
    // A request sent on the open socket once the shutdown started is not run.
    ws.send_text(r#"{"controller":"server","action":"now","requestId":"late"}"#)
        .await;
    hold.release();
    // The in-flight answer arrives, then the socket closes; nothing is lost.
    let (frames, close) = frames_until_close(&mut ws).await;
    assert_eq!(
        frames.first().map(|f| &f["requestId"]),
        Some(&json!("held"))
    );
    assert_eq!(frames[0]["status"], 200);
    // The late request gets no answer, or a refusal: never a result.
    for late in &frames[1..] {
        assert_eq!(late["requestId"], "late", "{late}");
        assert_eq!(late["error"]["id"], "api.process.shutting_down", "{late}");
    }
    assert_eq!(close, Some(CloseCode::Away));
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_keep_alive_connection_is_closed_after_shutdown() {
    let mut s = TestServer::start().await;
    let mut c: HttpConn = s.http().await;
    assert_eq!(c.request("GET", "/_now", &[], b"").await.status, 200);
    let stopping = s.begin_stop();
    assert!(c.is_closed().await);
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_503_when_overloaded() {
    let hold = Hold::new();
    let s = TestServer::start_with(
        |c| {
            c.limits.concurrent_requests = 1;
            c.limits.requests_buffer_size = 1;
        },
        hold.controller(),
    )
    .await;
    let addr = s.addr;
    let ready = || async move { http_once(addr, "GET", "/_ready", &[], b"").await.status };
    assert_eq!(ready().await, 200);
    // One request runs: the buffer is still empty.
    let mut running = HttpConn::connect(addr).await;
    running
        .send_raw(b"GET /_test/hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    hold.entered(1).await;
    assert_eq!(ready().await, 200);
    // One more waits for the slot: the buffer is full, which /_ready reports.
    let mut waiting = HttpConn::connect(addr).await;
    waiting
        .send_raw(b"GET /_test/hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    wait_until("/_ready reports the full buffer", || async move {
        ready().await == 503
    })
    .await;
    let r = http_once(
        addr,
        "GET",
        "/_ready",
        &[("X-Kuzzle-Request-Id", "rd")],
        b"",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(r.json()["error"], Value::Null);
    assert_eq!(r.json()["status"], 503);
    assert_eq!(r.json()["requestId"], "rd");
    // A third request is refused as overloaded.
    let r = http_once(addr, "GET", "/_test/hold", &[], b"").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["id"], "api.process.overloaded");
    hold.release();
    assert_eq!(running.read_response(false).await.status, 200);
    assert_eq!(waiting.read_response(false).await.status, 200);
    assert_eq!(ready().await, 200);
}

#[tokio::test]
async fn ready_with_an_empty_wait_buffer_while_idle() {
    let s = TestServer::start_with(|c| c.limits.requests_buffer_size = 0, vec![]).await;
    assert_eq!(
        http_once(s.addr, "GET", "/_ready", &[], b"").await.status,
        200
    );
    assert_eq!(
        http_once(s.addr, "GET", "/_now", &[], b"").await.status,
        200
    );
}
