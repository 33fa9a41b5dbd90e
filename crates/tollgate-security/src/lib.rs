//! Tollgate's security model: roles, profiles, the rights decision, the per-node [`SecurityCache`], and
//! the `security` controller (`shared/spec/security-model.md`, `update-profile.md`, `routes.md` §2–3).
//!
//! - [`validate`]: role and profile validation, step by step in the spec's order;
//! - [`rights`]: the rights decision and the rights listings;
//! - [`cache`]: the snapshot of every role and profile, kept current from the store's change feed;
//! - [`controller`]: the `security` actions;
//! - [`native`]: the Kuzzle API table role validation checks against.

pub mod auth;
pub mod cache;
pub mod controller;
pub mod gate;
pub mod native;
pub mod passwords;
pub mod rights;
pub mod tokens;
pub mod users;
pub mod validate;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_protocol::KuzzleError;
use tollgate_storage::{Expect, Op, Store, StoreError};

pub use auth::{AuthController, TokenConfig};
pub use cache::{SecurityCache, SecuritySnapshot};
pub use controller::{SecurityConfig, SecurityController};
pub use gate::{AuthFailures, GateConfig, SecurityGate};
pub use passwords::{HashCost, Passwords};

/// Store kind of roles.
pub const ROLE: &str = "role";
/// Store kind of profiles.
pub const PROFILE: &str = "profile";
/// Store kind of users.
pub const USER: &str = "user";
/// Store kind of recorded tokens (id: SHA-256 of the token).
pub const TOKEN: &str = "token";
/// Store kind of local credentials (id: username).
pub const CREDENTIAL: &str = "credential";
/// Store kind of the username of each user with local credentials (id: kuid).
pub const LOGIN: &str = "login";
/// Store kind of server-wide settings (the token secret).
pub const META: &str = "meta";

/// The built-in roles and profiles, which cannot be deleted.
pub const BUILT_INS: &[&str] = &["admin", "default", "anonymous"];

/// Maps a store failure to the wire error.
pub fn store_error(e: StoreError) -> KuzzleError {
    e.to_wire()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `_kuzzle_info` of a new document.
pub fn created_info(author: Option<&str>) -> Value {
    json!({"author": author, "createdAt": now_ms(), "updatedAt": null, "updater": null})
}

/// `_kuzzle_info` after an update: `author`/`createdAt` kept from `previous`.
pub fn updated_info(previous: Option<&Value>, updater: Option<&str>) -> Value {
    let author = previous
        .and_then(|i| i.get("author"))
        .cloned()
        .unwrap_or(Value::Null);
    let created = previous
        .and_then(|i| i.get("createdAt"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({"author": author, "createdAt": created, "updatedAt": now_ms(), "updater": updater})
}

/// Creates the built-in roles and profiles that do not exist yet (`security-model.md` §6): every
/// right for everyone until the first admin restricts them. Safe to run on every start and from
/// several nodes at once.
pub async fn bootstrap(store: &dyn Store) -> Result<usize, StoreError> {
    let mut created = 0;
    for (kind, body) in [
        (
            ROLE,
            json!({"controllers": {"*": {"actions": {"*": true}}}}),
        ),
        (PROFILE, Value::Null),
    ] {
        for name in BUILT_INS {
            let mut source = if kind == ROLE {
                body.clone()
            } else {
                json!({"policies": [{"roleId": name}], "rateLimit": 0})
            };
            if let Value::Object(map) = &mut source {
                map.insert("_kuzzle_info".into(), created_info(None));
            }
            let op = Op::Put {
                kind,
                id: (*name).to_owned(),
                body: source,
                expect: Expect::Absent,
            };
            match store.commit(vec![op]).await {
                Ok(_) => created += 1,
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if created > 0 {
        tracing::info!(created, "built-in roles and profiles created");
    }
    Ok(created)
}
