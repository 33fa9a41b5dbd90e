//! `tollgate-soak`: a bounded soak run against a running Tollgate server on a loopback address.
//!
//! It creates what it needs first (the first admin with `reset` unless an admin exists, a role and
//! a profile `soak-user` granting `security:getProfile`/`updateProfile`, `server:now` and the `auth`
//! actions, one profile per worker to write, and a user `soak-user`), then runs mixed load until
//! `--duration` seconds have passed:
//!
//! - WebSocket and HTTP workers, each a keep-alive connection re-opened every `--reconnect-every`
//!   requests, sending `security:getProfile`, `server:now` and `security:updateProfile` (on the
//!   worker's own profile, so no update conflicts) as `soak-user`, paced to `--rate` requests per
//!   second in all (0: as fast as answers come);
//! - a login task, every `--login-interval-ms`: `auth:login` alternately over HTTP and over a new
//!   WebSocket, `auth:checkToken` of the new token, and `auth:logout` of the token it retires (the
//!   20 newest are kept in use), whose `checkToken` must then say `valid: false`. A login that
//!   returns a token already in use (two logins in one second) is counted as `same_token_again`.
//!
//! Every answer must be the expected one (status 200, and the result checked where it says
//! something); anything else, a timeout (10 s) or a failed connection is an unexpected error. The
//! server's VmRSS (`/proc/<pid>/status`) is read at the start, every 10 s, and at the end. Prints
//! one JSON line on stdout; exits with 1 when there was any unexpected error, 2 when it could not
//! set up.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tollgate_bench::{HttpSender, WsStream, http_connect, room, rss_kib, ws_connect};

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the workers may take to stop once the duration is over.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Tokens kept in use; the one pushed out is logged out.
const TOKENS_IN_USE: usize = 20;
/// Unexpected errors quoted in the report.
const QUOTED: usize = 10;
const USER: &str = "soak-user";
const USER_PASSWORD: &str = "soak-user-password";

#[derive(Debug, Clone, Parser)]
#[command(about = "Bounded soak run (mixed HTTP and WebSocket load) against a Tollgate server")]
struct Args {
    /// Server address: a loopback address only.
    #[arg(long, default_value = "127.0.0.1:7512")]
    target: SocketAddr,
    /// Server process id, whose VmRSS is read.
    #[arg(long)]
    pid: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 300.0)]
    duration: f64,
    /// WebSocket workers.
    #[arg(long, default_value_t = 4)]
    ws_connections: usize,
    /// HTTP workers.
    #[arg(long, default_value_t = 4)]
    http_connections: usize,
    /// Requests per second of all workers together (0: closed loop, as fast as answers come).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Requests per connection before a worker closes it and opens a new one.
    #[arg(long, default_value_t = 500)]
    reconnect_every: u64,
    /// Milliseconds between logins (the server allows 10 per second per address by default).
    #[arg(long, default_value_t = 500)]
    login_interval_ms: u64,
    /// Username of the admin: created with createFirstAdmin when no admin exists, else logged in.
    #[arg(long, default_value = "soak-admin")]
    admin: String,
    /// Password of the admin.
    #[arg(long, default_value = "soak-admin-password")]
    admin_password: String,
}

/// Counts of answers by kind, and the unexpected ones.
#[derive(Default)]
struct Tally {
    ok: Mutex<BTreeMap<&'static str, u64>>,
    unexpected: Mutex<(u64, Vec<String>)>,
}

impl Tally {
    fn ok(&self, kind: &'static str) {
        if let Ok(mut ok) = self.ok.lock() {
            *ok.entry(kind).or_default() += 1;
        }
    }

    fn unexpected(&self, kind: &str, detail: &str) {
        if let Ok(mut u) = self.unexpected.lock() {
            u.0 += 1;
            if u.1.len() < QUOTED {
                let detail: String = detail.chars().take(300).collect();
                u.1.push(format!("{kind}: {detail}"));
            }
        }
    }

    /// Counts an answer that must be a 200 envelope.
    fn check(&self, kind: &'static str, answer: &Result<Value, String>) {
        match answer {
            Ok(v) if v["status"] == 200 && v["error"].is_null() => self.ok(kind),
            Ok(v) => self.unexpected(kind, &v.to_string()),
            Err(e) => self.unexpected(kind, e),
        }
    }
}

struct Ctx {
    args: Args,
    tally: Tally,
    running: AtomicBool,
    /// Set once with `running`, for the tasks waiting on a timer.
    stop: watch::Sender<bool>,
    /// The token the workers use (the newest).
    token: RwLock<String>,
}

impl Ctx {
    fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Resolves once the run is over.
    async fn stopped(&self) {
        let _ = self.stop.subscribe().wait_for(|s| *s).await;
    }

    /// Waits for the next tick of `pace` (if any); false once the run is over.
    async fn paced(&self, pace: &mut Option<tokio::time::Interval>) -> bool {
        if let Some(p) = pace.as_mut() {
            tokio::select! {
                _ = p.tick() => {}
                _ = self.stopped() => return false,
            }
        }
        self.running()
    }

    fn token(&self) -> String {
        self.token.read().map(|t| t.clone()).unwrap_or_default()
    }
}

/// One HTTP request; the answer envelope when the status line and the envelope's `status` agree.
async fn http_call(
    sender: &mut HttpSender,
    method: &str,
    path: &str,
    jwt: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, String> {
    let call = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(jwt) = jwt {
            req = req.header("authorization", format!("Bearer {jwt}"));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let envelope: Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{method} {path}: {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if envelope["status"] != status {
            return Err(format!("{method} {path}: status {status} for {envelope}"));
        }
        Ok(envelope)
    };
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .map_err(|_| format!("{method} {path}: no answer within {ANSWER_TIMEOUT:?}"))?
}

/// One WebSocket request (`requestId` = `id`); its answer, matched by `room`.
async fn ws_call(ws: &mut WsStream, id: &str, mut request: Value) -> Result<Value, String> {
    request["requestId"] = json!(id);
    let call = async {
        ws.send(Message::text(request.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if room(&t) == Some(id) => {
                    return serde_json::from_str::<Value>(&t)
                        .map_err(|e| format!("not JSON ({e}): {t}"));
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(Message::Text(t))) => return Err(format!("unexpected frame: {t}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".into()),
            }
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer to {id} within {ANSWER_TIMEOUT:?}"))?
}

/// A pacer giving each of `workers` its share of `rate` requests per second (none when 0).
fn pacer(rate: u64, workers: usize) -> Option<tokio::time::Interval> {
    (rate > 0).then(|| {
        let mut i =
            tokio::time::interval(Duration::from_secs_f64(workers.max(1) as f64 / rate as f64));
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    })
}

fn worker_profile(protocol: &str, w: usize) -> String {
    format!("soak-{protocol}-{w}")
}

async fn ws_worker(ctx: Arc<Ctx>, w: usize, workers: usize) {
    let mut pace = pacer(ctx.args.rate, workers);
    let mut n = 0u64;
    'connection: while ctx.running() {
        let mut ws = match ws_connect(ctx.args.target).await {
            Ok(ws) => {
                ctx.tally.ok("ws_connections");
                ws
            }
            Err(e) => {
                ctx.tally.unexpected("ws_connect", &e);
                // Back off before trying again, so a refusing server is not spun on.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for _ in 0..ctx.args.reconnect_every {
            if !ctx.paced(&mut pace).await {
                break;
            }
            n += 1;
            let jwt = ctx.token();
            let (kind, request) = match n % 10 {
                0..=4 => (
                    "ws_get_profile",
                    json!({"controller":"security","action":"getProfile","_id":USER,"jwt":jwt}),
                ),
                5..=7 => (
                    "ws_now",
                    json!({"controller":"server","action":"now","jwt":jwt}),
                ),
                _ => (
                    "ws_update_profile",
                    json!({"controller":"security","action":"updateProfile",
                        "_id":worker_profile("ws", w),"body":{"rateLimit":0,"n":n},
                        "retryOnConflict":10,"jwt":jwt}),
                ),
            };
            let answer = ws_call(&mut ws, &format!("w{w}-{n}"), request).await;
            let failed = answer.is_err();
            ctx.tally.check(kind, &answer);
            if failed {
                continue 'connection;
            }
        }
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, ws.close(None)).await;
    }
}

async fn http_worker(ctx: Arc<Ctx>, w: usize, workers: usize) {
    let mut pace = pacer(ctx.args.rate, workers);
    let mut n = 0u64;
    let profile_path = format!("/profiles/{USER}");
    let update_path = format!(
        "/profiles/{}/_update?retryOnConflict=10",
        worker_profile("http", w)
    );
    'connection: while ctx.running() {
        let mut sender = match http_connect(ctx.args.target).await {
            Ok(s) => {
                ctx.tally.ok("http_connections");
                s
            }
            Err(e) => {
                ctx.tally.unexpected("http_connect", &e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for _ in 0..ctx.args.reconnect_every {
            if !ctx.paced(&mut pace).await {
                break;
            }
            n += 1;
            let jwt = ctx.token();
            let body = json!({"rateLimit":0,"n":n});
            let (kind, answer) = match n % 10 {
                0..=4 => (
                    "http_get_profile",
                    http_call(&mut sender, "GET", &profile_path, Some(&jwt), None).await,
                ),
                5..=7 => (
                    "http_now",
                    http_call(&mut sender, "GET", "/_now", Some(&jwt), None).await,
                ),
                _ => (
                    "http_update_profile",
                    http_call(&mut sender, "PUT", &update_path, Some(&jwt), Some(&body)).await,
                ),
            };
            let failed = answer.is_err();
            ctx.tally.check(kind, &answer);
            if failed {
                continue 'connection;
            }
        }
    }
}

fn jwt_of(answer: &Result<Value, String>) -> Option<String> {
    let v = answer.as_ref().ok()?;
    (v["status"] == 200)
        .then(|| v["result"]["jwt"].as_str().map(str::to_owned))
        .flatten()
}

/// `auth:checkToken` of `token` over `sender`: whether the server says it is valid.
async fn token_valid(sender: &mut HttpSender, token: &str) -> Result<bool, String> {
    let r = http_call(
        sender,
        "POST",
        "/_checkToken",
        None,
        Some(&json!({ "token": token })),
    )
    .await?;
    r["result"]["valid"]
        .as_bool()
        .filter(|_| r["status"] == 200)
        .ok_or_else(|| format!("checkToken: {r}"))
}

async fn login_task(ctx: Arc<Ctx>, mut tokens: VecDeque<String>) {
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.args.login_interval_ms.max(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sender: Option<HttpSender> = None;
    let credentials = json!({"username":USER,"password":USER_PASSWORD});
    let mut n = 0u64;
    let mut pace = Some(tick);
    while ctx.paced(&mut pace).await {
        n += 1;
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match http_connect(ctx.args.target).await {
                Ok(s) => {
                    ctx.tally.ok("http_connections");
                    sender = Some(s);
                }
                Err(e) => {
                    ctx.tally.unexpected("http_connect", &e);
                    continue;
                }
            }
        }
        let Some(http) = sender.as_mut() else {
            continue;
        };
        // A login, alternately over HTTP and over a new WebSocket.
        let (kind, answer) = if n.is_multiple_of(2) {
            let answer = http_call(http, "POST", "/_login/local", None, Some(&credentials)).await;
            ("http_login", answer)
        } else {
            let answer = match ws_connect(ctx.args.target).await {
                Ok(mut ws) => {
                    ctx.tally.ok("ws_connections");
                    let a = ws_call(
                        &mut ws,
                        &format!("login-{n}"),
                        json!({"controller":"auth","action":"login","strategy":"local",
                            "body":credentials}),
                    )
                    .await;
                    let _ = tokio::time::timeout(ANSWER_TIMEOUT, ws.close(None)).await;
                    a
                }
                Err(e) => Err(format!("connect: {e}")),
            };
            ("ws_login", answer)
        };
        let Some(token) = jwt_of(&answer) else {
            match answer {
                Ok(v) => ctx.tally.unexpected(kind, &v.to_string()),
                Err(e) => ctx.tally.unexpected(kind, &e),
            }
            continue;
        };
        ctx.tally.ok(kind);
        match token_valid(http, &token).await {
            Ok(true) => ctx.tally.ok("check_token"),
            Ok(false) => ctx
                .tally
                .unexpected("check_token", "a new token is not valid"),
            Err(e) => ctx.tally.unexpected("check_token", &e),
        }
        // Two logins of one user in the same second get the same token (its claims are the
        // user and times in seconds): it is in use already, and must be logged out only once.
        if tokens.contains(&token) {
            ctx.tally.ok("same_token_again");
            continue;
        }
        if let Ok(mut current) = ctx.token.write() {
            current.clone_from(&token);
        }
        tokens.push_back(token);
        // The oldest token leaves use: logged out, then refused by checkToken.
        while tokens.len() > TOKENS_IN_USE {
            let Some(old) = tokens.pop_front() else { break };
            let answer = http_call(http, "POST", "/_logout", Some(&old), None).await;
            ctx.tally.check("logout", &answer);
            match token_valid(http, &old).await {
                Ok(false) => ctx.tally.ok("check_revoked_token"),
                Ok(true) => ctx
                    .tally
                    .unexpected("check_revoked_token", "a logged out token is still valid"),
                Err(e) => ctx.tally.unexpected("check_revoked_token", &e),
            }
        }
    }
}

/// Creates the admin (or logs in as the existing one), the role, profiles and user; returns the
/// user's first token.
async fn setup(args: &Args) -> Result<String, String> {
    let mut http = http_connect(args.target).await?;
    let admin_credentials = json!({"username":args.admin,"password":args.admin_password});
    let r = http_call(
        &mut http,
        "POST",
        &format!("/_createFirstAdmin/{}?reset", args.admin),
        None,
        Some(&json!({"content":{},"credentials":{"local":admin_credentials}})),
    )
    .await?;
    if r["status"] != 200 && r["error"]["id"] != "api.process.admin_exists" {
        return Err(format!("createFirstAdmin: {r}"));
    }
    let r = http_call(
        &mut http,
        "POST",
        "/_login/local",
        None,
        Some(&admin_credentials),
    )
    .await?;
    let admin = jwt_of(&Ok(r.clone())).ok_or_else(|| format!("admin login: {r}"))?;
    let must = |what: String, r: Value| {
        if r["status"] == 200 {
            Ok(())
        } else {
            Err(format!("{what}: {r}"))
        }
    };
    let role = json!({"controllers":{
        "security":{"actions":{"getProfile":true,"updateProfile":true}},
        "server":{"actions":{"now":true}},
        "auth":{"actions":{"login":true,"checkToken":true,"logout":true}}}});
    let path = format!("/roles/{USER}");
    let r = http_call(&mut http, "PUT", &path, Some(&admin), Some(&role)).await?;
    must(format!("PUT {path}"), r)?;
    let profile = json!({"policies":[{"roleId":USER}],"rateLimit":0});
    let path = format!("/profiles/{USER}");
    let r = http_call(&mut http, "PUT", &path, Some(&admin), Some(&profile)).await?;
    must(format!("PUT {path}"), r)?;
    let target = json!({"policies":[{"roleId":"default"}]});
    for (protocol, workers) in [("ws", args.ws_connections), ("http", args.http_connections)] {
        for w in 0..workers {
            let path = format!("/profiles/{}", worker_profile(protocol, w));
            let r = http_call(&mut http, "PUT", &path, Some(&admin), Some(&target)).await?;
            must(format!("PUT {path}"), r)?;
        }
    }
    let user = json!({"content":{"profileIds":[USER]},
        "credentials":{"local":{"username":USER,"password":USER_PASSWORD}}});
    let path = format!("/users/{USER}/_create");
    let r = http_call(&mut http, "POST", &path, Some(&admin), Some(&user)).await?;
    if r["status"] != 200 && r["error"]["id"] != "security.user.already_exists" {
        return Err(format!("POST {path}: {r}"));
    }
    let r = http_call(
        &mut http,
        "POST",
        "/_login/local",
        None,
        Some(&json!({"username":USER,"password":USER_PASSWORD})),
    )
    .await?;
    jwt_of(&Ok(r.clone())).ok_or_else(|| format!("{USER} login: {r}"))
}

fn fail(message: &str) -> ! {
    eprintln!("tollgate-soak: {message}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        fail(&format!(
            "{} is not a loopback address: the soak tool only targets this machine",
            args.target
        ));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        fail("--duration must be a positive number of seconds");
    }
    if rss_kib(args.pid).is_none() {
        fail(&format!("cannot read /proc/{}/status", args.pid));
    }
    let token = match setup(&args).await {
        Ok(t) => t,
        Err(e) => fail(&format!("setup failed: {e}")),
    };
    let duration = Duration::from_secs_f64(args.duration);
    let pid = args.pid;
    eprintln!(
        "tollgate-soak: {} for {:.0} s: {} WebSocket and {} HTTP workers, {} requests/s, a login \
         every {} ms",
        args.target,
        args.duration,
        args.ws_connections,
        args.http_connections,
        args.rate,
        args.login_interval_ms
    );
    let ctx = Arc::new(Ctx {
        args,
        tally: Tally::default(),
        running: AtomicBool::new(true),
        stop: watch::Sender::new(false),
        token: RwLock::new(token.clone()),
    });
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let workers = ctx.args.ws_connections + ctx.args.http_connections;
    for w in 0..ctx.args.ws_connections {
        tasks.push(tokio::spawn(ws_worker(Arc::clone(&ctx), w, workers)));
    }
    for w in 0..ctx.args.http_connections {
        tasks.push(tokio::spawn(http_worker(Arc::clone(&ctx), w, workers)));
    }
    tasks.push(tokio::spawn(login_task(
        Arc::clone(&ctx),
        VecDeque::from([token]),
    )));

    // The run itself: RSS every 10 s (the middle one at half the duration) until the end.
    let mut samples = Vec::new();
    let mut rss_middle = None;
    let middle = started + duration / 2;
    let end = started + duration;
    let mut next_sample = started + Duration::from_secs(10);
    loop {
        let wake = next_sample
            .min(end)
            .min(if rss_middle.is_none() { middle } else { end });
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if rss_middle.is_none() && now >= middle {
            rss_middle = rss_kib(pid);
        }
        if now >= next_sample && now < end {
            samples.push(rss_kib(pid));
            next_sample += Duration::from_secs(10);
        }
        if now >= end {
            break;
        }
    }
    ctx.running.store(false, Ordering::Relaxed);
    ctx.stop.send_replace(true);
    let stop_by = tokio::time::Instant::now() + STOP_TIMEOUT;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(stop_by, t).await.is_err() {
            abort.abort();
            ctx.tally
                .unexpected("stop", "a worker did not stop within 30 s");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);

    let counts = ctx.tally.ok.lock().map(|c| c.clone()).unwrap_or_default();
    let (unexpected, quoted) = ctx
        .tally
        .unexpected
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    let requests: u64 = counts
        .iter()
        .filter(|(k, _)| !k.ends_with("_connections") && **k != "same_token_again")
        .map(|(_, v)| v)
        .sum::<u64>()
        + unexpected;
    let line = json!({
        "tool": "tollgate-soak",
        "target": ctx.args.target.to_string(),
        "duration_s": elapsed,
        "rate": ctx.args.rate,
        "ws_workers": ctx.args.ws_connections,
        "http_workers": ctx.args.http_connections,
        "requests": requests,
        "ok": counts,
        "unexpected_errors": unexpected,
        "first_unexpected": quoted,
        "rss_kib": {"start": rss_start, "middle": rss_middle, "end": rss_end},
        "rss_samples_kib": samples,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    std::process::exit(i32::from(unexpected > 0));
}
