//! Scale-out: two servers of this process, on two ports, sharing one PostgreSQL schema (node `a` and
//! node `b`, node ids `knode-a` and `knode-b`), driven through real sockets. What one node writes,
//! the other must follow: rights, revoked tokens, concurrent updates, the first admin; and both must
//! get through the faults of the database (a lost `LISTEN` connection, a restart) by themselves.
//!
//! Needs PostgreSQL (`TOLLGATE_TEST_PG_URL`, cfg `no_pg`); the restart test also needs the command
//! that restarts it (`TOLLGATE_TEST_PG_RESTART`, cfg `no_pg_restart`, set by `.ci/run`), and the
//! load-balancer test nginx (cfg `no_nginx`). Each test has a schema of its own
//! (`tollgate_testkit::pg`). The waits on the change feed are bounded by [`FEED_BOUND`] and the time
//! they took is printed (`--nocapture` shows it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_testkit::pg::{PgControl, PgSchema};
use tollgate_testkit::{TestServer, WsClient, http_once, mask_number, wait_until, wait_within};

/// How long a change made on one node may take to reach the other: the feed polls the change log
/// every second whatever the notifications, so a few periods, with room for a loaded machine.
const FEED_BOUND: Duration = Duration::from_secs(5);

/// How long the nodes may take to find the database again after it restarted (the pool's and the
/// listener's reconnection, bounded by the store's 5 s timeouts and 5 s backoff).
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

const FORBIDDEN_NOW: &str = r#"{"code":117637122,"id":"security.rights.forbidden","message":"Insufficient permissions to execute the action \"server:now\" (User \"u1\").","props":["server","now","u1"],"status":403}"#;
const INVALID_TOKEN: &str = r#"{"code":117506049,"id":"security.token.invalid","message":"Invalid token.","props":[],"status":401}"#;
const ADMIN_EXISTS: &str = r#"{"code":33685513,"id":"api.process.admin_exists","message":"Admin user is already set.","props":[],"status":412}"#;
const NOT_CONNECTED: &str = r#"{"code":16842776,"id":"services.storage.not_connected","message":"Storage service is not connected.","props":[],"status":500}"#;

/// Two nodes on one schema.
struct Cluster {
    pg: PgSchema,
    a: TestServer,
    b: TestServer,
}

impl Cluster {
    async fn start(test: &str) -> Self {
        Self::start_on(PgSchema::create(test).await).await
    }

    /// Node `a` first (it creates the tables and the token secret), then node `b`.
    async fn start_on(pg: PgSchema) -> Self {
        let a = TestServer::start_with(|c| node_config(&pg, c, "a"), vec![]).await;
        let b = TestServer::start_with(|c| node_config(&pg, c, "b"), vec![]).await;
        Self { pg, a, b }
    }

    async fn finish(self) {
        let Self { pg, a, b } = self;
        a.stop().await;
        b.stop().await;
        pg.finish().await;
    }
}

fn node_config(pg: &PgSchema, c: &mut tollgate_server::Config, node: &str) {
    pg.configure(c, node);
    // The tests log in more often than the per-address limit allows; limits are per node anyway.
    c.security.logins_per_second_per_ip = 0;
    c.security.failed_auth_per_minute_per_ip = 0;
}

/// Merges `extra` into `{"controller":c,"action":a}`.
fn req(controller: &str, action: &str, extra: Value) -> Value {
    let mut r = json!({"controller":controller,"action":action});
    if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    r
}

fn with_jwt(mut r: Value, jwt: &str) -> Value {
    r["jwt"] = json!(jwt);
    r
}

#[track_caller]
fn assert_ok(r: &Value, what: &str) {
    assert_eq!(r["status"], 200, "{what}: {r}");
}

/// createFirstAdmin (`kuid-admin`, with `reset`: anonymous loses its rights) on `s`, then the admin's
/// token.
async fn first_admin(s: &TestServer) -> String {
    let mut c = s.ws().await;
    let r = c
        .call(req(
            "security",
            "createFirstAdmin",
            json!({"_id":"kuid-admin","reset":true,"body":{"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}}),
        ))
        .await;
    assert_ok(&r, "createFirstAdmin");
    login(s, "admin", "admin-pw").await
}

/// Logs in over HTTP on `s`; returns the token.
async fn login(s: &TestServer, username: &str, password: &str) -> String {
    let body = json!({"username":username,"password":password}).to_string();
    let r = http_once(s.addr, "POST", "/_login/local", &[], body.as_bytes())
        .await
        .json();
    assert_ok(&r, &format!("login {username}"));
    r["result"]["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("no jwt in {r}"))
        .to_owned()
}

/// Sends `request` as `jwt` with a `requestId` and returns the answer's text.
async fn call_as(c: &mut WsClient, jwt: &str, request: Value, request_id: &str) -> String {
    let mut request = with_jwt(request, jwt);
    request["requestId"] = json!(request_id);
    c.call_text(&request.to_string()).await
}

/// The exact answer of `server:now` to `request_id` on `node`: the time masked.
fn now_ok(node: &str, request_id: &str) -> String {
    format!(
        r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"knode-{node}","requestId":"{request_id}","result":{{"now":X}},"status":200,"volatile":null,"room":"{request_id}"}}"#
    )
}

/// The exact error answer to `request_id` of `controller:action` on `node`.
fn error_answer(
    node: &str,
    controller: &str,
    action: &str,
    request_id: &str,
    error: &str,
) -> String {
    let status =
        serde_json::from_str::<Value>(error).unwrap_or_else(|e| panic!("{e}: {error}"))["status"]
            .clone();
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":{error},"headers":{{}},"node":"knode-{node}","requestId":"{request_id}","result":null,"status":{status},"volatile":null,"room":"{request_id}"}}"#
    )
}

/// `server:now` as `jwt` on `c`, the answer with its time masked.
async fn now_as(c: &mut WsClient, jwt: &str, request_id: &str) -> String {
    let text = call_as(c, jwt, req("server", "now", json!({})), request_id).await;
    mask_number(&text, "now").0
}

/// `server:now` as anonymous on `c`, the answer with its time masked.
async fn now_anonymous(c: &mut WsClient, request_id: &str) -> String {
    let text = c
        .call_text(&req("server", "now", json!({"requestId":request_id})).to_string())
        .await;
    mask_number(&text, "now").0
}

/// Roles `clock` (`server:now`) and `info` (`server:info`, not `server:now`), both with
/// `auth:logout`, profile `p` = `clock`, user `u1` of `p`, made as `admin` on `s`; returns u1's
/// token.
async fn rights_fixture(s: &TestServer, admin: &str) -> String {
    let mut c = s.ws().await;
    for r in [
        req(
            "security",
            "createRole",
            json!({"_id":"clock","body":{"controllers":{"server":{"actions":{"now":true}},"auth":{"actions":{"logout":true}}}}}),
        ),
        req(
            "security",
            "createRole",
            json!({"_id":"info","body":{"controllers":{"server":{"actions":{"info":true}},"auth":{"actions":{"logout":true}}}}}),
        ),
        req(
            "security",
            "createProfile",
            json!({"_id":"p","body":{"policies":[{"roleId":"clock"}]}}),
        ),
        req(
            "security",
            "createUser",
            json!({"_id":"u1","body":{"content":{"profileIds":["p"]},"credentials":{"local":{"username":"u1","password":"u1-pw"}}}}),
        ),
    ] {
        let r = c.call(with_jwt(r.clone(), admin)).await;
        assert_ok(&r, &r.to_string());
    }
    login(s, "u1", "u1-pw").await
}

/// Waits (bounded by [`FEED_BOUND`]) until `server:now` as `jwt` on node `b` answers `expected`;
/// returns how long it took.
async fn wait_now_on(b: &TestServer, jwt: &str, expected: &str, what: &str) -> Duration {
    let mut c = b.ws().await;
    let mut n = 0;
    wait_within(what, FEED_BOUND, async || {
        n += 1;
        let id = format!("w{n}");
        now_as(&mut c, jwt, &id).await == expected.replace("{id}", &id)
    })
    .await
}

/// `server:now` as `jwt` on `c` (a connection to node `b`) must answer `expected` (`{id}` standing for
/// `request_id`) at once. When it does not, the failure says how long B took to follow.
async fn next_on_b(
    c: &mut WsClient,
    b: &TestServer,
    jwt: &str,
    request_id: &str,
    expected: &str,
    what: &str,
) {
    let got = now_as(c, jwt, request_id).await;
    if got == expected.replace("{id}", request_id) {
        return;
    }
    let took = wait_now_on(b, jwt, expected, what).await;
    panic!(
        "{what}: B answered the old rights\n  got: {got}\n  expected: {}\nB followed {took:?} later",
        expected.replace("{id}", request_id)
    );
}

/// 1. updateProfile on A; the very next request of the user on B follows the new policies, each way,
/// several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_update_profile_on_a_applies_to_the_next_request_on_b() {
    let cluster = Cluster::start("scaleout_update_profile_next_request").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let admin = first_admin(a).await;
    let u1 = rights_fixture(a, &admin).await;
    // Setting up: B has caught up with the fixture.
    let took = wait_now_on(b, &u1, &now_ok("b", "{id}"), "u1 allowed server:now on B").await;
    eprintln!("scaleout: the fixture reached B in {took:?}");
    let mut admin_ws = a.ws().await;
    let mut user_ws = b.ws().await;
    for round in 0..5 {
        let r = admin_ws
            .call(with_jwt(
                req(
                    "security",
                    "updateProfile",
                    json!({"_id":"p","body":{"policies":[{"roleId":"info"}]}}),
                ),
                &admin,
            ))
            .await;
        assert_ok(&r, "updateProfile p -> info");
        assert_eq!(r["node"], "knode-a");
        next_on_b(
            &mut user_ws,
            b,
            &u1,
            &format!("r{round}-forbidden"),
            &error_answer("b", "server", "now", "{id}", FORBIDDEN_NOW),
            &format!(
                "round {round}: the request on B right after the profile lost server:now on A"
            ),
        )
        .await;
        let r = admin_ws
            .call(with_jwt(
                req(
                    "security",
                    "updateProfile",
                    json!({"_id":"p","body":{"policies":[{"roleId":"clock"}]}}),
                ),
                &admin,
            ))
            .await;
        assert_ok(&r, "updateProfile p -> clock");
        next_on_b(
            &mut user_ws,
            b,
            &u1,
            &format!("r{round}-allowed"),
            &now_ok("b", "{id}"),
            &format!(
                "round {round}: the request on B right after the profile got server:now back on A"
            ),
        )
        .await;
    }
    cluster.finish().await;
}

/// server:info of a node on PostgreSQL names the other node, how far it has applied the change log,
/// and the bounds the nodes keep (`docs/scale-out.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_server_info_reports_the_other_node_and_the_bounds() {
    let cluster = Cluster::start("scaleout_server_info").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let mut ca = a.ws().await;
    let mut cb = b.ws().await;
    let mut info = Value::Null;
    wait_until("A hears from B", async || {
        info = ca.call(req("server", "info", json!({}))).await;
        info["result"]["serverInfo"]["services"]["storageEngine"]["cluster"]["peers"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    })
    .await;
    let mut cluster_info =
        info["result"]["serverInfo"]["services"]["storageEngine"]["cluster"].clone();
    let peer = cluster_info["peers"][0].take();
    assert_eq!(
        cluster_info,
        json!({
            "peers": [null],
            "writesWaitForPeersMs": 1000,
            "peerLiveMs": 3000,
            "changeLogPollMs": 1000,
            "rateLimits": "per node",
        })
    );
    assert!(peer["node"].is_string(), "{peer}");
    assert!(
        peer["applied"].is_u64() && peer["heardMs"].as_u64() < Some(3000),
        "{peer}"
    );
    // B applied what A wrote: its reported sequence number follows A's writes.
    let before = peer["applied"].as_u64().unwrap_or(0);
    let r = cb
        .call(req(
            "security",
            "createProfile",
            json!({"_id":"info-p","body":{"policies":[{"roleId":"default"}]}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    wait_until("A sees B's applied sequence number move", async || {
        let info = ca.call(req("server", "info", json!({}))).await;
        info["result"]["serverInfo"]["services"]["storageEngine"]["cluster"]["peers"][0]["applied"]
            .as_u64()
            .is_some_and(|applied| applied > before)
    })
    .await;
    cluster.finish().await;
}

/// 2. logout on A; the token is refused on B within the feed's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_logout_on_a_is_refused_on_b() {
    let cluster = Cluster::start("scaleout_logout_on_a").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let admin = first_admin(a).await;
    let u1 = rights_fixture(a, &admin).await;
    // B knows the token (and keeps it in its caches) before the logout.
    wait_now_on(b, &u1, &now_ok("b", "{id}"), "u1's token accepted on B").await;
    let mut c = a.ws().await;
    let r = c
        .call(with_jwt(req("auth", "logout", json!({})), &u1))
        .await;
    assert_eq!(r["result"], json!({"acknowledged":true}), "{r}");
    let took = wait_now_on(
        b,
        &u1,
        &error_answer("b", "server", "now", "{id}", INVALID_TOKEN),
        "the token logged out on A refused on B",
    )
    .await;
    eprintln!("scaleout: a logout on A was refused on B after {took:?} (bound {FEED_BOUND:?})");
    // And it stays refused, on both nodes.
    let mut cb = b.ws().await;
    assert_eq!(
        now_as(&mut cb, &u1, "again").await,
        error_answer("b", "server", "now", "again", INVALID_TOKEN)
    );
    assert_eq!(
        now_as(&mut c, &u1, "on-a").await,
        error_answer("a", "server", "now", "on-a", INVALID_TOKEN)
    );
    cluster.finish().await;
}

/// 2b. Every other way a token stops working on A — security:revokeTokens, a password change by
/// updateCredentials, an API key deleted — is refused on B within the feed's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_revocations_on_a_are_refused_on_b() {
    let cluster = Cluster::start("scaleout_revocations_on_a").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let admin = first_admin(a).await;
    let u1 = rights_fixture(a, &admin).await;
    let mut c = a.ws().await;
    let mut call = async |r: Value| {
        let r = c.call(with_jwt(r, &admin)).await;
        assert_ok(&r, &r.to_string());
        r
    };
    // revokeTokens of u1 on A.
    wait_now_on(b, &u1, &now_ok("b", "{id}"), "u1's token accepted on B").await;
    call(req("security", "revokeTokens", json!({"_id":"u1"}))).await;
    wait_now_on(
        b,
        &u1,
        &error_answer("b", "server", "now", "{id}", INVALID_TOKEN),
        "the token revoked on A refused on B",
    )
    .await;
    // A password change on A revokes u1's tokens on B too.
    let again = login(a, "u1", "u1-pw").await;
    wait_now_on(
        b,
        &again,
        &now_ok("b", "{id}"),
        "u1's new token accepted on B",
    )
    .await;
    call(req(
        "security",
        "updateCredentials",
        json!({"strategy":"local","_id":"u1","body":{"password":"u1-pw-2"}}),
    ))
    .await;
    wait_now_on(
        b,
        &again,
        &error_answer("b", "server", "now", "{id}", INVALID_TOKEN),
        "the token of a password changed on A refused on B",
    )
    .await;
    // An API key of u1 made on A works on B until it is deleted on A.
    let r = call(req(
        "security",
        "createApiKey",
        json!({"userId":"u1","_id":"k1","body":{"description":"scale-out"}}),
    ))
    .await;
    let key = r["result"]["_source"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with("kapikey-"), "{r}");
    wait_now_on(b, &key, &now_ok("b", "{id}"), "the API key accepted on B").await;
    call(req(
        "security",
        "deleteApiKey",
        json!({"userId":"u1","_id":"k1"}),
    ))
    .await;
    wait_now_on(
        b,
        &key,
        &error_answer("b", "server", "now", "{id}", INVALID_TOKEN),
        "the API key deleted on A refused on B",
    )
    .await;
    cluster.finish().await;
}

/// `getProfile` of `id` on `c`.
async fn get_profile(c: &mut WsClient, id: &str) -> Value {
    c.call(req("security", "getProfile", json!({"_id":id})))
        .await
}

/// The `_kuzzle_info` timestamps of a profile answer replaced by `X` (`createdAt` always is one,
/// `updatedAt` once the profile was updated, else null).
fn mask_info(mut result: Value) -> Value {
    for key in ["createdAt", "updatedAt"] {
        let info = &mut result["_source"]["_kuzzle_info"][key];
        assert!(
            info.is_u64() || (key == "updatedAt" && info.is_null()),
            "{key} is not a timestamp: {result}"
        );
        if info.is_u64() {
            *info = json!("X");
        }
    }
    result
}

/// 3. 20 concurrent updateProfile with retryOnConflict, half on each node, each adding its own key:
/// none lost, versions 2..=21 each acknowledged once, final `_version` 21 on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_concurrent_updates_on_both_nodes_lose_nothing() {
    let cluster = Cluster::start("scaleout_concurrent_updates").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let mut ca = a.ws().await;
    let r = ca
        .call(req(
            "security",
            "createProfile",
            json!({"_id":"shared","body":{"policies":[{"roleId":"default"}]}}),
        ))
        .await;
    assert_eq!(r["result"]["_version"], 1, "{r}");
    let mut cb = b.ws().await;
    wait_until("B has the profile", async || {
        get_profile(&mut cb, "shared").await["status"] == 200
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let server = if i % 2 == 0 { a } else { b };
        clients.push((i, server.ws().await));
    }
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(i, mut c)| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let r = c
                    .call(req(
                        "security",
                        "updateProfile",
                        json!({"_id":"shared","body":{ format!("k{i}"): i },"retryOnConflict":50,"requestId":format!("u{i}")}),
                    ))
                    .await;
                (i, r)
            })
        })
        .collect();
    let mut versions = BTreeMap::new();
    for t in tasks {
        let (i, r) = t.await.unwrap_or_else(|e| panic!("client task: {e}"));
        assert_ok(&r, &format!("update {i}"));
        assert_eq!(
            r["node"],
            if i % 2 == 0 { "knode-a" } else { "knode-b" },
            "{r}"
        );
        let version = r["result"]["_version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no _version: {r}"));
        assert_eq!(
            r["result"]["_source"][format!("k{i}")],
            i,
            "the answer lacks its own key: {r}"
        );
        if let Some(other) = versions.insert(version, i) {
            panic!("version {version} acknowledged to both update {other} and update {i}");
        }
    }
    assert_eq!(
        versions.keys().copied().collect::<Vec<_>>(),
        (2..=21).collect::<Vec<u64>>()
    );
    let mut expected = json!({"_id":"shared","_version":21,"_source":{"policies":[{"roleId":"default"}],"rateLimit":0}});
    for i in 0..20 {
        expected["_source"][format!("k{i}")] = json!(i);
    }
    expected["_source"]["_kuzzle_info"] =
        json!({"author":null,"createdAt":"X","updatedAt":"X","updater":null});
    // Each node serves the last version once its feed brought the other node's last commits (the
    // answers do not wait for that: see the first test). Key order is the order the updates were
    // applied in: compared as a map.
    for (node, c) in [("A", &mut ca), ("B", &mut cb)] {
        let mut last = Value::Null;
        let took = wait_within(
            &format!("{node} serves version 21"),
            FEED_BOUND,
            async || {
                last = get_profile(c, "shared").await;
                last["result"]["_version"] == 21
            },
        )
        .await;
        assert_eq!(
            mask_info(last["result"].clone()),
            expected,
            "on {node}: {last}"
        );
        eprintln!(
            "scaleout: {node} served the last of 20 concurrent updates {took:?} after they all answered"
        );
    }
    cluster.finish().await;
}

/// One round of [`scaleout_first_admin_race_has_one_winner`]: `per_node` clients on each node call
/// createFirstAdmin at once, each with its own kuid.
async fn first_admin_round(test: &str, per_node: usize) {
    let cluster = Cluster::start(test).await;
    let (a, b) = (&cluster.a, &cluster.b);
    let mut clients = Vec::new();
    for i in 0..2 * per_node {
        let (node, server) = if i % 2 == 0 { ("a", a) } else { ("b", b) };
        clients.push((format!("admin-{node}-{i}"), node, server.ws().await));
    }
    let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(kuid, node, mut c)| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let text = c
                    .call_text(
                        &req(
                            "security",
                            "createFirstAdmin",
                            json!({"_id":kuid,"body":{},"requestId":kuid}),
                        )
                        .to_string(),
                    )
                    .await;
                (kuid, node, text)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (kuid, node, text) = t.await.unwrap_or_else(|e| panic!("client task: {e}"));
        let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if r["status"] == 200 {
            assert_eq!(r["result"]["_id"], kuid.as_str(), "{r}");
            winners.push(kuid);
        } else {
            assert_eq!(
                text,
                error_answer(node, "security", "createFirstAdmin", &kuid, ADMIN_EXISTS),
                "{test}: a createFirstAdmin that did not win"
            );
            losers.push(kuid);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{test}: winners {winners:?}, losers {losers:?}"
    );
    // Only the winner exists, on both nodes (anonymous kept its rights: no reset).
    for server in [a, b] {
        let mut c = server.ws().await;
        for kuid in &losers {
            let r = c
                .call(req("security", "getUser", json!({"_id":kuid})))
                .await;
            assert_eq!(r["error"]["id"], "security.user.not_found", "{kuid}: {r}");
        }
    }
    cluster.finish().await;
}

/// 4. createFirstAdmin raced on both nodes with different kuids: exactly one wins, every other
/// gets `api.process.admin_exists` (412). Three rounds, each on a fresh schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_first_admin_race_has_one_winner() {
    for round in 0..3 {
        first_admin_round(&format!("scaleout_first_admin_race_{round}"), 3).await;
    }
}

/// 5a. B's `LISTEN` connection is terminated while A writes: B catches up by itself (its poll, then
/// a new `LISTEN` connection) and serves every profile A wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_b_catches_up_after_losing_its_listen_connection() {
    let cluster = Cluster::start("scaleout_lost_listen_connection").await;
    let (a, b, pg) = (&cluster.a, &cluster.b, &cluster.pg);
    let mut first = Vec::new();
    wait_until("B's LISTEN connection in pg_stat_activity", async || {
        first = pg.listener_pids("b").await;
        !first.is_empty()
    })
    .await;
    let write = |from: usize, to: usize| async move {
        let mut c = a.ws().await;
        for i in from..to {
            let r = c
                .call(req(
                    "security",
                    "createProfile",
                    json!({"_id":format!("w{i}"),"body":{"policies":[{"roleId":"default"}],"n":i}}),
                ))
                .await;
            assert_ok(&r, &format!("createProfile w{i}"));
        }
    };
    write(0, 10).await;
    let (_, killed) = tokio::join!(write(10, 30), pg.terminate_listener("b"));
    assert_eq!(killed, first.len(), "B's LISTEN connections terminated");
    write(30, 40).await;
    let mut cb = b.ws().await;
    let took = wait_within("B serves all 40 profiles", FEED_BOUND, async || {
        let r = cb
            .call(req(
                "security",
                "mGetProfiles",
                json!({"body":{"ids":(0..40).map(|i| format!("w{i}")).collect::<Vec<_>>()}}),
            ))
            .await;
        r["result"]["hits"].as_array().map(Vec::len) == Some(40)
    })
    .await;
    eprintln!("scaleout: B served the 40 profiles {took:?} after A wrote the last one");
    for i in [0, 15, 39] {
        let r = get_profile(&mut cb, &format!("w{i}")).await;
        assert_eq!(
            mask_info(r["result"].clone()),
            json!({"_id":format!("w{i}"),"_version":1,"_source":{"policies":[{"roleId":"default"}],"rateLimit":0,"n":i,"_kuzzle_info":{"author":null,"createdAt":"X","updatedAt":null,"updater":null}}}),
            "{r}"
        );
    }
    // It listens again, on a new connection, by itself.
    let took = wait_within("a new LISTEN connection of B", RECOVERY_BOUND, async || {
        let now = pg.listener_pids("b").await;
        !now.is_empty() && now.iter().all(|p| !first.contains(p))
    })
    .await;
    eprintln!("scaleout: B listened again {took:?} after its profiles were served");
    write(40, 41).await;
    wait_within("B serves w40", FEED_BOUND, async || {
        get_profile(&mut cb, "w40").await["status"] == 200
    })
    .await;
    cluster.finish().await;
}

/// The `gen` a profile answer serves, or `None` for `security.profile.not_found` (checked exactly).
fn served_gen(r: &Value) -> Option<u64> {
    if r["status"] == 404 {
        assert_eq!(
            r["error"].to_string(),
            r#"{"code":117833729,"id":"security.profile.not_found","message":"Profile \"flip\" not found.","props":["flip"],"status":404}"#
        );
        return None;
    }
    assert_eq!(r["status"], 200, "{r}");
    Some(
        r["result"]["_source"]["gen"]
            .as_u64()
            .unwrap_or_else(|| panic!("no gen: {r}")),
    )
}

/// 5b. A deletes and re-creates a profile again and again (the first new copy at a lower `_version`
/// than the old one, 1 after 4, and every later one at 1 again: a cache keeping the highest version
/// would keep the old copy); B, polled throughout, never serves a copy older than one it has already
/// served or than a deletion it has already shown, and ends on the last copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
async fn scaleout_b_never_serves_a_deleted_profile_again() {
    let cluster = Cluster::start("scaleout_delete_recreate").await;
    let (a, b) = (&cluster.a, &cluster.b);
    let mut ca = a.ws().await;
    let create = |gen_: u64| {
        req(
            "security",
            "createProfile",
            json!({"_id":"flip","body":{"policies":[{"roleId":"default"}],"gen":gen_}}),
        )
    };
    assert_ok(&ca.call(create(0)).await, "createProfile gen 0");
    for _ in 0..3 {
        let r = ca
            .call(req(
                "security",
                "updateProfile",
                json!({"_id":"flip","body":{"gen":0}}),
            ))
            .await;
        assert_ok(&r, "updateProfile gen 0");
    }
    let mut cb = b.ws().await;
    wait_until("B serves gen 0", async || {
        get_profile(&mut cb, "flip").await["status"] == 200
    })
    .await;
    const GENS: u64 = 20;
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            // The gen B served at each poll, or None for not found.
            let mut seen = Vec::new();
            while !done.load(Ordering::Acquire) {
                let r = get_profile(&mut cb, "flip").await;
                seen.push(served_gen(&r));
            }
            (seen, cb)
        })
    };
    for gen_ in 1..=GENS {
        let r = ca
            .call(req("security", "deleteProfile", json!({"_id":"flip"})))
            .await;
        assert_ok(&r, &format!("deleteProfile before gen {gen_}"));
        let r = ca.call(create(gen_)).await;
        assert_ok(&r, &format!("createProfile gen {gen_}"));
        assert_eq!(r["result"]["_version"], 1, "{r}");
    }
    done.store(true, Ordering::Release);
    let (seen, mut cb) = poller.await.unwrap_or_else(|e| panic!("poller: {e}"));
    // A deletion shown after gen g means g is gone: from then on only a later gen may be served.
    let mut floor = 0;
    let mut deleted_after = None;
    for (n, s) in seen.iter().enumerate() {
        match *s {
            Some(g) => {
                assert!(
                    g >= floor && deleted_after.is_none_or(|d| g > d),
                    "B served gen {g} at poll {n} after serving gen {floor} (deleted after {deleted_after:?}): {seen:?}"
                );
                floor = g;
                deleted_after = None;
            }
            None => deleted_after = Some(floor),
        }
    }
    let mut last = Value::Null;
    let took = wait_within("B serves the last gen", FEED_BOUND, async || {
        last = get_profile(&mut cb, "flip").await;
        served_gen(&last) == Some(GENS)
    })
    .await;
    assert_eq!(
        mask_info(last["result"].clone()),
        json!({"_id":"flip","_version":1,"_source":{"policies":[{"roleId":"default"}],"rateLimit":0,"gen":GENS,"_kuzzle_info":{"author":null,"createdAt":"X","updatedAt":null,"updater":null}}})
    );
    eprintln!(
        "scaleout: B answered {} polls during {GENS} delete/re-create rounds on A, then served the last copy {took:?} later",
        seen.len()
    );
    cluster.finish().await;
}

/// What one writer saw during [`scaleout_nodes_recover_from_a_database_restart`].
#[derive(Default)]
struct Writes {
    /// Profile ids acknowledged (200).
    acked: Vec<String>,
    /// Answers refused with `services.storage.not_connected`.
    refused: usize,
}

/// 5c. PostgreSQL restarts while both nodes take writes: meanwhile writes are refused at once with
/// `services.storage.not_connected` (no request hangs), both nodes recover by themselves, and every
/// acknowledged write is there afterwards, on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
#[cfg_attr(
    all(no_pg_restart, not(no_pg)),
    ignore = "TOLLGATE_TEST_PG_RESTART not set (a command restarting PostgreSQL, .ci/pg-restart)"
)]
async fn scaleout_nodes_recover_from_a_database_restart() {
    let test = "scaleout_nodes_recover_from_a_database_restart";
    let ctl = PgControl::from_env(test);
    // No other PostgreSQL test of this process runs meanwhile.
    let cluster = Cluster::start_on(PgSchema::create_exclusive(test).await).await;
    let (a, b) = (&cluster.a, &cluster.b);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(std::sync::Mutex::new(BTreeMap::<&str, Writes>::new()));
    let mut writers = Vec::new();
    for (node, server) in [("a", a), ("b", b)] {
        let mut c = server.ws().await;
        let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                let id = format!("{node}-{i}");
                let text = c
                    .call_text(
                        &req(
                            "security",
                            "createProfile",
                            json!({"_id":id,"body":{"policies":[{"roleId":"default"}]},"requestId":id}),
                        )
                        .to_string(),
                    )
                    .await;
                let r: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                let refused = r["status"] != 200;
                if refused {
                    assert_eq!(
                        text,
                        error_answer(node, "security", "createProfile", &id, NOT_CONNECTED),
                        "a write refused during the restart"
                    );
                }
                {
                    let mut writes = writes.lock().unwrap_or_else(|e| panic!("{e}"));
                    let w = writes.entry(node).or_default();
                    if refused {
                        w.refused += 1;
                    } else {
                        w.acked.push(id);
                    }
                }
                // Light load.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let counts = |node: &'static str| {
        let writes = Arc::clone(&writes);
        move || {
            let writes = writes.lock().unwrap_or_else(|e| panic!("{e}"));
            writes
                .get(node)
                .map_or((0, 0), |w| (w.acked.len(), w.refused))
        }
    };
    let (count_a, count_b) = (counts("a"), counts("b"));
    wait_until("both nodes acknowledge writes", async || {
        count_a().0 >= 5 && count_b().0 >= 5
    })
    .await;
    let stopped = Instant::now();
    let down = ctl.stop().await;
    eprintln!("scaleout: PostgreSQL stopped in {:?}", stopped.elapsed());
    // Every answer comes within the client's 10 s (WsClient): nothing hangs. Both nodes refuse,
    // again and again, while the database is down.
    let stopped = (count_a(), count_b());
    let took = wait_within("both nodes refuse writes", RECOVERY_BOUND, async || {
        count_a().1 >= stopped.0.1 + 3 && count_b().1 >= stopped.1.1 + 3
    })
    .await;
    assert_eq!(
        (count_a().0, count_b().0),
        (stopped.0.0, stopped.1.0),
        "writes acknowledged while the database was down"
    );
    eprintln!("scaleout: both nodes refused writes {took:?} after the stop");
    // Any other write fails the same way on both nodes; a read served from the cache still works.
    for (node, server) in [("a", a), ("b", b)] {
        let mut c = server.ws().await;
        let r = get_profile(&mut c, &format!("{node}-1")).await;
        assert_eq!(
            r["status"], 200,
            "getProfile from the cache during the outage: {r}"
        );
        let text = c
            .call_text(
                &req(
                    "security",
                    "createRole",
                    json!({"_id":"during","body":{"controllers":{"server":{"actions":{"now":true}}}},"requestId":"down"}),
                )
                .to_string(),
            )
            .await;
        assert_eq!(
            text,
            error_answer(node, "security", "createRole", "down", NOT_CONNECTED)
        );
    }
    // A load balancer's readiness check takes both nodes out while the database is down (the
    // store is pinged every second), and the health check says why.
    for (node, server) in [("a", a), ("b", b)] {
        let took = wait_within(
            &format!("node {node} unready while the database is down"),
            RECOVERY_BOUND,
            async || {
                http_once(server.addr, "GET", "/_ready", &[], b"")
                    .await
                    .status
                    == 503
            },
        )
        .await;
        let health = http_once(server.addr, "GET", "/_healthCheck", &[], b"").await;
        assert_eq!(health.status, 500, "{}", health.text());
        eprintln!(
            "scaleout: database down: node {node}: GET /_ready 503 after {took:?}, GET /_healthCheck {}",
            health.text()
        );
    }
    let during = (count_a(), count_b());
    let started = Instant::now();
    down.start().await;
    eprintln!(
        "scaleout: PostgreSQL started again in {:?}",
        started.elapsed()
    );
    let took = wait_within(
        "both nodes acknowledge writes again",
        RECOVERY_BOUND,
        async || count_a().0 > during.0.0 && count_b().0 > during.1.0,
    )
    .await;
    eprintln!("scaleout: both nodes acknowledged writes {took:?} after the start");
    for (node, server) in [("a", a), ("b", b)] {
        let took = wait_within(
            &format!("node {node} ready again"),
            RECOVERY_BOUND,
            async || {
                http_once(server.addr, "GET", "/_ready", &[], b"")
                    .await
                    .status
                    == 200
            },
        )
        .await;
        eprintln!("scaleout: node {node} ready again {took:?} after the start");
    }
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap_or_else(|e| panic!("writer: {e}"));
    }
    // No acknowledged write is lost: each one is served by both nodes, once their feeds caught up.
    let acked: Vec<String> = {
        let writes = writes.lock().unwrap_or_else(|e| panic!("{e}"));
        writes.values().flat_map(|w| w.acked.clone()).collect()
    };
    for (node, server) in [("a", a), ("b", b)] {
        let mut c = server.ws().await;
        let ids = acked.clone();
        let mut missing = Vec::new();
        let took = wait_within(
            &format!("node {node} serves every acknowledged write"),
            RECOVERY_BOUND,
            async || {
                let r = c
                    .call(req(
                        "security",
                        "mGetProfiles",
                        json!({"body":{"ids":&ids}}),
                    ))
                    .await;
                let hits: Vec<&str> = r["result"]["hits"]
                    .as_array()
                    .map(|h| h.iter().filter_map(|d| d["_id"].as_str()).collect())
                    .unwrap_or_default();
                missing = ids
                    .iter()
                    .filter(|id| !hits.contains(&id.as_str()))
                    .cloned()
                    .collect();
                missing.is_empty()
            },
        )
        .await;
        eprintln!(
            "scaleout: node {node} served all {} acknowledged writes ({took:?})",
            ids.len()
        );
    }
    for (node, w) in writes.lock().unwrap_or_else(|e| panic!("{e}")).iter() {
        eprintln!(
            "scaleout: node {node}: {} writes acknowledged, {} refused with not_connected",
            w.acked.len(),
            w.refused
        );
    }
    cluster.finish().await;
}

/// nginx as a child process, with a generated configuration in a temporary prefix; stopped (and
/// waited for) when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    /// A fast shutdown (SIGTERM to the master, which stops its workers and waits for them), then
    /// SIGKILL if it is still running after 10 s. A SIGKILL alone would leave the workers running.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", pid.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("nginx did not stop on SIGTERM within 10 s: killed, its workers may be left");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (nginx binds it just after: a race with other programs this test
/// accepts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// The nginx block of `docs/scale-out.md` (its first `nginx` code block), with `listen` and the
/// upstream's `server` lines replaced by the test's addresses.
fn doc_nginx_block(listen: SocketAddr, nodes: &[SocketAddr]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scale-out.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let block = doc
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .unwrap_or_else(|| panic!("no ```nginx block in {}", path.display()));
    let mut out = String::new();
    let mut servers_done = false;
    for line in block.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("listen ") {
            out.push_str(&format!("    listen {listen};\n"));
        } else if trimmed.starts_with("server ") && trimmed.ends_with(';') {
            if !servers_done {
                for node in nodes {
                    out.push_str(&format!("    server {node};\n"));
                }
                servers_done = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        servers_done,
        "no upstream server line in the nginx block of {}",
        path.display()
    );
    out
}

/// A whole `nginx.conf`: the test's own process settings (one worker, files in the prefix) around
/// the block of `docs/scale-out.md`.
fn nginx_config(listen: SocketAddr, nodes: &[SocketAddr]) -> String {
    format!(
        r#"worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
{}
}}
"#,
        doc_nginx_block(listen, nodes)
    )
}

impl Nginx {
    fn start(test: &str, nodes: &[SocketAddr]) -> Self {
        Self::start_edited(test, nodes, |conf| conf)
    }

    /// [`Nginx::start`] with the configuration changed by `edit`.
    fn start_edited(test: &str, nodes: &[SocketAddr], edit: impl FnOnce(String) -> String) -> Self {
        let prefix = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::create_dir_all(prefix.path().join("tmp"))
            .unwrap_or_else(|e| panic!("{test}: nginx prefix: {e}"));
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, edit(nginx_config(addr, nodes)))
            .unwrap_or_else(|e| panic!("{test}: nginx.conf: {e}"));
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its messages go to the error log (-e), read on failure.
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                tollgate_testkit::missing_service(test, "nginx", &format!("cannot run nginx: {e}"))
            });
        Self {
            child,
            addr,
            prefix,
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }

    /// Waits until nginx answers on its port.
    async fn ready(&mut self) {
        let addr = self.addr;
        let mut exited = None;
        let child = &mut self.child;
        wait_until("nginx accepts connections", || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
            }
            let exited = exited.is_some();
            async move { exited || tokio::net::TcpStream::connect(addr).await.is_ok() }
        })
        .await;
        if let Some(status) = exited {
            panic!("nginx exited ({status}): {}", self.error_log());
        }
    }
}

/// 7. The nginx configuration of `docs/scale-out.md` in front of both nodes: HTTP requests are
/// spread over them, WebSocket upgrades pass, and a change made through one node's WebSocket is
/// served through the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
#[cfg_attr(all(no_nginx, not(no_pg)), ignore = "nginx not found on the PATH")]
async fn scaleout_nginx_balances_http_and_websocket_over_both_nodes() {
    let test = "scaleout_nginx_balances_http_and_websocket_over_both_nodes";
    let cluster = Cluster::start("scaleout_nginx").await;
    let mut nginx = Nginx::start(test, &[cluster.a.addr, cluster.b.addr]);
    nginx.ready().await;
    let lb = nginx.addr;
    // HTTP: round robin, one node then the other.
    let mut nodes = Vec::new();
    for n in 0..4 {
        let id = format!("h{n}");
        let r = http_once(lb, "GET", "/_now", &[("X-Kuzzle-Request-Id", &id)], b"").await;
        assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{}", r.text());
        let node = r.json()["node"].as_str().unwrap_or_default().to_owned();
        let expected = format!(
            r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"{node}","requestId":"{id}","result":{{"now":X}},"status":200,"volatile":null}}"#
        );
        assert_eq!(mask_number(&r.text(), "now").0, expected);
        nodes.push(node);
    }
    assert!(
        nodes[0] != nodes[1] && nodes[0] == nodes[2] && nodes[1] == nodes[3],
        "HTTP requests through nginx were not spread over both nodes: {nodes:?}"
    );
    // A body over max_request_size is refused by nginx itself (client_max_body_size), which keeps
    // both nodes in rotation.
    let big = format!(r#"{{"policies":[],"pad":"{}"}}"#, "x".repeat(1536 * 1024));
    let r = http_once(lb, "POST", "/profiles/big/_create", &[], big.as_bytes()).await;
    assert_eq!(
        r.status_line,
        "HTTP/1.1 413 Request Entity Too Large",
        "{}",
        r.text()
    );
    let mut after = Vec::new();
    for n in 0..2 {
        let r = http_once(
            lb,
            "GET",
            "/_now",
            &[("X-Kuzzle-Request-Id", &format!("after{n}"))],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        after.push(r.json()["node"].as_str().unwrap_or_default().to_owned());
    }
    assert_ne!(
        after[0], after[1],
        "a node left the rotation after the 413: {after:?}"
    );
    // WebSocket: two connections, one on each node, through nginx's upgrade.
    let mut first = WsClient::connect(lb, "/").await;
    let mut second = WsClient::connect(lb, "/").await;
    let n1 = now_anonymous(&mut first, "ws1").await;
    let n2 = now_anonymous(&mut second, "ws2").await;
    let node_of = |text: &str| -> String {
        text.split_once(r#""node":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(node, _)| node.to_owned())
            .unwrap_or_else(|| panic!("no node in {text}"))
    };
    let (node1, node2) = (node_of(&n1), node_of(&n2));
    assert_ne!(node1, node2, "both WebSocket connections on one node");
    assert_eq!(n1, now_ok(node1.trim_start_matches("knode-"), "ws1"));
    assert_eq!(n2, now_ok(node2.trim_start_matches("knode-"), "ws2"));
    // A profile created through one connection is served through the other, on the other node.
    let r = first
        .call(req(
            "security",
            "createProfile",
            json!({"_id":"via-lb","body":{"policies":[{"roleId":"default"}]}}),
        ))
        .await;
    assert_ok(&r, "createProfile through nginx");
    let mut last = Value::Null;
    wait_within(
        "the profile served through the other connection",
        FEED_BOUND,
        async || {
            last = get_profile(&mut second, "via-lb").await;
            last["status"] == 200
        },
    )
    .await;
    assert_eq!(last["node"], node2.as_str(), "{last}");
    assert_eq!(
        mask_info(last["result"].clone()),
        json!({"_id":"via-lb","_version":1,"_source":{"policies":[{"roleId":"default"}],"rateLimit":0,"_kuzzle_info":{"author":null,"createdAt":"X","updatedAt":null,"updater":null}}})
    );
    drop(first);
    drop(second);
    drop(nginx);
    cluster.finish().await;
}

/// With nginx's `client_max_body_size` (2 MiB here, 1 MiB in `docs/scale-out.md`) above Tollgate's
/// `max_request_size` (1 MiB), a client sending a body between the two should get Tollgate's Kuzzle
/// error through nginx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_pg, ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)")]
#[cfg_attr(all(no_nginx, not(no_pg)), ignore = "nginx not found on the PATH")]
async fn scaleout_nginx_passes_tollgates_413_for_an_oversized_body() {
    let test = "scaleout_nginx_passes_tollgates_413_for_an_oversized_body";
    let cluster = Cluster::start("scaleout_nginx_413").await;
    let mut nginx = Nginx::start_edited(test, &[cluster.a.addr, cluster.b.addr], |conf| {
        assert!(conf.contains("client_max_body_size 1m;"), "{conf}");
        conf.replace("client_max_body_size 1m;", "client_max_body_size 2m;")
    });
    nginx.ready().await;
    let big = format!(r#"{{"policies":[],"pad":"{}"}}"#, "x".repeat(1536 * 1024));
    let r = http_once(
        nginx.addr,
        "POST",
        "/profiles/big/_create",
        &[("Content-Type", "application/json")],
        big.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status_line.as_str(), r.text().as_str()),
        (
            "HTTP/1.1 413 Payload Too Large",
            r#"{"code":50397185,"id":"network.http.request_too_large","message":"Maximum HTTP request size exceeded.","props":[],"status":413}"#
        ),
        "nginx's error log:\n{}",
        nginx.error_log()
    );
    drop(nginx);
    cluster.finish().await;
}
