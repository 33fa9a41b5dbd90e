//! The request envelope (`shared/spec/protocol.md` §1) and its typed argument getters (§1.2).
//!
//! Both front-ends build a [`Request`]: the WebSocket one (and `POST /_query`) from a JSON object with
//! [`Request::from_json`], the HTTP one from a route, a query string and headers with
//! [`Request::from_http`]. Arguments keep the typing rules of their origin: JSON values are typed as
//! JSON, query-string values with the HTTP rules (`?force`, `force=1`, digits for integers).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::errors::KuzzleError;

/// Maximum length of a document `_id` in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Where the arguments of a request come from, which decides how they are typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// WebSocket frames and `POST /_query`: every argument is a JSON value.
    Json(Map<String, Value>),
    /// Other HTTP routes: query-string parameters and path placeholders. `None` is a bare `?key`;
    /// a key repeated in the query string keeps every value.
    Query(Vec<(String, Vec<Option<String>>)>),
}

impl Default for Args {
    fn default() -> Self {
        Args::Json(Map::new())
    }
}

/// One argument as sent, before typing.
#[derive(Debug, Clone, Copy)]
pub enum ArgRef<'a> {
    Json(&'a Value),
    Query(&'a [Option<String>]),
}

/// The request envelope shared by every front-end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub controller: Option<String>,
    pub action: Option<String>,
    /// Authentication token; `None` means anonymous.
    pub jwt: Option<String>,
    /// Echoed back; never empty (generated when the client sent none).
    pub request_id: String,
    /// Free metadata (always an object when present), echoed back as is.
    pub volatile: Option<Value>,
    /// The action's body (always an object when present).
    pub body: Option<Map<String, Value>>,
    /// `Some(value)` when the request carried an `index` key (the value may be null).
    pub index: Option<Option<String>>,
    /// `Some(value)` when the request carried a `collection` key (the value may be null).
    pub collection: Option<Option<String>>,
    /// Every other argument, `_id` included.
    pub args: Args,
}

/// A fresh UUID v4, as used for generated request ids.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An envelope construction failure: the error and the request id to answer it with.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstructionError {
    pub error: KuzzleError,
    pub request_id: String,
}

impl Request {
    /// Builds a request from a JSON payload, running the construction checks of `protocol.md` §1.1 in
    /// order. `request_id` is the id imposed by the transport (HTTP `/_query`); when `None`, the
    /// payload's non-empty string `requestId` is used, else a fresh UUID v4.
    pub fn from_json(
        payload: Value,
        request_id: Option<String>,
    ) -> Result<Self, ConstructionError> {
        Self::from_envelope(Envelope::from_value(payload), request_id)
    }

    /// [`Request::from_json`] on a payload already split ([`Envelope`]: the WebSocket front-end
    /// parses frames straight into one).
    pub fn from_envelope(
        envelope: Envelope,
        request_id: Option<String>,
    ) -> Result<Self, ConstructionError> {
        let Envelope {
            fields,
            args,
            object: is_object,
        } = envelope;
        if !is_object {
            return Err(ConstructionError {
                error: KuzzleError::invalid_type("payload", "object"),
                request_id: request_id.unwrap_or_else(new_request_id),
            });
        }
        let payload_id = match &fields.request_id {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let imposed = request_id.is_some();
        let request_id = request_id.or(payload_id).unwrap_or_else(new_request_id);
        let fail = |error: KuzzleError| ConstructionError {
            error,
            request_id: request_id.clone(),
        };

        fn string(value: Option<Value>, key: &str) -> Result<Option<Option<String>>, KuzzleError> {
            match value {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(None)),
                Some(Value::String(s)) => Ok(Some(Some(s))),
                Some(_) => Err(KuzzleError::invalid_type(key, "string")),
            }
        }
        fn object(
            value: Option<Value>,
            key: &str,
        ) -> Result<Option<Map<String, Value>>, KuzzleError> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(o)) => Ok(Some(o)),
                Some(_) => Err(KuzzleError::invalid_type(key, "object")),
            }
        }

        // The construction checks, in the order of `protocol.md` §1.1.
        let jwt = string(fields.jwt, "jwt").map_err(fail)?.flatten();
        let volatile = object(fields.volatile, "volatile")
            .map_err(fail)?
            .map(Value::Object);
        let body = object(fields.body, "body").map_err(fail)?;
        let controller = string(fields.controller, "controller")
            .map_err(fail)?
            .flatten();
        let action = string(fields.action, "action").map_err(fail)?.flatten();
        if !imposed {
            // When the transport decides the id (`/_query`), the payload's is ignored, whatever its
            // type.
            string(fields.request_id, "requestId").map_err(fail)?;
        }
        let index = string(fields.index, "index").map_err(fail)?;
        let collection = string(fields.collection, "collection").map_err(fail)?;

        Ok(Request {
            controller,
            action,
            jwt,
            request_id,
            volatile,
            body,
            index,
            collection,
            args: Args::Json(args),
        })
    }

    /// Builds an HTTP request from query-string parameters and path placeholders (placeholders win).
    /// `index` and `collection` become envelope fields; the parameters `controller`, `action`, `body`,
    /// `volatile` and `requestId` are ignored (`protocol.md` §7.2).
    pub fn from_http(
        controller: &str,
        action: &str,
        query: Vec<(String, Option<String>)>,
        placeholders: Vec<(String, String)>,
        request_id: String,
    ) -> Self {
        // Grouped by name in first-seen order. A few names (the usual case) are found by a scan;
        // past `SCAN` names an index keeps this linear in the number of pairs.
        const SCAN: usize = 16;
        let mut args: Vec<(String, Vec<Option<String>>)> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut slot = |args: &mut Vec<(String, Vec<Option<String>>)>, key: String| -> usize {
            let found = if args.len() <= SCAN {
                args.iter().position(|(k, _)| *k == key)
            } else {
                if position.is_empty() {
                    position.extend(args.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)));
                }
                position.get(&key).copied()
            };
            found.unwrap_or_else(|| {
                if !position.is_empty() {
                    position.insert(key.clone(), args.len());
                }
                args.push((key, Vec::new()));
                args.len() - 1
            })
        };
        for (key, value) in query {
            if matches!(
                key.as_str(),
                "controller" | "action" | "body" | "volatile" | "requestId"
            ) {
                continue;
            }
            let i = slot(&mut args, key);
            args[i].1.push(value);
        }
        for (key, value) in placeholders {
            let i = slot(&mut args, key);
            args[i].1 = vec![Some(value)];
        }
        let mut take = |name: &str| -> Option<Option<String>> {
            let pos = args.iter().position(|(k, _)| k == name)?;
            let (_, values) = args.remove(pos);
            // Envelope fields are strings; a repeated key keeps its last value.
            Some(values.into_iter().last().map(Option::unwrap_or_default))
        };
        let index = take("index");
        let collection = take("collection");
        let jwt = take("jwt").flatten();
        Request {
            controller: Some(controller.to_owned()),
            action: Some(action.to_owned()),
            jwt,
            request_id,
            volatile: None,
            body: None,
            index,
            collection,
            args: Args::Query(args),
        }
    }

    /// The raw argument, or `None` when absent. A JSON `null` counts as absent.
    pub fn arg(&self, name: &str) -> Option<ArgRef<'_>> {
        match &self.args {
            Args::Json(map) => match map.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => Some(ArgRef::Json(v)),
            },
            Args::Query(list) => list
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| ArgRef::Query(v.as_slice())),
        }
    }

    /// Whether the arguments follow the HTTP query-string typing rules.
    pub fn is_query_typed(&self) -> bool {
        matches!(self.args, Args::Query(_))
    }

    /// A string argument. HTTP: a bare `?x` is `""`.
    pub fn string(&self, name: &str) -> Result<Option<&str>, KuzzleError> {
        match self.arg(name) {
            None => Ok(None),
            Some(ArgRef::Json(Value::String(s))) => Ok(Some(s)),
            Some(ArgRef::Query([single])) => Ok(Some(single.as_deref().unwrap_or(""))),
            Some(_) => Err(KuzzleError::invalid_type(name, "string")),
        }
    }

    /// A boolean argument. HTTP: bare `?x`, `true`, `1` → true; `false`, `0` → false.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, KuzzleError> {
        match self.arg(name) {
            None => Ok(None),
            Some(ArgRef::Json(Value::Bool(b))) => Ok(Some(*b)),
            Some(ArgRef::Query([single])) => match single.as_deref() {
                None | Some("true") | Some("1") => Ok(Some(true)),
                Some("false") | Some("0") => Ok(Some(false)),
                Some(_) => Err(KuzzleError::invalid_type(name, "boolean")),
            },
            Some(_) => Err(KuzzleError::invalid_type(name, "boolean")),
        }
    }

    /// A signed 64-bit integer argument. JSON: a number without fraction or exponent. HTTP:
    /// `^-?[0-9]+$`.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, KuzzleError> {
        match self.arg(name) {
            None => Ok(None),
            Some(ArgRef::Json(Value::Number(n))) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| KuzzleError::invalid_type(name, "integer")),
            Some(ArgRef::Query([Some(text)])) => parse_query_integer(text)
                .map(Some)
                .ok_or_else(|| KuzzleError::invalid_type(name, "integer")),
            Some(_) => Err(KuzzleError::invalid_type(name, "integer")),
        }
    }

    /// A list of strings. JSON: an array of strings. HTTP: comma-separated values.
    pub fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, KuzzleError> {
        match self.arg(name) {
            None => Ok(None),
            Some(ArgRef::Json(Value::Array(items))) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| KuzzleError::invalid_type(name, "string[]")),
            Some(ArgRef::Query([single])) => Ok(Some(
                single
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(_) => Err(KuzzleError::invalid_type(name, "string[]")),
        }
    }

    /// The required document `_id`: absent, null or `""` → `missing_argument`; not a string →
    /// `invalid_type`; over [`MAX_ID_BYTES`] → `invalid_argument`.
    pub fn required_id(&self) -> Result<&str, KuzzleError> {
        match self.string("_id")? {
            None | Some("") => Err(KuzzleError::missing_argument("_id")),
            Some(id) if id.len() > MAX_ID_BYTES => Err(KuzzleError::invalid_argument(
                "_id",
                "a string of at most 512 bytes",
            )),
            Some(id) => Ok(id),
        }
    }

    /// The required body: absent → `api.assert.body_required`.
    pub fn required_body(&self) -> Result<&Map<String, Value>, KuzzleError> {
        self.body
            .as_ref()
            .ok_or_else(|| KuzzleError::plain(&crate::errors::API_ASSERT_BODY_REQUIRED))
    }

    /// The request's `index` value, when it names one.
    pub fn index_name(&self) -> Option<&str> {
        self.index.as_ref().and_then(|v| v.as_deref())
    }

    /// The request's `collection` value, when it names one.
    pub fn collection_name(&self) -> Option<&str> {
        self.collection.as_ref().and_then(|v| v.as_deref())
    }
}

fn parse_query_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ws(payload: Value) -> Request {
        match Request::from_json(payload, None) {
            Ok(r) => r,
            Err(e) => panic!("construction failed: {e:?}"),
        }
    }

    fn http(query: &str) -> Request {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        Request::from_http("c", "a", pairs, vec![], "r".into())
    }

    fn err_id<T: std::fmt::Debug>(r: Result<T, KuzzleError>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => format!("{} {}", e.id(), e.message()),
        }
    }

    #[test]
    fn boolean_json_accepts_only_json_booleans() {
        assert_eq!(
            ws(json!({"force": true})).boolean("force").ok(),
            Some(Some(true))
        );
        assert_eq!(
            ws(json!({"force": false})).boolean("force").ok(),
            Some(Some(false))
        );
        assert_eq!(ws(json!({"force": null})).boolean("force").ok(), Some(None));
        assert_eq!(ws(json!({})).boolean("force").ok(), Some(None));
        for bad in [json!("true"), json!(1), json!([]), json!({})] {
            assert_eq!(
                err_id(ws(json!({ "force": bad })).boolean("force")),
                "api.assert.invalid_type Wrong type for argument \"force\" (expected: boolean)"
            );
        }
    }

    #[test]
    fn boolean_query_follows_http_rules() {
        for (q, want) in [
            ("force", true),
            ("force=true", true),
            ("force=1", true),
            ("force=false", false),
            ("force=0", false),
        ] {
            assert_eq!(http(q).boolean("force").ok(), Some(Some(want)), "{q}");
        }
        for q in ["force=yes", "force=", "force=TRUE", "force&force=false"] {
            assert_eq!(
                err_id(http(q).boolean("force")),
                "api.assert.invalid_type Wrong type for argument \"force\" (expected: boolean)",
                "{q}"
            );
        }
        assert_eq!(http("other=1").boolean("force").ok(), Some(None));
    }

    #[test]
    fn integer_json_rejects_fractions_exponents_and_strings() {
        assert_eq!(ws(json!({"n": 3})).integer("n").ok(), Some(Some(3)));
        assert_eq!(ws(json!({"n": -7})).integer("n").ok(), Some(Some(-7)));
        let parsed: Value = serde_json::from_str(r#"{"a":3.0,"b":1e3,"c":18446744073709551615}"#)
            .unwrap_or_default();
        let r = ws(parsed);
        for name in ["a", "b", "c"] {
            assert_eq!(
                err_id(r.integer(name)),
                format!(
                    "api.assert.invalid_type Wrong type for argument \"{name}\" (expected: integer)"
                )
            );
        }
        assert!(ws(json!({"n": "3"})).integer("n").is_err());
        assert!(ws(json!({"n": true})).integer("n").is_err());
    }

    #[test]
    fn integer_query_accepts_only_decimal_digits() {
        assert_eq!(http("n=3").integer("n").ok(), Some(Some(3)));
        assert_eq!(http("n=-12").integer("n").ok(), Some(Some(-12)));
        for q in [
            "n=3abc",
            "n=+3",
            "n=1e3",
            "n=",
            "n",
            "n=-",
            "n=3.0",
            "n=99999999999999999999",
            "n=1&n=2",
        ] {
            assert!(http(q).integer("n").is_err(), "{q}");
        }
    }

    #[test]
    fn string_typing_per_origin() {
        assert_eq!(http("s").string("s").ok(), Some(Some("")));
        assert_eq!(http("s=a%20b").string("s").ok(), Some(Some("a%20b")));
        assert!(http("s=a&s=b").string("s").is_err());
        assert!(ws(json!({"s": 5})).string("s").is_err());
        assert_eq!(ws(json!({"s": "x"})).string("s").ok(), Some(Some("x")));
    }

    #[test]
    fn string_list_per_origin() {
        assert_eq!(
            http("l=a,b").string_list("l").ok(),
            Some(Some(vec!["a".to_owned(), "b".to_owned()]))
        );
        assert_eq!(
            ws(json!({"l": ["a"]})).string_list("l").ok(),
            Some(Some(vec!["a".to_owned()]))
        );
        assert_eq!(
            err_id(ws(json!({"l": ["a", 1]})).string_list("l")),
            "api.assert.invalid_type Wrong type for argument \"l\" (expected: string[])"
        );
    }

    #[test]
    fn required_id_rules() {
        for p in [json!({}), json!({"_id": ""}), json!({"_id": null})] {
            assert_eq!(
                err_id(ws(p).required_id()),
                "api.assert.missing_argument Missing argument \"_id\"."
            );
        }
        assert_eq!(
            err_id(ws(json!({"_id": 123})).required_id()),
            "api.assert.invalid_type Wrong type for argument \"_id\" (expected: string)"
        );
        let long = "x".repeat(513);
        assert_eq!(
            err_id(ws(json!({ "_id": long })).required_id()),
            "api.assert.invalid_argument Invalid argument \"_id\". Expected: a string of at most 512 bytes"
        );
        let max = "é".repeat(256);
        assert_eq!(
            ws(json!({ "_id": max.clone() })).required_id().ok(),
            Some(max.as_str())
        );
    }

    #[test]
    fn construction_checks_run_in_spec_order() {
        let cases = [
            (json!([1]), "payload", "object"),
            (json!({"jwt": 1, "volatile": 1}), "jwt", "string"),
            (json!({"volatile": [], "body": 1}), "volatile", "object"),
            (json!({"body": [], "controller": 1}), "body", "object"),
            (
                json!({"controller": 1, "action": 1}),
                "controller",
                "string",
            ),
            (json!({"action": true, "requestId": 1}), "action", "string"),
            (json!({"requestId": 1, "index": 1}), "requestId", "string"),
            (json!({"index": 1}), "index", "string"),
            (json!({"collection": {}}), "collection", "string"),
        ];
        for (payload, arg, ty) in cases {
            match Request::from_json(payload.clone(), None) {
                Ok(_) => panic!("{payload} accepted"),
                Err(e) => assert_eq!(e.error, KuzzleError::invalid_type(arg, ty), "{payload}"),
            }
        }
    }

    #[test]
    fn construction_error_keeps_payload_request_id() {
        let e = Request::from_json(json!({"requestId": "r9", "body": 3}), None);
        assert_eq!(e.err().map(|e| e.request_id), Some("r9".to_owned()));
        let e = Request::from_json(json!({"requestId": "", "body": 3}), None);
        assert_eq!(e.err().map(|e| e.request_id.len()), Some(36));
    }

    #[test]
    fn from_json_splits_envelope_fields_from_arguments() {
        let r = ws(
            json!({"controller":"security","action":"updateProfile","_id":"p","index":null,"force":true,"requestId":"r1","volatile":{"a":1}}),
        );
        assert_eq!(r.controller.as_deref(), Some("security"));
        assert_eq!(r.request_id, "r1");
        assert_eq!(r.index, Some(None));
        assert_eq!(r.collection, None);
        assert_eq!(r.volatile, Some(json!({"a":1})));
        assert_eq!(
            r.args,
            Args::Json(
                json!({"_id":"p","force":true})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            )
        );
    }

    #[test]
    fn from_http_groups_many_repeated_keys_in_first_seen_order() {
        let mut query = Vec::new();
        for i in 0..20_000 {
            query.push((format!("k{}", i % 10_000), Some(i.to_string())));
        }
        query.push(("solo".into(), Some("x".into())));
        let r = Request::from_http("c", "a", query, vec![("k5".into(), "p".into())], "r".into());
        let Args::Query(args) = &r.args else {
            panic!("query args expected");
        };
        assert_eq!(args.len(), 10_001);
        assert_eq!(
            args[3],
            (
                "k3".to_owned(),
                vec![Some("3".into()), Some("10003".into())]
            )
        );
        assert_eq!(args[5], ("k5".to_owned(), vec![Some("p".into())]));
        assert_eq!(
            r.string("solo").map(|v| v.map(str::to_owned)),
            Ok(Some("x".into()))
        );
        // A repeated key is refused where one value is expected.
        assert!(r.string("k9999").is_err());
    }

    #[test]
    fn from_http_ignores_reserved_parameters_and_lets_placeholders_win() {
        let r = Request::from_http(
            "security",
            "getProfile",
            vec![
                ("controller".into(), Some("x".into())),
                ("_id".into(), Some("q".into())),
                ("index".into(), Some("i".into())),
                ("jwt".into(), Some("t".into())),
            ],
            vec![("_id".into(), "p".into())],
            "r".into(),
        );
        assert_eq!(r.controller.as_deref(), Some("security"));
        assert_eq!(r.string("_id").ok(), Some(Some("p")));
        assert_eq!(r.index, Some(Some("i".into())));
        assert_eq!(r.jwt.as_deref(), Some("t"));
        assert!(r.arg("controller").is_none());
    }
}
