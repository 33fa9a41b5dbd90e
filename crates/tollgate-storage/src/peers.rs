//! The other nodes sharing a PostgreSQL store, and which change each has applied: what lets a node
//! answer a write only once every live node would follow it (a profile updated through node A
//! governs the very next request on node B).
//!
//! Each node keeps one more connection, which `LISTEN`s on [`CHANNEL`] and sends there, with
//! `pg_notify`, the sequence number its cache has applied: whenever it moves, and every
//! [`HEARTBEAT`] in any case. A node heard from within [`LIVE`] is live; one that stops (its
//! connection closed, `bye` sent on drop) or stops answering leaves the set. Payloads:
//! `<schema> <node> <seq>` and `<schema> <node> bye`; other schemas (other deployments in the same
//! database) are ignored. Nothing here decides what is stored: it only tells a writer how long to
//! wait before answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

/// The `NOTIFY` channel of the applied sequence numbers.
pub const CHANNEL: &str = "tollgate_applied";
/// How often a node says where it stands, changes or not.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long is no longer waited for.
pub const LIVE: Duration = Duration::from_secs(3);
/// Bounds on connecting, on each statement, and the reconnection backoff.
const TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What this node knows of another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub node: String,
    /// The last sequence number it reported applied.
    pub applied: u64,
    /// Milliseconds since it was last heard from.
    pub heard_ms: u64,
}

#[derive(Debug)]
struct Peer {
    applied: u64,
    heard: Instant,
}

#[derive(Debug)]
struct Shared {
    schema: String,
    node: String,
    /// This node's applied sequence number, as last reported by its cache.
    applied: AtomicU64,
    /// Wakes the sender when `applied` moves, or to say `bye`.
    wake: Notify,
    closing: std::sync::atomic::AtomicBool,
    peers: Mutex<HashMap<String, Peer>>,
    /// Bumped on every change of `peers`, for the waiters.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        // A panic while the map was held cannot leave it inconsistent (plain inserts/removes).
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn heard(&self, payload: &str) {
        let mut parts = payload.split(' ');
        let (Some(schema), Some(node), Some(what), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if schema != self.schema || node == self.node {
            return;
        }
        {
            let mut peers = self.peers();
            if what == "bye" {
                peers.remove(node);
            } else if let Ok(applied) = what.parse::<u64>() {
                let peer = peers.entry(node.to_owned()).or_insert(Peer {
                    applied,
                    heard: Instant::now(),
                });
                peer.applied = peer.applied.max(applied);
                peer.heard = Instant::now();
            } else {
                return;
            }
        }
        self.bump();
    }

    /// The live nodes that have not applied `seq`.
    fn behind(&self, seq: u64) -> Vec<String> {
        let now = Instant::now();
        self.peers()
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) < LIVE && p.applied < seq)
            .map(|(node, _)| node.clone())
            .collect()
    }
}

/// The other nodes of a PostgreSQL store. Dropping it says `bye` to them and closes its connection.
#[derive(Debug)]
pub struct Peers {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Peers {
    /// Starts following the nodes of `schema` as node `node` (a connection of its own, named
    /// `<application_name>-peers`).
    pub fn start(mut config: tokio_postgres::Config, schema: String, node: String) -> Self {
        let app = config.get_application_name().unwrap_or("tollgate");
        let app = format!("{app}-peers");
        config.application_name(app);
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            schema,
            node,
            applied: AtomicU64::new(0),
            wake: Notify::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            changed,
        });
        let task = tokio::spawn(run(config, Arc::clone(&shared)));
        Self { shared, task }
    }

    /// This node has applied every change up to `seq`.
    pub fn applied(&self, seq: u64) {
        if self.shared.applied.fetch_max(seq, Ordering::AcqRel) < seq {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every live node has applied `seq`, at most `timeout`; returns the nodes that
    /// still had not (empty: all had, or there is no other node).
    pub async fn wait(&self, seq: u64, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut changed = self.shared.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let behind = self.shared.behind(seq);
            if behind.is_empty() {
                return behind;
            }
            // A live node that is behind is waited for until it catches up or the time runs out
            // (it then stops counting as live within `LIVE`, if it is gone).
            let wake = deadline.min(Instant::now() + LIVE);
            match tokio::time::timeout_at(wake, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return behind,
                Err(_) if Instant::now() >= deadline => return self.shared.behind(seq),
                Err(_) => {}
            }
        }
    }

    /// The other nodes heard from within [`LIVE`].
    pub fn live(&self) -> Vec<PeerState> {
        let now = Instant::now();
        let mut peers: Vec<PeerState> = self
            .shared
            .peers()
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) < LIVE)
            .map(|(node, p)| PeerState {
                node: node.clone(),
                applied: p.applied,
                heard_ms: u64::try_from(now.duration_since(p.heard).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect();
        peers.sort_by(|a, b| a.node.cmp(&b.node));
        peers
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        // The task says `bye` and ends by itself; should it be stuck, it ends at its next timeout.
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if tokio::runtime::Handle::try_current().is_err() {
            self.task.abort();
        }
    }
}

/// Keeps the connection up (reconnecting with a backoff) until the store is dropped.
async fn run(config: tokio_postgres::Config, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let outcome = session(&config, &shared).await;
        // Nobody can be heard while disconnected: waiting for them would only slow every write.
        shared.peers().clear();
        shared.bump();
        match outcome {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "peers: connection lost; reconnecting"),
        }
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shared.wake.notified() => {}
        }
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// One connection's life: listen, report, hear. `Ok` once `bye` is said.
async fn session(config: &tokio_postgres::Config, shared: &Shared) -> Result<(), String> {
    let (client, mut connection) = bounded("connect", config.connect(NoTls)).await?;
    let (heard, mut hear) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if heard.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let result = async {
        bounded("listen", client.batch_execute(&format!("LISTEN {CHANNEL}"))).await?;
        let say = |what: String| {
            let payload = format!("{} {} {what}", shared.schema, shared.node);
            let client = &client;
            async move {
                bounded(
                    "notify",
                    client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]),
                )
                .await
                .map(|_| ())
            }
        };
        let mut said = None;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if shared.closing.load(Ordering::Acquire) {
                return say("bye".into()).await;
            }
            tokio::select! {
                payload = hear.recv() => match payload {
                    Some(payload) => shared.heard(&payload),
                    None => return Err("connection closed".to_owned()),
                },
                () = shared.wake.notified() => {
                    let applied = shared.applied.load(Ordering::Acquire);
                    if said != Some(applied) && !shared.closing.load(Ordering::Acquire) {
                        say(applied.to_string()).await?;
                        said = Some(applied);
                    }
                }
                _ = heartbeat.tick() => {
                    let applied = shared.applied.load(Ordering::Acquire);
                    say(applied.to_string()).await?;
                    said = Some(applied);
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let (changed, _) = watch::channel(0);
        Shared {
            schema: "s".into(),
            node: "me".into(),
            applied: AtomicU64::new(0),
            wake: Notify::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            changed,
        }
    }

    #[test]
    fn payloads_of_other_nodes_of_the_schema_count_and_nothing_else() {
        let s = shared();
        for ignored in [
            "",
            "s",
            "s b",
            "s b x",
            "s b 1 2",
            "other b 5",
            "s me 5",
            "s b -1",
        ] {
            s.heard(ignored);
        }
        assert!(s.peers().is_empty());
        s.heard("s b 5");
        s.heard("s b 3");
        assert_eq!(s.behind(5), Vec::<String>::new());
        assert_eq!(s.behind(6), vec!["b".to_owned()]);
        s.heard("s b bye");
        assert_eq!(s.behind(6), Vec::<String>::new());
    }
}
