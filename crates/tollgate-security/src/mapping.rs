//! The mapping actions of the `security` controller (`docs/api/security.md` §9):
//! getProfileMapping, getRoleMapping, getUserMapping and their update actions.
//!
//! Kuzzle keeps security documents in Elasticsearch, whose mappings these actions read and extend.
//! Tollgate's queries need no mapping, so:
//! - the profile and role mappings are fixed, the ones Kuzzle 2.56 reports; an update that only
//!   restates them is accepted (a deployment script replaying Kuzzle's mappings keeps working), any
//!   other is refused, since profile and role definitions are validated key by key;
//! - the user mapping starts as Kuzzle's (`profileIds`: keyword) and can be extended: it is stored
//!   (kind `meta`, id `mapping:user`), so it survives restarts and is the same on every node. Fields
//!   are added, never retyped, as Elasticsearch does.

use serde_json::{Map, Value, json};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::{Expect, Op, StoreError};

use crate::controller::{SecurityController, backoff};
use crate::{META, PROFILE, ROLE, store_error};

/// Id, in kind [`META`], of the stored user mapping: `{"dynamic", "_meta"?, "properties"}`.
pub const USER_MAPPING: &str = "mapping:user";

/// Most fields a mapping may declare, nested ones included (Elasticsearch's
/// `index.mapping.total_fields.limit` default).
pub const MAX_FIELDS: usize = 1_000;
/// Deepest nesting of `properties` (Elasticsearch's `index.mapping.depth.limit` default).
pub const MAX_DEPTH: usize = 20;
/// Longest field name, in bytes.
pub const MAX_FIELD_NAME: usize = 256;
/// Largest `_meta`, serialized, in bytes.
pub const MAX_META_BYTES: usize = 16 * 1024;

/// The field types a mapping may name (Elasticsearch 7's, as Kuzzle accepts them).
const TYPES: &[&str] = &[
    "binary",
    "boolean",
    "byte",
    "date",
    "date_nanos",
    "double",
    "float",
    "geo_point",
    "geo_shape",
    "half_float",
    "integer",
    "ip",
    "keyword",
    "long",
    "nested",
    "object",
    "scaled_float",
    "short",
    "text",
    "wildcard",
];

/// The keys a field definition may have.
const FIELD_KEYS: &[&str] = &[
    "type",
    "properties",
    "dynamic",
    "index",
    "fields",
    "format",
    "analyzer",
    "ignore_above",
    "null_value",
    "doc_values",
    "scaling_factor",
    "copy_to",
];

/// The keys of an update body.
const BODY_KEYS: &[&str] = &["dynamic", "_meta", "properties"];

fn fixed(kind: &str) -> Value {
    match kind {
        PROFILE => json!({
            "tags": {"type": "keyword"},
            "policies": {"properties": {
                "roleId": {"type": "keyword"},
                "restrictedTo": {"type": "nested", "properties": {
                    "index": {"type": "keyword"},
                    "collections": {"type": "keyword"}
                }}
            }}
        }),
        ROLE => json!({
            "tags": {"type": "keyword"},
            "controllers": {"dynamic": "false", "properties": {}}
        }),
        _ => json!({"profileIds": {"type": "keyword"}}),
    }
}

/// `dynamic`: `"true"`, `"false"`, `"strict"` or a boolean (kept as its string).
fn dynamic(value: &Value, path: &str) -> Result<Value, KuzzleError> {
    match value {
        Value::Bool(b) => Ok(json!(b.to_string())),
        Value::String(s) if matches!(s.as_str(), "true" | "false" | "strict") => Ok(value.clone()),
        Value::String(_) => Err(KuzzleError::invalid_argument(
            path,
            r#""true", "false" or "strict""#,
        )),
        _ => Err(KuzzleError::invalid_type(path, "string")),
    }
}

/// Checks a `properties` object at `path` and `depth`, counting its fields into `count`.
fn check_properties(
    props: &Value,
    path: &str,
    depth: usize,
    count: &mut usize,
) -> Result<(), KuzzleError> {
    let Value::Object(props) = props else {
        return Err(KuzzleError::invalid_type(path, "object"));
    };
    if depth > MAX_DEPTH {
        return Err(KuzzleError::invalid_argument(
            path,
            "properties nested at most 20 levels deep",
        ));
    }
    for (name, field) in props {
        let here = format!("{path}.{name}");
        if name.is_empty() || name.len() > MAX_FIELD_NAME || name.starts_with('_') {
            return Err(KuzzleError::invalid_argument(
                here,
                "a field name of 1 to 256 bytes, not starting with _",
            ));
        }
        *count += 1;
        if *count > MAX_FIELDS {
            return Err(KuzzleError::invalid_argument(
                path,
                "a mapping of at most 1000 fields",
            ));
        }
        let Value::Object(def) = field else {
            return Err(KuzzleError::invalid_type(here, "object"));
        };
        if let Some(key) = def.keys().find(|k| !FIELD_KEYS.contains(&k.as_str())) {
            return Err(KuzzleError::unexpected_argument(
                format!("{here}.{key}"),
                FIELD_KEYS,
            ));
        }
        match def.get("type") {
            None => {}
            Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
            Some(Value::String(_)) => {
                return Err(KuzzleError::invalid_argument(
                    format!("{here}.type"),
                    "an Elasticsearch 7 field type (keyword, text, long, …)",
                ));
            }
            Some(_) => return Err(KuzzleError::invalid_type(format!("{here}.type"), "string")),
        }
        if let Some(d) = def.get("dynamic") {
            dynamic(d, &format!("{here}.dynamic"))?;
        }
        if let Some(sub) = def.get("properties") {
            check_properties(sub, &format!("{here}.properties"), depth + 1, count)?;
        }
    }
    Ok(())
}

/// Merges `new` into `old` (both `properties` objects): new fields are added, nested properties
/// merged; a field whose `type` would change is refused, as Elasticsearch does.
fn merge(
    old: &mut Map<String, Value>,
    new: &Map<String, Value>,
    path: &str,
) -> Result<(), KuzzleError> {
    for (name, field) in new {
        let here = format!("{path}.{name}");
        let Some(Value::Object(existing)) = old.get_mut(name) else {
            old.insert(name.clone(), field.clone());
            continue;
        };
        let Value::Object(field) = field else {
            continue;
        };
        let was = existing
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object");
        let will = field.get("type").and_then(Value::as_str).unwrap_or(was);
        if was != will {
            return Err(KuzzleError::invalid_argument(
                format!("{here}.type"),
                &format!("{was} (a field's type cannot change)"),
            ));
        }
        for (k, v) in field {
            match (k.as_str(), existing.get_mut(k), v) {
                ("properties", Some(Value::Object(sub)), Value::Object(v)) => {
                    merge(sub, v, &format!("{here}.properties"))?;
                }
                _ => {
                    existing.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(())
}

/// Checks an update body: `{properties, dynamic?, _meta?}`.
fn check_body(req: &Request) -> Result<&Map<String, Value>, KuzzleError> {
    let body = req.required_body()?;
    if let Some(key) = body.keys().find(|k| !BODY_KEYS.contains(&k.as_str())) {
        return Err(KuzzleError::unexpected_argument(
            format!("body.{key}"),
            BODY_KEYS,
        ));
    }
    match body.get("properties") {
        None | Some(Value::Null) => return Err(KuzzleError::missing_argument("body.properties")),
        Some(p) => check_properties(p, "body.properties", 1, &mut 0)?,
    }
    if let Some(d) = body.get("dynamic") {
        dynamic(d, "body.dynamic")?;
    }
    match body.get("_meta") {
        None | Some(Value::Null) => {}
        Some(m @ Value::Object(_)) => {
            if m.to_string().len() > MAX_META_BYTES {
                return Err(KuzzleError::invalid_argument(
                    "body._meta",
                    "an object of at most 16 KiB",
                ));
            }
        }
        Some(_) => return Err(KuzzleError::invalid_type("body._meta", "object")),
    }
    Ok(body)
}

impl SecurityController {
    /// The stored user mapping, or Kuzzle's default, with its version (0: never written).
    async fn user_mapping(&self) -> Result<(Value, Option<u64>), KuzzleError> {
        Ok(
            match self
                .store
                .get(META, USER_MAPPING)
                .await
                .map_err(store_error)?
            {
                Some(doc) => (doc.body, Some(doc.version)),
                None => (
                    json!({"dynamic": "false", "properties": fixed("user")}),
                    None,
                ),
            },
        )
    }

    /// getProfileMapping / getRoleMapping / getUserMapping: `{"mapping": properties}`.
    pub(crate) async fn get_mapping(&self, kind: &str) -> Result<Value, KuzzleError> {
        if kind == PROFILE || kind == ROLE {
            return Ok(json!({ "mapping": fixed(kind) }));
        }
        let (mapping, _) = self.user_mapping().await?;
        Ok(json!({"mapping": mapping.get("properties").cloned().unwrap_or_else(|| json!({}))}))
    }

    /// updateProfileMapping / updateRoleMapping / updateUserMapping: `{dynamic, _meta?, properties}`
    /// after the change.
    pub(crate) async fn update_mapping(
        &self,
        kind: &str,
        req: &Request,
    ) -> Result<Value, KuzzleError> {
        let body = check_body(req)?;
        let new = body
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if kind == PROFILE || kind == ROLE {
            let current = fixed(kind).as_object().cloned().unwrap_or_default();
            let mut merged = current.clone();
            merge(&mut merged, &new, "body.properties")?;
            if merged != current || body.get("dynamic").is_some_and(|d| d != "false") {
                return Err(KuzzleError::invalid_argument(
                    "body.properties",
                    &format!("the fixed {kind} mapping (getProfileMapping, getRoleMapping)"),
                ));
            }
            return Ok(json!({"dynamic": "false", "properties": current}));
        }
        for _ in 0..10 {
            let (mapping, version) = self.user_mapping().await?;
            let mut properties = mapping
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            merge(&mut properties, &new, "body.properties")?;
            let mut total = 0;
            check_properties(
                &Value::Object(properties.clone()),
                "body.properties",
                1,
                &mut total,
            )?;
            let mut stored = Map::new();
            if let Some(meta) = body
                .get("_meta")
                .filter(|m| !m.is_null())
                .or_else(|| mapping.get("_meta"))
            {
                stored.insert("_meta".into(), meta.clone());
            }
            let dynamic_value = match body.get("dynamic") {
                Some(d) => dynamic(d, "body.dynamic")?,
                None => mapping.get("dynamic").cloned().unwrap_or(json!("false")),
            };
            stored.insert("dynamic".into(), dynamic_value);
            stored.insert("properties".into(), Value::Object(properties));
            let stored = Value::Object(stored);
            let op = Op::Put {
                kind: META,
                id: USER_MAPPING.to_owned(),
                body: stored.clone(),
                expect: version.map_or(Expect::Absent, Expect::Version),
            };
            match self.commit(vec![op]).await {
                Ok(_) => return Ok(stored),
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &tollgate_protocol::errors::SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(USER_MAPPING)],
        ))
    }
}
