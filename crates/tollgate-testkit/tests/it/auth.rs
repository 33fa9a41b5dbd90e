//! Users, login, tokens, the rights check on every request and rate limits, through real sockets.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, http_once, mask_number, now_ms};

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

/// Waits until just after the next wall-clock second starts, and returns the second now current.
/// Rate-limit windows are wall-clock seconds (`protocol.md` §6.3): a burst started there has the whole
/// second to itself. Whether it stayed within one is checked after, with [`still`].
async fn next_second() -> u64 {
    tokio::time::sleep(Duration::from_millis(1000 - now_ms() % 1000)).await;
    now_ms() / 1000
}

/// Whether the wall clock is still in `second`.
fn still(second: u64) -> bool {
    now_ms() / 1000 == second
}

/// How many times a burst is tried again when it did not fit in one second.
const ATTEMPTS: usize = 5;

#[track_caller]
fn assert_error(r: &Value, id: &str, status: u16, message: &str) {
    assert_eq!(r["error"]["id"], id, "{r}");
    assert_eq!(r["status"], status, "{r}");
    if !message.is_empty() {
        assert_eq!(r["error"]["message"], message, "{r}");
    }
}

/// createFirstAdmin (with `reset`) as anonymous; returns the admin's kuid.
async fn first_admin(c: &mut WsClient) -> String {
    let r = c
        .call(req(
            "security",
            "createFirstAdmin",
            json!({"_id":"kuid-admin","reset":true,"body":{"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    r["result"]["_id"].as_str().unwrap_or_default().to_owned()
}

/// Logs in over HTTP (10 logins per second per IP) and returns the token.
async fn login(s: &TestServer, username: &str, password: &str, extra_query: &str) -> Value {
    let body = json!({"username":username,"password":password}).to_string();
    http_once(
        s.addr,
        "POST",
        &format!("/_login/local{extra_query}"),
        &[],
        body.as_bytes(),
    )
    .await
    .json()
}

async fn token(s: &TestServer, username: &str, password: &str) -> String {
    let r = login(s, username, password, "").await;
    assert_eq!(r["status"], 200, "{r}");
    r["result"]["jwt"].as_str().unwrap_or_default().to_owned()
}

/// Creates a user with local credentials (as `admin_jwt`).
async fn user(c: &mut WsClient, admin_jwt: &str, id: &str, profiles: Value) {
    let r = c
        .call(with_jwt(
            req(
                "security",
                "createUser",
                json!({"_id":id,"body":{"content":{"profileIds":profiles,"name":id},"credentials":{"local":{"username":id,"password":format!("{id}-pw")}}}}),
            ),
            admin_jwt,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn first_admin_flow_over_websocket() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let admin = first_admin(&mut c).await;
    assert_eq!(admin, "kuid-admin");
    // Case 59: anonymous is now refused.
    assert_eq!(
        c.call_text(r#"{"controller":"security","action":"updateProfile","_id":"default","body":{},"requestId":"u1"}"#).await,
        format!(r#"{{"action":"updateProfile","controller":"security","error":{{"code":117637121,"id":"security.rights.unauthorized","message":"Unauthorized: authentication required to execute the action \"security:updateProfile\".","props":["security","updateProfile"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"u1","result":null,"status":401,"volatile":null,"room":"u1"}}"#)
    );
    // A second createFirstAdmin by anonymous gets 401, not 412.
    let r = c
        .call(req("security", "createFirstAdmin", json!({"body":{}})))
        .await;
    assert_error(&r, "security.rights.unauthorized", 401, "");
    // Login over WebSocket.
    let r = c
        .call(req(
            "auth",
            "login",
            json!({"strategy":"local","body":{"username":"admin","password":"admin-pw"}}),
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let keys: Vec<&String> = r["result"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["_id", "expiresAt", "jwt", "ttl"]);
    assert_eq!(r["result"]["_id"], "kuid-admin");
    assert_eq!(r["result"]["ttl"], 3_600_000);
    let jwt = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    assert!(jwt.starts_with("kauth-ey"), "{jwt}");
    // As admin: the profile write records the caller.
    let r = c
        .call(with_jwt(req("security", "createRole", json!({"_id":"editor","body":{"controllers":{"document":{"actions":{"get":true}}}}})), &jwt))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(with_jwt(req("security", "createProfile", json!({"_id":"editors","body":{"policies":[{"roleId":"editor"}],"rateLimit":10,"tags":["staff"]}})), &jwt))
        .await;
    assert_eq!(
        r["result"]["_source"]["_kuzzle_info"]["author"],
        "kuid-admin"
    );
    let text = c
        .call_text(
            &with_jwt(
                req(
                    "security",
                    "updateProfile",
                    json!({"_id":"editors","body":{"rateLimit":20},"requestId":"u2"}),
                ),
                &jwt,
            )
            .to_string(),
        )
        .await;
    let (masked, _) = mask_number(&text, "createdAt");
    let (masked, _) = mask_number(&masked, "updatedAt");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"u2","result":{{"_id":"editors","_version":2,"_source":{{"policies":[{{"roleId":"editor"}}],"rateLimit":20,"tags":["staff"],"_kuzzle_info":{{"author":"kuid-admin","createdAt":X,"updatedAt":X,"updater":"kuid-admin"}}}}}},"status":200,"volatile":null,"room":"u2"}}"#
        )
    );
    // Case 60: a `default` user is refused with 403.
    user(&mut c, &jwt, "u2", json!(["default"])).await;
    let u2 = token(&s, "u2", "u2-pw").await;
    assert_eq!(
        c.call_text(
            &with_jwt(
                req(
                    "security",
                    "updateProfile",
                    json!({"_id":"editors","body":{},"requestId":"u3"})
                ),
                &u2
            )
            .to_string()
        )
        .await,
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":{{"code":117637122,"id":"security.rights.forbidden","message":"Insufficient permissions to execute the action \"security:updateProfile\" (User \"u2\").","props":["security","updateProfile","u2"],"status":403}},"headers":{{}},"node":"{NODE}","requestId":"u3","result":null,"status":403,"volatile":null,"room":"u3"}}"#
        )
    );
    // A message without jwt on the same socket is anonymous again.
    let r = c
        .call(req("security", "getProfile", json!({"_id":"editors"})))
        .await;
    assert_error(&r, "security.rights.unauthorized", 401, "");
}

#[tokio::test]
async fn first_admin_flow_over_http() {
    let s = TestServer::start().await;
    let body = br#"{"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}"#;
    let r = http_once(
        s.addr,
        "POST",
        "/_createFirstAdmin/kuid-admin?reset",
        &[],
        body,
    )
    .await
    .json();
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["_source"]["profileIds"], json!(["admin"]));
    assert_eq!(r["result"]["_source"]["name"], "Admin");
    assert!(r["result"]["_source"].get("credentials").is_none());
    assert!(!r.to_string().contains("admin-pw"));
    let r = http_once(s.addr, "PUT", "/profiles/default/_update", &[], b"{}").await;
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(r.json()["error"]["id"], "security.rights.unauthorized");
    let jwt = token(&s, "admin", "admin-pw").await;
    let bearer = format!("Bearer {jwt}");
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/default/_update?refresh=wait_for",
        &[("Authorization", &bearer)],
        br#"{"rateLimit":7}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["result"]["_source"]["_kuzzle_info"]["updater"],
        "kuid-admin"
    );
    assert_eq!(r.json()["result"]["_source"]["rateLimit"], 7);
    // `?jwt=` works too; the header wins when both are present.
    let r = http_once(
        s.addr,
        "GET",
        &format!("/profiles/default?jwt={jwt}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http_once(
        s.addr,
        "GET",
        "/profiles/default?jwt=kauth-bad",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    // A `default` user is refused with 403.
    let body = br#"{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"u2","password":"u2-pw"}}}"#;
    let r = http_once(
        s.addr,
        "POST",
        "/users/u2/_create",
        &[("Authorization", &bearer)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let u2 = format!("Bearer {}", token(&s, "u2", "u2-pw").await);
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/default/_update",
        &[("Authorization", &u2)],
        b"{}",
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 403 Forbidden");
    assert_eq!(
        r.json()["error"]["message"],
        "Insufficient permissions to execute the action \"security:updateProfile\" (User \"u2\")."
    );
    // The route table lists the auth routes for the SDK, and anonymous may still read it.
    let r = http_once(s.addr, "GET", "/_publicApi", &[], b"")
        .await
        .json();
    assert_eq!(
        r["result"]["auth"]["checkToken"]["http"],
        json!([{"path":"/_checkToken","url":"/_checkToken","verb":"POST"}])
    );
    // The SDK's connect-time checkToken works anonymously.
    let r = http_once(
        s.addr,
        "POST",
        "/_checkToken",
        &[("X-Kuzzle-Volatile", "{}")],
        b"{}",
    )
    .await
    .json();
    assert_eq!(
        r["result"],
        json!({"expiresAt":null,"kuid":"-1","valid":true})
    );
}

/// (controller, action) → allowed for (anonymous, default) after `reset` (admin: everything).
/// `auth:login` always runs as anonymous, whatever token comes with it.
fn expected(controller: &str, action: &str) -> (bool, bool) {
    let anonymous = matches!(
        (controller, action),
        (
            "auth",
            "checkToken" | "getCurrentUser" | "getMyRights" | "login"
        ) | ("server", "publicApi" | "openapi")
    );
    let default = matches!(
        (controller, action),
        (
            "auth",
            "checkToken" | "getCurrentUser" | "getMyRights" | "logout" | "updateSelf" | "login"
        ) | ("server", "publicApi")
    );
    (anonymous, default)
}

#[tokio::test]
async fn authorization_matrix_after_reset() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let admin = token(&s, "admin", "admin-pw").await;
    user(&mut c, &admin, "u-default", json!(["default"])).await;
    let default = token(&s, "u-default", "u-default-pw").await;
    let table = c
        .call(with_jwt(req("server", "publicApi", json!({})), &admin))
        .await;
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (controller, actions) in table["result"].as_object().cloned().unwrap_or_default() {
        for action in actions
            .as_object()
            .map(|a| a.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            pairs.push((controller.clone(), action));
        }
    }
    // Every security action, the bulk and mapping ones included, is in the table.
    for a in [
        "replaceUser",
        "upsertUser",
        "createRestrictedUser",
        "mDeleteUsers",
        "mDeleteProfiles",
        "mDeleteRoles",
        "revokeTokens",
        "checkRights",
        "refresh",
        "getProfileMapping",
        "getRoleMapping",
        "getUserMapping",
        "updateProfileMapping",
        "updateRoleMapping",
        "updateUserMapping",
    ] {
        assert!(
            pairs.iter().any(|(c_, a_)| c_ == "security" && a_ == a),
            "security:{a} missing from publicApi"
        );
    }
    // Native actions Tollgate does not implement are checked too.
    for (c_, a) in [("document", "get"), ("server", "openapi"), ("ms", "get")] {
        pairs.push((c_.to_owned(), a.to_owned()));
    }
    // The credentials API (`credentials.rs`): every action is in the table, so in the matrix.
    for (c_, a) in [
        ("security", "createCredentials"),
        ("security", "updateCredentials"),
        ("security", "hasCredentials"),
        ("security", "getCredentials"),
        ("security", "getCredentialsById"),
        ("security", "getCredentialFields"),
        ("security", "getAllCredentialFields"),
        ("security", "validateCredentials"),
        ("security", "deleteCredentials"),
        ("security", "searchUsersByCredentials"),
        ("security", "getUserStrategies"),
        ("auth", "createMyCredentials"),
        ("auth", "updateMyCredentials"),
        ("auth", "credentialsExist"),
        ("auth", "getMyCredentials"),
        ("auth", "validateMyCredentials"),
        ("auth", "deleteMyCredentials"),
        ("auth", "updateSelf"),
        ("auth", "getStrategies"),
    ] {
        assert!(
            pairs.contains(&(c_.to_owned(), a.to_owned())),
            "{c_}:{a} missing from the route table"
        );
    }
    // Refreshing the caller's token revokes it after the grace (1 s), logging out revokes it at
    // once: keep them last, in that order.
    let rank = |c_: &str, a: &str| match (c_, a) {
        ("auth", "refreshToken") => 1,
        ("auth", "logout") => 2,
        _ => 0,
    };
    pairs.sort_by_key(|(c_, a)| (rank(c_, a), c_.clone(), a.clone()));
    assert!(pairs.len() >= 40, "{} actions", pairs.len());
    // API keys (api_keys.rs): admin only, as Kuzzle's default role grants none of them.
    for (c_, a) in [
        ("auth", "createApiKey"),
        ("auth", "searchApiKeys"),
        ("auth", "deleteApiKey"),
        ("security", "createApiKey"),
        ("security", "searchApiKeys"),
        ("security", "deleteApiKey"),
    ] {
        assert!(
            pairs.iter().any(|(x, y)| x == c_ && y == a),
            "{c_}:{a} missing from the matrix"
        );
        assert_eq!(expected(c_, a), (false, false), "{c_}:{a}");
    }
    let rights_error = |r: &Value| {
        r["error"]["id"]
            .as_str()
            .filter(|id| id.starts_with("security.rights."))
            .map(str::to_owned)
    };
    for (controller, action) in &pairs {
        let (anonymous_ok, default_ok) = expected(controller, action);
        let base = req(controller, action, json!({}));
        let r = c.call(base.clone()).await;
        match (anonymous_ok, rights_error(&r)) {
            (true, None) => {}
            (false, Some(id)) => {
                assert_eq!(id, "security.rights.unauthorized", "{controller}:{action}")
            }
            _ => panic!("anonymous {controller}:{action}: {r}"),
        }
        let r = c.call(with_jwt(base.clone(), &default)).await;
        match (default_ok, rights_error(&r)) {
            (true, None) => {}
            (false, Some(id)) => {
                assert_eq!(id, "security.rights.forbidden", "{controller}:{action}")
            }
            _ => panic!("default {controller}:{action}: {r}"),
        }
        let r = c.call(with_jwt(base, &admin)).await;
        assert_eq!(rights_error(&r), None, "admin {controller}:{action}: {r}");
        assert_ne!(
            r["error"]["id"], "security.token.invalid",
            "admin {controller}:{action}: {r}"
        );
    }
}

#[tokio::test]
async fn restricted_to_one_index_and_changes_apply_at_once() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let admin = token(&s, "admin", "admin-pw").await;
    for r in [
        req(
            "collection",
            "create",
            json!({"index":"nyc","collection":"taxi"}),
        ),
        req("index", "create", json!({"index":"mtp"})),
        req(
            "security",
            "createRole",
            json!({"_id":"editor","body":{"controllers":{"document":{"actions":{"get":true,"search":true}},"auth":{"actions":{"checkRights":true,"getMyRights":true}}}}}),
        ),
        req(
            "security",
            "createProfile",
            json!({"_id":"editors","body":{"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc"}]}],"rateLimit":0}}),
        ),
    ] {
        let r = c.call(with_jwt(r, &admin)).await;
        assert_eq!(r["status"], 200, "{r}");
    }
    user(&mut c, &admin, "u1", json!(["editors"])).await;
    let u1 = token(&s, "u1", "u1-pw").await;
    let get = |index: &str| {
        with_jwt(
            req(
                "document",
                "get",
                json!({"index":index,"collection":"taxi","_id":"x"}),
            ),
            &u1,
        )
    };
    // Case 61: allowed (not implemented) on nyc, refused on mtp.
    assert_error(
        &c.call(get("nyc")).await,
        "api.process.controller_not_found",
        404,
        "",
    );
    assert_error(
        &c.call(get("mtp")).await,
        "security.rights.forbidden",
        403,
        "",
    );
    // Restrictions apply to any request naming an index.
    let r = c
        .call(with_jwt(req("server", "now", json!({"index":"mtp"})), &u1))
        .await;
    assert_error(&r, "security.rights.forbidden", 403, "");
    // The admin moves the restriction: the very next request sees it.
    let r = c
        .call(with_jwt(req("security", "updateProfile", json!({"_id":"editors","body":{"policies":[{"roleId":"editor","restrictedTo":[{"index":"mtp"}]}]}})), &admin))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_error(
        &c.call(get("nyc")).await,
        "security.rights.forbidden",
        403,
        "",
    );
    assert_error(
        &c.call(get("mtp")).await,
        "api.process.controller_not_found",
        404,
        "",
    );
    // checkRights and getMyRights answer for the caller.
    let r = c
        .call(with_jwt(
            req(
                "auth",
                "checkRights",
                json!({"body":{"controller":"document","action":"get","index":"mtp"}}),
            ),
            &u1,
        ))
        .await;
    assert_eq!(r["result"], json!({"allowed":true}));
    let r = c
        .call(with_jwt(
            req(
                "auth",
                "checkRights",
                json!({"body":{"controller":"document","action":"get","index":"nyc"}}),
            ),
            &u1,
        ))
        .await;
    assert_eq!(r["result"], json!({"allowed":false}));
    let r = c
        .call(with_jwt(
            req("auth", "checkRights", json!({"body":{"action":"get"}})),
            &u1,
        ))
        .await;
    assert_error(
        &r,
        "api.assert.missing_argument",
        400,
        "Missing argument \"body.controller\".",
    );
    let r = c
        .call(with_jwt(req("auth", "getMyRights", json!({})), &u1))
        .await;
    let hits = r["result"]["hits"].as_array().cloned().unwrap_or_default();
    assert!(hits.contains(&json!({"action":"get","collection":"*","controller":"document","index":"mtp","value":"allowed"})), "{r}");
    // Case 62: a rate limit set by updateProfile applies to the next requests.
    let r = c
        .call(with_jwt(
            req(
                "security",
                "updateProfile",
                json!({"_id":"editors","body":{"rateLimit":1}}),
            ),
            &admin,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // Within one second: the first request passes, the next two are refused.
    for attempt in 1..=ATTEMPTS {
        let second = next_second().await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(c.call(get("mtp")).await);
        }
        if !still(second) {
            assert!(
                attempt < ATTEMPTS,
                "three requests never fitted in one second"
            );
            continue;
        }
        assert_error(&answers[0], "api.process.controller_not_found", 404, "");
        for r in &answers[1..] {
            assert_error(
                r,
                "api.process.too_many_requests",
                429,
                "Rejected: requests rate limit exceeded for this user.",
            );
            assert_eq!(r["error"]["props"], json!([]));
        }
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_then_next_second() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let admin = token(&s, "admin", "admin-pw").await;
    let r = c
        .call(with_jwt(
            req(
                "security",
                "createProfile",
                json!({"_id":"slow","body":{"policies":[{"roleId":"default"}],"rateLimit":5}}),
            ),
            &admin,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    user(&mut c, &admin, "u5", json!(["slow"])).await;
    let u5 = token(&s, "u5", "u5-pw").await;
    // 30 requests sent at once, then their 30 answers: within one second, exactly 5 are served.
    let frame = with_jwt(req("auth", "checkToken", json!({})), &u5).to_string();
    for attempt in 1..=ATTEMPTS {
        let second = next_second().await;
        for _ in 0..30 {
            c.send_text(&frame).await;
        }
        let (mut ok, mut limited) = (0, 0);
        for _ in 0..30 {
            let r = c.recv_json().await;
            match r["status"].as_u64() {
                Some(200) => ok += 1,
                Some(429) => {
                    assert_error(&r, "api.process.too_many_requests", 429, "");
                    limited += 1;
                }
                _ => panic!("{r}"),
            }
        }
        if !still(second) {
            // The burst straddled two windows: at most the limit in each.
            assert!((5..=10).contains(&ok) && ok + limited == 30, "{ok} served");
            assert!(attempt < ATTEMPTS, "the burst never fitted in one second");
            continue;
        }
        assert_eq!((ok, limited), (5, 25));
        // The next second is a new window.
        let next = second + 1;
        while now_ms() / 1000 < next {
            tokio::time::sleep(Duration::from_millis(1000 - now_ms() % 1000)).await;
        }
        assert_eq!(
            c.call(serde_json::from_str(&frame).unwrap_or_default())
                .await["status"],
            200
        );
        break;
    }
    // The most permissive profile wins: with `default` (10) too, the limit is 10; with `admin` (0), none.
    let r = c
        .call(with_jwt(
            req(
                "security",
                "updateUser",
                json!({"_id":"u5","body":{"profileIds":["slow","admin"]}}),
            ),
            &admin,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    for _ in 0..30 {
        c.send_text(&frame).await;
    }
    for _ in 0..30 {
        assert_eq!(c.recv_json().await["status"], 200);
    }
}

#[tokio::test]
async fn login_errors_and_token_checks() {
    let s = TestServer::start_with(|c| c.security.token_max_ttl_ms = 7_200_000, vec![]).await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    for (user, pw) in [("admin", "nope"), ("ghost", "admin-pw")] {
        let r = login(&s, user, pw, "").await;
        assert_error(
            &r,
            "plugin.strategy.missing_user",
            401,
            "wrong username or password",
        );
        assert_eq!(r["error"]["code"], 67305492);
    }
    let r = login(&s, "admin", "", "").await;
    assert_error(
        &r,
        "plugin.strategy.missing_user",
        401,
        "Missing credentials",
    );
    let r = http_once(s.addr, "POST", "/_login/oauth", &[], b"{}")
        .await
        .json();
    assert_error(
        &r,
        "security.credentials.unknown_strategy",
        400,
        "Unknown authentication strategy \"oauth\"",
    );
    for q in ["?expiresIn=0", "?expiresIn=soon"] {
        let r = login(&s, "admin", "admin-pw", q).await;
        assert_error(
            &r,
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"expiresIn\". Expected: a number of milliseconds, or a parsable timespan string",
        );
    }
    for q in ["?expiresIn=3h", "?expiresIn=-1"] {
        let r = login(&s, "admin", "admin-pw", q).await;
        assert_error(
            &r,
            "security.token.ttl_exceeded",
            400,
            "expiresIn value exceeds maximum allowed value",
        );
    }
    let r = login(&s, "admin", "admin-pw", "?expiresIn=2h").await;
    assert_eq!(r["result"]["ttl"], 7_200_000);
    let jwt = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    // checkToken: valid, anonymous, invalid.
    let r = c
        .call(req("auth", "checkToken", json!({"body":{"token":jwt}})))
        .await;
    assert_eq!(r["result"]["valid"], true);
    assert_eq!(r["result"]["kuid"], "kuid-admin");
    assert!(r["result"]["expiresAt"].as_u64().unwrap_or(0) > 0);
    let keys: Vec<&String> = r["result"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["expiresAt", "kuid", "valid"]);
    for body in [json!({}), json!({"token":""}), json!({"token":null})] {
        let r = c
            .call(req("auth", "checkToken", json!({ "body": body })))
            .await;
        assert_eq!(
            r["result"],
            json!({"expiresAt":null,"kuid":"-1","valid":true})
        );
    }
    let mut tampered = jwt.clone();
    tampered.pop();
    tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    let r = c
        .call(req(
            "auth",
            "checkToken",
            json!({"body":{"token":tampered}}),
        ))
        .await;
    assert_eq!(r["result"], json!({"state":"Invalid token.","valid":false}));
    let r = c
        .call(req("auth", "checkToken", json!({"body":{"token":5}})))
        .await;
    assert_error(
        &r,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"body.token\" (expected: string)",
    );
    // A tampered token on any other action is refused.
    let r = c
        .call(with_jwt(req("server", "now", json!({})), &tampered))
        .await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = c.call(with_jwt(req("server", "now", json!({})), "")).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = c
        .call(with_jwt(req("server", "now", json!({})), "kapikey-abc"))
        .await;
    assert_error(&r, "security.token.invalid", 401, "");
    // `cookieAuth` is served (cookie authentication, `protocol.md` §6.1, tests/it/cookie.rs):
    // over WebSocket it changes nothing, the token is used as usual.
    let r = c
        .call(with_jwt(
            req("server", "now", json!({"cookieAuth":true})),
            &jwt,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = c
        .call(with_jwt(
            req("server", "now", json!({"cookieAuth":"yes"})),
            &jwt,
        ))
        .await;
    assert_error(
        &r,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"cookieAuth\" (expected: boolean)",
    );
    // getCurrentUser, as admin and as anonymous.
    let r = c
        .call(with_jwt(req("auth", "getCurrentUser", json!({})), &jwt))
        .await;
    assert_eq!(r["result"]["_id"], "kuid-admin");
    assert_eq!(r["result"]["strategies"], json!(["local"]));
    assert_eq!(r["result"]["_source"]["name"], "Admin");
    let r = c.call(req("auth", "getCurrentUser", json!({}))).await;
    assert_eq!(
        r["result"].to_string(),
        r#"{"_id":"-1","_source":{"profileIds":["anonymous"],"name":"Anonymous"},"strategies":[]}"#
    );
    // Logout, then the token is refused everywhere; anonymous logout is refused.
    let r = c
        .call(with_jwt(req("auth", "logout", json!({})), &jwt))
        .await;
    assert_eq!(r["result"], json!({"acknowledged":true}));
    let r = c
        .call(with_jwt(req("server", "now", json!({})), &jwt))
        .await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = c
        .call(req("auth", "checkToken", json!({"body":{"token":jwt}})))
        .await;
    assert_eq!(r["result"], json!({"state":"Invalid token.","valid":false}));
    let r = c.call(req("auth", "logout", json!({}))).await;
    assert_error(&r, "security.rights.unauthorized", 401, "");
}

#[tokio::test]
async fn expired_tokens_and_the_websocket_notification() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let r = login(&s, "admin", "admin-pw", "?expiresIn=1s").await;
    assert_eq!(r["result"]["ttl"], 1000);
    let expires_at = r["result"]["expiresAt"].as_u64().unwrap_or(0);
    let jwt = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    // Using the token on a socket links it to the socket.
    let r = c
        .call(with_jwt(req("server", "now", json!({})), &jwt))
        .await;
    assert_eq!(r["status"], 200);
    let notification = tokio::time::timeout(Duration::from_secs(3), c.recv_text()).await;
    assert_eq!(
        notification.ok(),
        Some(format!(
            r#"{{"status":200,"info":"This is an automated server notification","message":"Authentication Token Expired","type":"TokenExpired","node":"{NODE}","room":"kuzzle:notification:server"}}"#
        ))
    );
    // The notification comes once the token's expiresAt has passed, not before; the socket stays
    // open, and the token is now expired.
    assert!(now_ms() >= expires_at, "notified before {expires_at}");
    let r = c
        .call(with_jwt(req("server", "now", json!({})), &jwt))
        .await;
    assert_error(&r, "security.token.expired", 401, "Token expired");
    let r = c
        .call(req("auth", "checkToken", json!({"body":{"token":jwt}})))
        .await;
    assert_eq!(r["result"], json!({"state":"Token expired","valid":false}));
    // Login still works with an expired token in the envelope (the SDK resends the one it holds).
    let r = c
        .call(with_jwt(
            req(
                "auth",
                "login",
                json!({"strategy":"local","body":{"username":"admin","password":"admin-pw"}}),
            ),
            &jwt,
        ))
        .await;
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn user_lifecycle() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let admin = token(&s, "admin", "admin-pw").await;
    let call = |r: Value| with_jwt(r, &admin);
    // Generated kuids.
    let r = c
        .call(call(req(
            "security",
            "createUser",
            json!({"body":{"content":{"profileIds":["default"]}}}),
        )))
        .await;
    assert!(
        r["result"]["_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kuid-"),
        "{r}"
    );
    let r = c
        .call(call(req(
            "security",
            "createUser",
            json!({"kuid":"uuid","body":{"content":{"profileIds":["default"]}}}),
        )))
        .await;
    assert_eq!(r["result"]["_id"].as_str().map(str::len), Some(41));
    // Argument checks.
    let cases = [
        (
            json!({"body":{}}),
            "api.assert.missing_argument",
            "Missing argument \"body.content\".",
        ),
        (
            json!({"body":{"content":{}}}),
            "api.assert.missing_argument",
            "Missing argument \"body.content.profileIds\".",
        ),
        (
            json!({"body":{"content":{"profileIds":[]}}}),
            "api.assert.empty_argument",
            "The argument \"body.content.profileIds\" is empty.",
        ),
        (
            json!({"body":{"content":{"profileIds":"default"}}}),
            "api.assert.invalid_type",
            "Wrong type for argument \"body.content.profileIds\" (expected: array)",
        ),
        (
            json!({"kuid":"x","body":{"content":{"profileIds":["default"]}}}),
            "api.assert.invalid_argument",
            "",
        ),
        (
            json!({"body":{"content":{"profileIds":["default"]},"credentials":{"oauth":{}}}}),
            "security.credentials.unknown_strategy",
            "",
        ),
        (
            json!({"body":{"content":{"profileIds":["ghost"]}}}),
            "security.profile.not_found",
            "Profile \"ghost\" not found.",
        ),
        (
            json!({"_id":"-1","body":{"content":{"profileIds":["default"]}}}),
            "security.user.already_exists",
            "User -1 already exists.",
        ),
        (
            json!({"_id":"kuid-admin","body":{"content":{"profileIds":["default"]}}}),
            "security.user.already_exists",
            "",
        ),
        (
            json!({"body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"x","password":"p","kuid":"y"}}}}),
            "security.credentials.rejected",
            "Credentials rejected: kuid cannot be specified in credentials.",
        ),
        (
            json!({"body":{"content":{"profileIds":["default"]},"credentials":{"local":{"password":"p"}}}}),
            "security.credentials.rejected",
            "Credentials rejected: Username required.",
        ),
        (
            json!({"body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"z"}}}}),
            "security.credentials.rejected",
            "Credentials rejected: Password required.",
        ),
        (
            json!({"body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"admin","password":"p"}}}}),
            "security.credentials.rejected",
            "Credentials rejected: Login \"admin\" is already used.",
        ),
    ];
    for (extra, id, message) in cases {
        let r = c.call(call(req("security", "createUser", extra))).await;
        assert_error(
            &r,
            id,
            r["status"].as_u64().map_or(0, |s| s as u16),
            message,
        );
    }
    user(&mut c, &admin, "bob", json!(["default"])).await;
    let r = c
        .call(call(req("security", "getUser", json!({"_id":"bob"}))))
        .await;
    assert_eq!(r["result"]["_version"], 1);
    let keys: Vec<&String> = r["result"]["_source"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["profileIds", "name", "_kuzzle_info"]);
    assert!(!r.to_string().contains("bob-pw") && !r.to_string().contains("argon2"));
    let r = c
        .call(call(req("security", "getUser", json!({"_id":"-1"}))))
        .await;
    assert_eq!(
        r["result"].to_string(),
        r#"{"_id":"-1","_source":{"profileIds":["anonymous"],"name":"Anonymous"}}"#
    );
    assert_error(
        &c.call(call(req("security", "getUser", json!({"_id":"ghost"}))))
            .await,
        "security.user.not_found",
        404,
        "User \"ghost\" not found.",
    );
    // updateUser: shallow merge, profiles checked, credentials forbidden.
    let r = c
        .call(call(req(
            "security",
            "updateUser",
            json!({"_id":"bob","body":{"email":"b@x","profileIds":["default","admin"]}}),
        )))
        .await;
    assert_eq!(r["result"]["_version"], 2);
    assert_eq!(r["result"]["_source"]["email"], "b@x");
    assert_eq!(r["result"]["_source"]["name"], "bob");
    assert_eq!(
        r["result"]["_source"]["_kuzzle_info"]["updater"],
        "kuid-admin"
    );
    assert_error(
        &c.call(call(req(
            "security",
            "updateUser",
            json!({"_id":"bob","body":{"credentials":{}}}),
        )))
        .await,
        "api.assert.forbidden_argument",
        400,
        "The argument \"body.credentials\" is not allowed by this API action.",
    );
    assert_error(
        &c.call(call(req(
            "security",
            "updateUser",
            json!({"_id":"bob","body":{"profileIds":[]}}),
        )))
        .await,
        "api.assert.empty_argument",
        400,
        "",
    );
    assert_error(
        &c.call(call(req(
            "security",
            "updateUser",
            json!({"_id":"-1","body":{}}),
        )))
        .await,
        "security.user.not_found",
        404,
        "",
    );
    let r = c
        .call(call(req("security", "getUserRights", json!({"_id":"-1"}))))
        .await;
    assert_eq!(r["result"]["total"], 6);
    // deleteProfile with users holding it.
    let r = c
        .call(call(req(
            "security",
            "createProfile",
            json!({"_id":"temp","body":{"policies":[{"roleId":"default"}]}}),
        )))
        .await;
    assert_eq!(r["status"], 200);
    let r = c
        .call(call(req(
            "security",
            "updateUser",
            json!({"_id":"bob","body":{"profileIds":["temp"]}}),
        )))
        .await;
    assert_eq!(r["status"], 200);
    assert_error(
        &c.call(call(req(
            "security",
            "deleteProfile",
            json!({"_id":"temp"}),
        )))
        .await,
        "security.profile.in_use",
        412,
        "The profile \"temp\" is still used and cannot be deleted.",
    );
    let r = c
        .call(call(req(
            "security",
            "deleteProfile",
            json!({"_id":"temp","onAssignedUsers":"remove"}),
        )))
        .await;
    assert_eq!(r["result"], json!({"_id":"temp"}));
    let r = c
        .call(call(req("security", "getUser", json!({"_id":"bob"}))))
        .await;
    assert_eq!(r["result"]["_source"]["profileIds"], json!(["anonymous"]));
    // deleteUser revokes the user's tokens.
    let bob = token(&s, "bob", "bob-pw").await;
    assert_eq!(
        c.call(with_jwt(req("auth", "getCurrentUser", json!({})), &bob))
            .await["status"],
        200
    );
    let r = c
        .call(call(req("security", "deleteUser", json!({"_id":"bob"}))))
        .await;
    assert_eq!(r["result"], json!({"_id":"bob"}));
    assert_error(
        &c.call(with_jwt(req("auth", "getCurrentUser", json!({})), &bob))
            .await,
        "security.token.invalid",
        401,
        "",
    );
    assert_error(
        &login(&s, "bob", "bob-pw", "").await,
        "plugin.strategy.missing_user",
        401,
        "wrong username or password",
    );
    assert_error(
        &c.call(call(req("security", "deleteUser", json!({"_id":"bob"}))))
            .await,
        "security.user.not_found",
        404,
        "",
    );
    // The username is free again.
    user(&mut c, &admin, "bob", json!(["default"])).await;
}

#[tokio::test]
async fn login_rate_limit_per_websocket_connection() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let login = req(
        "auth",
        "login",
        json!({"strategy":"local","body":{"username":"admin","password":"admin-pw"}}),
    );
    // One login per second on a connection: within one second, the first passes, the next two are
    // refused.
    for attempt in 1..=ATTEMPTS {
        let second = next_second().await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(c.call(login.clone()).await);
        }
        if !still(second) {
            assert!(
                attempt < ATTEMPTS,
                "three logins never fitted in one second"
            );
            continue;
        }
        assert_eq!(answers[0]["status"], 200, "{}", answers[0]);
        for r in &answers[1..] {
            assert_error(
                r,
                "api.process.too_many_logins_requests",
                429,
                "Rejected: Too many login attempts per second",
            );
        }
        break;
    }
    // Another connection has its own budget.
    let mut other = s.ws().await;
    let r = other.call(login).await;
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn tokens_survive_a_restart_and_secret_is_kept() {
    let s = TestServer::start().await;
    let dir = s.data_dir.clone();
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    let jwt = token(&s, "admin", "admin-pw").await;
    drop(c);
    assert!(s.stop().await);
    let s = TestServer::start_in(dir, |_| {}, vec![]).await;
    let mut c = s.ws().await;
    let r = c
        .call(with_jwt(req("auth", "getCurrentUser", json!({})), &jwt))
        .await;
    assert_eq!(r["result"]["_id"], "kuid-admin", "{r}");
    // The restricted rights were kept too.
    let r = c
        .call(req("security", "getProfile", json!({"_id":"default"})))
        .await;
    assert_error(&r, "security.rights.unauthorized", 401, "");
}

#[tokio::test]
async fn http_logins_are_limited_per_client_address() {
    let s = TestServer::start_with(|c| c.security.logins_per_second_per_ip = 3, vec![]).await;
    let mut c = s.ws().await;
    first_admin(&mut c).await;
    // 3 per second get through to the password check: within one second, the first 3 of 8.
    for attempt in 1..=ATTEMPTS {
        let second = next_second().await;
        let mut answers = Vec::new();
        for _ in 0..8 {
            answers.push(login(&s, "admin", "wrong", "").await);
        }
        if !still(second) {
            assert!(
                attempt < ATTEMPTS,
                "eight logins never fitted in one second"
            );
            continue;
        }
        for r in &answers[..3] {
            assert_error(r, "plugin.strategy.missing_user", 401, "");
        }
        for r in &answers[3..] {
            assert_error(r, "api.process.too_many_logins_requests", 429, "");
        }
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_admins_only_one_wins() {
    let s = TestServer::start().await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut c = s.ws().await;
        tasks.push(tokio::spawn(async move {
            c.call(req(
                "security",
                "createFirstAdmin",
                json!({"_id":format!("admin-{i}"),"body":{}}),
            ))
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        let r = t.await.unwrap_or_default();
        match r["status"].as_u64() {
            Some(200) => won += 1,
            _ => assert_error(
                &r,
                "api.process.admin_exists",
                412,
                "Admin user is already set.",
            ),
        }
    }
    assert_eq!(won, 1);
    // Without `reset`, anonymous keeps every right.
    let mut c = s.ws().await;
    assert_eq!(
        c.call(req("security", "getProfile", json!({"_id":"default"})))
            .await["status"],
        200
    );
}

#[tokio::test]
async fn http_login_limit_uses_forwarded_address_only_behind_a_trusted_proxy() {
    // The test client connects from 127.0.0.1: as a trusted proxy, its X-Forwarded-For is believed.
    let s = TestServer::start_with(
        |c| {
            c.security.logins_per_second_per_ip = 1;
            c.http.trusted_proxies = vec!["127.0.0.1".into()];
        },
        vec![],
    )
    .await;
    let body = br#"{"username":"nobody","password":"x"}"#;
    let attempt = |client: &'static str| {
        let addr = s.addr;
        async move {
            http_once(
                addr,
                "POST",
                "/_login/local",
                &[("X-Forwarded-For", client)],
                body,
            )
            .await
            .json()["error"]["id"]
                .clone()
        }
    };
    // Each client has its own budget of 1 per second.
    let first = [
        attempt("203.0.113.1").await,
        attempt("203.0.113.2").await,
        attempt("203.0.113.3").await,
    ];
    assert!(
        first.iter().all(|id| id == "plugin.strategy.missing_user"),
        "{first:?}"
    );
    // The same client three times within one second: checked once, then limited.
    let limited = [
        json!("plugin.strategy.missing_user"),
        json!("api.process.too_many_logins_requests"),
        json!("api.process.too_many_logins_requests"),
    ];
    for (n, client) in [
        "203.0.113.9",
        "203.0.113.10",
        "203.0.113.11",
        "203.0.113.12",
        "203.0.113.13",
    ]
    .into_iter()
    .enumerate()
    {
        let second = next_second().await;
        let again = [
            attempt(client).await,
            attempt(client).await,
            attempt(client).await,
        ];
        if !still(second) {
            assert!(n + 1 < ATTEMPTS, "three logins never fitted in one second");
            continue;
        }
        assert_eq!(again, limited);
        break;
    }

    // Without trust, the header is ignored: every request counts against 127.0.0.1.
    let s = TestServer::start_with(|c| c.security.logins_per_second_per_ip = 1, vec![]).await;
    for attempt in 1..=ATTEMPTS {
        let second = next_second().await;
        let mut ids = Vec::new();
        for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
            ids.push(
                http_once(
                    s.addr,
                    "POST",
                    "/_login/local",
                    &[("X-Forwarded-For", client)],
                    body,
                )
                .await
                .json()["error"]["id"]
                    .clone(),
            );
        }
        if !still(second) {
            assert!(
                attempt < ATTEMPTS,
                "three logins never fitted in one second"
            );
            continue;
        }
        assert_eq!(ids, limited);
        break;
    }
}
