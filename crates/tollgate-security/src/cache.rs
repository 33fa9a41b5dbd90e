//! The per-node security cache: every role and profile, as one consistent snapshot behind an
//! `ArcSwap` (lock-free reads), loaded at start and kept current from the store's change feed — not
//! only from this node's writes, so changes made by other nodes apply too.

use imbl::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tollgate_storage::{Catchup, Doc, FeedEvent, Store, StoreError};

use crate::rights::{ProfileRights, RoleLookup, RoleRights};
use crate::{PROFILE, ROLE, TOKEN, USER};

/// A recorded token: its user and expiry (epoch ms, -1 = never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub kuid: String,
    pub expires_at: i64,
}

impl TokenRecord {
    fn from_doc(doc: &Doc) -> Option<Self> {
        Some(Self {
            kuid: doc.body.get("kuid")?.as_str()?.to_owned(),
            expires_at: doc.body.get("expiresAt")?.as_i64()?,
        })
    }
}

/// A cached role: the stored document, its parsed rights, and its result JSON.
#[derive(Debug, Clone)]
pub struct CachedRole {
    pub doc: Doc,
    pub rights: RoleRights,
    /// `{"_id","_version","_source"}`, serialized once.
    pub result: Arc<RawValue>,
}

/// A cached profile: the stored document, its parsed policies, and its result JSON.
#[derive(Debug, Clone)]
pub struct CachedProfile {
    pub doc: Doc,
    pub rights: ProfileRights,
    /// `{"_id","_version","_source"}`, serialized once.
    pub result: Arc<RawValue>,
}

/// `{"_id","_version","_source"}` of a document, serialized.
fn result_json(doc: &Doc) -> Arc<RawValue> {
    let value = serde_json::json!({"_id": doc.id, "_version": doc.version, "_source": doc.body});
    match serde_json::value::to_raw_value(&value) {
        Ok(raw) => Arc::from(raw),
        // Serializing a JSON value cannot fail; keep a valid document should it ever.
        Err(_) => Arc::from(RawValue::NULL.to_owned()),
    }
}

/// A cached entry that carries its stored document and its result JSON.
pub trait CachedDoc {
    fn doc(&self) -> &Doc;
    fn result(&self) -> &Arc<RawValue>;
}

impl CachedDoc for CachedRole {
    fn doc(&self) -> &Doc {
        &self.doc
    }
    fn result(&self) -> &Arc<RawValue> {
        &self.result
    }
}

impl CachedDoc for CachedProfile {
    fn doc(&self) -> &Doc {
        &self.doc
    }
    fn result(&self) -> &Arc<RawValue> {
        &self.result
    }
}

/// Roles and profiles as of one store sequence number. The maps are persistent (structurally
/// shared): deriving the next snapshot from a change costs O(log n), not a copy of every entry.
#[derive(Debug, Clone, Default)]
pub struct SecuritySnapshot {
    pub seq: u64,
    pub roles: HashMap<String, Arc<CachedRole>>,
    pub profiles: HashMap<String, Arc<CachedProfile>>,
}

impl RoleLookup for SecuritySnapshot {
    fn role(&self, id: &str) -> Option<&RoleRights> {
        self.roles.get(id).map(|r| &r.rights)
    }
}

fn source(doc: &Doc) -> Map<String, Value> {
    doc.body.as_object().cloned().unwrap_or_default()
}

impl SecuritySnapshot {
    fn apply(&mut self, kind: &str, id: &str, doc: Option<&Doc>) {
        match (kind, doc) {
            (ROLE, Some(doc)) => {
                let rights = RoleRights::from_source(&source(doc));
                self.roles.insert(
                    id.to_owned(),
                    Arc::new(CachedRole {
                        doc: doc.clone(),
                        rights,
                        result: result_json(doc),
                    }),
                );
            }
            (ROLE, None) => {
                self.roles.remove(id);
            }
            (PROFILE, Some(doc)) => {
                let rights = ProfileRights::from_source(&source(doc));
                self.profiles.insert(
                    id.to_owned(),
                    Arc::new(CachedProfile {
                        doc: doc.clone(),
                        rights,
                        result: result_json(doc),
                    }),
                );
            }
            (PROFILE, None) => {
                self.profiles.remove(id);
            }
            _ => {}
        }
    }
}

/// The cache, shared by the security controller and the rights check.
///
/// Roles and profiles form one snapshot (few, read on every request); users and tokens (many) are
/// concurrent maps updated in place from the same change feed.
pub struct SecurityCache {
    current: ArcSwap<SecuritySnapshot>,
    users: DashMap<String, Arc<Doc>>,
    /// Each user's `profileIds`, parsed once when the user changes.
    user_profiles: DashMap<String, Arc<[String]>>,
    /// The anonymous user's profiles.
    anonymous_profiles: Arc<[String]>,
    tokens: DashMap<String, TokenRecord>,
    /// Ids of tokens known to have no record (revoked, or never recorded): a signed token that was
    /// revoked is refused without a store read. An id leaves the set when its record is written.
    revoked: DashMap<String, ()>,
    /// Tokens whose signature was already verified on this node: token → (id, kuid, exp in s).
    /// Only a shortcut past the HMAC and the JSON decoding; the record is still looked up each time.
    verified: DashMap<String, VerifiedToken>,
    applied: watch::Sender<u64>,
}

/// A token whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// [`crate::tokens::token_id`] of the token.
    pub id: String,
    pub kuid: String,
    /// `exp` claim, in seconds.
    pub exp: Option<u64>,
}

/// Verified tokens remembered at most (the map is cleared past that).
const VERIFIED_MAX: usize = 100_000;

impl std::fmt::Debug for SecurityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityCache")
            .field("seq", &self.current.load().seq)
            .finish()
    }
}

/// How long a writer waits for its change to reach this node's cache before answering anyway.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl SecurityCache {
    /// Loads the cache from `store` and keeps following its change feed in a background task.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let mut feed = store.subscribe(0);
        let (applied, _) = watch::channel(0);
        let cache = Arc::new(Self {
            current: ArcSwap::from_pointee(SecuritySnapshot::default()),
            users: DashMap::new(),
            user_profiles: DashMap::new(),
            anonymous_profiles: Arc::from(vec!["anonymous".to_owned()]),
            tokens: DashMap::new(),
            verified: DashMap::new(),
            revoked: DashMap::new(),
            applied,
        });
        let seq = cache.reload(store.as_ref()).await?;
        feed.skip_through(seq);
        let weak = Arc::downgrade(&cache);
        // The task holds neither the cache nor the store: it ends when the store is dropped (its
        // feed closes), so shutting the server down closes the store.
        let weak_store = Arc::downgrade(&store);
        drop(store);
        tokio::spawn(async move {
            while let Some(event) = feed.next().await {
                let Some(cache) = weak.upgrade() else { return };
                let mut next: Option<SecuritySnapshot> = None;
                let mut seq = None;
                let mut resync = false;
                let mut event = Some(event);
                // Apply every change already waiting before publishing one new snapshot.
                while let Some(e) = event.take() {
                    match e {
                        FeedEvent::Change(change) => {
                            let doc = change.doc.as_ref();
                            match change.kind.as_str() {
                                ROLE | PROFILE => next
                                    .get_or_insert_with(|| (*cache.current.load_full()).clone())
                                    .apply(&change.kind, &change.id, doc),
                                USER | TOKEN => cache.apply_entry(&change.kind, &change.id, doc),
                                _ => {}
                            }
                            seq = Some(change.seq);
                        }
                        FeedEvent::Resync => resync = true,
                    }
                    event = feed.try_next();
                }
                if resync {
                    let Some(store) = weak_store.upgrade() else {
                        return;
                    };
                    // Subscribe again first, so nothing committed during the catch-up is missed.
                    feed = store.subscribe(0);
                    match cache.catch_up(store.as_ref()).await {
                        Ok(caught_up) => feed.skip_through(caught_up),
                        Err(error) => {
                            tracing::error!(%error, "security cache catch-up failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            // Next round: a gap again, so a new catch-up.
                            feed = store.subscribe(0);
                        }
                    }
                    continue;
                }
                if let Some(mut next) = next {
                    if let Some(seq) = seq {
                        next.seq = seq;
                    }
                    cache.current.store(Arc::new(next));
                }
                if let Some(seq) = seq {
                    cache.applied.send_replace(seq);
                }
            }
        });
        Ok(cache)
    }

    /// Brings the cache up to date after a gap in the feed, from the store's change log: only what
    /// changed since the last applied sequence number is read. Falls back to a full reload when the
    /// log no longer goes back that far. Returns the sequence number now applied.
    async fn catch_up(&self, store: &dyn Store) -> Result<u64, StoreError> {
        const PAGE: usize = 10_000;
        let mut from = *self.applied.borrow();
        loop {
            let (seq, changes) = match store.changes_since(from, PAGE).await? {
                Catchup::Changes { seq, changes } => (seq, changes),
                Catchup::TooFarBehind => {
                    tracing::warn!(
                        from,
                        "security cache too far behind the change log: reloading"
                    );
                    return self.reload(store).await;
                }
            };
            let mut next: Option<SecuritySnapshot> = None;
            for change in &changes {
                let doc = change.doc.as_ref();
                match change.kind.as_str() {
                    ROLE | PROFILE => next
                        .get_or_insert_with(|| (*self.current.load_full()).clone())
                        .apply(&change.kind, &change.id, doc),
                    USER | TOKEN => self.apply_entry(&change.kind, &change.id, doc),
                    _ => {}
                }
            }
            if let Some(mut next) = next {
                next.seq = seq;
                self.current.store(Arc::new(next));
            }
            self.applied.send_replace(seq);
            if changes.len() < PAGE {
                return Ok(seq);
            }
            from = seq;
        }
    }

    /// Replaces everything with a fresh load from the store; returns its sequence number. Entries
    /// are replaced in place and only then are the ones gone from the store removed, so a user or a
    /// token that exists is never missing meanwhile.
    async fn reload(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let raw = store.snapshot(&[ROLE, PROFILE, USER, TOKEN]).await?;
        let mut snapshot = SecuritySnapshot {
            seq: raw.seq,
            ..SecuritySnapshot::default()
        };
        let mut users = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for (kind, doc) in &raw.docs {
            match kind.as_str() {
                ROLE | PROFILE => snapshot.apply(kind, &doc.id, Some(doc)),
                _ => {
                    match kind.as_str() {
                        USER => users.insert(doc.id.as_str()),
                        _ => tokens.insert(doc.id.as_str()),
                    };
                    self.apply_entry(kind, &doc.id, Some(doc));
                }
            }
        }
        self.users.retain(|id, _| users.contains(id.as_str()));
        self.user_profiles
            .retain(|id, _| users.contains(id.as_str()));
        self.tokens.retain(|id, _| tokens.contains(id.as_str()));
        self.current.store(Arc::new(snapshot));
        self.applied.send_replace(raw.seq);
        Ok(raw.seq)
    }

    fn apply_entry(&self, kind: &str, id: &str, doc: Option<&Doc>) {
        match (kind, doc) {
            (USER, Some(doc)) => {
                let profiles: Vec<String> = doc
                    .body
                    .get("profileIds")
                    .and_then(Value::as_array)
                    .map(|ids| {
                        ids.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                self.user_profiles
                    .insert(id.to_owned(), Arc::from(profiles));
                self.users.insert(id.to_owned(), Arc::new(doc.clone()));
            }
            (USER, None) => {
                self.users.remove(id);
                self.user_profiles.remove(id);
            }
            (TOKEN, Some(doc)) => {
                self.revoked.remove(id);
                if let Some(record) = TokenRecord::from_doc(doc) {
                    self.tokens.insert(id.to_owned(), record);
                }
            }
            (TOKEN, None) if self.tokens.remove(id).is_some() => self.remember_revoked(id),
            _ => {}
        }
    }

    /// The profile ids of `kuid` (the anonymous user holds `anonymous`); `None` for an unknown user.
    pub fn profile_ids(&self, kuid: &str) -> Option<Arc<[String]>> {
        if kuid == tollgate_core::ANONYMOUS_KUID {
            return Some(Arc::clone(&self.anonymous_profiles));
        }
        self.user_profiles.get(kuid).map(|p| Arc::clone(p.value()))
    }

    /// A stored user.
    pub fn user(&self, kuid: &str) -> Option<Arc<Doc>> {
        self.users.get(kuid).map(|u| Arc::clone(u.value()))
    }

    /// Whether some user holds profile `admin`.
    pub fn admin_exists(&self) -> bool {
        self.users.iter().any(|u| {
            u.body
                .get("profileIds")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|id| id.as_str() == Some("admin")))
        })
    }

    /// The recorded token with this id (see [`crate::tokens::token_id`]).
    pub fn token(&self, id: &str) -> Option<TokenRecord> {
        self.tokens.get(id).map(|t| t.value().clone())
    }

    /// Whether a token id is known to have no record.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains_key(id)
    }

    /// Remembers that a token id has no record (bounded: the set is emptied past its size).
    pub fn remember_revoked(&self, id: &str) {
        if self.revoked.len() >= VERIFIED_MAX {
            self.revoked.clear();
        }
        self.revoked.insert(id.to_owned(), ());
    }

    /// A token whose signature this node already verified.
    pub fn verified(&self, token: &str) -> Option<VerifiedToken> {
        self.verified.get(token).map(|v| v.value().clone())
    }

    /// Remembers a token whose signature checked out.
    pub fn remember_verified(&self, token: &str, verified: VerifiedToken) {
        if self.verified.len() >= VERIFIED_MAX {
            self.verified.clear();
        }
        self.verified.insert(token.to_owned(), verified);
    }

    /// Ids of every recorded token, with their records (for purging and global logout).
    pub fn tokens_of(&self, kuid: &str) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|t| t.kuid == kuid)
            .map(|t| t.key().clone())
            .collect()
    }

    /// Ids of the tokens expired at `now_ms`.
    pub fn expired_tokens(&self, now_ms: i64) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|t| t.expires_at >= 0 && t.expires_at <= now_ms)
            .map(|t| t.key().clone())
            .collect()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<SecuritySnapshot> {
        self.current.load_full()
    }

    /// Waits until the cache has applied every change up to `seq`.
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.applied.subscribe();
        let reached =
            tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|applied| *applied >= seq)).await;
        if !matches!(reached, Ok(Ok(_))) {
            tracing::warn!(seq, "security cache did not apply a change in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tollgate_storage::memory::MemoryStore;
    use tollgate_storage::{Expect, Op};

    #[tokio::test]
    async fn a_lagging_feed_catches_up_from_the_change_log_without_a_reload() {
        let store = Arc::new(MemoryStore::new());
        let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
        let cache = SecurityCache::start(Arc::clone(&shared))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store
                .reads()
                .snapshot
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // On this single-threaded runtime the cache's task does not run while these commits are
        // made: its feed overflows (more changes than the feed holds) and reports a gap.
        let mut last = 0;
        for i in 0..5_000u32 {
            let id = format!("u{}", i % 100);
            let body = json!({"profileIds": [format!("p{i}")]});
            let ops = vec![Op::Put {
                kind: USER,
                id,
                body,
                expect: Expect::Any,
            }];
            last = shared
                .commit(ops)
                .await
                .map(|c| c.seq)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let role = Op::Put {
            kind: ROLE,
            id: "r".into(),
            body: json!({"controllers":{"*":{"actions":{"*":true}}}}),
            expect: Expect::Absent,
        };
        last = shared
            .commit(vec![role])
            .await
            .map(|c| c.seq)
            .unwrap_or(last);
        cache.wait_for(last).await;
        assert_eq!(*cache.applied.borrow(), last);
        assert_eq!(
            cache.profile_ids("u99").as_deref(),
            Some(&["p4999".to_owned()][..])
        );
        assert!(cache.snapshot().roles.contains_key("r"));
        // Caught up from the log: no second full snapshot.
        assert_eq!(
            store
                .reads()
                .snapshot
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn follows_changes_made_by_another_writer() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = SecurityCache::start(Arc::clone(&store))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cache.snapshot().profiles.is_empty());
        // Another node writes straight to the shared store: this node never saw the request.
        let put = |kind, id: &str, body| Op::Put {
            kind,
            id: id.into(),
            body,
            expect: Expect::Any,
        };
        let committed = store
            .commit(vec![
                put(
                    ROLE,
                    "r",
                    json!({"controllers":{"auth":{"actions":{"login":true}}}}),
                ),
                put(
                    PROFILE,
                    "p",
                    json!({"policies":[{"roleId":"r"}],"rateLimit":7}),
                ),
                put(USER, "u", json!({"profileIds":["p"]})),
                put(TOKEN, "t", json!({"kuid":"u","expiresAt":-1})),
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        cache.wait_for(committed.seq).await;
        let snapshot = cache.snapshot();
        assert_eq!(
            snapshot.profiles.get("p").map(|p| p.rights.rate_limit),
            Some(7)
        );
        assert!(
            snapshot
                .roles
                .get("r")
                .is_some_and(|r| r.rights.allows("auth", "login"))
        );
        assert_eq!(
            cache.profile_ids("u").as_deref(),
            Some(&["p".to_owned()][..])
        );
        assert_eq!(cache.token("t").map(|t| t.kuid), Some("u".to_owned()));
        // Deletions too.
        let committed = store
            .commit(vec![
                Op::Delete {
                    kind: TOKEN,
                    id: "t".into(),
                    expect: Expect::Any,
                },
                Op::Delete {
                    kind: PROFILE,
                    id: "p".into(),
                    expect: Expect::Any,
                },
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        cache.wait_for(committed.seq).await;
        assert!(cache.token("t").is_none());
        assert!(!cache.snapshot().profiles.contains_key("p"));
    }
}
