//! The WebSocket front-end, through a real socket: frames and bytes as a client sees them.

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tollgate_testkit::{NODE, TestServer, WsClient, mask_number, now_ms};

fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36 && s.as_bytes()[14] == b'4' && s.chars().filter(|c| *c == '-').count() == 4
}

async fn close_frame(c: &mut WsClient) -> Option<(CloseCode, String)> {
    loop {
        match c.next().await {
            Some(Message::Close(Some(frame))) => {
                return Some((frame.code, frame.reason.to_string()));
            }
            Some(Message::Close(None)) | None => return None,
            Some(_) => continue,
        }
    }
}

#[tokio::test]
async fn now_success_envelope_with_room() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let before = now_ms();
    let text = c
        .call_text(r#"{"controller":"server","action":"now","requestId":"r1"}"#)
        .await;
    let after = now_ms();
    let (masked, now) = mask_number(&text, "now");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"{NODE}","requestId":"r1","result":{{"now":X}},"status":200,"volatile":null,"room":"r1"}}"#
        )
    );
    let now = now.unwrap_or(0);
    assert!(before <= now && now <= after);
}

#[tokio::test]
async fn request_id_generated_and_used_as_room() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    for payload in [
        json!({"controller":"server","action":"now"}),
        json!({"controller":"server","action":"now","requestId":null}),
        json!({"controller":"server","action":"now","requestId":""}),
    ] {
        let r = c.call(payload).await;
        let id = r["requestId"].as_str().unwrap_or_default();
        assert!(is_uuid_v4(id), "{id}");
        assert_eq!(r["room"], r["requestId"]);
    }
    let r = c.call(json!({"controller":"server","action":"now","volatile":{"a":[1]},"index":"i","collection":"c"})).await;
    assert_eq!(r["volatile"], json!({"a":[1]}));
    assert_eq!(r["index"], "i");
    assert_eq!(r["collection"], "c");
}

#[tokio::test]
async fn unknown_and_missing_controller_or_action() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    assert_eq!(
        c.call_text(r#"{"controller":"document","action":"get","requestId":"a1","index":"nyc","collection":"taxi"}"#).await,
        format!(r#"{{"action":"get","collection":"taxi","controller":"document","error":{{"code":33685508,"id":"api.process.controller_not_found","message":"API controller \"document\" not found.","props":["document"],"status":404}},"headers":{{}},"index":"nyc","node":"{NODE}","requestId":"a1","result":null,"status":404,"volatile":null,"room":"a1"}}"#)
    );
    assert_eq!(
        c.call_text(r#"{"controller":"server","action":"nope","requestId":"a2"}"#)
            .await,
        format!(
            r#"{{"action":"nope","controller":"server","error":{{"code":33685509,"id":"api.process.action_not_found","message":"API action \"server\":\"nope\" not found","props":["server","nope"],"status":404}},"headers":{{}},"node":"{NODE}","requestId":"a2","result":null,"status":404,"volatile":null,"room":"a2"}}"#
        )
    );
    assert_eq!(
        c.call_text(r#"{"action":"now","requestId":"a3"}"#).await,
        format!(
            r#"{{"action":"now","controller":null,"error":{{"code":33619971,"id":"api.assert.missing_argument","message":"Missing argument \"controller\".","props":["controller"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"a3","result":null,"status":400,"volatile":null,"room":"a3"}}"#
        )
    );
    let r = c
        .call(json!({"controller":"server","action":"","requestId":"a4"}))
        .await;
    assert_eq!(r["error"]["message"], "Missing argument \"action\".");
}

#[tokio::test]
async fn invalid_json_keeps_the_socket_open() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let r = c.call_text("{not json").await;
    let v: Value = serde_json::from_str(&r).unwrap_or_default();
    let id = v["requestId"].as_str().unwrap_or_default().to_owned();
    assert!(is_uuid_v4(&id));
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("Caught an unexpected WebSocket error: "),
        "{message}"
    );
    assert_eq!(
        r,
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":50528257,"id":"network.websocket.unexpected_error","message":{},"props":[{}],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"{id}","result":null,"status":400,"volatile":null,"room":"{id}"}}"#,
            json!(message),
            json!(message.trim_start_matches("Caught an unexpected WebSocket error: "))
        )
    );
    // Binary frames that are not UTF-8 get the same error.
    c.send(Message::binary(vec![0xff, 0xfe, 0xfd])).await;
    assert_eq!(
        c.recv_json().await["error"]["id"],
        "network.websocket.unexpected_error"
    );
    // Binary frames holding JSON are requests.
    c.send(Message::binary(
        br#"{"controller":"server","action":"now","requestId":"b"}"#.to_vec(),
    ))
    .await;
    assert_eq!(c.recv_json().await["status"], 200);
    // Empty messages are ignored; the socket still works.
    c.send_text("").await;
    assert_eq!(
        c.call(json!({"controller":"server","action":"now","requestId":"after"}))
            .await["requestId"],
        "after"
    );
}

#[tokio::test]
async fn non_object_payloads_get_an_error_envelope() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    for payload in ["5", "\"abc\"", "[1]", "null", "true"] {
        let text = c.call_text(payload).await;
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let id = v["requestId"].as_str().unwrap_or_default();
        assert!(is_uuid_v4(id), "{payload}: {text}");
        assert_eq!(
            text,
            format!(
                r#"{{"action":null,"controller":null,"error":{{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"payload\" (expected: object)","props":["payload","object"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"{id}","result":null,"status":400,"volatile":null,"room":"{id}"}}"#
            ),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn construction_errors_keep_the_request_id() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    assert_eq!(
        c.call_text(
            r#"{"controller":"server","action":"now","body":[],"requestId":"k1","index":"i"}"#
        )
        .await,
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body\" (expected: object)","props":["body","object"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"k1","result":null,"status":400,"volatile":null,"room":"k1"}}"#
        )
    );
    let r = c
        .call(json!({"controller":"server","action":"now","jwt":5,"requestId":"k2"}))
        .await;
    assert_eq!(
        r["error"]["message"],
        "Wrong type for argument \"jwt\" (expected: string)"
    );
    assert_eq!(r["room"], "k2");
    let r = c
        .call(json!({"controller":"server","action":"now","requestId":7}))
        .await;
    assert_eq!(
        r["error"]["message"],
        "Wrong type for argument \"requestId\" (expected: string)"
    );
    assert!(is_uuid_v4(r["room"].as_str().unwrap_or_default()));
}

#[tokio::test]
async fn application_heartbeat() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    assert_eq!(c.call_text(r#"{"p":1}"#).await, r#"{"p":2}"#);
    assert_eq!(c.call_text(r#" { "p" : 1 } "#).await, r#"{"p":2}"#);
    let r = c.call(json!({"p":1,"x":2})).await;
    assert_eq!(r["error"]["id"], "api.assert.missing_argument");
    assert_eq!(r["error"]["props"], json!(["controller"]));
}

#[tokio::test]
async fn rfc_ping_gets_a_pong_with_the_same_data() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    c.send(Message::Ping(b"hello".to_vec().into())).await;
    loop {
        match c.next().await {
            Some(Message::Pong(data)) => {
                assert_eq!(&data[..], b"hello");
                break;
            }
            Some(Message::Text(t)) => panic!("unexpected text {t}"),
            Some(_) => continue,
            None => panic!("closed instead of pong"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_requests_on_one_socket_each_answered_once() {
    let s = TestServer::start().await;
    let c = s.ws().await;
    let (mut tx, mut rx) = c.ws.split();
    for i in 0..100 {
        let frame =
            json!({"controller":"server","action":"now","requestId":format!("c{i}")}).to_string();
        let sent = tx.send(Message::text(frame)).await;
        assert!(sent.is_ok());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.values().sum::<usize>() < 100 {
        let next = tokio::time::timeout(tollgate_testkit::TIMEOUT, rx.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = next else {
            panic!("missing answers: got {}", seen.len())
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        assert_eq!(v["status"], 200);
        assert_eq!(v["room"], v["requestId"]);
        *seen
            .entry(v["requestId"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|n| *n == 1));
    for i in 0..100 {
        assert!(seen.contains_key(&format!("c{i}")));
    }
    // Nothing more arrives: each request was answered exactly once. A request sent after all the
    // answers came is answered next, with nothing before it.
    let sent = tx
        .send(Message::text(
            r#"{"controller":"server","action":"now","requestId":"last"}"#,
        ))
        .await;
    assert!(sent.is_ok());
    let next = tokio::time::timeout(tollgate_testkit::TIMEOUT, rx.next()).await;
    let Ok(Some(Ok(Message::Text(t)))) = next else {
        panic!("no answer to the last request: {next:?}")
    };
    let v: Value = serde_json::from_str(&t).unwrap_or_default();
    assert_eq!(v["requestId"], "last", "unexpected extra frame {t}");
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let s = TestServer::start_with(|c| c.server.max_request_size = 1024, vec![]).await;
    let mut c = s.ws().await;
    let mut big = String::from(r#"{"controller":"server","action":"now","pad":""#);
    big.push_str(&"x".repeat(2000));
    big.push_str("\"}");
    c.send_text(&big).await;
    let close = close_frame(&mut c).await;
    assert_eq!(close.map(|c| c.0), Some(CloseCode::Size));
    // Smaller messages on a fresh socket are fine.
    let mut c = s.ws().await;
    assert_eq!(
        c.call(json!({"controller":"server","action":"now"})).await["status"],
        200
    );
}

#[tokio::test]
async fn idle_socket_is_closed() {
    // The shortest idle timeout there is: below one second means 60 s, as in Kuzzle.
    let idle = std::time::Duration::from_millis(1000);
    let s = TestServer::start_with(
        |c| c.websocket.idle_timeout_ms = idle.as_millis() as u64,
        vec![],
    )
    .await;
    let mut c = s.ws().await;
    // The idle timeout is the behaviour under test: the socket closes once it passes, and not before
    // (the server last read from the socket after `sent`).
    let sent = std::time::Instant::now();
    assert_eq!(c.call_text(r#"{"p":1}"#).await, r#"{"p":2}"#);
    let close = close_frame(&mut c).await;
    assert_eq!(close, Some((CloseCode::Normal, "idle timeout".to_owned())));
    assert!(sent.elapsed() >= idle, "closed after {:?}", sent.elapsed());
}

/// The per-socket message rate is counted in one-second windows, the first starting when the socket
/// opens: six messages within that second are three answered and three refused.
#[tokio::test]
async fn per_socket_rate_limit() {
    let s = TestServer::start_with(|c| c.websocket.rate_limit = 3, vec![]).await;
    for _attempt in 0..5 {
        let started = std::time::Instant::now();
        let mut c = s.ws().await;
        let mut answers = Vec::new();
        for i in 0..6 {
            answers.push(
                c.call(json!({"controller":"server","action":"now","requestId":format!("r{i}")}))
                    .await,
            );
        }
        if started.elapsed() >= std::time::Duration::from_secs(1) {
            // The six messages may have spanned two windows: try again on a new socket.
            continue;
        }
        let statuses: Vec<u64> = answers
            .iter()
            .map(|r| r["status"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(statuses, [200, 200, 200, 429, 429, 429], "{answers:?}");
        let r = &answers[3];
        assert_eq!(r["error"]["id"], "network.websocket.ratelimit_exceeded");
        assert_eq!(
            r["error"]["message"],
            "Rejected: too many requests received from that socket"
        );
        assert_eq!(r["requestId"], "r3");
        assert_eq!(r["room"], "r3");
        return;
    }
    panic!("six requests never fitted in one second");
}

#[tokio::test]
async fn upgrade_works_on_any_path() {
    let s = TestServer::start().await;
    let mut c = WsClient::connect(s.addr, "/some/where?x=1").await;
    assert_eq!(
        c.call(json!({"controller":"server","action":"now"})).await["status"],
        200
    );
}

/// A client that sends many requests and reads none of the answers is closed with 1011, and gets
/// the answers written before, then the close frame.
async fn assert_slow_reader_is_disconnected_with_1011() {
    let s = TestServer::start_with(|c| c.websocket.max_queued_messages = 2, vec![]).await;
    let c = s.ws().await;
    let (mut tx, mut rx) = c.ws.split();
    // Ask for many large answers and read none: the socket buffers and the server's queue fill up
    // while the requests are sent. Not reading for longer than a full queue may last (1 s) is the
    // behaviour under test, so this wait stays: 1 s past the end of the sends, which is later than
    // the queue filled. Nothing from this socket can tell the test sooner that the server gave up
    // (only reading would, and reading empties the queue); reading later than 5 s after that misses
    // the close frame.
    let request = Message::text(r#"{"controller":"server","action":"info"}"#);
    let mut sent = 0;
    for _ in 0..30_000 {
        match tokio::time::timeout(std::time::Duration::from_secs(2), tx.send(request.clone()))
            .await
        {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // The server gave up on this client: past the answers it wrote, the close frame.
    let mut close = None;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(tollgate_testkit::TIMEOUT, rx.next()).await
    {
        if let Message::Close(frame) = message {
            close = frame.map(|f| (f.code, f.reason.to_string()));
            break;
        }
    }
    assert_eq!(
        close,
        Some((
            CloseCode::Error,
            "too much backpressure: client is too slow".to_owned()
        )),
        "after {sent} requests"
    );
}

#[tokio::test]
async fn slow_reader_is_disconnected_with_1011() {
    assert_slow_reader_is_disconnected_with_1011().await;
}

/// With the server's reader running beside the client (worker threads), requests the server never
/// read are still in its socket's receive buffer when it closes: the lingering close (read and
/// discard until the peer is done, or for a bounded time) keeps the kernel from resetting the
/// connection, so the client gets every answer written and the 1011 close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_with_1011_on_worker_threads() {
    assert_slow_reader_is_disconnected_with_1011().await;
}
