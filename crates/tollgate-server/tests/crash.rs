//! Crash safety of durable writes: the `tollgate` binary on a SQLite data directory
//! (`synchronous = "full"`, the default), several WebSocket clients sending
//! `security:updateProfile` with `retryOnConflict` to a few profiles, SIGKILL at a random moment,
//! a restart on the same data directory, and a check that every acknowledged write is there.
//!
//! Every update is derived from one counter: writer `w` sending its update number `c` writes
//! `rateLimit` = c, a policy restricted to collection `w<w>-<c>`, its own key `w<w>` = c, and
//! `last` = `"w<w>-<c>"`. After each restart, for every profile:
//!
//! - its `_version` is at least the highest version ever acknowledged for it;
//! - `rateLimit`, the policy and `w<w>` agree with `last` (nothing half-applied);
//! - each writer's key is at least the counter of that writer's last acknowledged update of the
//!   profile (no acknowledged update lost, by the crash or by the merge), and at most the last it
//!   sent (nothing invented);
//! - when the current version is one that was acknowledged, the stored profile is byte for byte the
//!   one the acknowledgement carried.
//!
//! `TOLLGATE_CRASH_CYCLES` (default 5) sets the number of kill/restart cycles and
//! `TOLLGATE_CRASH_SEED` the random seed (printed at the start, so a failing schedule can be run
//! again). The documented run: `TOLLGATE_CRASH_CYCLES=200 cargo test -p tollgate-server --test crash
//! -- --nocapture`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const PROFILES: usize = 3;
const WRITERS: usize = 8;
/// How long any single step (a start, an answer) may take before the test fails.
const STEP: Duration = Duration::from_secs(60);

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value}: {e}")),
    )
}

fn profile_id(p: usize) -> String {
    format!("crash-{p}")
}

/// The body of update `c` of writer `w`.
fn update_body(w: usize, c: u64) -> Value {
    json!({
        "rateLimit": c,
        "policies": [{"roleId":"default","restrictedTo":[{"index":"crash","collections":[format!("w{w}-{c}")]}]}],
        format!("w{w}"): c,
        "last": format!("w{w}-{c}"),
    })
}

/// A running `tollgate` process; its stderr is drained by a thread (the last lines are kept for
/// failure messages).
struct Node {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
    panicked: Arc<AtomicBool>,
}

impl Node {
    fn tail(&self) -> String {
        tail(&self.logs)
    }
}

/// A failing assertion must not leave a server running: the process is killed with its `Node`.
impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(logs: &Mutex<VecDeque<String>>) -> String {
    logs.lock()
        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// A process just spawned: `addr` resolves once it reports its address.
struct Spawned {
    child: Child,
    addr: tokio::sync::oneshot::Receiver<SocketAddr>,
    logs: Arc<Mutex<VecDeque<String>>>,
    panicked: Arc<AtomicBool>,
}

fn spawn(dir: &Path) -> Spawned {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--log-level", "warn,tollgate_server=info"])
        .arg("--data-dir")
        .arg(dir)
        .args(["--node-id", "knode-crash"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let logs = Arc::new(Mutex::new(VecDeque::new()));
    let panicked = Arc::new(AtomicBool::new(false));
    let stderr = child
        .stderr
        .take()
        .unwrap_or_else(|| panic!("no stderr pipe"));
    {
        let (logs, panicked) = (Arc::clone(&logs), Arc::clone(&panicked));
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("panicked") {
                    panicked.store(true, Ordering::Relaxed);
                }
                let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
                if parsed["fields"]["message"] == "tollgate is listening (HTTP and WebSocket)" {
                    let addr = parsed["fields"]["addr"]
                        .as_str()
                        .and_then(|a| a.parse().ok());
                    if let (Some(addr), Some(tx)) = (addr, tx.take()) {
                        let _ = tx.send(addr);
                    }
                }
                if let Ok(mut logs) = logs.lock() {
                    logs.push_back(line);
                    if logs.len() > 50 {
                        logs.pop_front();
                    }
                }
            }
        });
    }
    Spawned {
        child,
        addr: rx,
        logs,
        panicked,
    }
}

/// Starts the binary on `dir` and waits until it reports its address.
async fn start(dir: &Path) -> Node {
    let Spawned {
        child,
        addr,
        logs,
        panicked,
    } = spawn(dir);
    match tokio::time::timeout(STEP, addr).await {
        Ok(Ok(addr)) => Node {
            child,
            addr,
            logs,
            panicked,
        },
        _ => {
            let mut child = child;
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "the server did not start on {} (exit: {status:?}); its last logs:\n{}",
                dir.display(),
                tail(&logs)
            );
        }
    }
}

/// A WebSocket client whose calls fail (instead of panicking) when the server goes away.
struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    n: u64,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let (ws, _) = tokio::time::timeout(
            STEP,
            tokio_tungstenite::connect_async(format!("ws://{addr}/")),
        )
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok(Self { ws, n: 0 })
    }

    async fn call(&mut self, mut request: Value) -> Result<Value, String> {
        self.n += 1;
        let id = format!("r{}", self.n);
        request["requestId"] = json!(id);
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let answer: Value =
                        serde_json::from_str(&t).map_err(|e| format!("not JSON ({e}): {t}"))?;
                    if answer["requestId"] == id {
                        return Ok(answer);
                    }
                }
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                    return Err("connection closed".into());
                }
                Ok(Some(Ok(_))) => continue,
                Err(_) => return Err(format!("no answer within {STEP:?}")),
            }
        }
    }
}

/// One acknowledged update.
struct Ack {
    profile: usize,
    version: u64,
    writer: usize,
    counter: u64,
    /// The acknowledged `result`, serialized (key order included).
    result: String,
}

/// What the writers of one cycle saw.
#[derive(Default)]
struct Seen {
    acks: Vec<Ack>,
    refused: u64,
    unexpected: Vec<String>,
}

/// State carried across cycles.
struct History {
    /// Next counter of each writer (counters only grow, across cycles).
    next: Vec<Arc<AtomicU64>>,
    /// Per profile: the highest acknowledged version, and the profile as last verified.
    max_version: Vec<u64>,
    /// Per (profile, writer): the counter of the writer's last acknowledged update.
    max_acked: BTreeMap<(usize, usize), u64>,
    /// Per profile: the `result` read after the last restart (it was durable then).
    verified: Vec<Option<(u64, String)>>,
}

async fn writer(
    addr: SocketAddr,
    w: usize,
    seed: u64,
    next: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(mut ws) = Ws::connect(addr).await else {
        return; // killed before this writer connected
    };
    loop {
        let profile = rng.random_range(0..PROFILES);
        let c = next.fetch_add(1, Ordering::Relaxed);
        let request = json!({"controller":"security","action":"updateProfile",
            "_id":profile_id(profile),"body":update_body(w, c),"force":true,
            "retryOnConflict":100,"refresh":"wait_for"});
        let Ok(answer) = ws.call(request).await else {
            return; // the process is gone: this update is neither acknowledged nor refused
        };
        let Ok(mut record) = seen.lock() else { return };
        match answer["status"].as_u64() {
            Some(200) => {
                let result = &answer["result"];
                match result["_version"].as_u64() {
                    Some(version) if result["_source"]["last"] == format!("w{w}-{c}") => {
                        record.acks.push(Ack {
                            profile,
                            version,
                            writer: w,
                            counter: c,
                            result: result.to_string(),
                        });
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => record
                        .unexpected
                        .push(format!("w{w}-{c}: acknowledged {answer}")),
                }
            }
            Some(500) if answer["error"]["id"] == "services.storage.too_many_changes" => {
                record.refused += 1;
            }
            _ => record.unexpected.push(format!("w{w}-{c}: {answer}")),
        }
    }
}

/// Checks one profile after a restart; returns how many of `acks` it proves present, and whether
/// its current version was an acknowledged one (then compared byte for byte).
fn check_profile(
    p: usize,
    doc: &Value,
    acks: &[&Ack],
    history: &History,
    context: &str,
) -> (u64, bool) {
    let id = profile_id(p);
    assert_eq!(doc["status"], 200, "{context}: {id}: {doc}");
    let result = &doc["result"];
    let version = result["_version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{context}: {id}: no _version: {doc}"));
    let source = &result["_source"];
    assert!(
        version >= history.max_version[p],
        "{context}: {id} is at version {version} after the restart, but version {} was \
         acknowledged: an acknowledged write was lost",
        history.max_version[p]
    );
    // The document agrees with itself: every field comes from the update named by `last`.
    let last = source["last"].as_str().unwrap_or("");
    let parsed = last
        .strip_prefix('w')
        .and_then(|l| l.split_once('-'))
        .and_then(|(w, c)| Some((w.parse::<usize>().ok()?, c.parse::<u64>().ok()?)));
    if let Some((w, c)) = parsed {
        let body = update_body(w, c);
        assert_eq!(
            source["rateLimit"], body["rateLimit"],
            "{context}: {id} half-applied: {doc}"
        );
        assert_eq!(
            source["policies"], body["policies"],
            "{context}: {id} half-applied: {doc}"
        );
        assert_eq!(
            source[format!("w{w}")],
            c,
            "{context}: {id} half-applied: {doc}"
        );
    } else {
        // Only the profile as first created has no `last`.
        assert_eq!(
            source["policies"],
            json!([{"roleId":"default"}]),
            "{context}: {id}: {doc}"
        );
    }
    // Every writer's key holds at least its last acknowledged update, and nothing it never sent.
    for w in 0..WRITERS {
        let stored = source[format!("w{w}")].as_u64();
        if let Some(&acked) = history.max_acked.get(&(p, w)) {
            assert!(
                stored.is_some_and(|s| s >= acked),
                "{context}: {id}: w{w} is {stored:?} after the restart, but w{w}-{acked} was \
                 acknowledged: an acknowledged write was lost ({doc})"
            );
        }
        let sent = history.next[w].load(Ordering::Relaxed);
        assert!(
            stored.is_none_or(|s| s < sent),
            "{context}: {id}: w{w} is {stored:?}, never sent ({doc})"
        );
    }
    // The current version, if acknowledged, is exactly what its acknowledgement carried.
    let current = result.to_string();
    let mut exact = false;
    for a in acks.iter().filter(|a| a.version == version) {
        assert_eq!(
            current, a.result,
            "{context}: {id} at version {version} differs from its acknowledgement (w{}-{})",
            a.writer, a.counter
        );
        exact = true;
    }
    if let Some((v, before)) = &history.verified[p]
        && *v == version
    {
        assert_eq!(
            &current, before,
            "{context}: {id} changed without a new version"
        );
    }
    let proven = acks
        .iter()
        .filter(|a| a.version <= version)
        .filter(|a| source[format!("w{}", a.writer)].as_u64() >= Some(a.counter))
        .count() as u64;
    (proven, exact)
}

async fn read_profiles(addr: SocketAddr) -> Vec<Value> {
    let mut ws = Ws::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect after restart: {e}"));
    let mut docs = Vec::new();
    for p in 0..PROFILES {
        let doc = ws
            .call(json!({"controller":"security","action":"getProfile","_id":profile_id(p)}))
            .await
            .unwrap_or_else(|e| panic!("getProfile after restart: {e}"));
        docs.push(doc);
    }
    docs
}

/// A second process on the same data directory is refused, and the first keeps serving.
async fn second_process_is_refused(dir: &Path, first: &Node) {
    let Spawned {
        child: mut second,
        mut addr,
        logs,
        ..
    } = spawn(dir);
    // Until it exits, or reports that it listens (refused: it never does), at most STEP.
    let deadline = tokio::time::Instant::now() + STEP;
    let (status, listened) = loop {
        if addr.try_recv().is_ok() {
            break (None, true);
        }
        match second.try_wait() {
            Ok(Some(status)) => break (Some(status), false),
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => break (None, false),
        }
    };
    if status.is_none() {
        let _ = second.kill();
        let _ = second.wait();
    }
    assert!(
        status.is_some_and(|s| !s.success()) && !listened,
        "a second process on the same data directory was not refused (exit {status:?}, \
         listened: {listened}); its logs:\n{}",
        tail(&logs)
    );
    let docs = read_profiles(first.addr).await;
    assert!(docs.iter().all(|d| d["status"] == 200), "{docs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_profile_acknowledged_writes_survive_sigkill() {
    let cycles = env_u64("TOLLGATE_CRASH_CYCLES").unwrap_or(5);
    let seed = env_u64("TOLLGATE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    eprintln!("crash: TOLLGATE_CRASH_SEED={seed} TOLLGATE_CRASH_CYCLES={cycles}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");

    let mut node = start(&data).await;
    {
        let mut ws = Ws::connect(node.addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        for p in 0..PROFILES {
            let r = ws
                .call(
                    json!({"controller":"security","action":"createProfile","_id":profile_id(p),
                    "body":{"policies":[{"roleId":"default"}]}}),
                )
                .await
                .unwrap_or_else(|e| panic!("createProfile: {e}"));
            assert_eq!(r["status"], 200, "{r}");
        }
    }
    second_process_is_refused(&data, &node).await;

    let mut history = History {
        next: (0..WRITERS).map(|_| Arc::new(AtomicU64::new(1))).collect(),
        max_version: vec![1; PROFILES],
        max_acked: BTreeMap::new(),
        verified: vec![None; PROFILES],
    };
    let (mut acknowledged, mut verified, mut exact, mut beyond, mut refused) = (0u64, 0, 0, 0, 0);
    for cycle in 0..cycles {
        let context = format!("cycle {cycle} (TOLLGATE_CRASH_SEED={seed})");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acked = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            writers.push(tokio::spawn(writer(
                node.addr,
                w,
                rng.random(),
                Arc::clone(&history.next[w]),
                Arc::clone(&acked),
                Arc::clone(&seen),
            )));
        }
        // The kill comes after a random number of acknowledgements (0: while the writers
        // connect), plus a random fraction of a millisecond or two.
        let target = rng.random_range(0..=150u64);
        let jitter = Duration::from_micros(rng.random_range(0..2000));
        let deadline = tokio::time::Instant::now() + STEP;
        while acked.load(Ordering::Relaxed) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{context}: only {} of {target} writes acknowledged within {STEP:?}; logs:\n{}",
                acked.load(Ordering::Relaxed),
                node.tail()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        std::thread::sleep(jitter);
        node.child
            .kill()
            .unwrap_or_else(|e| panic!("{context}: SIGKILL: {e}"));
        let _ = node.child.wait();
        assert!(
            !node.panicked.load(Ordering::Relaxed),
            "{context}: the server panicked:\n{}",
            node.tail()
        );
        for w in writers {
            w.await.unwrap_or_else(|e| panic!("{context}: writer: {e}"));
        }
        let seen = std::mem::take(
            &mut *seen
                .lock()
                .unwrap_or_else(|e| panic!("{context}: writers' record: {e}")),
        );
        assert!(
            seen.unexpected.is_empty(),
            "{context}: unexpected answers: {:?}",
            seen.unexpected
        );
        for a in &seen.acks {
            history.max_version[a.profile] = history.max_version[a.profile].max(a.version);
            let m = history.max_acked.entry((a.profile, a.writer)).or_default();
            *m = (*m).max(a.counter);
        }

        node = start(&data).await;
        let docs = read_profiles(node.addr).await;
        for (p, doc) in docs.iter().enumerate() {
            let acks: Vec<&Ack> = seen.acks.iter().filter(|a| a.profile == p).collect();
            let (proven, was_exact) = check_profile(p, doc, &acks, &history, &context);
            verified += proven;
            exact += u64::from(was_exact);
            let version = doc["result"]["_version"].as_u64().unwrap_or(0);
            beyond += version - history.max_version[p];
            history.max_version[p] = version;
            history.verified[p] = Some((version, doc["result"].to_string()));
        }
        acknowledged += seen.acks.len() as u64;
        refused += seen.refused;
        assert_eq!(
            verified, acknowledged,
            "{context}: some acknowledged writes are not proven present"
        );
    }
    drop(node);
    eprintln!(
        "crash: {cycles} cycles, {acknowledged} writes acknowledged, {verified} verified after a \
         restart ({exact} times the current version was an acknowledged one and matched byte for \
         byte), {beyond} unacknowledged writes found applied, {refused} refused \
         (too_many_changes); TOLLGATE_CRASH_SEED={seed}"
    );
}
