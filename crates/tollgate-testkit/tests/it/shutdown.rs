//! Graceful shutdown under load: every request the server accepted gets its whole answer before the
//! server reports the drain complete, no answer is ever cut, and new connections are refused once
//! the drain started. Every wait is on an observable state (requests held by `test:hold`, the wait
//! buffer reported full by `/_ready`, refused connections, answers counted), never a sleep.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tollgate_core::Controller;
use tollgate_testkit::{
    Hold, HttpConn, TIMEOUT, TestServer, frames_until_close, http_once, wait_refusing_connections,
    wait_until,
};

#[track_caller]
fn assert_shutting_down(r: &Value) {
    assert_eq!(r["status"], 503, "{r}");
    assert_eq!(r["error"]["id"], "api.process.shutting_down", "{r}");
    assert_eq!(r["result"], Value::Null, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_accepted_request_over_http_and_ws() {
    const RUNNING: usize = 20;
    const QUEUED: usize = 40;
    let hold = Hold::new();
    let mut s = TestServer::start_with(
        |c| {
            c.limits.concurrent_requests = RUNNING;
            c.limits.requests_buffer_size = QUEUED;
            // Long enough never to be what ends the drain here.
            c.server.shutdown_grace_ms = 60_000;
        },
        vec![Arc::clone(&hold) as Arc<dyn Controller>],
    )
    .await;
    let addr = s.addr;
    let ready = || async move { http_once(addr, "GET", "/_ready", &[], b"").await.status };

    // Idle connections: a keep-alive HTTP connection between requests, a WebSocket with nothing in
    // flight.
    let mut idle_http = s.http().await;
    assert_eq!(
        idle_http.request("GET", "/_now", &[], b"").await.status,
        200
    );
    let mut idle_ws = s.ws().await;
    assert_eq!(
        idle_ws
            .call(json!({"controller":"server","action":"now"}))
            .await["status"],
        200
    );

    // 60 requests: 30 over HTTP (one connection each), 30 over 6 WebSockets (5 each). 20 run, 40 wait
    // for a slot.
    let mut http = Vec::new();
    for i in 0..30 {
        let mut conn = HttpConn::connect(addr).await;
        conn.send_raw(
            format!("GET /_test/hold HTTP/1.1\r\nHost: x\r\nX-Kuzzle-Request-Id: h{i}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        http.push(conn);
    }
    let mut sockets = Vec::new();
    for w in 0..6 {
        let mut ws = s.ws().await;
        for k in 0..5 {
            ws.send_text(&format!(
                r#"{{"controller":"test","action":"hold","requestId":"w{w}-{k}"}}"#
            ))
            .await;
        }
        sockets.push(ws);
    }
    hold.entered(RUNNING).await;
    wait_until("the other 40 requests wait for a slot", || async move {
        ready().await == 503
    })
    .await;
    let running: BTreeSet<String> = hold.order().into_iter().collect();
    assert_eq!(running.len(), RUNNING);

    let stopping = s.begin_stop();
    wait_refusing_connections(addr).await;
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .is_err(),
        "a WebSocket handshake succeeded while draining"
    );
    // Idle connections are closed at once, without waiting for the held requests.
    assert!(
        idle_http.is_closed().await,
        "the idle HTTP connection stays open"
    );
    let (frames, close) = frames_until_close(&mut idle_ws).await;
    assert_eq!(frames, Vec::<Value>::new());
    assert_eq!(close, Some(CloseCode::Away));
    assert!(
        !stopping.is_finished(),
        "the drain ended while requests were held"
    );

    hold.release();
    // The drain completes within the grace period, and only then are the answers read: each must
    // have been written whole before the server finished.
    assert_eq!(
        stopping.await.ok(),
        Some(true),
        "the drain did not complete"
    );

    let mut answered = 0;
    let mut refused = Vec::new();
    let mut check = |id: &str, r: &Value| {
        assert_eq!(r["requestId"], id, "{r}");
        if r["status"] == 200 {
            assert_eq!(r["result"], json!({ "held": id }), "{r}");
            answered += 1;
        } else {
            // Only a request still waiting for a slot may be refused, and only as shutting down.
            assert!(!running.contains(id), "running request {id} answered {r}");
            assert_shutting_down(r);
            refused.push(id.to_owned());
        }
    };
    for (i, conn) in http.iter_mut().enumerate() {
        let r = conn.read_response(false).await;
        check(&format!("h{i}"), &r.json());
        assert!(conn.is_closed().await, "h{i}: the connection stays open");
    }
    for (w, ws) in sockets.iter_mut().enumerate() {
        let (frames, close) = frames_until_close(ws).await;
        let mut ids: Vec<String> = frames
            .iter()
            .map(|f| f["requestId"].as_str().unwrap_or("").to_owned())
            .collect();
        ids.sort();
        let want: Vec<String> = (0..5).map(|k| format!("w{w}-{k}")).collect();
        assert_eq!(ids, want, "socket w{w}: one answer per request");
        for f in &frames {
            let id = f["requestId"].as_str().unwrap_or("").to_owned();
            check(&id, f);
        }
        assert_eq!(close, Some(CloseCode::Away), "socket w{w}");
    }
    assert_eq!(answered + refused.len(), RUNNING + QUEUED);
    eprintln!(
        "shutdown: {answered} answered, {} refused as shutting down: {refused:?}",
        refused.len()
    );
}

/// One HTTP answer read without panicking: whole, or the connection ended before any byte of it
/// (a request the server did not take), or cut in the middle.
enum HttpAnswer {
    Whole { status: u16, body: Vec<u8> },
    NotTaken,
    Cut(String),
}

async fn read_http_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> HttpAnswer {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        match tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return HttpAnswer::NotTaken,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return HttpAnswer::Cut(String::from_utf8_lossy(buf).into_owned());
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return HttpAnswer::Cut(format!("no answer within {TIMEOUT:?}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < length {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return HttpAnswer::Cut(format!("{head} / {} of {length} bytes", buf.len())),
        }
    }
    let body = buf.drain(..length).collect();
    HttpAnswer::Whole { status, body }
}

/// What one load client saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    shutting_down: u64,
    anomalies: Vec<String>,
}

/// Checks one answer to `server:now` with request id `id`.
fn classify(seen: &mut Seen, id: &str, answer: &Value, answered: &AtomicU64) {
    if answer["requestId"] != id {
        seen.anomalies.push(format!(
            "answer for {} instead of {id}",
            answer["requestId"]
        ));
    } else if answer["status"] == 200 && answer["result"]["now"].is_u64() {
        seen.ok += 1;
        answered.fetch_add(1, Ordering::Relaxed);
    } else if answer["status"] == 503 && answer["error"]["id"] == "api.process.shutting_down" {
        seen.shutting_down += 1;
    } else {
        seen.anomalies.push(format!("{id}: {answer}"));
    }
}

/// Sequential `GET /_now` on keep-alive connections, reconnecting when the server closes one, until
/// a connection is refused.
async fn http_load(addr: SocketAddr, client: usize, answered: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0u64;
    while let Ok(mut stream) = TcpStream::connect(addr).await {
        let mut buf = Vec::new();
        loop {
            n += 1;
            let id = format!("h{client}-{n}");
            let request =
                format!("GET /_now HTTP/1.1\r\nHost: x\r\nX-Kuzzle-Request-Id: {id}\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_err() {
                break;
            }
            match read_http_answer(&mut stream, &mut buf).await {
                HttpAnswer::Whole { status, body } => {
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(answer) if answer["status"] == status => {
                            classify(&mut seen, &id, &answer, &answered);
                        }
                        _ => seen.anomalies.push(format!(
                            "{id}: status {status}, body {}",
                            String::from_utf8_lossy(&body)
                        )),
                    }
                }
                HttpAnswer::NotTaken => break,
                HttpAnswer::Cut(what) => {
                    seen.anomalies.push(format!("{id}: answer cut: {what}"));
                    break;
                }
            }
        }
    }
    seen
}

/// `server:now` over one WebSocket with up to 10 requests in flight, until the socket closes; every
/// request sent is either answered once, or unanswered when the socket closed. The close code must
/// be 1001.
async fn ws_load(addr: SocketAddr, client: usize, answered: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen::default();
    let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await else {
        seen.anomalies.push(format!("w{client}: cannot connect"));
        return seen;
    };
    let (mut tx, mut rx) = ws.split();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(10));
    let sent = Arc::new(Mutex::new(BTreeSet::new()));
    let sender = {
        let (in_flight, sent) = (Arc::clone(&in_flight), Arc::clone(&sent));
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok(permit) = in_flight.acquire().await {
                permit.forget();
                n += 1;
                let id = format!("w{client}-{n}");
                if let Ok(mut sent) = sent.lock() {
                    sent.insert(id.clone());
                }
                let text =
                    format!(r#"{{"controller":"server","action":"now","requestId":"{id}"}}"#);
                if tx.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        })
    };
    let close = loop {
        match tokio::time::timeout(TIMEOUT, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let Ok(answer) = serde_json::from_str::<Value>(&t) else {
                    seen.anomalies.push(format!("not JSON: {t}"));
                    continue;
                };
                let id = answer["requestId"].as_str().unwrap_or("").to_owned();
                let known = sent.lock().map(|mut s| s.remove(&id)).unwrap_or(false);
                if known {
                    classify(&mut seen, &id, &answer, &answered);
                } else {
                    seen.anomalies
                        .push(format!("an answer to no pending request: {t}"));
                }
                in_flight.add_permits(1);
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => break None,
            Err(_) => {
                seen.anomalies
                    .push(format!("w{client}: silent for {TIMEOUT:?}"));
                break None;
            }
        }
    };
    in_flight.close();
    let _ = sender.await;
    if close != Some(CloseCode::Away) {
        seen.anomalies
            .push(format!("w{client}: closed with {close:?} instead of 1001"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_never_cuts_an_answer() {
    let mut s = TestServer::start_with(|c| c.server.shutdown_grace_ms = 60_000, vec![]).await;
    let addr = s.addr;
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(tokio::spawn(http_load(addr, i, Arc::clone(&answered))));
        clients.push(tokio::spawn(ws_load(addr, i, Arc::clone(&answered))));
    }
    // The shutdown starts while every client is busy: once 1000 answers are in.
    let seen_so_far = Arc::clone(&answered);
    wait_until("1000 answers before the shutdown", || {
        let n = seen_so_far.load(Ordering::Relaxed);
        async move { n >= 1000 }
    })
    .await;
    let stopping = s.begin_stop();
    assert_eq!(
        stopping.await.ok(),
        Some(true),
        "the drain did not complete"
    );
    let mut total = Seen::default();
    for c in clients {
        let seen = c.await.unwrap_or_else(|e| panic!("client task: {e}"));
        total.ok += seen.ok;
        total.shutting_down += seen.shutting_down;
        total.anomalies.extend(seen.anomalies);
    }
    eprintln!(
        "shutdown under load: {} answered, {} refused as shutting down, {} anomalies",
        total.ok,
        total.shutting_down,
        total.anomalies.len()
    );
    assert!(
        total.anomalies.is_empty(),
        "{} anomalies, first ones: {:?}",
        total.anomalies.len(),
        &total.anomalies[..total.anomalies.len().min(5)]
    );
    assert!(total.ok >= 1000);
}
