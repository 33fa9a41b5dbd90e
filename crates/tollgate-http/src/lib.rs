//! Tollgate's HTTP front-end (`shared/spec/protocol.md` §7), on hyper 1.
//!
//! Each HTTP/1.1 request becomes one [`Request`] envelope: the route gives `controller:action` and the
//! path placeholders, the query string gives typed arguments, headers give `jwt`, `volatile` and the
//! request id, and the body is size-checked, decoded and parsed first ([`body`]). Special endpoints
//! (`/_query`, `/_healthcheck`, `/_ready`, `HEAD /`, `OPTIONS`) are answered here. WebSocket upgrades,
//! on any path, are handed to an [`UpgradeAcceptor`]. Errors become bytes only here, at the edge.

pub mod body;
pub mod routes;

use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::header::{
    ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, AUTHORIZATION, CONNECTION,
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HeaderName, HeaderValue, ORIGIN,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE, VARY,
};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tollgate_core::observe::{Access, Counted, Exposition};
use tollgate_core::{ConnectionInfo, Funnel, Protocol, Shutdown, UpgradeAcceptor};
use tollgate_protocol::errors::{
    API_PROCESS_OVERLOADED, NETWORK_HTTP_REQUEST_TOO_LARGE, NETWORK_HTTP_UNEXPECTED_ERROR,
    NETWORK_HTTP_UNSUPPORTED_VERB, NETWORK_HTTP_URL_NOT_FOUND, NETWORK_HTTP_VOLATILE_PARSE_FAILED,
};
use tollgate_protocol::{
    Encoding, KuzzleError, Payload, Request, Response, new_request_id, to_json_bytes,
};

use crate::routes::{RouteError, RouteTree};

/// Limits and switches of the HTTP front-end.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest body, before and after decompression (`server.maxRequestSize`).
    pub max_request_size: usize,
    /// Most `Content-Encoding` layers accepted.
    pub max_encoding_layers: usize,
    /// Compress responses when the client accepts gzip or deflate.
    pub compression: bool,
    /// Largest request head (request line and headers).
    pub max_head_size: usize,
    /// Time allowed to receive a whole request head, from its first byte (not reset by each byte).
    pub head_timeout: Duration,
    /// Time allowed to receive a request body, on top of what `body_min_rate` grants.
    pub body_timeout: Duration,
    /// Bytes per second a body must keep arriving at: each byte received extends the body's
    /// deadline by `1 / body_min_rate` seconds (0: no extension, the whole body within
    /// `body_timeout`).
    pub body_min_rate: u64,
    /// Bytes of request bodies held at once by all the connections together (raw and decoded):
    /// past it a request gets 503 `api.process.overloaded` instead of being read.
    pub max_buffered_body_bytes: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed: the client address of a request coming
    /// through one of them is taken from that header (per-IP login limits see the real client).
    pub trusted_proxies: Vec<IpAddr>,
    /// Cookie authentication is on (`http.cookie_authentication`): every response carries
    /// `Access-Control-Allow-Credentials: true`, as Kuzzle's do, so that browsers let pages read
    /// answers to credentialed (cookie-carrying) requests.
    pub cookie_authentication: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_request_size: 1024 * 1024,
            max_encoding_layers: 3,
            compression: true,
            max_head_size: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 64 * 1024,
            max_buffered_body_bytes: 128 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            cookie_authentication: true,
        }
    }
}

const ALLOW_HEADERS: &str = "Content-Type, Access-Control-Allow-Headers, Authorization, X-Requested-With, Content-Encoding, Content-Length, X-Kuzzle-Volatile, X-Kuzzle-Request-Id";
const ALLOW_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS,HEAD";
const X_KUZZLE_REQUEST_ID: HeaderName = HeaderName::from_static("x-kuzzle-request-id");
const X_KUZZLE_NODE: HeaderName = HeaderName::from_static("x-kuzzle-node");
const X_KUZZLE_VOLATILE: HeaderName = HeaderName::from_static("x-kuzzle-volatile");

/// The largest `max_head_size`: hyper's parser answers 414 to a request target over 65,534 bytes,
/// which a head of at most this size cannot hold, so every head over the limit gets 431.
pub const MAX_HEAD_SIZE_LIMIT: usize = 65_536;

/// Bodies larger than this (bytes) are decoded and parsed on a blocking thread.
const LARGE_BODY: usize = 64 * 1024;

/// The most of a body over the size limit that is read (and dropped) before the 413 is sent; past
/// it, the 413 goes out and the connection is closed.
const DRAIN_MAX: usize = 64 * 1024 * 1024;

/// Bytes → KiB permits of the body budget, rounded up.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// Why a body was not read.
enum BodyError {
    /// Answered, and the connection stays usable.
    Refused(KuzzleError),
    /// The body stopped arriving: answered, then the connection is closed.
    TimedOut(KuzzleError),
}

impl From<KuzzleError> for BodyError {
    fn from(e: KuzzleError) -> Self {
        BodyError::Refused(e)
    }
}

/// Held for as long as a connection lives (an HTTP connection, then the WebSocket it may become).
pub type ConnectionGuard = Arc<dyn std::any::Any + Send + Sync>;

/// The HTTP front-end, shared by every connection.
pub struct HttpFrontend {
    funnel: Arc<Funnel>,
    tree: RouteTree,
    config: HttpConfig,
    node: Arc<str>,
    upgrades: Option<Arc<dyn UpgradeAcceptor>>,
    shutdown: Shutdown,
    /// `max_buffered_body_bytes`, in KiB permits.
    body_budget: Arc<Semaphore>,
    /// `GET /_metrics`, when metrics are on.
    metrics: Option<Arc<dyn Exposition>>,
    /// The headers of every answer, in their order, made once: each response copies them and sets
    /// its own length, encoding and request id in place (building the map per response cost more
    /// than the rest of the answer's headers).
    headers: HeaderMap,
}

impl std::fmt::Debug for HttpFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFrontend")
            .field("config", &self.config)
            .finish()
    }
}

/// How a response must be finished, known from the request head.
struct Reply {
    request_id: String,
    origin: Option<HeaderValue>,
    pretty: bool,
    encoding: ContentEncoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
}

impl HttpFrontend {
    pub fn new(
        funnel: Arc<Funnel>,
        config: HttpConfig,
        node: Arc<str>,
        upgrades: Option<Arc<dyn UpgradeAcceptor>>,
        shutdown: Shutdown,
    ) -> Self {
        let tree = RouteTree::new(&funnel.router().http_routes());
        let body_budget = Arc::new(Semaphore::new(kib(config.max_buffered_body_bytes)));
        let headers = standard_headers(&config, &node);
        Self {
            metrics: None,
            funnel,
            tree,
            config,
            node,
            upgrades,
            shutdown,
            body_budget,
            headers,
        }
    }

    /// Serves one TCP connection (HTTP/1.1 with keep-alive, and upgrades) until it closes or the
    /// shutdown completes its in-flight request.
    ///
    /// `guard` is held until the connection ends, including a WebSocket it is upgraded to (the
    /// server passes its connection-count permit).
    /// Serves `GET /_metrics` from `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Exposition>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        guard: ConnectionGuard,
    ) {
        let _counted = self
            .funnel
            .observer()
            .map(|o| Counted::new(Arc::clone(o), Protocol::Http));
        let _ = stream.set_nodelay(true);
        let connection_id: Arc<str> = Arc::from(new_request_id());
        let this = Arc::clone(&self);
        let service = service_fn(move |req| {
            let this = Arc::clone(&this);
            let connection_id = Arc::clone(&connection_id);
            let guard = Arc::clone(&guard);
            async move { Ok::<_, Infallible>(this.handle(req, peer, &connection_id, guard).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.head_timeout)
            .max_buf_size(self.config.max_head_size.max(8192))
            // A head over the limit is refused with 431 before its request target is looked at.
            .max_header_size(self.config.max_head_size)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "http connection ended with an error");
                }
            }
            _ = self.shutdown.triggered() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(
        &self,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
        connection_id: &str,
        guard: ConnectionGuard,
    ) -> hyper::Response<Full<Bytes>> {
        // hyper's parser answers 431 to a head over the limit (`max_header_size`); this is the same
        // check on the head as parsed, should the two counts differ.
        if head_size(&req) > self.config.max_head_size {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return response;
        }
        let headers = req.headers();
        let request_id = headers
            .get(X_KUZZLE_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(new_request_id);
        let origin = headers.get(ORIGIN).cloned();
        let query: Vec<(String, Option<String>)> =
            req.uri().query().map(parse_query).unwrap_or_default();
        let reply = Reply {
            request_id,
            pretty: query.iter().any(|(k, _)| k == "pretty"),
            encoding: self.negotiate(headers),
            origin,
        };
        let conn = Arc::new(ConnectionInfo {
            id: connection_id.to_owned(),
            protocol: Protocol::Http,
            peer: Some(client_addr(
                peer,
                req.headers(),
                &self.config.trusted_proxies,
            )),
            origin: reply
                .origin
                .as_ref()
                .and_then(|o| o.to_str().ok())
                .map(str::to_owned),
            token_links: None,
            cookie: cookie_header(req.headers()),
        });

        let verb = match *req.method() {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::OPTIONS => "OPTIONS",
            ref other => {
                let e =
                    KuzzleError::new(&NETWORK_HTTP_UNSUPPORTED_VERB, vec![json!(other.as_str())]);
                return self.envelope(&Response::bare_failure(reply.request_id.clone(), e), &reply);
            }
        };
        if let Some(acceptor) = self
            .upgrades
            .as_ref()
            .filter(|_| is_websocket_upgrade(req.headers()))
        {
            return self.upgrade(&mut req, Arc::clone(acceptor), conn, &reply, guard);
        }
        let path = normalized_path(req.uri().path());
        if verb == "OPTIONS" {
            return self.envelope(
                &Response::special(reply.request_id.clone(), 200, json!({})),
                &reply,
            );
        }
        if verb == "HEAD" && path == "/" {
            return self.finish(StatusCode::OK, Vec::new(), &reply);
        }

        let (parts, mut incoming) = req.into_parts();
        // Held until the answer is ready: the body's bytes count against the shared budget.
        let (body, _budget) = match self.read_body(&parts.headers, &mut incoming).await {
            Ok(read) => read,
            Err(BodyError::Refused(e)) if e.id() == NETWORK_HTTP_REQUEST_TOO_LARGE.id => {
                // The rest of the body is read and dropped before the answer, so that a client
                // (or a proxy) still sending it gets the 413 rather than a reset connection.
                let drained = self.drain(&mut incoming).await;
                let status = e.status();
                let mut response =
                    self.finish_json(status, to_json_bytes(&e, reply.pretty), &reply);
                if !drained {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                return response;
            }
            Err(BodyError::Refused(e)) => {
                let status = e.status();
                return self.finish_json(status, to_json_bytes(&e, reply.pretty), &reply);
            }
            Err(BodyError::TimedOut(e)) => {
                let status = e.status();
                let mut response =
                    self.finish_json(status, to_json_bytes(&e, reply.pretty), &reply);
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        };

        if let (Some(metrics), true) = (&self.metrics, verb == "GET" && path == "/_metrics") {
            return self
                .metrics(metrics, &parts.headers, &query, &conn, &reply)
                .await;
        }
        let response = match (verb, path.as_str()) {
            ("GET", "/_healthcheck") => {
                Response::special(reply.request_id.clone(), 200, Value::Null)
            }
            ("GET", "/_ready") => {
                let status = if self.funnel.is_ready() { 200 } else { 503 };
                Response::special(reply.request_id.clone(), status, Value::Null)
            }
            ("POST", "/_query") => {
                let mut payload = body.unwrap_or_else(|| json!({}));
                // As on other routes: the last `?jwt=`, a bare `?jwt` being "".
                let query_jwt = || {
                    query
                        .iter()
                        .rev()
                        .find(|(k, _)| k == "jwt")
                        .map(|(_, v)| v.clone().unwrap_or_default())
                };
                if let (Value::Object(map), Some(jwt)) =
                    (&mut payload, bearer(&parts.headers).or_else(query_jwt))
                {
                    map.entry("jwt").or_insert(Value::String(jwt));
                }
                match Request::from_json(payload, Some(reply.request_id.clone())) {
                    Ok(request) => self.funnel.execute(request, &conn).await,
                    Err(e) => Response::bare_failure(e.request_id, e.error),
                }
            }
            _ => match build_request(
                &self.tree,
                verb,
                &parts,
                query,
                body,
                reply.request_id.clone(),
            ) {
                Ok(request) => self.funnel.execute(request, &conn).await,
                Err(error) => Response::bare_failure(reply.request_id.clone(), error),
            },
        };
        self.envelope(&response, &reply)
    }

    /// Reads, decodes and parses the body (`protocol.md` §7.3, steps 1–6), within the body deadline
    /// and the shared byte budget. The permit returned holds the body's share of the budget.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        incoming: &mut Incoming,
    ) -> Result<(Option<Value>, Option<OwnedSemaphorePermit>), BodyError> {
        let max = self.config.max_request_size;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared {
            body::check_size(usize::try_from(len).unwrap_or(usize::MAX), max)?;
        }
        let media = body::media_type(headers)?;
        let empty = declared == Some(0) || incoming.is_end_stream();
        // Raw bytes (the declared length, else the most a body may be), plus the decoded copy.
        let raw_share = declared.map_or(max, |len| usize::try_from(len).unwrap_or(max));
        let encoded = headers.contains_key(CONTENT_ENCODING);
        let mut raw: Vec<u8> = Vec::new();
        let mut budget = None;
        if !empty {
            let share = raw_share.saturating_add(if encoded { max } else { 0 });
            let permits = u32::try_from(kib(share)).unwrap_or(u32::MAX);
            budget = Some(
                Arc::clone(&self.body_budget)
                    .try_acquire_many_owned(permits)
                    .map_err(|_| {
                        tracing::warn!(
                            bytes = share,
                            "request body refused: the buffered body budget is used up"
                        );
                        KuzzleError::plain(&API_PROCESS_OVERLOADED)
                    })?,
            );
            raw.reserve(raw_share.min(64 * 1024));
            self.receive(incoming, &mut raw).await?;
        }
        let layers = self.config.max_encoding_layers;
        let decode = {
            let headers = headers.clone();
            move || -> Result<Option<Value>, KuzzleError> {
                let decoded = body::decode(&headers, raw, max, layers)?;
                body::parse(&decoded, media)
            }
        };
        // Inflating and parsing a large body run on a blocking thread, so they never hold up the
        // other connections of this worker.
        let value = if !empty && (encoded || raw_share > LARGE_BODY) {
            tokio::task::spawn_blocking(decode)
                .await
                .map_err(|_| KuzzleError::internal("body decoding"))??
        } else {
            decode()?
        };
        Ok((value, budget))
    }

    /// `GET /_metrics`: the text exposition; with [`Access::Token`], only for a token whose user may
    /// call `server:metrics` (the `Authorization` header or `?jwt=`).
    async fn metrics(
        &self,
        metrics: &Arc<dyn Exposition>,
        headers: &HeaderMap,
        query: &[(String, Option<String>)],
        conn: &Arc<ConnectionInfo>,
        reply: &Reply,
    ) -> hyper::Response<Full<Bytes>> {
        if metrics.access() == Access::Token {
            let jwt = bearer(headers).or_else(|| {
                query
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "jwt")
                    .map(|(_, v)| v.clone().unwrap_or_default())
            });
            let mut envelope = json!({"controller": "server", "action": "metrics"});
            if let Some(jwt) = jwt {
                envelope["jwt"] = Value::String(jwt);
            }
            let checked = match Request::from_json(envelope, Some(reply.request_id.clone())) {
                Ok(req) => self.funnel.check_access(&req, conn).await,
                Err(e) => Err(e.error),
            };
            if let Err(e) = checked {
                return self.finish_json(e.status(), to_json_bytes(&e, reply.pretty), reply);
            }
        }
        let mut response = self.finish(StatusCode::OK, metrics.render().await.into_bytes(), reply);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    /// Reads what is left of a refused body and drops it: at most [`DRAIN_MAX`] bytes, within the
    /// body timeout. True when the body ended (the connection can be kept).
    async fn drain(&self, incoming: &mut Incoming) -> bool {
        if incoming.is_end_stream() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + self.config.body_timeout;
        let mut dropped: usize = 0;
        loop {
            match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Ok(None) => return true,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        dropped = dropped.saturating_add(data.len());
                        if dropped > DRAIN_MAX {
                            return false;
                        }
                    }
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }

    /// Receives the body's bytes into `raw`, within the size limit and the body deadline.
    async fn receive(&self, incoming: &mut Incoming, raw: &mut Vec<u8>) -> Result<(), BodyError> {
        let max = self.config.max_request_size;
        let start = tokio::time::Instant::now();
        loop {
            let earned = match self.config.body_min_rate {
                0 => Duration::ZERO,
                rate => Duration::from_secs_f64(raw.len() as f64 / rate as f64),
            };
            let deadline = start + self.config.body_timeout + earned;
            let frame = match tokio::time::timeout_at(deadline, incoming.frame()).await {
                Err(_) => {
                    return Err(BodyError::TimedOut(KuzzleError::new(
                        &NETWORK_HTTP_UNEXPECTED_ERROR,
                        vec![json!("the request body did not arrive in time")],
                    )));
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(KuzzleError::new(
                        &NETWORK_HTTP_UNEXPECTED_ERROR,
                        vec![json!(e.to_string())],
                    )
                    .into());
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                body::check_size(raw.len().saturating_add(data.len()), max)?;
                raw.extend_from_slice(&data);
            }
        }
    }

    fn upgrade(
        &self,
        req: &mut hyper::Request<Incoming>,
        acceptor: Arc<dyn UpgradeAcceptor>,
        conn: Arc<ConnectionInfo>,
        reply: &Reply,
        guard: ConnectionGuard,
    ) -> hyper::Response<Full<Bytes>> {
        let headers = req.headers();
        let version_ok = headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        let key = headers
            .get(SEC_WEBSOCKET_KEY)
            .filter(|_| version_ok && req.method() == Method::GET);
        let Some(key) = key else {
            let e = KuzzleError::new(
                &NETWORK_HTTP_UNEXPECTED_ERROR,
                vec![json!("invalid WebSocket upgrade request")],
            );
            return self.envelope(&Response::bare_failure(reply.request_id.clone(), e), reply);
        };
        let accept = acceptor.accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(req);
        // Shared before the task: a task keeps its captures for the socket's whole life.
        let info = Arc::new(ConnectionInfo {
            id: new_request_id(),
            protocol: Protocol::WebSocket,
            peer: conn.peer,
            origin: conn.origin.clone(),
            token_links: Some(Arc::default()),
            // The upgrade's cookie authenticates the socket's requests, as in Kuzzle.
            cookie: conn.cookie.clone(),
        });
        self.shutdown.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => acceptor.serve(Box::new(TokioIo::new(upgraded)), info).await,
                Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
            }
            drop(guard);
        });
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        response
    }

    fn envelope(&self, response: &Response, reply: &Reply) -> hyper::Response<Full<Bytes>> {
        // `server:openapi` answers its document bare over HTTP (`routes.md` §1), so that OpenAPI
        // tools can read it from `/_openapi`; its errors keep the envelope.
        if response.error.is_none()
            && response.controller.as_deref() == Some("server")
            && response.action.as_deref() == Some("openapi")
        {
            let bytes = to_json_bytes(&response.result, reply.pretty);
            return self.finish_json(response.status, bytes, reply);
        }
        // A text result whose action set its `Content-Type` (`security:exportUsers`) is the body
        // itself, as Kuzzle streams `document:export`.
        let text_body = match &response.result {
            Payload::Value(Value::String(text))
                if response.error.is_none()
                    && response
                        .headers
                        .iter()
                        .any(|(name, _)| name.eq_ignore_ascii_case("content-type")) =>
            {
                Some(text.as_bytes().to_vec())
            }
            _ => None,
        };
        let text = text_body.is_some();
        let bytes = text_body.unwrap_or_else(|| {
            response.to_bytes(
                &self.node,
                Encoding {
                    room: false,
                    pretty: reply.pretty,
                },
            )
        });
        let mut answer = self.finish_json(response.status, bytes, reply);
        let h = answer.headers_mut();
        if text {
            h.remove(CONTENT_TYPE);
        }
        for (name, value) in &response.headers {
            // Headers come from actions, not from clients; one that is not a valid field is dropped.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.append(name, value);
            }
        }
        answer
    }

    fn finish_json(
        &self,
        status: u16,
        body: Vec<u8>,
        reply: &Reply,
    ) -> hyper::Response<Full<Bytes>> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.finish(status, body, reply)
    }

    /// Adds the standard headers (`protocol.md` §7.6) and compresses the body when negotiated.
    fn finish(
        &self,
        status: StatusCode,
        body: Vec<u8>,
        reply: &Reply,
    ) -> hyper::Response<Full<Bytes>> {
        let (body, encoding) = match compress(body, reply.encoding) {
            Ok(compressed) => compressed,
            Err(plain) => (plain, ContentEncoding::Identity),
        };
        let length = HeaderValue::from(body.len());
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let h = response.headers_mut();
        *h = self.headers.clone();
        h.insert(CONTENT_LENGTH, length);
        h.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(match encoding {
                ContentEncoding::Identity => "identity",
                ContentEncoding::Gzip => "gzip",
                ContentEncoding::Deflate => "deflate",
            }),
        );
        match HeaderValue::from_str(&reply.request_id) {
            Ok(v) => h.insert(X_KUZZLE_REQUEST_ID, v),
            Err(_) => h.remove(X_KUZZLE_REQUEST_ID),
        };
        if let Some(origin) = &reply.origin {
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(VARY, HeaderValue::from_static("Origin"));
        }
        if self.config.cookie_authentication {
            // With the request's own origin above, never `*`: browsers refuse credentials with it.
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response
    }

    /// Picks the response encoding from `Accept-Encoding` (`protocol.md` §7.7).
    fn negotiate(&self, headers: &HeaderMap) -> ContentEncoding {
        if !self.config.compression {
            return ContentEncoding::Identity;
        }
        let mut best = (ContentEncoding::Identity, 0.0_f32);
        for value in headers.get_all(ACCEPT_ENCODING) {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                    })
                    .unwrap_or(1.0);
                let candidate = match name.as_str() {
                    "gzip" => ContentEncoding::Gzip,
                    "deflate" => ContentEncoding::Deflate,
                    _ => continue,
                };
                let better =
                    q > best.1 || (q == best.1 && q > 0.0 && candidate == ContentEncoding::Gzip);
                if q > 0.0 && better {
                    best = (candidate, q);
                }
            }
        }
        best.0
    }
}

/// The `Cookie` fields of a request, joined by `; ` (RFC 9113 §8.2.3), as received; `None` without
/// one. Their size is bounded by the head limit; the gate refuses more than
/// [`tollgate_protocol::cookie::MAX_COOKIE_HEADER_BYTES`].
fn cookie_header(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut joined: Option<Vec<u8>> = None;
    for value in headers.get_all(COOKIE) {
        match &mut joined {
            None => joined = Some(value.as_bytes().to_vec()),
            Some(bytes) => {
                bytes.extend_from_slice(b"; ");
                bytes.extend_from_slice(value.as_bytes());
            }
        }
    }
    joined
}

/// Compresses; on failure gives the body back unchanged.
fn compress(
    body: Vec<u8>,
    encoding: ContentEncoding,
) -> Result<(Vec<u8>, ContentEncoding), Vec<u8>> {
    if body.is_empty() {
        return Ok((body, ContentEncoding::Identity));
    }
    let out = match encoding {
        ContentEncoding::Identity => return Ok((body, encoding)),
        ContentEncoding::Gzip => {
            let mut e =
                GzEncoder::new(Vec::with_capacity(body.len() / 2 + 32), Compression::fast());
            e.write_all(&body).and_then(|_| e.finish())
        }
        ContentEncoding::Deflate => {
            let mut e =
                ZlibEncoder::new(Vec::with_capacity(body.len() / 2 + 32), Compression::fast());
            e.write_all(&body).and_then(|_| e.finish())
        }
    };
    match out {
        Ok(compressed) => Ok((compressed, encoding)),
        Err(_) => Err(body),
    }
}

/// Approximate size of the request head as received: request line and header lines.
/// Builds the envelope of a routed request (`protocol.md` §7.2) from its verb, head, query pairs and
/// parsed body. Pure: no I/O, so it is also the entry point of the HTTP fuzz target.
pub fn build_request(
    tree: &RouteTree,
    verb: &str,
    parts: &http::request::Parts,
    query: Vec<(String, Option<String>)>,
    body: Option<Value>,
    request_id: String,
) -> Result<Request, KuzzleError> {
    let raw_path = parts.uri.path();
    let (target, placeholders) = tree.find(verb, raw_path).map_err(|e| match e {
        RouteError::NotFound => {
            KuzzleError::new(&NETWORK_HTTP_URL_NOT_FOUND, vec![json!(raw_path)])
        }
        RouteError::BadEncoding => KuzzleError::new(
            &NETWORK_HTTP_UNEXPECTED_ERROR,
            vec![json!("invalid percent-encoding in URL path")],
        ),
    })?;
    let mut request = Request::from_http(
        target.controller,
        target.action,
        query,
        placeholders,
        request_id,
    );
    if let Some(jwt) = bearer(&parts.headers) {
        request.jwt = Some(jwt);
    }
    if let Some(raw) = parts.headers.get(X_KUZZLE_VOLATILE) {
        match serde_json::from_slice::<Value>(raw.as_bytes()) {
            Ok(Value::Object(map)) => request.volatile = Some(Value::Object(map)),
            Ok(Value::Null) => {}
            Ok(_) => return Err(KuzzleError::invalid_type("volatile", "object")),
            Err(e) => {
                return Err(KuzzleError::new(
                    &NETWORK_HTTP_VOLATILE_PARSE_FAILED,
                    vec![json!(e.to_string())],
                ));
            }
        }
    }
    match body {
        None => {}
        Some(Value::Object(map)) => request.body = Some(map),
        Some(_) => return Err(KuzzleError::invalid_type("body", "object")),
    }
    Ok(request)
}

/// The headers every answer carries (`protocol.md` §7.6), in the order they are sent; the length,
/// encoding and request id hold placeholders that [`HttpFrontend::finish`] replaces in place.
fn standard_headers(config: &HttpConfig, node: &str) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(12);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
    h.insert(X_KUZZLE_REQUEST_ID, HeaderValue::from_static(""));
    if let Ok(v) = HeaderValue::from_str(node) {
        h.insert(X_KUZZLE_NODE, v);
    }
    h.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(if config.compression {
            "gzip,deflate,identity"
        } else {
            "identity"
        }),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h
}

fn head_size<B>(req: &hyper::Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .fold(line, |acc, (k, v)| acc + k.as_str().len() + v.len() + 4)
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    let connection = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    upgrade && connection
}

/// The client's address: the peer's, unless the peer is a trusted proxy, in which case the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left could be forged by
/// the client).
fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let forwarded = headers
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return SocketAddr::new(ip, 0),
            Err(_) => break,
        }
    }
    peer
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, token trimmed).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `/a//b/` → `/a/b`; used for the special endpoints.
fn normalized_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Splits a query string into (name, value) pairs with form decoding; a bare `?x` has no value.
pub fn parse_query(query: &str) -> Vec<(String, Option<String>)> {
    fn decode(s: &str) -> String {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8_lossy()
            .into_owned()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(pair), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_keep_bare_flags() {
        assert_eq!(
            parse_query("force&refresh=wait_for&a+b=c%20d&&x="),
            vec![
                ("force".to_owned(), None),
                ("refresh".to_owned(), Some("wait_for".to_owned())),
                ("a b".to_owned(), Some("c d".to_owned())),
                ("x".to_owned(), Some(String::new())),
            ]
        );
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR  tok "));
        assert_eq!(bearer(&h), Some("tok".to_owned()));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn forwarded_client_addresses_only_from_trusted_proxies() {
        let proxy: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 9.9.9.9, 10.0.0.2"),
        );
        let trusted: Vec<IpAddr> = vec![[10, 0, 0, 1].into(), [10, 0, 0, 2].into()];
        assert_eq!(
            client_addr(proxy, &h, &trusted).ip(),
            IpAddr::from([9, 9, 9, 9])
        );
        assert_eq!(client_addr(proxy, &h, &[]), proxy);
        let other: SocketAddr = ([8, 8, 8, 8], 1).into();
        assert_eq!(client_addr(other, &h, &trusted), other);
        assert_eq!(client_addr(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalized_path("//_query/"), "/_query");
        assert_eq!(normalized_path("/"), "/");
        assert_eq!(normalized_path(""), "/");
    }
}
