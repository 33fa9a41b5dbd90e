//! The security gate: who is calling (token checks), may they (rights), and how often (rate limits).
//! The Funnel runs it on every request before any controller code (`protocol.md` §4 steps 5–7).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::json;
use tollgate_core::{Caller, ConnectionInfo, Gate, Protocol};
use tollgate_protocol::errors::{
    API_PROCESS_TOO_MANY_LOGINS_REQUESTS, API_PROCESS_TOO_MANY_REQUESTS, SECURITY_COOKIE_INVALID,
    SECURITY_COOKIE_UNSUPPORTED, SECURITY_RIGHTS_FORBIDDEN, SECURITY_RIGHTS_UNAUTHORIZED,
    SECURITY_TOKEN_EXPIRED, SECURITY_TOKEN_INVALID, SECURITY_TOKEN_VERIFICATION_ERROR,
};
use tollgate_protocol::{KuzzleError, Request};

use crate::cache::{SecurityCache, SecuritySnapshot, VerifiedToken};
use crate::now_ms;
use crate::rights::ProfileRights;
use crate::tokens::{self, Secret, TokenError};

/// Rate-limit settings of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// `auth:login` per WebSocket connection per second (0 = unlimited).
    pub logins_per_second: u32,
    /// `auth:login` per client address per second, over every protocol and connection together
    /// (0 = unlimited).
    pub logins_per_second_per_ip: u32,
    /// Cookie authentication is on (`http.cookie_authentication`, `protocol.md` §6.1).
    pub cookie_authentication: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            logins_per_second: 1,
            logins_per_second_per_ip: 10,
            cookie_authentication: true,
        }
    }
}

/// Failed authentications per client address in one-minute windows: refused tokens (bad signature,
/// revoked) counted by the gate, wrong passwords counted by `auth:login`. Past the limit, logins and
/// refused tokens from that address get `api.process.too_many_logins_requests` until the minute ends.
#[derive(Debug)]
pub struct AuthFailures {
    windows: Windows<IpAddr>,
    /// Failures allowed per minute; 0 = unlimited.
    limit: u32,
}

impl AuthFailures {
    pub fn new(limit_per_minute: u32) -> Self {
        Self {
            windows: Windows::default(),
            limit: limit_per_minute,
        }
    }

    fn minute() -> u64 {
        now_ms() / 60_000
    }

    /// Counts one failure of `peer`; true when the address is now over the limit.
    pub fn record(&self, peer: Option<SocketAddr>) -> bool {
        match peer {
            Some(peer) if self.limit != 0 => {
                self.windows.hit(&peer.ip(), Self::minute()) > u64::from(self.limit)
            }
            _ => false,
        }
    }

    /// Whether `peer` already used up its failures of this minute.
    pub fn exhausted(&self, peer: Option<SocketAddr>) -> bool {
        match peer {
            Some(peer) if self.limit != 0 => {
                self.windows.count(&peer.ip(), Self::minute()) >= u64::from(self.limit)
            }
            _ => false,
        }
    }
}

/// Fixed windows (a second, a minute): key → (window number, count).
#[derive(Debug)]
struct Windows<K: std::hash::Hash + Eq>(DashMap<K, (u64, u64)>);

impl<K: std::hash::Hash + Eq> Default for Windows<K> {
    fn default() -> Self {
        Self(DashMap::new())
    }
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    /// The hits of `key` in window `window`.
    fn count(&self, key: &K, window: u64) -> u64 {
        self.0.get(key).filter(|e| e.0 == window).map_or(0, |e| e.1)
    }

    /// Counts one hit in window `second`; returns the count so far.
    fn hit(&self, key: &K, second: u64) -> u64 {
        if self.0.len() > 100_000 {
            self.0.retain(|_, (s, _)| *s == second);
        }
        let bump = |entry: &mut (u64, u64)| {
            if entry.0 != second {
                *entry = (second, 0);
            }
            entry.1 += 1;
            entry.1
        };
        // The common case updates in place, without cloning the key.
        if let Some(mut entry) = self.0.get_mut(key) {
            return bump(&mut entry);
        }
        bump(&mut self.0.entry(key.clone()).or_insert((second, 0)))
    }
}

/// The gate backed by the security cache.
pub struct SecurityGate {
    cache: Arc<SecurityCache>,
    secret: Secret,
    config: GateConfig,
    users: Windows<String>,
    ws_logins: Windows<String>,
    ip_logins: Windows<IpAddr>,
    failures: Arc<AuthFailures>,
}

impl std::fmt::Debug for SecurityGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityGate")
            .field("config", &self.config)
            .finish()
    }
}

/// The profiles of a caller, as the rights check and the rate limiter read them.
pub fn caller_profiles<'a>(
    snapshot: &'a SecuritySnapshot,
    profile_ids: &[String],
) -> Vec<&'a ProfileRights> {
    profile_ids
        .iter()
        .filter_map(|id| snapshot.profiles.get(id).map(|p| &p.rights))
        .collect()
}

/// The profile ids of `kuid` (the anonymous user holds `anonymous`); `None` for an unknown user. A
/// user not in this node's cache is read from the store.
pub async fn profile_ids(
    cache: &SecurityCache,
    kuid: &str,
) -> Result<Option<Arc<[String]>>, KuzzleError> {
    cache.profile_ids(kuid).await.map_err(|e| e.to_wire())
}

/// The outcome of checking a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid {
        kuid: String,
        expires_at: i64,
        /// Replaced by `auth:refreshToken`, valid for the rest of its grace period only.
        refreshed: bool,
    },
    Invalid,
    Expired,
}

impl SecurityGate {
    pub fn new(
        cache: Arc<SecurityCache>,
        secret: Secret,
        config: GateConfig,
        failures: Arc<AuthFailures>,
    ) -> Self {
        Self {
            cache,
            secret,
            config,
            users: Windows::default(),
            ws_logins: Windows::default(),
            ip_logins: Windows::default(),
            failures,
        }
    }

    /// Verifies a token (`security-model.md` §7 checks 2–4).
    pub async fn check_token(&self, token: &str) -> Result<TokenCheck, KuzzleError> {
        check_token(&self.secret, &self.cache, token).await
    }
}

/// Token checks shared by the gate and `auth:checkToken`.
pub async fn check_token(
    secret: &Secret,
    cache: &SecurityCache,
    token: &str,
) -> Result<TokenCheck, KuzzleError> {
    let now = now_ms();
    let verified = match cache.verified(token) {
        Some(v) if v.exp.is_some_and(|exp| exp <= now / 1000) => return Ok(TokenCheck::Expired),
        Some(v) => v,
        None => match tokens::verify(secret, token, now / 1000) {
            Ok(claims) => {
                let v = VerifiedToken {
                    id: tokens::token_id(&claims.kuid, token),
                    kuid: claims.kuid,
                    exp: claims.exp,
                };
                cache.remember_verified(token, v.clone());
                v
            }
            Err(TokenError::Invalid) => return Ok(TokenCheck::Invalid),
            Err(TokenError::Expired) => return Ok(TokenCheck::Expired),
        },
    };
    // From this node's cache, or the store (authoritative) when not cached: a token known to have
    // no record (revoked) is refused without a store read.
    let record = cache.token(&verified.id).await.map_err(|e| {
        // The wire says what failed in the API's terms, the log has the detail.
        e.log();
        KuzzleError::new(&SECURITY_TOKEN_VERIFICATION_ERROR, vec![json!(e.summary())])
    })?;
    // The prefix is not signed: a token is accepted only as the kind its record was made for.
    let Some(record) =
        record.filter(|r| r.kuid == verified.kuid && r.api_key == tokens::is_api_key(token))
    else {
        return Ok(TokenCheck::Invalid);
    };
    if record.expires_at >= 0 && record.expires_at <= i64::try_from(now).unwrap_or(i64::MAX) {
        // A refreshed token past its grace is revoked, as Kuzzle answers (its record is gone
        // there), and whether or not the record was purged yet here.
        return Ok(if record.refreshed {
            TokenCheck::Invalid
        } else {
            TokenCheck::Expired
        });
    }
    Ok(TokenCheck::Valid {
        kuid: record.kuid,
        expires_at: record.expires_at,
        refreshed: record.refreshed,
    })
}

/// The token a request is authenticated with, and whether it came from the `authToken` cookie
/// (`protocol.md` §6.1, Kuzzle's order of checks):
/// - cookie authentication off and `cookieAuth: true` → `security.cookie.unsupported`;
/// - a `Cookie` header that cannot be read → `security.cookie.invalid`;
/// - an `authToken` cookie (neither empty nor `null`) with cookie authentication off →
///   `security.cookie.unsupported`; with a non-empty `jwt` (argument, `Authorization`) too →
///   `security.token.verification_error`; else the cookie's token is the request's;
/// - otherwise the envelope's `jwt`.
pub fn request_token<'a>(
    req: &'a Request,
    conn: &'a ConnectionInfo,
    cookies_enabled: bool,
) -> Result<(Option<&'a str>, bool), KuzzleError> {
    if !cookies_enabled && cookie_auth(req)? {
        return Err(KuzzleError::plain(&SECURITY_COOKIE_UNSUPPORTED));
    }
    if let Some(header) = &conn.cookie {
        let token = tollgate_protocol::cookie::auth_token(header)
            .map_err(|_| KuzzleError::plain(&SECURITY_COOKIE_INVALID))?;
        if let Some(token) = token {
            if !cookies_enabled {
                return Err(KuzzleError::plain(&SECURITY_COOKIE_UNSUPPORTED));
            }
            if req.jwt.as_deref().is_some_and(|j| !j.is_empty()) {
                return Err(KuzzleError::new(
                    &SECURITY_TOKEN_VERIFICATION_ERROR,
                    vec![json!(
                        "Both token and cookie are present, could not decide which one to use"
                    )],
                ));
            }
            return Ok((Some(token), true));
        }
    }
    Ok((req.jwt.as_deref(), false))
}

/// The request's `cookieAuth` argument.
pub fn cookie_auth(req: &Request) -> Result<bool, KuzzleError> {
    Ok(req.boolean("cookieAuth")? == Some(true))
}

fn is_auth(req: &Request, action: &str) -> bool {
    req.controller.as_deref() == Some("auth") && req.action.as_deref() == Some(action)
}

/// `auth:checkToken` must work with a stale token in the envelope (clients that attach their token to
/// every request would otherwise be unable to ask whether it is still valid): a bad token means
/// anonymous there.
///
/// So must `auth:logout` with `cookieAuth` and the cookie's token (as Kuzzle, which does not verify
/// it there): a browser holding an expired or revoked cookie must still be able to clear it.
fn tolerates_bad_token(req: &Request, cookie_logout: bool) -> bool {
    is_auth(req, "checkToken") || (cookie_logout && is_auth(req, "logout"))
}

#[async_trait]
impl Gate for SecurityGate {
    async fn authenticate(
        &self,
        req: &Request,
        conn: &ConnectionInfo,
    ) -> Result<Caller, KuzzleError> {
        // Typed first: a `cookieAuth` that is not a boolean is refused before anything runs.
        let cookie_auth = cookie_auth(req)?;
        let (token, from_cookie) = request_token(req, conn, self.config.cookie_authentication)?;
        let cookie_logout = from_cookie && cookie_auth;
        // `auth:login` runs as anonymous whatever token comes with it: logging in is how a client
        // replaces its token, and a logged-in user's profiles need not grant `auth:login`.
        let Some(token) = token.filter(|_| !is_auth(req, "login")) else {
            return Ok(Caller::anonymous());
        };
        let outcome = if token.is_empty() {
            TokenCheck::Invalid
        } else {
            self.check_token(token).await?
        };
        match outcome {
            TokenCheck::Valid {
                kuid,
                expires_at,
                refreshed,
            } => Ok(Caller {
                kuid,
                token: Some(token.to_owned()),
                // The end of a refreshed token's grace is no expiry to notify: the socket follows
                // the new token (`auth:refreshToken` links it), and a `TokenExpired` for the old
                // one would make the SDK drop the new one.
                expires_at: u64::try_from(expires_at).ok().filter(|_| !refreshed),
            }),
            TokenCheck::Invalid if self.failures.record(conn.peer) => {
                Err(KuzzleError::plain(&API_PROCESS_TOO_MANY_LOGINS_REQUESTS))
            }
            _ if tolerates_bad_token(req, cookie_logout) => Ok(Caller::anonymous()),
            TokenCheck::Invalid => Err(KuzzleError::plain(&SECURITY_TOKEN_INVALID)),
            TokenCheck::Expired => Err(KuzzleError::plain(&SECURITY_TOKEN_EXPIRED)),
        }
    }

    async fn authorize(&self, req: &Request, caller: &Caller) -> Result<(), KuzzleError> {
        let controller = req.controller.as_deref().unwrap_or_default();
        let action = req.action.as_deref().unwrap_or_default();
        // A token whose user was deleted is revoked with it; should one slip through, it is invalid.
        let ids = profile_ids(&self.cache, &caller.kuid)
            .await?
            .ok_or_else(|| KuzzleError::plain(&SECURITY_TOKEN_INVALID))?;
        let snapshot = self.cache.snapshot();
        // The profiles are walked in place (no list is built per request).
        let allowed = ids
            .iter()
            .filter_map(|id| snapshot.profiles.get(id))
            .any(|p| {
                p.rights.allows(
                    snapshot.as_ref(),
                    controller,
                    action,
                    req.index_name(),
                    req.collection_name(),
                )
            });
        if allowed {
            Ok(())
        } else if caller.is_anonymous() {
            Err(KuzzleError::new(
                &SECURITY_RIGHTS_UNAUTHORIZED,
                vec![json!(controller), json!(action)],
            ))
        } else {
            Err(KuzzleError::new(
                &SECURITY_RIGHTS_FORBIDDEN,
                vec![json!(controller), json!(action), json!(caller.kuid)],
            ))
        }
    }

    async fn rate_limit(
        &self,
        req: &Request,
        caller: &Caller,
        conn: &ConnectionInfo,
    ) -> Result<(), KuzzleError> {
        let second = now_ms() / 1000;
        let is_auth = req.controller.as_deref() == Some("auth");
        match req.action.as_deref() {
            Some("login") if is_auth => {
                // Per client address over every protocol and connection, then per WebSocket
                // connection (Kuzzle's `limits.loginsPerSecond`), then failed attempts.
                let over = |count: u64, limit: u32| limit != 0 && count > u64::from(limit);
                let per_ip = conn.peer.is_some_and(|peer| {
                    over(
                        self.ip_logins.hit(&peer.ip(), second),
                        self.config.logins_per_second_per_ip,
                    )
                });
                let per_socket = conn.protocol == Protocol::WebSocket
                    && over(
                        self.ws_logins.hit(&conn.id, second),
                        self.config.logins_per_second,
                    );
                if per_ip || per_socket || self.failures.exhausted(conn.peer) {
                    return Err(KuzzleError::plain(&API_PROCESS_TOO_MANY_LOGINS_REQUESTS));
                }
                return Ok(());
            }
            Some("logout") if is_auth && !caller.is_anonymous() => return Ok(()),
            _ => {}
        }
        let ids = profile_ids(&self.cache, &caller.kuid)
            .await?
            .unwrap_or_default();
        let snapshot = self.cache.snapshot();
        let profiles = caller_profiles(&snapshot, &ids);
        // The most permissive profile wins; 0 is unlimited.
        let limit = if profiles.is_empty() || profiles.iter().any(|p| p.rate_limit == 0) {
            0
        } else {
            profiles.iter().map(|p| p.rate_limit).max().unwrap_or(0)
        };
        if limit == 0 {
            return Ok(());
        }
        if self.users.hit(&caller.kuid, second) > limit {
            return Err(KuzzleError::plain(&API_PROCESS_TOO_MANY_REQUESTS));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::TOKEN;
    use tollgate_storage::memory::MemoryStore;
    use tollgate_storage::{Expect, Op, Store};

    use super::*;

    #[tokio::test]
    async fn a_revoked_token_is_refused_without_reading_the_store_each_time() {
        let store = Arc::new(MemoryStore::new());
        let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
        let cache = SecurityCache::start(Arc::clone(&dyn_store), Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let secret = Secret::new(b"k").unwrap_or_else(|| panic!("secret"));
        let never_recorded = tokens::issue(&secret, "u", now_ms() / 1000, None);
        let revoked = tokens::issue(&secret, "v", now_ms() / 1000, None);
        let id = tokens::token_id("v", &revoked);
        let record = |op| async {
            let c = dyn_store
                .commit(vec![op])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            cache
                .wait_for(c.seq)
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
        };
        record(Op::Put {
            kind: TOKEN,
            id: id.clone(),
            body: json!({"kuid": "v", "expiresAt": -1}),
            expect: Expect::Absent,
        })
        .await;
        let check = |t: String| {
            let (cache, secret) = (&cache, &secret);
            async move { check_token(secret, cache, &t).await }
        };
        assert!(matches!(
            check(revoked.clone()).await,
            Ok(TokenCheck::Valid { .. })
        ));
        record(Op::Delete {
            kind: TOKEN,
            id,
            expect: Expect::Present,
        })
        .await;
        let before = store.reads().get.load(Ordering::Relaxed);
        for _ in 0..100 {
            assert_eq!(check(revoked.clone()).await, Ok(TokenCheck::Invalid));
            assert_eq!(check(never_recorded.clone()).await, Ok(TokenCheck::Invalid));
        }
        // The revoked one is known from the feed; the unknown one is read once.
        assert_eq!(store.reads().get.load(Ordering::Relaxed) - before, 1);
    }
}
