//! Tollgate's security model: roles, profiles, the rights decision, the per-node [`SecurityCache`], and
//! the `security` controller (`shared/spec/security-model.md`, `update-profile.md`, `routes.md` §2–3).
//!
//! - [`validate`]: role and profile validation, step by step in the spec's order;
//! - [`rights`]: the rights decision and the rights listings;
//! - [`cache`]: the snapshot of every role and profile, kept current from the store's change feed;
//! - [`controller`]: the `security` actions;
//! - [`query`]: the query DSL subset of the searches; [`search`]: the searches; [`scroll`]: their
//!   cursors;
//! - [`native`]: the Kuzzle API table role validation checks against.

pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod cache;
pub mod controller;
pub mod credentials;
pub mod dryrun;
pub mod export;
pub mod gate;
pub mod lockout;
pub mod mapping;
pub mod native;
pub mod passwords;
pub mod query;
pub mod rights;
pub mod scroll;
pub mod search;
pub mod tokens;
pub mod users;
pub mod validate;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tollgate_protocol::KuzzleError;
use tollgate_storage::{Expect, Op, Store, StoreError};

pub use auth::{AuthController, CookieConfig, TokenConfig};
pub use cache::{CacheLimits, SecurityCache, SecuritySnapshot};
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

/// The `profileIds` of a stored user (the strings of the array; none when absent).
pub fn profile_ids_of(user: &tollgate_storage::Doc) -> Vec<String> {
    user.body
        .get("profileIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads every document of `kind` whose id starts with `prefix`, a page of 1,000 at a time, handing
/// each page to `visit` until it returns `false` or the documents run out. Each page holds the ids
/// after the last one seen (no count, no offset): a page costs the same at any depth.
pub async fn scan(
    store: &dyn Store,
    kind: &'static str,
    prefix: &str,
    mut visit: impl FnMut(Vec<tollgate_storage::Doc>) -> bool,
) -> Result<(), StoreError> {
    const PAGE: u64 = 1_000;
    let mut after: Option<String> = None;
    loop {
        let docs = store
            .list_after(kind, prefix, after.as_deref(), PAGE)
            .await?;
        let full = docs.len() as u64 == PAGE;
        let last = docs.last().map(|d| d.id.clone());
        if !visit(docs) || !full {
            return Ok(());
        }
        after = last;
    }
}

/// Ids of every recorded token of `kuid`, from the store (paged: a user may hold many).
pub async fn user_tokens(store: &dyn Store, kuid: &str) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    scan(store, TOKEN, &tokens::user_tokens_prefix(kuid), |docs| {
        ids.extend(
            docs.into_iter()
                .filter(|d| d.body.get("kuid").and_then(Value::as_str) == Some(kuid))
                .map(|d| d.id),
        );
        true
    })
    .await?;
    Ok(ids)
}

/// Deletes the token records expired at `now_ms` (epoch ms), reading every record page by page;
/// returns how many were deleted.
pub async fn purge_expired_tokens(store: &dyn Store, now_ms: i64) -> Result<usize, StoreError> {
    const PAGE: u64 = 1_000;
    let mut after: Option<String> = None;
    let mut purged = 0;
    loop {
        let docs = store.list_after(TOKEN, "", after.as_deref(), PAGE).await?;
        let count = docs.len() as u64;
        after = docs.last().map(|d| d.id.clone());
        let ops: Vec<Op> = docs
            .into_iter()
            .filter(|d| {
                d.body
                    .get("expiresAt")
                    .and_then(Value::as_i64)
                    .is_some_and(|at| at >= 0 && at <= now_ms)
            })
            .map(|d| Op::Delete {
                kind: TOKEN,
                id: d.id,
                expect: Expect::Any,
            })
            .collect();
        if !ops.is_empty() {
            purged += ops.len();
            store.commit(ops).await?;
        }
        if count < PAGE {
            return Ok(purged);
        }
    }
}

/// Stores every token recorded under a bare hash id (before ids began with the user's id) under its
/// `<kuid>:<hash>` id, so that tokens issued before an upgrade stay valid. Idempotent, and safe from
/// several nodes at once; returns how many were moved.
pub async fn migrate_token_ids(store: &dyn Store) -> Result<usize, StoreError> {
    // Operations per batch (a put and a delete per token).
    const BATCH: usize = 1_000;
    let mut moved = 0;
    loop {
        // Each round moves the legacy ids of the first page; a round without any ends it.
        let mut ops = Vec::new();
        scan(store, TOKEN, "", |docs| {
            for doc in docs {
                let Some(kuid) = doc
                    .body
                    .get("kuid")
                    .and_then(Value::as_str)
                    .filter(|_| tokens::is_legacy_token_id(&doc.id))
                else {
                    continue;
                };
                ops.push(Op::Put {
                    kind: TOKEN,
                    id: format!("{}{}", tokens::user_tokens_prefix(kuid), doc.id),
                    body: doc.body.clone(),
                    expect: Expect::Any,
                });
                ops.push(Op::Delete {
                    kind: TOKEN,
                    id: doc.id,
                    expect: Expect::Any,
                });
            }
            ops.len() < BATCH
        })
        .await?;
        if ops.is_empty() {
            break;
        }
        moved += ops.len() / 2;
        store.commit(ops).await?;
    }
    if moved > 0 {
        tracing::info!(moved, "recorded tokens moved to per-user ids");
    }
    Ok(moved)
}

/// Whether a stored user holds profile `admin`: the first admin's record first (one read), then every
/// user (paged) when that one no longer does.
pub async fn admin_exists(store: &dyn Store) -> Result<bool, StoreError> {
    let holds_admin =
        |doc: &tollgate_storage::Doc| profile_ids_of(doc).iter().any(|id| id == "admin");
    let marker = store.get(META, FIRST_ADMIN).await?;
    if let Some(kuid) = marker
        .as_ref()
        .and_then(|m| m.body.get("kuid"))
        .and_then(Value::as_str)
        && store
            .get(USER, kuid)
            .await?
            .is_some_and(|u| holds_admin(&u))
    {
        return Ok(true);
    }
    let mut found = false;
    scan(store, USER, "", |docs| {
        found = docs.iter().any(holds_admin);
        !found
    })
    .await?;
    Ok(found)
}

/// Id, in kind [`META`], of the record of the first admin (`{"kuid"}`), written by
/// `security:createFirstAdmin` in the same batch as the user: two nodes racing cannot both create one.
pub const FIRST_ADMIN: &str = "first_admin";

/// `_kuzzle_info` of a new document.
pub fn created_info(author: Option<&str>) -> Value {
    json!({"author": author, "createdAt": now_ms(), "updatedAt": null, "updater": null})
}

/// `_kuzzle_info` after an update: `author`/`createdAt` kept from `previous`.
pub fn updated_info(previous: Option<&Value>, updater: Option<&str>) -> Value {
    let kept = |key| {
        previous
            .and_then(|i| i.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut info = serde_json::Map::with_capacity(4);
    info.insert("author".into(), kept("author"));
    info.insert("createdAt".into(), kept("createdAt"));
    info.insert("updatedAt".into(), now_ms().into());
    info.insert("updater".into(), updater.into());
    Value::Object(info)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tollgate_storage::memory::MemoryStore;

    use crate::cache::{CacheLimits, SecurityCache};
    use crate::gate::{TokenCheck, check_token};
    use crate::tokens::Secret;

    fn put(kind: &'static str, id: &str, body: Value) -> Op {
        Op::Put {
            kind,
            id: id.to_owned(),
            body,
            expect: Expect::Any,
        }
    }

    #[tokio::test]
    async fn tokens_recorded_under_bare_hashes_stay_valid_after_the_move() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let secret = Secret::new(b"k").unwrap_or_else(|| panic!("secret"));
        let now = now_ms() / 1000;
        // 1,200 tokens of 3 users, recorded the way they were before per-user ids, and one new one.
        let mut jwts = Vec::new();
        let mut ops = vec![put(USER, "u0", json!({"profileIds": ["default"]}))];
        for u in 1..3 {
            ops.push(put(
                USER,
                &format!("u{u}"),
                json!({"profileIds": ["default"]}),
            ));
        }
        for i in 0..1_200u64 {
            let kuid = format!("u{}", i % 3);
            let jwt = tokens::issue(&secret, &kuid, now, Some(now + 3_600 + i));
            let bare = tokens::token_id(&kuid, &jwt)
                .rsplit(':')
                .next()
                .map(str::to_owned)
                .unwrap_or_default();
            ops.push(put(TOKEN, &bare, json!({"kuid": kuid, "expiresAt": -1})));
            jwts.push((kuid, jwt));
        }
        store.commit(ops).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            migrate_token_ids(store.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1_200
        );
        // Idempotent.
        assert_eq!(
            migrate_token_ids(store.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            0
        );
        let all = store
            .list(TOKEN, "", 0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.docs.len(), 1_200);
        assert!(all.docs.iter().all(|d| !tokens::is_legacy_token_id(&d.id)));
        assert_eq!(
            user_tokens(store.as_ref(), "u1")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            400
        );
        let cache = SecurityCache::start(Arc::clone(&store), CacheLimits::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (kuid, jwt) in jwts.iter().step_by(97) {
            assert_eq!(
                check_token(&secret, &cache, jwt).await,
                Ok(TokenCheck::Valid {
                    kuid: kuid.clone(),
                    expires_at: -1,
                    refreshed: false,
                })
            );
        }
    }

    #[tokio::test]
    async fn expired_tokens_are_purged_page_after_page() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ops = (0..2_500)
            .map(|i| {
                let expires = if i % 2 == 0 { 1_000 } else { -1 };
                put(
                    TOKEN,
                    &format!("u:{i:05}"),
                    json!({"kuid": "u", "expiresAt": expires}),
                )
            })
            .collect();
        store.commit(ops).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            purge_expired_tokens(store.as_ref(), 2_000)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1_250
        );
        let left = store
            .list(TOKEN, "", 0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(left.docs.len(), 1_250);
        assert!(left.docs.iter().all(|d| d.body["expiresAt"] == -1));
    }
}
