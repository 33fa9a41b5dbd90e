//! The response envelope (`shared/spec/protocol.md` §2): fixed key order, `index`/`collection` only
//! when the request carried them, `room` only on WebSocket.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::errors::KuzzleError;
use crate::request::Request;

/// An action's result: a JSON value, or JSON serialized ahead of time (cached documents are answered
/// without being cloned and serialized again).
#[derive(Debug, Clone)]
pub enum Payload {
    Value(Value),
    Raw(Arc<RawValue>),
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload::Value(value)
    }
}

impl Payload {
    /// The result as a JSON value (parsing pre-serialized JSON).
    pub fn to_value(&self) -> Value {
        match self {
            Payload::Value(v) => v.clone(),
            Payload::Raw(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        match self {
            Payload::Value(v) => v == other,
            Payload::Raw(_) => self.to_value() == *other,
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Value(v) => v.serialize(s),
            Payload::Raw(raw) => raw.serialize(s),
        }
    }
}

/// A response, success or error, before it is turned into bytes by a front-end.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub request_id: String,
    pub controller: Option<String>,
    pub action: Option<String>,
    pub index: Option<Option<String>>,
    pub collection: Option<Option<String>>,
    pub volatile: Option<Value>,
    pub status: u16,
    pub result: Payload,
    pub error: Option<KuzzleError>,
    /// Protocol headers set by the action (only `Set-Cookie` today, cookie authentication): the
    /// HTTP front-end sends them as headers; they never appear in the JSON `headers` (always `{}`,
    /// as Kuzzle keeps `set-cookie` out of it) nor on WebSocket.
    pub headers: Vec<(String, String)>,
}

/// How to serialize an envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoding {
    /// Append `room` (= requestId): WebSocket responses.
    pub room: bool,
    /// Two-space indentation (`?pretty`).
    pub pretty: bool,
}

#[derive(Serialize)]
struct Wire<'a> {
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<&'a Option<String>>,
    controller: Option<&'a str>,
    error: Option<&'a KuzzleError>,
    headers: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a Option<String>>,
    node: &'a str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    result: &'a Payload,
    status: u16,
    volatile: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
}

/// Serializes as `{}`.
struct Empty;
impl Serialize for Empty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl Response {
    /// A success answering `req`.
    pub fn success(req: &Request, result: impl Into<Payload>) -> Self {
        Self::for_request(req, 200, result.into(), None)
    }

    /// An error answering `req`.
    pub fn failure(req: &Request, error: KuzzleError) -> Self {
        let result = error.result().cloned().unwrap_or(Value::Null);
        Self::for_request(req, error.status(), result.into(), Some(error))
    }

    /// The answer to `req`, which it consumes: its echoed fields move into the response.
    pub fn answer(req: Request, outcome: Result<Payload, KuzzleError>) -> Self {
        let (status, result, error) = match outcome {
            Ok(result) => (200, result, None),
            Err(error) => {
                let result = error.result().cloned().unwrap_or(Value::Null);
                (error.status(), result.into(), Some(error))
            }
        };
        Self {
            request_id: req.request_id,
            controller: req.controller,
            action: req.action,
            index: req.index,
            collection: req.collection,
            volatile: req.volatile,
            status,
            result,
            error,
            headers: Vec::new(),
        }
    }

    /// An error raised before an envelope could be built: `controller`, `action` and `volatile` are
    /// null and there is no `index`/`collection`.
    pub fn bare_failure(request_id: String, error: KuzzleError) -> Self {
        Self {
            request_id,
            controller: None,
            action: None,
            index: None,
            collection: None,
            volatile: None,
            status: error.status(),
            result: Payload::Value(Value::Null),
            error: Some(error),
            headers: Vec::new(),
        }
    }

    /// An envelope with no controller or action (special endpoints such as `/_healthcheck`).
    pub fn special(request_id: String, status: u16, result: Value) -> Self {
        Self {
            request_id,
            controller: None,
            action: None,
            index: None,
            collection: None,
            volatile: None,
            status,
            result: Payload::Value(result),
            error: None,
            headers: Vec::new(),
        }
    }

    fn for_request(
        req: &Request,
        status: u16,
        result: Payload,
        error: Option<KuzzleError>,
    ) -> Self {
        Self {
            request_id: req.request_id.clone(),
            controller: req.controller.clone(),
            action: req.action.clone(),
            index: req.index.clone(),
            collection: req.collection.clone(),
            volatile: req.volatile.clone(),
            status,
            result,
            error,
            headers: Vec::new(),
        }
    }

    /// Serializes the envelope; `node` is the node id.
    pub fn to_bytes(&self, node: &str, encoding: Encoding) -> Vec<u8> {
        let reparsed;
        let result = match (&self.result, encoding.pretty) {
            // Pre-serialized JSON is written as is; pretty output indents it too.
            (Payload::Raw(_), true) => {
                reparsed = Payload::Value(self.result.to_value());
                &reparsed
            }
            _ => &self.result,
        };
        let wire = Wire {
            action: self.action.as_deref(),
            collection: self.collection.as_ref(),
            controller: self.controller.as_deref(),
            error: self.error.as_ref(),
            headers: Empty,
            index: self.index.as_ref(),
            node,
            request_id: &self.request_id,
            result,
            status: self.status,
            volatile: self.volatile.as_ref(),
            room: encoding.room.then_some(self.request_id.as_str()),
        };
        to_json_bytes(&wire, encoding.pretty)
    }
}

impl Response {
    /// Serializes the envelope as a string (WebSocket text frames).
    pub fn to_text(&self, node: &str, encoding: Encoding) -> String {
        // JSON produced by serde_json is always valid UTF-8.
        String::from_utf8(self.to_bytes(node, encoding))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Serializes any value compactly, or with a two-space indent. Serializing a value built from
/// strings, numbers, maps and vectors cannot fail; should it, the bytes of `null` are returned.
pub fn to_json_bytes<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Vec<u8> {
    let out = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    out.unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(r: &Response, room: bool) -> String {
        String::from_utf8(r.to_bytes(
            "knode-tollgate-1",
            Encoding {
                room,
                pretty: false,
            },
        ))
        .unwrap_or_default()
    }

    #[test]
    fn success_envelope_matches_spec_bytes() {
        let req = Request::from_json(
            json!({"controller":"server","action":"now","requestId":"r1"}),
            None,
        )
        .unwrap_or_default();
        let r = Response::success(&req, json!({"now": 1795782600000u64}));
        assert_eq!(
            text(&r, true),
            r#"{"action":"now","controller":"server","error":null,"headers":{},"node":"knode-tollgate-1","requestId":"r1","result":{"now":1795782600000},"status":200,"volatile":null,"room":"r1"}"#
        );
    }

    #[test]
    fn error_envelope_keeps_index_when_carried() {
        let req = Request::from_json(
            json!({"controller":"index","action":"create","index":"Nyc","requestId":"r2"}),
            None,
        )
        .unwrap_or_default();
        let e = KuzzleError::new(
            &crate::errors::SERVICES_STORAGE_INVALID_INDEX_NAME,
            vec![json!("Nyc")],
        );
        assert_eq!(
            text(&Response::failure(&req, e), true),
            r#"{"action":"create","controller":"index","error":{"code":16842793,"id":"services.storage.invalid_index_name","message":"The index name \"Nyc\" is invalid","props":["Nyc"],"status":400},"headers":{},"index":"Nyc","node":"knode-tollgate-1","requestId":"r2","result":null,"status":400,"volatile":null,"room":"r2"}"#
        );
    }

    #[test]
    fn null_collection_is_echoed_and_http_has_no_room() {
        let req = Request::from_json(
            json!({"controller":"c","action":"a","collection":null,"requestId":"r"}),
            None,
        )
        .unwrap_or_default();
        assert_eq!(
            text(&Response::success(&req, json!(true)), false),
            r#"{"action":"a","collection":null,"controller":"c","error":null,"headers":{},"node":"knode-tollgate-1","requestId":"r","result":true,"status":200,"volatile":null}"#
        );
    }

    #[test]
    fn an_error_may_carry_a_result() {
        let req = Request::from_json(
            json!({"controller":"server","action":"healthCheck","requestId":"h"}),
            None,
        )
        .unwrap_or_default();
        let e = KuzzleError::new(
            &crate::errors::CORE_FATAL_SERVICE_UNAVAILABLE,
            vec![json!("storageEngine: down")],
        )
        .with_result(json!({"services":{"storageEngine":"red"},"status":"red"}));
        assert_eq!(
            text(&Response::failure(&req, e), false),
            r#"{"action":"healthCheck","controller":"server","error":{"code":2,"id":"core.fatal.service_unavailable","message":"Service unavailable: storageEngine: down.","props":["storageEngine: down"],"status":500},"headers":{},"node":"knode-tollgate-1","requestId":"h","result":{"services":{"storageEngine":"red"},"status":"red"},"status":500,"volatile":null}"#
        );
    }

    #[test]
    fn strings_are_escaped_like_json_stringify() {
        let r = Response::special("\u{1}é\"\\\n".into(), 200, Value::Null);
        assert!(text(&r, false).contains(r#""requestId":"\u0001é\"\\\n""#));
    }
}
