//! An HTTP request (verb, path, query string, a few headers, body) → envelope, as
//! `HttpFrontend::handle` builds it: `parse_query`, the body steps (`body::check_size`,
//! `body::media_type`, `body::decode`, `body::parse`), then `POST /_query` through
//! `Request::from_json` and every other route through `build_request` on the real route tree
//! (the routes of the server, security, auth, index and collection controllers plus the reserved
//! ones). The result's getters are exercised and its envelopes serialized.
#![no_main]

use std::io::Write;

use arbitrary::Arbitrary;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tollgate_fuzz::{check_error, exercise_request, fixture, serialize};
use tollgate_http::{HttpConfig, body, build_request, parse_query};
use tollgate_protocol::{Request, Response};

const VERBS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
];

#[derive(Arbitrary)]
struct Input<'a> {
    /// Index into `VERBS`.
    verb: u8,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    authorization: Option<String>,
    volatile: Option<String>,
    request_id: Option<String>,
    /// When the two high bits are set: up to three encoding layers applied to `body` by the
    /// client, two bits each (0 none, 1 gzip, 2 deflate, 3 identity), first layer in the low bits.
    /// When any is applied, `Content-Encoding` lists them and `content_encoding` is not sent.
    /// (Compressing is costly, hence one input in four.)
    layers: u8,
    body: &'a [u8],
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("verb", &VERBS[usize::from(self.verb) % VERBS.len()])
            .field("path", &self.path)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("content_encoding", &self.content_encoding)
            .field("authorization", &self.authorization)
            .field("volatile", &self.volatile)
            .field("request_id", &self.request_id)
            .field("layers", &self.layers)
            .field("body", &String::from_utf8_lossy(self.body))
            .finish()
    }
}

fn encode(layers: u8, mut body: Vec<u8>) -> (Vec<String>, Vec<u8>) {
    let mut names = Vec::new();
    if layers & 0xC0 != 0xC0 {
        return (names, body);
    }
    for i in 0..3 {
        let (name, out) = match (layers >> (2 * i)) & 3 {
            1 => {
                let mut e = GzEncoder::new(Vec::new(), Compression::fast());
                ("gzip", e.write_all(&body).and_then(|_| e.finish()))
            }
            2 => {
                let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
                ("deflate", e.write_all(&body).and_then(|_| e.finish()))
            }
            3 => ("identity", Ok(body.clone())),
            _ => continue,
        };
        match out {
            Ok(out) => body = out,
            Err(e) => panic!("in-memory compression failed: {e}"),
        }
        names.push(name.to_owned());
    }
    (names, body)
}

/// The front-end's `/a//b/` → `/a/b`, for the special endpoints.
fn normalized_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The front-end's `Authorization: Bearer <token>`.
fn bearer(headers: &http::HeaderMap) -> Option<String> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn answer_error(request_id: &str, e: tollgate_protocol::KuzzleError) {
    check_error(&e);
    serialize(&Response::bare_failure(request_id.to_owned(), e));
}

fuzz_target!(|input: Input<'_>| {
    let verb = VERBS[usize::from(input.verb) % VERBS.len()];
    let mut target = if input.path.starts_with('/') {
        input.path.clone()
    } else {
        format!("/{}", input.path)
    };
    if let Some(q) = &input.query {
        target.push('?');
        target.push_str(q);
    }
    let (layers, raw_body) = encode(input.layers, input.body.to_vec());
    let encoding = if layers.is_empty() {
        input.content_encoding.clone()
    } else {
        Some(layers.join(", "))
    };
    let headers: [(&'static str, &Option<String>); 5] = [
        ("content-type", &input.content_type),
        ("content-encoding", &encoding),
        ("authorization", &input.authorization),
        ("x-kuzzle-volatile", &input.volatile),
        ("x-kuzzle-request-id", &input.request_id),
    ];
    let mut builder = http::Request::builder().method(verb).uri(target.as_str());
    for (name, value) in headers {
        if let Some(v) = value
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            builder = builder.header(HeaderName::from_static(name), v);
        }
    }
    // hyper refuses what `http` refuses: such requests never reach the front-end.
    let Ok(req) = builder.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();

    let request_id = parts
        .headers
        .get("x-kuzzle-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| "req-fuzz".to_owned(), str::to_owned);
    let query = parts.uri.query().map(parse_query).unwrap_or_default();
    let path = normalized_path(parts.uri.path());
    if verb == "TRACE" || verb == "OPTIONS" || (verb == "HEAD" && path == "/") {
        // Answered before the body is read, without an envelope of the request.
        return;
    }

    let config = HttpConfig::default();
    let max = config.max_request_size;
    let parsed = body::check_size(raw_body.len(), max)
        .and_then(|()| body::media_type(&parts.headers))
        .and_then(|media| {
            let decoded = body::decode(&parts.headers, raw_body, max, config.max_encoding_layers)?;
            assert!(decoded.len() <= max, "decoded body over the limit");
            body::parse(&decoded, media)
        });
    let body = match parsed {
        Ok(body) => body,
        Err(e) => return answer_error(&request_id, e),
    };
    if body == Some(Value::Null) {
        panic!("a null body is no body");
    }

    let built = match (verb, path.as_str()) {
        ("GET", "/_healthcheck") | ("GET", "/_ready") => return,
        ("POST", "/_query") => {
            let mut payload = body.unwrap_or_else(|| json!({}));
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
            Request::from_json(payload, Some(request_id.clone())).map_err(|e| {
                assert_eq!(
                    e.request_id, request_id,
                    "/_query answers with the header's id"
                );
                e.error
            })
        }
        _ => build_request(
            &fixture().tree,
            verb,
            &parts,
            query,
            body,
            request_id.clone(),
        ),
    };
    match built {
        Ok(req) => {
            assert_eq!(req.request_id, request_id);
            if path != "/_query" {
                assert!(req.controller.as_deref().is_some_and(|c| !c.is_empty()));
                assert!(req.action.as_deref().is_some_and(|a| !a.is_empty()));
                if let Some(jwt) = bearer(&parts.headers) {
                    assert_eq!(req.jwt.as_deref(), Some(jwt.as_str()), "Authorization wins");
                }
            }
            if let Some(v) = &req.volatile {
                assert!(v.is_object());
            }
            exercise_request(&req);
        }
        Err(e) => answer_error(&request_id, e),
    }
});
