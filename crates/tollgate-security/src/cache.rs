//! The per-node security cache: every role and profile, as one consistent snapshot behind an
//! `ArcSwap` (lock-free reads), loaded at start and kept current from the store's change feed — not
//! only from this node's writes, so changes made by other nodes apply too.
//!
//! Users and tokens can be many more than fit in memory: they are cached on demand, in bounded
//! caches filled from the store on a miss and kept correct by the same feed (an entry a change
//! touches is replaced; a fill that raced with a change of its entry is dropped, so a stale copy is
//! never kept). A miss is a store read, never a refusal.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use quick_cache::sync::Cache;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tollgate_storage::{Catchup, Doc, FeedEvent, Kind, Store, StoreError};

use crate::rights::{ProfileRights, RoleLookup, RoleRights};
use crate::{PROFILE, ROLE, TOKEN, USER};

/// A recorded token: its user and expiry (epoch ms, -1 = never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub kuid: String,
    pub expires_at: i64,
    /// Replaced by `auth:refreshToken`: valid until `expires_at` (the grace), then invalid, and
    /// never refreshed again.
    pub refreshed: bool,
    /// The token of an API key (`auth:createApiKey`): only a `kapikey-` token may use it.
    pub api_key: bool,
}

impl TokenRecord {
    pub(crate) fn from_doc(doc: &Doc) -> Option<Self> {
        Some(Self {
            kuid: doc.body.get("kuid")?.as_str()?.to_owned(),
            expires_at: doc.body.get("expiresAt")?.as_i64()?,
            refreshed: doc.body.get("refreshed").and_then(Value::as_bool) == Some(true),
            api_key: doc.body.get("apiKey").is_some(),
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
    /// `{"_id":…,"_version":…,"_source":…}`, serialized from the document in place.
    #[derive(serde::Serialize)]
    struct Result<'a> {
        #[serde(rename = "_id")]
        id: &'a str,
        #[serde(rename = "_version")]
        version: &'a u64,
        #[serde(rename = "_source")]
        source: &'a Value,
    }
    let value = Result {
        id: &doc.id,
        version: &doc.version,
        source: &doc.body,
    };
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

/// Cached documents by id: a persistent map, hashed with foldhash (ids are chosen by administrators,
/// and a lookup costs a fraction of SipHash's; the seed is random per process).
pub type Docs<T> = imbl::GenericHashMap<
    String,
    Arc<T>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// Roles and profiles as of one store sequence number. The maps are persistent (structurally
/// shared): deriving the next snapshot from a change costs O(log n), not a copy of every entry.
#[derive(Debug, Clone, Default)]
pub struct SecuritySnapshot {
    pub seq: u64,
    pub roles: Docs<CachedRole>,
    pub profiles: Docs<CachedProfile>,
}

impl RoleLookup for SecuritySnapshot {
    fn role(&self, id: &str) -> Option<&RoleRights> {
        self.roles.get(id).map(|r| &r.rights)
    }
}

fn source(doc: &Doc) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    doc.body
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

impl SecuritySnapshot {
    pub(crate) fn apply(&mut self, kind: &str, id: &str, doc: Option<&Doc>) {
        self.apply_with(kind, id, doc, true);
    }

    /// [`SecuritySnapshot::apply`] for a snapshot that only answers rights questions (a change's
    /// would-be state): the entries' result JSON is not made (it is `null`).
    pub(crate) fn apply_rights(&mut self, kind: &str, id: &str, doc: Option<&Doc>) {
        self.apply_with(kind, id, doc, false);
    }

    fn apply_with(&mut self, kind: &str, id: &str, doc: Option<&Doc>, results: bool) {
        let result = |doc: &Doc| {
            if results {
                result_json(doc)
            } else {
                Arc::from(RawValue::NULL.to_owned())
            }
        };
        match (kind, doc) {
            (ROLE, Some(doc)) => {
                let rights = RoleRights::from_source(source(doc));
                self.roles.insert(
                    id.to_owned(),
                    Arc::new(CachedRole {
                        doc: doc.clone(),
                        rights,
                        result: result(doc),
                    }),
                );
            }
            (ROLE, None) => {
                self.roles.remove(id);
            }
            (PROFILE, Some(doc)) => {
                let rights = ProfileRights::from_source(source(doc));
                self.profiles.insert(
                    id.to_owned(),
                    Arc::new(CachedProfile {
                        doc: doc.clone(),
                        rights,
                        result: result(doc),
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

/// How many users and tokens a node keeps in memory (each cache is bounded; a miss reads the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub users: usize,
    pub tokens: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            users: 100_000,
            tokens: 100_000,
        }
    }
}

/// A cached user: the stored document and its `profileIds`, parsed once.
#[derive(Debug, Clone)]
pub struct CachedUser {
    pub doc: Arc<Doc>,
    pub profile_ids: Arc<[String]>,
}

impl CachedUser {
    fn from_doc(doc: &Doc) -> Self {
        let profiles = crate::profile_ids_of(doc);
        Self {
            doc: Arc::new(doc.clone()),
            profile_ids: Arc::from(profiles),
        }
    }
}

/// One on-demand cache: id → the stored entry, or `None` when the store has none (known absent).
struct OnDemand<V: Clone> {
    kind: Kind,
    entries: Cache<String, Option<V>>,
    /// Ids changed by the feed while fills were in flight, with the change's sequence number: a fill
    /// that read the store before such a change drops what it read.
    touched: DashMap<String, u64>,
}

/// Past this many touched ids the map is emptied and every fill in flight is invalidated.
const TOUCHED_MAX: usize = 50_000;

impl<V: Clone> OnDemand<V> {
    fn new(kind: Kind, capacity: usize) -> Self {
        Self {
            kind,
            entries: Cache::new(capacity.max(16)),
            touched: DashMap::new(),
        }
    }
}

/// The cache, shared by the security controller and the rights check.
///
/// Roles and profiles form one snapshot (few, read on every request); users and tokens (many) are
/// bounded on-demand caches kept current from the same change feed.
pub struct SecurityCache {
    current: ArcSwap<SecuritySnapshot>,
    /// The store the on-demand caches read on a miss (weak: the cache never keeps it open).
    store: Weak<dyn Store>,
    users: OnDemand<CachedUser>,
    /// The anonymous user's profiles.
    anonymous_profiles: Arc<[String]>,
    /// Token records; `None` = known to have no record (revoked, or never recorded), so a signed
    /// token that was revoked is refused without a store read.
    tokens: OnDemand<TokenRecord>,
    /// Fills (store reads on a miss) in flight.
    filling: AtomicUsize,
    /// Bumped when every fill in flight must be dropped (a reload, the touched map emptied).
    epoch: AtomicU64,
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

/// How long a writer waits for its change to reach this node's cache before reporting that it could
/// not confirm it.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a writer waits for the other live nodes sharing the store to apply its change before
/// answering anyway (a node that does not answer for longer stops counting as live).
pub const PEER_APPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A committed change this node did not apply within [`APPLY_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied {
    pub seq: u64,
}

impl SecurityCache {
    /// Loads the cache from `store` and keeps following its change feed in a background task.
    pub async fn start(
        store: Arc<dyn Store>,
        limits: CacheLimits,
    ) -> Result<Arc<Self>, StoreError> {
        let mut feed = store.subscribe(0);
        let (applied, _) = watch::channel(0);
        let cache = Arc::new(Self {
            current: ArcSwap::from_pointee(SecuritySnapshot::default()),
            store: Arc::downgrade(&store),
            users: OnDemand::new(USER, limits.users),
            anonymous_profiles: Arc::from(vec!["anonymous".to_owned()]),
            tokens: OnDemand::new(TOKEN, limits.tokens),
            filling: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            verified: DashMap::new(),
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
                                USER | TOKEN => {
                                    cache.apply_entry(&change.kind, &change.id, change.seq, doc);
                                }
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
                cache.forget_touched();
                if let Some(mut next) = next {
                    if let Some(seq) = seq {
                        next.seq = seq;
                    }
                    cache.current.store(Arc::new(next));
                }
                if let Some(seq) = seq {
                    cache.applied.send_replace(seq);
                    // The other nodes' writers wait for this.
                    if let Some(store) = weak_store.upgrade() {
                        store.applied(seq);
                    }
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
                    USER | TOKEN => self.apply_entry(&change.kind, &change.id, change.seq, doc),
                    _ => {}
                }
            }
            self.forget_touched();
            if let Some(mut next) = next {
                next.seq = seq;
                self.current.store(Arc::new(next));
            }
            self.applied.send_replace(seq);
            store.applied(seq);
            if changes.len() < PAGE {
                return Ok(seq);
            }
            from = seq;
        }
    }

    /// Replaces the roles and profiles with a fresh load from the store and forgets every cached
    /// user and token (they are read again on demand); returns the load's sequence number. Until the
    /// new snapshot is in place the old one serves: a reader never sees an empty cache.
    async fn reload(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let raw = store.snapshot(&[ROLE, PROFILE]).await?;
        let mut snapshot = SecuritySnapshot {
            seq: raw.seq,
            ..SecuritySnapshot::default()
        };
        for (kind, doc) in &raw.docs {
            snapshot.apply(kind, &doc.id, Some(doc));
        }
        // Fills in flight read the store before this point: drop what they bring.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users.entries.clear();
        self.tokens.entries.clear();
        self.current.store(Arc::new(snapshot));
        self.applied.send_replace(raw.seq);
        store.applied(raw.seq);
        Ok(raw.seq)
    }

    /// Applies a user or token change from the feed: the cached entry, if any, is replaced (a
    /// deleted token is remembered as absent either way), and the id is marked as touched for the
    /// fills in flight.
    fn apply_entry(&self, kind: &str, id: &str, seq: u64, doc: Option<&Doc>) {
        match kind {
            USER => {
                self.touch(&self.users, id, seq);
                let entry = doc.map(CachedUser::from_doc);
                let _ = self.users.entries.replace(id.to_owned(), entry, false);
            }
            TOKEN => {
                self.touch(&self.tokens, id, seq);
                match doc {
                    Some(doc) => {
                        let record = TokenRecord::from_doc(doc);
                        let _ = self.tokens.entries.replace(id.to_owned(), record, false);
                    }
                    None => self.tokens.entries.insert(id.to_owned(), None),
                }
            }
            _ => {}
        }
    }

    fn touch<V: Clone>(&self, cache: &OnDemand<V>, id: &str, seq: u64) {
        if self.filling.load(Ordering::SeqCst) == 0 {
            return;
        }
        if cache.touched.len() >= TOUCHED_MAX {
            // Too many to remember: every fill in flight drops what it reads instead.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            cache.touched.clear();
        }
        cache.touched.insert(id.to_owned(), seq);
    }

    /// Empties the touched maps once no fill is in flight (a fill that starts later reads the store
    /// after every change applied so far).
    fn forget_touched(&self) {
        if self.filling.load(Ordering::SeqCst) == 0 {
            if !self.users.touched.is_empty() {
                self.users.touched.clear();
            }
            if !self.tokens.touched.is_empty() {
                self.tokens.touched.clear();
            }
        }
    }

    /// The entry `id` of `cache`: from memory, else read from the store and kept (unless a change of
    /// that id, or a reload, happened while it was read).
    async fn entry<V: Clone>(
        &self,
        cache: &OnDemand<V>,
        id: &str,
        parse: impl Fn(&Doc) -> Option<V>,
    ) -> Result<Option<V>, StoreError> {
        if let Some(entry) = cache.entries.get(id) {
            return Ok(entry);
        }
        let Some(store) = self.store.upgrade() else {
            return Err(StoreError::Unavailable("the store is closed".into()));
        };
        self.filling.fetch_add(1, Ordering::SeqCst);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let before = *self.applied.borrow();
        let read = store.get(cache.kind, id).await;
        let outcome = read.map(|doc| {
            let value = doc.as_ref().and_then(&parse);
            cache.entries.insert(id.to_owned(), value.clone());
            let raced = cache.touched.get(id).is_some_and(|seq| *seq > before);
            if raced || self.epoch.load(Ordering::SeqCst) != epoch {
                cache.entries.remove(id);
            }
            value
        });
        self.filling.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    /// The profile ids of `kuid` (the anonymous user holds `anonymous`); `None` for an unknown user.
    pub async fn profile_ids(&self, kuid: &str) -> Result<Option<Arc<[String]>>, StoreError> {
        if kuid == tollgate_core::ANONYMOUS_KUID {
            return Ok(Some(Arc::clone(&self.anonymous_profiles)));
        }
        Ok(self.user(kuid).await?.map(|u| u.profile_ids))
    }

    /// A stored user.
    pub async fn user(&self, kuid: &str) -> Result<Option<CachedUser>, StoreError> {
        self.entry(&self.users, kuid, |doc| Some(CachedUser::from_doc(doc)))
            .await
    }

    /// The recorded token with this id (see [`crate::tokens::token_id`]).
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.entry(&self.tokens, id, TokenRecord::from_doc).await
    }

    /// Whether a token id is known, on this node, to have no record (revoked, or never recorded).
    pub fn is_revoked(&self, id: &str) -> bool {
        matches!(self.tokens.entries.peek(id), Some(None))
    }

    /// Users and tokens held in memory now.
    pub fn cached_entries(&self) -> (usize, usize) {
        (self.users.entries.len(), self.tokens.entries.len())
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

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<SecuritySnapshot> {
        self.current.load_full()
    }

    /// The sequence number of the last change this node applied.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the cache has applied every change up to `seq`; past [`APPLY_TIMEOUT`], the
    /// change is reported as not applied (it is committed, but this node cannot confirm it yet).
    pub async fn wait_for(&self, seq: u64) -> Result<(), NotApplied> {
        let mut rx = self.applied.subscribe();
        let reached =
            tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|applied| *applied >= seq)).await;
        if matches!(reached, Ok(Ok(_))) {
            Ok(())
        } else {
            tracing::warn!(seq, "security cache did not apply a change in time");
            Err(NotApplied { seq })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tollgate_storage::memory::MemoryStore;
    use tollgate_storage::{Expect, Op};

    async fn applied(cache: &SecurityCache, seq: u64) {
        cache
            .wait_for(seq)
            .await
            .unwrap_or_else(|e| panic!("change {} not applied", e.seq));
    }

    async fn profiles_of(cache: &SecurityCache, kuid: &str) -> Option<Vec<String>> {
        cache
            .profile_ids(kuid)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|p| p.to_vec())
    }

    fn put_user(id: &str, profile: &str) -> Op {
        Op::Put {
            kind: USER,
            id: id.into(),
            body: json!({ "profileIds": [profile] }),
            expect: Expect::Any,
        }
    }

    #[tokio::test]
    async fn users_are_read_on_demand_within_the_bound_and_follow_changes() {
        let store = Arc::new(MemoryStore::new());
        let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
        let ops = (0..1_000)
            .map(|i| put_user(&format!("u{i}"), "p"))
            .collect();
        shared.commit(ops).await.unwrap_or_else(|e| panic!("{e}"));
        let limits = CacheLimits {
            users: 64,
            tokens: 64,
        };
        let cache = SecurityCache::start(Arc::clone(&shared), limits)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Nothing of the users was loaded at start.
        assert_eq!(cache.cached_entries(), (0, 0));
        let gets = || store.reads().get.load(std::sync::atomic::Ordering::Relaxed);
        for i in 0..1_000 {
            assert_eq!(
                profiles_of(&cache, &format!("u{i}")).await,
                Some(vec!["p".to_owned()])
            );
        }
        assert_eq!(gets(), 1_000);
        assert!(
            cache.cached_entries().0 <= 64,
            "{:?}",
            cache.cached_entries()
        );
        assert_eq!(profiles_of(&cache, "nobody").await, None);
        // A cached user (just read) is served from memory, and follows a change made elsewhere
        // without a store read.
        assert_eq!(
            profiles_of(&cache, "u999").await,
            Some(vec!["p".to_owned()])
        );
        let before = gets();
        let committed = shared
            .commit(vec![put_user("u999", "q")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        applied(&cache, committed.seq).await;
        assert_eq!(
            profiles_of(&cache, "u999").await,
            Some(vec!["q".to_owned()])
        );
        assert_eq!(gets(), before);
        // A user known to be absent is created elsewhere: the cache sees it.
        assert_eq!(profiles_of(&cache, "late").await, None);
        let committed = shared
            .commit(vec![put_user("late", "p")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        applied(&cache, committed.seq).await;
        assert_eq!(
            profiles_of(&cache, "late").await,
            Some(vec!["p".to_owned()])
        );
    }

    /// A store whose reads of users hand their result back only when released, so that a change can
    /// be committed and applied while a fill is in flight.
    struct SlowReads {
        inner: Arc<MemoryStore>,
        read_done: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl Store for SlowReads {
        async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError> {
            let doc = self.inner.get(kind, id).await;
            if kind == USER {
                self.read_done.notify_one();
                self.release.notified().await;
            }
            doc
        }
        async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError> {
            self.inner.mget(kind, ids).await
        }
        async fn list(
            &self,
            kind: Kind,
            prefix: &str,
            from: u64,
            size: Option<u64>,
        ) -> Result<tollgate_storage::Page, StoreError> {
            self.inner.list(kind, prefix, from, size).await
        }
        async fn list_after(
            &self,
            kind: Kind,
            prefix: &str,
            after: Option<&str>,
            size: u64,
        ) -> Result<Vec<Doc>, StoreError> {
            self.inner.list_after(kind, prefix, after, size).await
        }
        async fn commit(&self, ops: Vec<Op>) -> Result<tollgate_storage::Committed, StoreError> {
            self.inner.commit(ops).await
        }
        async fn snapshot(&self, kinds: &[Kind]) -> Result<tollgate_storage::Snapshot, StoreError> {
            self.inner.snapshot(kinds).await
        }
        fn subscribe(&self, after: u64) -> tollgate_storage::Feed {
            self.inner.subscribe(after)
        }
        async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
            self.inner.changes_since(after, max).await
        }
        async fn current_seq(&self) -> Result<u64, StoreError> {
            self.inner.current_seq().await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        fn engine(&self) -> tollgate_storage::EngineInfo {
            self.inner.engine()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fill_that_raced_a_change_is_not_kept() {
        let slow = Arc::new(SlowReads {
            inner: Arc::new(MemoryStore::new()),
            read_done: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        });
        let shared: Arc<dyn Store> = Arc::clone(&slow) as Arc<dyn Store>;
        shared
            .commit(vec![put_user("u", "old")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cache = SecurityCache::start(Arc::clone(&shared), CacheLimits::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // A fill reads the old copy and is held before it keeps it...
        let filling = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { profiles_of(&cache, "u").await })
        };
        slow.read_done.notified().await;
        // ...while the user changes and this node applies the change.
        let committed = shared
            .commit(vec![put_user("u", "new")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        applied(&cache, committed.seq).await;
        slow.release.notify_one();
        let raced = filling.await.unwrap_or_else(|e| panic!("{e}"));
        // The racing request saw the copy of its read; the cache did not keep it.
        assert_eq!(raced, Some(vec!["old".to_owned()]));
        let next = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { profiles_of(&cache, "u").await })
        };
        // The next request reads the store again (a kept stale copy would be answered from memory).
        tokio::time::timeout(Duration::from_secs(5), slow.read_done.notified())
            .await
            .unwrap_or_else(|_| panic!("the stale copy was kept: no store read"));
        slow.release.notify_one();
        assert_eq!(
            next.await.unwrap_or_else(|e| panic!("{e}")),
            Some(vec!["new".to_owned()])
        );
    }

    #[tokio::test]
    async fn a_lagging_feed_catches_up_from_the_change_log_without_a_reload() {
        let store = Arc::new(MemoryStore::new());
        let shared: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
        let cache = SecurityCache::start(Arc::clone(&shared), CacheLimits::default())
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
        applied(&cache, last).await;
        assert_eq!(*cache.applied.borrow(), last);
        assert_eq!(
            profiles_of(&cache, "u99").await,
            Some(vec!["p4999".to_owned()])
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
        let cache = SecurityCache::start(Arc::clone(&store), CacheLimits::default())
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
        applied(&cache, committed.seq).await;
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
        assert_eq!(profiles_of(&cache, "u").await, Some(vec!["p".to_owned()]));
        assert_eq!(
            cache.token("t").await.ok().flatten().map(|t| t.kuid),
            Some("u".to_owned())
        );
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
        applied(&cache, committed.seq).await;
        assert!(matches!(cache.token("t").await, Ok(None)));
        assert!(!cache.snapshot().profiles.contains_key("p"));
    }
}
