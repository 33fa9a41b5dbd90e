//! Start, shutdown and the binary's configuration handling.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tollgate_core::{ActionDef, Context, Controller, route};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_testkit::{HttpConn, TestServer, http_once};

/// A controller whose action takes a while: `test:sleep` with `ms`.
struct Slow;

#[async_trait]
impl Controller for Slow {
    fn name(&self) -> &'static str {
        "test"
    }
    fn actions(&self) -> Vec<ActionDef> {
        vec![ActionDef::new("sleep", &[route("GET", "/_test/sleep")])]
    }
    async fn call(
        &self,
        _action: &str,
        req: &Request,
        _ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let ms = req.integer("ms")?.unwrap_or(0).clamp(0, 5000);
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        Ok(json!({"slept": ms}))
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut s = TestServer::start_with(|_| {}, vec![Arc::new(Slow)]).await;
    let addr = s.addr;
    let mut ws = s.ws().await;
    ws.send_text(r#"{"controller":"test","action":"sleep","ms":600,"requestId":"slow-ws"}"#)
        .await;
    let http =
        tokio::spawn(async move { http_once(addr, "GET", "/_test/sleep?ms=600", &[], b"").await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let stopping = s.begin_stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No new connection is accepted once the shutdown started.
    let refused = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a connection was accepted during shutdown"
    );

    // Both in-flight requests complete normally...
    let r = ws.recv_json().await;
    assert_eq!(r["requestId"], "slow-ws");
    assert_eq!(r["result"], json!({"slept": 600}));
    let r = http.await.map(|r| r.json()).unwrap_or_default();
    assert_eq!(r["result"], json!({"slept": 600}));
    // ...then the socket gets a close frame.
    let close = loop {
        match ws.next().await {
            Some(Message::Close(frame)) => break frame.map(|f| f.code),
            Some(_) => continue,
            None => break None,
        }
    };
    assert_eq!(close, Some(CloseCode::Away));
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test]
async fn shutdown_refuses_new_requests_on_open_sockets() {
    let mut s = TestServer::start_with(|_| {}, vec![Arc::new(Slow)]).await;
    let mut ws = s.ws().await;
    ws.send_text(r#"{"controller":"test","action":"sleep","ms":400}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = s.begin_stop();
    // The in-flight answer arrives, then the socket closes; nothing is lost.
    let first = ws.recv_json().await;
    assert_eq!(first["status"], 200);
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test]
async fn http_keep_alive_connection_is_closed_after_shutdown() {
    let mut s = TestServer::start().await;
    let mut c: HttpConn = s.http().await;
    assert_eq!(c.request("GET", "/_now", &[], b"").await.status, 200);
    let stopping = s.begin_stop();
    assert!(c.is_closed().await);
    assert_eq!(stopping.await.ok(), Some(true));
}

#[tokio::test]
async fn ready_reports_503_when_overloaded() {
    let s = TestServer::start_with(
        |c| {
            c.limits.concurrent_requests = 1;
            c.limits.requests_buffer_size = 1;
        },
        vec![Arc::new(Slow)],
    )
    .await;
    let addr = s.addr;
    assert_eq!(
        http_once(addr, "GET", "/_ready", &[], b"").await.status,
        200
    );
    // One request runs, one waits: the buffer is full.
    let mut running = HttpConn::connect(addr).await;
    running
        .send_raw(b"GET /_test/sleep?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut waiting = HttpConn::connect(addr).await;
    waiting
        .send_raw(b"GET /_test/sleep?ms=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    // A third request is refused as overloaded.
    let r = http_once(addr, "GET", "/_test/sleep?ms=1", &[], b"").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["id"], "api.process.overloaded");
    assert_eq!(running.read_response(false).await.status, 200);
    assert_eq!(waiting.read_response(false).await.status, 200);
    assert_eq!(
        http_once(addr, "GET", "/_ready", &[], b"").await.status,
        200
    );
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
