//! Tollgate's WebSocket front-end (`shared/spec/protocol.md` §6).
//!
//! The HTTP front-end answers the upgrade handshake and hands the raw connection to [`WsFrontend`]
//! (an [`UpgradeAcceptor`]). Each socket then runs two tasks:
//!
//! - a **reader** that decodes one JSON request per text or binary message, answers the application
//!   heartbeat `{"p":1}`, enforces the idle timeout and the per-socket message rate, and spawns one task
//!   per request into the [`Funnel`] (at most `max_in_flight` at once: past that the reader stops
//!   reading, and TCP pushes back on the client);
//! - a **writer** that drains a bounded queue of outgoing frames. A client too slow to read fills the
//!   queue and is disconnected with close code 1011, so memory per socket stays bounded.
//!
//! RFC 6455 pings are answered by tungstenite itself while reading.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken as CancelFlag;
use tollgate_core::{BoxedIo, ConnectionInfo, Funnel, Shutdown, UpgradeAcceptor};
use tollgate_protocol::errors::{
    NETWORK_WEBSOCKET_RATELIMIT_EXCEEDED, NETWORK_WEBSOCKET_UNEXPECTED_ERROR,
};
use tollgate_protocol::{Encoding, Envelope, KuzzleError, Request, Response, new_request_id};

/// Limits of the WebSocket front-end. Every one is configuration.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message (and frame) accepted, in bytes; larger closes the socket with 1009.
    pub max_message_size: usize,
    /// A socket that received nothing for this long is closed (1000, `idle timeout`).
    pub idle_timeout: Duration,
    /// Outgoing messages that may wait on one socket before it is closed (1011).
    pub max_queued_messages: usize,
    /// Requests of one socket running at once; past that the socket is not read.
    pub max_in_flight: usize,
    /// Messages per second accepted from one socket; 0 disables the limit.
    pub rate_limit: u32,
    /// tungstenite's read buffer per socket.
    pub read_buffer_size: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_queued_messages: 50,
            max_in_flight: 50,
            rate_limit: 0,
            read_buffer_size: 4096,
        }
    }
}

impl WsConfig {
    fn tungstenite(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(0)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// The WebSocket front-end: accepts upgraded connections and serves them.
#[derive(Clone)]
pub struct WsFrontend {
    inner: Arc<Inner>,
}

struct Inner {
    funnel: Arc<Funnel>,
    config: WsConfig,
    node: Arc<str>,
    shutdown: Shutdown,
}

impl std::fmt::Debug for WsFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsFrontend")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl WsFrontend {
    pub fn new(funnel: Arc<Funnel>, config: WsConfig, node: Arc<str>, shutdown: Shutdown) -> Self {
        Self {
            inner: Arc::new(Inner {
                funnel,
                config,
                node,
                shutdown,
            }),
        }
    }
}

impl UpgradeAcceptor for WsFrontend {
    fn accept_key(&self, key: &[u8]) -> String {
        derive_accept_key(key)
    }

    fn serve(
        &self,
        io: BoxedIo,
        conn: ConnectionInfo,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let _counted = inner.funnel.observer().map(|o| {
                tollgate_core::observe::Counted::new(
                    Arc::clone(o),
                    tollgate_core::Protocol::WebSocket,
                )
            });
            let ws = WebSocketStream::from_raw_socket(
                io,
                Role::Server,
                Some(inner.config.tungstenite()),
            )
            .await;
            let (sink, stream) = ws.split();
            run_socket(inner, sink, stream, Arc::new(conn)).await;
        })
    }
}

/// What the writer task sends.
enum Outgoing {
    Frame(Message),
    Close(CloseCode, &'static str),
}

/// The per-socket queue of outgoing frames. A full queue means the client does not read fast
/// enough: the socket is flagged for closing (1011).
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    overflow: CancelFlag,
}

/// How long a full queue may stay full before its client counts as too slow. A burst of answers can
/// fill the queue before the writer task gets to run; a client that reads empties it within this time.
const FULL_QUEUE_GRACE: Duration = Duration::from_secs(1);

impl Outbox {
    /// Queues one frame, waiting at most [`FULL_QUEUE_GRACE`] for room; past that the socket is
    /// flagged for closing (1011).
    async fn push(&self, text: String) {
        let frame = Outgoing::Frame(Message::Text(Utf8Bytes::from(text)));
        let frame = match self.tx.try_send(frame) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
            // The socket is gone: nobody is left to answer.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        if tokio::time::timeout(FULL_QUEUE_GRACE, self.tx.send(frame))
            .await
            .is_err()
        {
            self.overflow.cancel();
        }
    }
}

async fn run_socket<S, R>(inner: Arc<Inner>, sink: S, mut stream: R, conn: Arc<ConnectionInfo>)
where
    S: Sink<Message, Error = WsError> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, WsError>> + Send + Unpin,
{
    let config = &inner.config;
    let (tx, rx) = mpsc::channel(config.max_queued_messages.max(1));
    let overflow = CancelFlag::default();
    let outbox = Outbox {
        tx: tx.clone(),
        overflow: overflow.clone(),
    };
    let writer = tokio::spawn(write_loop(sink, rx, overflow.clone()));
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut window = RateWindow::new(config.rate_limit);
    let idle = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle);
    // Futures that outlive one message are created once, not per message.
    let overflowed = overflow.cancelled();
    tokio::pin!(overflowed);
    let stopping = inner.shutdown.triggered();
    tokio::pin!(stopping);
    let links = conn.token_links.clone();
    let mut links_changed = Box::pin(token_linked(links.clone()));
    let expiry = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(expiry);

    let close: Option<(CloseCode, &'static str)> = loop {
        let next = tokio::select! {
            biased;
            _ = &mut overflowed => break None,
            _ = &mut stopping => break Some((CloseCode::Away, "server shutting down")),
            _ = &mut idle => break Some((CloseCode::Normal, "idle timeout")),
            _ = &mut expiry => {
                let expired = links.as_ref().map_or(0, |l| l.take_expired(epoch_ms()));
                for _ in 0..expired {
                    outbox.push(token_expired(&inner.node)).await;
                }
                expiry.as_mut().reset(next_expiry(links.as_deref()));
                continue;
            }
            _ = &mut links_changed => {
                links_changed.set(token_linked(links.clone()));
                expiry.as_mut().reset(next_expiry(links.as_deref()));
                continue;
            }
            next = stream.next() => next,
        };
        let message = match next {
            None => break None,
            Some(Ok(message)) => message,
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                break Some((CloseCode::Size, "message too big"));
            }
            Some(Err(error)) => {
                tracing::debug!(connection = %conn.id, %error, "websocket read failed");
                break None;
            }
        };
        idle.as_mut().reset(Instant::now() + config.idle_timeout);
        let payload: Bytes = match message {
            Message::Text(text) => text.into(),
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break None,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if payload.is_empty() {
            continue;
        }
        // Wait for a request slot of this socket before reading further.
        let permit = tokio::select! {
            biased;
            _ = &mut overflowed => break None,
            _ = &mut stopping => break Some((CloseCode::Away, "server shutting down")),
            permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break None,
            },
        };
        // A large message is parsed on a blocking thread, so its parsing never holds up the other
        // sockets of this worker.
        let decoded = if payload.len() > LARGE_MESSAGE {
            match tokio::task::spawn_blocking(move || parse(&payload)).await {
                Ok(parsed) => parsed.map_or_else(
                    |reason| Decoded::Reply(unexpected(reason)),
                    |v| admit(v, &mut window),
                ),
                Err(_) => Decoded::Reply(unexpected("message parsing failed".to_owned())),
            }
        } else {
            decode(&payload, &mut window)
        };
        match decoded {
            Decoded::Heartbeat => outbox.push(r#"{"p":2}"#.to_owned()).await,
            Decoded::Reply(response) => outbox.push(response.to_text(&inner.node, ROOM)).await,
            Decoded::Request(req) => {
                let (task_inner, task_conn) = (Arc::clone(&inner), Arc::clone(&conn));
                let mut run =
                    Box::pin(async move { task_inner.funnel.execute(req, &task_conn).await });
                // Most requests (cached reads) complete without waiting: answer those here, and
                // hand only the ones that wait (storage, admission) to a task of their own, so a slow
                // request never holds up the socket.
                let polled = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
                match polled {
                    Poll::Ready(response) => {
                        outbox.push(response.to_text(&inner.node, ROOM)).await;
                        drop(permit);
                    }
                    Poll::Pending => {
                        let node = Arc::clone(&inner.node);
                        let outbox = outbox.clone();
                        tokio::spawn(async move {
                            let response = run.await;
                            outbox.push(response.to_text(&node, ROOM)).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
    };

    if let Some((code, reason)) = close {
        if code == CloseCode::Away {
            // Let the requests of this socket finish before saying goodbye.
            let all = u32::try_from(config.max_in_flight.max(1)).unwrap_or(u32::MAX);
            let _ = in_flight.acquire_many(all).await;
        }
        // The queue may be full; the writer is then closing the socket anyway.
        let _ = tx.try_send(Outgoing::Close(code, reason));
    } else if overflow.is_cancelled() {
        tracing::info!(connection = %conn.id, "closing a websocket whose client is too slow to read");
    }
    drop(tx);
    drop(outbox);
    let _ = writer.await;
    // Lingering close: once the last frames and the close frame are written, read and discard what
    // the client still sends until it closes too, for a bounded time. Closing a socket with unread
    // bytes makes the kernel reset the connection, and the client would lose the frames still in
    // flight, close frame included. (Not while the writer works: a client that does not read must
    // not be able to keep sending.)
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

/// How long a closing socket keeps reading (and discarding) after its last frame was written.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Resolves when a token is linked to the socket; never on a socket without token links.
async fn token_linked(links: Option<Arc<tollgate_core::TokenLinks>>) {
    match links {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}

/// When the earliest token linked to the socket expires (far in the future when there is none).
fn next_expiry(links: Option<&tollgate_core::TokenLinks>) -> Instant {
    match links.and_then(|l| l.next_expiry()) {
        Some(at) => Instant::now() + Duration::from_millis(at.saturating_sub(epoch_ms())),
        None => Instant::now() + Duration::from_secs(365 * 24 * 3600),
    }
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The server notification sent when a token used on the socket expires (`protocol.md` §6).
fn token_expired(node: &str) -> String {
    json!({
        "status": 200,
        "info": "This is an automated server notification",
        "message": "Authentication Token Expired",
        "type": "TokenExpired",
        "node": node,
        "room": "kuzzle:notification:server",
    })
    .to_string()
}

const ROOM: Encoding = Encoding {
    room: true,
    pretty: false,
};

async fn write_loop<S>(mut sink: S, mut rx: mpsc::Receiver<Outgoing>, overflow: CancelFlag)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    const CLOSE_GRACE: Duration = Duration::from_secs(1);
    // A client that stopped reading gets longer to take its pending frames and the close frame.
    const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(5);
    let overflowed = overflow.cancelled();
    tokio::pin!(overflowed);
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut overflowed => None,
            next = rx.recv() => next,
        };
        let Some(out) = next else { break };
        match out {
            Outgoing::Frame(message) => {
                let sent = tokio::select! {
                    biased;
                    _ = &mut overflowed => break,
                    sent = sink.send(message) => sent,
                };
                if sent.is_err() {
                    return;
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ =
                    tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
                return;
            }
        }
    }
    if overflow.is_cancelled() {
        let frame = CloseFrame {
            code: CloseCode::Error,
            reason: "too much backpressure: client is too slow".into(),
        };
        let _ =
            tokio::time::timeout(SLOW_CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
    } else {
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    }
}

/// Fixed one-second window of the per-socket message rate.
struct RateWindow {
    limit: u32,
    start: Instant,
    count: u32,
}

impl RateWindow {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            start: Instant::now(),
            count: 0,
        }
    }

    fn allow(&mut self) -> bool {
        if self.limit == 0 {
            return true;
        }
        let now = Instant::now();
        if now.duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= self.limit
    }
}

enum Decoded {
    Heartbeat,
    Reply(Response),
    Request(Request),
}

/// Messages larger than this (bytes) are parsed on a blocking thread.
const LARGE_MESSAGE: usize = 64 * 1024;

/// Turns one message into a request, or into the reply it gets without reaching the Funnel.
fn decode(payload: &[u8], window: &mut RateWindow) -> Decoded {
    match parse(payload) {
        Ok(value) => admit(value, window),
        Err(reason) => Decoded::Reply(unexpected(reason)),
    }
}

/// UTF-8 and JSON: the message's envelope, or why it is not one.
fn parse(payload: &[u8]) -> Result<Envelope, String> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("invalid UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// A parsed message: a heartbeat, a request, or the reply it gets (rate limit, bad envelope).
fn admit(envelope: Envelope, window: &mut RateWindow) -> Decoded {
    if envelope.sole_argument() == Some(("p", &json!(1))) {
        return Decoded::Heartbeat;
    }
    if !window.allow() {
        let request_id = envelope
            .request_id()
            .map_or_else(new_request_id, str::to_owned);
        return Decoded::Reply(Response::bare_failure(
            request_id,
            KuzzleError::plain(&NETWORK_WEBSOCKET_RATELIMIT_EXCEEDED),
        ));
    }
    match Request::from_envelope(envelope, None) {
        Ok(req) => Decoded::Request(req),
        Err(e) => Decoded::Reply(Response::bare_failure(e.request_id, e.error)),
    }
}

fn unexpected(reason: String) -> Response {
    Response::bare_failure(
        new_request_id(),
        KuzzleError::new(
            &NETWORK_WEBSOCKET_UNEXPECTED_ERROR,
            vec![Value::String(reason)],
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_id(d: Decoded) -> Option<&'static str> {
        match d {
            Decoded::Reply(r) => r.error.map(|e| e.id()),
            _ => None,
        }
    }

    #[test]
    fn decode_recognizes_only_the_exact_heartbeat() {
        let mut w = RateWindow::new(0);
        assert!(matches!(decode(br#"{"p":1}"#, &mut w), Decoded::Heartbeat));
        assert!(matches!(
            decode(br#"{"p":1,"x":2}"#, &mut w),
            Decoded::Request(_)
        ));
        assert!(matches!(decode(br#"{"p":2}"#, &mut w), Decoded::Request(_)));
    }

    #[test]
    fn decode_answers_bad_payloads() {
        let mut w = RateWindow::new(0);
        assert_eq!(
            reply_id(decode(b"{bad", &mut w)),
            Some("network.websocket.unexpected_error")
        );
        assert_eq!(
            reply_id(decode(&[0xff, 0xfe], &mut w)),
            Some("network.websocket.unexpected_error")
        );
        assert_eq!(
            reply_id(decode(b"[1]", &mut w)),
            Some("api.assert.invalid_type")
        );
        assert_eq!(
            reply_id(decode(b"null", &mut w)),
            Some("api.assert.invalid_type")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_window_resets_each_second() {
        let mut w = RateWindow::new(2);
        assert!(w.allow());
        assert!(w.allow());
        assert!(!w.allow());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(w.allow());
    }

    #[test]
    fn decode_applies_the_socket_rate() {
        let mut w = RateWindow::new(1);
        assert!(matches!(
            decode(br#"{"controller":"a","action":"b"}"#, &mut w),
            Decoded::Request(_)
        ));
        match decode(br#"{"requestId":"r7"}"#, &mut w) {
            Decoded::Reply(r) => {
                assert_eq!(r.request_id, "r7");
                assert_eq!(r.status, 429);
            }
            _ => panic!("not rate limited"),
        }
    }
}
