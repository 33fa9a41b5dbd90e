//! A WebSocket text frame's payload → envelope, as `tollgate-ws` decodes a message: UTF-8 and JSON
//! straight into an `Envelope` (a failure is answered as `network.websocket.unexpected_error`), the
//! `{"p":1}` heartbeat, then `Request::from_envelope` with no imposed request id. A construction
//! failure is answered as a bare error; a request gets its getters exercised and its envelopes
//! serialized. Differential: the payload parsed as a `Value` fails alike, and its split
//! (`Envelope::from_value`, what `POST /_query` does) is the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tollgate_fuzz::{check_error, exercise_request, serialize};
use tollgate_protocol::errors::NETWORK_WEBSOCKET_UNEXPECTED_ERROR;
use tollgate_protocol::{Envelope, KuzzleError, Request, Response};

fuzz_target!(|payload: &[u8]| {
    let text = std::str::from_utf8(payload).map_err(|e| format!("invalid UTF-8: {e}"));
    let parsed = text
        .clone()
        .and_then(|text| serde_json::from_str::<Envelope>(text).map_err(|e| e.to_string()));
    let as_value =
        text.and_then(|text| serde_json::from_str::<Value>(text).map_err(|e| e.to_string()));
    // serde_json's `raw_value` feature (enabled in this workspace) gives the key
    // `$serde_json::private::RawValue` a meaning in a `Value` parse, not in the envelope's own
    // key reader: such payloads are only required not to panic.
    let raw_value_token = payload
        .windows(RAW_VALUE_TOKEN.len())
        .any(|w| w == RAW_VALUE_TOKEN);
    if !raw_value_token {
        // The same reason, give or take where serde_json reports it: a borrowed and an owned
        // string are rejected one column apart.
        assert_eq!(
            parsed.as_ref().err().map(|e| without_position(e)),
            as_value.as_ref().err().map(|e| without_position(e)),
            "an envelope and a value parse fail alike"
        );
    }
    let envelope = match parsed {
        Ok(envelope) => envelope,
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
    let value = match as_value {
        Ok(value) if !raw_value_token => value,
        _ => return construct(envelope),
    };
    let heartbeat =
        matches!(&value, Value::Object(map) if map.len() == 1 && map.get("p") == Some(&json!(1)));
    assert_eq!(
        envelope.sole_argument() == Some(("p", &json!(1))),
        heartbeat
    );
    if heartbeat {
        return;
    }
    // The frame parsed straight into an envelope is the split of its value.
    let split = Envelope::from_value(value);
    assert_eq!(
        format!("{envelope:?}"),
        format!("{split:?}"),
        "the parse is the split of the value"
    );
    construct(envelope);
});

fn without_position(reason: &str) -> &str {
    reason.rfind(" at line ").map_or(reason, |at| &reason[..at])
}

const RAW_VALUE_TOKEN: &[u8] = b"$serde_json::private::RawValue";

/// `Request::from_envelope` with no imposed request id, as the WebSocket transport calls it.
fn construct(envelope: Envelope) {
    let sent_id = envelope.request_id().map(str::to_owned);
    let outcome = Request::from_envelope(envelope, None);
    match outcome {
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
}
