//! The `security` controller: profiles and roles (`routes.md` §2–3, `update-profile.md`).
//!
//! Writes go to the store with compare-and-swap; the answer is sent once this node's cache serves the
//! new version. Reads are served from the cache.

use std::collections::{HashMap as StdHashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tollgate_catalog::Catalog;
use tollgate_core::{ActionDef, ArgType, Context, Controller, field, route};
use tollgate_protocol::errors::ErrorDef;
use tollgate_protocol::errors::{
    SECURITY_PROFILE_CANNOT_DELETE, SECURITY_PROFILE_IN_USE, SECURITY_PROFILE_NOT_FOUND,
    SECURITY_ROLE_CANNOT_DELETE, SECURITY_ROLE_IN_USE, SECURITY_ROLE_NOT_FOUND,
    SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS, SERVICES_STORAGE_GET_LIMIT_EXCEEDED,
    SERVICES_STORAGE_TOO_MANY_CHANGES,
};
use tollgate_protocol::{ArgRef, KuzzleError, Payload, Request};
use tollgate_storage::{Committed, Doc, Expect, Op, Store, StoreError};

use crate::audit;
use crate::cache::{CachedDoc, Docs, PEER_APPLY_TIMEOUT, SecurityCache, SecuritySnapshot};
use crate::dryrun;
use crate::lockout::{self, Planned};
use crate::passwords::Passwords;
use crate::rights::rights_listing;
use crate::scroll::Cursors;
use crate::validate::{self, ProfileChecks, RESERVED_KEYS};
use crate::{BUILT_INS, PROFILE, ROLE, USER, created_info, store_error, updated_info};

/// Limits of the security actions.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Largest search `size` and mGet id count (`limits.documentsFetchCount`).
    pub documents_fetch_count: u64,
    /// Most ids of a bulk delete (`limits.documentsWriteCount`).
    pub documents_write_count: u64,
    /// Longest lifetime a search or scroll may give its cursor (`scroll`).
    pub max_scroll_duration: Duration,
    /// Scroll cursors open at once on this node; one more drops the closest to expiry.
    pub max_scroll_cursors: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            documents_fetch_count: 10_000,
            documents_write_count: 200,
            max_scroll_duration: Duration::from_secs(60),
            max_scroll_cursors: 1_000,
        }
    }
}

/// Attempts of a create-or-replace racing with other writers.
const REPLACE_ATTEMPTS: usize = 10;

pub struct SecurityController {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Arc<SecurityCache>,
    catalog: Catalog,
    pub(crate) config: SecurityConfig,
    pub(crate) passwords: Passwords,
    pub(crate) cursors: Cursors,
    /// Signs the tokens of `security:createApiKey` ([`crate::apikeys`]).
    pub(crate) api_key_secret: Option<crate::tokens::Secret>,
}

impl SecurityController {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<SecurityCache>,
        catalog: Catalog,
        config: SecurityConfig,
        passwords: Passwords,
    ) -> Self {
        let cursors = Cursors::new(config.max_scroll_cursors, config.max_scroll_duration);
        Self {
            store,
            cache,
            catalog,
            config,
            passwords,
            cursors,
            api_key_secret: None,
        }
    }

    /// Commits, then waits until this node's cache has the change (`refresh=wait_for` is what every
    /// write does): a change this node cannot confirm in time is reported, not answered as done.
    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        commit_visible(self.store.as_ref(), &self.cache, ops).await
    }
}

/// Commits `ops`, then waits until `cache` has applied them, and the other live nodes too.
pub(crate) async fn commit_visible(
    store: &dyn Store,
    cache: &SecurityCache,
    ops: Vec<Op>,
) -> Result<Committed, StoreError> {
    let committed = store.commit(ops).await?;
    cache
        .wait_for(committed.seq)
        .await
        .map_err(|n| StoreError::NotApplied { seq: n.seq })?;
    // Several nodes on one store: the answer waits until the other live nodes follow the change too,
    // so that the client's next request, wherever the load balancer sends it, sees it.
    let behind = store.peers_applied(committed.seq, PEER_APPLY_TIMEOUT).await;
    if !behind.is_empty() {
        tracing::warn!(
            seq = committed.seq,
            nodes = ?behind,
            "nodes did not apply a change in time; answering anyway"
        );
    }
    Ok(committed)
}

/// `{_id, _version, _source}`: the source moves in (`json!` would copy it through the serializer).
pub(crate) fn doc_result(id: &str, version: u64, source: Value) -> Value {
    let mut result = Map::with_capacity(3);
    result.insert("_id".into(), id.into());
    result.insert("_version".into(), version.into());
    result.insert("_source".into(), source);
    Value::Object(result)
}

/// The answer of a dry run: the would-be document (`null` once deleted) and its impact.
fn dry_result(id: &str, version: Option<u64>, source: Option<&Value>, impact: Value) -> Value {
    json!({"_id": id, "_source": source, "_version": version, "dryRun": true, "impact": impact})
}

/// The profiles whose policies name role `id`, in `snapshot`.
fn profiles_using(snapshot: &SecuritySnapshot, id: &str) -> HashSet<String> {
    snapshot
        .profiles
        .iter()
        .filter(|(_, p)| p.rights.policies.iter().any(|q| q.role_id == id))
        .map(|(pid, _)| pid.clone())
        .collect()
}

impl SecurityController {
    /// A dry run of writing (`Some`) or deleting (`None`) role or profile `id`: what it would do,
    /// nothing written. `new_profiles`: users whose profile lists the change edits.
    async fn dry_run(
        &self,
        kind: &'static str,
        id: &str,
        write: Option<(u64, &Value)>,
        new_profiles: &StdHashMap<String, Vec<String>>,
    ) -> Result<Value, KuzzleError> {
        let before = self.cache.snapshot();
        let mut after = (*before).clone();
        let doc = write.map(|(version, body)| Doc {
            id: id.to_owned(),
            version,
            body: body.clone(),
        });
        after.apply(kind, id, doc.as_ref());
        let changed = if kind == ROLE {
            let mut c = profiles_using(&before, id);
            c.extend(profiles_using(&after, id));
            c
        } else {
            HashSet::from([id.to_owned()])
        };
        let impact =
            dryrun::impact(&before, &after, self.store.as_ref(), &changed, new_profiles).await?;
        Ok(dry_result(
            id,
            write.map(|(v, _)| v),
            write.map(|(_, b)| b),
            impact,
        ))
    }

    /// `security:searchAuditLog`: the audit records (oldest first) matching every filter given:
    /// `kind`, `target`, `author` (strings), `since`/`until` (epoch ms, inclusive); `from`/`size`.
    async fn search_audit_log(&self, req: &Request) -> Result<Value, KuzzleError> {
        // `from`, `size`, `lang`, no `scroll`, and `body.query` / `body.sort` as every search.
        let search = self.search_request(
            req,
            &crate::search::SearchSpec {
                filter: None,
                scroll: false,
                search_after: false,
            },
        )?;
        let kind = req.string("kind")?.map(str::to_owned);
        let target = req.string("target")?.map(str::to_owned);
        let author = req.string("author")?.map(str::to_owned);
        let since = crate::search::non_negative(req, "since")?;
        let until = crate::search::non_negative(req, "until")?;
        let field = |doc: &Doc, name: &str| {
            doc.body
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut hits = audit::records(self.store.as_ref(), |doc| {
            let at = doc.body.get("at").and_then(Value::as_i64).unwrap_or(0);
            kind.as_ref()
                .is_none_or(|k| field(doc, "kind").as_ref() == Some(k))
                && target
                    .as_ref()
                    .is_none_or(|t| field(doc, "target").as_ref() == Some(t))
                && author
                    .as_ref()
                    .is_none_or(|a| field(doc, "author").as_ref() == Some(a))
                && since.is_none_or(|s| at >= s)
                && until.is_none_or(|u| at <= u)
                && search.query.matches(&doc.id, &doc.body)
        })
        .await
        .map_err(store_error)?;
        // Oldest first (record ids are in time order) unless a sort is given.
        if !search.sort.is_empty() {
            hits.sort_by(|a, b| {
                crate::query::compare(&search.sort, (&a.id, &a.body), (&b.id, &b.body))
            });
        }
        let total = hits.len();
        let hits: Vec<Value> = hits
            .into_iter()
            .skip(search.from)
            .take(search.size)
            .map(|d| json!({"_id": d.id, "_source": d.body}))
            .collect();
        Ok(json!({"hits": hits, "total": total}))
    }

    /// `security:getProfileHistory` / `getRoleHistory`: every recorded version of one document,
    /// oldest first: `_version` (null once deleted), `_source` as written, author, time, action.
    async fn history(&self, kind: &'static str, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?.to_owned();
        let hits = audit::records(self.store.as_ref(), |doc| {
            doc.body.get("kind").and_then(Value::as_str) == Some(kind)
                && doc.body.get("target").and_then(Value::as_str) == Some(id.as_str())
        })
        .await
        .map_err(store_error)?;
        let hits: Vec<Value> = hits
            .into_iter()
            .map(|d| {
                let b = &d.body;
                json!({
                    "_version": b.get("versionAfter"),
                    "_source": b.get("document"),
                    "action": b.get("action"),
                    "at": b.get("at"),
                    "author": b.get("author"),
                })
            })
            .collect();
        let total = hits.len();
        Ok(json!({"hits": hits, "total": total}))
    }

    /// A dry run stops where the commit would fail for a missing role.
    async fn roles_exist(&self, role_ids: &[String]) -> Result<(), KuzzleError> {
        let found = self.store.mget(ROLE, role_ids).await.map_err(store_error)?;
        match role_ids.iter().zip(&found).find(|(_, d)| d.is_none()) {
            Some((missing, _)) => Err(with_id(&SECURITY_ROLE_NOT_FOUND, missing)),
            None => Ok(()),
        }
    }
}

fn with_id(def: &'static ErrorDef, id: &str) -> KuzzleError {
    KuzzleError::new(def, vec![json!(id)])
}

fn too_many_changes(id: &str) -> KuzzleError {
    KuzzleError::new(&SERVICES_STORAGE_TOO_MANY_CHANGES, vec![json!(id)])
}

/// `refresh`: `"wait_for"` or `true` (the same), `false` or `"false"` (HTTP: a bare `?refresh` and
/// `?refresh=true` are `wait_for`).
pub(crate) fn check_refresh(req: &Request) -> Result<(), KuzzleError> {
    let ok = match req.arg("refresh") {
        None => true,
        Some(ArgRef::Json(Value::String(s))) => s == "wait_for" || s == "false",
        // `true` is `wait_for`, as Kuzzle and the SDK's documentation have it.
        Some(ArgRef::Json(Value::Bool(_))) => true,
        Some(ArgRef::Json(_)) => false,
        Some(ArgRef::Query([None])) => true,
        Some(ArgRef::Query([Some(s)])) => s == "wait_for" || s == "false" || s == "true",
        Some(ArgRef::Query(_)) => return Err(KuzzleError::invalid_type("refresh", "string")),
    };
    if ok {
        Ok(())
    } else {
        Err(KuzzleError::invalid_argument(
            "refresh",
            r#""wait_for" or false"#,
        ))
    }
}

/// `retryOnConflict`: an integer in 0..=100, default 10.
pub(crate) fn retry_on_conflict(req: &Request) -> Result<u32, KuzzleError> {
    match req.integer("retryOnConflict")? {
        None => Ok(10),
        Some(n) => u32::try_from(n).ok().filter(|n| *n <= 100).ok_or_else(|| {
            KuzzleError::invalid_argument("retryOnConflict", "an integer between 0 and 100")
        }),
    }
}

/// A short random pause between compare-and-swap attempts.
pub(crate) async fn backoff() {
    let micros = rand::rng().random_range(100..2000);
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

/// Splits a stored `_source` into the definition and its `_kuzzle_info`.
/// A document's content without its `_kuzzle_info`, and that `_kuzzle_info`; the body is taken,
/// not copied.
fn split_source(doc: &mut Doc) -> (Map<String, Value>, Option<Value>) {
    let mut map = match std::mem::take(&mut doc.body) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let info = map.shift_remove("_kuzzle_info");
    (map, info)
}

/// A document's `_kuzzle_info`.
fn info_of(doc: &Doc) -> Option<&Value> {
    doc.body.get("_kuzzle_info")
}

fn with_info(mut source: Map<String, Value>, info: Value) -> Value {
    source.insert("_kuzzle_info".into(), info);
    Value::Object(source)
}

/// `body.ids` of an mGet.
fn mget_ids(req: &Request, limit: u64) -> Result<Vec<String>, KuzzleError> {
    let body = req.required_body()?;
    let ids = match body.get("ids") {
        None => return Err(KuzzleError::missing_argument("body.ids")),
        Some(Value::Array(ids)) => ids,
        Some(_) => return Err(KuzzleError::invalid_type("body.ids", "array")),
    };
    let ids = ids
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| KuzzleError::invalid_type("body.ids", "string[]"))?;
    if ids.len() as u64 > limit {
        return Err(KuzzleError::plain(&SERVICES_STORAGE_GET_LIMIT_EXCEEDED));
    }
    Ok(ids)
}

impl SecurityController {
    // ---- profiles ----

    async fn update_profile(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        check_refresh(req)?;
        let retries = retry_on_conflict(req)?;
        let force = req.boolean("force")?.unwrap_or(false);
        req.boolean("strict")?;
        let allow_lockout = lockout::allowed(req)?;
        let dry_run = dryrun::requested(req)?;
        let snapshot = self.cache.snapshot();
        let checks = ProfileChecks {
            store: self.store.as_ref(),
            known_roles: Some(snapshot.as_ref()),
            catalog: &self.catalog,
            check_catalog: !force && body.contains_key("policies"),
        };
        let mut conflicts = 0;
        loop {
            let mut doc = self
                .store
                .get(PROFILE, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| with_id(&SECURITY_PROFILE_NOT_FOUND, id))?;
            let (mut merged, info) = split_source(&mut doc);
            for (k, v) in body {
                if !RESERVED_KEYS.contains(&k.as_str()) {
                    merged.insert(k.clone(), v.clone());
                }
            }
            let (definition, role_ids) = validate::profile(id, &merged, &checks).await?;
            let source = with_info(
                definition,
                updated_info(info.as_ref(), ctx.caller.audit_kuid()),
            );
            let mut ops = presence_checks(ROLE, &role_ids);
            ops.push(Op::Put {
                kind: PROFILE,
                id: id.to_owned(),
                body: source.clone(),
                expect: Expect::Version(doc.version),
            });
            let planned = [Planned::Definition {
                kind: PROFILE,
                id,
                source: Some(&source),
            }];
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            if dry_run {
                self.roles_exist(&role_ids).await?;
                return self
                    .dry_run(
                        PROFILE,
                        id,
                        Some((doc.version + 1, &source)),
                        &StdHashMap::new(),
                    )
                    .await;
            }
            match self.commit(ops).await {
                Ok(c) => {
                    let version = c.versions.last().copied().flatten().unwrap_or(0);
                    return Ok(doc_result(id, version, source));
                }
                Err(StoreError::Conflict { index }) if index < role_ids.len() => {
                    return Err(with_id(&SECURITY_ROLE_NOT_FOUND, &role_ids[index]));
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    if conflicts > retries {
                        return Err(too_many_changes(id));
                    }
                    backoff().await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// createProfile (`replace` false) and createOrReplaceProfile (`replace` true).
    async fn write_profile(
        &self,
        req: &Request,
        ctx: &Context,
        replace: bool,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        match body.get("policies") {
            None => return Err(KuzzleError::missing_argument("body.policies")),
            Some(Value::Array(_)) => {}
            Some(_) => return Err(KuzzleError::invalid_type("body.policies", "array")),
        }
        check_refresh(req)?;
        let force = req.boolean("force")?.unwrap_or(false);
        req.boolean("strict")?;
        let snapshot = self.cache.snapshot();
        let checks = ProfileChecks {
            store: self.store.as_ref(),
            known_roles: Some(snapshot.as_ref()),
            catalog: &self.catalog,
            check_catalog: !force,
        };
        let (definition, role_ids) = validate::profile(id, body, &checks).await?;
        self.write_definition(PROFILE, definition, role_ids, req, ctx, replace)
            .await
    }

    /// Writes a validated role or profile definition: create (`Absent`), or replace an existing one
    /// keeping `author`/`createdAt`.
    async fn write_definition(
        &self,
        kind: &'static str,
        definition: Map<String, Value>,
        role_ids: Vec<String>,
        req: &Request,
        ctx: &Context,
        replace: bool,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let allow_lockout = lockout::allowed(req)?;
        let dry_run = dryrun::requested(req)?;
        for _ in 0..REPLACE_ATTEMPTS {
            let existing = if replace || dry_run {
                self.store.get(kind, id).await.map_err(store_error)?
            } else {
                None
            };
            if dry_run && !replace && existing.is_some() {
                return Err(KuzzleError::plain(
                    &SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS,
                ));
            }
            let (info, expect) = match &existing {
                Some(doc) => (
                    updated_info(info_of(doc), ctx.caller.audit_kuid()),
                    Expect::Version(doc.version),
                ),
                None => (created_info(ctx.caller.audit_kuid()), Expect::Absent),
            };
            let source = with_info(definition.clone(), info);
            let mut ops = presence_checks(ROLE, &role_ids);
            ops.push(Op::Put {
                kind,
                id: id.to_owned(),
                body: source.clone(),
                expect,
            });
            let planned = [Planned::Definition {
                kind,
                id,
                source: Some(&source),
            }];
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            if dry_run {
                self.roles_exist(&role_ids).await?;
                let version = existing.as_ref().map_or(1, |d| d.version + 1);
                return self
                    .dry_run(kind, id, Some((version, &source)), &StdHashMap::new())
                    .await;
            }
            match self.commit(ops).await {
                Ok(c) => {
                    let version = c.versions.last().copied().flatten().unwrap_or(0);
                    return Ok(doc_result(id, version, source));
                }
                Err(StoreError::Conflict { index }) if index < role_ids.len() => {
                    return Err(with_id(&SECURITY_ROLE_NOT_FOUND, &role_ids[index]));
                }
                Err(StoreError::Conflict { .. }) if !replace => {
                    return Err(KuzzleError::plain(
                        &SERVICES_STORAGE_DOCUMENT_ALREADY_EXISTS,
                    ));
                }
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(too_many_changes(id))
    }

    fn get_profile(&self, req: &Request) -> Result<Payload, KuzzleError> {
        let snapshot = self.cache.snapshot();
        get_cached(
            &snapshot.profiles,
            req.required_id()?,
            &SECURITY_PROFILE_NOT_FOUND,
        )
    }

    fn mget_profiles(&self, req: &Request) -> Result<Payload, KuzzleError> {
        let ids = mget_ids(req, self.config.documents_fetch_count)?;
        let snapshot = self.cache.snapshot();
        mget_cached(&snapshot.profiles, &ids, &SECURITY_PROFILE_NOT_FOUND)
    }

    pub(crate) async fn delete_profile(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        check_refresh(req)?;
        let remove = match req.string("onAssignedUsers")? {
            None | Some("fail") => false,
            Some("remove") => true,
            Some(_) => {
                return Err(KuzzleError::invalid_argument(
                    "onAssignedUsers",
                    r#""fail" or "remove""#,
                ));
            }
        };
        let allow_lockout = lockout::allowed(req)?;
        let dry_run = dryrun::requested(req)?;
        for _ in 0..REPLACE_ATTEMPTS {
            self.store
                .get(PROFILE, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| with_id(&SECURITY_PROFILE_NOT_FOUND, id))?;
            if BUILT_INS.contains(&id) {
                return Err(KuzzleError::plain(&SECURITY_PROFILE_CANNOT_DELETE));
            }
            let users = self.store.snapshot(&[USER]).await.map_err(store_error)?;
            let mut ops = vec![Op::KindUnchanged {
                kind: USER,
                since: users.seq,
            }];
            // Each user that loses the profile, with the profiles it keeps.
            let mut kept_by: Vec<(String, Vec<String>)> = Vec::new();
            for (_, user) in &users.docs {
                let Some(ids) = user.body.get("profileIds").and_then(Value::as_array) else {
                    continue;
                };
                if !ids.iter().any(|p| p.as_str() == Some(id)) {
                    continue;
                }
                if !remove {
                    return Err(with_id(&SECURITY_PROFILE_IN_USE, id));
                }
                let mut kept: Vec<Value> = ids
                    .iter()
                    .filter(|p| p.as_str() != Some(id))
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    kept.push(json!("anonymous"));
                }
                kept_by.push((
                    user.id.clone(),
                    kept.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ));
                let mut body = user.body.as_object().cloned().unwrap_or_default();
                body.insert("profileIds".into(), Value::Array(kept));
                let info = updated_info(body.get("_kuzzle_info"), ctx.caller.audit_kuid());
                body.insert("_kuzzle_info".into(), info);
                ops.push(Op::Put {
                    kind: USER,
                    id: user.id.clone(),
                    body: Value::Object(body),
                    expect: Expect::Version(user.version),
                });
            }
            // Any version: a concurrent update does not stop a delete. Only the users referencing
            // the profile are guarded (the kind guard and each user's version).
            let last = ops.len();
            ops.push(Op::Delete {
                kind: PROFILE,
                id: id.to_owned(),
                expect: Expect::Present,
            });
            let mut planned = vec![Planned::Definition {
                kind: PROFILE,
                id,
                source: None,
            }];
            planned.extend(kept_by.iter().map(|(user, kept)| Planned::User {
                id: user,
                profile_ids: Some(kept),
            }));
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            if dry_run {
                let new_profiles: StdHashMap<String, Vec<String>> = kept_by.into_iter().collect();
                return self.dry_run(PROFILE, id, None, &new_profiles).await;
            }
            match self.commit(ops).await {
                Ok(_) => return Ok(json!({ "_id": id })),
                // Deleted meanwhile by someone else.
                Err(StoreError::Conflict { index }) if index == last => {
                    return Err(with_id(&SECURITY_PROFILE_NOT_FOUND, id));
                }
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(too_many_changes(id))
    }

    fn profile_rights(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let snapshot = self.cache.snapshot();
        let p = snapshot
            .profiles
            .get(id)
            .ok_or_else(|| with_id(&SECURITY_PROFILE_NOT_FOUND, id))?;
        Ok(rights_listing(snapshot.as_ref(), [&p.rights]))
    }

    // ---- roles ----

    /// createRole, createOrReplaceRole.
    async fn write_role(
        &self,
        req: &Request,
        ctx: &Context,
        replace: bool,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        let force = req.boolean("force")?.unwrap_or(false);
        check_refresh(req)?;
        let definition = validate::role(id, body, force)?;
        self.write_definition(ROLE, definition, Vec::new(), req, ctx, replace)
            .await
    }

    async fn update_role(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        let force = req.boolean("force")?.unwrap_or(false);
        check_refresh(req)?;
        let retries = retry_on_conflict(req)?;
        let allow_lockout = lockout::allowed(req)?;
        let dry_run = dryrun::requested(req)?;
        let mut conflicts = 0;
        loop {
            let doc = self
                .store
                .get(ROLE, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| with_id(&SECURITY_ROLE_NOT_FOUND, id))?;
            let definition = validate::role(id, body, force)?;
            let source = with_info(
                definition,
                updated_info(info_of(&doc), ctx.caller.audit_kuid()),
            );
            let mut ops = vec![Op::Put {
                kind: ROLE,
                id: id.to_owned(),
                body: source.clone(),
                expect: Expect::Version(doc.version),
            }];
            let planned = [Planned::Definition {
                kind: ROLE,
                id,
                source: Some(&source),
            }];
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            if dry_run {
                return self
                    .dry_run(
                        ROLE,
                        id,
                        Some((doc.version + 1, &source)),
                        &StdHashMap::new(),
                    )
                    .await;
            }
            match self.commit(ops).await {
                Ok(c) => {
                    let version = c.versions.last().copied().flatten().unwrap_or(0);
                    return Ok(doc_result(id, version, source));
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    if conflicts > retries {
                        return Err(too_many_changes(id));
                    }
                    backoff().await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    fn get_role(&self, req: &Request) -> Result<Payload, KuzzleError> {
        let snapshot = self.cache.snapshot();
        get_cached(
            &snapshot.roles,
            req.required_id()?,
            &SECURITY_ROLE_NOT_FOUND,
        )
    }

    fn mget_roles(&self, req: &Request) -> Result<Payload, KuzzleError> {
        let ids = mget_ids(req, self.config.documents_fetch_count)?;
        let snapshot = self.cache.snapshot();
        mget_cached(&snapshot.roles, &ids, &SECURITY_ROLE_NOT_FOUND)
    }

    pub(crate) async fn delete_role(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        check_refresh(req)?;
        for _ in 0..REPLACE_ATTEMPTS {
            self.store
                .get(ROLE, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| with_id(&SECURITY_ROLE_NOT_FOUND, id))?;
            if BUILT_INS.contains(&id) {
                return Err(KuzzleError::plain(&SECURITY_ROLE_CANNOT_DELETE));
            }
            let profiles = self.store.snapshot(&[PROFILE]).await.map_err(store_error)?;
            let used = profiles.docs.iter().any(|(_, p)| {
                p.body
                    .get("policies")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| {
                        ps.iter()
                            .any(|q| q.get("roleId").and_then(Value::as_str) == Some(id))
                    })
            });
            if used {
                return Err(with_id(&SECURITY_ROLE_IN_USE, id));
            }
            if dryrun::requested(req)? {
                return self.dry_run(ROLE, id, None, &StdHashMap::new()).await;
            }
            let ops = vec![
                Op::KindUnchanged {
                    kind: PROFILE,
                    since: profiles.seq,
                },
                // Any version: a concurrent update does not stop a delete.
                Op::Delete {
                    kind: ROLE,
                    id: id.to_owned(),
                    expect: Expect::Present,
                },
            ];
            match self.commit(ops).await {
                Ok(_) => return Ok(json!({ "_id": id })),
                // Deleted meanwhile by someone else.
                Err(StoreError::Conflict { index: 1 }) => {
                    return Err(with_id(&SECURITY_ROLE_NOT_FOUND, id));
                }
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(too_many_changes(id))
    }
}

/// One cached document as a result (its pre-serialized JSON), or `missing` naming the id.
fn get_cached<T: CachedDoc>(
    map: &Docs<T>,
    id: &str,
    missing: &'static ErrorDef,
) -> Result<Payload, KuzzleError> {
    let doc = map.get(id).ok_or_else(|| with_id(missing, id))?;
    Ok(Payload::Raw(Arc::clone(doc.result())))
}

/// `{"hits":[…]}` in request order; the first unknown id fails the whole request.
fn mget_cached<T: CachedDoc>(
    map: &Docs<T>,
    ids: &[String],
    missing: &'static ErrorDef,
) -> Result<Payload, KuzzleError> {
    let mut json = String::from(r#"{"hits":["#);
    for (i, id) in ids.iter().enumerate() {
        let doc = map.get(id).ok_or_else(|| with_id(missing, id))?;
        if i > 0 {
            json.push(',');
        }
        json.push_str(doc.result().get());
    }
    json.push_str("]}");
    RawValue::from_string(json)
        .map(|raw| Payload::Raw(Arc::from(raw)))
        .map_err(KuzzleError::internal)
}

/// `Check` ops asserting that every referenced document of `kind` exists, in the same transaction as
/// the write that references them.
pub(crate) fn presence_checks(kind: &'static str, ids: &[String]) -> Vec<Op> {
    ids.iter()
        .map(|id| Op::Check {
            kind,
            id: id.clone(),
            expect: Expect::Present,
        })
        .collect()
}

/// A count or a time: a non-negative integer.
pub(crate) const COUNT: ArgType = ArgType::IntegerIn(0, i64::MAX);
/// A profile policy's restriction, as the OpenAPI document describes it.
const RESTRICTION: ArgType = ArgType::ObjectOf(&[
    field("index", ArgType::String, true),
    field("collections", ArgType::StringList, false),
]);
/// A profile's `policies`.
const POLICIES: ArgType = ArgType::ArrayOf(&ArgType::ObjectOf(&[
    field("roleId", ArgType::String, true),
    field("restrictedTo", ArgType::ArrayOf(&RESTRICTION), false),
]));
/// A role's `controllers`.
const CONTROLLERS: ArgType = ArgType::MapOf(&ArgType::ObjectOf(&[field(
    "actions",
    ArgType::MapOf(&ArgType::Boolean),
    true,
)]));
/// A new user's `content`.
pub(crate) const USER_CONTENT: ArgType =
    ArgType::ObjectOf(&[field("profileIds", ArgType::StringList, true)]);
/// A new user's `credentials`.
pub(crate) const CREDENTIALS: ArgType = ArgType::ObjectOf(&[field(
    "local",
    ArgType::ObjectOf(&[
        field("username", ArgType::String, true),
        field("password", ArgType::String, true),
    ]),
    false,
)]);

#[async_trait]
impl Controller for SecurityController {
    fn name(&self) -> &'static str {
        "security"
    }

    fn actions(&self) -> Vec<ActionDef> {
        use ArgType::{Any, Boolean, Object, OneOf, String, StringList};
        let id = "The document's id (at most 512 bytes).";
        let refresh = "wait_for (default) or false; the answer always waits for the write.";
        let force_profile = "Skip the strict checks of the policies (unknown roles excepted).";
        let force_role = "Allow controllers that are not Kuzzle-native.";
        let strict = "Read and ignored: strict checking is the default unless force.";
        let retry = "Attempts on a concurrent change, 0..=100 (default 10).";
        let dry = "Validate and report the impact on rights without writing anything.";
        let from = "Hits skipped (default 0).";
        let size = "Hits returned at most (default 10000, at most documentsFetchCount).";
        let lang = "elasticsearch (default) or koncorde; read and ignored.";
        let query = "A query: match_all, ids, term, terms, prefix, exists, bool (security.md).";
        let sort = "A field, {field: asc|desc}, or an array of those (at most 8).";
        let scroll = "Keep a cursor this long (a timespan such as 30s) and answer its scrollId.";
        let scroll_id = "The cursor's id, from the search or the previous page.";
        let profile_write = |a: ActionDef| {
            a.required("_id", String, id)
                .body(true, "The profile definition.")
                .required_field("policies", POLICIES, "[{roleId, restrictedTo?}]")
                .field(
                    "rateLimit",
                    COUNT,
                    "Requests per second for a user (0: none).",
                )
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("force", Boolean, force_profile)
                .arg("strict", Boolean, strict)
                .arg("dryRun", Boolean, dry)
        };
        let role_write = |a: ActionDef| {
            a.required("_id", String, id)
                .body(true, "The role definition.")
                .required_field(
                    "controllers",
                    CONTROLLERS,
                    "{controller: {actions: {action: bool}}}",
                )
                .arg("force", Boolean, force_role)
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("dryRun", Boolean, dry)
        };
        let user_write = |a: ActionDef, content: bool| {
            let a = a.body(content, "The user's content and credentials.");
            let a = if content {
                a.required_field(
                    "content",
                    USER_CONTENT,
                    "The user's content; profileIds (non-empty string list) required.",
                )
            } else {
                a.field("content", Object, "The user's content; no profileIds.")
            };
            a.field("credentials", CREDENTIALS, "{local: {username, password}}")
                .arg(
                    "kuid",
                    OneOf(&["human", "uuid"]),
                    "How a generated kuid is made.",
                )
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("_id", String, "The kuid; generated when absent.")
        };
        vec![
            ActionDef::new("updateProfile", &[route("PUT", "/profiles/:_id/_update")])
                .describe("Merges a partial definition into a profile.")
                .required("_id", String, id)
                .body(true, "The profile keys to change.")
                .field("policies", POLICIES, "[{roleId, restrictedTo?}]")
                .field(
                    "rateLimit",
                    COUNT,
                    "Requests per second for a user (0: none).",
                )
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("retryOnConflict", ArgType::IntegerIn(0, 100), retry)
                .arg("force", Boolean, force_profile)
                .arg("strict", Boolean, strict)
                .arg("dryRun", Boolean, dry),
            profile_write(
                ActionDef::new("createProfile", &[route("POST", "/profiles/:_id/_create")])
                    .describe("Creates a profile."),
            ),
            profile_write(
                ActionDef::new("createOrReplaceProfile", &[route("PUT", "/profiles/:_id")])
                    .describe("Creates a profile or replaces its whole definition."),
            ),
            ActionDef::new("getProfile", &[route("GET", "/profiles/:_id")])
                .describe("One profile.")
                .required("_id", String, id),
            ActionDef::new("mGetProfiles", &[route("POST", "/profiles/_mGet")])
                .describe("Several profiles, in request order; any unknown id fails the request.")
                .required_field("ids", StringList, "The profile ids."),
            ActionDef::new("searchProfiles", &[route("POST", "/profiles/_search")])
                .describe("Profiles, sorted by id, optionally those using some roles.")
                .arg("from", COUNT, from)
                .arg("size", COUNT, size)
                .arg("lang", OneOf(&["elasticsearch", "koncorde"]), lang)
                .arg("scroll", String, scroll)
                .body(false, "The filter: roles, or query; and sort.")
                .field(
                    "roles",
                    StringList,
                    "Profiles with a policy on one of these roles.",
                )
                .field("query", Object, query)
                .field("sort", Any, sort)
                .field(
                    "search_after",
                    ArgType::Array,
                    "The sort values of the last hit of the previous page (one per sort key).",
                ),
            ActionDef::new(
                "scrollProfiles",
                &[route("GET", "/profiles/_scroll/:scrollId")],
            )
            .describe("The next page of a searchProfiles made with scroll.")
            .required("scrollId", String, scroll_id)
            .arg("scroll", String, scroll),
            ActionDef::new("deleteProfile", &[route("DELETE", "/profiles/:_id")])
                .describe("Deletes a profile.")
                .required("_id", String, id)
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg(
                    "onAssignedUsers",
                    OneOf(&["fail", "remove"]),
                    "fail (default) if users hold it, or remove it from them.",
                )
                .arg("dryRun", Boolean, dry),
            ActionDef::new(
                "getProfileRights",
                &[route("GET", "/profiles/:_id/_rights")],
            )
            .describe("The rights a profile grants.")
            .required("_id", String, id),
            role_write(
                ActionDef::new("createRole", &[route("POST", "/roles/:_id/_create")])
                    .describe("Creates a role."),
            ),
            role_write(
                ActionDef::new("createOrReplaceRole", &[route("PUT", "/roles/:_id")])
                    .describe("Creates a role or replaces its whole definition."),
            ),
            role_write(
                ActionDef::new("updateRole", &[route("PUT", "/roles/:_id/_update")])
                    .describe("Replaces the whole definition of an existing role."),
            )
            .arg("retryOnConflict", ArgType::IntegerIn(0, 100), retry),
            ActionDef::new("getRole", &[route("GET", "/roles/:_id")])
                .describe("One role.")
                .required("_id", String, id),
            ActionDef::new("mGetRoles", &[route("POST", "/roles/_mGet")])
                .describe("Several roles, in request order; any unknown id fails the request.")
                .required_field("ids", StringList, "The role ids."),
            ActionDef::new("searchRoles", &[route("POST", "/roles/_search")])
                .describe("Roles, sorted by id, optionally those naming some controllers.")
                .arg("from", COUNT, from)
                .arg("size", COUNT, size)
                .arg("lang", OneOf(&["elasticsearch", "koncorde"]), lang)
                .body(false, "The filter: controllers, or query; and sort.")
                .field(
                    "controllers",
                    StringList,
                    "Roles with a key among these controllers (or *).",
                )
                .field("query", Object, query)
                .field("sort", Any, sort)
                .field(
                    "search_after",
                    ArgType::Array,
                    "The sort values of the last hit of the previous page (one per sort key).",
                ),
            ActionDef::new("deleteRole", &[route("DELETE", "/roles/:_id")])
                .describe("Deletes a role no profile uses.")
                .required("_id", String, id)
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("dryRun", Boolean, dry),
            ActionDef::new(
                "searchAuditLog",
                &[
                    route("POST", "/audit/_search"),
                    route("GET", "/audit/_search"),
                ],
            )
            .describe("Audit records of security and catalog writes, oldest first.")
            .arg(
                "kind",
                String,
                "Records about this kind (role, profile, user, …).",
            )
            .arg("target", String, "Records about this document id.")
            .arg("author", String, "Records of writes by this kuid.")
            .arg("since", COUNT, "Records at or after this time (epoch ms).")
            .arg("until", COUNT, "Records at or before this time (epoch ms).")
            .arg("from", COUNT, from)
            .arg("size", COUNT, size)
            .arg("lang", OneOf(&["elasticsearch", "koncorde"]), lang)
            .body(false, "Optional: query and sort, as in every search.")
            .field("query", Object, query)
            .field("sort", Any, sort),
            ActionDef::new(
                "getProfileHistory",
                &[route("GET", "/profiles/:_id/_history")],
            )
            .describe("Every recorded version of a profile, oldest first.")
            .required("_id", String, id),
            ActionDef::new("getRoleHistory", &[route("GET", "/roles/:_id/_history")])
                .describe("Every recorded version of a role, oldest first.")
                .required("_id", String, id),
            user_write(
                ActionDef::new(
                    "createUser",
                    &[
                        route("POST", "/users/_create"),
                        route("POST", "/users/:_id/_create"),
                    ],
                )
                .describe("Creates a user, with local credentials if given."),
                true,
            ),
            user_write(
                ActionDef::new(
                    "createFirstAdmin",
                    &[
                        route("POST", "/_createFirstAdmin"),
                        route("POST", "/_createFirstAdmin/:_id"),
                    ],
                )
                .describe("Creates the first user holding the profile admin."),
                false,
            )
            .arg(
                "reset",
                Boolean,
                "Then restrict the default rights (restrictDefaultRights).",
            ),
            ActionDef::new(
                "restrictDefaultRights",
                &[route("POST", "/_restrictDefaultRights")],
            )
            .describe("Resets the built-in roles and profiles to their restricted definitions."),
            ActionDef::new("getUser", &[route("GET", "/users/:_id")])
                .describe("One user (-1: the anonymous user).")
                .required("_id", String, id),
            ActionDef::new(
                "mGetUsers",
                &[route("POST", "/users/_mGet"), route("GET", "/users/_mGet")],
            )
            .describe("Several users, in request order; unknown ids are left out.")
            .arg(
                "ids",
                StringList,
                "The kuids (comma-separated on HTTP), when the body has none.",
            )
            .body(false, "Optional: {ids}.")
            .field("ids", StringList, "The kuids."),
            ActionDef::new("searchUsers", &[route("POST", "/users/_search")])
                .describe("The stored users matching a query, sorted.")
                .arg("from", COUNT, from)
                .arg("size", COUNT, size)
                .arg("lang", OneOf(&["elasticsearch", "koncorde"]), lang)
                .arg("scroll", String, scroll)
                .body(false, "Optional: query and sort.")
                .field("query", Object, query)
                .field("sort", Any, sort)
                .field(
                    "search_after",
                    ArgType::Array,
                    "The sort values of the last hit of the previous page (one per sort key).",
                ),
            ActionDef::new("scrollUsers", &[route("GET", "/users/_scroll/:scrollId")])
                .describe("The next page of a searchUsers made with scroll.")
                .required("scrollId", String, scroll_id)
                .arg("scroll", String, scroll),
            ActionDef::new("updateUser", &[route("PUT", "/users/:_id/_update")])
                .describe("Merges content keys (and profileIds) into a user.")
                .required("_id", String, id)
                .body(true, "The content keys to change.")
                .field("profileIds", StringList, "The user's profiles (non-empty).")
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
                .arg("retryOnConflict", ArgType::IntegerIn(0, 100), retry),
            ActionDef::new("deleteUser", &[route("DELETE", "/users/:_id")])
                .describe("Deletes a user, its credentials and its tokens.")
                .required("_id", String, id)
                .arg("refresh", OneOf(&["wait_for", "false"]), refresh),
            ActionDef::new("getUserRights", &[route("GET", "/users/:_id/_rights")])
                .describe("The rights of a user (-1: the anonymous user).")
                .required("_id", String, id),
        ]
        .into_iter()
        .chain(crate::credentials::security_actions())
        .chain(crate::apikeys::security_actions())
        .chain(crate::export::security_actions())
        .chain(crate::bulk::actions())
        .collect()
    }

    fn cached(
        &self,
        action: &str,
        req: &Request,
        _ctx: &Context,
    ) -> Option<Result<Payload, KuzzleError>> {
        Some(match action {
            "getProfile" => self.get_profile(req),
            "mGetProfiles" => self.mget_profiles(req),
            "getRole" => self.get_role(req),
            "mGetRoles" => self.mget_roles(req),
            _ => return None,
        })
    }

    async fn call(&self, action: &str, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        match action {
            "updateProfile" => self.update_profile(req, ctx).await,
            "createProfile" => self.write_profile(req, ctx, false).await,
            "createOrReplaceProfile" => self.write_profile(req, ctx, true).await,
            "getProfile" | "mGetProfiles" | "getRole" | "mGetRoles" => self
                .cached(action, req, ctx)
                .unwrap_or_else(|| {
                    Err(KuzzleError::internal(format!(
                        "security:{action} has no cached answer"
                    )))
                })
                .map(|payload| payload.to_value()),
            "searchProfiles" => self.search_profiles(req),
            "scrollProfiles" => self.scroll(PROFILE, req),
            "deleteProfile" => self.delete_profile(req, ctx).await,
            "getProfileRights" => self.profile_rights(req),
            "createRole" => self.write_role(req, ctx, false).await,
            "createOrReplaceRole" => self.write_role(req, ctx, true).await,
            "updateRole" => self.update_role(req, ctx).await,
            "searchRoles" => self.search_roles(req),
            "deleteRole" => self.delete_role(req).await,
            "searchAuditLog" => self.search_audit_log(req).await,
            "getProfileHistory" => self.history(PROFILE, req).await,
            "getRoleHistory" => self.history(ROLE, req).await,
            "createUser" => self.create_user(req, ctx).await,
            "createFirstAdmin" => self.create_first_admin(req, ctx).await,
            "restrictDefaultRights" => self.restrict_default_rights(ctx).await,
            "getUser" => self.get_user(req).await,
            "mGetUsers" => self.mget_users(req).await,
            "searchUsers" => self.search_users(req).await,
            "scrollUsers" => self.scroll(USER, req),
            "exportUsers" => self.export_users(req, ctx).await,
            "updateUser" => self.update_user(req, ctx).await,
            "deleteUser" => self.delete_user(req).await,
            "getUserRights" => self.user_rights(req).await,
            a if crate::credentials::SECURITY_ACTIONS.contains(&a) => {
                self.credentials(a, req, ctx).await
            }
            "createApiKey" => self.create_api_key(req).await,
            "searchApiKeys" => self.search_api_keys(req).await,
            "deleteApiKey" => self.delete_api_key(req).await,
            "replaceUser" => self.replace_user(req, ctx).await,
            "upsertUser" => self.upsert_user(req, ctx).await,
            "createRestrictedUser" => self.create_restricted_user(req, ctx).await,
            "mDeleteUsers" => self.m_delete(USER, req, ctx).await,
            "mDeleteProfiles" => self.m_delete(PROFILE, req, ctx).await,
            "mDeleteRoles" => self.m_delete(ROLE, req, ctx).await,
            "revokeTokens" => self.revoke_tokens(req).await,
            "checkRights" => self.check_user_rights(req).await,
            "refresh" => self.refresh_collection(req),
            "getProfileMapping" => self.get_mapping(PROFILE).await,
            "getRoleMapping" => self.get_mapping(ROLE).await,
            "getUserMapping" => self.get_mapping(USER).await,
            "updateProfileMapping" => self.update_mapping(PROFILE, req).await,
            "updateRoleMapping" => self.update_mapping(ROLE, req).await,
            "updateUserMapping" => self.update_mapping(USER, req).await,
            other => Err(KuzzleError::internal(format!(
                "security:{other} is not routed here"
            ))),
        }
    }
}
