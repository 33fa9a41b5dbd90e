//! The HTTP front-end, through a real socket: status lines, headers and body bytes.

use std::io::Write;

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use tollgate_testkit::{NODE, TestServer, http_once, mask_number, now_ms};

const ALLOW_HEADERS: &str = "Content-Type, Access-Control-Allow-Headers, Authorization, X-Requested-With, Content-Encoding, Content-Length, X-Kuzzle-Volatile, X-Kuzzle-Request-Id";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

#[tokio::test]
async fn now_success_envelope_and_headers() {
    let s = TestServer::start().await;
    let before = now_ms();
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("X-Kuzzle-Request-Id", "req-1")],
        b"",
    )
    .await;
    let after = now_ms();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    let (masked, now) = mask_number(&r.text(), "now");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"{NODE}","requestId":"req-1","result":{{"now":X}},"status":200,"volatile":null}}"#
        )
    );
    let now = now.unwrap_or(0);
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.header("content-encoding"), Some("identity"));
    assert_eq!(r.header("x-kuzzle-request-id"), Some("req-1"));
    assert_eq!(r.header("x-kuzzle-node"), Some(NODE));
    assert_eq!(r.header("accept-encoding"), Some("gzip,deflate,identity"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some(ALLOW_HEADERS)
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,POST,PUT,PATCH,DELETE,OPTIONS,HEAD")
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Cookie authentication is on by default (`protocol.md` §6.1, tests/it/cookie.rs).
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(r.header("vary"), None);
    assert_eq!(r.header("connection"), None);
    assert!(r.header("date").is_some());
}

#[tokio::test]
async fn request_id_generated_when_absent_or_empty() {
    let s = TestServer::start().await;
    for headers in [vec![], vec![("X-Kuzzle-Request-Id", "")]] {
        let r = http_once(s.addr, "GET", "/_now", &headers, b"").await;
        let id = r.json()["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.as_bytes()[14], b'4', "UUID v4: {id}");
        assert_eq!(r.header("x-kuzzle-request-id"), Some(id.as_str()));
    }
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let s = TestServer::start().await;
    let mut c = s.http().await;
    for i in 0..3 {
        let id = format!("k{i}");
        let r = c
            .request("GET", "/_now", &[("X-Kuzzle-Request-Id", &id)], b"")
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["requestId"], id.as_str());
    }
    let r = c
        .request("GET", "/_now", &[("Connection", "close")], b"")
        .await;
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn unknown_url_is_an_envelope_404() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "GET",
        "/nope/x?a=1",
        &[("X-Kuzzle-Request-Id", "u1")],
        b"",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":50397191,"id":"network.http.url_not_found","message":"API URL not found: /nope/x.","props":["/nope/x"],"status":404}},"headers":{{}},"node":"{NODE}","requestId":"u1","result":null,"status":404,"volatile":null}}"#
        )
    );
    // A known path under another verb is not found either; so is a case change.
    assert_eq!(
        http_once(s.addr, "PATCH", "/_now", &[], b"").await.json()["error"]["id"],
        "network.http.url_not_found"
    );
    assert_eq!(
        http_once(s.addr, "GET", "/_NOW", &[], b"").await.status,
        404
    );
}

#[tokio::test]
async fn paths_skip_empty_segments_and_reject_bad_escapes() {
    let s = TestServer::start().await;
    assert_eq!(
        http_once(s.addr, "GET", "//_now///", &[], b"").await.status,
        200
    );
    // A bad escape is reported even where no route would match.
    let r = http_once(s.addr, "GET", "/nope/%zz/x", &[], b"").await;
    assert_eq!(r.json()["error"]["id"], "network.http.unexpected_error");
    let r = http_once(
        s.addr,
        "GET",
        "/_now/%zz",
        &[("X-Kuzzle-Request-Id", "e1")],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":50397186,"id":"network.http.unexpected_error","message":"Caught an unexpected HTTP error: invalid percent-encoding in URL path","props":["invalid percent-encoding in URL path"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"e1","result":null,"status":400,"volatile":null}}"#
        )
    );
}

#[tokio::test]
async fn unsupported_verb_is_an_envelope_400() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "TRACE",
        "/_now",
        &[("X-Kuzzle-Request-Id", "t1")],
        b"",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":50397190,"id":"network.http.unsupported_verb","message":"Unsupported HTTP verb \"TRACE\".","props":["TRACE"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"t1","result":null,"status":400,"volatile":null}}"#
        )
    );
}

#[tokio::test]
async fn invalid_json_body_is_a_bare_error() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("Content-Type", "application/json")],
        b"{bad",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        r.text(),
        r#"{"code":50397196,"id":"network.http.body_parse_failed","message":"Unable to convert the HTTP body to JSON: {bad","props":["{bad"],"status":400}"#
    );
    assert!(r.header("x-kuzzle-request-id").is_some());
    assert_eq!(r.header("x-kuzzle-node"), Some(NODE));
    // Bare errors come before routing: an unknown URL with a bad body reports the body.
    let r = http_once(s.addr, "GET", "/nope", &[], b"{bad").await;
    assert_eq!(r.json()["id"], "network.http.body_parse_failed");
}

#[tokio::test]
async fn non_object_body_is_an_envelope_invalid_type() {
    let s = TestServer::start().await;
    for body in [&b"[1]"[..], b"\"x\"", b"5", b"true"] {
        let r = http_once(
            s.addr,
            "GET",
            "/_now",
            &[("X-Kuzzle-Request-Id", "b1")],
            body,
        )
        .await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.text(),
            format!(
                r#"{{"action":null,"controller":null,"error":{{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body\" (expected: object)","props":["body","object"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"b1","result":null,"status":400,"volatile":null}}"#
            )
        );
    }
    // `null` and an empty body mean "no body".
    assert_eq!(
        http_once(s.addr, "GET", "/_now", &[], b"null").await.status,
        200
    );
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "0"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let s = TestServer::start_with(|c| c.server.max_request_size = 1000, vec![]).await;
    let big = vec![b' '; 1001];
    let r = http_once(s.addr, "POST", "/_query", &[], &big).await;
    assert_eq!(r.status_line, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(
        r.text(),
        r#"{"code":50397185,"id":"network.http.request_too_large","message":"Maximum HTTP request size exceeded.","props":[],"status":413}"#
    );
    // Without a Content-Length (chunked), the limit applies to the bytes received.
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    )
    .await;
    assert_eq!(r.json()["id"], "network.http.request_too_large");
    // The decompressed size is limited too.
    let bomb = gzip(&[b' '; 5000]);
    assert!(bomb.len() < 1000);
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["id"], "network.http.request_too_large");
    // Exactly at the limit is fine.
    let mut ok = br#"{"controller":"server","action":"now"}"#.to_vec();
    ok.resize(1000, b' ');
    assert_eq!(
        http_once(s.addr, "POST", "/_query", &[], &ok).await.status,
        200
    );
}

/// A client (or a proxy) that sends a whole oversized body before reading gets the 413, not a reset
/// connection: the rest of the body is read and dropped, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_sent_whole_gets_the_413_and_keeps_the_connection() {
    let s = TestServer::start_with(|c| c.server.max_request_size = 1000, vec![]).await;
    let mut conn = s.http().await;
    // Far more than the socket buffers hold: the write completes only if the server reads it.
    let big = vec![b' '; 4 * 1024 * 1024];
    let r = conn.request("POST", "/_query", &[], &big).await;
    assert_eq!(r.status_line, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(
        r.text(),
        r#"{"code":50397185,"id":"network.http.request_too_large","message":"Maximum HTTP request size exceeded.","props":[],"status":413}"#
    );
    let r = conn
        .request(
            "POST",
            "/_query",
            &[],
            br#"{"controller":"server","action":"now"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn content_type_and_charset_checks() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Type", "text/plain")],
        b"{}",
    )
    .await;
    assert_eq!(
        r.text(),
        r#"{"code":50397192,"id":"network.http.unsupported_content","message":"Invalid request content-type. Expected \"application/json\", got: \"text/plain\".","props":["text/plain"],"status":400}"#
    );
    // Checked even with an empty body.
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("Content-Type", "text/html")],
        b"",
    )
    .await;
    assert_eq!(r.json()["id"], "network.http.unsupported_content");
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Type", "application/json; charset=iso-8859-1")],
        b"{}",
    )
    .await;
    assert_eq!(
        r.text(),
        r#"{"code":50397193,"id":"network.http.unsupported_charset","message":"Unsupported request charset. Expected \"utf-8\", got: \"iso-8859-1\".","props":["iso-8859-1"],"status":400}"#
    );
    let body = br#"{"controller":"server","action":"now"}"#;
    for ct in [
        "application/json; charset=UTF-8",
        "Application/Json;charset=utf8",
        "application/json",
    ] {
        assert_eq!(
            http_once(s.addr, "POST", "/_query", &[("Content-Type", ct)], body)
                .await
                .status,
            200,
            "{ct}"
        );
    }
    // Form bodies become objects of strings.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"controller=server&action=now",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["action"], "now");
}

#[tokio::test]
async fn compressed_request_bodies() {
    let s = TestServer::start().await;
    let body = br#"{"controller":"server","action":"now"}"#;
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "gzip")],
        &gzip(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "deflate")],
        &zlib(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Layers are undone right to left: deflate was applied first, then gzip.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "deflate, gzip")],
        &gzip(&zlib(body)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "identity")],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "br")],
        body,
    )
    .await;
    assert_eq!(
        r.text(),
        r#"{"code":50397188,"id":"network.http.unsupported_compression","message":"Unsupported compression algorithm \"br\".","props":["br"],"status":400}"#
    );
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "gzip,gzip,gzip,gzip")],
        body,
    )
    .await;
    assert_eq!(
        r.text(),
        r#"{"code":50397187,"id":"network.http.too_many_encodings","message":"Too many encodings.","props":[],"status":400}"#
    );
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("Content-Encoding", "gzip")],
        b"not gzip at all",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["id"], "network.http.unexpected_error");
}

#[tokio::test]
async fn compressed_responses_follow_accept_encoding() {
    let s = TestServer::start().await;
    let r = http_once(s.addr, "GET", "/_now", &[("Accept-Encoding", "gzip")], b"").await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut d = flate2::read::GzDecoder::new(r.body.as_slice());
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut d, &mut text);
    assert!(text.starts_with(r#"{"action":"now""#), "{text}");
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("Accept-Encoding", "gzip;q=0.5, deflate")],
        b"",
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("deflate"));
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("Accept-Encoding", "gzip;q=0, br")],
        b"",
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("identity"));
    assert_eq!(r.json()["status"], 200);

    let off = TestServer::start_with(|c| c.http.compression = false, vec![]).await;
    let r = http_once(
        off.addr,
        "GET",
        "/_now",
        &[("Accept-Encoding", "gzip")],
        b"",
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("identity"));
    assert_eq!(r.header("accept-encoding"), Some("identity"));
}

#[tokio::test]
async fn query_endpoint_runs_a_full_envelope_with_json_typing() {
    let s = TestServer::start().await;
    let payload = br#"{"controller":"server","action":"now","requestId":"ignored","volatile":{"sdk":"x"},"index":"i","collection":null}"#;
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "q1")],
        payload,
    )
    .await;
    let (masked, _) = mask_number(&r.text(), "now");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"now","collection":null,"controller":"server","error":null,"headers":{{}},"index":"i","node":"{NODE}","requestId":"q1","result":{{"now":X}},"status":200,"volatile":{{"sdk":"x"}}}}"#
        )
    );
    // The payload's requestId is ignored: without the header, a fresh one is generated.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[],
        br#"{"controller":"server","action":"now","requestId":"mine"}"#,
    )
    .await;
    assert_ne!(r.json()["requestId"], "mine");
    // Whatever its type.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "q9")],
        br#"{"controller":"server","action":"now","requestId":7}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["requestId"], "q9");
    // An empty body counts as {}.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "q2")],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":{{"code":33619971,"id":"api.assert.missing_argument","message":"Missing argument \"controller\".","props":["controller"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"q2","result":null,"status":400,"volatile":null}}"#
        )
    );
    // Not an object → the payload check, not the body check.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "q3")],
        b"[1]",
    )
    .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Wrong type for argument \"payload\" (expected: object)"
    );
    assert_eq!(r.json()["requestId"], "q3");
    // Construction checks apply with JSON typing.
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[],
        br#"{"controller":"server","action":"now","volatile":"x"}"#,
    )
    .await;
    assert_eq!(
        r.json()["error"]["message"],
        "Wrong type for argument \"volatile\" (expected: object)"
    );
}

#[tokio::test]
async fn unknown_controller_and_action() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "c1")],
        br#"{"controller":"document","action":"get"}"#,
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"get","controller":"document","error":{{"code":33685508,"id":"api.process.controller_not_found","message":"API controller \"document\" not found.","props":["document"],"status":404}},"headers":{{}},"node":"{NODE}","requestId":"c1","result":null,"status":404,"volatile":null}}"#
        )
    );
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "c2")],
        br#"{"controller":"server","action":"nope"}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"nope","controller":"server","error":{{"code":33685509,"id":"api.process.action_not_found","message":"API action \"server\":\"nope\" not found","props":["server","nope"],"status":404}},"headers":{{}},"node":"{NODE}","requestId":"c2","result":null,"status":404,"volatile":null}}"#
        )
    );
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[],
        br#"{"controller":"server"}"#,
    )
    .await;
    assert_eq!(r.json()["error"]["message"], "Missing argument \"action\".");
    // Reserved Kuzzle routes resolve to their (unimplemented) action.
    let r = http_once(s.addr, "DELETE", "/ms", &[], b"").await;
    assert_eq!(r.json()["error"]["id"], "api.process.controller_not_found");
    let r = http_once(s.addr, "GET", "/ms/_exists", &[], b"").await;
    assert_eq!(
        r.json()["error"],
        serde_json::json!({"code":33685508,"id":"api.process.controller_not_found","message":"API controller \"ms\" not found.","props":["ms"],"status":404})
    );
}

#[tokio::test]
async fn options_and_cors() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "OPTIONS",
        "/anything/at/all",
        &[("X-Kuzzle-Request-Id", "o1")],
        b"",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":null,"headers":{{}},"node":"{NODE}","requestId":"o1","result":{{}},"status":200,"volatile":null}}"#
        )
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,POST,PUT,PATCH,DELETE,OPTIONS,HEAD")
    );
    let r = http_once(
        s.addr,
        "OPTIONS",
        "/_now",
        &[("Origin", "http://app.example")],
        b"",
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some(ALLOW_HEADERS)
    );
    // CORS headers are on every response, errors included.
    let r = http_once(s.addr, "GET", "/nope", &[("Origin", "http://o")], b"").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("http://o"));
}

#[tokio::test]
async fn origin_allow_list() {
    let s = TestServer::start_with(
        |c| c.http.allowed_origins = Some(vec!["http://good".into()]),
        vec![],
    )
    .await;
    assert_eq!(
        http_once(s.addr, "GET", "/_now", &[("Origin", "http://good")], b"")
            .await
            .status,
        200
    );
    assert_eq!(
        http_once(s.addr, "GET", "/_now", &[], b"").await.status,
        200
    );
    let r = http_once(s.addr, "GET", "/_now", &[("Origin", "http://evil")], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["message"],
        "The origin \"http://evil\" is not authorized."
    );
}

#[tokio::test]
async fn special_endpoints() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "GET",
        "/_healthcheck",
        &[("X-Kuzzle-Request-Id", "h1")],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":null,"controller":null,"error":null,"headers":{{}},"node":"{NODE}","requestId":"h1","result":null,"status":200,"volatile":null}}"#
        )
    );
    let r = http_once(
        s.addr,
        "GET",
        "/_ready",
        &[("X-Kuzzle-Request-Id", "h2")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], serde_json::Value::Null);
    let r = http_once(s.addr, "HEAD", "/", &[("Accept-Encoding", "gzip")], b"").await;
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("content-encoding"), Some("identity"));
    assert_eq!(r.header("x-kuzzle-node"), Some(NODE));
    // `/_healthCheck` (capital C) is the action.
    let r = http_once(s.addr, "GET", "/_healthCheck", &[], b"").await;
    assert_eq!(r.json()["action"], "healthCheck");
    assert_eq!(
        r.json()["result"],
        serde_json::json!({"services":{"storageEngine":"green"},"status":"green"})
    );
}

#[tokio::test]
async fn volatile_header_and_pretty() {
    let s = TestServer::start().await;
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("X-Kuzzle-Volatile", r#"{"sdkName":"js@7"}"#)],
        b"",
    )
    .await;
    assert_eq!(r.json()["volatile"], serde_json::json!({"sdkName":"js@7"}));
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[
            ("X-Kuzzle-Volatile", "{nope"),
            ("X-Kuzzle-Request-Id", "v1"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["id"],
        "network.http.volatile_parse_failed"
    );
    let r = http_once(s.addr, "GET", "/_now", &[("X-Kuzzle-Volatile", "[1]")], b"").await;
    assert_eq!(
        r.json()["error"]["message"],
        "Wrong type for argument \"volatile\" (expected: object)"
    );
    let r = http_once(
        s.addr,
        "GET",
        "/_now?pretty",
        &[("X-Kuzzle-Request-Id", "p1")],
        b"",
    )
    .await;
    assert!(
        r.text()
            .starts_with("{\n  \"action\": \"now\",\n  \"controller\": \"server\","),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn public_api_lists_the_implemented_routes() {
    let s = TestServer::start().await;
    // What the SDK sends at connect: no body, no Content-Type.
    let r = http_once(s.addr, "GET", "/_publicApi", &[], b"").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    let routes = &r.json()["result"];
    assert_eq!(
        routes["server"]["now"],
        serde_json::json!({"action":"now","controller":"server","http":[{"path":"/_now","url":"/_now","verb":"GET"}]})
    );
    assert_eq!(
        routes["server"]["info"]["http"],
        serde_json::json!([{"path":"/","url":"/","verb":"GET"},{"path":"/_serverInfo","url":"/_serverInfo","verb":"GET"}])
    );
    assert!(routes["server"]["publicApi"].is_object());
    assert!(routes["server"]["healthCheck"].is_object());
    assert!(routes.get("ms").is_none(), "reserved routes are not listed");
}

#[tokio::test]
async fn server_info_reports_node_and_routes() {
    let s = TestServer::start().await;
    let r = http_once(s.addr, "GET", "/", &[], b"").await;
    let info = &r.json()["result"]["serverInfo"]["kuzzle"];
    assert_eq!(info["nodeId"], NODE);
    assert_eq!(info["version"], "2.56.0");
    assert_eq!(info["application"]["name"], "tollgate");
    assert!(info["memoryUsed"].as_u64().unwrap_or(0) > 0);
    assert!(info["uptime"].as_str().unwrap_or("").ends_with('s'));
    assert!(info["api"]["routes"]["server"]["now"].is_object());
    assert_eq!(
        http_once(s.addr, "GET", "/_serverInfo", &[], b"")
            .await
            .json()["action"],
        "info"
    );
}

#[tokio::test]
async fn oversized_head_is_431() {
    let s = TestServer::start().await;
    let big = "x".repeat(70 * 1024);
    let r = http_once(s.addr, "GET", "/_now", &[("X-Big", &big)], b"").await;
    assert_eq!(r.status, 431);
}
