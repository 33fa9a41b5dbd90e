//! Tollgate's store: versioned JSON documents addressed by (kind, id).
//!
//! - Every document has a version: 1 when created, +1 on every write.
//! - Writes are atomic batches of [`Op`]s, each with an [`Expect`]ation (any, absent, present, exactly
//!   version v): compare-and-swap, and checks on documents that are not written (a profile write checks
//!   that its roles still exist in the same transaction).
//! - Every committed change gets a store-wide sequence number and is published on a change feed, so each
//!   node can keep caches current from the store rather than from its own writes: callers never assume
//!   they are the only writer.
//!
//! Backends: [`sqlite::SqliteStore`] (embedded, durable, the default), [`postgres::PostgresStore`]
//! (one database shared by several nodes) and [`memory::MemoryStore`] (tests and benchmarks of the
//! protocol path).

pub mod layer;
pub mod memory;
pub mod peers;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tollgate_protocol::KuzzleError;
use tollgate_protocol::errors::{
    SERVICES_STORAGE_NOT_CONNECTED, SERVICES_STORAGE_UNEXPECTED_ERROR,
};

/// The change log keeps at least this many entries (older ones are pruned).
pub const CHANGE_LOG_KEEP: u64 = 100_000;

/// The kind of a document (`role`, `profile`, `user`, …): a namespace for ids.
pub type Kind = &'static str;

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: String,
    pub version: u64,
    pub body: Value,
}

/// What the current state of a document must be for an operation to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever the state.
    Any,
    /// The document must not exist.
    Absent,
    /// The document must exist, at any version.
    Present,
    /// The document must exist at exactly this version.
    Version(u64),
}

impl Expect {
    /// Whether a document at `current` (None = absent) meets the expectation.
    pub fn holds(self, current: Option<u64>) -> bool {
        match (self, current) {
            (Expect::Any, _) => true,
            (Expect::Absent, None) => true,
            (Expect::Absent, Some(_)) => false,
            (Expect::Present, current) => current.is_some(),
            (Expect::Version(v), Some(c)) => v == c,
            (Expect::Version(_), None) => false,
        }
    }
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create or replace a document; its version becomes the previous one + 1 (or 1).
    Put {
        kind: Kind,
        id: String,
        body: Value,
        expect: Expect,
    },
    /// Delete a document (no change when it is absent and `expect` allows it).
    Delete {
        kind: Kind,
        id: String,
        expect: Expect,
    },
    /// Write nothing; only check the expectation.
    Check {
        kind: Kind,
        id: String,
        expect: Expect,
    },
    /// Fail unless no document of `kind` changed after sequence number `since`.
    KindUnchanged { kind: Kind, since: u64 },
}

/// The result of a committed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Sequence number of the last change of the batch (the store's sequence if it changed nothing).
    pub seq: u64,
    /// For each op: the new version of a written document, `None` for other ops.
    pub versions: Vec<Option<u64>>,
}

/// A store failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// Op number `index` of the batch did not meet its expectation; nothing was written.
    #[error("conflict on operation {index} of the batch")]
    Conflict { index: usize },
    /// The store cannot be reached or the write could not be made durable.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (e.g. invalid JSON).
    #[error("storage corrupted: {0}")]
    Corrupt(String),
    /// The batch committed (it is durable), but the node that made it did not see it come back on
    /// its change feed in time, so it cannot confirm that its own reads show it yet.
    #[error("change {seq} committed but not applied by this node in time")]
    NotApplied { seq: u64 },
}

impl StoreError {
    /// The error a client sees, in the API's terms. The detail (engine messages, file paths) may
    /// describe the server's internals: it is logged here, server-side, and never sent.
    pub fn to_wire(&self) -> KuzzleError {
        self.log();
        match self {
            StoreError::Unavailable(_) => KuzzleError::plain(&SERVICES_STORAGE_NOT_CONNECTED),
            StoreError::Corrupt(_) => KuzzleError::new(
                &SERVICES_STORAGE_UNEXPECTED_ERROR,
                vec![json!("stored data could not be read")],
            ),
            StoreError::NotApplied { .. } => KuzzleError::new(
                &SERVICES_STORAGE_UNEXPECTED_ERROR,
                vec![json!(
                    "the change was saved, but this node could not confirm it in time: \
                     read it back before retrying"
                )],
            ),
            // Callers turn conflicts into their own answers; one that reaches here is a bug.
            StoreError::Conflict { .. } => KuzzleError::new(
                &SERVICES_STORAGE_UNEXPECTED_ERROR,
                vec![json!("unexpected write conflict")],
            ),
        }
    }

    /// Logs the failure with its detail (server-side only).
    pub fn log(&self) {
        match self {
            StoreError::Unavailable(detail) => tracing::error!(%detail, "storage unavailable"),
            StoreError::Corrupt(detail) => tracing::error!(%detail, "stored data is unreadable"),
            StoreError::Conflict { index } => tracing::error!(index, "unhandled storage conflict"),
            StoreError::NotApplied { seq } => {
                tracing::error!(seq, "committed change not applied by this node in time");
            }
        }
    }

    /// A short description without the detail, for health reports.
    pub fn summary(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "storage unavailable",
            StoreError::Corrupt(_) => "stored data unreadable",
            StoreError::Conflict { .. } => "write conflict",
            StoreError::NotApplied { .. } => "change not applied in time",
        }
    }
}

/// One committed change, as published on the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub kind: String,
    pub id: String,
    /// The document after the change; `None` when it was deleted.
    pub doc: Option<Doc>,
}

/// A consistent view of every document of some kinds, as of sequence number `seq`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub seq: u64,
    pub docs: Vec<(String, Doc)>,
}

/// A page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub docs: Vec<Doc>,
    /// Every match, before `from`/`size`.
    pub total: u64,
}

/// What [`Store::changes_since`] found in the durable change log.
#[derive(Debug, Clone, PartialEq)]
pub enum Catchup {
    /// The changes after the requested sequence number, in order, at most the number asked for.
    /// `seq` is the sequence number a reader is current as of once it has applied them: the last
    /// change's, or the store's when there are none. A change may carry a later state of its
    /// document than the one it wrote (the log keeps which document changed, the store its latest
    /// state): applying them in order still leaves the reader equal to the store as of `seq` or
    /// later.
    Changes { seq: u64, changes: Vec<Change> },
    /// The log no longer holds every change after that number (it was pruned): reload from a
    /// snapshot.
    TooFarBehind,
}

/// What `server:info` reports about the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// `sqlite`, `memory` or `postgresql`.
    pub kind: &'static str,
    pub version: String,
}

/// What a feed subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    Change(Arc<Change>),
    /// Continuity was lost (the subscriber fell behind, or changes were missed): reload from a
    /// snapshot and subscribe again.
    Resync,
}

/// A subscription to the change feed, continuous from a sequence number.
#[derive(Debug)]
pub struct Feed {
    rx: broadcast::Receiver<Arc<Change>>,
    last: u64,
}

impl Feed {
    /// Follows `rx`, delivering changes after `after`.
    pub fn new(rx: broadcast::Receiver<Arc<Change>>, after: u64) -> Self {
        Self { rx, last: after }
    }

    /// Skips every change up to `seq` (the sequence of a snapshot taken after subscribing).
    pub fn skip_through(&mut self, seq: u64) {
        self.last = self.last.max(seq);
    }

    /// The next change if one is already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<FeedEvent> {
        loop {
            let received = match self.rx.try_recv() {
                Ok(change) => Ok(change),
                Err(broadcast::error::TryRecvError::Lagged(_)) => Err(()),
                Err(_) => return None,
            };
            if let Some(event) = self.accept(received) {
                return Some(event);
            }
        }
    }

    /// The next change after the last one delivered; [`FeedEvent::Resync`] on a gap; `None` when the
    /// store is gone.
    pub async fn next(&mut self) -> Option<FeedEvent> {
        loop {
            let received = match self.rx.recv().await {
                Ok(change) => Ok(change),
                Err(broadcast::error::RecvError::Lagged(_)) => Err(()),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if let Some(event) = self.accept(received) {
                return Some(event);
            }
        }
    }

    /// Continuity check of one received change (`Err` = the receiver lagged); `None` skips it.
    fn accept(&mut self, received: Result<Arc<Change>, ()>) -> Option<FeedEvent> {
        match received {
            Ok(change) if change.seq <= self.last => None,
            Ok(change) if change.seq == self.last + 1 => {
                self.last = change.seq;
                Some(FeedEvent::Change(change))
            }
            Ok(change) => {
                self.last = change.seq;
                Some(FeedEvent::Resync)
            }
            Err(()) => Some(FeedEvent::Resync),
        }
    }
}

/// Checks every expectation of a batch against the state before the batch (shared by the backends):
/// `version` gives a document's current version, `last_change` the sequence number of the last change of
/// a kind. The first op that does not hold is the conflict.
pub(crate) fn check_batch(
    ops: &[Op],
    mut version: impl FnMut(&str, &str) -> Result<Option<u64>, StoreError>,
    last_change: impl Fn(&str) -> u64,
) -> Result<(), StoreError> {
    for (index, op) in ops.iter().enumerate() {
        let ok = match op {
            Op::Put {
                kind, id, expect, ..
            }
            | Op::Delete { kind, id, expect }
            | Op::Check { kind, id, expect } => expect.holds(version(kind, id)?),
            Op::KindUnchanged { kind, since } => last_change(kind) <= *since,
        };
        if !ok {
            return Err(StoreError::Conflict { index });
        }
    }
    Ok(())
}

/// The store. Backends are used as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError>;
    /// One entry per id, in order.
    async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError>;
    /// Documents of `kind` whose id starts with `prefix`, sorted by id (byte order), sliced by
    /// `from`/`size` (`size` None = all).
    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        from: u64,
        size: Option<u64>,
    ) -> Result<Page, StoreError>;
    /// The next documents of `kind` whose id starts with `prefix`, in id order (byte order), after
    /// the id `after` (from the first one when `None`), at most `size`. Walks the listing by key:
    /// no count of the kind and no step over the ids already seen, so reading every document page
    /// by page costs the same per page however many there are.
    async fn list_after(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        size: u64,
    ) -> Result<Vec<Doc>, StoreError>;
    /// Applies the batch atomically: all ops, or none.
    async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError>;
    /// Every document of `kinds` and the sequence number they are current as of.
    async fn snapshot(&self, kinds: &[Kind]) -> Result<Snapshot, StoreError>;
    /// Subscribes to changes committed after `after`. Subscribe *before* taking the snapshot whose
    /// `seq` is passed here, so nothing falls between the two.
    fn subscribe(&self, after: u64) -> Feed;
    /// Up to `max` changes committed after sequence number `after`, from the durable change log
    /// (kept for at least the last 100,000 changes), so a reader that missed some (a lagging feed, a
    /// lost connection) catches up without a full reload.
    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError>;
    /// The sequence number of the last committed change (0 for an empty store).
    async fn current_seq(&self) -> Result<u64, StoreError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    fn engine(&self) -> EngineInfo;
    /// Tells the other nodes sharing the store that this node has applied every change up to `seq`
    /// (its cache follows them). Backends with one node only have nobody to tell.
    fn applied(&self, _seq: u64) {}
    /// Waits, at most `timeout`, until every other live node sharing the store has applied `seq`;
    /// returns the nodes that still had not (empty: all had, or there is no other node).
    async fn peers_applied(&self, _seq: u64, _timeout: std::time::Duration) -> Vec<String> {
        Vec::new()
    }
    /// The other live nodes sharing the store, as last heard from.
    fn peers(&self) -> Vec<peers::PeerState> {
        Vec::new()
    }
    /// Group commits made by the backend's writer so far, and the batches they carried (`None`
    /// for a backend that does not group).
    fn group_stats(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Counts a writer's group commits and the batches they carried.
#[derive(Debug, Default)]
pub struct GroupStats {
    groups: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
}

impl GroupStats {
    /// One group of `batches` batches was committed (or failed as a whole).
    pub fn record(&self, batches: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.groups.fetch_add(1, Relaxed);
        self.batches.fetch_add(batches as u64, Relaxed);
    }

    /// (groups, batches) so far.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.groups.load(Relaxed), self.batches.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_errors_carry_no_engine_detail() {
        let detail = "disk I/O error at /var/lib/tollgate/tollgate.db-wal";
        for e in [
            StoreError::Unavailable(detail.into()),
            StoreError::Corrupt(detail.into()),
        ] {
            let wire = serde_json::to_string(&e.to_wire()).unwrap_or_default();
            assert!(!wire.contains("disk") && !wire.contains("/var"), "{wire}");
        }
        let wire = serde_json::to_value(StoreError::Unavailable(detail.into()).to_wire())
            .unwrap_or_default();
        assert_eq!(wire["id"], "services.storage.not_connected");
        assert_eq!(wire["message"], "Storage service is not connected.");
    }

    #[test]
    fn expectations() {
        assert!(Expect::Any.holds(None) && Expect::Any.holds(Some(3)));
        assert!(Expect::Absent.holds(None) && !Expect::Absent.holds(Some(1)));
        assert!(Expect::Present.holds(Some(1)) && !Expect::Present.holds(None));
        assert!(Expect::Version(2).holds(Some(2)));
        assert!(!Expect::Version(2).holds(Some(3)) && !Expect::Version(2).holds(None));
    }
}

/// Behaviour every backend must have; run by each backend's tests.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use serde_json::json;

    fn put(kind: Kind, id: &str, body: Value, expect: Expect) -> Op {
        Op::Put {
            kind,
            id: id.to_owned(),
            body,
            expect,
        }
    }

    pub async fn versions_and_cas(store: &dyn Store) {
        let c = store
            .commit(vec![put("profile", "p", json!({"a":1}), Expect::Absent)])
            .await;
        assert_eq!(c.map(|c| c.versions), Ok(vec![Some(1)]));
        let again = store
            .commit(vec![put("profile", "p", json!({}), Expect::Absent)])
            .await;
        assert_eq!(again, Err(StoreError::Conflict { index: 0 }));
        let c = store
            .commit(vec![put(
                "profile",
                "p",
                json!({"b":2,"a":1}),
                Expect::Version(1),
            )])
            .await;
        assert_eq!(c.map(|c| c.versions), Ok(vec![Some(2)]));
        let stale = store
            .commit(vec![put("profile", "p", json!({}), Expect::Version(1))])
            .await;
        assert_eq!(stale, Err(StoreError::Conflict { index: 0 }));
        let doc = store.get("profile", "p").await.ok().flatten();
        // Key order is preserved.
        assert_eq!(
            doc.map(|d| (d.version, d.body.to_string())),
            Some((2, r#"{"b":2,"a":1}"#.to_owned()))
        );
        assert_eq!(store.get("role", "p").await, Ok(None));
    }

    pub async fn batches_are_atomic(store: &dyn Store) {
        let ok = store
            .commit(vec![
                put("role", "r1", json!({}), Expect::Absent),
                put("role", "r2", json!({}), Expect::Absent),
            ])
            .await;
        assert!(ok.is_ok());
        let failed = store
            .commit(vec![
                put("role", "r3", json!({}), Expect::Absent),
                Op::Check {
                    kind: "role",
                    id: "ghost".into(),
                    expect: Expect::Present,
                },
            ])
            .await;
        assert_eq!(failed, Err(StoreError::Conflict { index: 1 }));
        assert_eq!(store.get("role", "r3").await, Ok(None));
        let del = store
            .commit(vec![Op::Delete {
                kind: "role",
                id: "r1".into(),
                expect: Expect::Present,
            }])
            .await;
        assert!(del.is_ok());
        let got = store
            .mget("role", &["r1".into(), "r2".into()])
            .await
            .unwrap_or_default();
        assert_eq!(
            got.iter().map(Option::is_some).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    pub async fn kind_guard(store: &dyn Store) {
        let base = store.snapshot(&["user"]).await.map(|s| s.seq).unwrap_or(0);
        let guard = Op::KindUnchanged {
            kind: "user",
            since: base,
        };
        assert!(store.commit(vec![guard.clone()]).await.is_ok());
        assert!(
            store
                .commit(vec![put("user", "u", json!({}), Expect::Any)])
                .await
                .is_ok()
        );
        assert_eq!(
            store.commit(vec![guard]).await,
            Err(StoreError::Conflict { index: 0 })
        );
    }

    pub async fn catchup_from_the_log(store: &dyn Store) {
        let base = store.current_seq().await.unwrap_or(u64::MAX);
        for (id, expect) in [
            ("a", Expect::Absent),
            ("b", Expect::Absent),
            ("a", Expect::Version(1)),
        ] {
            assert!(
                store
                    .commit(vec![put("role", id, json!({"id": id}), expect)])
                    .await
                    .is_ok()
            );
        }
        assert!(
            store
                .commit(vec![Op::Delete {
                    kind: "role",
                    id: "b".into(),
                    expect: Expect::Present,
                }])
                .await
                .is_ok()
        );
        assert_eq!(store.current_seq().await, Ok(base + 4));
        let Ok(Catchup::Changes { seq, changes }) = store.changes_since(base, 100).await else {
            panic!("no changes");
        };
        assert_eq!(seq, base + 4);
        let seen: Vec<(u64, &str)> = changes.iter().map(|c| (c.seq, c.id.as_str())).collect();
        assert_eq!(
            seen,
            vec![
                (base + 1, "a"),
                (base + 2, "b"),
                (base + 3, "a"),
                (base + 4, "b")
            ]
        );
        // Applied in order, they leave a reader equal to the store: a at version 2, b deleted.
        let mut state = std::collections::BTreeMap::new();
        for c in &changes {
            state.insert(c.id.clone(), c.doc.as_ref().map(|d| d.version));
        }
        assert_eq!(state.get("a"), Some(&Some(2)));
        assert_eq!(state.get("b"), Some(&None));
        // Bounded, and continuous from where a reader stands.
        let Ok(Catchup::Changes { seq, changes }) = store.changes_since(base + 1, 2).await else {
            panic!("no changes");
        };
        assert_eq!((seq, changes.len()), (base + 3, 2));
        assert_eq!(
            store.changes_since(base + 4, 100).await,
            Ok(Catchup::Changes {
                seq: base + 4,
                changes: Vec::new()
            })
        );
    }

    /// Listing is in byte order of the ids (UTF-8 bytes, so upper case before lower case, and
    /// non-ASCII last), across pages.
    pub async fn listing_is_in_byte_order(store: &dyn Store) {
        for id in ["é", "a", "Z", "aa", "b", "_"] {
            assert!(
                store
                    .commit(vec![put("index", id, json!({}), Expect::Any)])
                    .await
                    .is_ok()
            );
        }
        let mut ids = Vec::new();
        for from in [0, 2, 4] {
            let page = store
                .list("index", "", from, Some(2))
                .await
                .unwrap_or_default();
            assert_eq!(page.total, 6);
            ids.extend(page.docs.into_iter().map(|d| d.id));
        }
        assert_eq!(ids, vec!["Z", "_", "a", "aa", "b", "é"]);
    }

    /// Keyset pages walk the ids after the last one seen, in byte order, within the prefix only
    /// (ids of another kind, or past the prefix, never appear), and see what was added behind
    /// them.
    pub async fn listing_after_an_id(store: &dyn Store) {
        for id in ["u:b", "u:é", "u:a", "u", "v:a", "u:Z", "t:z"] {
            assert!(
                store
                    .commit(vec![put("index", id, json!({}), Expect::Any)])
                    .await
                    .is_ok()
            );
        }
        assert!(
            store
                .commit(vec![put("collection", "u:0", json!({}), Expect::Any)])
                .await
                .is_ok()
        );
        let page = |after: Option<&'static str>, size| async move {
            store
                .list_after("index", "u:", after, size)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(page(None, 2).await, vec!["u:Z", "u:a"]);
        assert_eq!(page(Some("u:a"), 2).await, vec!["u:b", "u:é"]);
        assert_eq!(page(Some("u:é"), 2).await, Vec::<String>::new());
        assert_eq!(page(None, 100).await, vec!["u:Z", "u:a", "u:b", "u:é"]);
        // A document deleted or added behind the walk does not shift it.
        assert!(
            store
                .commit(vec![
                    Op::Delete {
                        kind: "index",
                        id: "u:Z".into(),
                        expect: Expect::Any,
                    },
                    put("index", "u:B", json!({}), Expect::Any),
                ])
                .await
                .is_ok()
        );
        assert_eq!(page(Some("u:a"), 10).await, vec!["u:b", "u:é"]);
        let all = store
            .list_after("index", "", None, 100)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>();
        assert_eq!(all, vec!["t:z", "u", "u:B", "u:a", "u:b", "u:é", "v:a"]);
    }

    pub async fn listing_and_feed(store: &dyn Store) {
        let snap = store.snapshot(&["index"]).await.unwrap_or_default();
        let mut feed = store.subscribe(snap.seq);
        for id in ["b", "a", "c", "ab"] {
            assert!(
                store
                    .commit(vec![put("index", id, json!({"n": id}), Expect::Any)])
                    .await
                    .is_ok()
            );
        }
        let page = store
            .list("index", "", 1, Some(2))
            .await
            .unwrap_or_default();
        assert_eq!(page.total, 4);
        assert_eq!(
            page.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["ab", "b"]
        );
        let page = store.list("index", "a", 0, None).await.unwrap_or_default();
        assert_eq!(
            page.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["a", "ab"]
        );
        let mut ids = Vec::new();
        let mut last = snap.seq;
        for _ in 0..4 {
            match feed.next().await {
                Some(FeedEvent::Change(c)) => {
                    assert_eq!(c.seq, last + 1);
                    last = c.seq;
                    ids.push(c.id.clone());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ids, vec!["b", "a", "c", "ab"]);
        let snap = store.snapshot(&["index"]).await.unwrap_or_default();
        assert_eq!(snap.seq, last);
        assert_eq!(snap.docs.len(), 4);
    }
}
