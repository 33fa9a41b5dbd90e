//! The PostgreSQL backend, for several nodes sharing one database.
//!
//! - **Tables** (in the connection's current schema, created and migrated by the server itself):
//!   `tollgate_docs` (kind, id, version, body as TEXT: the API relies on JSON key order, which JSONB
//!   would not keep), `tollgate_changes` (the change log: seq, kind, id, version, deleted,
//!   committed_at), `tollgate_kind_changes` (the last sequence number of each kind, for
//!   [`Op::KindUnchanged`]) and `tollgate_schema_migrations` (the migrations applied). Migrations run
//!   in one transaction under a transaction-level advisory lock, so nodes starting at once are safe.
//! - **Writes.** Concurrent `commit` calls of this process are queued to one writer task, which
//!   applies every waiting batch (at most 256) in one transaction, with one `COMMIT` per group. The
//!   transaction first takes a transaction-level advisory lock (`pg_advisory_xact_lock`) shared by
//!   every node of the store, then reads the last sequence number: writers of all nodes are
//!   serialized, so sequence numbers are assigned in commit order and every reader sees them without
//!   gaps. It reads the state of every document and kind the group names, then checks each batch's
//!   expectations against the state before it (the earlier batches of the group included,
//!   [`crate::check_batch`]) in memory: a batch that conflicts sends nothing and does not affect the
//!   others. The writes of every batch that passed are merged (each document's last state once,
//!   every change in the log) and sent as **one** statement, which also sends the `NOTIFY`; there
//!   are no savepoints, since nothing sent can conflict. The whole group costs two round trips: the
//!   lock and the reads, then the write statement and the `COMMIT`, pipelined. The writer keeps its
//!   connection between groups.
//! - **The change feed.** One publisher task per store reads the change log in order from the last
//!   sequence number it published and sends each change on the feed. It is woken by this process's
//!   commits (whose changes it publishes as they were written when they come next), by `NOTIFY`
//!   from other nodes (received on one dedicated `LISTEN` connection, reconnected with a backoff
//!   when lost) and by a poll every second, in case a notification was missed. It never publishes
//!   out of order nor skips a number; only when it fell further behind than the log keeps does it
//!   jump, and subscribers see a gap and resync. `commit` may return before its change is
//!   published: a reader that needs it waits for its sequence number on the feed.
//! - **Failures** become [`StoreError::Unavailable`] within a bounded time: pool wait, connection
//!   and statement timeouts of 5 s, and at most 10 s for any call. A connection that failed in any
//!   way is closed, never returned to the pool.
//! - No TLS for now: connections are made without it (`sslmode=require` is refused).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::{
    CHANGE_LOG_KEEP, Catchup, Change, Committed, Doc, EngineInfo, Feed, Kind, Op, Page, Snapshot,
    Store, StoreError,
};

/// Connections of the pool at most (readers and the writer together).
pub const POOL_SIZE: usize = 16;
/// Waiting for a pooled connection, opening one, and one statement on the server, each at most.
const TIMEOUT: Duration = Duration::from_secs(5);
/// One call of the store (or one group commit) at most, client side.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The publisher reads the change log at least this often, whatever the notifications.
pub const POLL: Duration = Duration::from_secs(1);
/// Batches grouped into one transaction at most (their writes are one statement, whatever their
/// number: no savepoints).
const MAX_GROUP: usize = 256;
/// Changes the publisher reads from the log at once.
const PAGE: usize = 1000;
/// Group commits between two prunings of the change log.
const PRUNE_EVERY: u64 = 1000;
/// The `NOTIFY` channel; the payload names the writer and the schema.
const CHANNEL: &str = "tollgate_changes";
/// Advisory lock classes (the second key is the schema's hash): the writers' and the migrations'.
const WRITE_LOCK: i32 = 0x546F_6C6C;
const MIGRATE_LOCK: i32 = 0x546F_6C6D;
/// Reconnection backoff of the `LISTEN` connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Ordered schema migrations; `tollgate_schema_migrations` records the versions applied.
const MIGRATIONS: &[&str] = &[
    // 1: documents, the change log, the last change of each kind.
    r#"CREATE TABLE tollgate_docs (
        kind TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, id)
     );
     CREATE TABLE tollgate_changes (
        seq BIGINT PRIMARY KEY,
        kind TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL,
        committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE tollgate_kind_changes (
        kind TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT NOT NULL
     );"#,
];

const SQL_LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM tollgate_changes";
const SQL_GET: &str = "SELECT version, body FROM tollgate_docs WHERE kind = $1 AND id = $2";
const SQL_MGET: &str =
    "SELECT id, version, body FROM tollgate_docs WHERE kind = $1 AND id = ANY($2)";
// `starts_with` compares exactly (no LIKE wildcards, no case folding); `id >= prefix` lets the
// primary key's range scan start at the prefix. Ids are `COLLATE "C"`: byte order.
const SQL_COUNT: &str = "SELECT COUNT(*) FROM tollgate_docs
     WHERE kind = $1 AND id >= $2 AND starts_with(id, $2)";
const SQL_LIST: &str = "SELECT id, version, body FROM tollgate_docs
     WHERE kind = $1 AND id >= $2 AND starts_with(id, $2) ORDER BY id LIMIT $3 OFFSET $4";
// Keyset pages: the primary key's range past the last id seen (or from the prefix).
const SQL_LIST_FIRST: &str = "SELECT id, version, body FROM tollgate_docs
     WHERE kind = $1 AND id >= $2 AND starts_with(id, $2) ORDER BY id LIMIT $3";
const SQL_LIST_AFTER: &str = "SELECT id, version, body FROM tollgate_docs
     WHERE kind = $1 AND id > $3 AND starts_with(id, $2) ORDER BY id LIMIT $4";
const SQL_SNAPSHOT: &str =
    "SELECT kind, id, version, body FROM tollgate_docs WHERE kind = ANY($1) ORDER BY kind, id";
const SQL_LOG_BOUNDS: &str = "SELECT COALESCE(MAX(seq), 0), MIN(seq) FROM tollgate_changes";
const SQL_LOG: &str = "SELECT c.seq, c.kind, c.id, d.version, d.body FROM tollgate_changes c
     LEFT JOIN tollgate_docs d ON d.kind = c.kind AND d.id = c.id
     WHERE c.seq > $1 ORDER BY c.seq LIMIT $2";
const SQL_LOCK: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";
const SQL_VERSIONS: &str = "SELECT k.n, d.version FROM tollgate_docs d
     JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(kind, id, n)
     ON d.kind = k.kind AND d.id = k.id";
const SQL_KINDS: &str = "SELECT kind, seq FROM tollgate_kind_changes WHERE kind = ANY($1)";
// Every write of a group in one statement, and its notification (data-modifying CTEs all run; the
// documents upserted and deleted are distinct, each named once).
const SQL_WRITE: &str = "WITH up AS (
        INSERT INTO tollgate_docs (kind, id, version, body)
        SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
        ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, body = excluded.body
     ), del AS (
        DELETE FROM tollgate_docs d USING unnest($5::text[], $6::text[]) AS k(kind, id)
        WHERE d.kind = k.kind AND d.id = k.id
     ), log AS (
        INSERT INTO tollgate_changes (seq, kind, id, version, deleted)
        SELECT * FROM unnest($7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::bool[])
     ), kinds AS (
        INSERT INTO tollgate_kind_changes (kind, seq)
        SELECT * FROM unnest($12::text[], $13::bigint[])
        ON CONFLICT (kind) DO UPDATE SET seq = excluded.seq
     ) SELECT pg_notify($14, $15)";
const SQL_PRUNE: &str = "DELETE FROM tollgate_changes WHERE seq <= $1";

/// Parses a connection URL (`postgres://user:password@host:port/dbname?…`, or libpq's
/// `key=value` form) and checks that this backend can use it. The message never holds the password.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| describe(&e))?;
    if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
        return Err("TLS is not supported yet: use sslmode=disable or prefer".into());
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err("no host".into());
    }
    Ok(config)
}

/// The URL with its password replaced by `***` (in the user information, or a `password` parameter
/// of the query string or of the `key=value` form), for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{hosts}"),
                None => format!("{userinfo}@{hosts}"),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                            format!("{key}=***")
                        }
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_owned(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    // key=value form: hide the value after `password =` (quoted or not).
    let lower = url.to_ascii_lowercase();
    let Some(at) = lower.find("password") else {
        return url.to_owned();
    };
    let after = &url[at + "password".len()..];
    let Some(eq) = after.find('=') else {
        return url.to_owned();
    };
    let value = after[eq + 1..].trim_start();
    let value_start = url.len() - value.len();
    let value_len = if let Some(quoted) = value.strip_prefix('\'') {
        let mut end = quoted.len();
        let mut escaped = false;
        for (i, ch) in quoted.char_indices() {
            match ch {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        1 + end
    } else {
        value.find(char::is_whitespace).unwrap_or(value.len())
    };
    format!(
        "{}***{}",
        &url[..value_start],
        &url[value_start + value_len..]
    )
}

/// An error with its causes, e.g. `db error: ERROR: permission denied for schema public`.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse_body(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Runs `f`, answering [`StoreError::Unavailable`] when it takes longer than [`CALL_TIMEOUT`]. A
/// connection held by `f` is then dropped with it, which closes it ([`Conn`]).
async fn bounded<T>(
    what: &str,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {} s ({what})",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// A pooled connection that goes back to the pool only through [`Conn::release`], after a call that
/// succeeded. Dropped otherwise (an error, a timeout, a cancelled call), it is closed: it may be in
/// the middle of a transaction or of a reply.
struct Conn(Option<deadpool_postgres::Object>);

impl Conn {
    fn client(&self) -> Result<&deadpool_postgres::ClientWrapper, StoreError> {
        self.0
            .as_deref()
            .ok_or_else(|| StoreError::Unavailable("connection already released".into()))
    }

    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// What every task of a store shares.
struct Inner {
    pool: Pool,
    /// The schema the tables are in (`current_schema()`): the advisory locks and notifications are
    /// per schema.
    schema: String,
    /// Names this store's notifications, so its listener ignores them (its own commits reach the
    /// publisher directly).
    instance: String,
    /// The writer's group commits.
    groups: crate::GroupStats,
}

async fn checkout(pool: &Pool) -> Result<Conn, StoreError> {
    match pool.get().await {
        Ok(object) => Ok(Conn(Some(object))),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot get a PostgreSQL connection: {}",
            describe(&e)
        ))),
    }
}

impl Inner {
    async fn conn(&self) -> Result<Conn, StoreError> {
        checkout(&self.pool).await
    }

    async fn current_seq(&self) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let c = conn.client()?;
        let stmt = c.prepare_cached(SQL_LAST_SEQ).await.map_err(pg)?;
        let row = c.query_one(&stmt, &[]).await.map_err(pg)?;
        let seq = to_u64(row.try_get(0).map_err(pg)?);
        conn.release();
        Ok(seq)
    }

    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
        let conn = self.conn().await?;
        let c = conn.client()?;
        let bounds = c.prepare_cached(SQL_LOG_BOUNDS).await.map_err(pg)?;
        let log = c.prepare_cached(SQL_LOG).await.map_err(pg)?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let after_param = to_i64(after);
        // One snapshot for the bounds and the rows; the four requests are pipelined.
        let log_params: [&(dyn ToSql + Sync); 2] = [&after_param, &limit];
        let (_, bounds, rows, _) = tokio::try_join!(
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            c.query_one(&bounds, &[]),
            c.query(&log, &log_params),
            c.batch_execute("COMMIT"),
        )
        .map_err(pg)?;
        conn.release();
        let current = to_u64(bounds.try_get(0).map_err(pg)?);
        let oldest: Option<i64> = bounds.try_get(1).map_err(pg)?;
        let oldest = oldest.map_or(current + 1, to_u64);
        if after + 1 < oldest && after < current {
            return Ok(Catchup::TooFarBehind);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(pg)?;
            let kind: String = row.try_get(1).map_err(pg)?;
            let id: String = row.try_get(2).map_err(pg)?;
            let version: Option<i64> = row.try_get(3).map_err(pg)?;
            let body: Option<String> = row.try_get(4).map_err(pg)?;
            let doc = match (version, body) {
                (Some(version), Some(body)) => Some(Doc {
                    id: id.clone(),
                    version: to_u64(version),
                    body: parse_body(&body)?,
                }),
                _ => None,
            };
            changes.push(Change {
                seq: to_u64(seq),
                kind,
                id,
                doc,
            });
        }
        let seq = match changes.last() {
            Some(c) if changes.len() == max => c.seq,
            _ => current,
        };
        Ok(Catchup::Changes { seq, changes })
    }

    async fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        let conn = self.conn().await?;
        let c = conn.client()?;
        let row = c
            .query_one("SELECT MIN(seq) FROM tollgate_changes", &[])
            .await
            .map_err(pg)?;
        let oldest: Option<i64> = row.try_get(0).map_err(pg)?;
        conn.release();
        Ok(oldest.map(to_u64))
    }
}

struct Job {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// Between the writer, the listener and the publisher.
#[derive(Default)]
struct Wakeup {
    notify: Notify,
    /// Another node may have committed (a notification, a poll, a lost connection, a commit of
    /// this process whose outcome is unknown): the publisher must read the log.
    external: AtomicBool,
    /// Changes committed by this process and not published yet, by sequence number.
    local: Mutex<BTreeMap<u64, Change>>,
}

impl Wakeup {
    fn external(&self) {
        self.external.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn local(&self, changes: impl IntoIterator<Item = Change>) {
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            for change in changes {
                local.insert(change.seq, change);
            }
        }
        self.notify.notify_one();
    }

    fn take_local(&self) -> BTreeMap<u64, Change> {
        std::mem::take(&mut *self.local.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Failures the tests inject into the writer (nothing sets them outside tests).
#[derive(Debug, Default)]
struct Faults {
    /// The next this many group commits fail just before `COMMIT`, with the transaction open.
    commit_failures: AtomicU32,
}

impl Faults {
    fn take_commit_failure(&self) -> bool {
        self.commit_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The PostgreSQL store. Dropping it stops its publisher and listener; the writer answers the
/// batches already submitted, then closes the pool.
pub struct PostgresStore {
    inner: Arc<Inner>,
    writer: mpsc::UnboundedSender<Job>,
    feed: broadcast::Sender<Arc<Change>>,
    version: String,
    publisher: JoinHandle<()>,
    listener: JoinHandle<()>,
    /// The other nodes of this schema and what each has applied.
    peers: crate::peers::Peers,
    #[cfg_attr(not(test), allow(dead_code))]
    faults: Arc<Faults>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("version", &self.version)
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.publisher.abort();
        self.listener.abort();
    }
}

/// Where the configuration points, without credentials, for logs.
fn target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host {} port {} database {} user {}",
        hosts.join(","),
        if ports.is_empty() {
            "5432".to_owned()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)")
    )
}

/// A name for this store's notifications, unique among the nodes.
fn instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl PostgresStore {
    /// Connects to the database of `url` (see [`parse_url`]), creates or migrates the tables in its
    /// current schema, and starts the writer, the publisher and the listener.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let config = parse_url(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        Self::open_config(config).await
    }

    /// [`PostgresStore::open`] with a parsed configuration. The timeouts are added to it; the
    /// `application_name` defaults to `tollgate` (the listener's is that name and `-listen`).
    pub async fn open_config(mut config: tokio_postgres::Config) -> Result<Self, StoreError> {
        let ms = TIMEOUT.as_millis();
        // The server ends a statement, a lock wait, and a transaction left idle (a frozen node
        // holding the writers' lock) after a bounded time. Options of the URL come last and win.
        let options = format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={} {}",
            2 * ms,
            config.get_options().unwrap_or("")
        );
        config.options(options.trim_end());
        config.connect_timeout(TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("tollgate");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the pool: {e}")))?;
        let where_ = target(&config);
        let (schema, version, seq) = bounded("opening the store", async {
            let conn = checkout(&pool).await.map_err(|e| match e {
                StoreError::Unavailable(detail) => {
                    StoreError::Unavailable(format!("{where_}: {detail}"))
                }
                other => other,
            })?;
            let c = conn.client()?;
            let row = c
                .query_one(
                    "SELECT current_schema(), current_setting('server_version'), \
                     current_setting('server_encoding')",
                    &[],
                )
                .await
                .map_err(pg)?;
            let schema: Option<String> = row.try_get(0).map_err(pg)?;
            let version: String = row.try_get(1).map_err(pg)?;
            let encoding: String = row.try_get(2).map_err(pg)?;
            let Some(schema) = schema else {
                return Err(StoreError::Unavailable(
                    "no schema to create the tables in: the search_path names no existing schema"
                        .into(),
                ));
            };
            if encoding != "UTF8" {
                return Err(StoreError::Unavailable(format!(
                    "the database's encoding is {encoding}; Tollgate needs UTF8"
                )));
            }
            migrate(c, &schema).await?;
            let row = c.query_one(SQL_LAST_SEQ, &[]).await.map_err(pg)?;
            let seq = to_u64(row.try_get(0).map_err(pg)?);
            conn.release();
            Ok((schema, version, seq))
        })
        .await?;
        tracing::info!(target = %where_, %schema, %version, "PostgreSQL store opened");
        let inner = Arc::new(Inner {
            pool,
            schema,
            instance: instance_id(),
            groups: crate::GroupStats::default(),
        });
        let (feed, _) = broadcast::channel(crate::sqlite::FEED_CAPACITY);
        let wakeup = Arc::new(Wakeup::default());
        let faults = Arc::new(Faults::default());
        let (writer, jobs) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(
            Arc::clone(&inner),
            jobs,
            Arc::clone(&wakeup),
            Arc::clone(&faults),
        ));
        let publisher = tokio::spawn(publish_loop(
            Arc::clone(&inner),
            feed.clone(),
            Arc::clone(&wakeup),
            seq,
        ));
        let peers = crate::peers::Peers::start(
            config.clone(),
            inner.schema.clone(),
            inner.instance.clone(),
        );
        let mut listen_config = config;
        let app = listen_config.get_application_name().unwrap_or("tollgate");
        let listen_app = format!("{app}-listen");
        listen_config.application_name(listen_app);
        let listener = tokio::spawn(listen_loop(
            listen_config,
            inner.schema.clone(),
            inner.instance.clone(),
            Arc::clone(&wakeup),
        ));
        Ok(Self {
            inner,
            writer,
            feed,
            version,
            publisher,
            listener,
            peers,
            faults,
        })
    }

    /// Makes the next `n` group commits fail just before `COMMIT` (tests).
    #[cfg(test)]
    fn fail_next_commits(&self, n: u32) {
        self.faults.commit_failures.store(n, Ordering::Relaxed);
    }
}

/// Creates or migrates the tables, in one transaction under the migrations' advisory lock: a node
/// starting at the same time waits, then finds them migrated.
async fn migrate(c: &tokio_postgres::Client, schema: &str) -> Result<(), StoreError> {
    c.batch_execute("BEGIN").await.map_err(pg)?;
    c.execute(SQL_LOCK, &[&MIGRATE_LOCK, &schema])
        .await
        .map_err(pg)?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS tollgate_schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg)?;
    let row = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM tollgate_schema_migrations",
            &[],
        )
        .await
        .map_err(pg)?;
    let applied: i32 = row.try_get(0).map_err(pg)?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        // The caller closes the connection, which rolls the transaction back.
        return Err(StoreError::Unavailable(format!(
            "the database was written by a newer version (schema {applied}, this binary knows {})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        c.batch_execute(sql).await.map_err(pg)?;
        c.execute(
            "INSERT INTO tollgate_schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg)?;
        tracing::info!(schema = version, "storage migration applied");
    }
    c.batch_execute("COMMIT").await.map_err(pg)?;
    Ok(())
}

type JobResult = (Result<Committed, StoreError>, Vec<Change>);

async fn write_loop(
    inner: Arc<Inner>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    wakeup: Arc<Wakeup>,
    faults: Arc<Faults>,
) {
    let mut groups: u64 = 0;
    // The writer's connection, kept between groups while it works.
    let mut conn = None;
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let outcome = bounded(
            "group commit",
            commit_group(&inner, &mut conn, &group, &faults),
        )
        .await;
        inner.groups.record(group.len());
        tracing::debug!(
            batches = group.len(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            ok = outcome.is_ok(),
            "group commit"
        );
        match outcome {
            Ok(results) => {
                let mut answers = Vec::with_capacity(results.len());
                let mut committed = Vec::new();
                let mut last = None;
                for (result, changes) in results {
                    if let Some(c) = changes.last() {
                        last = Some(c.seq);
                    }
                    committed.extend(changes);
                    answers.push(result);
                }
                // Handed to the publisher before the callers are answered.
                if !committed.is_empty() {
                    wakeup.local(committed);
                }
                for (job, answer) in group.into_iter().zip(answers) {
                    let _ = job.reply.send(answer);
                }
                groups += 1;
                if let Some(last) = last
                    && groups.is_multiple_of(PRUNE_EVERY)
                {
                    prune(&inner, last).await;
                }
            }
            Err(error) => {
                // Nothing is handed to the publisher. Should the `COMMIT` have happened after all
                // (an answer lost with the connection), the log has the changes: read it.
                tracing::error!(%error, "storage commit failed; the group was rolled back");
                wakeup.external();
                for job in group {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

async fn prune(inner: &Inner, last: u64) {
    let Some(through) = last.checked_sub(CHANGE_LOG_KEEP) else {
        return;
    };
    let result = bounded("pruning the change log", async {
        let conn = inner.conn().await?;
        let c = conn.client()?;
        c.execute(SQL_PRUNE, &[&to_i64(through)])
            .await
            .map_err(pg)?;
        conn.release();
        Ok(())
    })
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "change log pruning failed");
    }
}

/// The prepared statements of a group commit (cached per connection).
struct Statements {
    lock: tokio_postgres::Statement,
    last_seq: tokio_postgres::Statement,
    versions: tokio_postgres::Statement,
    kinds: tokio_postgres::Statement,
    write: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(c: &deadpool_postgres::ClientWrapper) -> Result<Self, StoreError> {
        Ok(Self {
            lock: c.prepare_cached(SQL_LOCK).await.map_err(pg)?,
            last_seq: c.prepare_cached(SQL_LAST_SEQ).await.map_err(pg)?,
            versions: c.prepare_cached(SQL_VERSIONS).await.map_err(pg)?,
            kinds: c.prepare_cached(SQL_KINDS).await.map_err(pg)?,
            write: c.prepare_cached(SQL_WRITE).await.map_err(pg)?,
        })
    }
}

/// One transaction for the whole group, under the writers' lock, in two round trips: the first
/// takes the lock and reads the last sequence number and the current state of every document and
/// kind the group names; every batch's guards are then checked in memory, in order, each against
/// the state the earlier batches that passed left (a batch that fails sends nothing); the second
/// sends the writes of every batch that passed as **one** statement (with the notification), then
/// the `COMMIT`. No savepoints: nothing is sent that can conflict, and any failure of the statement
/// or of the `COMMIT` fails the whole group.
async fn commit_group(
    inner: &Inner,
    writer: &mut Option<Conn>,
    group: &[Job],
    faults: &Faults,
) -> Result<Vec<JobResult>, StoreError> {
    // The writer keeps its connection between groups (no pool hand-off, no wait behind readers);
    // one that failed was dropped, and one the server closed is replaced.
    let conn = match writer.take() {
        Some(conn) if conn.client().is_ok_and(|c| !c.is_closed()) => conn,
        _ => inner.conn().await?,
    };
    let c = conn.client()?;
    let st = Statements::prepare(c).await?;

    // Every document and guarded kind of the group.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let (mut key_kinds, mut key_ids) = (Vec::new(), Vec::new());
    let mut guard_kinds: Vec<&str> = Vec::new();
    for op in group.iter().flat_map(|job| &job.ops) {
        match op {
            Op::Put { kind, id, .. } | Op::Delete { kind, id, .. } | Op::Check { kind, id, .. } => {
                if seen.insert((*kind, id.as_str())) {
                    key_kinds.push(*kind);
                    key_ids.push(id.as_str());
                }
            }
            Op::KindUnchanged { kind, .. } => {
                if !guard_kinds.contains(kind) {
                    guard_kinds.push(*kind);
                }
            }
        }
    }
    // The lock is taken before anything is read: the numbers of every node's commits follow their
    // commit order, and the state read is the one this transaction writes over.
    let lock_params: [&(dyn ToSql + Sync); 2] = [&WRITE_LOCK, &inner.schema];
    let key_params: [&(dyn ToSql + Sync); 2] = [&key_kinds, &key_ids];
    let kind_params: [&(dyn ToSql + Sync); 1] = [&guard_kinds];
    let (_, _, last, version_rows, kind_rows) = tokio::try_join!(
        c.batch_execute("BEGIN"),
        c.execute(&st.lock, &lock_params),
        c.query_one(&st.last_seq, &[]),
        async {
            if key_ids.is_empty() {
                Ok(Vec::new())
            } else {
                c.query(&st.versions, &key_params).await
            }
        },
        async {
            if guard_kinds.is_empty() {
                Ok(Vec::new())
            } else {
                c.query(&st.kinds, &kind_params).await
            }
        },
    )
    .map_err(pg)?;
    let mut seq = to_u64(last.try_get(0).map_err(pg)?);
    // The state before the next batch: documents named by the group (absent: None) and the last
    // change of each kind.
    let mut docs: HashMap<(&str, &str), Option<u64>> = HashMap::with_capacity(seen.len());
    for row in version_rows {
        // The position (from 1) of the document in the keys sent.
        let n: i64 = row.try_get(0).map_err(pg)?;
        let version: i64 = row.try_get(1).map_err(pg)?;
        let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
        if let (Some(kind), Some(id)) = (key_kinds.get(i), key_ids.get(i)) {
            docs.insert((*kind, *id), Some(to_u64(version)));
        }
    }
    let mut kinds: HashMap<&str, u64> = HashMap::with_capacity(guard_kinds.len());
    for row in kind_rows {
        let kind: &str = row.try_get(0).map_err(pg)?;
        let last: i64 = row.try_get(1).map_err(pg)?;
        if let Some(key) = guard_kinds.iter().find(|k| **k == kind) {
            kinds.insert(*key, to_u64(last));
        }
    }

    let mut results = Vec::with_capacity(group.len());
    let mut writes = GroupWrites::default();
    for job in group {
        let checked = crate::check_batch(
            &job.ops,
            |kind, id| Ok(docs.get(&(kind, id)).copied().flatten()),
            |kind| kinds.get(kind).copied().unwrap_or(0),
        );
        match checked {
            Ok(()) => {
                let (committed, changes) =
                    plan(&job.ops, &mut docs, &mut kinds, &mut seq, &mut writes);
                results.push((Ok(committed), changes));
            }
            // Nothing of it was planned: the batches after it are checked against the state
            // before it.
            Err(e) => results.push((Err(e), Vec::new())),
        }
    }
    if faults.take_commit_failure() {
        // As a `COMMIT` that fails: dropping `conn` closes the connection, which rolls back.
        return Err(StoreError::Unavailable("injected commit failure".into()));
    }
    let payload = format!("{}:{}", inner.instance, inner.schema);
    let columns = writes.columns();
    // A failed `COMMIT` (or a failed write, after which the server turns the `COMMIT` into a
    // rollback) is not retried: the error answers every batch of the group and `conn` is closed.
    if columns.log_seqs.is_empty() {
        // Only guards, or only conflicts: nothing to write nor to notify.
        c.batch_execute("COMMIT").await.map_err(pg)?;
    } else {
        let params: [&(dyn ToSql + Sync); 15] = [
            &columns.up_kinds,
            &columns.up_ids,
            &columns.up_versions,
            &columns.up_bodies,
            &columns.del_kinds,
            &columns.del_ids,
            &columns.log_seqs,
            &columns.log_kinds,
            &columns.log_ids,
            &columns.log_versions,
            &columns.log_deleted,
            &columns.kind_names,
            &columns.kind_seqs,
            &CHANNEL,
            &payload,
        ];
        // Pipelined: the `COMMIT` is sent without waiting for the write's answer. The notification
        // is delivered by the `COMMIT`, and only if it succeeds.
        tokio::try_join!(c.execute(&st.write, &params), c.batch_execute("COMMIT")).map_err(pg)?;
    }
    *writer = Some(conn);
    Ok(results)
}

/// The state a group leaves a document in.
enum Final {
    Put(u64, String),
    Deleted,
}

/// What the batches of a group that passed their guards write, merged: each document's final
/// state once (batches of a group may write the same document), one log entry per change, the
/// last change of each kind.
#[derive(Default)]
struct GroupWrites<'a> {
    finals: BTreeMap<(&'a str, &'a str), Final>,
    log_seqs: Vec<i64>,
    log_kinds: Vec<&'a str>,
    log_ids: Vec<&'a str>,
    log_versions: Vec<i64>,
    log_deleted: Vec<bool>,
    last_of_kind: BTreeMap<&'a str, u64>,
}

/// [`GroupWrites`] as the array parameters of [`SQL_WRITE`].
struct Columns<'a> {
    up_kinds: Vec<&'a str>,
    up_ids: Vec<&'a str>,
    up_versions: Vec<i64>,
    up_bodies: Vec<&'a str>,
    del_kinds: Vec<&'a str>,
    del_ids: Vec<&'a str>,
    log_seqs: &'a [i64],
    log_kinds: &'a [&'a str],
    log_ids: &'a [&'a str],
    log_versions: &'a [i64],
    log_deleted: &'a [bool],
    kind_names: Vec<&'a str>,
    kind_seqs: Vec<i64>,
}

impl<'a> GroupWrites<'a> {
    fn log(&mut self, seq: u64, kind: &'a str, id: &'a str, version: u64, deleted: bool) {
        self.log_seqs.push(to_i64(seq));
        self.log_kinds.push(kind);
        self.log_ids.push(id);
        self.log_versions.push(to_i64(version));
        self.log_deleted.push(deleted);
        self.last_of_kind.insert(kind, seq);
    }

    fn columns(&'a self) -> Columns<'a> {
        let mut columns = Columns {
            up_kinds: Vec::with_capacity(self.finals.len()),
            up_ids: Vec::with_capacity(self.finals.len()),
            up_versions: Vec::with_capacity(self.finals.len()),
            up_bodies: Vec::with_capacity(self.finals.len()),
            del_kinds: Vec::new(),
            del_ids: Vec::new(),
            log_seqs: &self.log_seqs,
            log_kinds: &self.log_kinds,
            log_ids: &self.log_ids,
            log_versions: &self.log_versions,
            log_deleted: &self.log_deleted,
            kind_names: self.last_of_kind.keys().copied().collect(),
            kind_seqs: self.last_of_kind.values().map(|s| to_i64(*s)).collect(),
        };
        for ((kind, id), state) in &self.finals {
            match state {
                Final::Put(version, body) => {
                    columns.up_kinds.push(kind);
                    columns.up_ids.push(id);
                    columns.up_versions.push(to_i64(*version));
                    columns.up_bodies.push(body);
                }
                Final::Deleted => {
                    columns.del_kinds.push(kind);
                    columns.del_ids.push(id);
                }
            }
        }
        columns
    }
}

/// Applies a checked batch to the in-memory state (`docs`, `kinds`, `seq`) and adds its writes to
/// the group's: ops of one batch (and batches of one group) may touch the same document, so they
/// apply in order, and the document's last state is the one written.
fn plan<'a>(
    ops: &'a [Op],
    docs: &mut HashMap<(&'a str, &'a str), Option<u64>>,
    kinds: &mut HashMap<&'a str, u64>,
    seq: &mut u64,
    writes: &mut GroupWrites<'a>,
) -> (Committed, Vec<Change>) {
    let mut versions = Vec::with_capacity(ops.len());
    let mut changes = Vec::new();
    for op in ops {
        match op {
            Op::Put { kind, id, body, .. } => {
                let key = (*kind, id.as_str());
                let version = docs.get(&key).copied().flatten().map_or(1, |v| v + 1);
                docs.insert(key, Some(version));
                writes
                    .finals
                    .insert(key, Final::Put(version, body.to_string()));
                *seq += 1;
                writes.log(*seq, kind, id, version, false);
                kinds.insert(kind, *seq);
                versions.push(Some(version));
                changes.push(Change {
                    seq: *seq,
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
                let key = (*kind, id.as_str());
                if let Some(version) = docs.get(&key).copied().flatten() {
                    docs.insert(key, None);
                    writes.finals.insert(key, Final::Deleted);
                    *seq += 1;
                    // A deletion logs the version the document had.
                    writes.log(*seq, kind, id, version, true);
                    kinds.insert(kind, *seq);
                    changes.push(Change {
                        seq: *seq,
                        kind: (*kind).to_owned(),
                        id: id.clone(),
                        doc: None,
                    });
                }
            }
            Op::Check { .. } | Op::KindUnchanged { .. } => versions.push(None),
        }
    }
    let committed = Committed {
        seq: changes.last().map_or(*seq, |c| c.seq),
        versions,
    };
    (committed, changes)
}

/// Publishes every change in sequence order, from the last one published.
async fn publish_loop(
    inner: Arc<Inner>,
    feed: broadcast::Sender<Arc<Change>>,
    wakeup: Arc<Wakeup>,
    mut published: u64,
) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = BTreeMap::new();
    loop {
        tokio::select! {
            _ = wakeup.notify.notified() => {}
            _ = poll.tick() => wakeup.external.store(true, Ordering::Release),
        }
        if let Err(error) = publish(&inner, &feed, &wakeup, &mut published, &mut pending).await {
            tracing::warn!(%error, "change feed: cannot read the change log; retrying");
            // Read it again at the next wake-up or poll.
            wakeup.external.store(true, Ordering::Release);
        }
    }
}

async fn publish(
    inner: &Inner,
    feed: &broadcast::Sender<Arc<Change>>,
    wakeup: &Wakeup,
    published: &mut u64,
    pending: &mut BTreeMap<u64, Change>,
) -> Result<(), StoreError> {
    let mut read_log = false;
    loop {
        pending.append(&mut wakeup.take_local());
        // Drop what the log already delivered, then publish this node's changes that come next.
        *pending = pending.split_off(&(*published + 1));
        while let Some(change) = pending.remove(&(*published + 1)) {
            *published = change.seq;
            let _ = feed.send(Arc::new(change));
        }
        read_log |= wakeup.external.swap(false, Ordering::AcqRel);
        if !read_log && pending.is_empty() {
            return Ok(());
        }
        // Changes of other nodes come before some of ours, or may have been committed.
        read_log = false;
        let changes = match bounded(
            "reading the change log",
            inner.changes_since(*published, PAGE),
        )
        .await?
        {
            Catchup::Changes { changes, .. } => changes,
            Catchup::TooFarBehind => {
                let oldest = bounded("reading the change log", inner.oldest_seq()).await?;
                let Some(oldest) = oldest else {
                    // Pruned and emptied meanwhile: read again at the next wake-up or poll.
                    wakeup.external.store(true, Ordering::Release);
                    return Ok(());
                };
                tracing::warn!(
                    published = *published,
                    oldest,
                    "change feed fell behind the change log; subscribers resync"
                );
                // The next change sent leaves a gap: each subscriber sees it and resyncs.
                *published = oldest - 1;
                read_log = true;
                continue;
            }
        };
        let full = changes.len() == PAGE;
        for change in changes {
            if change.seq <= *published {
                continue;
            }
            if change.seq != *published + 1 {
                tracing::warn!(
                    published = *published,
                    next = change.seq,
                    "change log has a gap; subscribers resync"
                );
            }
            // This node's own record of the change is the state it wrote; the log's is the latest.
            let change = pending.remove(&change.seq).unwrap_or(change);
            *published = change.seq;
            let _ = feed.send(Arc::new(change));
        }
        if full {
            read_log = true;
        } else if !pending.is_empty() && pending.keys().next() != Some(&(*published + 1)) {
            // Ours are committed, so the log has everything before them; not yet visible to this
            // read: try again at the next wake-up or poll.
            wakeup.external.store(true, Ordering::Release);
            return Ok(());
        }
    }
}

/// Keeps one connection listening for other nodes' notifications; reconnects with a backoff.
async fn listen_loop(
    config: tokio_postgres::Config,
    schema: String,
    instance: String,
    wakeup: Arc<Wakeup>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let error = listen(&config, &schema, &instance, &wakeup).await;
        tracing::warn!(%error, "change feed: the LISTEN connection was lost; reconnecting");
        // Whatever was committed meanwhile is in the log.
        wakeup.external();
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects, listens, and wakes the publisher on every notification of another writer of this
/// schema, until the connection fails.
async fn listen(
    config: &tokio_postgres::Config,
    schema: &str,
    instance: &str,
    wakeup: &Wakeup,
) -> String {
    let (client, mut connection) = match tokio::time::timeout(TIMEOUT, config.connect(NoTls)).await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return describe(&e),
        Err(_) => return "connection timed out".into(),
    };
    let sql = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&sql);
    tokio::pin!(listening);
    let deadline = tokio::time::sleep(TIMEOUT);
    tokio::pin!(deadline);
    let mut ready = false;
    loop {
        tokio::select! {
            result = &mut listening, if !ready => match result {
                Ok(()) => {
                    ready = true;
                    tracing::debug!("change feed: listening for other nodes' commits");
                    // Commits made before the LISTEN took effect are in the log.
                    wakeup.external();
                }
                Err(e) => return describe(&e),
            },
            () = &mut deadline, if !ready => return "LISTEN timed out".into(),
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let from_another_writer = n
                        .payload()
                        .split_once(':')
                        .is_some_and(|(writer, s)| s == schema && writer != instance);
                    if from_another_writer {
                        wakeup.external();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return describe(&e),
                None => return "connection closed".into(),
            },
        }
    }
}

/// Documents from rows of `id, version, body`.
fn rows_docs(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Doc>, StoreError> {
    let mut docs = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0).map_err(pg)?;
        let version: i64 = row.try_get(1).map_err(pg)?;
        let body: String = row.try_get(2).map_err(pg)?;
        docs.push(Doc {
            id,
            version: to_u64(version),
            body: parse_body(&body)?,
        });
    }
    Ok(docs)
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Doc>, StoreError> {
        bounded("get", async {
            let conn = self.inner.conn().await?;
            let c = conn.client()?;
            let stmt = c.prepare_cached(SQL_GET).await.map_err(pg)?;
            let row = c.query_opt(&stmt, &[&kind, &id]).await.map_err(pg)?;
            conn.release();
            let Some(row) = row else { return Ok(None) };
            let version: i64 = row.try_get(0).map_err(pg)?;
            let body: String = row.try_get(1).map_err(pg)?;
            Ok(Some(Doc {
                id: id.to_owned(),
                version: to_u64(version),
                body: parse_body(&body)?,
            }))
        })
        .await
    }

    async fn mget(&self, kind: Kind, ids: &[String]) -> Result<Vec<Option<Doc>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        bounded("mget", async {
            let conn = self.inner.conn().await?;
            let c = conn.client()?;
            let stmt = c.prepare_cached(SQL_MGET).await.map_err(pg)?;
            let rows = c.query(&stmt, &[&kind, &ids]).await.map_err(pg)?;
            conn.release();
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                let id: String = row.try_get(0).map_err(pg)?;
                let version: i64 = row.try_get(1).map_err(pg)?;
                let body: String = row.try_get(2).map_err(pg)?;
                found.insert(id, (to_u64(version), body));
            }
            ids.iter()
                .map(|id| {
                    found
                        .get(id)
                        .map(|(version, body)| {
                            Ok(Doc {
                                id: id.clone(),
                                version: *version,
                                body: parse_body(body)?,
                            })
                        })
                        .transpose()
                })
                .collect()
        })
        .await
    }

    async fn list(
        &self,
        kind: Kind,
        prefix: &str,
        from: u64,
        size: Option<u64>,
    ) -> Result<Page, StoreError> {
        bounded("list", async {
            let conn = self.inner.conn().await?;
            let c = conn.client()?;
            let count = c.prepare_cached(SQL_COUNT).await.map_err(pg)?;
            let list = c.prepare_cached(SQL_LIST).await.map_err(pg)?;
            // LIMIT NULL is no limit.
            let limit: Option<i64> = size.map(to_i64);
            let offset = to_i64(from);
            let count_params: [&(dyn ToSql + Sync); 2] = [&kind, &prefix];
            let list_params: [&(dyn ToSql + Sync); 4] = [&kind, &prefix, &limit, &offset];
            let (total, rows) = tokio::try_join!(
                c.query_one(&count, &count_params),
                c.query(&list, &list_params),
            )
            .map_err(pg)?;
            conn.release();
            let total: i64 = total.try_get(0).map_err(pg)?;
            Ok(Page {
                docs: rows_docs(rows)?,
                total: to_u64(total),
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
        bounded("list", async {
            let conn = self.inner.conn().await?;
            let c = conn.client()?;
            let limit = to_i64(size);
            let rows = match after {
                Some(after) => {
                    let stmt = c.prepare_cached(SQL_LIST_AFTER).await.map_err(pg)?;
                    c.query(&stmt, &[&kind, &prefix, &after, &limit]).await
                }
                None => {
                    let stmt = c.prepare_cached(SQL_LIST_FIRST).await.map_err(pg)?;
                    c.query(&stmt, &[&kind, &prefix, &limit]).await
                }
            }
            .map_err(pg)?;
            conn.release();
            rows_docs(rows)
        })
        .await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job { ops, reply })
            .map_err(|_| StoreError::Unavailable("the storage writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the storage writer stopped".into()))?
    }

    async fn snapshot(&self, kinds: &[Kind]) -> Result<Snapshot, StoreError> {
        bounded("snapshot", async {
            let conn = self.inner.conn().await?;
            let c = conn.client()?;
            let last_seq = c.prepare_cached(SQL_LAST_SEQ).await.map_err(pg)?;
            let docs = c.prepare_cached(SQL_SNAPSHOT).await.map_err(pg)?;
            // One snapshot for the sequence number and the documents (commits are serialized, so
            // it holds every change up to that number and none after); pipelined.
            let docs_params: [&(dyn ToSql + Sync); 1] = [&kinds];
            let (_, seq, rows, _) = tokio::try_join!(
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
                c.query_one(&last_seq, &[]),
                c.query(&docs, &docs_params),
                c.batch_execute("COMMIT"),
            )
            .map_err(pg)?;
            conn.release();
            let seq = to_u64(seq.try_get(0).map_err(pg)?);
            let mut by_kind: HashMap<String, Vec<Doc>> = HashMap::new();
            for row in rows {
                let kind: String = row.try_get(0).map_err(pg)?;
                let id: String = row.try_get(1).map_err(pg)?;
                let version: i64 = row.try_get(2).map_err(pg)?;
                let body: String = row.try_get(3).map_err(pg)?;
                by_kind.entry(kind).or_default().push(Doc {
                    id,
                    version: to_u64(version),
                    body: parse_body(&body)?,
                });
            }
            // In the order the kinds were asked for, each sorted by id.
            let mut docs = Vec::new();
            for kind in kinds {
                if let Some(list) = by_kind.remove(*kind) {
                    docs.extend(list.into_iter().map(|d| ((*kind).to_owned(), d)));
                }
            }
            Ok(Snapshot { seq, docs })
        })
        .await
    }

    fn subscribe(&self, after: u64) -> Feed {
        Feed::new(self.feed.subscribe(), after)
    }

    async fn changes_since(&self, after: u64, max: usize) -> Result<Catchup, StoreError> {
        bounded("changes_since", self.inner.changes_since(after, max)).await
    }

    async fn current_seq(&self) -> Result<u64, StoreError> {
        bounded("current_seq", self.inner.current_seq()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded("ping", async {
            let conn = self.inner.conn().await?;
            conn.client()?.simple_query("SELECT 1").await.map_err(pg)?;
            conn.release();
            Ok(())
        })
        .await
    }

    fn engine(&self) -> EngineInfo {
        EngineInfo {
            kind: "postgresql",
            version: self.version.clone(),
        }
    }

    fn applied(&self, seq: u64) {
        self.peers.applied(seq);
    }

    async fn peers_applied(&self, seq: u64, timeout: Duration) -> Vec<String> {
        self.peers.wait(seq, timeout).await
    }

    fn peers(&self) -> Vec<crate::peers::PeerState> {
        self.peers.live()
    }

    fn group_stats(&self) -> Option<(u64, u64)> {
        Some(self.inner.groups.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expect, FeedEvent, contract};
    use serde_json::json;

    const URL_VAR: &str = "TOLLGATE_TEST_PG_URL";

    fn ci() -> bool {
        std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// The test database's URL; without one, the test is skipped (and fails under CI).
    fn test_url(test: &str) -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                let message = format!("SKIPPED {test}: set {URL_VAR} to run the PostgreSQL tests");
                if ci() {
                    panic!("{message}");
                }
                println!("{message}");
                None
            }
        }
    }

    /// A schema of its own for one test, dropped by [`TestDb::finish`] (and before it is created,
    /// should an earlier run have left it).
    struct TestDb {
        base: tokio_postgres::Config,
        schema: String,
        admin: tokio_postgres::Client,
    }

    async fn admin_client(config: &tokio_postgres::Config) -> tokio_postgres::Client {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {}", describe(&e)));
        tokio::spawn(connection);
        client
    }

    async fn test_db(test: &str) -> Option<TestDb> {
        let url = test_url(test)?;
        let base = parse_url(&url).unwrap_or_else(|e| panic!("{URL_VAR}: {e}"));
        // Short enough for the listener's application name (`<schema>-<node>-listen`) to stay
        // within PostgreSQL's 63 bytes.
        let name: String = test
            .trim_start_matches("postgres_")
            .chars()
            .take(42)
            .collect();
        let schema = format!("tgt_{name}");
        let admin = admin_client(&base).await;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        Some(TestDb {
            base,
            schema,
            admin,
        })
    }

    impl TestDb {
        /// The configuration of one node: the test's schema, and an application name per node.
        fn config(&self, node: &str) -> tokio_postgres::Config {
            let mut config = self.base.clone();
            config.options(format!("-c search_path={}", self.schema));
            config.application_name(self.app(node));
            config
        }

        fn app(&self, node: &str) -> String {
            format!("{}-{node}", self.schema)
        }

        async fn store(&self, node: &str) -> PostgresStore {
            PostgresStore::open_config(self.config(node))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }

        async fn finish(self) {
            let _ = self
                .admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .await;
        }
    }

    macro_rules! contract_test {
        ($name:ident, $check:path) => {
            #[tokio::test]
            async fn $name() {
                let Some(db) = test_db(stringify!($name)).await else {
                    return;
                };
                let store = db.store("a").await;
                $check(&store).await;
                drop(store);
                db.finish().await;
            }
        };
    }

    contract_test!(postgres_versions_and_cas, contract::versions_and_cas);
    contract_test!(postgres_batches_are_atomic, contract::batches_are_atomic);
    contract_test!(postgres_kind_guard, contract::kind_guard);
    contract_test!(
        postgres_catchup_from_the_log,
        contract::catchup_from_the_log
    );
    contract_test!(postgres_listing_and_feed, contract::listing_and_feed);
    contract_test!(
        postgres_listing_is_in_byte_order,
        contract::listing_is_in_byte_order
    );
    contract_test!(postgres_listing_after_an_id, contract::listing_after_an_id);

    fn put(kind: Kind, id: &str, body: Value, expect: Expect) -> Op {
        Op::Put {
            kind,
            id: id.to_owned(),
            body,
            expect,
        }
    }

    /// The next `n` changes of `feed`, failing on a resync, a gap or a wait over 15 s.
    async fn next_changes(feed: &mut Feed, n: usize) -> Vec<Arc<Change>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(15), feed.next()).await {
                Ok(Some(FeedEvent::Change(c))) => out.push(c),
                Ok(other) => panic!("unexpected {other:?} after {} changes", out.len()),
                Err(_) => panic!("only {} of {n} changes arrived", out.len()),
            }
        }
        out
    }

    #[tokio::test]
    async fn postgres_lists_ids_in_byte_order_without_wildcards() {
        let Some(db) = test_db("postgres_lists_ids_in_byte_order_without_wildcards").await else {
            return;
        };
        let store = db.store("a").await;
        for id in ["b", "B", "é", "a_", "a%", "ab", "Z", "a"] {
            let ok = store
                .commit(vec![put("index", id, json!({}), Expect::Absent)])
                .await;
            assert!(ok.is_ok(), "{ok:?}");
        }
        let ids = |page: Result<Page, StoreError>| {
            page.map(|p| {
                (
                    p.total,
                    p.docs.into_iter().map(|d| d.id).collect::<Vec<_>>(),
                )
            })
        };
        let all = ids(store.list("index", "", 0, None).await);
        let expected: Vec<String> = ["B", "Z", "a", "a%", "a_", "ab", "b", "é"]
            .map(String::from)
            .into();
        assert_eq!(all, Ok((8, expected)));
        let prefixed = ids(store.list("index", "a_", 0, None).await);
        assert_eq!(prefixed, Ok((1, vec!["a_".to_owned()])));
        let prefixed = ids(store.list("index", "a%", 0, None).await);
        assert_eq!(prefixed, Ok((1, vec!["a%".to_owned()])));
        let page = ids(store.list("index", "a", 10, Some(2)).await);
        assert_eq!(page, Ok((4, Vec::new())));
        let got = store
            .mget("index", &["é".into(), "nope".into(), "é".into()])
            .await
            .map(|docs| docs.iter().map(Option::is_some).collect::<Vec<_>>());
        assert_eq!(got, Ok(vec![true, false, true]));
        assert_eq!(store.engine().kind, "postgresql");
        assert!(store.ping().await.is_ok());
        drop(store);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_groups_concurrent_batches_without_mixing_conflicts() {
        let Some(db) = test_db("postgres_groups_concurrent_batches_without_mixing_conflicts").await
        else {
            return;
        };
        let s = Arc::new(db.store("a").await);
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
                s.commit(vec![put("role", &format!("r{i}"), json!({"i": i}), expect)])
                    .await
            }));
        }
        let mut seqs = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(Ok(c)) => {
                    assert_eq!(i % 2, 0);
                    seqs.push(c.seq);
                }
                Ok(Err(StoreError::Conflict { index: 0 })) => assert_eq!(i % 2, 1),
                other => panic!("{other:?}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=32).collect::<Vec<u64>>());
        assert_eq!(s.list("role", "", 0, None).await.map(|p| p.total), Ok(32));
        assert_eq!(s.snapshot(&["role"]).await.map(|s| s.seq).ok(), Some(32));
        drop(s);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_batches_of_a_group_see_the_earlier_ones() {
        let Some(db) = test_db("postgres_batches_of_a_group_see_the_earlier_ones").await else {
            return;
        };
        let s = Arc::new(db.store("a").await);
        // Submitted together, these land in few groups: one creation wins, whatever the grouping.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                s.commit(vec![put("user", "same", json!({"i": i}), Expect::Absent)])
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(_)) => won += 1,
                Ok(Err(StoreError::Conflict { index: 0 })) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(won, 1);
        // One batch touching one document several times: every expectation holds against the
        // state before the batch, and versions follow each op.
        let c = s
            .commit(vec![
                put("role", "x", json!({"n": 1}), Expect::Absent),
                put("role", "x", json!({"n": 2}), Expect::Absent),
            ])
            .await
            .map(|c| c.versions);
        assert_eq!(c, Ok(vec![Some(1), Some(2)]));
        let c = s
            .commit(vec![
                put("role", "x", json!({"n": 3}), Expect::Version(2)),
                Op::Delete {
                    kind: "role",
                    id: "x".into(),
                    expect: Expect::Version(2),
                },
                put("role", "x", json!({"n": 4}), Expect::Present),
                Op::Delete {
                    kind: "role",
                    id: "gone".into(),
                    expect: Expect::Any,
                },
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.versions, vec![Some(3), None, Some(1), None]);
        let doc = s.get("role", "x").await.ok().flatten();
        assert_eq!(doc.map(|d| (d.version, d.body)), Some((1, json!({"n": 4}))));
        let rows = db
            .admin
            .query(
                &format!(
                    "SELECT version, deleted FROM {}.tollgate_changes WHERE id = 'x' ORDER BY seq",
                    db.schema
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        let log: Vec<(i64, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            log,
            vec![(1, false), (2, false), (3, false), (3, true), (1, false)]
        );
        assert_eq!(Ok(c.seq), s.current_seq().await);
        drop(s);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_one_group_merges_the_writes_of_its_batches() {
        let Some(db) = test_db("postgres_one_group_merges_the_writes_of_its_batches").await else {
            return;
        };
        let s = db.store("a").await;
        let base = s.current_seq().await.unwrap_or(u64::MAX);
        let mut feed = s.subscribe(base);
        let guard = Op::KindUnchanged {
            kind: "role",
            since: base,
        };
        let ghost = Op::Check {
            kind: "role",
            id: "ghost".into(),
            expect: Expect::Present,
        };
        let delete = Op::Delete {
            kind: "role",
            id: "d".into(),
            expect: Expect::Version(2),
        };
        // Polled once each in this order by one task, so all are queued before the writer runs:
        // one group, in which several batches write the same document.
        let (a, b, stale, del, again, failed, guarded) = tokio::join!(
            s.commit(vec![put("role", "d", json!({"n": 1}), Expect::Absent)]),
            s.commit(vec![put("role", "d", json!({"n": 2}), Expect::Version(1))]),
            s.commit(vec![put("role", "d", json!({"n": 0}), Expect::Version(1))]),
            s.commit(vec![delete]),
            s.commit(vec![put("role", "d", json!({"n": 3}), Expect::Absent)]),
            s.commit(vec![put("role", "e", json!({}), Expect::Any), ghost]),
            s.commit(vec![guard]),
        );
        assert_eq!(a.map(|c| c.versions), Ok(vec![Some(1)]));
        assert_eq!(b.map(|c| c.versions), Ok(vec![Some(2)]));
        assert_eq!(stale, Err(StoreError::Conflict { index: 0 }));
        assert_eq!(del.map(|c| c.versions), Ok(vec![None]));
        assert_eq!(
            again.map(|c| (c.seq, c.versions)),
            Ok((base + 4, vec![Some(1)]))
        );
        assert_eq!(failed, Err(StoreError::Conflict { index: 1 }));
        // The guard comes after changes of `role` in the same group: they are earlier batches.
        assert_eq!(guarded, Err(StoreError::Conflict { index: 0 }));
        let doc = s.get("role", "d").await.ok().flatten();
        assert_eq!(doc.map(|d| (d.version, d.body)), Some((1, json!({"n": 3}))));
        assert_eq!(s.get("role", "e").await, Ok(None));
        let rows = db
            .admin
            .query(
                &format!(
                    "SELECT seq, version, deleted, committed_at = MIN(committed_at) OVER () \
                     FROM {}.tollgate_changes WHERE seq > $1 ORDER BY seq",
                    db.schema
                ),
                &[&to_i64(base)],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        let log: Vec<(i64, i64, bool, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let b = to_i64(base);
        // Gap-free, in batch order, all from one transaction (one `now()`).
        assert_eq!(
            log,
            vec![
                (b + 1, 1, false, true),
                (b + 2, 2, false, true),
                (b + 3, 2, true, true),
                (b + 4, 1, false, true)
            ]
        );
        // In order, without gaps. (A change read back from the log, should the publisher read
        // it there, carries the document's latest state: only the last one is sure to be exact.)
        let seen = next_changes(&mut feed, 4).await;
        assert_eq!(
            seen.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![base + 1, base + 2, base + 3, base + 4]
        );
        assert_eq!(
            seen.last().and_then(|c| c.doc.as_ref()).map(|d| d.version),
            Some(1)
        );
        drop(s);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_pruned_log_answers_too_far_behind() {
        let Some(db) = test_db("postgres_pruned_log_answers_too_far_behind").await else {
            return;
        };
        let s = db.store("a").await;
        for i in 0..5 {
            let op = put("token", &format!("t{i}"), json!({}), Expect::Absent);
            assert!(s.commit(vec![op]).await.is_ok());
        }
        // As pruning does: the oldest entries go, the newest stay.
        db.admin
            .batch_execute(&format!(
                "DELETE FROM {}.tollgate_changes WHERE seq <= 2",
                db.schema
            ))
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert_eq!(s.changes_since(0, 10).await, Ok(Catchup::TooFarBehind));
        assert_eq!(s.changes_since(1, 10).await, Ok(Catchup::TooFarBehind));
        let Ok(Catchup::Changes { seq, changes }) = s.changes_since(2, 10).await else {
            panic!("no changes");
        };
        let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
        assert_eq!((seq, seqs), (5, vec![3, 4, 5]));
        drop(s);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_failed_commit_is_rolled_back_and_never_published() {
        let Some(db) = test_db("postgres_failed_commit_is_rolled_back_and_never_published").await
        else {
            return;
        };
        let s = db.store("a").await;
        assert!(
            s.commit(vec![put("profile", "a", json!({}), Expect::Absent)])
                .await
                .is_ok()
        );
        let mut feed = s.subscribe(1);
        s.fail_next_commits(1);
        let lost = s
            .commit(vec![put("profile", "lost", json!({}), Expect::Absent)])
            .await;
        assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");
        assert_eq!(s.get("profile", "lost").await, Ok(None));
        // The store goes on, and the feed stays continuous: the failed batch took no number.
        let next = s
            .commit(vec![put("profile", "b", json!({}), Expect::Absent)])
            .await
            .map(|c| c.seq);
        assert_eq!(next, Ok(2));
        let got = next_changes(&mut feed, 1).await;
        assert_eq!((got[0].seq, got[0].id.as_str()), (2, "b"));
        assert!(feed.try_next().is_none());
        let ids = s
            .list("profile", "", 0, None)
            .await
            .map(|p| p.docs.into_iter().map(|d| d.id).collect::<Vec<_>>());
        assert_eq!(ids, Ok(vec!["a".to_owned(), "b".to_owned()]));
        drop(s);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_nodes_starting_at_once_migrate_once() {
        let Some(db) = test_db("postgres_nodes_starting_at_once_migrate_once").await else {
            return;
        };
        let (a, b, c) = tokio::join!(
            PostgresStore::open_config(db.config("a")),
            PostgresStore::open_config(db.config("b")),
            PostgresStore::open_config(db.config("c")),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
        let rows = db
            .admin
            .query(
                &format!(
                    "SELECT version FROM {}.tollgate_schema_migrations ORDER BY version",
                    db.schema
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i32).collect::<Vec<_>>());
        drop((a, b, c));
        // Reopening applies nothing.
        let again = db.store("a").await;
        drop(again);
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_refuses_a_newer_schema() {
        let Some(db) = test_db("postgres_refuses_a_newer_schema").await else {
            return;
        };
        drop(db.store("a").await);
        db.admin
            .batch_execute(&format!(
                "INSERT INTO {}.tollgate_schema_migrations (version) VALUES (99)",
                db.schema
            ))
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        match PostgresStore::open_config(db.config("a")).await {
            Err(StoreError::Unavailable(text)) => assert!(text.contains("newer version"), "{text}"),
            other => panic!("{other:?}"),
        }
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_commit_on_one_node_reaches_the_other_nodes_feed_in_order() {
        let Some(db) =
            test_db("postgres_commit_on_one_node_reaches_the_other_nodes_feed_in_order").await
        else {
            return;
        };
        let a = db.store("a").await;
        let b = db.store("b").await;
        let base = b.current_seq().await.unwrap_or(u64::MAX);
        let mut feed_a = a.subscribe(base);
        let mut feed_b = b.subscribe(base);
        // Both nodes write, interleaved; both feeds carry every change, in one order.
        let mut expected = Vec::new();
        for i in 0..20 {
            let (node, name) = if i % 3 == 0 { (&b, "b") } else { (&a, "a") };
            let id = format!("{name}{i}");
            let c = node
                .commit(vec![put("user", &id, json!({"i": i}), Expect::Absent)])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            expected.push((c.seq, id));
        }
        for feed in [&mut feed_a, &mut feed_b] {
            let got: Vec<(u64, String)> = next_changes(feed, 20)
                .await
                .iter()
                .map(|c| (c.seq, c.id.clone()))
                .collect();
            assert_eq!(got, expected);
        }
        let seqs: Vec<u64> = expected.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (base + 1..=base + 20).collect::<Vec<_>>());
        // Notifications wake the other node at once: five changes, each waited for in turn, arrive
        // well within the time the poll alone would take for them (five periods of one second).
        let started = std::time::Instant::now();
        for i in 0..5 {
            let c = a
                .commit(vec![put(
                    "user",
                    &format!("n{i}"),
                    json!({}),
                    Expect::Absent,
                )])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let got = next_changes(&mut feed_b, 1).await;
            assert_eq!(got[0].seq, c.seq);
        }
        let took = started.elapsed();
        assert!(took < 2 * POLL, "{took:?}");
        // The body arrives with the change on the other node too.
        let Ok(Some(doc)) = b.get("user", "a1").await else {
            panic!("a1 missing on b");
        };
        assert_eq!(doc.body, json!({"i": 1}));
        drop((a, b));
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_concurrent_cas_on_two_nodes_loses_no_update() {
        let Some(db) = test_db("postgres_concurrent_cas_on_two_nodes_loses_no_update").await else {
            return;
        };
        let a = Arc::new(db.store("a").await);
        let b = Arc::new(db.store("b").await);
        assert!(
            a.commit(vec![put(
                "meta",
                "counter",
                json!({"n": 0}),
                Expect::Absent
            )])
            .await
            .is_ok()
        );
        let base = a.current_seq().await.unwrap_or(u64::MAX);
        const WORKERS: usize = 4;
        const INCREMENTS: u64 = 25;
        let mut tasks = Vec::new();
        for w in 0..2 * WORKERS {
            let node = if w % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                let mut conflicts = 0u32;
                while (seqs.len() as u64) < INCREMENTS {
                    let Ok(Some(doc)) = node.get("meta", "counter").await else {
                        panic!("counter missing");
                    };
                    let n = doc.body["n"].as_u64().unwrap_or(u64::MAX);
                    let op = put(
                        "meta",
                        "counter",
                        json!({"n": n + 1}),
                        Expect::Version(doc.version),
                    );
                    match node.commit(vec![op]).await {
                        Ok(c) => seqs.push(c.seq),
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (seqs, conflicts)
            }));
        }
        let mut seqs = Vec::new();
        let mut conflicts = 0;
        for t in tasks {
            let (s, c) = t.await.unwrap_or_else(|e| panic!("{e}"));
            seqs.extend(s);
            conflicts += c;
        }
        let total = 2 * WORKERS as u64 * INCREMENTS;
        let Ok(Some(doc)) = b.get("meta", "counter").await else {
            panic!("counter missing");
        };
        assert_eq!(doc.body, json!({"n": total}), "{conflicts} conflicts");
        assert_eq!(doc.version, total + 1);
        seqs.sort_unstable();
        assert_eq!(seqs, (base + 1..=base + total).collect::<Vec<_>>());
        // The log has every number once, in order.
        let Ok(Catchup::Changes { seq, changes }) = a.changes_since(base, 10_000).await else {
            panic!("no changes");
        };
        assert_eq!(seq, base + total);
        let logged: Vec<u64> = changes.iter().map(|c| c.seq).collect();
        assert_eq!(logged, (base + 1..=base + total).collect::<Vec<_>>());
        drop((a, b));
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_kind_guard_sees_the_other_nodes_writes() {
        let Some(db) = test_db("postgres_kind_guard_sees_the_other_nodes_writes").await else {
            return;
        };
        let a = db.store("a").await;
        let b = db.store("b").await;
        let since = b.current_seq().await.unwrap_or(u64::MAX);
        let guard = |kind| Op::KindUnchanged { kind, since };
        assert!(b.commit(vec![guard("user")]).await.is_ok());
        assert!(
            a.commit(vec![put("user", "u", json!({}), Expect::Any)])
                .await
                .is_ok()
        );
        assert_eq!(
            b.commit(vec![guard("role"), guard("user")]).await,
            Err(StoreError::Conflict { index: 1 })
        );
        assert!(b.commit(vec![guard("role")]).await.is_ok());
        drop((a, b));
        db.finish().await;
    }

    /// The backend pids of the LISTEN connection of `app`.
    async fn listen_pids(db: &TestDb, app: &str) -> Vec<i32> {
        let rows = db
            .admin
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = $1 AND query LIKE 'LISTEN%'",
                &[&format!("{app}-listen")],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn wait_for_listener(db: &TestDb, app: &str, not: &[i32]) -> Vec<i32> {
        for _ in 0..1000 {
            let pids = listen_pids(db, app).await;
            if !pids.is_empty() && pids.iter().all(|p| !not.contains(p)) {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no LISTEN connection for {app}");
    }

    #[tokio::test]
    async fn postgres_feed_survives_a_lost_listen_connection() {
        let Some(db) = test_db("postgres_feed_survives_a_lost_listen_connection").await else {
            return;
        };
        let a = db.store("a").await;
        let b = db.store("b").await;
        let app_b = db.app("b");
        let first = wait_for_listener(&db, &app_b, &[]).await;
        let base = b.current_seq().await.unwrap_or(u64::MAX);
        let mut feed = b.subscribe(base);
        let write = |from: usize, to: usize| {
            let a = &a;
            async move {
                for i in from..to {
                    let ok = a
                        .commit(vec![put(
                            "token",
                            &format!("t{i}"),
                            json!({}),
                            Expect::Absent,
                        )])
                        .await;
                    assert!(ok.is_ok(), "{ok:?}");
                }
            }
        };
        write(0, 10).await;
        // Cut B's LISTEN connection while A goes on writing.
        let (_, killed) = tokio::join!(write(10, 30), async {
            db.admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = $1 AND query LIKE 'LISTEN%'",
                    &[&format!("{app_b}-listen")],
                )
                .await
                .map(|rows| rows.len())
        });
        assert_eq!(killed.ok(), Some(first.len()));
        write(30, 40).await;
        let got: Vec<u64> = next_changes(&mut feed, 40)
            .await
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(got, (base + 1..=base + 40).collect::<Vec<_>>());
        // It listens again on a new connection, and notifications flow again.
        wait_for_listener(&db, &app_b, &first).await;
        write(40, 45).await;
        let got: Vec<u64> = next_changes(&mut feed, 5)
            .await
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(got, (base + 41..=base + 45).collect::<Vec<_>>());
        drop((a, b));
        db.finish().await;
    }

    #[tokio::test]
    async fn postgres_unreachable_database_is_unavailable_quickly() {
        // No database needed: nothing listens on port 1.
        let started = std::time::Instant::now();
        let result =
            PostgresStore::open("postgres://tollgate:s3cret-pw@127.0.0.1:1/tollgate").await;
        match result {
            Err(StoreError::Unavailable(text)) => {
                assert!(!text.contains("s3cret-pw"), "{text}");
                assert!(text.contains("127.0.0.1"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
    }

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(parse_url("postgres://u:p@localhost:5432/db").is_ok());
        assert!(parse_url("host=localhost user=u password=p dbname=db").is_ok());
        let tls = parse_url("postgres://u@localhost/db?sslmode=require");
        assert!(tls.is_err_and(|e| e.contains("TLS")));
        assert!(parse_url("postgres://u@localhost/db?nonsense=1").is_err());
        for (url, redacted) in [
            (
                "postgres://user:pa:ss@host:5432/db?sslmode=disable",
                "postgres://user:***@host:5432/db?sslmode=disable",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            (
                "postgresql://host/db?user=u&password=secret&x=1",
                "postgresql://host/db?user=u&password=***&x=1",
            ),
            (
                "host=h password = 'se cr\\'et' user=u",
                "host=h password = *** user=u",
            ),
            ("host=h password=secret", "host=h password=***"),
        ] {
            assert_eq!(redact_url(url), redacted);
        }
    }

    /// Durable commits per second with 1 and 32 committers, PostgreSQL and SQLite; prints them.
    /// `cargo test -p tollgate-storage --release -- --ignored --nocapture commit_rates`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn commit_rates() {
        async fn rate(store: Arc<dyn Store>, committers: usize, per: usize) -> f64 {
            let started = std::time::Instant::now();
            let mut tasks = Vec::new();
            for w in 0..committers {
                let store = Arc::clone(&store);
                tasks.push(tokio::spawn(async move {
                    for i in 0..per {
                        let op = put("token", &format!("w{w}-{i}"), json!({"i": i}), Expect::Any);
                        if let Err(e) = store.commit(vec![op]).await {
                            panic!("{e}");
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap_or_else(|e| panic!("{e}"));
            }
            (committers * per) as f64 / started.elapsed().as_secs_f64()
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sqlite: Arc<dyn Store> = Arc::new(
            crate::sqlite::SqliteStore::open(dir.path(), crate::sqlite::Durability::Full)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let s1 = rate(Arc::clone(&sqlite), 1, 2000).await;
        let s32 = rate(Arc::clone(&sqlite), 32, 500).await;
        println!("sqlite (synchronous=FULL): 1 committer {s1:.0}/s, 32 committers {s32:.0}/s");
        let Some(db) = test_db("commit_rates").await else {
            return;
        };
        let pg: Arc<dyn Store> = Arc::new(db.store("a").await);
        let p1 = rate(Arc::clone(&pg), 1, 2000).await;
        let p32 = rate(Arc::clone(&pg), 32, 500).await;
        println!("postgresql: 1 committer {p1:.0}/s, 32 committers {p32:.0}/s");
        drop(pg);
        db.finish().await;
    }
}
