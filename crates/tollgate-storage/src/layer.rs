//! Store layers: something done around every commit (an audit record added to the batch, the
//! commit timed) without re-implementing the store. [`Layered`] is a [`Store`] that passes every
//! call to the store below, commits through its [`CommitLayer`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::peers::PeerState;
use crate::{
    Catchup, Committed, Doc, EngineInfo, Feed, Kind, Op, Page, Snapshot, Store, StoreError,
};

/// What a layer does with a batch on its way to the store below.
#[async_trait]
pub trait CommitLayer: Send + Sync + 'static {
    async fn commit(&self, below: &dyn Store, ops: Vec<Op>) -> Result<Committed, StoreError>;
}

/// A store with a layer on its commits; everything else goes straight to the store below.
pub struct Layered {
    below: Arc<dyn Store>,
    layer: Arc<dyn CommitLayer>,
}

impl Layered {
    pub fn new(below: Arc<dyn Store>, layer: Arc<dyn CommitLayer>) -> Self {
        Self { below, layer }
    }
}

#[async_trait]
impl Store for Layered {
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError> {
        self.below.get(kind, id).await
    }
    async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError> {
        self.below.mget(kind, ids).await
    }
    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        from: u64,
        size: Option<u64>,
    ) -> Result<Page, StoreError> {
        self.below.list(kind, prefix, from, size).await
    }
    async fn list_after(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        size: u64,
    ) -> Result<Vec<Doc>, StoreError> {
        self.below.list_after(kind, prefix, after, size).await
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        self.layer.commit(self.below.as_ref(), ops).await
    }
    async fn snapshot(&self, kinds: &[Kind]) -> Result<Snapshot, StoreError> {
        self.below.snapshot(kinds).await
    }
    fn subscribe(&self, after: u64) -> Feed {
        self.below.subscribe(after)
    }
    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
        self.below.changes_since(after, max).await
    }
    async fn current_seq(&self) -> Result<u64, StoreError> {
        self.below.current_seq().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.below.ping().await
    }
    fn engine(&self) -> EngineInfo {
        self.below.engine()
    }
    fn applied(&self, seq: u64) {
        self.below.applied(seq);
    }
    async fn peers_applied(&self, seq: u64, timeout: Duration) -> Vec<String> {
        self.below.peers_applied(seq, timeout).await
    }
    fn peers(&self) -> Vec<PeerState> {
        self.below.peers()
    }
    fn group_stats(&self) -> Option<(u64, u64)> {
        self.below.group_stats()
    }
}
