//! The remaining user, profile and role actions of the `security` controller
//! (`docs/api/users.md` §12, `docs/api/security.md` §8): replaceUser, upsertUser,
//! createRestrictedUser, mDeleteUsers / mDeleteProfiles / mDeleteRoles, revokeTokens, checkRights
//! for a given user, the mapping actions, and refresh.
//!
//! Each builds on the single-document actions (users.rs, controller.rs): a bulk delete runs the
//! single delete once per id, so each goes through the same checks, the lock-out guard included.

use serde_json::{Map, Value, json};
use tollgate_core::{ANONYMOUS_KUID, ActionDef, ArgType, Context, route};
use tollgate_protocol::errors::{
    API_ASSERT_FORBIDDEN_ARGUMENT, SECURITY_PROFILE_NOT_FOUND, SECURITY_USER_ALREADY_EXISTS,
    SECURITY_USER_NOT_FOUND, SERVICES_STORAGE_INCOMPLETE_DELETE, SERVICES_STORAGE_TOO_MANY_CHANGES,
    SERVICES_STORAGE_WRITE_LIMIT_EXCEEDED,
};
use tollgate_protocol::{Args, KuzzleError, Request};
use tollgate_storage::{Expect, Op, StoreError};

use crate::controller::{
    CREDENTIALS, SecurityController, USER_CONTENT, backoff, check_refresh, doc_result,
    presence_checks, retry_on_conflict,
};
use crate::gate::{caller_profiles, profile_ids};
use crate::lockout::{self, Planned};
use crate::users::{not_found, profile_id_list, user_source};
use crate::{PROFILE, USER, store_error, updated_info, user_tokens};

/// Attempts of a replace or an upsert racing with other writers.
const ATTEMPTS: usize = 10;

/// The profile createRestrictedUser gives (Kuzzle's `security.restrictedProfileIds` default).
pub const RESTRICTED_PROFILE_IDS: &[&str] = &["default"];

/// The security collections `security:refresh` accepts.
const SECURITY_COLLECTIONS: &[&str] = &["users", "profiles", "roles"];

/// A request for one of the single-document actions, made from `req`: the same caller and request
/// id, JSON-typed `args` (already validated from `req`), and `body`.
fn sub_request(
    req: &Request,
    args: Map<String, Value>,
    body: Option<Map<String, Value>>,
) -> Request {
    Request {
        controller: req.controller.clone(),
        action: req.action.clone(),
        jwt: None,
        request_id: req.request_id.clone(),
        volatile: None,
        body,
        index: None,
        collection: None,
        args: Args::Json(args),
    }
}

/// A body object field: absent or null → `None`; not an object → `invalid_type`.
fn body_object<'a>(
    body: Option<&'a Map<String, Value>>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, KuzzleError> {
    match body.and_then(|b| b.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(KuzzleError::invalid_type(format!("body.{name}"), "object")),
    }
}

/// `body.ids` of a bulk delete: a list of strings, at most `limit`.
fn delete_ids(req: &Request, limit: u64) -> Result<Vec<String>, KuzzleError> {
    let body = req.required_body()?;
    let ids = match body.get("ids") {
        None | Some(Value::Null) => return Err(KuzzleError::missing_argument("body.ids")),
        Some(Value::Array(ids)) => ids,
        Some(_) => return Err(KuzzleError::invalid_type("body.ids", "array")),
    };
    if ids.len() as u64 > limit {
        return Err(KuzzleError::plain(&SERVICES_STORAGE_WRITE_LIMIT_EXCEEDED));
    }
    ids.iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| KuzzleError::invalid_type("body.ids", "string[]"))
}

impl SecurityController {
    /// `security:replaceUser`: the whole content of an existing user (`body`, with `profileIds`).
    pub(crate) async fn replace_user(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        let profiles = match body.get("profileIds") {
            None | Some(Value::Null) => {
                return Err(KuzzleError::missing_argument("body.profileIds"));
            }
            Some(v) => profile_id_list(v, "body.profileIds")?,
        };
        if body.contains_key("credentials") {
            return Err(KuzzleError::new(
                &API_ASSERT_FORBIDDEN_ARGUMENT,
                vec![json!("body.credentials")],
            ));
        }
        check_refresh(req)?;
        let allow_lockout = lockout::allowed(req)?;
        if id == ANONYMOUS_KUID {
            return Err(not_found(id));
        }
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
        for _ in 0..ATTEMPTS {
            let doc = self
                .store
                .get(USER, id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| not_found(id))?;
            // As createOrReplaceProfile does (contract D6): the original author and creation time
            // stay, the caller is the updater.
            let info = updated_info(doc.body.get("_kuzzle_info"), ctx.caller.audit_kuid());
            let source = user_source(&profiles, body, info);
            let mut ops = presence_checks(PROFILE, &profiles);
            let user_op = ops.len();
            ops.push(Op::Put {
                kind: USER,
                id: id.to_owned(),
                body: source.clone(),
                expect: Expect::Version(doc.version),
            });
            let planned = [Planned::User {
                id,
                profile_ids: Some(&profiles),
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
                        vec![json!(profiles[index])],
                    ));
                }
                Err(StoreError::Conflict { .. }) => backoff().await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(id)],
        ))
    }

    /// `security:upsertUser`: updateUser with `body.content` when the user exists; otherwise
    /// createUser with `body.default` under `body.content`, and `body.credentials`.
    pub(crate) async fn upsert_user(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        let body = req.required_body()?;
        let content = body_object(Some(body), "content")?
            .ok_or_else(|| KuzzleError::missing_argument("body.content"))?;
        match content.get("profileIds") {
            None | Some(Value::Null) => {
                return Err(KuzzleError::missing_argument("body.content.profileIds"));
            }
            Some(v) => profile_id_list(v, "body.content.profileIds")?,
        };
        let defaults = body_object(Some(body), "default")?;
        check_refresh(req)?;
        let retries = retry_on_conflict(req)?;
        let allow_lockout = lockout::allowed(req)?;
        let mut update_args = Map::new();
        update_args.insert("_id".into(), json!(id));
        update_args.insert("retryOnConflict".into(), json!(retries));
        update_args.insert("allowLockout".into(), json!(allow_lockout));
        let mut create_args = Map::new();
        create_args.insert("_id".into(), json!(id));
        let mut created_content = defaults.cloned().unwrap_or_default();
        for (k, v) in content {
            created_content.insert(k.clone(), v.clone());
        }
        let mut create_body = Map::new();
        create_body.insert("content".into(), Value::Object(created_content));
        if let Some(credentials) = body.get("credentials") {
            create_body.insert("credentials".into(), credentials.clone());
        }
        for _ in 0..ATTEMPTS {
            let update = sub_request(req, update_args.clone(), Some(content.clone()));
            match self.update_user(&update, ctx).await {
                Err(e) if e.def() == &SECURITY_USER_NOT_FOUND && id != ANONYMOUS_KUID => {}
                other => return other,
            }
            let create = sub_request(req, create_args.clone(), Some(create_body.clone()));
            match self.create_user_with(&create, ctx, None, None).await {
                Ok((id, source, version)) => return Ok(doc_result(&id, version, source)),
                // Created meanwhile by someone else: update it.
                Err(e) if e.def() == &SECURITY_USER_ALREADY_EXISTS => backoff().await,
                Err(e) => return Err(e),
            }
        }
        Err(KuzzleError::new(
            &SERVICES_STORAGE_TOO_MANY_CHANGES,
            vec![json!(id)],
        ))
    }

    /// `security:createRestrictedUser`: createUser with the profile `default`; `profileIds` refused.
    pub(crate) async fn create_restricted_user(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        if body_object(req.body.as_ref(), "content")?.is_some_and(|c| c.contains_key("profileIds"))
        {
            return Err(KuzzleError::new(
                &API_ASSERT_FORBIDDEN_ARGUMENT,
                vec![json!("body.content.profileIds")],
            ));
        }
        let profiles = RESTRICTED_PROFILE_IDS
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        let (id, source, version) = self
            .create_user_with(req, ctx, Some(profiles), None)
            .await?;
        Ok(doc_result(&id, version, source))
    }

    /// mDeleteUsers / mDeleteProfiles / mDeleteRoles: each id deleted as its single delete would,
    /// one after the other. The answer lists the ids deleted; when some fail, it is the partial
    /// error `services.storage.incomplete_delete` (206) with each failure, and still that list.
    pub(crate) async fn m_delete(
        &self,
        kind: &'static str,
        req: &Request,
        ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        let ids = delete_ids(req, self.config.documents_write_count)?;
        check_refresh(req)?;
        let allow_lockout = lockout::allowed(req)?;
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            let mut args = Map::new();
            args.insert("_id".into(), json!(id));
            args.insert("allowLockout".into(), json!(allow_lockout));
            let one = sub_request(req, args, None);
            let outcome = if kind == USER {
                self.delete_user(&one).await
            } else if kind == PROFILE {
                self.delete_profile(&one, ctx).await
            } else {
                self.delete_role(&one).await
            };
            match outcome {
                Ok(_) => deleted.push(id),
                Err(e) => {
                    failed.push(id);
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            return Ok(json!(deleted));
        }
        Err(
            KuzzleError::new(&SERVICES_STORAGE_INCOMPLETE_DELETE, vec![json!(failed)])
                .with_errors(errors)
                .with_result(json!(deleted)),
        )
    }

    /// `security:revokeTokens`: deletes every token record of a user; every node then refuses them
    /// (its cache follows the change feed), as after `auth:logout` with `global`.
    pub(crate) async fn revoke_tokens(&self, req: &Request) -> Result<Value, KuzzleError> {
        let id = req.required_id()?;
        if id == ANONYMOUS_KUID
            || self
                .store
                .get(USER, id)
                .await
                .map_err(store_error)?
                .is_none()
        {
            return Err(not_found(id));
        }
        let ops: Vec<Op> = user_tokens(self.store.as_ref(), id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|token| Op::Delete {
                kind: crate::TOKEN,
                id: token,
                expect: Expect::Any,
            })
            .collect();
        if !ops.is_empty() {
            self.commit(ops).await.map_err(store_error)?;
        }
        Ok(Value::Null)
    }

    /// `security:checkRights`: whether user `userId` may run the request payload of the body, as
    /// `auth:checkRights` answers for the caller.
    pub(crate) async fn check_user_rights(&self, req: &Request) -> Result<Value, KuzzleError> {
        let user_id = match req.string("userId")? {
            None | Some("") => return Err(KuzzleError::missing_argument("userId")),
            Some(u) => u,
        };
        let body = req.required_body()?;
        let string = |name: &str| body.get(name).and_then(Value::as_str);
        let controller =
            string("controller").ok_or_else(|| KuzzleError::missing_argument("body.controller"))?;
        let action =
            string("action").ok_or_else(|| KuzzleError::missing_argument("body.action"))?;
        let optional = |name: &str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(KuzzleError::invalid_type(format!("body.{name}"), "string")),
        };
        let index = optional("index")?;
        let collection = optional("collection")?;
        let ids = profile_ids(&self.cache, user_id)
            .await?
            .ok_or_else(|| not_found(user_id))?;
        let snapshot = self.cache.snapshot();
        let allowed = caller_profiles(&snapshot, &ids)
            .iter()
            .any(|p| p.allows(snapshot.as_ref(), controller, action, index, collection));
        Ok(json!({ "allowed": allowed }))
    }

    /// `security:refresh`: accepted for `users`, `profiles` and `roles`, as Kuzzle does. Every
    /// write is visible once answered, so there is nothing to wait for.
    pub(crate) fn refresh_collection(&self, req: &Request) -> Result<Value, KuzzleError> {
        match req.collection_name() {
            None | Some("") => Err(KuzzleError::missing_argument("collection")),
            Some(c) if SECURITY_COLLECTIONS.contains(&c) => Ok(Value::Null),
            Some(c) => Err(KuzzleError::unexpected_argument(c, SECURITY_COLLECTIONS)),
        }
    }
}

/// The actions of this module, as `SecurityController::actions` lists them.
pub(crate) fn actions() -> Vec<ActionDef> {
    use ArgType::{Boolean, Object, OneOf, String, StringList};
    let id = "The document's id (at most 512 bytes).";
    let refresh = "wait_for (default; true is the same) or false; the answer always waits.";
    let lockout = "Allow a change after which nobody could administer rights any more.";
    let retry = "Attempts on a concurrent change, 0..=100 (default 10).";
    let ids = |a: ActionDef, what: &'static str| {
        a.body(true, "The ids to delete.")
            .required_field("ids", StringList, what)
            .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
    };
    let mapping_update = |a: ActionDef| {
        a.body(true, "The mapping: {properties, dynamic?, _meta?}.")
            .required_field(
                "properties",
                Object,
                "Field definitions, Elasticsearch style.",
            )
            .field(
                "dynamic",
                ArgType::Any,
                "\"true\", \"false\" or \"strict\".",
            )
            .field("_meta", Object, "Free metadata (at most 16 KiB).")
    };
    vec![
        ActionDef::new("replaceUser", &[route("PUT", "/users/:_id/_replace")])
            .describe("Replaces the whole content of an existing user.")
            .required("_id", String, id)
            .body(true, "The user's new content, with profileIds.")
            .required_field("profileIds", StringList, "The user's profiles (non-empty).")
            .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
            .arg("allowLockout", Boolean, lockout),
        ActionDef::new("upsertUser", &[route("POST", "/users/:_id/_upsert")])
            .describe("Updates a user, or creates it with default content and credentials.")
            .required("_id", String, id)
            .body(true, "content (with profileIds), default, credentials.")
            .required_field(
                "content",
                USER_CONTENT,
                "The content keys to set; profileIds (non-empty string list) required.",
            )
            .field(
                "default",
                Object,
                "Content keys added only if the user is created.",
            )
            .field(
                "credentials",
                CREDENTIALS,
                "{local: {username, password}}, only if the user is created.",
            )
            .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
            .arg("retryOnConflict", ArgType::IntegerIn(0, 100), retry)
            .arg("allowLockout", Boolean, lockout),
        ActionDef::new(
            "createRestrictedUser",
            &[
                route("POST", "/users/_createRestricted"),
                route("POST", "/users/:_id/_createRestricted"),
            ],
        )
        .describe("Creates a user with the profile default (no profileIds accepted).")
        .arg("_id", String, "The kuid; generated when absent.")
        .arg(
            "kuid",
            OneOf(&["human", "uuid"]),
            "How a generated kuid is made.",
        )
        .arg("refresh", OneOf(&["wait_for", "false"]), refresh)
        .body(false, "The user's content and credentials.")
        .field("content", Object, "The user's content; no profileIds.")
        .field("credentials", CREDENTIALS, "{local: {username, password}}"),
        ids(
            ActionDef::new("mDeleteUsers", &[route("POST", "/users/_mDelete")])
                .describe("Deletes users, each as deleteUser does; lists those deleted."),
            "The kuids (at most documentsWriteCount).",
        )
        .arg("allowLockout", Boolean, lockout),
        ids(
            ActionDef::new("mDeleteProfiles", &[route("POST", "/profiles/_mDelete")])
                .describe("Deletes profiles, each as deleteProfile does; lists those deleted."),
            "The profile ids (at most documentsWriteCount).",
        )
        .arg("allowLockout", Boolean, lockout),
        ids(
            ActionDef::new("mDeleteRoles", &[route("POST", "/roles/_mDelete")])
                .describe("Deletes roles, each as deleteRole does; lists those deleted."),
            "The role ids (at most documentsWriteCount).",
        ),
        ActionDef::new("revokeTokens", &[route("DELETE", "/users/:_id/tokens")])
            .describe("Revokes every token of a user, on every node.")
            .required("_id", String, id),
        ActionDef::new("checkRights", &[route("POST", "/_checkRights/:userId")])
            .describe("Whether a user may run a request payload.")
            .required(
                "userId",
                String,
                "The user's kuid (-1: the anonymous user).",
            )
            .body(true, "A request payload.")
            .required_field("controller", String, "The controller of the payload.")
            .required_field("action", String, "The action of the payload.")
            .field("index", String, "The index of the payload.")
            .field("collection", String, "The collection of the payload.")
            .field("body", ArgType::Any, "The body of the payload (not read)."),
        ActionDef::new(
            "refresh",
            &[route("POST", "/_security/:collection/_refresh")],
        )
        .describe("Accepted: every security write is visible once answered.")
        .required(
            "collection",
            OneOf(&["users", "profiles", "roles"]),
            "users, profiles or roles.",
        ),
        ActionDef::new("getProfileMapping", &[route("GET", "/profiles/_mapping")])
            .describe("The (fixed) mapping of profiles."),
        ActionDef::new("getRoleMapping", &[route("GET", "/roles/_mapping")])
            .describe("The (fixed) mapping of roles."),
        ActionDef::new("getUserMapping", &[route("GET", "/users/_mapping")])
            .describe("The mapping of users."),
        mapping_update(
            ActionDef::new(
                "updateProfileMapping",
                &[route("PUT", "/profiles/_mapping")],
            )
            .describe("Accepted only when it restates the fixed profile mapping."),
        ),
        mapping_update(
            ActionDef::new("updateRoleMapping", &[route("PUT", "/roles/_mapping")])
                .describe("Accepted only when it restates the fixed role mapping."),
        ),
        mapping_update(
            ActionDef::new("updateUserMapping", &[route("PUT", "/users/_mapping")])
                .describe("Adds fields to the user mapping (stored; types never change)."),
        ),
    ]
}
