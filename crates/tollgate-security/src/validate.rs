//! Validation of role and profile definitions, in the spec's order (`security-model.md` §1,
//! `update-profile.md` §6). The first failure wins.

use serde_json::{Map, Value, json};
use tollgate_catalog::Catalog;
use tollgate_protocol::KuzzleError;
use tollgate_protocol::errors::{
    SECURITY_PROFILE_MISSING_ANONYMOUS_ROLE, SECURITY_ROLE_LOGIN_REQUIRED, SECURITY_ROLE_NOT_FOUND,
    SECURITY_ROLE_UNKNOWN_ACTION, SECURITY_ROLE_UNKNOWN_CONTROLLER,
    SERVICES_STORAGE_UNKNOWN_COLLECTION, SERVICES_STORAGE_UNKNOWN_INDEX,
};
use tollgate_storage::Store;

use crate::native::native_actions;
use crate::rights::RoleRights;
use crate::{ROLE, store_error};

/// Keys of a profile body that are never stored.
pub const RESERVED_KEYS: &[&str] = &["_id", "_version", "_kuzzle_info", "optimizedPolicies"];
/// Keys of a role body that are never stored.
pub const ROLE_RESERVED_KEYS: &[&str] = &["_id", "_version", "_kuzzle_info"];

/// Largest integer a `rateLimit` may hold (2^53 − 1, as JSON numbers in JavaScript).
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Validates a role definition and returns it in stored key order (`controllers`, extra keys).
pub fn role(
    id: &str,
    body: &Map<String, Value>,
    force: bool,
) -> Result<Map<String, Value>, KuzzleError> {
    let controllers = match body.get("controllers") {
        None | Some(Value::Null) => {
            return Err(KuzzleError::missing_argument(format!("{id}.controllers")));
        }
        Some(Value::Object(c)) if c.is_empty() => {
            return Err(KuzzleError::empty_argument(format!("{id}.controllers")));
        }
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err(KuzzleError::invalid_type(
                format!("{id}.controllers"),
                "object",
            ));
        }
    };
    for (c, entry) in controllers {
        let entry = match entry {
            Value::Object(e) if e.is_empty() => return Err(KuzzleError::empty_argument(c.clone())),
            Value::Object(e) => e,
            _ => return Err(KuzzleError::invalid_type(c.clone(), "object")),
        };
        let actions = match entry.get("actions") {
            None => return Err(KuzzleError::missing_argument(format!("{c}.actions"))),
            Some(Value::Object(a)) if a.is_empty() => {
                return Err(KuzzleError::empty_argument(format!("{c}.actions")));
            }
            Some(Value::Object(a)) => a,
            Some(_) => return Err(KuzzleError::invalid_type(format!("{c}.actions"), "object")),
        };
        if let Some((action, _)) = actions.iter().find(|(_, v)| !v.is_boolean()) {
            return Err(KuzzleError::invalid_type(
                format!("{c}.actions.{action}"),
                "boolean",
            ));
        }
    }
    let stored = ordered_role(body);
    if id == "anonymous" && !RoleRights::from_source(&stored).allows("auth", "login") {
        return Err(KuzzleError::plain(&SECURITY_ROLE_LOGIN_REQUIRED));
    }
    for (c, entry) in controllers {
        let actions = entry.get("actions").and_then(Value::as_object);
        let unknown = |action: &str, controller: &str| {
            KuzzleError::new(
                &SECURITY_ROLE_UNKNOWN_ACTION,
                vec![json!(id), json!(action), json!(controller)],
            )
        };
        for action in actions.into_iter().flat_map(|a| a.keys()) {
            if action == "*" {
                continue;
            }
            if c == "*" {
                return Err(unknown(action, "*"));
            }
            if let Some(native) = native_actions(c)
                && !native.contains(&action.as_str())
            {
                return Err(unknown(action, c));
            }
        }
    }
    if !force
        && let Some(c) = controllers
            .keys()
            .find(|c| *c != "*" && native_actions(c).is_none())
    {
        return Err(KuzzleError::new(
            &SECURITY_ROLE_UNKNOWN_CONTROLLER,
            vec![json!(id), json!(c)],
        ));
    }
    Ok(stored)
}

/// `controllers` first, then the extra keys in body order; reserved keys dropped.
fn ordered_role(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "controllers".into(),
        body.get("controllers").cloned().unwrap_or(Value::Null),
    );
    for (k, v) in body {
        if k != "controllers" && !ROLE_RESERVED_KEYS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// What profile validation needs from the outside world.
pub struct ProfileChecks<'a> {
    pub store: &'a dyn Store,
    /// This node's cache, when available: roles it holds need no store lookup.
    pub known_roles: Option<&'a crate::cache::SecuritySnapshot>,
    pub catalog: &'a Catalog,
    /// Whether restrictions are checked against the catalog (V6f/V6h).
    pub check_catalog: bool,
}

/// Validates a (merged) profile definition, V1–V7, and returns it in stored key order (`policies`,
/// `rateLimit` as an integer, extra keys). Also returns the role ids it references.
pub async fn profile(
    id: &str,
    doc: &Map<String, Value>,
    checks: &ProfileChecks<'_>,
) -> Result<(Map<String, Value>, Vec<String>), KuzzleError> {
    // V1, V2
    let policies = match doc.get("policies") {
        Some(Value::Array(p)) if p.is_empty() => {
            return Err(KuzzleError::empty_argument(format!("{id}.policies")));
        }
        Some(Value::Array(p)) => p,
        _ => {
            return Err(KuzzleError::invalid_type(
                format!("{id}.policies"),
                "object[]",
            ));
        }
    };
    // V3
    let mut role_ids = Vec::with_capacity(policies.len());
    for (i, policy) in policies.iter().enumerate() {
        let Value::Object(policy) = policy else {
            return Err(KuzzleError::invalid_type(
                format!("{id}.policies[{i}]"),
                "object",
            ));
        };
        match policy.get("roleId") {
            None | Some(Value::Null) => {
                return Err(KuzzleError::missing_argument(format!(
                    "{id}.policies[{i}].roleId"
                )));
            }
            Some(Value::String(r)) if r.is_empty() => {
                return Err(KuzzleError::missing_argument(format!(
                    "{id}.policies[{i}].roleId"
                )));
            }
            Some(Value::String(r)) => role_ids.push(r.clone()),
            Some(_) => {
                return Err(KuzzleError::invalid_type(
                    format!("{id}.policies[{i}].roleId"),
                    "string",
                ));
            }
        }
    }
    // V4: roles this node's cache knows are taken as existing (the write re-checks them in its
    // transaction); the others are looked up in the store, which is authoritative.
    let unknown: Vec<String> = role_ids
        .iter()
        .filter(|r| {
            !checks
                .known_roles
                .is_some_and(|known| known.roles.contains_key(r.as_str()))
        })
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let found = checks
            .store
            .mget(ROLE, &unknown)
            .await
            .map_err(store_error)?;
        let missing: Vec<&String> = unknown
            .iter()
            .zip(&found)
            .filter(|(_, d)| d.is_none())
            .map(|(r, _)| r)
            .collect();
        if let Some(first) = role_ids.iter().find(|r| missing.contains(r)) {
            return Err(KuzzleError::new(
                &SECURITY_ROLE_NOT_FOUND,
                vec![json!(first)],
            ));
        }
    }
    // V5
    let rate_limit = rate_limit(doc.get("rateLimit"))?;
    // V6
    for (i, policy) in policies.iter().enumerate() {
        let Value::Object(policy) = policy else {
            continue;
        };
        if let Some(key) = policy
            .keys()
            .find(|k| *k != "roleId" && *k != "restrictedTo")
        {
            return Err(KuzzleError::unexpected_argument(
                format!("{id}.policies[{i}].{key}"),
                &["roleId", "restrictedTo"],
            ));
        }
        let restrictions = match policy.get("restrictedTo") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(r)) => r,
            Some(_) => {
                return Err(KuzzleError::invalid_type(
                    format!("{id}.policies[{i}].restrictedTo"),
                    "object[]",
                ));
            }
        };
        for (j, restriction) in restrictions.iter().enumerate() {
            let path = format!("{id}.policies[{i}].restrictedTo[{j}]");
            restriction_entry(&path, restriction, checks).await?;
        }
    }
    // V7
    if id == "anonymous" && !role_ids.iter().any(|r| r == "anonymous") {
        return Err(KuzzleError::plain(&SECURITY_PROFILE_MISSING_ANONYMOUS_ROLE));
    }
    let mut out = Map::new();
    out.insert("policies".into(), Value::Array(policies.clone()));
    out.insert("rateLimit".into(), json!(rate_limit));
    for (k, v) in doc {
        if !matches!(k.as_str(), "policies" | "rateLimit") && !RESERVED_KEYS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    role_ids.dedup();
    Ok((out, role_ids))
}

/// V6c–V6i for one restriction.
async fn restriction_entry(
    path: &str,
    restriction: &Value,
    checks: &ProfileChecks<'_>,
) -> Result<(), KuzzleError> {
    let Value::Object(r) = restriction else {
        return Err(KuzzleError::invalid_type(path, "object"));
    };
    let index = match r.get("index") {
        None | Some(Value::Null) => {
            return Err(KuzzleError::missing_argument(format!("{path}.index")));
        }
        Some(Value::String(i)) => i,
        Some(_) => return Err(KuzzleError::invalid_type(format!("{path}.index"), "string")),
    };
    if checks.check_catalog && !checks.catalog.index_exists(index).await? {
        return Err(KuzzleError::new(
            &SERVICES_STORAGE_UNKNOWN_INDEX,
            vec![json!(index)],
        ));
    }
    let collections: Vec<String> = match r.get("collections") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(c)) => c
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| KuzzleError::invalid_type(format!("{path}.collections"), "string[]"))?,
        Some(_) => {
            return Err(KuzzleError::invalid_type(
                format!("{path}.collections"),
                "string[]",
            ));
        }
    };
    if checks.check_catalog && !collections.is_empty() {
        let missing = checks
            .catalog
            .missing_collections(index, &collections)
            .await?;
        if !missing.is_empty() {
            return Err(KuzzleError::new(
                &SERVICES_STORAGE_UNKNOWN_COLLECTION,
                vec![json!(index), json!(missing)],
            ));
        }
    }
    if let Some(key) = r.keys().find(|k| *k != "index" && *k != "collections") {
        return Err(KuzzleError::unexpected_argument(
            format!("{path}.{key}"),
            &["index", "collections"],
        ));
    }
    Ok(())
}

/// V5: absent or null → 0; an integral number within ±(2^53 − 1); not negative.
fn rate_limit(value: Option<&Value>) -> Result<i64, KuzzleError> {
    let n = match value {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(KuzzleError::invalid_type("rateLimit", "integer")),
    };
    let integral = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64)
            .map(|f| f as i64)
    });
    match integral {
        Some(i) if i.unsigned_abs() > MAX_SAFE_INTEGER.unsigned_abs() => {
            Err(KuzzleError::invalid_type("rateLimit", "integer"))
        }
        Some(i) if i < 0 => Err(KuzzleError::invalid_argument(
            "rateLimit",
            "positive integer, or zero",
        )),
        Some(i) => Ok(i),
        None => Err(KuzzleError::invalid_type("rateLimit", "integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role_err(id: &str, body: Value, force: bool) -> String {
        match role(id, body.as_object().unwrap_or(&Map::new()), force) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{} {}", e.id(), e.message()),
        }
    }

    #[test]
    fn role_validation_order() {
        assert_eq!(
            role_err("r", json!({}), false),
            "api.assert.missing_argument Missing argument \"r.controllers\"."
        );
        assert_eq!(
            role_err("r", json!({"controllers":[]}), false),
            "api.assert.invalid_type Wrong type for argument \"r.controllers\" (expected: object)"
        );
        assert_eq!(
            role_err("r", json!({"controllers":{}}), false),
            "api.assert.empty_argument The argument \"r.controllers\" is empty."
        );
        assert_eq!(
            role_err("r", json!({"controllers":{"auth":true}}), false),
            "api.assert.invalid_type Wrong type for argument \"auth\" (expected: object)"
        );
        assert_eq!(
            role_err("r", json!({"controllers":{"auth":{}}}), false),
            "api.assert.empty_argument The argument \"auth\" is empty."
        );
        assert_eq!(
            role_err("r", json!({"controllers":{"auth":{"x":1}}}), false),
            "api.assert.missing_argument Missing argument \"auth.actions\"."
        );
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"auth":{"actions":{"login":1}}}}),
                false
            ),
            "api.assert.invalid_type Wrong type for argument \"auth.actions.login\" (expected: boolean)"
        );
        assert_eq!(
            role_err(
                "anonymous",
                json!({"controllers":{"auth":{"actions":{"logout":true}}}}),
                false
            ),
            "security.role.login_required Cannot remove the \"login\" action from the anonymous role."
        );
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"*":{"actions":{"get":true}}}}),
                false
            ),
            "security.role.unknown_action Trying to set role r with a non-existing action 'get' in controller '*'."
        );
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"auth":{"actions":{"nope":true}}}}),
                false
            ),
            "security.role.unknown_action Trying to set role r with a non-existing action 'nope' in controller 'auth'."
        );
        // R4 runs over every controller before R5.
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"mine":{"actions":{"x":true}},"auth":{"actions":{"nope":true}}}}),
                false
            ),
            "security.role.unknown_action Trying to set role r with a non-existing action 'nope' in controller 'auth'."
        );
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"auth":{"actions":{"*":true}},"mine":{"actions":{"x":true}}}}),
                false
            ),
            "security.role.unknown_controller Trying to set role r with a non-existing controller 'mine'."
        );
        assert_eq!(
            role_err(
                "r",
                json!({"controllers":{"mine":{"actions":{"x":true}}}}),
                true
            ),
            "ok"
        );
        assert_eq!(
            role_err(
                "anonymous",
                json!({"controllers":{"*":{"actions":{"*":true}}}}),
                false
            ),
            "ok"
        );
    }

    #[test]
    fn role_source_order() {
        let body =
            json!({"x":1,"_id":"no","controllers":{"auth":{"actions":{"login":true}}},"y":2});
        let stored = role("r", body.as_object().unwrap_or(&Map::new()), false).unwrap_or_default();
        assert_eq!(
            Value::Object(stored).to_string(),
            r#"{"controllers":{"auth":{"actions":{"login":true}}},"x":1,"y":2}"#
        );
    }

    #[test]
    fn rate_limit_rules() {
        assert_eq!(rate_limit(None).ok(), Some(0));
        assert_eq!(rate_limit(Some(&Value::Null)).ok(), Some(0));
        assert_eq!(rate_limit(Some(&json!(5.0))).ok(), Some(5));
        assert_eq!(
            rate_limit(Some(&json!(9007199254740991i64))).ok(),
            Some(9007199254740991)
        );
        for bad in [
            json!("3"),
            json!(1.5),
            json!(true),
            json!([]),
            json!(9007199254740992i64),
            json!(-9007199254740992i64),
        ] {
            assert_eq!(
                rate_limit(Some(&bad)).err().map(|e| e.id()),
                Some("api.assert.invalid_type"),
                "{bad}"
            );
        }
        assert_eq!(
            rate_limit(Some(&json!(-1))).err().map(|e| e.id()),
            Some("api.assert.invalid_argument")
        );
    }
}
