//! User actions of the `security` controller (`routes.md` §4): createUser, createFirstAdmin,
//! restrictDefaultRights, getUser, updateUser, deleteUser, getUserRights.

use rand::Rng;
use serde_json::{Map, Value, json};
use tollgate_core::{ANONYMOUS_KUID, Context};
use tollgate_protocol::errors::{
    API_ASSERT_FORBIDDEN_ARGUMENT, API_PROCESS_ADMIN_EXISTS, SECURITY_CREDENTIALS_REJECTED,
    SECURITY_CREDENTIALS_UNKNOWN_STRATEGY, SECURITY_PROFILE_NOT_FOUND,
    SECURITY_USER_ALREADY_EXISTS, SECURITY_USER_NOT_FOUND, SERVICES_STORAGE_TOO_MANY_CHANGES,
};
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::{Expect, Op, StoreError};

use crate::controller::{
    SecurityController, backoff, check_refresh, doc_result, presence_checks, retry_on_conflict,
};
use crate::gate::{caller_profiles, profile_ids};
use crate::lockout::{self, Planned};
use crate::rights::rights_listing;
use crate::{
    CREDENTIAL, FIRST_ADMIN, LOGIN, META, PROFILE, ROLE, TOKEN, USER, admin_exists, created_info,
    store_error, updated_info, user_tokens,
};

/// What createFirstAdmin adds to the creation of a user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstAdmin {
    /// Restrict the default rights in the same batch.
    reset: bool,
    /// What the first admin's record must still be when the batch commits.
    marker: Expect,
}

/// Largest username and password accepted, in bytes.
pub(crate) const MAX_USERNAME: usize = 256;
pub(crate) const MAX_PASSWORD: usize = 1024;

/// Content keys never stored.
pub(crate) const RESERVED: &[&str] = &["_id", "_version", "_kuzzle_info"];

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fair", "gentle", "happy", "jolly", "kind", "lively", "merry",
    "nice", "proud", "quick", "quiet", "swift", "witty",
];
const ANIMALS: &[&str] = &[
    "otter", "badger", "falcon", "heron", "ibex", "koala", "lynx", "marten", "newt", "ocelot",
    "panda", "quail", "raven", "seal", "tapir", "wren",
];

/// `kuid-<adjective>-<animal>-<4 digits>` or `kuid-<uuid v4>`.
fn generate_kuid(kind: &str) -> String {
    if kind == "uuid" {
        return format!("kuid-{}", uuid::Uuid::new_v4());
    }
    let mut rng = rand::rng();
    format!(
        "kuid-{}-{}-{:04}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        ANIMALS[rng.random_range(0..ANIMALS.len())],
        rng.random_range(0..10_000)
    )
}

pub(crate) fn not_found(id: &str) -> KuzzleError {
    KuzzleError::new(&SECURITY_USER_NOT_FOUND, vec![json!(id)])
}

fn rejected(reason: &str) -> KuzzleError {
    KuzzleError::new(&SECURITY_CREDENTIALS_REJECTED, vec![json!(reason)])
}

/// A `profileIds` list: an array, not empty, of strings.
pub(crate) fn profile_id_list(value: &Value, name: &str) -> Result<Vec<String>, KuzzleError> {
    let Value::Array(items) = value else {
        return Err(KuzzleError::invalid_type(name, "array"));
    };
    if items.is_empty() {
        return Err(KuzzleError::empty_argument(name));
    }
    items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| KuzzleError::invalid_type(name, "string[]"))
}

/// Local credentials to create with a user.
struct Local {
    username: String,
    password: String,
}

/// `body.credentials`: absent → none; only the `local` strategy. Returns the raw `local` value.
fn credentials_arg(body: Option<&Map<String, Value>>) -> Result<Option<Value>, KuzzleError> {
    match body.and_then(|b| b.get("credentials")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(c)) => {
            if let Some(other) = c.keys().find(|k| *k != "local") {
                return Err(KuzzleError::new(
                    &SECURITY_CREDENTIALS_UNKNOWN_STRATEGY,
                    vec![json!(other)],
                ));
            }
            Ok(c.get("local").cloned())
        }
        Some(_) => Err(KuzzleError::invalid_type("body.credentials", "object")),
    }
}

/// The checks of `credentials.local` (`routes.md` §4 table), except the username being taken.
fn local_credentials(local: &Value) -> Result<Local, KuzzleError> {
    let Value::Object(local) = local else {
        return Err(KuzzleError::invalid_type(
            "body.credentials.local",
            "object",
        ));
    };
    if local.contains_key("kuid") {
        return Err(rejected("kuid cannot be specified in credentials."));
    }
    let field =
        |name: &str, missing: &str, max: usize, expected: &str| -> Result<String, KuzzleError> {
            match local.get(name) {
                None | Some(Value::Null) => Err(rejected(missing)),
                Some(Value::String(s)) if s.is_empty() => Err(rejected(missing)),
                Some(Value::String(s)) if s.len() > max => Err(KuzzleError::invalid_argument(
                    format!("body.credentials.local.{name}"),
                    expected,
                )),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(KuzzleError::invalid_type(
                    format!("body.credentials.local.{name}"),
                    "string",
                )),
            }
        };
    let username = field(
        "username",
        "Username required.",
        MAX_USERNAME,
        "a string of at most 256 bytes",
    )?;
    let password = field(
        "password",
        "Password required.",
        MAX_PASSWORD,
        "a string of at most 1024 bytes",
    )?;
    Ok(Local { username, password })
}

/// `_source` of a user: `profileIds`, then the other content keys, then `_kuzzle_info`.
pub(crate) fn user_source(
    profile_ids: &[String],
    content: &Map<String, Value>,
    info: Value,
) -> Value {
    let mut source = Map::new();
    source.insert("profileIds".into(), json!(profile_ids));
    for (k, v) in content {
        if k != "profileIds" && !RESERVED.contains(&k.as_str()) {
            source.insert(k.clone(), v.clone());
        }
    }
    source.insert("_kuzzle_info".into(), info);
    Value::Object(source)
}

/// The standard definitions `restrictDefaultRights` writes (`security-model.md` §6).
fn standard_rights() -> [(&'static str, &'static str, Value); 6] {
    [
        (
            ROLE,
            "admin",
            json!({"controllers":{"*":{"actions":{"*":true}}}}),
        ),
        (
            ROLE,
            "default",
            json!({"controllers":{"auth":{"actions":{"checkToken":true,"getCurrentUser":true,"getMyRights":true,"logout":true,"updateSelf":true}},"server":{"actions":{"publicApi":true}}}}),
        ),
        (
            ROLE,
            "anonymous",
            json!({"controllers":{"auth":{"actions":{"checkToken":true,"getCurrentUser":true,"getMyRights":true,"login":true}},"server":{"actions":{"publicApi":true,"openapi":true}}}}),
        ),
        (
            PROFILE,
            "admin",
            json!({"policies":[{"roleId":"admin"}],"rateLimit":0}),
        ),
        (
            PROFILE,
            "default",
            json!({"policies":[{"roleId":"default"}],"rateLimit":10}),
        ),
        (
            PROFILE,
            "anonymous",
            json!({"policies":[{"roleId":"anonymous"}],"rateLimit":200}),
        ),
    ]
}

/// The anonymous user as serialized by getUser.
fn anonymous_user() -> Value {
    json!({"_id": ANONYMOUS_KUID, "_source": {"profileIds": ["anonymous"], "name": "Anonymous"}})
}

impl SecurityController {
    /// createUser, and createFirstAdmin's creation step (`profile_ids` given).
    pub(crate) async fn create_user_with(
        &self,
        req: &Request,
        ctx: &Context,
        forced_profiles: Option<Vec<String>>,
        first_admin: Option<FirstAdmin>,
    ) -> Result<(String, Value, u64), KuzzleError> {
        let body = req.body.as_ref();
        let empty = Map::new();
        let content = match body.and_then(|b| b.get("content")) {
            None | Some(Value::Null) if forced_profiles.is_some() => &empty,
            None => return Err(KuzzleError::missing_argument("body.content")),
            Some(Value::Object(c)) => c,
            Some(_) => return Err(KuzzleError::invalid_type("body.content", "object")),
        };
        let profiles = match forced_profiles {
            Some(p) => p,
            None => match content.get("profileIds") {
                None => return Err(KuzzleError::missing_argument("body.content.profileIds")),
                Some(v) => profile_id_list(v, "body.content.profileIds")?,
            },
        };
        let kuid_kind = match req.string("kuid")? {
            None | Some("human") => "human",
            Some("uuid") => "uuid",
            Some(_) => {
                return Err(KuzzleError::invalid_argument(
                    "kuid",
                    r#""human" or "uuid""#,
                ));
            }
        };
        check_refresh(req)?;
        let local = credentials_arg(body)?;
        let generated = matches!(req.string("_id")?, None | Some(""));
        let mut id = if generated {
            generate_kuid(kuid_kind)
        } else {
            req.required_id()?.to_owned()
        };
        // A generated id that happens to be taken is drawn again.
        for _ in 0..5 {
            if !generated
                || self
                    .store
                    .get(USER, &id)
                    .await
                    .map_err(store_error)?
                    .is_none()
            {
                break;
            }
            id = generate_kuid(kuid_kind);
        }
        // Each profile must exist; the id must be free (`-1` never is).
        let found = self
            .store
            .mget(PROFILE, &profiles)
            .await
            .map_err(store_error)?;
        if let Some((missing, _)) = profiles.iter().zip(&found).find(|(_, d)| d.is_none()) {
            return Err(KuzzleError::new(
                &SECURITY_PROFILE_NOT_FOUND,
                vec![json!(missing)],
            ));
        }
        let taken = KuzzleError::new(&SECURITY_USER_ALREADY_EXISTS, vec![json!(id)]);
        if id == ANONYMOUS_KUID
            || self
                .store
                .get(USER, &id)
                .await
                .map_err(store_error)?
                .is_some()
        {
            return Err(taken);
        }
        let local = local.as_ref().map(local_credentials).transpose()?;
        if let Some(l) = &local {
            crate::credentials::password_policy(&self.passwords, &l.password)?;
        }
        let login_taken =
            |username: &str| rejected(&format!("Login \"{username}\" is already used."));
        if let Some(l) = &local
            && self
                .store
                .get(CREDENTIAL, &l.username)
                .await
                .map_err(store_error)?
                .is_some()
        {
            return Err(login_taken(&l.username));
        }
        let source = user_source(&profiles, content, created_info(ctx.caller.audit_kuid()));
        let mut ops = presence_checks(PROFILE, &profiles);
        let user_op = ops.len();
        ops.push(Op::Put {
            kind: USER,
            id: id.clone(),
            body: source.clone(),
            expect: Expect::Absent,
        });
        if let Some(l) = &local {
            let hash = self
                .passwords
                .hash(l.password.clone())
                .await
                .map_err(KuzzleError::internal)?;
            ops.push(Op::Put {
                kind: CREDENTIAL,
                id: l.username.clone(),
                body: json!({"kuid": id, "hash": hash}),
                expect: Expect::Absent,
            });
            ops.push(Op::Put {
                kind: LOGIN,
                id: id.clone(),
                body: json!({"username": l.username}),
                expect: Expect::Absent,
            });
        }
        // createFirstAdmin with `reset`: the standard rights are written in the same transaction, so
        // there is never an admin with the install still open, nor restricted rights without an admin.
        let restrict_from = ops.len();
        if first_admin.is_some_and(|f| f.reset) {
            ops.extend(self.restrict_ops(ctx).await?);
        }
        // createFirstAdmin: its record, in the same batch, is what two nodes racing cannot both write.
        let marker_at = ops.len();
        if let Some(first) = first_admin {
            ops.push(Op::Put {
                kind: META,
                id: FIRST_ADMIN.to_owned(),
                body: json!({"kuid": id}),
                expect: first.marker,
            });
        }
        match self.commit(ops).await {
            Ok(c) => Ok((
                id,
                source,
                c.versions.get(user_op).copied().flatten().unwrap_or(1),
            )),
            Err(StoreError::Conflict { index }) if first_admin.is_some() && index == marker_at => {
                Err(KuzzleError::plain(&API_PROCESS_ADMIN_EXISTS))
            }
            Err(StoreError::Conflict { index }) if index >= restrict_from => Err(KuzzleError::new(
                &SERVICES_STORAGE_TOO_MANY_CHANGES,
                vec![json!("anonymous")],
            )),
            Err(StoreError::Conflict { index }) if index < user_op => Err(KuzzleError::new(
                &SECURITY_PROFILE_NOT_FOUND,
                vec![json!(profiles[index])],
            )),
            Err(StoreError::Conflict { index }) if index == user_op => Err(taken),
            Err(StoreError::Conflict { .. }) => Err(login_taken(
                local.as_ref().map_or("", |l| l.username.as_str()),
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    pub(crate) async fn create_user(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        req.required_body()?;
        let (id, source, version) = self.create_user_with(req, ctx, None, None).await?;
        Ok(doc_result(&id, version, source))
    }

    pub(crate) async fn create_first_admin(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        // The record of the first admin as read now: the batch that creates the admin expects it
        // unchanged, so of two nodes racing, one wins and the other conflicts (no per-node lock).
        let marker = self
            .store
            .get(META, FIRST_ADMIN)
            .await
            .map_err(store_error)?
            .map_or(Expect::Absent, |m| Expect::Version(m.version));
        if admin_exists(self.store.as_ref())
            .await
            .map_err(store_error)?
        {
            return Err(KuzzleError::plain(&API_PROCESS_ADMIN_EXISTS));
        }
        if let Some(content) = req.body.as_ref().and_then(|b| b.get("content")) {
            match content {
                Value::Object(c) if c.contains_key("profileIds") => {
                    return Err(KuzzleError::new(
                        &API_ASSERT_FORBIDDEN_ARGUMENT,
                        vec![json!("body.content.profileIds")],
                    ));
                }
                Value::Object(_) | Value::Null => {}
                _ => return Err(KuzzleError::invalid_type("body.content", "object")),
            }
        }
        let reset = req.boolean("reset")?.unwrap_or(false);
        let (id, source, version) = self
            .create_user_with(
                req,
                ctx,
                Some(vec!["admin".to_owned()]),
                Some(FirstAdmin { reset, marker }),
            )
            .await?;
        Ok(doc_result(&id, version, source))
    }

    /// The writes of restrictDefaultRights: the six standard definitions, each replacing the current
    /// version (`author`/`createdAt` kept, `updater` = the caller).
    async fn restrict_ops(&self, ctx: &Context) -> Result<Vec<Op>, KuzzleError> {
        let mut ops = Vec::new();
        for (kind, id, definition) in standard_rights() {
            let existing = self.store.get(kind, id).await.map_err(store_error)?;
            let (info, expect) = match &existing {
                Some(doc) => (
                    updated_info(doc.body.get("_kuzzle_info"), ctx.caller.audit_kuid()),
                    Expect::Version(doc.version),
                ),
                None => (created_info(ctx.caller.audit_kuid()), Expect::Absent),
            };
            let mut body = definition.as_object().cloned().unwrap_or_default();
            body.insert("_kuzzle_info".into(), info);
            ops.push(Op::Put {
                kind,
                id: id.to_owned(),
                body: Value::Object(body),
                expect,
            });
        }
        Ok(ops)
    }

    pub(crate) async fn restrict_default_rights(
        &self,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        for _ in 0..10 {
            let ops = self.restrict_ops(ctx).await?;
            match self.commit(ops).await {
                Ok(_) => return Ok(Value::Null),
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!("anonymous")],
        ))
    }

    pub(crate) async fn get_user(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        if id == ANONYMOUS_KUID {
            return Ok(anonymous_user());
        }
        let user = self
            .cache
            .user(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(id))?;
        Ok(doc_result(id, user.doc.version, user.doc.body.clone()))
    }

    pub(crate) async fn update_user(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        let profiles = match body.get("profileIds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(profile_id_list(v, "body.profileIds")?),
        };
        if body.contains_key("credentials") {
            return Err(KuzzleError::new(
                &API_ASSERT_FORBIDDEN_ARGUMENT,
                vec![json!("body.credentials")],
            ));
        }
        check_refresh(req)?;
        let retries = retry_on_conflict(req)?;
        let allow_lockout = lockout::allowed(req)?;
        if id == ANONYMOUS_KUID {
            return Err(not_found(id));
        }
        if let Some(p) = &profiles {
            let found = self.store.mget(PROFILE, p).await.map_err(store_error)?;
            if let Some((missing, _)) = p.iter().zip(&found).find(|(_, d)| d.is_none()) {
                return Err(KuzzleError::new(
                    &SECURITY_PROFILE_NOT_FOUND,
                    vec![json!(missing)],
                ));
            }
        }
        let mut conflicts = 0;
        loop {
            let doc = self
                .store
                .get(USER, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| not_found(id))?;
            let mut content = doc.body.as_object().cloned().unwrap_or_default();
            let info = content.shift_remove("_kuzzle_info");
            for (k, v) in body {
                if k != "profileIds" && !RESERVED.contains(&k.as_str()) {
                    content.insert(k.clone(), v.clone());
                }
            }
            let ids: Vec<String> = match &profiles {
                Some(p) => p.clone(),
                None => content
                    .get("profileIds")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let source = user_source(
                &ids,
                &content,
                updated_info(info.as_ref(), ctx.caller.audit_kuid()),
            );
            let mut ops = presence_checks(PROFILE, &ids);
            let user_op = ops.len();
            ops.push(Op::Put {
                kind: USER,
                id: id.to_owned(),
                body: source.clone(),
                expect: Expect::Version(doc.version),
            });
            let planned = [Planned::User {
                id,
                profile_ids: Some(&ids),
            }];
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            match self.commit(ops).await {
                Ok(c) => {
                    return Ok(doc_result(
                        id,
                        c.versions.get(user_op).copied().flatten().unwrap_or(0),
                        source,
                    ));
                }
                Err(StoreError::Conflict { index }) if index < user_op => {
                    return Err(KuzzleError::new(
                        &SECURITY_PROFILE_NOT_FOUND,
                        vec![json!(ids[index])],
                    ));
                }
                Err(StoreError::Conflict { .. }) => {
                    conflicts += 1;
                    if conflicts > retries {
                        return Err(KuzzleError::new(
                            &SERVICES_STORAGE_TOO_MANY_CHANGES,
                            vec![json!(id)],
                        ));
                    }
                    backoff().await;
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    pub(crate) async fn delete_user(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        check_refresh(req)?;
        let allow_lockout = lockout::allowed(req)?;
        if id == ANONYMOUS_KUID {
            return Err(not_found(id));
        }
        for _ in 0..10 {
            let doc = self
                .store
                .get(USER, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| not_found(id))?;
            let seq = self.store.snapshot(&[]).await.map_err(store_error)?.seq;
            let mut ops = vec![
                Op::KindUnchanged {
                    kind: TOKEN,
                    since: seq,
                },
                Op::Delete {
                    kind: USER,
                    id: id.to_owned(),
                    expect: Expect::Version(doc.version),
                },
            ];
            if let Some(login) = self.store.get(LOGIN, id).await.map_err(store_error)? {
                if let Some(username) = login.body.get("username").and_then(Value::as_str) {
                    ops.push(Op::Delete {
                        kind: CREDENTIAL,
                        id: username.to_owned(),
                        expect: Expect::Any,
                    });
                }
                ops.push(Op::Delete {
                    kind: LOGIN,
                    id: id.to_owned(),
                    expect: Expect::Version(login.version),
                });
            }
            for token in user_tokens(self.store.as_ref(), id)
                .await
                .map_err(store_error)?
            {
                ops.push(Op::Delete {
                    kind: TOKEN,
                    id: token,
                    expect: Expect::Any,
                });
            }
            for key in crate::apikeys::user_api_keys(self.store.as_ref(), id)
                .await
                .map_err(store_error)?
            {
                ops.push(Op::Delete {
                    kind: crate::apikeys::API_KEY,
                    id: key,
                    expect: Expect::Any,
                });
            }
            let planned = [Planned::User {
                id,
                profile_ids: None,
            }];
            ops.extend(
                lockout::guard(&self.cache, self.store.as_ref(), &planned, allow_lockout).await?,
            );
            match self.commit(ops).await {
                Ok(_) => return Ok(json!({ "_id": id })),
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(id)],
        ))
    }

    pub(crate) async fn user_rights(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let ids = profile_ids(&self.cache, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let snapshot = self.cache.snapshot();
        Ok(rights_listing(
            snapshot.as_ref(),
            caller_profiles(&snapshot, &ids),
        ))
    }
}
