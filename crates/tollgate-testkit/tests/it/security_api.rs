//! `auth:refreshToken` and `server:adminExists`, through real sockets (`docs/api/auth.md`,
//! `docs/api/server.md`), and `server:publicApi` compared with Kuzzle 2.56's `auth`, `security` and
//! `server` actions (`docs/api/kuzzle-actions.txt`): run with `--nocapture` to see what is missing.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, http_once, mask_number, now_ms};

/// Replaces the value of `"jwt":"…"` in a JSON text with `J`; returns the token found.
fn mask_jwt(text: &str) -> (String, String) {
    let needle = "\"jwt\":\"";
    let Some(start) = text.find(needle) else {
        return (text.to_owned(), String::new());
    };
    let from = start + needle.len();
    let len = text[from..].find('"').unwrap_or(0);
    let masked = format!("{}J{}", &text[..from], &text[from + len..]);
    (masked, text[from..from + len].to_owned())
}

/// createFirstAdmin `kuid-admin` (username `admin`) as anonymous over WebSocket, with `reset`.
async fn first_admin(c: &mut WsClient, reset: bool) {
    let r = c
        .call(json!({"controller":"security","action":"createFirstAdmin","_id":"kuid-admin","reset":reset,"body":{"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
}

/// Logs `admin` in over HTTP; returns `result`.
async fn login(s: &TestServer, query: &str) -> Value {
    let r = http_once(
        s.addr,
        "POST",
        &format!("/_login/local{query}"),
        &[],
        br#"{"username":"admin","password":"admin-pw"}"#,
    )
    .await
    .json();
    assert_eq!(r["status"], 200, "{r}");
    r["result"].clone()
}

fn jwt_of(result: &Value) -> String {
    result["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("no jwt in {result}"))
        .to_owned()
}

/// Sleeps until the wall clock is past `at_ms`.
async fn wait_past(at_ms: u64) {
    let now = now_ms();
    if now <= at_ms {
        tokio::time::sleep(Duration::from_millis(at_ms - now + 20)).await;
    }
}

/// The WS answer to `server:now` with `jwt`, as text, `now` masked.
async fn ws_now(c: &mut WsClient, jwt: &str, rid: &str) -> String {
    let text = c
        .call_text(
            &json!({"controller":"server","action":"now","jwt":jwt,"requestId":rid}).to_string(),
        )
        .await;
    mask_number(&text, "now").0
}

fn ws_now_ok(rid: &str) -> String {
    format!(
        r#"{{"action":"now","controller":"server","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{{"now":X}},"status":200,"volatile":null,"room":"{rid}"}}"#
    )
}

fn ws_invalid_token(action: &str, controller: &str, rid: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":{{"code":117506049,"id":"security.token.invalid","message":"Invalid token.","props":[],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":null,"status":401,"volatile":null,"room":"{rid}"}}"#
    )
}

#[tokio::test]
async fn refresh_token_over_websocket_grace_then_invalid() {
    let s = TestServer::start_with(|c| c.security.refresh_grace_ms = 2_000, vec![]).await;
    let mut c = s.ws().await;
    // Anonymous, while anonymous still holds every right: the action itself refuses, as Kuzzle does.
    assert_eq!(
        c.call_text(r#"{"controller":"auth","action":"refreshToken","requestId":"a1"}"#)
            .await,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":{{"code":117637121,"id":"security.rights.unauthorized","message":"Unauthorized: authentication required to execute the action \"auth:refreshToken\".","props":["auth","refreshToken"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"a1","result":null,"status":401,"volatile":null,"room":"a1"}}"#
        )
    );
    first_admin(&mut c, true).await;
    let old = jwt_of(&login(&s, "?expiresIn=1h").await);

    // A bad expiresIn is refused before anything changes.
    let text = c
        .call_text(&json!({"controller":"auth","action":"refreshToken","jwt":old,"expiresIn":"soon","requestId":"b1"}).to_string())
        .await;
    assert_eq!(
        text,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":{{"code":33619970,"id":"api.assert.invalid_argument","message":"Invalid argument \"expiresIn\". Expected: a number of milliseconds, or a parsable timespan string","props":["expiresIn","a number of milliseconds, or a parsable timespan string"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"b1","result":null,"status":400,"volatile":null,"room":"b1"}}"#
        )
    );

    let before = now_ms();
    let text = c
        .call_text(&json!({"controller":"auth","action":"refreshToken","jwt":old,"expiresIn":"2h","requestId":"r1"}).to_string())
        .await;
    let after = now_ms();
    let (text, new) = mask_jwt(&text);
    let (text, expires_at) = mask_number(&text, "expiresAt");
    assert_eq!(
        text,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":null,"headers":{{}},"node":"{NODE}","requestId":"r1","result":{{"_id":"kuid-admin","expiresAt":X,"jwt":"J","ttl":7200000}},"status":200,"volatile":null,"room":"r1"}}"#
        )
    );
    let expires_at = expires_at.unwrap_or(0);
    assert!(
        (before + 7_200_000..=after + 7_200_000).contains(&expires_at),
        "{expires_at}"
    );
    assert!(new.starts_with("kauth-") && new != old, "{new}");

    // The new token works.
    let r = c
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":new}))
        .await;
    assert_eq!(r["result"]["_id"], "kuid-admin", "{r}");
    // The old one too, during the grace, and checkToken says until when.
    assert_eq!(ws_now(&mut c, &old, "o1").await, ws_now_ok("o1"));
    let r = c
        .call(json!({"controller":"auth","action":"checkToken","body":{"token":old}}))
        .await;
    assert_eq!(r["result"]["valid"], true, "{r}");
    let grace_end = r["result"]["expiresAt"].as_u64().unwrap_or(0);
    assert!(
        (before + 2_000..=after + 2_000).contains(&grace_end),
        "grace end {grace_end}, refreshed between {before} and {after}"
    );
    // A refreshed token cannot be refreshed again, even during its grace.
    assert_eq!(
        c.call_text(
            &json!({"controller":"auth","action":"refreshToken","jwt":old,"requestId":"r2"})
                .to_string()
        )
        .await,
        ws_invalid_token("refreshToken", "auth", "r2")
    );

    // Past the grace, the old token is refused as revoked; the new one still works.
    wait_past(grace_end).await;
    assert_eq!(
        ws_now(&mut c, &old, "o2").await,
        ws_invalid_token("now", "server", "o2")
    );
    let r = c
        .call(json!({"controller":"auth","action":"checkToken","body":{"token":old}}))
        .await;
    assert_eq!(r["result"], json!({"state":"Invalid token.","valid":false}));
    assert_eq!(ws_now(&mut c, &new, "n1").await, ws_now_ok("n1"));

    // A token that never expires cannot be refreshed (Kuzzle's refresh_forbidden).
    let forever = jwt_of(&login(&s, "?expiresIn=-1").await);
    assert_eq!(
        c.call_text(
            &json!({"controller":"auth","action":"refreshToken","jwt":forever,"requestId":"f1"})
                .to_string()
        )
        .await,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":{{"code":117506056,"id":"security.token.refresh_forbidden","message":"Token with infinite TTL cannot be refreshed.","props":["Token with infinite TTL"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"f1","result":null,"status":401,"volatile":null,"room":"f1"}}"#
        )
    );
    assert_eq!(ws_now(&mut c, &forever, "f2").await, ws_now_ok("f2"));
}

#[tokio::test]
async fn refresh_token_moves_the_websocket_expiry_notification_to_the_new_token() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c, true).await;
    let first = login(&s, "?expiresIn=2s").await;
    let old = jwt_of(&first);
    let old_expiry = first["expiresAt"].as_u64().unwrap_or(0);
    // Using the token links it to the socket.
    assert_eq!(ws_now(&mut c, &old, "o1").await, ws_now_ok("o1"));
    let r = c
        .call(json!({"controller":"auth","action":"refreshToken","jwt":old,"expiresIn":"4s"}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let new_expiry = r["result"]["expiresAt"].as_u64().unwrap_or(0);
    // Used again during its grace, the old token is not linked again.
    assert_eq!(ws_now(&mut c, &old, "o2").await, ws_now_ok("o2"));
    // The old token's own expiry passes without a notification (the SDK would drop its new
    // token): the heartbeat's answer is the next frame.
    wait_past(old_expiry + 200).await;
    assert_eq!(c.call_text(r#"{"p":1}"#).await, r#"{"p":2}"#);
    // The new token's expiry is notified, though the new token was never used on this socket.
    let notification = tokio::time::timeout(Duration::from_secs(5), c.recv_text()).await;
    assert_eq!(
        notification.ok(),
        Some(format!(
            r#"{{"status":200,"info":"This is an automated server notification","message":"Authentication Token Expired","type":"TokenExpired","node":"{NODE}","room":"kuzzle:notification:server"}}"#
        ))
    );
    assert!(now_ms() >= new_expiry, "notified before {new_expiry}");
}

#[tokio::test]
async fn refresh_token_over_http_with_the_default_grace() {
    let s = TestServer::start().await;
    let rid = [("X-Kuzzle-Request-Id", "h1")];
    let r = http_once(s.addr, "POST", "/_refreshToken", &rid, b"").await;
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":{{"code":117637121,"id":"security.rights.unauthorized","message":"Unauthorized: authentication required to execute the action \"auth:refreshToken\".","props":["auth","refreshToken"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"h1","result":null,"status":401,"volatile":null}}"#
        )
    );
    let mut c = s.ws().await;
    first_admin(&mut c, true).await;
    let old = jwt_of(&login(&s, "").await);
    let old_bearer = format!("Bearer {old}");

    let before = now_ms();
    let r = http_once(
        s.addr,
        "POST",
        "/_refreshToken?expiresIn=30m",
        &[("Authorization", &old_bearer), rid[0]],
        b"",
    )
    .await;
    let after = now_ms();
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    let (text, new) = mask_jwt(&r.text());
    let (text, expires_at) = mask_number(&text, "expiresAt");
    assert_eq!(
        text,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":null,"headers":{{}},"node":"{NODE}","requestId":"h1","result":{{"_id":"kuid-admin","expiresAt":X,"jwt":"J","ttl":1800000}},"status":200,"volatile":null}}"#
        )
    );
    let expires_at = expires_at.unwrap_or(0);
    assert!((before + 1_800_000..=after + 1_800_000).contains(&expires_at));
    let new_bearer = format!("Bearer {new}");

    let me = |bearer: String| async move {
        http_once(s.addr, "GET", "/_me", &[("Authorization", &bearer)], b"")
            .await
            .json()
    };
    assert_eq!(me(new_bearer.clone()).await["result"]["_id"], "kuid-admin");
    // During the default grace (1 s), the old token still works.
    let r = me(old_bearer.clone()).await;
    assert_eq!(r["result"]["_id"], "kuid-admin", "{r}");
    wait_past(after + 1_000).await;
    let r = http_once(
        s.addr,
        "GET",
        "/_now",
        &[("Authorization", &old_bearer), rid[0]],
        b"",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"now","controller":"server","error":{{"code":117506049,"id":"security.token.invalid","message":"Invalid token.","props":[],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"h1","result":null,"status":401,"volatile":null}}"#
        )
    );
    assert_eq!(me(new_bearer).await["result"]["_id"], "kuid-admin");
}

#[tokio::test]
async fn refresh_grace_is_recorded_and_survives_a_restart() {
    let s = TestServer::start_with(|c| c.security.refresh_grace_ms = 60_000, vec![]).await;
    let mut c = s.ws().await;
    first_admin(&mut c, true).await;
    drop(c);
    let old = jwt_of(&login(&s, "").await);
    let bearer = format!("Bearer {old}");
    let r = http_once(
        s.addr,
        "POST",
        "/_refreshToken",
        &[("Authorization", &bearer)],
        b"",
    )
    .await
    .json();
    assert_eq!(r["status"], 200, "{r}");
    let new = jwt_of(&r["result"]);
    let data_dir = s.data_dir.clone();
    assert!(s.stop().await);
    let s = TestServer::start_in(data_dir, |c| c.security.refresh_grace_ms = 60_000, vec![]).await;
    let mut c = s.ws().await;
    // Both tokens work after the restart; the old one is still known as refreshed.
    assert_eq!(ws_now(&mut c, &old, "o1").await, ws_now_ok("o1"));
    assert_eq!(ws_now(&mut c, &new, "n1").await, ws_now_ok("n1"));
    assert_eq!(
        c.call_text(
            &json!({"controller":"auth","action":"refreshToken","jwt":old,"requestId":"r2"})
                .to_string()
        )
        .await,
        ws_invalid_token("refreshToken", "auth", "r2")
    );
}

#[tokio::test]
async fn admin_exists_over_http_and_websocket() {
    let s = TestServer::start().await;
    let rid = [("X-Kuzzle-Request-Id", "e1")];
    let http = |expected: bool| {
        let body = format!(
            r#"{{"action":"adminExists","controller":"server","error":null,"headers":{{}},"node":"{NODE}","requestId":"e1","result":{{"exists":{expected}}},"status":200,"volatile":null}}"#
        );
        async move {
            let r = http_once(s.addr, "GET", "/_adminExists", &rid, b"").await;
            assert_eq!(r.status_line, "HTTP/1.1 200 OK");
            assert_eq!(r.text(), body);
        }
    };
    let ws = |expected: bool| {
        format!(
            r#"{{"action":"adminExists","controller":"server","error":null,"headers":{{}},"node":"{NODE}","requestId":"e2","result":{{"exists":{expected}}},"status":200,"volatile":null,"room":"e2"}}"#
        )
    };
    let mut c = s.ws().await;
    let ask = r#"{"controller":"server","action":"adminExists","requestId":"e2"}"#;
    http(false).await;
    assert_eq!(c.call_text(ask).await, ws(false));
    // Without reset, anonymous may still ask.
    first_admin(&mut c, false).await;
    http(true).await;
    assert_eq!(c.call_text(ask).await, ws(true));
    // Once the admin loses profile admin, none is left.
    let r = c
        .call(json!({"controller":"security","action":"updateUser","_id":"kuid-admin","body":{"profileIds":["default"]}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    http(false).await;
    assert_eq!(c.call_text(ask).await, ws(false));
}

/// The Kuzzle 2.56 actions kept in `docs/api/kuzzle-actions.txt` (`controller:action` lines).
fn kuzzle_actions() -> Vec<(String, String)> {
    action_list("docs/api/kuzzle-actions.txt")
}

/// A `controller:action` list of the repository (`#` comments and blank lines ignored).
fn action_list(file: &str) -> Vec<(String, String)> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = manifest
        .ancestors()
        .nth(2)
        .unwrap_or_else(|| panic!("no repository root above {}", manifest.display()))
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (c, a) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: not controller:action: {l:?}", path.display()));
            (c.to_owned(), a.to_owned())
        })
        .collect()
}

/// `server:publicApi` against Kuzzle's `auth`, `security` and `server` actions: prints what is not
/// served yet (not a failure), fails on a served action of those controllers that Kuzzle lacks.
#[tokio::test]
async fn public_api_against_the_kuzzle_action_list() {
    let kuzzle = kuzzle_actions();
    let controllers: std::collections::BTreeSet<&str> =
        kuzzle.iter().map(|(c, _)| c.as_str()).collect();
    assert!(
        controllers == ["auth", "security", "server"].into(),
        "{controllers:?}"
    );
    let s = TestServer::start().await;
    let r = http_once(s.addr, "GET", "/_publicApi", &[], b"")
        .await
        .json();
    let table = r["result"]
        .as_object()
        .unwrap_or_else(|| panic!("no route table: {r}"));
    let mut served = Vec::new();
    for controller in &controllers {
        let actions = table
            .get(*controller)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("publicApi lists no {controller} controller: {r}"));
        served.extend(
            actions
                .keys()
                .map(|a| ((*controller).to_owned(), a.clone())),
        );
    }
    // Tollgate's own actions, each listed with its reason.
    let own = action_list("docs/api/tollgate-actions.txt");
    let unknown: Vec<String> = served
        .iter()
        .filter(|pair| !kuzzle.contains(pair) && !own.contains(pair))
        .map(|(c, a)| format!("{c}:{a}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "served, but neither Kuzzle 2.56 actions (docs/api/kuzzle-actions.txt) nor Tollgate's own (docs/api/tollgate-actions.txt): {unknown:?}"
    );
    let missing: Vec<String> = kuzzle
        .iter()
        .filter(|pair| !served.contains(pair))
        .map(|(c, a)| format!("{c}:{a}"))
        .collect();
    println!(
        "Kuzzle 2.56 auth/security/server actions served: {} of {}; not served ({}, each with its reason in docs/api/):",
        kuzzle.len() - missing.len(),
        kuzzle.len(),
        missing.len()
    );
    for action in &missing {
        println!("  {action}");
    }
}
