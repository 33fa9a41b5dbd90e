//! Test harness: a real Tollgate server on `127.0.0.1:0` with a fresh data directory, a raw HTTP/1.1
//! client that shows the exact bytes a client receives, and a WebSocket client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tollgate_core::{ActionDef, Context, Controller, route};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_server::{Config, Extensions, Server};

pub mod pg;

/// The node id every test server reports.
pub const NODE: &str = "knode-tollgate-1";

/// How long a test waits for any single answer before failing.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A server running in this process, stopped when dropped (or explicitly with [`TestServer::stop`]).
pub struct TestServer {
    pub addr: SocketAddr,
    server: Option<Server>,
    /// Kept alive for the server's lifetime.
    pub data_dir: Arc<tempfile::TempDir>,
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, Vec::new()).await
    }

    /// A server whose configuration is adjusted by `tweak`, with extra controllers.
    pub async fn start_with(
        tweak: impl FnOnce(&mut Config),
        controllers: Vec<Arc<dyn Controller>>,
    ) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")));
        Self::start_in(data_dir, tweak, controllers).await
    }

    /// A server on an existing data directory (restart tests).
    pub async fn start_in(
        data_dir: Arc<tempfile::TempDir>,
        tweak: impl FnOnce(&mut Config),
        controllers: Vec<Arc<dyn Controller>>,
    ) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".to_owned();
        config.server.node_id = Some(NODE.to_owned());
        config.server.data_dir = data_dir.path().to_owned();
        config.log.level = "warn".to_owned();
        // Cheap password hashing keeps the suite fast; the production cost is the default.
        config.security.argon2_memory_kib = 1024;
        config.security.argon2_iterations = 1;
        tweak(&mut config);
        let settings = config
            .validate()
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let server = Server::start(listener, settings, Extensions { controllers })
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        Self {
            addr: server.local_addr(),
            server: Some(server),
            data_dir,
        }
    }

    /// Graceful shutdown; returns whether it completed within the grace period.
    pub async fn stop(mut self) -> bool {
        match self.server.take() {
            Some(server) => server.shutdown().await,
            None => true,
        }
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<bool> {
        let server = self.server.take();
        tokio::spawn(async move {
            match server {
                Some(server) => server.shutdown().await,
                None => true,
            }
        })
    }

    pub async fn http(&self) -> HttpConn {
        HttpConn::connect(self.addr).await
    }

    pub async fn ws(&self) -> WsClient {
        WsClient::connect(self.addr, "/").await
    }
}

/// An HTTP response as received.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1 200 OK`
    pub status_line: String,
    pub status: u16,
    /// Header names lower-cased, in received order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One keep-alive HTTP/1.1 connection speaking raw bytes.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `method path` with the given headers and body (a `Content-Length` is added when the
    /// body is not empty and no length header was given), and reads one response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let has_length = headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        if !has_length && !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes).await;
        self.read_response(method == "HEAD").await
    }

    /// Writes raw bytes on the connection.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// Reads one response (`Content-Length` framing; `head_only` for HEAD requests).
    pub async fn read_response(&mut self, head_only: bool) -> RawResponse {
        tokio::time::timeout(TIMEOUT, self.read_response_inner(head_only))
            .await
            .unwrap_or_else(|_| panic!("no HTTP response within {TIMEOUT:?}"))
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn read_response_inner(&mut self, head_only: bool) -> RawResponse {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            if self.fill().await == 0 {
                panic!(
                    "connection closed before a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let length = if head_only || status == 101 {
            0
        } else {
            length
        };
        while self.buf.len() < length {
            if self.fill().await == 0 {
                panic!("connection closed inside a body");
            }
        }
        let body = self.buf.drain(..length).collect();
        RawResponse {
            status_line,
            status,
            headers,
            body,
        }
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub async fn is_closed(&mut self) -> bool {
        matches!(tokio::time::timeout(TIMEOUT, self.fill()).await, Ok(0))
    }
}

/// One request on a fresh connection.
pub async fn http_once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    HttpConn::connect(addr)
        .await
        .request(method, path, headers, body)
        .await
}

/// A WebSocket client.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("websocket connect: {e}"));
        Self { ws }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    pub async fn send(&mut self, message: Message) {
        self.ws
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// The next message other than a pong, or `None` when the socket closed.
    pub async fn next(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(TIMEOUT, self.ws.next())
            .await
            .unwrap_or_else(|_| panic!("no websocket message within {TIMEOUT:?}"));
        match next {
            Some(Ok(m)) => Some(m),
            Some(Err(_)) | None => None,
        }
    }

    /// The next text frame, as a string.
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.next().await {
                Some(Message::Text(t)) => return t.to_string(),
                Some(Message::Pong(_)) | Some(Message::Ping(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Sends a request and returns the raw text of its answer.
    pub async fn call_text(&mut self, request: &str) -> String {
        self.send_text(request).await;
        self.recv_text().await
    }

    pub async fn call(&mut self, request: Value) -> Value {
        self.send_text(&request.to_string()).await;
        self.recv_json().await
    }
}

/// Replaces the value of `"key":<number>` in a JSON text with `X`, for comparing bytes of responses
/// that contain a timestamp. Returns the number found.
pub fn mask_number(text: &str, key: &str) -> (String, Option<u64>) {
    let needle = format!("\"{key}\":");
    let Some(start) = text.find(&needle) else {
        return (text.to_owned(), None);
    };
    let from = start + needle.len();
    let digits: String = text[from..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let masked = format!("{}X{}", &text[..from], &text[from + digits.len()..]);
    (masked, digits.parse().ok())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    tollgate_server::server_controller::now_ms()
}

/// Fails a test whose external service (Node.js, PostgreSQL…) is missing: `service` names it, `probe`
/// says how it was looked for. Such a test is ignored when the service was missing at build time
/// (`build.rs`: cfg `no_<service>`), unless `CI=true`, which makes every test run; so it gets here in
/// CI, or when the service went away after the build.
pub fn missing_service(test: &str, service: &str, probe: &str) -> ! {
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let why = if ci {
        "CI is set, so the tests that need it run instead of being ignored: provide it"
    } else {
        "it was there when the tests were built; build again to ignore the tests that need it"
    };
    panic!("{test}: {service} not found ({probe}); {why}");
}

/// The Python venv holding the OpenAPI tools (`.ci/openapi-venv`): `$TOLLGATE_OPENAPI_VENV`, else
/// `target/openapi-venv` in the workspace (as `build.rs` probes it).
pub fn openapi_venv() -> std::path::PathBuf {
    match std::env::var_os("TOLLGATE_OPENAPI_VENV") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openapi-venv"),
    }
}

/// Polls `condition` every 5 ms until it holds, and panics with `what` if it still does not after
/// [`TIMEOUT`]: a wait on an observable state, instead of a sleep whose length is a guess.
/// `condition` may be an async closure that keeps state between its calls (a client, the last
/// answer).
pub async fn wait_until(what: &str, condition: impl AsyncFnMut() -> bool) {
    wait_within(what, TIMEOUT, condition).await;
}

/// [`wait_until`] with its own bound; returns how long it took for `condition` to hold.
pub async fn wait_within(
    what: &str,
    bound: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    let deadline = start + bound;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not the case after {bound:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// `test:hold` (`GET /_test/hold`): holds every request until the test releases them, and records
/// the request ids in the order they entered the action.
pub struct Hold {
    entered: watch::Sender<usize>,
    released: watch::Sender<bool>,
    order: Mutex<Vec<String>>,
}

impl Hold {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: watch::Sender::new(0),
            released: watch::Sender::new(false),
            order: Mutex::new(Vec::new()),
        })
    }

    /// Waits until `n` requests have entered the action.
    pub async fn entered(&self, n: usize) {
        let mut entered = self.entered.subscribe();
        let reached = tokio::time::timeout(TIMEOUT, entered.wait_for(|e| *e >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{n} requests did not reach test:hold within {TIMEOUT:?} ({} did)",
            *self.entered.borrow()
        );
    }

    /// Lets every held request, and every later one, finish.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// The controller list to pass to [`TestServer::start_with`].
    pub fn controller(self: &Arc<Self>) -> Vec<Arc<dyn Controller>> {
        vec![Arc::clone(self) as Arc<dyn Controller>]
    }

    /// The request ids, in the order they entered.
    pub fn order(&self) -> Vec<String> {
        self.order.lock().map(|o| o.clone()).unwrap_or_default()
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
        req: &Request,
        _ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let mut released = self.released.subscribe();
        if let Ok(mut order) = self.order.lock() {
            order.push(req.request_id.clone());
        }
        self.entered.send_modify(|n| *n += 1);
        let _ = released.wait_for(|r| *r).await;
        Ok(json!({"held": req.request_id}))
    }
}

/// Waits until the server refuses new TCP connections: its shutdown has started.
pub async fn wait_refusing_connections(addr: SocketAddr) {
    wait_until("the server refuses new connections", || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
}

/// The text frames of `ws` up to its close frame, and the close code (`None`: no close frame).
pub async fn frames_until_close(ws: &mut WsClient) -> (Vec<Value>, Option<CloseCode>) {
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

/// `createFirstAdmin` (kuid, username `root`, password `root-pw`, default rights restricted) over a
/// new WebSocket, then an HTTP login: the socket and the admin's token.
pub async fn first_admin(s: &TestServer) -> (WsClient, String) {
    let mut c = s.ws().await;
    let r = c
        .call(json!({"controller":"security","action":"createFirstAdmin","_id":"root","reset":true,
            "body":{"content":{},"credentials":{"local":{"username":"root","password":"root-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "createFirstAdmin: {r}");
    (c, login_token(s, "root", "root-pw").await)
}

/// Logs in with the local strategy over HTTP; the token (the test fails without one).
pub async fn login_token(s: &TestServer, username: &str, password: &str) -> String {
    let body = json!({"username":username,"password":password}).to_string();
    let r = http_once(s.addr, "POST", "/_login/local", &[], body.as_bytes())
        .await
        .json();
    r["result"]["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("login {username}: {r}"))
        .to_owned()
}
