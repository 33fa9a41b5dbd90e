//! `security:exportUsers` (`docs/api/users.md` §12.7): every user matching a query, as
//! newline-delimited JSON or CSV, in the formats of Kuzzle's `document:export`. Over HTTP the text is
//! the response body (with its `Content-Type` and `Content-Disposition`); over WebSocket it is the
//! envelope's `result`, a string.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use tollgate_core::{ActionDef, ArgType, Context, route};
use tollgate_protocol::{KuzzleError, Request};

use crate::controller::SecurityController;
use crate::query::{self, Query};
use crate::{USER, scan, store_error};

/// What a CSV cell shows for an object value (Kuzzle's `[OBJECT]`).
const OBJECT_CELL: &str = "[OBJECT]";
/// Most columns of a CSV export (`fields`, or the content fields found).
pub const MAX_FIELDS: usize = 1_000;

pub(crate) fn security_actions() -> Vec<ActionDef> {
    use ArgType::{MapOf, Object, OneOf, String, StringList};
    vec![
        ActionDef::new(
            "exportUsers",
            &[
                route("GET", "/users/_export"),
                route("POST", "/users/_export"),
            ],
        )
        .describe(
            "Every user matching a query (default: all), by _id, as newline-delimited JSON \
             (jsonl) or CSV; never credentials. Over HTTP the text is the response body.",
        )
        .arg(
            "format",
            OneOf(&["jsonl", "csv"]),
            "jsonl (default): a header line, then {\"_id\",\"body\"} a line; csv: a header row, \
             then _id and the fields.",
        )
        .arg(
            "separator",
            String,
            "CSV: the one-character separator (default \",\").",
        )
        .arg(
            "fields",
            StringList,
            "CSV: the columns after _id, dotted paths into the content (default: every field \
             found, sorted).",
        )
        .text_body(&["application/x-ndjson", "text/csv"])
        .body(false, "Optional: the query and the CSV column names.")
        .field(
            "query",
            Object,
            "The users to export (searchUsers' query subset).",
        )
        .field(
            "fields",
            StringList,
            "CSV: the columns after _id (as the argument).",
        )
        .field(
            "fieldsName",
            MapOf(&String),
            "CSV: header names by field (default: the field itself).",
        ),
    ]
}

/// The checked arguments of an export.
struct Export {
    csv: bool,
    separator: char,
    /// CSV columns named by the caller (`None`: every field found).
    fields: Option<Vec<String>>,
    names: Map<String, Value>,
    query: Query,
}

fn arguments(req: &Request) -> Result<Export, KuzzleError> {
    let csv = match req.string("format")? {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(KuzzleError::invalid_argument(
                "format",
                r#""jsonl" or "csv""#,
            ));
        }
    };
    let separator = match req.string("separator")? {
        None => ',',
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if !matches!(c, '"' | '\r' | '\n') => c,
                _ => {
                    return Err(KuzzleError::invalid_argument(
                        "separator",
                        "one character, not a double quote or a line break",
                    ));
                }
            }
        }
    };
    let body = req.body.as_ref();
    if let Some(key) = body.and_then(|b| {
        b.keys()
            .find(|k| !matches!(k.as_str(), "query" | "fields" | "fieldsName"))
    }) {
        return Err(KuzzleError::unexpected_argument(
            format!("body.{key}"),
            &["query", "fields", "fieldsName"],
        ));
    }
    let fields = match body.and_then(|b| b.get("fields")).filter(|v| !v.is_null()) {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| KuzzleError::invalid_type("body.fields", "string[]"))?,
        ),
        Some(_) => return Err(KuzzleError::invalid_type("body.fields", "string[]")),
        None => req.string_list("fields")?,
    };
    if fields.as_ref().is_some_and(|f| f.len() > MAX_FIELDS) {
        return Err(KuzzleError::invalid_argument(
            "fields",
            &format!("at most {MAX_FIELDS} fields"),
        ));
    }
    let names = match body
        .and_then(|b| b.get("fieldsName"))
        .filter(|v| !v.is_null())
    {
        Some(Value::Object(names)) if names.values().all(Value::is_string) => names.clone(),
        Some(_) => {
            return Err(KuzzleError::invalid_type(
                "body.fieldsName",
                "object of strings",
            ));
        }
        None => Map::new(),
    };
    let query = match body.and_then(|b| b.get("query")).filter(|v| !v.is_null()) {
        Some(q) => query::parse(q, "body.query")?,
        None => Query::MatchAll,
    };
    Ok(Export {
        csv,
        separator,
        fields,
        names,
        query,
    })
}

/// Adds the dotted paths of `value`'s leaves (arrays are leaves) under `prefix` to `out`.
fn leaf_paths(value: &Map<String, Value>, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, v) in value {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Object(inner) if !inner.is_empty() => leaf_paths(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// The value at dotted `path` in `source`: a nested key first, else a key holding the dots.
fn at_path<'a>(source: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = source.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    at_path(source.get(head)?, rest)
}

/// One CSV cell: strings as they are, other scalars as JSON, arrays as JSON, objects as
/// `[OBJECT]`, absent and null as nothing; quoted (RFC 4180) when it holds the separator, a double
/// quote or a line break.
fn cell(value: Option<&Value>, separator: char, out: &mut String) {
    let text = match value {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        Some(Value::Object(_)) => std::borrow::Cow::Borrowed(OBJECT_CELL),
        Some(v) => std::borrow::Cow::Owned(v.to_string()),
    };
    push_cell(&text, separator, out);
}

fn push_cell(text: &str, separator: char, out: &mut String) {
    if text.contains([separator, '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

impl SecurityController {
    /// `security:exportUsers`.
    pub(crate) async fn export_users(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let export = arguments(req)?;
        let mut users: Vec<(String, Value)> = Vec::new();
        scan(self.store.as_ref(), USER, "", |docs| {
            users.extend(
                docs.into_iter()
                    .filter(|d| export.query.matches(&d.id, &d.body))
                    .map(|d| (d.id, d.body)),
            );
            true
        })
        .await
        .map_err(store_error)?;
        let (text, content_type, extension) = if export.csv {
            (csv(&export, &users)?, "text/csv; charset=utf-8", "csv")
        } else {
            (
                jsonl(&users),
                "application/x-ndjson; charset=utf-8",
                "jsonl",
            )
        };
        ctx.reply.add("Content-Type", content_type.to_owned());
        ctx.reply.add(
            "Content-Disposition",
            format!("attachment; filename=\"users.{extension}\""),
        );
        Ok(Value::String(text))
    }
}

/// `{"type":"users"}`, then `{"_id":…,"body":…}` a line, each line ending with `\n`.
fn jsonl(users: &[(String, Value)]) -> String {
    let mut out = String::from("{\"type\":\"users\"}\n");
    for (id, body) in users {
        out.push_str(&json!({"_id": id, "body": body}).to_string());
        out.push('\n');
    }
    out
}

/// A header row (`_id`, then the fields or their `fieldsName`), then a row per user.
fn csv(export: &Export, users: &[(String, Value)]) -> Result<String, KuzzleError> {
    let fields: Vec<String> = match &export.fields {
        // `_id` is always the first column.
        Some(fields) => fields.iter().filter(|f| *f != "_id").cloned().collect(),
        None => {
            let mut found = BTreeSet::new();
            for (_, body) in users {
                if let Value::Object(o) = body {
                    leaf_paths(o, "", &mut found);
                }
                if found.len() > MAX_FIELDS {
                    return Err(KuzzleError::invalid_argument(
                        "fields",
                        &format!(
                            "a list of at most {MAX_FIELDS} fields: the users have more than that"
                        ),
                    ));
                }
            }
            found.into_iter().collect()
        }
    };
    let sep = export.separator;
    let mut out = String::new();
    for (i, field) in std::iter::once("_id")
        .chain(fields.iter().map(String::as_str))
        .enumerate()
    {
        if i > 0 {
            out.push(sep);
        }
        let name = export
            .names
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or(field);
        push_cell(name, sep, &mut out);
    }
    out.push('\n');
    for (id, body) in users {
        push_cell(id, sep, &mut out);
        for field in &fields {
            out.push(sep);
            cell(at_path(body, field), sep, &mut out);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        let mut out = String::new();
        for v in [
            json!("plain"),
            json!("a,b"),
            json!("say \"hi\""),
            json!("two\nlines"),
            json!(3),
            json!(true),
            json!(["admin", "default"]),
            json!({"k": 1}),
            Value::Null,
        ] {
            cell(Some(&v), ',', &mut out);
            out.push('|');
        }
        cell(None, ',', &mut out);
        assert_eq!(
            out,
            r#"plain|"a,b"|"say ""hi"""|"two
lines"|3|true|"[""admin"",""default""]"|[OBJECT]||"#
        );
    }

    #[test]
    fn leaf_paths_flatten_objects_and_keep_arrays() {
        let body = json!({"profileIds":["p"],"address":{"city":"Nyc","geo":{"lat":1}},"empty":{}});
        let mut out = BTreeSet::new();
        if let Value::Object(o) = &body {
            leaf_paths(o, "", &mut out);
        }
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["address.city", "address.geo.lat", "empty", "profileIds"]
        );
        assert_eq!(at_path(&body, "address.geo.lat"), Some(&json!(1)));
        assert_eq!(at_path(&body, "address.zip"), None);
    }
}
