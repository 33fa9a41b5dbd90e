//! The embedded SQLite backend (WAL, `synchronous=FULL`).
//!
//! One writer thread owns the write connection. Batches submitted while it is busy are **grouped**: the
//! next transaction applies every waiting batch, each inside its own savepoint (so one batch's conflict
//! does not affect the others), and commits them with a single fsync. Reads use a small pool of
//! separate connections (WAL lets them run beside the writer): point reads (a document by id, a few
//! ids) on the calling thread when a connection is free, everything else on tokio's blocking threads.
//!
//! Expectations of a batch are evaluated against the state before the batch; then its ops are applied.
//! Schema migrations are versioned with `PRAGMA user_version`.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::{
    CHANGE_LOG_KEEP, Catchup, Change, Committed, Doc, EngineInfo, Feed, Kind, Op, Page, Snapshot,
    Store, StoreError,
};

/// Changes a slow feed subscriber may fall behind before it is told to resync.
pub const FEED_CAPACITY: usize = 4096;
/// Batches grouped into one transaction at most.
const MAX_GROUP: usize = 256;
/// Read connections.
const READERS: usize = 4;
/// An `mget` of at most this many ids is a point read (see [`SqliteStore::point_read`]).
const POINT_READ_IDS: usize = 16;
/// The statement of a point read.
const GET_DOC: &str = "SELECT id, version, body FROM docs WHERE kind = ?1 AND id = ?2";

/// Ordered schema migrations; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: documents, the change log, the last change of each kind.
    "CREATE TABLE docs (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, id)
     ) WITHOUT ROWID;
     CREATE TABLE changes (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL
     );",
];

/// How durable commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk when it returns (the default).
    Full,
    /// `synchronous=OFF`: no fsync (benchmarks of the protocol path only).
    Off,
}

struct Job {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// Failures the tests inject into the writer (nothing sets them outside tests).
#[derive(Debug, Default)]
struct Faults {
    /// The next this many group commits fail at `COMMIT`, with the transaction still open.
    commit_failures: AtomicU32,
}

impl Faults {
    fn take_commit_failure(&self) -> bool {
        self.commit_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The SQLite store. Dropping it stops the writer thread (after the batches already submitted),
/// closes every connection and releases the data directory's lock.
pub struct SqliteStore {
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Job>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    feed: broadcast::Sender<Arc<Change>>,
    version: String,
    #[cfg_attr(not(test), allow(dead_code))]
    faults: Arc<Faults>,
    groups: Arc<crate::GroupStats>,
    /// `tollgate.lock`, locked exclusively for the store's lifetime: one process per data directory.
    _lock: File,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop once it has answered every submitted batch.
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the storage writer thread panicked");
        }
    }
}

/// The name of the lock file in the data directory.
pub const LOCK_FILE: &str = "tollgate.lock";

/// Locks the data directory for this process, or says who holds it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open the lock file {}: {e}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "the data directory {} is in use by another Tollgate process (it holds {}); \
             stop it or choose another data directory",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("version", &self.version)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(unavailable)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Off => "OFF",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(unavailable)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the data directory was written by a newer version (schema {applied}, this binary knows {})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(unavailable)?;
        tx.execute_batch(sql).map_err(unavailable)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        tracing::info!(schema = i + 1, "storage migration applied");
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (or creates) the store file `tollgate.db` in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let lock = lock_dir(dir)?;
        let path = dir.join("tollgate.db");
        let mut conn = open(&path, durability)?;
        migrate(&mut conn)?;
        let version = rusqlite::version().to_owned();
        let readers = (0..READERS)
            .map(|_| open(&path, durability).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let (writer, jobs) = mpsc::channel();
        let publish = feed.clone();
        let faults = Arc::new(Faults::default());
        let writer_faults = Arc::clone(&faults);
        let groups = Arc::new(crate::GroupStats::default());
        let writer_groups = Arc::clone(&groups);
        let writer_thread = std::thread::Builder::new()
            .name("tollgate-sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs, publish, &writer_faults, &writer_groups))
            .map_err(unavailable)?;
        Ok(Self {
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            feed,
            version,
            faults,
            groups,
            _lock: lock,
        })
    }

    /// Makes the next `n` group commits fail at `COMMIT` with their transaction still open (tests).
    #[cfg(test)]
    fn fail_next_commits(&self, n: u32) {
        self.faults.commit_failures.store(n, Ordering::Relaxed);
    }

    /// A pooled read connection nobody is using, if any (never waits for one).
    fn free_reader(&self) -> Option<MutexGuard<'_, Connection>> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        (0..self.readers.len()).find_map(|k| {
            match self.readers[(start + k) % self.readers.len()].try_lock() {
                Ok(conn) => Some(conn),
                // Readers never write: a panic while one was held left nothing half-done.
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        })
    }

    /// A read by primary key, run on the calling thread when a pooled connection is free: a few
    /// microseconds from SQLite's page cache, against a hand-off to a blocking thread and back
    /// (the read before every update's compare-and-set, the audit trail's read of what a write
    /// replaces). With every connection busy it waits on a blocking thread like any other read.
    async fn point_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = match self.free_reader() {
            Some(conn) => return f(&conn),
            None => f,
        };
        self.read(f).await
    }

    /// Runs a read on one of the pooled connections, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            // A panic while holding a connection leaves no half-done write (readers never write).
            let conn = readers[i].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

fn parse_body(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn current_version(tx: &Connection, kind: &str, id: &str) -> Result<Option<u64>, StoreError> {
    tx.prepare_cached("SELECT version FROM docs WHERE kind = ?1 AND id = ?2")
        .map_err(unavailable)?
        .query_row(params![kind, id], |r| r.get::<_, i64>(0))
        .optional()
        .map_err(unavailable)
        .map(|v| v.map(|v| u64::try_from(v).unwrap_or(0)))
}

fn last_seq(conn: &Connection) -> Result<u64, StoreError> {
    // Sequence numbers are the change log's rowids. Pruning never removes the newest entry, so the
    // maximum only grows and rowids are never reused.
    let seq: Option<i64> = conn
        .query_row("SELECT MAX(seq) FROM changes", [], |r| r.get(0))
        .map_err(unavailable)?;
    Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

/// Applies one batch inside the current transaction. Returns the result and the changes to publish.
/// The sequence number of the last change of each kind. Kept by the writer thread (the only writer of
/// the file) instead of in a table, which saves a page write per commit; rebuilt from the change log at
/// open. A kind whose last change was pruned counts as unchanged since then, which holds for any guard
/// taken from a recent snapshot.
type KindSeq = std::collections::HashMap<String, u64>;

fn load_kind_seq(conn: &Connection) -> Result<KindSeq, StoreError> {
    let mut stmt = conn
        .prepare("SELECT kind, MAX(seq) FROM changes GROUP BY kind")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(unavailable)?;
    rows.map(|r| {
        r.map(|(k, s)| (k, u64::try_from(s).unwrap_or(0)))
            .map_err(unavailable)
    })
    .collect()
}

fn apply(
    tx: &Connection,
    ops: &[Op],
    kind_seq: &KindSeq,
) -> Result<(Committed, Vec<Change>), StoreError> {
    crate::check_batch(
        ops,
        |kind, id| current_version(tx, kind, id),
        |kind| kind_seq.get(kind).copied().unwrap_or(0),
    )?;
    let mut versions = Vec::with_capacity(ops.len());
    let mut changes = Vec::new();
    for op in ops {
        match op {
            Op::Put { kind, id, body, .. } => {
                let version = current_version(tx, kind, id)?.map_or(1, |v| v + 1);
                let text = body.to_string();
                tx.prepare_cached(
                    "INSERT INTO docs (kind, id, version, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, body = excluded.body",
                )
                .and_then(|mut stmt| stmt.execute(params![kind, id, version as i64, text]))
                .map_err(unavailable)?;
                let seq = log_change(tx, kind, id, version, false)?;
                versions.push(Some(version));
                changes.push(Change {
                    seq,
                    kind: (*kind).to_owned(),
                    id: id.clone(),
                    doc: Some(Doc {
                        id: id.clone(),
                        version,
                        body: body.clone(),
                    }),
                });
            }
            Op::Delete { kind, id, .. } => {
                versions.push(None);
                if let Some(version) = current_version(tx, kind, id)? {
                    tx.prepare_cached("DELETE FROM docs WHERE kind = ?1 AND id = ?2")
                        .and_then(|mut stmt| stmt.execute(params![kind, id]))
                        .map_err(unavailable)?;
                    let seq = log_change(tx, kind, id, version, true)?;
                    changes.push(Change {
                        seq,
                        kind: (*kind).to_owned(),
                        id: id.clone(),
                        doc: None,
                    });
                }
            }
            Op::Check { .. } | Op::KindUnchanged { .. } => versions.push(None),
        }
    }
    let seq = match changes.last() {
        Some(c) => c.seq,
        None => last_seq(tx)?,
    };
    Ok((Committed { seq, versions }, changes))
}

fn log_change(
    tx: &Connection,
    kind: &str,
    id: &str,
    version: u64,
    deleted: bool,
) -> Result<u64, StoreError> {
    tx.prepare_cached("INSERT INTO changes (kind, id, version, deleted) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut stmt| stmt.execute(params![kind, id, version as i64, deleted]))
        .map_err(unavailable)?;
    Ok(u64::try_from(tx.last_insert_rowid()).unwrap_or(0))
}

fn write_loop(
    mut conn: Connection,
    jobs: mpsc::Receiver<Job>,
    feed: broadcast::Sender<Arc<Change>>,
    faults: &Faults,
    groups: &crate::GroupStats,
) {
    let mut commits: u64 = 0;
    let mut kind_seq = match load_kind_seq(&conn) {
        Ok(k) => k,
        Err(error) => {
            tracing::error!(%error, "cannot read the change log; the store refuses writes");
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_group(&mut conn, &group, &mut kind_seq, faults);
        groups.record(group.len());
        match outcome {
            Ok(results) => {
                for (job, (result, changes)) in group.into_iter().zip(results) {
                    for change in changes {
                        let _ = feed.send(Arc::new(change));
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "storage commit failed; the group was rolled back");
                if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                    tracing::error!("cannot roll back the failed group");
                }
                for job in group {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
        commits += 1;
        if commits.is_multiple_of(1000) {
            prune(&conn);
        }
    }
}

type JobResult = (Result<Committed, StoreError>, Vec<Change>);

fn commit_group(
    conn: &mut Connection,
    group: &[Job],
    kind_seq: &mut KindSeq,
    faults: &Faults,
) -> Result<Vec<JobResult>, StoreError> {
    // Batches of the group see each other's changes; the map is only updated once the group commits.
    let mut pending = kind_seq.clone();
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let sp = tx.savepoint().map_err(unavailable)?;
        match apply(&sp, &job.ops, &pending) {
            Ok((committed, changes)) => {
                sp.commit().map_err(unavailable)?;
                for change in &changes {
                    pending.insert(change.kind.clone(), change.seq);
                }
                results.push((Ok(committed), changes));
            }
            Err(e @ StoreError::Conflict { .. }) => {
                drop(sp); // rolls back this batch only
                results.push((Err(e), Vec::new()));
            }
            Err(e) => return Err(e),
        }
    }
    if faults.take_commit_failure() {
        // As a `COMMIT` that fails with the transaction still open (busy, I/O error, full disk):
        // dropping `tx` rolls it back.
        return Err(StoreError::Unavailable("injected commit failure".into()));
    }
    // A failed `COMMIT` must not be retried: `tx` keeps its default drop behaviour, so whatever
    // remains of the transaction is rolled back and every batch of the group is answered with the
    // error. Nothing is published, so the caches stay equal to the store.
    tx.commit().map_err(unavailable)?;
    *kind_seq = pending;
    Ok(results)
}

fn prune(conn: &Connection) {
    let sql = "DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?1";
    if let Err(error) = conn.execute(sql, params![CHANGE_LOG_KEEP as i64]) {
        tracing::warn!(%error, "change log pruning failed");
    }
}

fn row_doc(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn to_doc((id, version, body): (String, i64, String)) -> Result<Doc, StoreError> {
    Ok(Doc {
        id,
        version: u64::try_from(version).unwrap_or(0),
        body: parse_body(&body)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError> {
        let id = id.to_owned();
        self.point_read(move |c| {
            let row = c
                .prepare_cached(GET_DOC)
                .map_err(unavailable)?
                .query_row(params![kind, id], row_doc)
                .optional()
                .map_err(unavailable)?;
            row.map(to_doc).transpose()
        })
        .await
    }

    async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError> {
        let ids_len = ids.len();
        let ids = ids.to_vec();
        let read = move |c: &Connection| {
            let mut stmt = c.prepare_cached(GET_DOC).map_err(unavailable)?;
            ids.iter()
                .map(|id| {
                    stmt.query_row(params![kind, id], row_doc)
                        .optional()
                        .map_err(unavailable)?
                        .map(to_doc)
                        .transpose()
                })
                .collect()
        };
        if ids_len <= POINT_READ_IDS {
            self.point_read(read).await
        } else {
            self.read(read).await
        }
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        from: u64,
        size: Option<u64>,
    ) -> Result<Page, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |c| {
            // `substr(id, 1, n) = prefix` compares bytes exactly (no LIKE wildcards or case folding).
            let plen = prefix.chars().count() as i64;
            let total: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM docs WHERE kind = ?1 AND substr(id, 1, ?2) = ?3",
                    params![kind, plen, prefix],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            let limit = size.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
            let offset = i64::try_from(from).unwrap_or(i64::MAX);
            // `ORDER BY id` is byte order: `id` is TEXT with the BINARY collation (memcmp of the
            // UTF-8 bytes), so the primary key (kind, id) gives the order and a page stops after
            // `from + size` rows. (`CAST(id AS BLOB)` gave the same order through a sort of every
            // document of the kind, for every page: a scan of 100,000 users took seconds of CPU.)
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, version, body FROM docs WHERE kind = ?1 AND substr(id, 1, ?2) = ?3
                     ORDER BY id LIMIT ?4 OFFSET ?5",
                )
                .map_err(unavailable)?;
            let docs = stmt
                .query_map(params![kind, plen, prefix, limit, offset], row_doc)
                .map_err(unavailable)?
                .map(|r| r.map_err(unavailable).and_then(to_doc))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page {
                docs,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
        .await
    }

    async fn list_after(
        &self,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        size: u64,
    ) -> Result<Vec<Doc>, StoreError> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        self.read(move |c| {
            let limit = i64::try_from(size).unwrap_or(i64::MAX);
            // The primary key's range from the prefix (or past the last id seen), in byte order
            // (BINARY collation); ids sharing the prefix come first, so the page stops at the first
            // that does not start with it.
            let (sql, from) = match &after {
                Some(after) => (
                    "SELECT id, version, body FROM docs WHERE kind = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3",
                    after.as_str(),
                ),
                None => (
                    "SELECT id, version, body FROM docs WHERE kind = ?1 AND id >= ?2
                     ORDER BY id LIMIT ?3",
                    prefix.as_str(),
                ),
            };
            let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
            let mut docs = Vec::new();
            for row in stmt
                .query_map(params![kind, from, limit], row_doc)
                .map_err(unavailable)?
            {
                let row = row.map_err(unavailable)?;
                if !row.0.starts_with(prefix.as_str()) {
                    break;
                }
                docs.push(to_doc(row)?);
            }
            Ok(docs)
        })
        .await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the storage writer stopped".into()))?
            .send(Job { ops, reply })
            .map_err(|_| StoreError::Unavailable("the storage writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the storage writer stopped".into()))?
    }

    async fn snapshot(&self, kinds: &[Kind]) -> Result<Snapshot, StoreError> {
        let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        self.read(move |c| {
            let tx = c.unchecked_transaction().map_err(unavailable)?;
            let seq = last_seq(&tx)?;
            let mut stmt = tx
                .prepare_cached("SELECT id, version, body FROM docs WHERE kind = ?1 ORDER BY id")
                .map_err(unavailable)?;
            let mut docs = Vec::new();
            for kind in &kinds {
                let rows = stmt
                    .query_map(params![kind], row_doc)
                    .map_err(unavailable)?
                    .map(|r| r.map_err(unavailable).and_then(to_doc))
                    .collect::<Result<Vec<_>, _>>()?;
                docs.extend(rows.into_iter().map(|d| (kind.clone(), d)));
            }
            drop(stmt);
            tx.commit().map_err(unavailable)?;
            Ok(Snapshot { seq, docs })
        })
        .await
    }

    fn subscribe(&self, after: u64) -> Feed {
        Feed::new(self.feed.subscribe(), after)
    }

    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
        self.read(move |c| {
            let tx = c.unchecked_transaction().map_err(unavailable)?;
            let current = last_seq(&tx)?;
            let oldest: Option<i64> = tx
                .query_row("SELECT MIN(seq) FROM changes", [], |r| r.get(0))
                .map_err(unavailable)?;
            let oldest = oldest.map_or(current + 1, |s| u64::try_from(s).unwrap_or(0));
            if after + 1 < oldest && after < current {
                return Ok(Catchup::TooFarBehind);
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT c.seq, c.kind, c.id, d.version, d.body FROM changes c
                     LEFT JOIN docs d ON d.kind = c.kind AND d.id = c.id
                     WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(
                    params![
                        i64::try_from(after).unwrap_or(i64::MAX),
                        i64::try_from(max).unwrap_or(i64::MAX)
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                        ))
                    },
                )
                .map_err(unavailable)?;
            let mut changes = Vec::new();
            for row in rows {
                let (seq, kind, id, version, body) = row.map_err(unavailable)?;
                let doc = match (version, body) {
                    (Some(version), Some(body)) => Some(to_doc((id.clone(), version, body))?),
                    _ => None,
                };
                changes.push(Change {
                    seq: u64::try_from(seq).unwrap_or(0),
                    kind,
                    id,
                    doc,
                });
            }
            drop(stmt);
            tx.commit().map_err(unavailable)?;
            let seq = match changes.last() {
                Some(c) if changes.len() == max => c.seq,
                _ => current,
            };
            Ok(Catchup::Changes { seq, changes })
        })
        .await
    }

    async fn current_seq(&self) -> Result<u64, StoreError> {
        self.read(last_seq).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }

    fn engine(&self) -> EngineInfo {
        EngineInfo {
            kind: "sqlite",
            version: self.version.clone(),
        }
    }

    fn group_stats(&self) -> Option<(u64, u64)> {
        Some(self.groups.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expect, contract};
    use serde_json::json;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    #[tokio::test]
    async fn sqlite_versions_and_cas() {
        contract::versions_and_cas(&store().1).await;
    }
    #[tokio::test]
    async fn sqlite_batches_are_atomic() {
        contract::batches_are_atomic(&store().1).await;
    }
    #[tokio::test]
    async fn sqlite_kind_guard() {
        contract::kind_guard(&store().1).await;
    }
    #[tokio::test]
    async fn sqlite_catchup_from_the_log() {
        contract::catchup_from_the_log(&store().1).await;
    }
    #[tokio::test]
    async fn sqlite_listing_and_feed() {
        contract::listing_and_feed(&store().1).await;
    }

    #[tokio::test]
    async fn sqlite_listing_is_in_byte_order() {
        contract::listing_is_in_byte_order(&store().1).await;
    }

    #[tokio::test]
    async fn sqlite_listing_after_an_id() {
        contract::listing_after_an_id(&store().1).await;
    }

    #[tokio::test]
    async fn sqlite_survives_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let s =
                SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
            for _ in 0..3 {
                let op = Op::Put {
                    kind: "profile",
                    id: "p".into(),
                    body: json!({"z":1,"a":2}),
                    expect: Expect::Any,
                };
                assert!(s.commit(vec![op]).await.is_ok());
            }
        }
        let s = SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
        let doc = s.get("profile", "p").await.ok().flatten();
        assert_eq!(
            doc.map(|d| (d.version, d.body.to_string())),
            Some((3, r#"{"z":1,"a":2}"#.to_owned()))
        );
        assert_eq!(s.snapshot(&["profile"]).await.map(|s| s.seq).ok(), Some(3));
    }

    #[tokio::test]
    async fn sqlite_groups_concurrent_batches_without_mixing_conflicts() {
        let (_dir, s) = store();
        let s = Arc::new(s);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                // Even ids create a fresh doc; odd ids hit a conflict on a missing doc.
                let expect = if i % 2 == 0 {
                    Expect::Absent
                } else {
                    Expect::Version(7)
                };
                s.commit(vec![Op::Put {
                    kind: "role",
                    id: format!("r{i}"),
                    body: json!({"i": i}),
                    expect,
                }])
                .await
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(Ok(_)) => {
                    assert_eq!(i % 2, 0);
                    ok += 1;
                }
                Ok(Err(StoreError::Conflict { index: 0 })) => assert_eq!(i % 2, 1),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ok, 32);
        assert_eq!(s.list("role", "", 0, None).await.map(|p| p.total), Ok(32));
        assert_eq!(s.snapshot(&["role"]).await.map(|s| s.seq).ok(), Some(32));
    }

    fn put(id: &str) -> Op {
        Op::Put {
            kind: "profile",
            id: id.into(),
            body: json!({"id": id}),
            expect: Expect::Absent,
        }
    }

    #[tokio::test]
    async fn sqlite_failed_commit_is_rolled_back_and_never_published() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let s = Arc::new(
                SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}")),
            );
            assert!(s.commit(vec![put("a")]).await.is_ok());
            let mut feed = s.subscribe(1);
            s.fail_next_commits(1);
            // Every batch of the failing group is answered with the error.
            let lost = s.commit(vec![put("lost")]).await;
            assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");
            assert_eq!(s.get("profile", "lost").await, Ok(None));
            assert!(feed.try_next().is_none());
            // The store goes on, and the feed stays continuous: the failed batch took no number.
            let next = s.commit(vec![put("b")]).await.map(|c| c.seq);
            assert_eq!(next, Ok(2));
            match feed.next().await {
                Some(crate::FeedEvent::Change(c)) => assert_eq!((c.seq, c.id.as_str()), (2, "b")),
                other => panic!("unexpected {other:?}"),
            }
        }
        let s = SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.get("profile", "lost").await, Ok(None));
        let ids = s
            .list("profile", "", 0, None)
            .await
            .map(|p| p.docs.into_iter().map(|d| d.id).collect::<Vec<_>>());
        assert_eq!(ids, Ok(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[tokio::test]
    async fn sqlite_refuses_a_second_store_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first =
            SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
        match SqliteStore::open(dir.path(), Durability::Full) {
            Err(StoreError::Unavailable(text)) => {
                assert!(
                    text.contains("in use by another Tollgate process"),
                    "{text}"
                )
            }
            other => panic!("a second store opened: {other:?}"),
        }
        assert!(first.commit(vec![put("a")]).await.is_ok());
        // Dropping the store stops its writer and releases the lock.
        drop(first);
        let again =
            SqliteStore::open(dir.path(), Durability::Full).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(again.get("profile", "a").await, Ok(Some(_))));
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let conn =
                Connection::open(dir.path().join("tollgate.db")).unwrap_or_else(|e| panic!("{e}"));
            let _ = conn.pragma_update(None, "user_version", 99);
        }
        assert!(matches!(
            SqliteStore::open(dir.path(), Durability::Full),
            Err(StoreError::Unavailable(_))
        ));
    }
}
