//! The typed argument getters of `Request` for both origins: JSON arguments (WebSocket and
//! `/_query`) and HTTP query-string arguments with path placeholders (`Request::from_http`).
//!
//! Input: one mode byte, then either a JSON payload (even mode; bit 1 imposes the request id as
//! `/_query` does) or, for an odd mode, `<query string>#<placeholders as a query string>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_fuzz::{ARG_NAMES, check_error, exercise_request};
use tollgate_http::parse_query;
use tollgate_protocol::{ArgRef, Request};

fn query_rules(req: &Request, name: &str) {
    let Some(ArgRef::Query(values)) = req.arg(name) else {
        return;
    };
    match values {
        [single] => {
            let text = single.as_deref().unwrap_or("");
            assert_eq!(req.string(name).ok().flatten(), Some(text));
            let bool_expected = match single.as_deref() {
                None | Some("true") | Some("1") => Some(true),
                Some("false") | Some("0") => Some(false),
                Some(_) => None,
            };
            assert_eq!(req.boolean(name).ok().flatten(), bool_expected);
            let digits = text.strip_prefix('-').unwrap_or(text);
            let int_expected = (single.is_some()
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<i64>().ok())
            .flatten();
            assert_eq!(req.integer(name).ok().flatten(), int_expected, "{text:?}");
            let list = req.string_list(name).ok().flatten().unwrap_or_default();
            assert!(list.iter().all(|s| !s.is_empty() && !s.contains(',')));
        }
        _ => {
            // A repeated key is none of the scalar types.
            assert!(req.string(name).is_err());
            assert!(req.boolean(name).is_err());
            assert!(req.integer(name).is_err());
        }
    }
}

fn json_rules(req: &Request, name: &str) {
    let Some(ArgRef::Json(value)) = req.arg(name) else {
        return;
    };
    assert!(!value.is_null());
    assert_eq!(req.string(name).is_ok(), value.is_string());
    assert_eq!(req.boolean(name).is_ok(), value.is_boolean());
    if let Ok(Some(n)) = req.integer(name) {
        assert_eq!(value.as_i64(), Some(n));
    }
    if let (Ok(Some(list)), Value::Array(items)) = (req.string_list(name), value) {
        assert_eq!(list.len(), items.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let req = if mode % 2 == 0 {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let imposed = (mode & 2 != 0).then(|| "req-imposed".to_owned());
        match Request::from_json(value, imposed.clone()) {
            Ok(req) => {
                if let Some(id) = imposed {
                    assert_eq!(req.request_id, id);
                }
                req
            }
            Err(e) => {
                check_error(&e.error);
                return;
            }
        }
    } else {
        let (query, placeholders) = text.split_once('#').unwrap_or((text, ""));
        let placeholders: Vec<(String, String)> = parse_query(placeholders)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let req = Request::from_http(
            "security",
            "updateProfile",
            parse_query(query),
            placeholders.clone(),
            "req-http".to_owned(),
        );
        // Placeholders win over query parameters of the same name (the last of a repeated one).
        for (k, _) in &placeholders {
            let last = placeholders
                .iter()
                .rev()
                .find(|(k2, _)| k2 == k)
                .map(|(_, v)| v.as_str());
            match k.as_str() {
                "index" => assert_eq!(req.index_name(), last),
                "collection" => assert_eq!(req.collection_name(), last),
                "jwt" => assert_eq!(req.jwt.as_deref(), last),
                "controller" | "action" | "body" | "volatile" | "requestId" => {}
                _ => assert_eq!(req.string(k).ok().flatten(), last),
            }
        }
        assert!(req.body.is_none() && req.volatile.is_none());
        req
    };
    exercise_request(&req);
    let mut names: Vec<String> = ARG_NAMES.iter().map(|s| (*s).to_owned()).collect();
    match &req.args {
        tollgate_protocol::Args::Json(map) => names.extend(map.keys().cloned()),
        tollgate_protocol::Args::Query(list) => names.extend(list.iter().map(|(k, _)| k.clone())),
    }
    for name in &names {
        query_rules(&req, name);
        json_rules(&req, name);
    }
});
