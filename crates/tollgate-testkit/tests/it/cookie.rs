//! Cookie authentication (`docs/protocol.md` §6.1, Kuzzle's `cookieAuth` and `authToken` cookie),
//! through real sockets: the `Set-Cookie` bytes, the cookie as a request's token, its conflicts
//! and refusals, logout, refreshToken, checkToken, the switch off, WebSocket, CORS.

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tollgate_protocol::cookie::http_date;
use tollgate_testkit::{
    HttpConn, NODE, RawResponse, TestServer, WsClient, first_admin, http_once, mask_number,
};

/// `POST /_login/local` as `username`, with `query` (e.g. `?cookieAuth=true`).
async fn login(s: &TestServer, username: &str, password: &str, query: &str) -> RawResponse {
    let body = json!({"username":username,"password":password}).to_string();
    http_once(
        s.addr,
        "POST",
        &format!("/_login/local{query}"),
        &[],
        body.as_bytes(),
    )
    .await
}

/// The token of a `Set-Cookie: authToken=<token>; …` header.
fn cookie_token(r: &RawResponse) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no set-cookie: {r:?}"));
    set.strip_prefix("authToken=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not an authToken cookie: {set}"))
        .to_owned()
}

/// Every `Set-Cookie` field of a response.
fn set_cookies(r: &RawResponse) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

fn cookie(token: &str) -> String {
    format!("authToken={token}")
}

async fn get(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    http_once(s.addr, "GET", path, headers, b"").await
}

async fn post(s: &TestServer, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    http_once(s.addr, "POST", path, headers, body.as_bytes()).await
}

const CLEARED: &str = "authToken=null; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict";

#[tokio::test]
async fn cookie_login_sets_an_httponly_cookie_that_authenticates_requests() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let r = login(&s, "root", "root-pw", "?cookieAuth=true").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The answer has no jwt: the token is in the cookie only.
    let (masked, expires_at) = mask_number(&r.text(), "expiresAt");
    let rid = r.json()["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"login","controller":"auth","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{{"_id":"root","expiresAt":X,"ttl":3600000}},"status":200,"volatile":null}}"#
        )
    );
    let expires_at = expires_at.unwrap_or_default();
    let jwt = cookie_token(&r);
    let expires_secs = i64::try_from(expires_at / 1000).unwrap_or_default();
    assert_eq!(
        set_cookies(&r),
        [format!(
            "authToken={jwt}; Path=/; Expires={}; HttpOnly; SameSite=Strict",
            http_date(expires_secs)
        )]
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));

    // The cookie alone authenticates, and passes the rights check as the admin.
    let r = get(
        &s,
        "/_me",
        &[("Cookie", &format!("theme=dark; {}", cookie(&jwt)))],
    )
    .await;
    assert_eq!(r.json()["result"]["_id"], "root", "{}", r.text());
    let r = get(&s, "/_now", &[("Cookie", &cookie(&jwt))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // `/_query` too, and the cookie's token is a token like any other.
    let r = post(
        &s,
        "/_query",
        &[("Cookie", &cookie(&jwt))],
        r#"{"controller":"auth","action":"getCurrentUser"}"#,
    )
    .await;
    assert_eq!(r.json()["result"]["_id"], "root", "{}", r.text());
    let r = get(&s, "/_me", &[("Authorization", &format!("Bearer {jwt}"))]).await;
    assert_eq!(r.json()["result"]["_id"], "root");
    // An `authToken=null` cookie (what a cleared one holds) is no token: anonymous.
    let r = get(&s, "/_me", &[("Cookie", "authToken=null")]).await;
    assert_eq!(r.json()["result"]["_id"], "-1");

    // A user without the rights is refused when authenticated by the cookie, as with a token.
    let r = c
        .call(json!({"controller":"security","action":"createUser","_id":"u1","jwt":admin,
            "body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"u1","password":"u1-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = login(&s, "u1", "u1-pw", "?cookieAuth").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"].get("jwt"), None);
    let user = cookie_token(&r);
    let r = get(&s, "/_me", &[("Cookie", &cookie(&user))]).await;
    assert_eq!(r.json()["result"]["_id"], "u1");
    let r = get(&s, "/_now", &[("Cookie", &cookie(&user))]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["error"].to_string(),
        r#"{"code":117637122,"id":"security.rights.forbidden","message":"Insufficient permissions to execute the action \"server:now\" (User \"u1\").","props":["server","now","u1"],"status":403}"#
    );
    // A forged cookie is refused as a forged token is.
    let r = get(&s, "/_now", &[("Cookie", "authToken=not.a.token")]).await;
    assert_eq!(
        r.json()["error"].to_string(),
        r#"{"code":117506049,"id":"security.token.invalid","message":"Invalid token.","props":[],"status":401}"#
    );
    // A login without cookieAuth is unchanged: the jwt, no cookie.
    let r = login(&s, "u1", "u1-pw", "").await;
    assert!(r.json()["result"]["jwt"].is_string());
    assert_eq!(r.header("set-cookie"), None);
}

#[tokio::test]
async fn a_cookie_and_a_token_together_are_refused() {
    let s = TestServer::start().await;
    let (_c, admin) = first_admin(&s).await;
    let jwt = cookie_token(&login(&s, "root", "root-pw", "?cookieAuth=true").await);
    let both = r#"{"code":117506055,"id":"security.token.verification_error","message":"Error verifying token: Both token and cookie are present, could not decide which one to use","props":["Both token and cookie are present, could not decide which one to use"],"status":500}"#;
    let bearer = format!("Bearer {admin}");
    let r = get(
        &s,
        "/_now",
        &[("Cookie", &cookie(&jwt)), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"].to_string(), both);
    let r = get(
        &s,
        &format!("/_now?jwt={admin}"),
        &[("Cookie", &cookie(&jwt))],
    )
    .await;
    assert_eq!(r.json()["error"].to_string(), both);
    // Even the same token twice: Kuzzle does not compare them.
    let r = get(
        &s,
        "/_now",
        &[
            ("Cookie", &cookie(&jwt)),
            ("Authorization", &format!("Bearer {jwt}")),
        ],
    )
    .await;
    assert_eq!(r.json()["error"].to_string(), both);
    // A cleared cookie next to a token is no conflict.
    let r = get(
        &s,
        "/_now",
        &[("Cookie", "authToken=null"), ("Authorization", &bearer)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_unreadable_cookie_is_refused() {
    let s = TestServer::start().await;
    let invalid = r#"{"code":117899265,"id":"security.cookie.invalid","message":"Invalid cookie.","props":[],"status":401}"#;
    let long = format!("authToken={}", "a".repeat(17 * 1024));
    for bad in [
        "authToken=a b",
        "authToken=\"abc",
        "authToken=a,b",
        long.as_str(),
    ] {
        let r = get(&s, "/_now", &[("Cookie", bad)]).await;
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.json()["error"].to_string(), invalid, "{bad}");
    }
    // Bytes that are not text.
    let mut conn = HttpConn::connect(s.addr).await;
    conn.send_raw(b"GET /_now HTTP/1.1\r\nHost: x\r\nCookie: authToken=\xff\xfe\r\n\r\n")
        .await;
    let r = conn.read_response(false).await;
    assert_eq!(r.json()["error"].to_string(), invalid);
    // Other cookies are not judged; several Cookie fields are read together.
    let r = get(&s, "/_now", &[("Cookie", "a=\"x y\""), ("Cookie", "b=2")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn cookie_logout_clears_the_cookie_and_revokes_its_token() {
    let s = TestServer::start().await;
    let _admin = first_admin(&s).await;
    let jwt = cookie_token(&login(&s, "root", "root-pw", "?cookieAuth=true").await);
    let r = post(
        &s,
        "/_logout?cookieAuth=true",
        &[("Cookie", &cookie(&jwt))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], json!({"acknowledged":true}));
    assert_eq!(set_cookies(&r), [CLEARED]);
    // Revoked, whichever way it comes.
    let r = get(&s, "/_now", &[("Cookie", &cookie(&jwt))]).await;
    assert_eq!(r.json()["error"]["id"], "security.token.invalid");
    let r = get(&s, "/_now", &[("Authorization", &format!("Bearer {jwt}"))]).await;
    assert_eq!(r.json()["error"]["id"], "security.token.invalid");
    // A revoked cookie on a cookie logout is no error of its own: the caller is anonymous, who
    // may not `auth:logout` after a reset (as in Kuzzle), so nothing is cleared.
    let r = post(
        &s,
        "/_logout?cookieAuth=true",
        &[("Cookie", &cookie(&jwt))],
        "",
    )
    .await;
    assert_eq!(
        r.json()["error"]["id"],
        "security.rights.unauthorized",
        "{}",
        r.text()
    );
    assert_eq!(r.header("set-cookie"), None);
    // Where anonymous may log out (a fresh install), the stale cookie, or none, is cleared.
    let fresh = TestServer::start().await;
    for headers in [vec![("Cookie", cookie(&jwt))], vec![]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post(&fresh, "/_logout?cookieAuth=true", &headers, "").await;
        assert_eq!(
            r.json()["result"],
            json!({"acknowledged":true}),
            "{}",
            r.text()
        );
        assert_eq!(set_cookies(&r), [CLEARED]);
    }
}

#[tokio::test]
async fn cookie_refresh_token_replaces_the_cookie() {
    let s = TestServer::start().await;
    let _admin = first_admin(&s).await;
    let old = cookie_token(&login(&s, "root", "root-pw", "?cookieAuth=true").await);
    // Tokens are a function of their second of issue.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = post(
        &s,
        "/_refreshToken?cookieAuth=true&expiresIn=2h",
        &[("Cookie", &cookie(&old))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (masked, expires_at) = mask_number(&r.json()["result"].to_string(), "expiresAt");
    assert_eq!(masked, r#"{"_id":"root","expiresAt":X,"ttl":7200000}"#);
    let new = cookie_token(&r);
    assert_ne!(new, old);
    let expires_secs = i64::try_from(expires_at.unwrap_or_default() / 1000).unwrap_or_default();
    assert_eq!(
        set_cookies(&r),
        [format!(
            "authToken={new}; Path=/; Expires={}; HttpOnly; SameSite=Strict",
            http_date(expires_secs)
        )]
    );
    let r = get(&s, "/_me", &[("Cookie", &cookie(&new))]).await;
    assert_eq!(r.json()["result"]["_id"], "root");
    // Without cookieAuth the new token is answered, and no cookie is set.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = post(&s, "/_refreshToken", &[("Cookie", &cookie(&new))], "").await;
    assert!(r.json()["result"]["jwt"].is_string(), "{}", r.text());
    assert_eq!(r.header("set-cookie"), None);
}

#[tokio::test]
async fn cookie_check_token_checks_the_cookie() {
    let s = TestServer::start().await;
    let _admin = first_admin(&s).await;
    // Another lifetime than the admin's login: another token.
    let r = login(&s, "root", "root-pw", "?cookieAuth=true&expiresIn=2h").await;
    let expires_at = r.json()["result"]["expiresAt"].as_u64().unwrap_or_default();
    let jwt = cookie_token(&r);
    let r = post(
        &s,
        "/_checkToken?cookieAuth=true",
        &[("Cookie", &cookie(&jwt))],
        "",
    )
    .await;
    assert_eq!(
        r.json()["result"],
        json!({"expiresAt":expires_at,"kuid":"root","valid":true}),
        "{}",
        r.text()
    );
    // A bad cookie is answered as a bad token is, not refused.
    let r = post(
        &s,
        "/_checkToken?cookieAuth=true",
        &[("Cookie", "authToken=forged")],
        "",
    )
    .await;
    assert_eq!(
        r.json()["result"],
        json!({"state":"Invalid token.","valid":false})
    );
    // No cookie: the anonymous user, as with no token.
    let r = post(&s, "/_checkToken?cookieAuth=true", &[], "").await;
    assert_eq!(
        r.json()["result"],
        json!({"expiresAt":null,"kuid":"-1","valid":true})
    );
    // Without cookieAuth, body.token is what is checked, whatever the cookie.
    let r = post(
        &s,
        "/_checkToken",
        &[("Cookie", &cookie(&jwt))],
        r#"{"token":"forged"}"#,
    )
    .await;
    assert_eq!(r.json()["result"]["valid"], false);
}

#[tokio::test]
async fn cookie_authentication_off_refuses_cookies() {
    let s = TestServer::start_with(|c| c.http.cookie_authentication = false, vec![]).await;
    let (_c, admin) = first_admin(&s).await;
    let unsupported = r#"{"code":117899266,"id":"security.cookie.unsupported","message":"Cookie authentication not supported.","props":[],"status":500}"#;
    let r = login(&s, "root", "root-pw", "?cookieAuth=true").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"].to_string(), unsupported);
    assert_eq!(r.header("set-cookie"), None);
    let r = get(&s, "/_now", &[("Cookie", &cookie(&admin))]).await;
    assert_eq!(r.json()["error"].to_string(), unsupported);
    // Unreadable is still unreadable; a cleared cookie or other cookies are nothing.
    let r = get(&s, "/_now", &[("Cookie", "authToken=a b")]).await;
    assert_eq!(r.json()["error"]["id"], "security.cookie.invalid");
    let bearer = format!("Bearer {admin}");
    let r = get(
        &s,
        "/_now",
        &[
            ("Cookie", "authToken=null; x=1"),
            ("Authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // No credentials header then.
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = get(&s, "/_now", &[("Origin", "http://app.example")]).await;
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.example")
    );
}

/// A WebSocket whose upgrade request carries `cookie`.
async fn ws_with_cookie(s: &TestServer, cookie: &str) -> WsClient {
    let mut request = format!("ws://{}/", s.addr)
        .into_client_request()
        .unwrap_or_else(|e| panic!("request: {e}"));
    request.headers_mut().insert(
        "Cookie",
        cookie
            .parse()
            .unwrap_or_else(|e| panic!("cookie header: {e}")),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("websocket connect: {e}"));
    WsClient { ws }
}

#[tokio::test]
async fn websocket_uses_the_upgrade_cookie_and_sets_none() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let jwt = cookie_token(&login(&s, "root", "root-pw", "?cookieAuth=true").await);
    // As Kuzzle: the upgrade's cookie authenticates every request of the socket (what the browser
    // SDK relies on after a cookie login over HTTP).
    let mut ws = ws_with_cookie(&s, &cookie(&jwt)).await;
    let r = ws
        .call(json!({"controller":"auth","action":"getCurrentUser"}))
        .await;
    assert_eq!(r["result"]["_id"], "root", "{r}");
    let r = ws.call(json!({"controller":"server","action":"now"})).await;
    assert_eq!(r["status"], 200, "{r}");
    let r = ws
        .call(json!({"controller":"server","action":"now","jwt":admin}))
        .await;
    assert_eq!(r["error"]["id"], "security.token.verification_error", "{r}");
    let r = ws
        .call(json!({"controller":"auth","action":"checkToken","cookieAuth":true}))
        .await;
    assert_eq!(r["result"]["kuid"], "root", "{r}");
    assert_eq!(r["result"]["valid"], true, "{r}");
    // A frame cannot set a cookie: over WebSocket cookieAuth changes no answer, the jwt is sent.
    let r = c
        .call(
            json!({"controller":"auth","action":"login","strategy":"local","cookieAuth":true,
            "body":{"username":"root","password":"root-pw"}}),
        )
        .await;
    assert!(r["result"]["jwt"].is_string(), "{r}");
    let r = c
        .call(json!({"controller":"server","action":"now","cookieAuth":true,"jwt":admin}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    // A socket whose upgrade carried an unreadable cookie has its requests refused.
    let mut bad = ws_with_cookie(&s, "authToken=\"x").await;
    let r = bad
        .call(json!({"controller":"server","action":"now"}))
        .await;
    assert_eq!(r["error"]["id"], "security.cookie.invalid", "{r}");
    // The cookie's token is checked at each request: once revoked, refused.
    let r = post(
        &s,
        "/_logout?cookieAuth=true",
        &[("Cookie", &cookie(&jwt))],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = ws.call(json!({"controller":"server","action":"now"})).await;
    assert_eq!(r["error"]["id"], "security.token.invalid", "{r}");
}

#[tokio::test]
async fn cors_allows_credentials_with_the_request_origin() {
    let s = TestServer::start().await;
    let origin = [("Origin", "http://app.example")];
    for r in [
        get(&s, "/_now", &origin).await,
        http_once(s.addr, "OPTIONS", "/_login/local", &origin, b"").await,
        get(&s, "/nope", &origin).await,
    ] {
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://app.example")
        );
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    }
    // Without an Origin there is no allowed origin at all (never `*`).
    let r = get(&s, "/_now", &[]).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test]
async fn metrics_in_token_mode_take_the_cookie_too() {
    let s = TestServer::start_with(|c| c.metrics.mode = "token".into(), vec![]).await;
    let _admin = first_admin(&s).await;
    let jwt = cookie_token(&login(&s, "root", "root-pw", "?cookieAuth=true&expiresIn=2h").await);
    let r = get(&s, "/_metrics", &[("Cookie", &cookie(&jwt))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let r = get(&s, "/_metrics", &[("Cookie", "authToken=a b")]).await;
    assert_eq!(r.json()["id"], "security.cookie.invalid", "{}", r.text());
    let r = get(&s, "/_metrics", &[]).await;
    assert_eq!(r.status, 401);
}
