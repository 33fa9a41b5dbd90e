//! A subset of the Elasticsearch query DSL, evaluated over stored JSON documents (`_id` and
//! `_source`): what the `security` searches accept in `body.query` and `body.sort`
//! (`docs/api/security.md` §1.11).
//!
//! Clauses: `match_all`, `ids` (`values`), `term`, `terms`, `prefix`, `exists` (`field`), and `bool`
//! with `must`, `filter`, `should` (`minimum_should_match`) and `must_not`. A field path walks into
//! objects at each dot, and into every element of an array on the way, as Elasticsearch does for
//! arrays of objects that are not `nested`: `policies.roleId` matches when any policy's `roleId` does.
//! Values compare exactly (keyword semantics: no analysis), numbers by value. `_id` names the
//! document id.
//!
//! Anything else is refused with `api.assert.invalid_argument` naming the clause's path, e.g.
//! `body.query.bool.must[1].range`; type errors with `api.assert.invalid_type`. Bounds: [`MAX_DEPTH`]
//! nested clauses, [`MAX_CLAUSES`] clauses in a query, [`MAX_VALUES`] values in one `terms` or `ids`,
//! [`MAX_SORT_KEYS`] sort keys, [`MAX_PATH_BYTES`] bytes in a field path.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use tollgate_protocol::KuzzleError;

/// Deepest nesting of clauses (`bool` inside `bool`…): the top clause is at depth 1.
pub const MAX_DEPTH: usize = 10;
/// Most clauses in one query, every `bool` and leaf clause counted.
pub const MAX_CLAUSES: usize = 256;
/// Most values in one `terms` or `ids` clause.
pub const MAX_VALUES: usize = 1024;
/// Most keys in a `sort`.
pub const MAX_SORT_KEYS: usize = 8;
/// Longest field path, in bytes.
pub const MAX_PATH_BYTES: usize = 256;

/// The clauses this engine evaluates, as named in its errors.
const SUPPORTED: &str = "one of the clauses match_all, ids, term, terms, prefix, exists, bool";

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    MatchAll,
    Ids(Vec<String>),
    Term(Field, Value),
    Terms(Field, Vec<Value>),
    Prefix(Field, String),
    Exists(Field),
    Bool(Box<Bool>),
}

/// A `bool` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Bool {
    pub must: Vec<Query>,
    pub filter: Vec<Query>,
    pub should: Vec<Query>,
    pub must_not: Vec<Query>,
    /// How many `should` clauses must match.
    pub minimum_should_match: usize,
}

/// A field: `_id`, or a dotted path into `_source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Id,
    Path(Vec<String>),
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// `None`: `_score`, the same for every hit (no relevance scoring), so it orders nothing.
    pub field: Option<Field>,
    pub descending: bool,
}

fn invalid(path: &str, expected: &str) -> KuzzleError {
    KuzzleError::invalid_argument(path, expected)
}

struct Parser {
    clauses: usize,
}

/// Parses `body.query` (`path` is how errors name it). `{}` is `match_all`, as in Elasticsearch.
pub fn parse(query: &Value, path: &str) -> Result<Query, KuzzleError> {
    let mut parser = Parser { clauses: 0 };
    match query {
        Value::Object(map) if map.is_empty() => Ok(Query::MatchAll),
        _ => parser.clause(query, path, 1),
    }
}

impl Parser {
    fn clause(&mut self, value: &Value, path: &str, depth: usize) -> Result<Query, KuzzleError> {
        if depth > MAX_DEPTH {
            return Err(invalid(
                path,
                &format!("at most {MAX_DEPTH} nested query clauses"),
            ));
        }
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(invalid(
                path,
                &format!("at most {MAX_CLAUSES} clauses in a query"),
            ));
        }
        let Value::Object(map) = value else {
            return Err(KuzzleError::invalid_type(path, "object"));
        };
        let mut keys = map.iter();
        let (Some((name, body)), None) = (keys.next(), keys.next()) else {
            return Err(invalid(
                path,
                &format!("an object with exactly {SUPPORTED}"),
            ));
        };
        let here = format!("{path}.{name}");
        match name.as_str() {
            "match_all" => {
                object_with(body, &here, &["boost"])?;
                Ok(Query::MatchAll)
            }
            "ids" => {
                let map = object_with(body, &here, &["values", "boost"])?;
                let values = match map.get("values") {
                    None => return Err(KuzzleError::missing_argument(format!("{here}.values"))),
                    Some(v) => strings(v, &format!("{here}.values"))?,
                };
                Ok(Query::Ids(values))
            }
            "term" => {
                let (field, value) = single_field(body, &here)?;
                let value = match value {
                    Value::Object(opts) => {
                        let at = format!("{here}.{}", field_name(&field));
                        only_keys(opts, &at, &["value", "boost"])?;
                        opts.get("value")
                            .ok_or_else(|| KuzzleError::missing_argument(format!("{at}.value")))?
                    }
                    v => v,
                };
                Ok(Query::Term(field.clone(), scalar(value, &here)?))
            }
            "terms" => {
                let map = object_with(body, &here, &[])?;
                let mut fields = map.iter().filter(|(k, _)| *k != "boost");
                let (Some((name, values)), None) = (fields.next(), fields.next()) else {
                    return Err(invalid(&here, "an object with exactly one field"));
                };
                let field = parse_field(name, &here)?;
                let at = format!("{here}.{name}");
                let Value::Array(items) = values else {
                    return Err(KuzzleError::invalid_type(at, "array"));
                };
                if items.len() > MAX_VALUES {
                    return Err(invalid(&at, &format!("at most {MAX_VALUES} values")));
                }
                let items = items
                    .iter()
                    .map(|v| scalar(v, &at))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Query::Terms(field, items))
            }
            "prefix" => {
                let (field, value) = single_field(body, &here)?;
                let at = format!("{here}.{}", field_name(&field));
                let value = match value {
                    Value::Object(opts) => {
                        only_keys(opts, &at, &["value", "boost"])?;
                        opts.get("value")
                            .ok_or_else(|| KuzzleError::missing_argument(format!("{at}.value")))?
                    }
                    v => v,
                };
                let Value::String(prefix) = value else {
                    return Err(KuzzleError::invalid_type(at, "string"));
                };
                Ok(Query::Prefix(field.clone(), prefix.clone()))
            }
            "exists" => {
                let map = object_with(body, &here, &["field", "boost"])?;
                match map.get("field") {
                    None => Err(KuzzleError::missing_argument(format!("{here}.field"))),
                    Some(Value::String(f)) => Ok(Query::Exists(parse_field(f, &here)?)),
                    Some(_) => Err(KuzzleError::invalid_type(format!("{here}.field"), "string")),
                }
            }
            "bool" => self.boolean(body, &here, depth),
            _ => Err(invalid(&here, SUPPORTED)),
        }
    }

    fn boolean(&mut self, body: &Value, path: &str, depth: usize) -> Result<Query, KuzzleError> {
        let map = object_with(
            body,
            path,
            &[
                "must",
                "filter",
                "should",
                "must_not",
                "minimum_should_match",
                "boost",
            ],
        )?;
        let mut list = |name: &str| -> Result<Vec<Query>, KuzzleError> {
            let at = format!("{path}.{name}");
            match map.get(name) {
                None => Ok(Vec::new()),
                Some(v @ Value::Object(_)) => Ok(vec![self.clause(v, &at, depth + 1)?]),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.clause(v, &format!("{at}[{i}]"), depth + 1))
                    .collect(),
                Some(_) => Err(KuzzleError::invalid_type(at, "object or array")),
            }
        };
        let must = list("must")?;
        let filter = list("filter")?;
        let should = list("should")?;
        let must_not = list("must_not")?;
        // Elasticsearch's default: 1 when the bool has only should clauses, else 0.
        let default = usize::from(must.is_empty() && filter.is_empty() && !should.is_empty());
        let minimum_should_match = match map.get("minimum_should_match") {
            None => default,
            Some(v) => minimum(v, should.len(), &format!("{path}.minimum_should_match"))?,
        };
        Ok(Query::Bool(Box::new(Bool {
            must,
            filter,
            should,
            must_not,
            minimum_should_match,
        })))
    }
}

/// `minimum_should_match`: an integer (negative: that many may be missing) or a string of one, or
/// a percentage (`"75%"`, `"-25%"`, rounded down), of the `should` clauses.
fn minimum(value: &Value, should: usize, path: &str) -> Result<usize, KuzzleError> {
    let expected = "an integer or a percentage such as \"75%\"";
    let (number, percent) = match value {
        Value::Number(n) => (n.as_i64().ok_or_else(|| invalid(path, expected))?, false),
        Value::String(s) => {
            let s = s.trim();
            let (digits, percent) = match s.strip_suffix('%') {
                Some(d) => (d, true),
                None => (s, false),
            };
            (
                digits.parse::<i64>().map_err(|_| invalid(path, expected))?,
                percent,
            )
        }
        _ => return Err(KuzzleError::invalid_type(path, "integer or string")),
    };
    let total = i64::try_from(should).unwrap_or(i64::MAX);
    let count = if percent {
        if !(-100..=100).contains(&number) {
            return Err(invalid(path, expected));
        }
        total * number.abs() / 100
    } else {
        number.abs()
    };
    let required = if number < 0 { total - count } else { count };
    Ok(usize::try_from(required.clamp(0, total)).unwrap_or(0))
}

fn object_with<'a>(
    value: &'a Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, KuzzleError> {
    let Value::Object(map) = value else {
        return Err(KuzzleError::invalid_type(path, "object"));
    };
    if !allowed.is_empty() {
        only_keys(map, path, allowed)?;
    }
    Ok(map)
}

fn only_keys(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), KuzzleError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(KuzzleError::unexpected_argument(
            format!("{path}.{k}"),
            allowed,
        )),
        None => Ok(()),
    }
}

/// `{"<field>": <value>}` with exactly one field.
fn single_field<'a>(value: &'a Value, path: &str) -> Result<(Field, &'a Value), KuzzleError> {
    let map = object_with(value, path, &[])?;
    let mut fields = map.iter();
    let (Some((name, v)), None) = (fields.next(), fields.next()) else {
        return Err(invalid(path, "an object with exactly one field"));
    };
    Ok((parse_field(name, path)?, v))
}

fn field_name(field: &Field) -> String {
    match field {
        Field::Id => "_id".to_owned(),
        Field::Path(p) => p.join("."),
    }
}

/// A field path: non-empty segments separated by dots, at most [`MAX_PATH_BYTES`] bytes.
fn parse_field(name: &str, path: &str) -> Result<Field, KuzzleError> {
    if name == "_id" {
        return Ok(Field::Id);
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(invalid(
            path,
            &format!("a field path of at most {MAX_PATH_BYTES} bytes"),
        ));
    }
    let segments: Vec<String> = name.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(invalid(
            &format!("{path}.{name}"),
            "a field path of non-empty names separated by dots",
        ));
    }
    Ok(Field::Path(segments))
}

/// A term value: a string, number or boolean.
fn scalar(value: &Value, path: &str) -> Result<Value, KuzzleError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(value.clone()),
        _ => Err(KuzzleError::invalid_type(path, "string, number or boolean")),
    }
}

fn strings(value: &Value, path: &str) -> Result<Vec<String>, KuzzleError> {
    let Value::Array(items) = value else {
        return Err(KuzzleError::invalid_type(path, "string[]"));
    };
    if items.len() > MAX_VALUES {
        return Err(invalid(path, &format!("at most {MAX_VALUES} values")));
    }
    items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| KuzzleError::invalid_type(path, "string[]"))
}

/// Parses `body.sort`: a field name, `{"<field>": "asc"|"desc"}`, `{"<field>": {"order": …}}`, or an
/// array of those. A field sorts ascending by default, `_score` descending.
pub fn parse_sort(sort: &Value, path: &str) -> Result<Vec<SortKey>, KuzzleError> {
    let items: Vec<(String, &Value)> = match sort {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}[{i}]"), v))
            .collect(),
        v => vec![(path.to_owned(), v)],
    };
    let mut keys = Vec::new();
    for (at, item) in items {
        match item {
            Value::String(name) => keys.push(sort_key(name, None, &at)?),
            Value::Object(map) => {
                for (name, order) in map {
                    let here = format!("{at}.{name}");
                    let order = match order {
                        Value::String(o) => Some(o.as_str()),
                        Value::Object(opts) => {
                            only_keys(opts, &here, &["order"])?;
                            match opts.get("order") {
                                None => None,
                                Some(Value::String(o)) => Some(o.as_str()),
                                Some(_) => {
                                    return Err(KuzzleError::invalid_type(
                                        format!("{here}.order"),
                                        "string",
                                    ));
                                }
                            }
                        }
                        _ => return Err(KuzzleError::invalid_type(here, "string or object")),
                    };
                    keys.push(sort_key(name, order, &here)?);
                }
            }
            _ => return Err(KuzzleError::invalid_type(at, "string or object")),
        }
        if keys.len() > MAX_SORT_KEYS {
            return Err(invalid(path, &format!("at most {MAX_SORT_KEYS} sort keys")));
        }
    }
    Ok(keys)
}

fn sort_key(name: &str, order: Option<&str>, path: &str) -> Result<SortKey, KuzzleError> {
    let field = if name == "_score" {
        None
    } else {
        Some(parse_field(name, path)?)
    };
    let descending = match order {
        None => field.is_none(),
        Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(invalid(path, "\"asc\" or \"desc\"")),
    };
    Ok(SortKey { field, descending })
}

/// Every value at `path` in `source`, arrays flattened at each step.
fn values_at<'a>(source: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match source {
        Value::Array(items) => {
            for item in items {
                values_at(item, path, out);
            }
        }
        _ => match path.split_first() {
            None => out.push(source),
            Some((first, rest)) => {
                if let Some(next) = source.get(first.as_str()) {
                    values_at(next, rest, out);
                }
            }
        },
    }
}

/// The values of `field` for a document, each array flattened.
fn field_values<'a>(field: &Field, id: &'a Value, source: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    match field {
        Field::Id => out.push(id),
        Field::Path(path) => values_at(source, path, &mut out),
    }
    out
}

/// Whether `value` holds something Elasticsearch would index: not null, not an empty array or
/// object.
fn has_value(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => items.iter().any(has_value),
        Value::Object(map) => map.values().any(has_value),
        _ => true,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

impl Query {
    /// Whether the document `id` with `_source` `source` matches.
    pub fn matches(&self, id: &str, source: &Value) -> bool {
        let id_value = Value::String(id.to_owned());
        self.eval(&id_value, source)
    }

    fn eval(&self, id: &Value, source: &Value) -> bool {
        match self {
            Query::MatchAll => true,
            Query::Ids(values) => values.iter().any(|v| id.as_str() == Some(v.as_str())),
            Query::Term(field, value) => field_values(field, id, source)
                .iter()
                .any(|v| same(v, value)),
            Query::Terms(field, values) => field_values(field, id, source)
                .iter()
                .any(|v| values.iter().any(|t| same(v, t))),
            Query::Prefix(field, prefix) => field_values(field, id, source)
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.starts_with(prefix.as_str()))),
            Query::Exists(field) => field_values(field, id, source).iter().any(|v| has_value(v)),
            Query::Bool(b) => {
                b.must.iter().all(|q| q.eval(id, source))
                    && b.filter.iter().all(|q| q.eval(id, source))
                    && !b.must_not.iter().any(|q| q.eval(id, source))
                    && (b.minimum_should_match == 0
                        || b.should.iter().filter(|q| q.eval(id, source)).count()
                            >= b.minimum_should_match)
            }
        }
    }
}

/// Type rank of a sort value: booleans, then numbers, then strings.
fn rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        _ => 2,
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The value a document sorts by for `key`: the smallest scalar for ascending, the largest for
/// descending (Elasticsearch's default for arrays); `None` when it has none (sorted last).
fn sort_value<'a>(key: &SortKey, id: &'a Value, source: &'a Value) -> Option<&'a Value> {
    let field = key.field.as_ref()?;
    let values = field_values(field, id, source);
    let scalars = values
        .into_iter()
        .filter(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)));
    if key.descending {
        scalars.max_by(|a, b| compare_values(a, b))
    } else {
        scalars.min_by(|a, b| compare_values(a, b))
    }
}

/// Whether a document sorts strictly after `after` (Elasticsearch's `search_after`: one value per
/// sort key, `null` for a document without a value); equal on every key is not after.
pub fn sorts_after(keys: &[SortKey], after: &[Value], id: &str, source: &Value) -> bool {
    let idv = Value::String(id.to_owned());
    for (key, bound) in keys.iter().zip(after) {
        let value = sort_value(key, &idv, source);
        let bound = Some(bound).filter(|b| !b.is_null());
        let order = match (value, bound) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(b)) if key.descending => compare_values(b, x),
            (Some(x), Some(b)) => compare_values(x, b),
        };
        if order != Ordering::Equal {
            return order == Ordering::Greater;
        }
    }
    false
}

/// Orders two documents by `keys`, then by `_id` (byte order).
pub fn compare(keys: &[SortKey], a: (&str, &Value), b: (&str, &Value)) -> Ordering {
    let (ida, idb) = (Value::String(a.0.to_owned()), Value::String(b.0.to_owned()));
    for key in keys {
        let (x, y) = (sort_value(key, &ida, a.1), sort_value(key, &idb, b.1));
        let order = match (x, y) {
            (None, None) => Ordering::Equal,
            // Missing values last, whatever the order.
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) if key.descending => compare_values(y, x),
            (Some(x), Some(y)) => compare_values(x, y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.0.as_bytes().cmp(b.0.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(v: Value) -> Query {
        parse(&v, "body.query").unwrap_or_else(|e| panic!("{v}: {e:?}"))
    }

    fn err(v: Value) -> (String, Vec<Value>) {
        match parse(&v, "body.query") {
            Ok(q) => panic!("{v} parsed as {q:?}"),
            Err(e) => (e.id().to_owned(), e.props().to_vec()),
        }
    }

    #[test]
    fn arrays_of_objects_match_on_any_element() {
        let profile = json!({"policies":[{"roleId":"admin"},{"roleId":"default"}]});
        assert!(q(json!({"term":{"policies.roleId":"default"}})).matches("p", &profile));
        assert!(!q(json!({"term":{"policies.roleId":"editor"}})).matches("p", &profile));
        assert!(q(json!({"terms":{"policies.roleId":["x","admin"]}})).matches("p", &profile));
        assert!(q(json!({"prefix":{"policies.roleId":"def"}})).matches("p", &profile));
        assert!(q(json!({"exists":{"field":"policies.roleId"}})).matches("p", &profile));
        assert!(!q(json!({"exists":{"field":"policies.restrictedTo"}})).matches("p", &profile));
        assert!(q(json!({"ids":{"values":["p"]}})).matches("p", &profile));
        assert!(q(json!({"term":{"_id":{"value":"p"}}})).matches("p", &profile));
        assert!(q(json!({"term":{"n":1}})).matches("p", &json!({"n":1.0})));
    }

    #[test]
    fn search_after_takes_what_sorts_strictly_after() {
        let keys = parse_sort(&json!([{"age":"desc"},"_id"]), "body.sort").unwrap_or_default();
        let after = [json!(30), json!("b")];
        assert!(sorts_after(&keys, &after, "c", &json!({"age":30})));
        assert!(!sorts_after(&keys, &after, "b", &json!({"age":30})));
        assert!(!sorts_after(&keys, &after, "a", &json!({"age":30})));
        assert!(sorts_after(&keys, &after, "a", &json!({"age":29})));
        assert!(!sorts_after(&keys, &after, "z", &json!({"age":31})));
        // Missing values sort last.
        assert!(sorts_after(&keys, &after, "a", &json!({})));
        assert!(!sorts_after(
            &keys,
            &[Value::Null, json!("b")],
            "a",
            &json!({"age":1})
        ));
    }

    #[test]
    fn bool_follows_elasticsearch_defaults() {
        let doc = json!({"a":1,"b":2});
        let only_should = q(json!({"bool":{"should":[{"term":{"a":9}},{"term":{"b":9}}]}}));
        assert!(!only_should.matches("d", &doc));
        // With a must, should clauses are optional.
        let with_must = q(json!({"bool":{"must":{"term":{"a":1}},"should":[{"term":{"b":9}}]}}));
        assert!(with_must.matches("d", &doc));
        let two = q(json!({"bool":{"should":[{"term":{"a":1}},{"term":{"b":9}}],
            "minimum_should_match":"100%"}}));
        assert!(!two.matches("d", &doc));
        let neg = q(json!({"bool":{"should":[{"term":{"a":1}},{"term":{"b":9}}],
            "minimum_should_match":-1}}));
        assert!(neg.matches("d", &doc));
        assert!(!q(json!({"bool":{"must_not":{"exists":{"field":"a"}}}})).matches("d", &doc));
        assert!(q(json!({"bool":{}})).matches("d", &doc));
    }

    #[test]
    fn unsupported_and_malformed_clauses_name_their_path() {
        assert_eq!(
            err(json!({"bool":{"must":[{"match_all":{}},{"range":{"a":{"gt":1}}}]}})),
            (
                "api.assert.invalid_argument".to_owned(),
                vec![json!("body.query.bool.must[1].range"), json!(SUPPORTED)]
            )
        );
        assert_eq!(
            err(json!({"term":{"a":1,"b":2}})).0,
            "api.assert.invalid_argument"
        );
        assert_eq!(err(json!({"term":{"a":[1]}})).0, "api.assert.invalid_type");
        assert_eq!(
            err(json!({"bool":{"must":{"term":{}}},"x":1})).0,
            "api.assert.invalid_argument"
        );
        assert_eq!(
            err(json!({"bool":{"mustnt":[]}})).1[0],
            json!("body.query.bool.mustnt")
        );
    }

    #[test]
    fn depth_and_clause_count_are_bounded() {
        let mut deep = json!({"match_all":{}});
        for _ in 0..MAX_DEPTH - 1 {
            deep = json!({"bool":{"must":deep}});
        }
        q(deep.clone());
        let deeper = json!({"bool":{"must":deep}});
        let (id, props) = err(deeper);
        assert_eq!(id, "api.assert.invalid_argument");
        assert_eq!(props[1], json!("at most 10 nested query clauses"));
        let many: Vec<Value> = (0..MAX_CLAUSES).map(|_| json!({"match_all":{}})).collect();
        let (_, props) = err(json!({"bool":{"should":many}}));
        assert_eq!(props[1], json!("at most 256 clauses in a query"));
    }

    #[test]
    fn sort_orders_by_keys_then_id() {
        let keys = parse_sort(&json!([{"n":"desc"},"_id"]), "body.sort")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let (a, b, c) = (json!({"n":[1,5]}), json!({"n":3}), json!({}));
        assert_eq!(compare(&keys, ("a", &a), ("b", &b)), Ordering::Less);
        assert_eq!(compare(&keys, ("c", &c), ("b", &b)), Ordering::Greater);
        assert!(parse_sort(&json!({"n":"up"}), "body.sort").is_err());
        assert!(parse_sort(&json!([{"n":{"mode":"avg"}}]), "body.sort").is_err());
    }
}
