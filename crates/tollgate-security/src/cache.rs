//! The per-node security cache: every role and profile, as one consistent snapshot behind an
//! `ArcSwap` (lock-free reads), loaded at start and kept current from the store's change feed — not
//! only from this node's writes, so changes made by other nodes apply too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tollgate_storage::{Doc, FeedEvent, Store, StoreError};

use crate::rights::{ProfileRights, RoleLookup, RoleRights};
use crate::{PROFILE, ROLE};

/// A cached role: the stored document and its parsed rights.
#[derive(Debug, Clone)]
pub struct CachedRole {
    pub doc: Doc,
    pub rights: RoleRights,
}

/// A cached profile: the stored document and its parsed policies.
#[derive(Debug, Clone)]
pub struct CachedProfile {
    pub doc: Doc,
    pub rights: ProfileRights,
}

/// Roles and profiles as of one store sequence number.
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
pub struct SecurityCache {
    current: ArcSwap<SecuritySnapshot>,
    applied: watch::Sender<u64>,
}

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
        let snapshot = load(store.as_ref()).await?;
        feed.skip_through(snapshot.seq);
        let (applied, _) = watch::channel(snapshot.seq);
        let cache = Arc::new(Self {
            current: ArcSwap::from_pointee(snapshot),
            applied,
        });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            while let Some(event) = feed.next().await {
                let Some(cache) = weak.upgrade() else { return };
                let mut next = (*cache.current.load_full()).clone();
                let mut resync = false;
                let mut event = Some(event);
                // Apply every change already waiting before publishing one new snapshot.
                while let Some(e) = event.take() {
                    match e {
                        FeedEvent::Change(change) => {
                            next.apply(&change.kind, &change.id, change.doc.as_ref());
                            next.seq = change.seq;
                        }
                        FeedEvent::Resync => resync = true,
                    }
                    event = feed.try_next();
                }
                if resync {
                    feed = store.subscribe(0);
                    match load(store.as_ref()).await {
                        Ok(snapshot) => {
                            feed.skip_through(snapshot.seq);
                            next = snapshot;
                        }
                        Err(error) => {
                            tracing::error!(%error, "security cache resync failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            feed = store.subscribe(0);
                            continue;
                        }
                    }
                }
                let seq = next.seq;
                cache.current.store(Arc::new(next));
                cache.applied.send_replace(seq);
            }
        });
        Ok(cache)
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

async fn load(store: &dyn Store) -> Result<SecuritySnapshot, StoreError> {
    let raw = store.snapshot(&[ROLE, PROFILE]).await?;
    let mut snapshot = SecuritySnapshot {
        seq: raw.seq,
        ..SecuritySnapshot::default()
    };
    for (kind, doc) in &raw.docs {
        snapshot.apply(kind, &doc.id, Some(doc));
    }
    Ok(snapshot)
}
