//! An in-memory backend: the same semantics as SQLite, without durability. For tests and for
//! benchmarking the protocol path apart from the disk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{
    CHANGE_LOG_KEEP, Catchup, Change, Committed, Doc, EngineInfo, Feed, Kind, Op, Page, Snapshot,
    Store, StoreError,
};

#[derive(Default)]
struct State {
    docs: BTreeMap<(String, String), (u64, serde_json::Value)>,
    kind_seq: HashMap<String, u64>,
    seq: u64,
    /// The last changes, oldest first (at most `CHANGE_LOG_KEEP`).
    log: VecDeque<Arc<Change>>,
}

/// The in-memory store.
pub struct MemoryStore {
    state: Mutex<State>,
    feed: broadcast::Sender<Arc<Change>>,
    reads: Reads,
}

/// How many reads a [`MemoryStore`] served, by kind of read (for tests of what reaches the store).
#[derive(Debug, Default)]
pub struct Reads {
    pub get: AtomicU64,
    pub snapshot: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            feed: broadcast::channel(crate::sqlite::FEED_CAPACITY).0,
            reads: Reads::default(),
        }
    }

    /// The reads served so far.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are checked
        // before anything is written), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

/// A stored entry as a [`Doc`] (a copy of its body).
fn doc(id: &str, (version, body): &(u64, serde_json::Value)) -> Doc {
    Doc {
        id: id.to_owned(),
        version: *version,
        body: body.clone(),
    }
}

/// A map entry of the listing range as a [`Doc`].
fn to_doc(((_, id), entry): (&(String, String), &(u64, serde_json::Value))) -> Doc {
    doc(id, entry)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError> {
        self.reads.get.fetch_add(1, Ordering::Relaxed);
        let state = self.lock();
        Ok(state.docs.get(&key(kind, id)).map(|entry| doc(id, entry)))
    }

    async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError> {
        let state = self.lock();
        Ok(ids
            .iter()
            .map(|id| state.docs.get(&key(kind, id)).map(|entry| doc(id, entry)))
            .collect())
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        from: u64,
        size: Option<u64>,
    ) -> Result<Page, StoreError> {
        let state = self.lock();
        let matches = || {
            state
                .docs
                .range(key(kind, prefix)..)
                .take_while(|((k, id), _)| k == kind && id.starts_with(prefix))
        };
        let total = matches().count() as u64;
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        let size = size.map_or(usize::MAX, |s| usize::try_from(s).unwrap_or(usize::MAX));
        Ok(Page {
            docs: matches().skip(from).take(size).map(to_doc).collect(),
            total,
        })
    }

    async fn list_after(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        size: u64,
    ) -> Result<Vec<Doc>, StoreError> {
        let state = self.lock();
        let start = match after {
            Some(after) => Bound::Excluded(key(kind, after)),
            None => Bound::Included(key(kind, prefix)),
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        Ok(state
            .docs
            .range((start, Bound::Unbounded))
            .take_while(|((k, id), _)| k == kind && id.starts_with(prefix))
            .take(size)
            .map(to_doc)
            .collect())
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        let mut state = self.lock();
        // Check every expectation first: nothing is written unless all hold.
        crate::check_batch(
            &ops,
            |kind, id| Ok(state.docs.get(&key(kind, id)).map(|(v, _)| *v)),
            |kind| state.kind_seq.get(kind).copied().unwrap_or(0),
        )?;
        // Ops of one batch may touch the same document: apply in order.
        let mut versions = Vec::with_capacity(ops.len());
        let mut changes = Vec::new();
        for op in ops {
            match op {
                Op::Put { kind, id, body, .. } => {
                    let k = key(kind, &id);
                    let version = state.docs.get(&k).map_or(1, |(v, _)| v + 1);
                    state.docs.insert(k, (version, body.clone()));
                    state.seq += 1;
                    let seq = state.seq;
                    state.kind_seq.insert(kind.to_owned(), seq);
                    versions.push(Some(version));
                    changes.push(Change {
                        seq,
                        kind: kind.to_owned(),
                        id: id.clone(),
                        doc: Some(Doc { id, version, body }),
                    });
                }
                Op::Delete { kind, id, .. } => {
                    versions.push(None);
                    if state.docs.remove(&key(kind, &id)).is_some() {
                        state.seq += 1;
                        let seq = state.seq;
                        state.kind_seq.insert(kind.to_owned(), seq);
                        changes.push(Change {
                            seq,
                            kind: kind.to_owned(),
                            id,
                            doc: None,
                        });
                    }
                }
                Op::Check { .. } | Op::KindUnchanged { .. } => versions.push(None),
            }
        }
        let seq = state.seq;
        // Publish while holding the lock so subscribers see changes in sequence order.
        for change in changes {
            let change = Arc::new(change);
            if state.log.len() as u64 >= CHANGE_LOG_KEEP {
                state.log.pop_front();
            }
            state.log.push_back(Arc::clone(&change));
            let _ = self.feed.send(change);
        }
        Ok(Committed { seq, versions })
    }

    async fn snapshot(&self, kinds: &[Kind]) -> Result<Snapshot, StoreError> {
        self.reads.snapshot.fetch_add(1, Ordering::Relaxed);
        let state = self.lock();
        let docs = state
            .docs
            .iter()
            .filter(|((k, _), _)| kinds.contains(&k.as_str()))
            .map(|((k, id), entry)| (k.clone(), doc(id, entry)))
            .collect();
        Ok(Snapshot {
            seq: state.seq,
            docs,
        })
    }

    fn subscribe(&self, after: u64) -> Feed {
        Feed::new(self.feed.subscribe(), after)
    }

    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
        let state = self.lock();
        let oldest = state.log.front().map_or(state.seq + 1, |c| c.seq);
        if after + 1 < oldest && after < state.seq {
            return Ok(Catchup::TooFarBehind);
        }
        let changes: Vec<Change> = state
            .log
            .iter()
            .filter(|c| c.seq > after)
            .take(max)
            .map(|c| (**c).clone())
            .collect();
        let seq = match changes.last() {
            Some(c) if changes.len() == max => c.seq,
            _ => state.seq,
        };
        Ok(Catchup::Changes { seq, changes })
    }

    async fn current_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().seq)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn engine(&self) -> EngineInfo {
        EngineInfo {
            kind: "memory",
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;

    #[tokio::test]
    async fn memory_versions_and_cas() {
        contract::versions_and_cas(&MemoryStore::new()).await;
    }
    #[tokio::test]
    async fn memory_batches_are_atomic() {
        contract::batches_are_atomic(&MemoryStore::new()).await;
    }
    #[tokio::test]
    async fn memory_kind_guard() {
        contract::kind_guard(&MemoryStore::new()).await;
    }
    #[tokio::test]
    async fn memory_catchup_from_the_log() {
        contract::catchup_from_the_log(&MemoryStore::new()).await;
    }
    #[tokio::test]
    async fn memory_listing_and_feed() {
        contract::listing_and_feed(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn memory_listing_is_in_byte_order() {
        contract::listing_is_in_byte_order(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn memory_listing_after_an_id() {
        contract::listing_after_an_id(&MemoryStore::new()).await;
    }
}
