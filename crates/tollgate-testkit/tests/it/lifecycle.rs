//! Start, shutdown and the binary's configuration handling.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tollgate_core::{ActionDef, Context, Controller, route};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_testkit::{HttpConn, TIMEOUT, TestServer, WsClient, http_once, wait_until};

/// A controller whose action `test:hold` (`GET /_test/hold`) holds each request until the test
/// releases them all, and tells the test how many it has entered: requests in flight for as long
/// as a test needs, with no guess at how long that is.
struct Hold {
    entered: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

impl Hold {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: watch::Sender::new(0),
            released: watch::Sender::new(false),
        })
    }

    /// Waits until `n` requests have entered the action.
    async fn entered(&self, n: usize) {
        let mut entered = self.entered.subscribe();
        let reached = tokio::time::timeout(TIMEOUT, entered.wait_for(|e| *e >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{n} requests did not reach test:hold within {TIMEOUT:?}"
        );
    }

    /// Lets every held request, and every later one, finish.
    fn release(&self) {
        self.released.send_replace(true);
    }

    fn controller(self: &Arc<Self>) -> Vec<Arc<dyn Controller>> {
        vec![Arc::clone(self) as Arc<dyn Controller>]
    }
}

#[async_trait]
impl Controller for Hold {
    fn name(&self) -> &'static str {
        "test"
    }
    fn actions(&self) -> Vec<ActionDef> {
        vec![ActionDef::new("hold", &[route("GET", "/_test/hold")])]
    }
    async fn call(
        &self,
        _action: &str,
        _req: &Request,
        _ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let mut released = self.released.subscribe();
        self.entered.send_modify(|n| *n += 1);
        let _ = released.wait_for(|r| *r).await;
        Ok(json!({"held": true}))
    }
}

/// Waits until the server refuses new TCP connections: its shutdown has started.
async fn wait_refusing_connections(addr: std::net::SocketAddr) {
    wait_until("the server refuses new connections", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}

/// The frames of `ws` up to its close frame; the close code (`None` without a close frame).
async fn frames_until_close(ws: &mut WsClient) -> (Vec<Value>, Option<CloseCode>) {
    let mut frames = Vec::new();
    loop {
        match ws.next().await {
            Some(Message::Close(frame)) => return (frames, frame.map(|f| f.code)),
            Some(Message::Text(t)) => {
                frames.push(serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")));
            }
            Some(_) => continue,
            None => return (frames, None),
        }
    }
}

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
    assert_eq!(r["result"], json!({"held": true}));
    let r = http.await.map(|r| r.json()).unwrap_or_default();
    assert_eq!(r["result"], json!({"held": true}));
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
