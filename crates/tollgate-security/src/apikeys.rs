//! API keys (`docs/api/api-keys.md`): `auth:createApiKey`, `searchApiKeys`, `deleteApiKey` for the
//! caller, and `security:createApiKey`, `searchApiKeys`, `deleteApiKey` for a given `userId`.
//!
//! An API key is a token (`kapikey-` + a JWT signed like the `kauth-` ones, with a random `jti`) and
//! a description. Two records, written in one batch:
//!
//! - the key, kind [`API_KEY`], id `<kuid>:<_id>`, body `{userId, description, expiresAt, ttl,
//!   fingerprint}`: what the searches read. `fingerprint` is the SHA-256 of the token (never the
//!   token itself), so that deleting the key finds its token record;
//! - the token record, kind [`crate::TOKEN`], id [`crate::tokens::token_id`], body `{kuid, expiresAt,
//!   apiKey}`: what the gate checks, cached and invalidated from the change feed like every token
//!   record, so a deleted key stops working on every node.
//!
//! The token is answered once, by the create action; nothing stores it.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};
use tollgate_core::{ActionDef, ArgType, Context, route};
use tollgate_protocol::errors::{
    SECURITY_RIGHTS_UNAUTHORIZED, SECURITY_USER_NOT_FOUND,
    SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS, SERVICES_STORAGE_GET_LIMIT_EXCEEDED,
    SERVICES_STORAGE_NOT_FOUND,
};
use tollgate_protocol::{ArgRef, KuzzleError, Request};
use tollgate_storage::{Expect, Op, Store, StoreError};

use crate::cache::SecurityCache;
use crate::controller::{SecurityController, check_refresh, commit_visible};
use crate::query::{self, Query};
use crate::search::{MAX_RESULT_WINDOW, non_negative};
use crate::tokens::{self, Secret};
use crate::{TOKEN, USER, now_ms, scan, store_error};

/// Store kind of API keys (id: `<kuid>:<_id>`).
pub const API_KEY: &str = "api-key";

/// Longest `body.description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Longest API key `_id`, in bytes (as every document id).
pub const MAX_ID_BYTES: usize = 512;

/// The fields of a key that the searches match and answer (`fingerprint` is neither).
const PUBLIC_FIELDS: [&str; 4] = ["userId", "description", "expiresAt", "ttl"];

/// The store id of key `id` of user `kuid`. A user's keys share the prefix `<kuid>:`; as for token
/// records, the prefix may also match keys of a user whose id starts with `<kuid>:`, so every read
/// checks the record's `userId`.
pub fn store_id(kuid: &str, id: &str) -> String {
    format!("{kuid}:{id}")
}

fn not_found(id: &str) -> KuzzleError {
    KuzzleError::new(
        &SERVICES_STORAGE_NOT_FOUND,
        vec![json!(id), json!("kuzzle"), json!("api-keys")],
    )
}

/// `userId` of the security actions: a required, non-empty string.
fn user_id(req: &Request) -> Result<&str, KuzzleError> {
    match req.string("userId")? {
        None | Some("") => Err(KuzzleError::missing_argument("userId")),
        Some(id) => Ok(id),
    }
}

/// The kuid of an authenticated caller; anonymous has no API keys.
fn caller_kuid<'a>(ctx: &'a Context, action: &str) -> Result<&'a str, KuzzleError> {
    if ctx.caller.is_anonymous() {
        return Err(KuzzleError::new(
            &SECURITY_RIGHTS_UNAUTHORIZED,
            vec![json!("auth"), json!(action)],
        ));
    }
    Ok(&ctx.caller.kuid)
}

/// `expiresIn`: integer milliseconds or a timespan string; absent or -1: never expires.
fn expires_in(req: &Request) -> Result<i64, KuzzleError> {
    let bad = || {
        KuzzleError::invalid_argument(
            "expiresIn",
            "a number of milliseconds, or a parsable timespan string",
        )
    };
    let ttl = match req.arg("expiresIn") {
        None => -1,
        Some(ArgRef::Json(Value::Number(n))) => n.as_i64().ok_or_else(bad)?,
        Some(ArgRef::Json(Value::String(s))) => tokens::parse_timespan(s).ok_or_else(bad)?,
        Some(ArgRef::Query([Some(s)])) => tokens::parse_timespan(s).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if ttl == 0 || ttl < -1 {
        return Err(bad());
    }
    Ok(ttl)
}

/// The optional `_id` of a new key: absent, null or `""` → a UUID v4.
fn new_key_id(req: &Request) -> Result<String, KuzzleError> {
    match req.string("_id")? {
        None | Some("") => Ok(uuid::Uuid::new_v4().to_string()),
        Some(id) if id.len() > MAX_ID_BYTES => Err(KuzzleError::invalid_argument(
            "_id",
            "a string of at most 512 bytes",
        )),
        Some(id) => Ok(id.to_owned()),
    }
}

/// `body.description`: a required string of at most [`MAX_DESCRIPTION_BYTES`].
fn description(req: &Request) -> Result<&str, KuzzleError> {
    let body = req.required_body()?;
    match body.get("description") {
        None | Some(Value::Null) => Err(KuzzleError::missing_argument("body.description")),
        Some(Value::String(s)) if s.len() > MAX_DESCRIPTION_BYTES => Err(
            KuzzleError::invalid_argument("body.description", "a string of at most 4096 bytes"),
        ),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(KuzzleError::invalid_type("body.description", "string")),
    }
}

/// `{userId, description, expiresAt, ttl}` of a stored key, in that order.
fn public_source(body: &Value) -> Map<String, Value> {
    PUBLIC_FIELDS
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                body.get(*f).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// Creates a key for `kuid` (checked arguments first; the user must exist when the batch commits).
async fn create(
    store: &dyn Store,
    cache: &SecurityCache,
    secret: &Secret,
    req: &Request,
    kuid: &str,
) -> Result<Value, KuzzleError> {
    let ttl = expires_in(req)?;
    check_refresh(req)?;
    let id = new_key_id(req)?;
    let description = description(req)?;
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let ttl_ms = u64::try_from(ttl).ok();
    let (iat, exp, at) = tokens::lifetime(now_ms(), ttl_ms);
    let token = tokens::issue_api_key(secret, kuid, iat, exp, &jti);
    let expires_at = at.map_or(-1, |at| i64::try_from(at).unwrap_or(i64::MAX));
    let token_id = tokens::token_id(kuid, &token);
    let fingerprint = token_id
        .get(tokens::user_tokens_prefix(kuid).len()..)
        .unwrap_or_default()
        .to_owned();
    let mut source = Map::new();
    source.insert("userId".into(), json!(kuid));
    source.insert("description".into(), json!(description));
    source.insert("expiresAt".into(), json!(expires_at));
    source.insert("ttl".into(), json!(ttl));
    let mut stored = source.clone();
    stored.insert("fingerprint".into(), json!(fingerprint));
    let ops = vec![
        Op::Check {
            kind: USER,
            id: kuid.to_owned(),
            expect: Expect::Present,
        },
        Op::Put {
            kind: API_KEY,
            id: store_id(kuid, &id),
            body: Value::Object(stored),
            expect: Expect::Absent,
        },
        Op::Put {
            kind: TOKEN,
            id: token_id,
            body: json!({"kuid": kuid, "expiresAt": expires_at, "apiKey": id}),
            expect: Expect::Absent,
        },
    ];
    match commit_visible(store, cache, ops).await {
        Ok(_) => {}
        Err(StoreError::Conflict { index: 0 }) => {
            return Err(KuzzleError::new(
                &SECURITY_USER_NOT_FOUND,
                vec![json!(kuid)],
            ));
        }
        Err(StoreError::Conflict { index: 1 }) => {
            return Err(KuzzleError::plain(
                &SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS,
            ));
        }
        // A random `jti` in every token: a second record of the same token is not expected.
        Err(StoreError::Conflict { .. }) => {
            return Err(KuzzleError::internal("API key token already recorded"));
        }
        Err(e) => return Err(store_error(e)),
    }
    source.insert("token".into(), json!(token));
    Ok(json!({"_id": id, "_source": source}))
}

/// Deletes key `_id` of `kuid`, and its token record in the same batch.
async fn delete(
    store: &dyn Store,
    cache: &SecurityCache,
    req: &Request,
    kuid: &str,
) -> Result<Value, KuzzleError> {
    let id = req.required_id()?;
    check_refresh(req)?;
    let sid = store_id(kuid, id);
    let doc = store
        .get(API_KEY, &sid)
        .await
        .map_err(store_error)?
        .filter(|d| d.body.get("userId").and_then(Value::as_str) == Some(kuid))
        .ok_or_else(|| not_found(id))?;
    let mut ops = vec![Op::Delete {
        kind: API_KEY,
        id: sid,
        expect: Expect::Version(doc.version),
    }];
    if let Some(fingerprint) = doc.body.get("fingerprint").and_then(Value::as_str) {
        ops.push(Op::Delete {
            kind: TOKEN,
            id: format!("{}{fingerprint}", tokens::user_tokens_prefix(kuid)),
            expect: Expect::Any,
        });
    }
    match commit_visible(store, cache, ops).await {
        Ok(_) => Ok(json!({ "_id": id })),
        // Deleted (or replaced) meanwhile.
        Err(StoreError::Conflict { .. }) => Err(not_found(id)),
        Err(e) => Err(store_error(e)),
    }
}

/// The query of a search: the body is the query clause itself, as in Kuzzle (`{}` or no body: every
/// key); a body with `query` (and optionally `sort`) is read as the other searches' bodies.
fn search_body(req: &Request) -> Result<(Query, Vec<query::SortKey>), KuzzleError> {
    let Some(body) = req.body.as_ref().filter(|b| !b.is_empty()) else {
        return Ok((Query::MatchAll, Vec::new()));
    };
    if body.contains_key("query") || body.contains_key("sort") {
        if let Some(key) = body.keys().find(|k| *k != "query" && *k != "sort") {
            return Err(KuzzleError::unexpected_argument(
                format!("body.{key}"),
                &["query", "sort"],
            ));
        }
        let q = match body.get("query").filter(|q| !q.is_null()) {
            Some(q) => query::parse(q, "body.query")?,
            None => Query::MatchAll,
        };
        let sort = match body.get("sort").filter(|s| !s.is_null()) {
            Some(s) => query::parse_sort(s, "body.sort")?,
            None => Vec::new(),
        };
        return Ok((q, sort));
    }
    Ok((
        query::parse(&Value::Object(body.clone()), "body")?,
        Vec::new(),
    ))
}

/// The keys of `kuid` matching the query, a page of them: `{hits, total}`. `limit` bounds `size`.
async fn search(
    store: &dyn Store,
    req: &Request,
    kuid: &str,
    limit: u64,
) -> Result<Value, KuzzleError> {
    let from = usize::try_from(non_negative(req, "from")?.unwrap_or(0)).unwrap_or(usize::MAX);
    let size = match non_negative(req, "size")? {
        Some(n) if n as u64 > limit => {
            return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => usize::try_from(limit.min(10_000)).unwrap_or(10_000),
    };
    if let Some(lang) = req.string("lang")?
        && lang != "elasticsearch"
        && lang != "koncorde"
    {
        return Err(KuzzleError::invalid_argument(
            "lang",
            r#""elasticsearch" or "koncorde""#,
        ));
    }
    if req.arg("scroll").is_some() {
        return Err(KuzzleError::unexpected_argument(
            "scroll",
            &["from", "size", "lang"],
        ));
    }
    let (query, sort) = search_body(req)?;
    let max_window = MAX_RESULT_WINDOW.max(usize::try_from(limit).unwrap_or(usize::MAX));
    let size = if req.arg("size").is_none() {
        size.min(max_window.saturating_sub(from))
    } else {
        size
    };
    let window = from.saturating_add(size);
    if window > max_window {
        return Err(KuzzleError::invalid_argument(
            "from",
            &format!("an offset such that from + size is at most {max_window}"),
        ));
    }
    let by_sort = |a: &(String, Value), b: &(String, Value)| -> Ordering {
        query::compare(&sort, (&a.0, &a.1), (&b.0, &b.1))
    };
    let prefix = tokens::user_tokens_prefix(kuid);
    let mut kept: Vec<(String, Value)> = Vec::new();
    let mut total = 0usize;
    scan(store, API_KEY, &prefix, |docs| {
        for d in docs {
            if d.body.get("userId").and_then(Value::as_str) != Some(kuid) {
                continue;
            }
            let id = d.id.get(prefix.len()..).unwrap_or_default().to_owned();
            let source = Value::Object(public_source(&d.body));
            if !query.matches(&id, &source) {
                continue;
            }
            total += 1;
            if window > 0 {
                kept.push((id, source));
                if kept.len() >= window.saturating_mul(2).max(1_024) {
                    kept.sort_by(by_sort);
                    kept.truncate(window);
                }
            }
        }
        true
    })
    .await
    .map_err(store_error)?;
    kept.sort_by(by_sort);
    let hits: Vec<Value> = kept
        .into_iter()
        .skip(from)
        .take(size)
        .map(|(id, source)| json!({"_id": id, "_source": source}))
        .collect();
    Ok(json!({"hits": hits, "total": total}))
}

/// Store ids of every API key of `kuid` (for `deleteUser`).
pub(crate) async fn user_api_keys(
    store: &dyn Store,
    kuid: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    scan(store, API_KEY, &tokens::user_tokens_prefix(kuid), |docs| {
        ids.extend(
            docs.into_iter()
                .filter(|d| d.body.get("userId").and_then(Value::as_str) == Some(kuid))
                .map(|d| d.id),
        );
        true
    })
    .await?;
    Ok(ids)
}

/// Ids of the token records of `kuid` that are not API keys (what a global logout revokes).
pub(crate) async fn session_tokens(
    store: &dyn Store,
    kuid: &str,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    scan(store, TOKEN, &tokens::user_tokens_prefix(kuid), |docs| {
        ids.extend(
            docs.into_iter()
                .filter(|d| {
                    d.body.get("kuid").and_then(Value::as_str) == Some(kuid)
                        && d.body.get("apiKey").is_none()
                })
                .map(|d| d.id),
        );
        true
    })
    .await?;
    Ok(ids)
}

/// Whether a token record is an API key's.
pub(crate) fn is_api_key_record(body: &Value) -> bool {
    body.get("apiKey").is_some()
}

const EXPIRES: &str = "Lifetime: milliseconds, or a timespan such as 30d; -1 (default): never.";
const REFRESH: &str = "wait_for (default) or false; the answer always waits for the write.";
const KEY_ID: &str = "The API key's id (at most 512 bytes); generated (UUID v4) when absent.";
const SEARCH_BODY: &str = "The query itself (match_all, ids, term, terms, prefix, exists, bool over \
    userId, description, expiresAt, ttl, _id), or {query, sort}; empty: every key.";

fn create_def(name: &'static str, routes: &[tollgate_core::HttpRoute]) -> ActionDef {
    use ArgType::{OneOf, String};
    ActionDef::new(name, routes)
        .arg("expiresIn", String, EXPIRES)
        .arg("refresh", OneOf(&["wait_for", "false"]), REFRESH)
        .arg("_id", String, KEY_ID)
        .body(true, "The API key's description.")
        .required_field(
            "description",
            String,
            "What the key is for (at most 4096 bytes).",
        )
}

fn search_def(name: &'static str, routes: &[tollgate_core::HttpRoute]) -> ActionDef {
    use ArgType::{IntegerIn, Object, OneOf};
    ActionDef::new(name, routes)
        .arg("from", IntegerIn(0, i64::MAX), "Hits skipped (default 0).")
        .arg(
            "size",
            IntegerIn(0, i64::MAX),
            "Hits returned at most (default and maximum: documentsFetchCount).",
        )
        .arg(
            "lang",
            OneOf(&["elasticsearch", "koncorde"]),
            "elasticsearch (default) or koncorde; read and ignored.",
        )
        .body(false, SEARCH_BODY)
        .field("query", Object, "A query, when the body is {query, sort}.")
        .field(
            "sort",
            ArgType::Any,
            "A field, {field: asc|desc}, or an array of those.",
        )
}

/// The `auth` actions of this module.
pub(crate) fn auth_actions() -> Vec<ActionDef> {
    use ArgType::{OneOf, String};
    vec![
        create_def("createApiKey", &[route("POST", "/api-keys/_create")])
            .describe("Creates an API key for the caller; its token is answered this once."),
        search_def("searchApiKeys", &[route("POST", "/api-keys/_search")])
            .describe("The caller's API keys matching a query (no tokens)."),
        ActionDef::new("deleteApiKey", &[route("DELETE", "/api-keys/:_id")])
            .describe("Deletes one of the caller's API keys; its token stops working.")
            .required("_id", String, "The API key's id.")
            .arg("refresh", OneOf(&["wait_for", "false"]), REFRESH),
    ]
}

/// The `security` actions of this module.
pub(crate) fn security_actions() -> Vec<ActionDef> {
    use ArgType::{OneOf, String};
    let user = "The kuid of the key's user.";
    vec![
        create_def(
            "createApiKey",
            &[route("POST", "/users/:userId/api-keys/_create")],
        )
        .describe("Creates an API key for a user; its token is answered this once.")
        .required("userId", String, user),
        search_def(
            "searchApiKeys",
            &[route("POST", "/users/:userId/api-keys/_search")],
        )
        .describe("A user's API keys matching a query (no tokens).")
        .required("userId", String, user),
        ActionDef::new(
            "deleteApiKey",
            &[route("DELETE", "/users/:userId/api-keys/:_id")],
        )
        .describe("Deletes one of a user's API keys; its token stops working.")
        .required("userId", String, user)
        .required("_id", String, "The API key's id.")
        .arg("refresh", OneOf(&["wait_for", "false"]), REFRESH),
    ]
}

impl SecurityController {
    /// The secret `security:createApiKey` signs tokens with (the one of the `auth` controller).
    pub fn with_api_key_secret(mut self, secret: Secret) -> Self {
        self.api_key_secret = Some(secret);
        self
    }

    /// `security:createApiKey`.
    pub(crate) async fn create_api_key(&self, req: &Request) -> Result<Value, KuzzleError> {
        let kuid = user_id(req)?;
        let secret = self
            .api_key_secret
            .as_ref()
            .ok_or_else(|| KuzzleError::internal("no token secret for API keys"))?;
        create(self.store.as_ref(), &self.cache, secret, req, kuid).await
    }

    /// `security:searchApiKeys`.
    pub(crate) async fn search_api_keys(&self, req: &Request) -> Result<Value, KuzzleError> {
        let kuid = user_id(req)?;
        search(
            self.store.as_ref(),
            req,
            kuid,
            self.config.documents_fetch_count,
        )
        .await
    }

    /// `security:deleteApiKey`.
    pub(crate) async fn delete_api_key(&self, req: &Request) -> Result<Value, KuzzleError> {
        let kuid = user_id(req)?;
        delete(self.store.as_ref(), &self.cache, req, kuid).await
    }
}

impl crate::auth::AuthController {
    /// `auth:createApiKey`: a key for the caller.
    pub(crate) async fn create_my_api_key(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let kuid = caller_kuid(ctx, "createApiKey")?;
        create(self.store.as_ref(), &self.cache, &self.secret, req, kuid).await
    }

    /// `auth:searchApiKeys`: the caller's keys (anonymous has none).
    pub(crate) async fn search_my_api_keys(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let kuid = caller_kuid(ctx, "searchApiKeys")?;
        search(self.store.as_ref(), req, kuid, MAX_RESULT_WINDOW as u64).await
    }

    /// `auth:deleteApiKey`: one of the caller's keys.
    pub(crate) async fn delete_my_api_key(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let kuid = caller_kuid(ctx, "deleteApiKey")?;
        delete(self.store.as_ref(), &self.cache, req, kuid).await
    }
}
