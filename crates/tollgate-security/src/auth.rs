//! The `auth` controller (`routes.md` §5): login, logout, refreshToken, checkToken, getCurrentUser,
//! getMyRights, checkRights.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tollgate_core::{ActionDef, ArgType, Context, Controller, Protocol, route};
use tollgate_protocol::cookie::{self, CookieOptions};
use tollgate_protocol::errors::{
    PLUGIN_STRATEGY_MISSING_USER, SECURITY_CREDENTIALS_UNKNOWN_STRATEGY,
    SECURITY_RIGHTS_UNAUTHORIZED, SECURITY_TOKEN_INVALID, SECURITY_TOKEN_REFRESH_FORBIDDEN,
    SECURITY_TOKEN_TTL_EXCEEDED,
};
use tollgate_protocol::{ArgRef, KuzzleError, Request};
use tollgate_storage::{Expect, Op, Store, StoreError};

use crate::cache::{SecurityCache, TokenRecord};
use crate::controller::commit_visible;
use crate::gate::{
    AuthFailures, TokenCheck, caller_profiles, check_token, cookie_auth, profile_ids, request_token,
};
use crate::passwords::Passwords;
use crate::rights::rights_listing;
use crate::tokens::{self, Secret};
use crate::{CREDENTIAL, LOGIN, TOKEN, USER, now_ms, store_error};

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenConfig {
    /// Default `expiresIn`, in ms (`security.authToken.expiresIn`, 1 h).
    pub default_ttl_ms: i64,
    /// Largest `expiresIn` accepted, in ms; -1 for no maximum (`security.authToken.maxTTL`).
    pub max_ttl_ms: i64,
    /// How long a token replaced by `auth:refreshToken` stays valid, in ms, so that requests
    /// already sent with it still pass (Kuzzle's `security.jwt.gracePeriod`, 1 s).
    pub refresh_grace_ms: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            default_ttl_ms: 3_600_000,
            max_ttl_ms: -1,
            refresh_grace_ms: 1_000,
        }
    }
}

/// How many times `auth:refreshToken` issues a token again when the one it issued is already
/// recorded (another login or refresh of the same user in the same second, with the same lifetime).
const REFRESH_ATTEMPTS: usize = 3;

/// Cookie authentication (`protocol.md` §6.1): whether it is on (`http.cookie_authentication`) and
/// how the `authToken` cookie is written.
#[derive(Debug, Clone, Copy)]
pub struct CookieConfig {
    pub enabled: bool,
    pub options: CookieOptions,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            options: CookieOptions::default(),
        }
    }
}

pub struct AuthController {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Arc<SecurityCache>,
    pub(crate) secret: Secret,
    pub(crate) passwords: Passwords,
    tokens: TokenConfig,
    failures: Arc<AuthFailures>,
    cookies: CookieConfig,
}

impl AuthController {
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<SecurityCache>,
        secret: Secret,
        passwords: Passwords,
        tokens: TokenConfig,
        failures: Arc<AuthFailures>,
    ) -> Self {
        Self {
            store,
            cache,
            secret,
            passwords,
            tokens,
            failures,
            cookies: CookieConfig::default(),
        }
    }

    /// Cookie authentication settings (on by default, as in Kuzzle).
    pub fn with_cookies(mut self, cookies: CookieConfig) -> Self {
        self.cookies = cookies;
        self
    }

    /// `cookieAuth: true` on HTTP with cookie authentication on: the token travels in the
    /// `authToken` cookie. A WebSocket frame cannot set a cookie: there `cookieAuth` changes no
    /// answer (the browser SDK sends these actions over HTTP in cookie mode anyway).
    fn cookie_mode(&self, req: &Request, ctx: &Context) -> Result<bool, KuzzleError> {
        Ok(self.cookies.enabled && cookie_auth(req)? && ctx.connection.protocol == Protocol::Http)
    }

    /// A new token's answer (login, refreshToken); in cookie mode the token is set as the cookie
    /// and left out of the result, as Kuzzle does (the SDK tells from its absence that cookies
    /// are supported).
    fn send_token(
        &self,
        req: &Request,
        ctx: &Context,
        kuid: &str,
        jwt: &str,
        expires_at: i64,
        ttl: i64,
    ) -> Result<Value, KuzzleError> {
        if self.cookie_mode(req, ctx)? {
            ctx.reply.add(
                "set-cookie",
                cookie::set_auth_token(jwt, expires_at, self.cookies.options),
            );
            return Ok(json!({"_id": kuid, "expiresAt": expires_at, "ttl": ttl}));
        }
        Ok(json!({"_id": kuid, "expiresAt": expires_at, "jwt": jwt, "ttl": ttl}))
    }

    /// `expiresIn`: integer ms, or a timespan string; -1 never; checked against `maxTTL`.
    fn ttl(&self, req: &Request) -> Result<i64, KuzzleError> {
        let bad = || {
            KuzzleError::invalid_argument(
                "expiresIn",
                "a number of milliseconds, or a parsable timespan string",
            )
        };
        let ttl = match req.arg("expiresIn") {
            None => self.tokens.default_ttl_ms,
            Some(ArgRef::Json(Value::Number(n))) => n.as_i64().ok_or_else(bad)?,
            Some(ArgRef::Json(Value::String(s))) => tokens::parse_timespan(s).ok_or_else(bad)?,
            Some(ArgRef::Query([Some(s)])) => tokens::parse_timespan(s).ok_or_else(bad)?,
            Some(_) => return Err(bad()),
        };
        if ttl == 0 || ttl < -1 {
            return Err(bad());
        }
        let max = self.tokens.max_ttl_ms;
        if max != -1 && (ttl == -1 || ttl > max) {
            return Err(KuzzleError::plain(&SECURITY_TOKEN_TTL_EXCEEDED));
        }
        Ok(ttl)
    }

    async fn login(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        match req.string("strategy")? {
            None | Some("") => return Err(KuzzleError::missing_argument("strategy")),
            Some("local") => {}
            Some(other) => {
                return Err(KuzzleError::new(
                    &SECURITY_CREDENTIALS_UNKNOWN_STRATEGY,
                    vec![json!(other)],
                ));
            }
        }
        let ttl = self.ttl(req)?;
        let field = |name: &str| {
            req.body
                .as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(KuzzleError::new(
                &PLUGIN_STRATEGY_MISSING_USER,
                vec![json!("Missing credentials")],
            ));
        };
        let credential = self
            .store
            .get(CREDENTIAL, &username)
            .await
            .map_err(store_error)?;
        let kuid = credential
            .as_ref()
            .and_then(|c| c.body.get("kuid"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let hash = credential
            .as_ref()
            .and_then(|c| c.body.get("hash"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let verified = self.passwords.verify(password, hash).await;
        let Some(kuid) = kuid.filter(|_| verified) else {
            self.failures.record(ctx.connection.peer);
            return Err(KuzzleError::new(
                &PLUGIN_STRATEGY_MISSING_USER,
                vec![json!("wrong username or password")],
            ));
        };
        let (jwt, expires_at) = self.issue(&kuid, ttl, None).await;
        let ops = vec![
            Op::Check {
                kind: USER,
                id: kuid.clone(),
                expect: Expect::Present,
            },
            Op::Put {
                kind: TOKEN,
                id: tokens::token_id(&kuid, &jwt),
                body: json!({"kuid": kuid, "expiresAt": expires_at}),
                expect: Expect::Absent,
            },
        ];
        match commit_visible(self.store.as_ref(), &self.cache, ops).await {
            Ok(_) => {}
            // Two logins of one user in the same second with the same lifetime get the same token
            // (same claims, same signature), which is already recorded: it is valid as it is.
            Err(StoreError::Conflict { index: 1 }) => {}
            // The user was deleted meanwhile.
            Err(StoreError::Conflict { .. }) => {
                return Err(KuzzleError::new(
                    &PLUGIN_STRATEGY_MISSING_USER,
                    vec![json!("wrong username or password")],
                ));
            }
            Err(e) => return Err(store_error(e)),
        }
        self.send_token(req, ctx, &kuid, &jwt, expires_at, ttl)
    }

    /// Issues a token for `kuid` with `ttl` (ms, -1 never): `(token, expiresAt)`. Never a token
    /// known to be revoked on this node, nor `unlike` (the token being refreshed).
    async fn issue(&self, kuid: &str, ttl: i64, unlike: Option<&str>) -> (String, i64) {
        let ttl_ms = (ttl != -1).then(|| u64::try_from(ttl).unwrap_or(0));
        loop {
            let (iat, exp, at) = tokens::lifetime(now_ms(), ttl_ms);
            let jwt = tokens::issue(&self.secret, kuid, iat, exp);
            let expires_at = at.map_or(-1, |at| i64::try_from(at).unwrap_or(i64::MAX));
            // A token is a function of (kuid, second of issue, lifetime): this exact token was
            // revoked in this same second (a logout, a user deleted and created again), or is the
            // one being replaced. Issuing it again would revive it for whoever held it; the next
            // second gives another token.
            if !self.cache.is_revoked(&tokens::token_id(kuid, &jwt)) && unlike != Some(&jwt) {
                return (jwt, expires_at);
            }
            next_second().await;
        }
    }

    /// `auth:refreshToken`: a new token for the caller; the one the request came with stays valid
    /// for the grace period (its record's `expiresAt` becomes now + grace, a write that every node
    /// sees and that survives a restart), then is refused as `security.token.invalid`.
    async fn refresh(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let (false, Some(old)) = (ctx.caller.is_anonymous(), ctx.caller.token.as_deref()) else {
            return Err(KuzzleError::new(
                &SECURITY_RIGHTS_UNAUTHORIZED,
                vec![json!("auth"), json!("refreshToken")],
            ));
        };
        let ttl = self.ttl(req)?;
        let kuid = ctx.caller.kuid.as_str();
        let old_id = tokens::token_id(kuid, old);
        let invalid = || KuzzleError::plain(&SECURITY_TOKEN_INVALID);
        for _ in 0..REFRESH_ATTEMPTS {
            // The authoritative record, with its version: two refreshes of one token cannot both
            // succeed, and a logout meanwhile makes this one fail.
            let doc = self
                .store
                .get(TOKEN, &old_id)
                .await
                .map_err(store_error)?
                .ok_or_else(invalid)?;
            let record = TokenRecord::from_doc(&doc)
                .filter(|r| r.kuid == kuid)
                .ok_or_else(invalid)?;
            // Once refreshed, a token cannot be refreshed again (Kuzzle: no token bombing).
            if record.refreshed {
                return Err(invalid());
            }
            if crate::apikeys::is_api_key_record(&doc.body) {
                return Err(KuzzleError::new(
                    &SECURITY_TOKEN_REFRESH_FORBIDDEN,
                    vec![json!("API Key")],
                ));
            }
            if record.expires_at < 0 {
                return Err(KuzzleError::new(
                    &SECURITY_TOKEN_REFRESH_FORBIDDEN,
                    vec![json!("Token with infinite TTL")],
                ));
            }
            let (jwt, expires_at) = self.issue(kuid, ttl, Some(old)).await;
            let grace = i64::try_from(self.tokens.refresh_grace_ms).unwrap_or(i64::MAX);
            let grace_end = i64::try_from(now_ms())
                .unwrap_or(i64::MAX)
                .saturating_add(grace)
                .min(record.expires_at);
            let ops = vec![
                Op::Check {
                    kind: USER,
                    id: kuid.to_owned(),
                    expect: Expect::Present,
                },
                Op::Put {
                    kind: TOKEN,
                    id: tokens::token_id(kuid, &jwt),
                    body: json!({"kuid": kuid, "expiresAt": expires_at}),
                    expect: Expect::Absent,
                },
                Op::Put {
                    kind: TOKEN,
                    id: old_id.clone(),
                    body: json!({"kuid": kuid, "expiresAt": grace_end, "refreshed": true}),
                    expect: Expect::Version(doc.version),
                },
            ];
            match commit_visible(self.store.as_ref(), &self.cache, ops).await {
                Ok(_) => {}
                // The new token is already recorded (a login or refresh of this user in this same
                // second, with this lifetime), maybe as refreshed: issue another one next second.
                Err(StoreError::Conflict { index: 1 }) => {
                    next_second().await;
                    continue;
                }
                // The user was deleted, or the old token revoked or refreshed meanwhile.
                Err(StoreError::Conflict { .. }) => return Err(invalid()),
                Err(e) => return Err(store_error(e)),
            }
            // On WebSocket, the `TokenExpired` notification follows the new token now.
            if let Some(links) = &ctx.connection.token_links {
                links.unlink(old);
                if let Ok(at) = u64::try_from(expires_at) {
                    links.link(&jwt, at);
                }
            }
            return self.send_token(req, ctx, kuid, &jwt, expires_at, ttl);
        }
        Err(KuzzleError::internal(
            "auth:refreshToken: every token issued was already recorded",
        ))
    }

    async fn logout(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        let global = req.boolean("global")?.unwrap_or(false);
        let cookie_mode = self.cookie_mode(req, ctx)?;
        let clear = || {
            if cookie_mode {
                ctx.reply
                    .add("set-cookie", cookie::clear_auth_token(self.cookies.options));
            }
        };
        let (false, Some(token)) = (ctx.caller.is_anonymous(), ctx.caller.token.as_deref()) else {
            // In cookie mode an anonymous logout clears the cookie (an expired or revoked one, or
            // none), as in Kuzzle.
            if cookie_mode {
                clear();
                return Ok(json!({"acknowledged": true}));
            }
            return Err(KuzzleError::new(
                &SECURITY_RIGHTS_UNAUTHORIZED,
                vec![json!("auth"), json!("logout")],
            ));
        };
        // As Kuzzle: a logout never revokes an API key (deleteApiKey does), a global one revokes
        // the user's other tokens.
        let ids = if global {
            crate::apikeys::session_tokens(self.store.as_ref(), &ctx.caller.kuid)
                .await
                .map_err(store_error)?
        } else if tokens::is_api_key(token) {
            Vec::new()
        } else {
            vec![tokens::token_id(&ctx.caller.kuid, token)]
        };
        let ops = ids
            .into_iter()
            .map(|id| Op::Delete {
                kind: TOKEN,
                id,
                expect: Expect::Any,
            })
            .collect();
        let ops: Vec<Op> = ops;
        if !ops.is_empty() {
            commit_visible(self.store.as_ref(), &self.cache, ops)
                .await
                .map_err(store_error)?;
        }
        if let Some(links) = &ctx.connection.token_links {
            links.unlink(token);
        }
        clear();
        Ok(json!({"acknowledged": true}))
    }

    async fn check(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        // With `cookieAuth`, the request's own token is checked (its cookie, else its `jwt`), as
        // in Kuzzle; on any protocol (a WebSocket's is its upgrade's cookie).
        let token = if self.cookies.enabled && cookie_auth(req)? {
            request_token(req, &ctx.connection, true)?.0
        } else {
            match req.body.as_ref().and_then(|b| b.get("token")) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => return Err(KuzzleError::invalid_type("body.token", "string")),
            }
        };
        let token = token.filter(|s| !s.is_empty());
        let Some(token) = token else {
            return Ok(json!({"expiresAt": null, "kuid": "-1", "valid": true}));
        };
        Ok(match check_token(&self.secret, &self.cache, token).await? {
            TokenCheck::Valid {
                kuid, expires_at, ..
            } => {
                json!({"expiresAt": expires_at, "kuid": kuid, "valid": true})
            }
            TokenCheck::Invalid => json!({"state": "Invalid token.", "valid": false}),
            TokenCheck::Expired => json!({"state": "Token expired", "valid": false}),
        })
    }

    async fn current_user(&self, ctx: &Context) -> Result<Value, KuzzleError> {
        if ctx.caller.is_anonymous() {
            return Ok(
                json!({"_id": "-1", "_source": {"profileIds": ["anonymous"], "name": "Anonymous"}, "strategies": []}),
            );
        }
        let kuid = &ctx.caller.kuid;
        let user = self
            .cache
            .user(kuid)
            .await
            .map_err(store_error)?
            .map(|u| u.doc)
            .ok_or_else(|| {
                KuzzleError::plain(&tollgate_protocol::errors::SECURITY_TOKEN_INVALID)
            })?;
        let has_local = self
            .store
            .get(LOGIN, kuid)
            .await
            .map_err(store_error)?
            .is_some();
        let strategies: Vec<&str> = if has_local { vec!["local"] } else { vec![] };
        Ok(
            json!({"_id": kuid, "_version": user.version, "_source": user.body, "strategies": strategies}),
        )
    }

    async fn my_rights(&self, ctx: &Context) -> Result<Value, KuzzleError> {
        let ids = profile_ids(&self.cache, &ctx.caller.kuid)
            .await?
            .unwrap_or_default();
        let snapshot = self.cache.snapshot();
        Ok(rights_listing(
            snapshot.as_ref(),
            caller_profiles(&snapshot, &ids),
        ))
    }

    async fn check_rights(&self, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
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
        let ids = profile_ids(&self.cache, &ctx.caller.kuid)
            .await?
            .unwrap_or_default();
        let snapshot = self.cache.snapshot();
        let allowed = caller_profiles(&snapshot, &ids)
            .iter()
            .any(|p| p.allows(snapshot.as_ref(), controller, action, index, collection));
        Ok(json!({ "allowed": allowed }))
    }
}

/// Sleeps until just after the next wall-clock second.
const COOKIE_AUTH: &str = "HTTP: the token travels in the HttpOnly authToken cookie (set, or cleared on logout) instead of the result.";

async fn next_second() {
    let wait = 1000 - now_ms() % 1000;
    tokio::time::sleep(std::time::Duration::from_millis(wait + 1)).await;
}

#[async_trait]
impl Controller for AuthController {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn actions(&self) -> Vec<ActionDef> {
        use ArgType::{Boolean, String};
        let expires = "Token lifetime: milliseconds, or a timespan such as 1h; -1: never.";
        vec![
            ActionDef::new(
                "login",
                &[
                    route("POST", "/_login/:strategy"),
                    route("GET", "/_login/:strategy"),
                ],
            )
            .describe("Checks credentials and answers a token.")
            .required(
                "strategy",
                ArgType::OneOf(&["local"]),
                "The authentication strategy: local.",
            )
            .arg("expiresIn", String, expires)
            .arg("cookieAuth", Boolean, COOKIE_AUTH)
            .body(false, "The credentials.")
            .field("username", String, "The username.")
            .field("password", String, "The password."),
            ActionDef::new("logout", &[route("POST", "/_logout")])
                .describe("Revokes the token of the request, or every token of the user.")
                .arg("global", Boolean, "Revoke every token of the user.")
                .arg("cookieAuth", Boolean, COOKIE_AUTH),
            ActionDef::new("refreshToken", &[route("POST", "/_refreshToken")])
                .describe("Replaces the token of the request by a new one.")
                .arg("expiresIn", String, expires)
                .arg("cookieAuth", Boolean, COOKIE_AUTH),
            ActionDef::new("checkToken", &[route("POST", "/_checkToken")])
                .describe("Whether a token is valid; needs no token itself.")
                .arg(
                    "cookieAuth",
                    Boolean,
                    "Check the request's own token (its authToken cookie) instead of body.token.",
                )
                .body(false, "The token to check.")
                .field(
                    "token",
                    ArgType::Nullable(&String),
                    "The token; absent, null or empty: the anonymous user.",
                ),
            ActionDef::new(
                "getCurrentUser",
                &[route("GET", "/_me"), route("GET", "/users/_me")],
            )
            .describe("The caller's user and its strategies."),
            ActionDef::new(
                "getMyRights",
                &[
                    route("GET", "/_me/_rights"),
                    route("GET", "/users/_me/_rights"),
                ],
            )
            .describe("The caller's rights."),
            ActionDef::new("checkRights", &[route("POST", "/_checkRights")])
                .describe("Whether the caller may run a request payload.")
                .body(true, "A request payload.")
                .required_field("controller", String, "The controller of the payload.")
                .required_field("action", String, "The action of the payload.")
                .field("index", String, "The index of the payload.")
                .field("collection", String, "The collection of the payload.")
                .field("body", ArgType::Any, "The body of the payload (not read)."),
        ]
        .into_iter()
        .chain(crate::credentials::auth_actions())
        .chain(crate::apikeys::auth_actions())
        .collect()
    }

    async fn call(&self, action: &str, req: &Request, ctx: &Context) -> Result<Value, KuzzleError> {
        match action {
            "login" => self.login(req, ctx).await,
            "logout" => self.logout(req, ctx).await,
            "refreshToken" => self.refresh(req, ctx).await,
            "checkToken" => self.check(req, ctx).await,
            "getCurrentUser" => self.current_user(ctx).await,
            "getMyRights" => self.my_rights(ctx).await,
            "checkRights" => self.check_rights(req, ctx).await,
            a if crate::credentials::AUTH_ACTIONS.contains(&a) => {
                self.credentials(a, req, ctx).await
            }
            "createApiKey" => self.create_my_api_key(req, ctx).await,
            "searchApiKeys" => self.search_my_api_keys(req, ctx).await,
            "deleteApiKey" => self.delete_my_api_key(req, ctx).await,
            other => Err(KuzzleError::internal(format!(
                "auth:{other} is not routed here"
            ))),
        }
    }
}
