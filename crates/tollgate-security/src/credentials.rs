//! The credentials API of the `local` strategy (`docs/api/credentials.md`): the `security` actions on
//! any user's credentials (createCredentials, updateCredentials, hasCredentials, getCredentials,
//! getCredentialsById, getCredentialFields, getAllCredentialFields, validateCredentials,
//! deleteCredentials, searchUsersByCredentials, getUserStrategies) and the `auth` actions on the
//! caller's own (createMyCredentials, updateMyCredentials, credentialsExist, getMyCredentials,
//! validateMyCredentials, deleteMyCredentials, updateSelf, getStrategies).
//!
//! Local credentials are two records: [`CREDENTIAL`] (id: the username; `{kuid, hash}`) and [`LOGIN`]
//! (id: the kuid; `{username}`). Every write touches both in one batch, guarded by their versions, so
//! a username stays unique and a user has at most one username. Answers never carry the hash: a
//! credential is `{username, kuid}`, as Kuzzle's local strategy answers it.

use serde_json::{Map, Value, json};
use tollgate_core::{ANONYMOUS_KUID, ActionDef, ArgType, Context, route};
use tollgate_protocol::errors::{
    API_ASSERT_FORBIDDEN_ARGUMENT, LOCAL_STRATEGY_WEAK_PASSWORD, SECURITY_CREDENTIALS_REJECTED,
    SECURITY_CREDENTIALS_UNKNOWN_STRATEGY, SECURITY_RIGHTS_UNAUTHORIZED, SECURITY_USER_NOT_FOUND,
    SERVICES_STORAGE_TOO_MANY_CHANGES,
};
use tollgate_protocol::{ArgRef, KuzzleError, Request};
use tollgate_storage::{Doc, Expect, Op, Store, StoreError};

use crate::auth::AuthController;
use crate::cache::SecurityCache;
use crate::controller::{
    SecurityController, backoff, check_refresh, commit_visible, doc_result, retry_on_conflict,
};
use crate::passwords::Passwords;
use crate::search::{MAX_RESULT_WINDOW, SearchSpec};
use crate::users::{MAX_PASSWORD, MAX_USERNAME, RESERVED, user_source};
use crate::{
    CREDENTIAL, LOGIN, TOKEN, USER, profile_ids_of, scan, store_error, tokens, updated_info,
    user_tokens,
};

/// The only strategy.
pub const LOCAL: &str = "local";

/// The fields of a `local` credential.
pub const FIELDS: &[&str] = &["username", "password"];

/// The `security` actions of this module.
pub(crate) const SECURITY_ACTIONS: &[&str] = &[
    "createCredentials",
    "updateCredentials",
    "hasCredentials",
    "getCredentials",
    "getCredentialsById",
    "getCredentialFields",
    "getAllCredentialFields",
    "validateCredentials",
    "deleteCredentials",
    "searchUsersByCredentials",
    "getUserStrategies",
];

/// The `auth` actions of this module.
pub(crate) const AUTH_ACTIONS: &[&str] = &[
    "createMyCredentials",
    "updateMyCredentials",
    "credentialsExist",
    "getMyCredentials",
    "validateMyCredentials",
    "deleteMyCredentials",
    "updateSelf",
    "getStrategies",
];

/// Attempts of a credentials write racing with other writers.
const ATTEMPTS: usize = 10;

const AT_LEAST_ONE: &str =
    "The request must at least provide one of the fields: \"username\" or \"password\".";

fn rejected(reason: &str) -> KuzzleError {
    KuzzleError::new(&SECURITY_CREDENTIALS_REJECTED, vec![json!(reason)])
}

fn login_taken(username: &str) -> KuzzleError {
    rejected(&format!("Login \"{username}\" is already used."))
}

fn no_strategy(kuid: &str) -> KuzzleError {
    rejected(&format!("A strategy does not exist for user \"{kuid}\"."))
}

fn user_not_found(kuid: &str) -> KuzzleError {
    KuzzleError::new(&SECURITY_USER_NOT_FOUND, vec![json!(kuid)])
}

fn too_many_changes(kuid: &str) -> KuzzleError {
    KuzzleError::new(&SERVICES_STORAGE_TOO_MANY_CHANGES, vec![json!(kuid)])
}

/// The password policy of every password a request sets: at least the configured number of
/// characters (the maximum, [`MAX_PASSWORD`] bytes, is checked with the field's type).
pub(crate) fn password_policy(passwords: &Passwords, password: &str) -> Result<(), KuzzleError> {
    if password.chars().count() < passwords.min_length() {
        return Err(KuzzleError::plain(&LOCAL_STRATEGY_WEAK_PASSWORD));
    }
    Ok(())
}

/// The `strategy` argument: absent, null or `""` → `missing_argument`; not a string →
/// `invalid_type`.
fn strategy_arg(req: &Request) -> Result<&str, KuzzleError> {
    if matches!(req.arg("strategy"), None | Some(ArgRef::Json(Value::Null))) {
        return Err(KuzzleError::missing_argument("strategy"));
    }
    match req.string("strategy")? {
        None | Some("") => Err(KuzzleError::missing_argument("strategy")),
        Some(s) => Ok(s),
    }
}

/// Only `local` exists.
fn registered(strategy: &str) -> Result<(), KuzzleError> {
    if strategy == LOCAL {
        Ok(())
    } else {
        Err(KuzzleError::new(
            &SECURITY_CREDENTIALS_UNKNOWN_STRATEGY,
            vec![json!(strategy)],
        ))
    }
}

/// The checked fields of a credentials body; an empty string counts as absent.
struct Fields {
    username: Option<String>,
    password: Option<String>,
}

impl Fields {
    /// `body` as credentials: no `kuid`, no other key than `username` and `password`, each a
    /// string within its bound; a password follows the policy.
    fn parse(body: &Map<String, Value>, passwords: &Passwords) -> Result<Self, KuzzleError> {
        if body.contains_key("kuid") {
            return Err(rejected("kuid cannot be specified in credentials."));
        }
        if let Some(key) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(KuzzleError::unexpected_argument(
                format!("body.{key}"),
                FIELDS,
            ));
        }
        let text = |name: &str, max: usize, expected: &str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > max => Err(KuzzleError::invalid_argument(
                format!("body.{name}"),
                expected,
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(KuzzleError::invalid_type(format!("body.{name}"), "string")),
        };
        let username = text("username", MAX_USERNAME, "a string of at most 256 bytes")?;
        let password = text("password", MAX_PASSWORD, "a string of at most 1024 bytes")?;
        if let Some(p) = &password {
            password_policy(passwords, p)?;
        }
        Ok(Self { username, password })
    }

    /// Both fields, as a creation needs them.
    fn complete(self) -> Result<(String, String), KuzzleError> {
        let username = self
            .username
            .ok_or_else(|| rejected("Username required."))?;
        let password = self
            .password
            .ok_or_else(|| rejected("Password required."))?;
        Ok((username, password))
    }
}

/// Which tokens a password change leaves valid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Revoke<'a> {
    /// `keepTokens`: every token stays valid.
    pub keep_all: bool,
    /// The record id of the token making the request, which stays valid.
    pub keep: Option<&'a str>,
}

/// The `local` strategy over the store.
pub(crate) struct Local<'a> {
    pub store: &'a dyn Store,
    pub cache: &'a SecurityCache,
    pub passwords: &'a Passwords,
}

impl Local<'_> {
    async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        commit_visible(self.store, self.cache, ops)
            .await
            .map(|_| ())
    }

    /// The record of `kuid`'s username, and the username.
    async fn login(&self, kuid: &str) -> Result<Option<(Doc, String)>, KuzzleError> {
        let Some(doc) = self.store.get(LOGIN, kuid).await.map_err(store_error)? else {
            return Ok(None);
        };
        let username = doc
            .body
            .get("username")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(username.map(|u| (doc, u)))
    }

    async fn exists(&self, kuid: &str) -> Result<bool, KuzzleError> {
        Ok(self.login(kuid).await?.is_some())
    }

    async fn user_exists(&self, kuid: &str) -> Result<(), KuzzleError> {
        if kuid == ANONYMOUS_KUID
            || self
                .store
                .get(USER, kuid)
                .await
                .map_err(store_error)?
                .is_none()
        {
            return Err(user_not_found(kuid));
        }
        Ok(())
    }

    /// `{username, kuid}` of `kuid`'s credentials.
    async fn info(&self, kuid: &str) -> Result<Value, KuzzleError> {
        let (_, username) = self.login(kuid).await?.ok_or_else(|| no_strategy(kuid))?;
        Ok(json!({"username": username, "kuid": kuid}))
    }

    /// `{username, kuid}` of the credentials of `username`.
    async fn by_username(&self, username: &str) -> Result<Value, KuzzleError> {
        let doc = self
            .store
            .get(CREDENTIAL, username)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                rejected(&format!(
                    "A strategy does not exist for username \"{username}\"."
                ))
            })?;
        let kuid = doc.body.get("kuid").and_then(Value::as_str).unwrap_or("");
        Ok(json!({"username": username, "kuid": kuid}))
    }

    /// Refuses `username` when someone else than `owner` holds it.
    async fn free(&self, username: &str, owner: Option<&str>) -> Result<(), KuzzleError> {
        if let Some(doc) = self
            .store
            .get(CREDENTIAL, username)
            .await
            .map_err(store_error)?
            && (owner.is_none() || doc.body.get("kuid").and_then(Value::as_str) != owner)
        {
            return Err(login_taken(username));
        }
        Ok(())
    }

    /// What a creation for `kuid` (none: any user) would check, nothing written: `true`.
    async fn validate(
        &self,
        kuid: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<Value, KuzzleError> {
        let (username, _) = Fields::parse(body, self.passwords)?.complete()?;
        self.free(&username, kuid).await?;
        Ok(json!(true))
    }

    /// Creates `kuid`'s credentials: the user must exist and have none, the username be free.
    async fn create(&self, kuid: &str, body: &Map<String, Value>) -> Result<Value, KuzzleError> {
        let (username, password) = Fields::parse(body, self.passwords)?.complete()?;
        self.user_exists(kuid).await?;
        if self.exists(kuid).await? {
            return Err(rejected(&format!(
                "A strategy already exists for user \"{kuid}\"."
            )));
        }
        self.free(&username, None).await?;
        let hash = self
            .passwords
            .hash(password)
            .await
            .map_err(KuzzleError::internal)?;
        let ops = vec![
            Op::Check {
                kind: USER,
                id: kuid.to_owned(),
                expect: Expect::Present,
            },
            Op::Put {
                kind: LOGIN,
                id: kuid.to_owned(),
                body: json!({"username": username}),
                expect: Expect::Absent,
            },
            Op::Put {
                kind: CREDENTIAL,
                id: username.clone(),
                body: json!({"kuid": kuid, "hash": hash}),
                expect: Expect::Absent,
            },
        ];
        match self.commit(ops).await {
            Ok(()) => Ok(json!({"username": username, "kuid": kuid})),
            Err(StoreError::Conflict { index: 0 }) => Err(user_not_found(kuid)),
            Err(StoreError::Conflict { index: 1 }) => Err(rejected(&format!(
                "A strategy already exists for user \"{kuid}\"."
            ))),
            Err(StoreError::Conflict { .. }) => Err(login_taken(&username)),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Changes `kuid`'s username and/or password. A new username moves both records in one batch;
    /// a new password revokes the user's tokens (but `revoke`'s) in the same batch.
    async fn update(
        &self,
        kuid: &str,
        body: &Map<String, Value>,
        revoke: Revoke<'_>,
    ) -> Result<Value, KuzzleError> {
        let fields = Fields::parse(body, self.passwords)?;
        if fields.username.is_none() && fields.password.is_none() {
            return Err(rejected(AT_LEAST_ONE));
        }
        let new_hash = match &fields.password {
            Some(p) => Some(
                self.passwords
                    .hash(p.clone())
                    .await
                    .map_err(KuzzleError::internal)?,
            ),
            None => None,
        };
        for _ in 0..ATTEMPTS {
            let (login, old) = self.login(kuid).await?.ok_or_else(|| no_strategy(kuid))?;
            let credential = self
                .store
                .get(CREDENTIAL, &old)
                .await
                .map_err(store_error)?
                .ok_or_else(|| no_strategy(kuid))?;
            let username = fields.username.clone().unwrap_or_else(|| old.clone());
            let moved = username != old;
            if moved {
                self.free(&username, None).await?;
            }
            let hash = match &new_hash {
                Some(h) => json!(h),
                None => credential.body.get("hash").cloned().unwrap_or(Value::Null),
            };
            let record = json!({"kuid": kuid, "hash": hash});
            let mut ops = vec![Op::Check {
                kind: USER,
                id: kuid.to_owned(),
                expect: Expect::Present,
            }];
            if moved {
                ops.push(Op::Put {
                    kind: LOGIN,
                    id: kuid.to_owned(),
                    body: json!({"username": username}),
                    expect: Expect::Version(login.version),
                });
                ops.push(Op::Delete {
                    kind: CREDENTIAL,
                    id: old.clone(),
                    expect: Expect::Version(credential.version),
                });
                ops.push(Op::Put {
                    kind: CREDENTIAL,
                    id: username.clone(),
                    body: record,
                    expect: Expect::Absent,
                });
            } else {
                ops.push(Op::Check {
                    kind: LOGIN,
                    id: kuid.to_owned(),
                    expect: Expect::Version(login.version),
                });
                ops.push(Op::Put {
                    kind: CREDENTIAL,
                    id: old.clone(),
                    body: record,
                    expect: Expect::Version(credential.version),
                });
            }
            if new_hash.is_some() && !revoke.keep_all {
                // No token recorded between this read and the commit escapes the revocation: a
                // login with the old password racing with the change makes the batch start again.
                let seq = self.store.snapshot(&[]).await.map_err(store_error)?.seq;
                ops.push(Op::KindUnchanged {
                    kind: TOKEN,
                    since: seq,
                });
                for id in user_tokens(self.store, kuid).await.map_err(store_error)? {
                    if revoke.keep != Some(id.as_str()) {
                        ops.push(Op::Delete {
                            kind: TOKEN,
                            id,
                            expect: Expect::Any,
                        });
                    }
                }
            }
            match self.commit(ops).await {
                Ok(()) => return Ok(json!({"username": username, "kuid": kuid})),
                Err(StoreError::Conflict { index: 0 }) => return Err(user_not_found(kuid)),
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(too_many_changes(kuid))
    }

    /// Deletes `kuid`'s credentials (its tokens stay valid, as in Kuzzle).
    async fn delete(&self, kuid: &str) -> Result<Value, KuzzleError> {
        for _ in 0..ATTEMPTS {
            let (login, username) = self.login(kuid).await?.ok_or_else(|| no_strategy(kuid))?;
            let ops = vec![
                Op::Delete {
                    kind: LOGIN,
                    id: kuid.to_owned(),
                    expect: Expect::Version(login.version),
                },
                Op::Delete {
                    kind: CREDENTIAL,
                    id: username,
                    expect: Expect::Any,
                },
            ];
            match self.commit(ops).await {
                Ok(()) => return Ok(json!({"acknowledged": true})),
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(too_many_changes(kuid))
    }
}

impl SecurityController {
    fn local(&self) -> Local<'_> {
        Local {
            store: self.store.as_ref(),
            cache: &self.cache,
            passwords: &self.passwords,
        }
    }

    /// The actions of [`SECURITY_ACTIONS`]; arguments are read in Kuzzle's order.
    pub(crate) async fn credentials(
        &self,
        action: &str,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let local = self.local();
        match action {
            "getAllCredentialFields" => Ok(json!({ LOCAL: FIELDS })),
            "getUserStrategies" => {
                let id = req.required_id()?;
                if id == ANONYMOUS_KUID {
                    return Ok(json!({"strategies": [], "total": 0}));
                }
                local.user_exists(id).await?;
                let strategies: Vec<&str> = if local.exists(id).await? {
                    vec![LOCAL]
                } else {
                    vec![]
                };
                Ok(json!({"strategies": strategies, "total": strategies.len()}))
            }
            "getCredentialFields" => {
                registered(strategy_arg(req)?)?;
                Ok(json!(FIELDS))
            }
            "validateCredentials" => {
                registered(strategy_arg(req)?)?;
                let body = req.required_body()?;
                let id = match req.string("_id")? {
                    None | Some("") => None,
                    Some(_) => Some(req.required_id()?),
                };
                local.validate(id, body).await
            }
            "searchUsersByCredentials" => {
                let strategy = strategy_arg(req)?;
                let search = self.search_request(
                    req,
                    &SearchSpec {
                        filter: None,
                        scroll: false,
                        search_after: false,
                    },
                )?;
                registered(strategy)?;
                self.search_credentials(req, search).await
            }
            "createCredentials" | "updateCredentials" => {
                let id = req.required_id()?;
                let body = req.required_body()?;
                registered(strategy_arg(req)?)?;
                check_refresh(req)?;
                if action == "createCredentials" {
                    return local.create(id, body).await;
                }
                let keep_all = req.boolean("keepTokens")?.unwrap_or(false);
                local.user_exists(id).await?;
                let own = caller_token_id(ctx);
                let revoke = Revoke {
                    keep_all,
                    keep: own.as_deref(),
                };
                local.update(id, body, revoke).await
            }
            _ => {
                let id = req.required_id()?;
                registered(strategy_arg(req)?)?;
                match action {
                    "hasCredentials" => Ok(json!(local.exists(id).await?)),
                    "getCredentials" => local.info(id).await,
                    "getCredentialsById" => local.by_username(id).await,
                    "deleteCredentials" => {
                        check_refresh(req)?;
                        local.delete(id).await
                    }
                    other => Err(KuzzleError::internal(format!(
                        "security:{other} is not a credentials action"
                    ))),
                }
            }
        }
    }

    /// `security:searchUsersByCredentials`: the `{kuid, username}` of each local credential whose
    /// `{kuid, username}` (`_id`: the username) matches the query; `from`/`size`, sorted (default:
    /// by username).
    async fn search_credentials(
        &self,
        req: &Request,
        mut search: crate::search::Search,
    ) -> Result<Value, KuzzleError> {
        let limit = usize::try_from(self.config.documents_fetch_count).unwrap_or(usize::MAX);
        let max_window = MAX_RESULT_WINDOW.max(limit);
        if req.arg("size").is_none() {
            search.size = search.size.min(max_window.saturating_sub(search.from));
        }
        let window = search.from.saturating_add(search.size);
        if window > max_window {
            return Err(KuzzleError::invalid_argument(
                "from",
                &format!("an offset such that from + size is at most {max_window}"),
            ));
        }
        let by_sort = |a: &(String, Value), b: &(String, Value)| {
            crate::query::compare(&search.sort, (&a.0, &a.1), (&b.0, &b.1))
        };
        let mut kept: Vec<(String, Value)> = Vec::new();
        let mut total = 0usize;
        scan(self.store.as_ref(), CREDENTIAL, "", |docs| {
            for d in docs {
                let kuid = d.body.get("kuid").and_then(Value::as_str).unwrap_or("");
                let source = json!({"kuid": kuid, "username": d.id});
                if !search.query.matches(&d.id, &source) {
                    continue;
                }
                total += 1;
                if window > 0 {
                    kept.push((d.id, source));
                    // Only the best `window` hits can be answered: trim now and then.
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
            .skip(search.from)
            .take(search.size)
            .map(|(_, source)| source)
            .collect();
        Ok(json!({"hits": hits, "total": total}))
    }
}

/// The record id of the token the request came with.
fn caller_token_id(ctx: &Context) -> Option<String> {
    ctx.caller
        .token
        .as_deref()
        .map(|t| tokens::token_id(&ctx.caller.kuid, t))
}

impl AuthController {
    fn local(&self) -> Local<'_> {
        Local {
            store: self.store.as_ref(),
            cache: &self.cache,
            passwords: &self.passwords,
        }
    }

    /// The actions of [`AUTH_ACTIONS`]: the caller's own credentials and content. Every one but
    /// getStrategies refuses the anonymous user (`security.rights.unauthorized`), as Kuzzle does.
    pub(crate) async fn credentials(
        &self,
        action: &str,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        if action == "getStrategies" {
            return Ok(json!([LOCAL]));
        }
        if ctx.caller.is_anonymous() {
            return Err(KuzzleError::new(
                &SECURITY_RIGHTS_UNAUTHORIZED,
                vec![json!("auth"), json!(action)],
            ));
        }
        if action == "updateSelf" {
            return self.update_self(req, ctx).await;
        }
        let kuid = ctx.caller.kuid.as_str();
        let local = self.local();
        let strategy = strategy_arg(req)?;
        match action {
            "createMyCredentials" | "updateMyCredentials" | "validateMyCredentials" => {
                let body = req.required_body()?;
                registered(strategy)?;
                match action {
                    "createMyCredentials" => {
                        check_refresh(req)?;
                        local.create(kuid, body).await
                    }
                    "updateMyCredentials" => {
                        check_refresh(req)?;
                        let keep_all = req.boolean("keepTokens")?.unwrap_or(false);
                        let own = caller_token_id(ctx);
                        let revoke = Revoke {
                            keep_all,
                            keep: own.as_deref(),
                        };
                        local.update(kuid, body, revoke).await
                    }
                    _ => local.validate(Some(kuid), body).await,
                }
            }
            _ => {
                registered(strategy)?;
                match action {
                    "credentialsExist" => Ok(json!(local.exists(kuid).await?)),
                    "getMyCredentials" => local.info(kuid).await,
                    "deleteMyCredentials" => {
                        check_refresh(req)?;
                        local.delete(kuid).await
                    }
                    other => Err(KuzzleError::internal(format!(
                        "auth:{other} is not a credentials action"
                    ))),
                }
            }
        }
    }

    /// `auth:updateSelf`: merges the body's keys into the caller's content. `_id`, `profileIds` and
    /// `credentials` are refused (`api.assert.forbidden_argument`).
    async fn update_self(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let body = req.required_body()?;
        for key in ["_id", "profileIds", "credentials"] {
            if body.get(key).is_some_and(|v| !v.is_null()) {
                return Err(KuzzleError::new(
                    &API_ASSERT_FORBIDDEN_ARGUMENT,
                    vec![json!(format!("body.{key}"))],
                ));
            }
        }
        check_refresh(req)?;
        let retries = retry_on_conflict(req)?;
        let kuid = ctx.caller.kuid.as_str();
        let mut conflicts = 0;
        loop {
            let doc = self
                .store
                .get(USER, kuid)
                .await
                .map_err(store_error)?
                .ok_or_else(|| user_not_found(kuid))?;
            let mut content = doc.body.as_object().cloned().unwrap_or_default();
            let info = content.shift_remove("_kuzzle_info");
            for (k, v) in body {
                if k != "profileIds" && !RESERVED.contains(&k.as_str()) {
                    content.insert(k.clone(), v.clone());
                }
            }
            let source = user_source(
                &profile_ids_of(&doc),
                &content,
                updated_info(info.as_ref(), Some(kuid)),
            );
            let ops = vec![Op::Put {
                kind: USER,
                id: kuid.to_owned(),
                body: source.clone(),
                expect: Expect::Version(doc.version),
            }];
            match commit_visible(self.store.as_ref(), &self.cache, ops).await {
                Ok(c) => {
                    let version = c.versions.first().copied().flatten().unwrap_or(0);
                    return Ok(doc_result(kuid, version, source));
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    if conflicts > retries {
                        return Err(too_many_changes(kuid));
                    }
                    backoff().await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }
}

/// The declarations of the `security` actions of this module.
pub(crate) fn security_actions() -> Vec<ActionDef> {
    use ArgType::{Boolean, OneOf, String};
    let strategy = OneOf(&[LOCAL]);
    let strategy_doc = "The authentication strategy: local.";
    let kuid = "The user's kuid.";
    let refresh = "wait_for (default) or false: the answer waits until the change is visible.";
    let username = "The username (at most 256 bytes).";
    let password =
        "The password (at most 1024 bytes, at least security.password_min_length characters).";
    let write = |a: ActionDef, body: &'static str| {
        a.required("strategy", strategy, strategy_doc)
            .required("_id", String, kuid)
            .body(true, body)
            .field("username", String, username)
            .field("password", String, password)
            .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
    };
    vec![
        write(
            ActionDef::new(
                "createCredentials",
                &[route("POST", "/credentials/:strategy/:_id/_create")],
            )
            .describe("Creates a user's credentials: {username, kuid}."),
            "The credentials: username and password, both required.",
        ),
        write(
            ActionDef::new(
                "updateCredentials",
                &[route("PUT", "/credentials/:strategy/:_id/_update")],
            )
            .describe(
                "Changes a user's username and/or password; a new password revokes the user's tokens.",
            ),
            "The fields to change: username, password, or both.",
        )
        .arg(
            "keepTokens",
            Boolean,
            "With a new password, keep the user's tokens valid (Tollgate's own).",
        ),
        ActionDef::new(
            "hasCredentials",
            &[route("GET", "/credentials/:strategy/:_id/_exists")],
        )
        .describe("Whether a user has credentials for the strategy.")
        .required("strategy", strategy, strategy_doc)
        .required("_id", String, kuid),
        ActionDef::new("getCredentials", &[route("GET", "/credentials/:strategy/:_id")])
            .describe("A user's credentials, without the password: {username, kuid}.")
            .required("strategy", strategy, strategy_doc)
            .required("_id", String, kuid),
        ActionDef::new(
            "getCredentialsById",
            &[route("GET", "/credentials/:strategy/:_id/_byId")],
        )
        .describe("The credentials of a username: {username, kuid}.")
        .required("strategy", strategy, strategy_doc)
        .required("_id", String, "The username."),
        ActionDef::new(
            "getCredentialFields",
            &[route("GET", "/credentials/:strategy/_fields")],
        )
        .describe("The fields of the strategy's credentials.")
        .required("strategy", strategy, strategy_doc),
        ActionDef::new(
            "getAllCredentialFields",
            &[route("GET", "/credentials/_fields")],
        )
        .describe("The credential fields of every strategy."),
        ActionDef::new(
            "validateCredentials",
            &[route("POST", "/credentials/:strategy/:_id/_validate")],
        )
        .describe("Whether credentials could be created (for a user, if _id is given); nothing written.")
        .required("strategy", strategy, strategy_doc)
        .arg("_id", String, "The kuid the credentials are for (optional on WebSocket).")
        .body(true, "The credentials: username and password, both required.")
        .field("username", String, username)
        .field("password", String, password),
        ActionDef::new(
            "deleteCredentials",
            &[route("DELETE", "/credentials/:strategy/:_id")],
        )
        .describe("Deletes a user's credentials (its tokens stay valid).")
        .required("strategy", strategy, strategy_doc)
        .required("_id", String, kuid)
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh),
        ActionDef::new(
            "searchUsersByCredentials",
            &[route("POST", "/credentials/:strategy/users/_search")],
        )
        .describe("The {kuid, username} of the credentials matching a query on kuid and username.")
        .required("strategy", strategy, strategy_doc)
        .arg("from", ArgType::Integer, "Hits to skip.")
        .arg("size", ArgType::Integer, "Hits to answer at most.")
        .arg(
            "lang",
            OneOf(&["elasticsearch", "koncorde"]),
            "Query language (both read the same subset).",
        )
        .body(false, "Optional: query and sort, on the fields kuid and username.")
        .field("query", ArgType::Object, "The query (see the security searches).")
        .field("sort", ArgType::Any, "The sort."),
        ActionDef::new("getUserStrategies", &[route("GET", "/users/:_id/_strategies")])
            .describe("The strategies a user has credentials for.")
            .required("_id", String, kuid),
    ]
}

/// The declarations of the `auth` actions of this module.
pub(crate) fn auth_actions() -> Vec<ActionDef> {
    use ArgType::{Boolean, OneOf, String};
    let strategy = OneOf(&[LOCAL]);
    let strategy_doc = "The authentication strategy: local.";
    let refresh = "wait_for (default) or false: the answer waits until the change is visible.";
    let username = "The username (at most 256 bytes).";
    let password =
        "The password (at most 1024 bytes, at least security.password_min_length characters).";
    let own = |a: ActionDef, body: Option<&'static str>| {
        let a = a.required("strategy", strategy, strategy_doc);
        match body {
            None => a,
            Some(b) => a
                .body(true, b)
                .field("username", String, username)
                .field("password", String, password),
        }
    };
    vec![
        own(
            ActionDef::new(
                "createMyCredentials",
                &[
                    route("POST", "/_me/credentials/:strategy/_create"),
                    route("POST", "/credentials/:strategy/_me/_create"),
                ],
            )
            .describe("Creates the caller's credentials: {username, kuid}."),
            Some("The credentials: username and password, both required."),
        )
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh),
        own(
            ActionDef::new(
                "updateMyCredentials",
                &[
                    route("PUT", "/_me/credentials/:strategy/_update"),
                    route("PUT", "/credentials/:strategy/_me/_update"),
                ],
            )
            .describe(
                "Changes the caller's username and/or password; a new password revokes the caller's other tokens.",
            ),
            Some("The fields to change: username, password, or both."),
        )
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
        .arg(
            "keepTokens",
            Boolean,
            "With a new password, keep the caller's other tokens valid (Tollgate's own).",
        ),
        own(
            ActionDef::new(
                "credentialsExist",
                &[
                    route("GET", "/_me/credentials/:strategy/_exists"),
                    route("GET", "/credentials/:strategy/_me/_exists"),
                ],
            )
            .describe("Whether the caller has credentials for the strategy."),
            None,
        ),
        own(
            ActionDef::new(
                "getMyCredentials",
                &[
                    route("GET", "/_me/credentials/:strategy"),
                    route("GET", "/credentials/:strategy/_me"),
                ],
            )
            .describe("The caller's credentials, without the password: {username, kuid}."),
            None,
        ),
        own(
            ActionDef::new(
                "validateMyCredentials",
                &[
                    route("POST", "/_me/credentials/:strategy/_validate"),
                    route("POST", "/credentials/:strategy/_me/_validate"),
                ],
            )
            .describe("Whether the caller could create these credentials; nothing written."),
            Some("The credentials: username and password, both required."),
        ),
        own(
            ActionDef::new(
                "deleteMyCredentials",
                &[
                    route("DELETE", "/_me/credentials/:strategy"),
                    route("DELETE", "/credentials/:strategy/_me"),
                ],
            )
            .describe("Deletes the caller's credentials (its tokens stay valid)."),
            None,
        )
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh),
        ActionDef::new(
            "updateSelf",
            &[route("PUT", "/_me"), route("PUT", "/_updateSelf")],
        )
        .describe("Merges content keys into the caller's user; profileIds cannot be changed so.")
        .body(true, "The content keys to change (not _id, profileIds, credentials).")
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
        .arg(
            "retryOnConflict",
            ArgType::IntegerIn(0, 100),
            "Attempts when another write changes the user meanwhile (default 10).",
        ),
        ActionDef::new("getStrategies", &[route("GET", "/strategies")])
            .describe("The authentication strategies: [\"local\"]."),
    ]
}
