//! A WebSocket text frame's payload → envelope, as `tollgate-ws` decodes a message: UTF-8 and JSON
//! (a failure is answered as `network.websocket.unexpected_error`), the `{"p":1}` heartbeat, then
//! `Request::from_json` with no imposed request id. A construction failure is answered as a bare
//! error; a request gets its getters exercised and its envelopes serialized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tollgate_fuzz::{check_error, exercise_request, serialize};
use tollgate_protocol::errors::NETWORK_WEBSOCKET_UNEXPECTED_ERROR;
use tollgate_protocol::{KuzzleError, Request, Response};

fuzz_target!(|payload: &[u8]| {
    let parsed = std::str::from_utf8(payload)
        .map_err(|e| format!("invalid UTF-8: {e}"))
        .and_then(|text| serde_json::from_str::<Value>(text).map_err(|e| e.to_string()));
    let value = match parsed {
        Ok(value) => value,
        Err(reason) => {
            // Answered as `network.websocket.unexpected_error` with the reason.
            let e = KuzzleError::new(
                &NETWORK_WEBSOCKET_UNEXPECTED_ERROR,
                vec![Value::String(reason)],
            );
            check_error(&e);
            return serialize(&Response::bare_failure("req-fuzz".to_owned(), e));
        }
    };
    if let Value::Object(map) = &value
        && map.len() == 1
        && map.get("p") == Some(&json!(1))
    {
        return;
    }
    let sent_id = match value.get("requestId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match Request::from_json(value, None) {
        Ok(req) => {
            if let Some(id) = &sent_id {
                assert_eq!(&req.request_id, id, "the client's requestId is kept");
            }
            exercise_request(&req);
        }
        Err(e) => {
            assert!(!e.request_id.is_empty());
            if let Some(id) = &sent_id {
                assert_eq!(
                    &e.request_id, id,
                    "a construction error answers the client's requestId"
                );
            }
            check_error(&e.error);
            serialize(&Response::bare_failure(e.request_id, e.error));
        }
    }
});
