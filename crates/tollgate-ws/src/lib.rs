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
//! An answer skips the queue when nothing is queued before it and the socket takes it at once: the
//! task that made it writes it (`write_now`), which saves the writer task's wake-up on every cached
//! read.
//!
//! RFC 6455 pings are answered by tungstenite itself while reading.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
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
        conn: Arc<ConnectionInfo>,
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
            run_socket(inner, sink, stream, conn).await;
        })
    }
}

/// What the writer task sends.
enum Outgoing {
    Frame(Message),
    /// A frame written by `write_now` is still partly in the sink's buffer: write it out.
    Flush,
    Close(CloseCode, &'static str),
}

/// The per-socket queue of outgoing frames. A full queue means the client does not read fast
/// enough: the socket is flagged for closing (1011).
///
/// The queue (flume's bounded channel) allocates nothing until a frame waits in it, so an idle socket
/// costs no queue memory; past a burst it keeps room for at most `max_queued_messages` frames.
#[derive(Clone)]
struct Outbox {
    tx: flume::Sender<Outgoing>,
    overflow: CancelFlag,
}

/// How long a full queue may stay full before its client counts as too slow. A burst of answers can
/// fill the queue before the writer task gets to run; a client that reads empties it within this time.
const FULL_QUEUE_GRACE: Duration = Duration::from_secs(1);

impl Outbox {
    /// Queues one frame, waiting at most [`FULL_QUEUE_GRACE`] for room; past that the socket is
    /// flagged for closing (1011). The frame is queued when this is called; the future only waits
    /// for room, if there was none. That wait is boxed: it is rare, and its timer would otherwise
    /// take room in the state of every socket's reader, idle or not.
    fn push(&self, message: Message) -> impl Future<Output = ()> + Send + '_ {
        let frame = Outgoing::Frame(message);
        let waiting = match self.tx.try_send(frame) {
            Err(flume::TrySendError::Full(frame)) => Some(Box::pin(self.wait_for_room(frame))),
            // Queued, or the socket is gone and nobody is left to answer.
            Ok(()) | Err(flume::TrySendError::Disconnected(_)) => None,
        };
        async move {
            if let Some(waiting) = waiting {
                waiting.await;
            }
        }
    }

    async fn wait_for_room(&self, frame: Outgoing) {
        if tokio::time::timeout(FULL_QUEUE_GRACE, self.tx.send_async(frame))
            .await
            .is_err()
        {
            self.overflow.cancel();
        }
    }
}

/// Serves one socket until it closes.
///
/// Its state is what an idle socket costs the server, so it is kept small: one timer for both the idle
/// timeout and the expiry of linked tokens, answers turned into text before they wait for the queue,
/// and rare waits boxed. (A plain function returning an `async move` block: an `async fn` would hold
/// its arguments twice.)
fn run_socket<S, R>(
    inner: Arc<Inner>,
    sink: S,
    mut stream: R,
    conn: Arc<ConnectionInfo>,
) -> impl Future<Output = ()> + Send
where
    S: Sink<Message, Error = WsError> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, WsError>> + Send + Unpin,
{
    let (tx, rx) = flume::bounded(inner.config.max_queued_messages.max(1));
    let overflow = CancelFlag::default();
    // The reader writes its own answers when the writer is idle (see `write_now`); the writer task
    // writes everything else, and whatever cannot be written at once.
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    let writer = tokio::spawn(write_loop(Arc::clone(&sink), rx, overflow.clone()));
    async move {
        let config = &inner.config;
        let outbox = Outbox {
            tx,
            overflow: overflow.clone(),
        };
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        // The timers and waits of the reading loop live in this block only: they are dropped before
        // the closing steps below, which then do not add their own room to every socket's state.
        let close: Option<(CloseCode, &'static str)> = {
            let mut window = RateWindow::new(config.rate_limit);
            // One timer, due at the earlier of the idle deadline and the next token expiry. A message
            // only moves the idle deadline; the timer is moved when it fires early.
            let mut idle_at = Instant::now() + config.idle_timeout;
            let links = conn.token_links.clone();
            let mut expiry_at = next_expiry(links.as_deref());
            let timer = tokio::time::sleep_until(idle_at.min(expiry_at));
            tokio::pin!(timer);
            // Futures that outlive one message are created once, not per message.
            let overflowed = overflow.cancelled();
            tokio::pin!(overflowed);
            let stopping = inner.shutdown.triggered();
            tokio::pin!(stopping);
            let mut links_changed = Box::pin(token_linked(links.clone()));
            loop {
                // The message's frame and the stream's item end with this block: only the payload
                // stays in the reader's state.
                let payload: Bytes = {
                    let next = tokio::select! {
                        biased;
                        _ = &mut overflowed => break None,
                        _ = &mut stopping => break Some((CloseCode::Away, "server shutting down")),
                        _ = &mut timer => {
                            let now = Instant::now();
                            if now >= idle_at {
                                break Some((CloseCode::Normal, "idle timeout"));
                            }
                            if now >= expiry_at {
                                let expired = links.as_ref().map_or(0, |l| l.take_expired(epoch_ms()));
                                for _ in 0..expired {
                                    answer(&sink, &outbox, token_expired(&inner.node)).await;
                                }
                                expiry_at = next_expiry(links.as_deref());
                            }
                            timer.as_mut().reset(idle_at.min(expiry_at));
                            continue;
                        }
                        _ = &mut links_changed => {
                            links_changed.set(token_linked(links.clone()));
                            expiry_at = next_expiry(links.as_deref());
                            timer.as_mut().reset(idle_at.min(expiry_at));
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
                    idle_at = Instant::now() + config.idle_timeout;
                    match message {
                        Message::Text(text) => text.into(),
                        Message::Binary(bytes) => bytes,
                        Message::Close(_) => break None,
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    }
                };
                if payload.is_empty() {
                    continue;
                }
                // Wait for a request slot of this socket before reading further.
                let permit = match Arc::clone(&in_flight).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        let acquire = Box::pin(Arc::clone(&in_flight).acquire_owned());
                        tokio::select! {
                            biased;
                            _ = &mut overflowed => break None,
                            _ = &mut stopping => break Some((CloseCode::Away, "server shutting down")),
                            permit = acquire => match permit {
                                Ok(permit) => permit,
                                Err(_) => break None,
                            },
                        }
                    }
                };
                // A large message is parsed on a blocking thread, so its parsing never holds up the
                // other sockets of this worker.
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
                // Only the answer's text waits for the queue, not the request or the response.
                let text = match prepare(decoded, &inner, &conn) {
                    Step::Answer(text) => text,
                    Step::Run(mut run) => {
                        // Most requests (cached reads) complete without waiting: answer those here,
                        // and hand only the ones that wait (storage, admission) to a task of their
                        // own, so a slow request never holds up the socket.
                        let node = &inner.node;
                        let answered = std::future::poll_fn(|cx| {
                            Poll::Ready(match run.as_mut().poll(cx) {
                                Poll::Ready(response) => Some(response.to_text(node, ROOM)),
                                Poll::Pending => None,
                            })
                        })
                        .await;
                        match answered {
                            Some(text) => text,
                            None => {
                                let node = Arc::clone(&inner.node);
                                let outbox = outbox.clone();
                                let sink = Arc::clone(&sink);
                                tokio::spawn(async move {
                                    let text = run.await.to_text(&node, ROOM);
                                    answer(&sink, &outbox, text).await;
                                    drop(permit);
                                });
                                continue;
                            }
                        }
                    }
                };
                answer(&sink, &outbox, text).await;
                drop(permit);
            }
        };
        // The closing steps are rare: boxed, they take no room in the state of a socket that reads.
        Box::pin(close_socket(
            close,
            config,
            in_flight,
            outbox,
            overflow,
            writer,
            &conn,
            &mut stream,
        ))
        .await;
    }
}

/// What the reader does with a decoded message: write an answer, or run a request.
enum Step {
    Answer(String),
    Run(Pin<Box<dyn Future<Output = Response> + Send>>),
}

/// Turns a decoded message into its [`Step`], without waiting: the decoded request does not take
/// room in the reader's state across its waits.
fn prepare(decoded: Decoded, inner: &Arc<Inner>, conn: &Arc<ConnectionInfo>) -> Step {
    match decoded {
        Decoded::Heartbeat => Step::Answer(r#"{"p":2}"#.to_owned()),
        Decoded::Reply(response) => Step::Answer(response.to_text(&inner.node, ROOM)),
        Decoded::Request(req) => {
            let (inner, conn) = (Arc::clone(inner), Arc::clone(conn));
            Step::Run(Box::pin(
                async move { inner.funnel.execute(req, &conn).await },
            ))
        }
    }
}

/// Sends one answer: written at once by the calling task when nothing waits before it and the
/// socket takes it (no hand-off to the writer task), queued otherwise. Only the queueing can wait.
fn answer<'a, S>(
    sink: &'a tokio::sync::Mutex<S>,
    outbox: &'a Outbox,
    text: String,
) -> impl Future<Output = ()> + Send + 'a
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let unsent = write_now(sink, outbox, Message::Text(Utf8Bytes::from(text)));
    let queued = unsent.map(|message| outbox.push(message));
    async move {
        if let Some(queued) = queued {
            queued.await;
        }
    }
}

/// Writes one frame on the calling task, without waiting: only when no frame is queued before it
/// and the writer task is not writing, and only as far as the socket takes it at once. Gives the
/// frame back when it must be queued instead. A frame the socket took only in part stays in the
/// sink's buffer and the writer is told to finish it ([`Outgoing::Flush`]); the queue's rule for slow
/// clients then applies as to any frame.
///
/// Nothing waits on this write, so no task is woken for it: whatever the socket does not take at
/// once goes to the writer task, which polls the sink with its own waker.
fn write_now<S>(sink: &tokio::sync::Mutex<S>, outbox: &Outbox, message: Message) -> Option<Message>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let cx = &mut cx;
    if !outbox.tx.is_empty() {
        return Some(message);
    }
    let Ok(mut sink) = sink.try_lock() else {
        return Some(message);
    };
    match Pin::new(&mut *sink).poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        // The socket is broken: the reader sees it on its next read.
        Poll::Ready(Err(_)) => return None,
        Poll::Pending => return Some(message),
    }
    if Pin::new(&mut *sink).start_send(message).is_err() {
        return None;
    }
    if Pin::new(&mut *sink).poll_flush(cx).is_pending() {
        // A full queue has frames the writer flushes with; a closed one has nobody left to read.
        let _ = outbox.tx.try_send(Outgoing::Flush);
    }
    None
}

/// The closing steps of a socket: let its requests finish if the server stops, queue the close
/// frame, wait for the writer, then linger.
#[allow(clippy::too_many_arguments)]
async fn close_socket<R>(
    close: Option<(CloseCode, &'static str)>,
    config: &WsConfig,
    in_flight: Arc<Semaphore>,
    outbox: Outbox,
    overflow: CancelFlag,
    writer: tokio::task::JoinHandle<()>,
    conn: &ConnectionInfo,
    stream: &mut R,
) where
    R: Stream<Item = Result<Message, WsError>> + Send + Unpin,
{
    if let Some((code, reason)) = close {
        if code == CloseCode::Away {
            // Let the requests of this socket finish before saying goodbye.
            let all = u32::try_from(config.max_in_flight.max(1)).unwrap_or(u32::MAX);
            let _ = in_flight.acquire_many(all).await;
        }
        // The queue may be full; the writer is then closing the socket anyway.
        let _ = outbox.tx.try_send(Outgoing::Close(code, reason));
    } else if overflow.is_cancelled() {
        tracing::info!(connection = %conn.id, "closing a websocket whose client is too slow to read");
    }
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

/// How the writer's loop ended.
enum WriterEnd {
    /// Every sender is gone and the queue is empty.
    Drained,
    /// The client is too slow to read (1011).
    Overflow,
    /// The reader asked for this close frame.
    Close(CloseCode, &'static str),
}

/// The writer task of a socket: writes the queued frames in order, then the close frame.
/// (A plain function returning an `async move` block: an `async fn` would hold its arguments twice.
/// The task's state is part of what an idle socket costs: what only closing needs is boxed.)
#[allow(clippy::manual_async_fn)]
fn write_loop<S>(
    sink: Arc<tokio::sync::Mutex<S>>,
    rx: flume::Receiver<Outgoing>,
    overflow: CancelFlag,
) -> impl Future<Output = ()> + Send
where
    S: Sink<Message, Error = WsError> + Send + Unpin + 'static,
{
    async move {
        let overflowed = overflow.cancelled_owned();
        tokio::pin!(overflowed);
        let end = loop {
            let message = {
                let next = tokio::select! {
                    biased;
                    _ = &mut overflowed => break WriterEnd::Overflow,
                    next = rx.recv_async() => next,
                };
                match next {
                    Ok(Outgoing::Frame(message)) => Some(message),
                    Ok(Outgoing::Flush) => None,
                    Ok(Outgoing::Close(code, reason)) => break WriterEnd::Close(code, reason),
                    Err(_) => break WriterEnd::Drained,
                }
            };
            // The reader holds the sink only for a write that does not wait.
            let mut sink = match sink.try_lock() {
                Ok(sink) => sink,
                Err(_) => Box::pin(sink.lock()).await,
            };
            let written = tokio::select! {
                biased;
                _ = &mut overflowed => break WriterEnd::Overflow,
                written = async {
                    match message {
                        Some(message) => sink.send(message).await,
                        None => sink.flush().await,
                    }
                } => written,
            };
            if written.is_err() {
                return;
            }
        };
        Box::pin(async move {
            let mut sink = sink.lock().await;
            match end {
                WriterEnd::Close(code, reason) => send_close(&mut *sink, code, reason.into()).await,
                WriterEnd::Overflow => {
                    let reason = "too much backpressure: client is too slow".into();
                    send_close(&mut *sink, CloseCode::Error, reason).await;
                }
                WriterEnd::Drained => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
                }
            }
        })
        .await;
    }
}

/// How long the close frame may take to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The same for a client that stopped reading: it gets longer to take its pending frames and the
/// close frame.
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Writes the close frame, within [`CLOSE_GRACE`] (or [`SLOW_CLOSE_GRACE`] for a slow client).
async fn send_close<S>(sink: &mut S, code: CloseCode, reason: Utf8Bytes)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let grace = if code == CloseCode::Error {
        SLOW_CLOSE_GRACE
    } else {
        CLOSE_GRACE
    };
    let frame = CloseFrame { code, reason };
    let _ = tokio::time::timeout(grace, sink.send(Message::Close(Some(frame)))).await;
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
