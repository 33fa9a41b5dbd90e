//! The `local` strategy's credentials API (`docs/api/credentials.md`) through real sockets: the
//! `security` actions on any user's credentials, the `auth` actions on the caller's own, updateSelf,
//! the password policy, token revocation on a password change, rights, and the audit trail.

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, first_admin, http_once, login_token};

async fn call(
    c: &mut WsClient,
    jwt: Option<&str>,
    controller: &str,
    action: &str,
    extra: Value,
) -> Value {
    let mut r = json!({"controller":controller,"action":action});
    if let Some(jwt) = jwt {
        r["jwt"] = json!(jwt);
    }
    if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c.call(r).await
}

/// One WebSocket request as text, with a fixed `requestId`.
async fn call_text(c: &mut WsClient, request: Value) -> String {
    c.call_text(&request.to_string()).await
}

/// The WebSocket envelope of a success.
fn ws_ok(controller: &str, action: &str, rid: &str, result: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{result},"status":200,"volatile":null,"room":"{rid}"}}"#
    )
}

/// The HTTP envelope of a success.
fn http_ok(controller: &str, action: &str, rid: &str, result: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{result},"status":200,"volatile":null}}"#
    )
}

#[track_caller]
fn ok(r: &Value) -> &Value {
    assert_eq!(r["status"], 200, "{r}");
    &r["result"]
}

#[track_caller]
fn assert_error(r: &Value, id: &str, status: u16, message: &str) {
    assert_eq!(r["error"]["id"], id, "{r}");
    assert_eq!(r["status"], status, "{r}");
    assert_eq!(r["error"]["message"], message, "{r}");
}

/// An HTTP request with a JSON body and a request id; the token when given.
async fn http(
    s: &TestServer,
    method: &str,
    path: &str,
    jwt: Option<&str>,
    rid: &str,
    body: &str,
) -> tollgate_testkit::RawResponse {
    let bearer = jwt.map(|j| format!("Bearer {j}"));
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("X-Kuzzle-Request-Id", rid),
    ];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    http_once(s.addr, method, path, &headers, body.as_bytes()).await
}

/// A login over HTTP: the answer.
async fn login(s: &TestServer, username: &str, password: &str) -> Value {
    let body = json!({"username":username,"password":password}).to_string();
    http_once(s.addr, "POST", "/_login/local", &[], body.as_bytes())
        .await
        .json()
}

/// A server without login rate limits (the tests log in many times within a second).
async fn server() -> TestServer {
    TestServer::start_with(
        |c| {
            c.security.logins_per_second_per_ip = 0;
            c.security.failed_auth_per_minute_per_ip = 0;
        },
        Vec::new(),
    )
    .await
}

/// Creates user `id` with profile `default` and no credentials.
async fn bare_user(c: &mut WsClient, admin: &str, id: &str) {
    let r = call(
        c,
        Some(admin),
        "security",
        "createUser",
        json!({"_id":id,"body":{"content":{"profileIds":["default"]}}}),
    )
    .await;
    ok(&r);
}

/// Creates user `id` with profile `default` and credentials `id` / `<id>-password`.
async fn user(c: &mut WsClient, admin: &str, id: &str) {
    user_with(c, admin, id, json!(["default"])).await;
}

/// Creates user `id` with `profiles` and credentials `id` / `<id>-password`.
async fn user_with(c: &mut WsClient, admin: &str, id: &str, profiles: Value) {
    let r = call(
        c,
        Some(admin),
        "security",
        "createUser",
        json!({"_id":id,"body":{"content":{"profileIds":profiles},"credentials":{"local":{"username":id,"password":format!("{id}-password")}}}}),
    )
    .await;
    ok(&r);
}

/// Role and profile `self`: the caller's own credentials actions, which Kuzzle's default role does
/// not grant.
async fn self_service(c: &mut WsClient, admin: &str) {
    let actions: serde_json::Map<String, Value> = [
        "createMyCredentials",
        "updateMyCredentials",
        "credentialsExist",
        "getMyCredentials",
        "validateMyCredentials",
        "deleteMyCredentials",
    ]
    .into_iter()
    .map(|a| (a.to_owned(), json!(true)))
    .collect();
    let r = call(
        c,
        Some(admin),
        "security",
        "createRole",
        json!({"_id":"self","body":{"controllers":{"auth":{"actions":actions}}}}),
    )
    .await;
    ok(&r);
    let r = call(
        c,
        Some(admin),
        "security",
        "createProfile",
        json!({"_id":"self","body":{"policies":[{"roleId":"self"}]}}),
    )
    .await;
    ok(&r);
}

#[tokio::test]
async fn credentials_lifecycle_over_websocket() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    bare_user(&mut c, &admin, "alice").await;
    let send = async |c: &mut WsClient, action: &str, rid: &str, extra: Value| {
        let mut r = json!({"controller":"security","action":action,"jwt":admin,"requestId":rid});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        call_text(c, r).await
    };
    let sec = |action: &str, rid: &str, result: &str| ws_ok("security", action, rid, result);
    assert_eq!(
        send(
            &mut c,
            "hasCredentials",
            "h1",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec("hasCredentials", "h1", "false")
    );
    assert_eq!(
        send(&mut c, "getUserStrategies", "s1", json!({"_id":"alice"})).await,
        sec("getUserStrategies", "s1", r#"{"strategies":[],"total":0}"#)
    );
    assert_eq!(
        send(&mut c, "validateCredentials",
            "v1",
            json!({"strategy":"local","_id":"alice","body":{"username":"alice","password":"alice-pw"}})
        )
        .await,
        sec("validateCredentials", "v1", "true")
    );
    assert_eq!(
        send(&mut c, "createCredentials",
            "c1",
            json!({"strategy":"local","_id":"alice","body":{"username":"alice","password":"alice-pw"}})
        )
        .await,
        sec("createCredentials", "c1", r#"{"username":"alice","kuid":"alice"}"#)
    );
    assert_eq!(
        send(
            &mut c,
            "hasCredentials",
            "h2",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec("hasCredentials", "h2", "true")
    );
    assert_eq!(
        send(
            &mut c,
            "getCredentials",
            "g1",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec(
            "getCredentials",
            "g1",
            r#"{"username":"alice","kuid":"alice"}"#
        )
    );
    assert_eq!(
        send(
            &mut c,
            "getCredentialsById",
            "g2",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec(
            "getCredentialsById",
            "g2",
            r#"{"username":"alice","kuid":"alice"}"#
        )
    );
    assert_eq!(
        send(&mut c, "getUserStrategies", "s2", json!({"_id":"alice"})).await,
        sec(
            "getUserStrategies",
            "s2",
            r#"{"strategies":["local"],"total":1}"#
        )
    );
    assert_eq!(
        send(&mut c, "getUserStrategies", "s3", json!({"_id":"-1"})).await,
        sec("getUserStrategies", "s3", r#"{"strategies":[],"total":0}"#)
    );
    assert_eq!(
        send(
            &mut c,
            "getCredentialFields",
            "f1",
            json!({"strategy":"local"})
        )
        .await,
        sec("getCredentialFields", "f1", r#"["username","password"]"#)
    );
    assert_eq!(
        send(&mut c, "getAllCredentialFields", "f2", json!({})).await,
        sec(
            "getAllCredentialFields",
            "f2",
            r#"{"local":["username","password"]}"#
        )
    );
    assert!(login(&s, "alice", "alice-pw").await["result"]["jwt"].is_string());

    // A new username moves the credentials: the old one no longer logs in, the new one does.
    assert_eq!(
        send(
            &mut c,
            "updateCredentials",
            "u1",
            json!({"strategy":"local","_id":"alice","body":{"username":"alice2"}})
        )
        .await,
        sec(
            "updateCredentials",
            "u1",
            r#"{"username":"alice2","kuid":"alice"}"#
        )
    );
    assert_error(
        &login(&s, "alice", "alice-pw").await,
        "plugin.strategy.missing_user",
        401,
        "wrong username or password",
    );
    assert!(login(&s, "alice2", "alice-pw").await["result"]["jwt"].is_string());
    let r: Value = serde_json::from_str(
        &send(
            &mut c,
            "getCredentialsById",
            "g3",
            json!({"strategy":"local","_id":"alice"}),
        )
        .await,
    )
    .unwrap_or_default();
    assert_error(
        &r,
        "security.credentials.rejected",
        400,
        "Credentials rejected: A strategy does not exist for username \"alice\".",
    );
    // The freed username can be taken by someone else.
    bare_user(&mut c, &admin, "bob").await;
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "createCredentials",
        json!({"strategy":"local","_id":"bob","body":{"username":"alice","password":"bob-pw"}}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"username":"alice","kuid":"bob"}));
    assert!(login(&s, "alice", "bob-pw").await["result"]["jwt"].is_string());

    assert_eq!(
        send(
            &mut c,
            "deleteCredentials",
            "d1",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec("deleteCredentials", "d1", r#"{"acknowledged":true}"#)
    );
    assert_error(
        &login(&s, "alice2", "alice-pw").await,
        "plugin.strategy.missing_user",
        401,
        "wrong username or password",
    );
    assert_eq!(
        send(
            &mut c,
            "hasCredentials",
            "h3",
            json!({"strategy":"local","_id":"alice"})
        )
        .await,
        sec("hasCredentials", "h3", "false")
    );
    // Deleting the user deletes the credentials it still has.
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "deleteUser",
        json!({"_id":"bob"}),
    )
    .await;
    ok(&r);
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "getCredentialsById",
        json!({"strategy":"local","_id":"alice"}),
    )
    .await;
    assert_eq!(r["error"]["id"], "security.credentials.rejected", "{r}");
}

#[tokio::test]
async fn credentials_lifecycle_over_http() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    bare_user(&mut c, &admin, "carol").await;
    let a = Some(admin.as_str());
    let r = http(
        &s,
        "POST",
        "/credentials/local/carol/_create",
        a,
        "r1",
        r#"{"username":"carol","password":"carol-pw"}"#,
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        r.text(),
        http_ok(
            "security",
            "createCredentials",
            "r1",
            r#"{"username":"carol","kuid":"carol"}"#
        )
    );
    for (method, path, action, result) in [
        (
            "GET",
            "/credentials/local/carol",
            "getCredentials",
            r#"{"username":"carol","kuid":"carol"}"#,
        ),
        (
            "GET",
            "/credentials/local/carol/_byId",
            "getCredentialsById",
            r#"{"username":"carol","kuid":"carol"}"#,
        ),
        (
            "GET",
            "/credentials/local/carol/_exists",
            "hasCredentials",
            "true",
        ),
        (
            "GET",
            "/users/carol/_strategies",
            "getUserStrategies",
            r#"{"strategies":["local"],"total":1}"#,
        ),
        (
            "GET",
            "/credentials/local/_fields",
            "getCredentialFields",
            r#"["username","password"]"#,
        ),
        (
            "GET",
            "/credentials/_fields",
            "getAllCredentialFields",
            r#"{"local":["username","password"]}"#,
        ),
        ("GET", "/strategies", "getStrategies", r#"["local"]"#),
    ] {
        let controller = if action == "getStrategies" {
            "auth"
        } else {
            "security"
        };
        let r = http(&s, method, path, a, "r2", "").await;
        assert_eq!(
            r.text(),
            http_ok(controller, action, "r2", result),
            "{path}"
        );
    }
    let r = http(
        &s,
        "POST",
        "/credentials/local/carol/_validate",
        a,
        "r3",
        r#"{"username":"carol","password":"another-pw"}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok("security", "validateCredentials", "r3", "true")
    );
    let r = http(
        &s,
        "POST",
        "/credentials/local/users/_search",
        a,
        "r4",
        r#"{"query":{"term":{"username":"carol"}}}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok(
            "security",
            "searchUsersByCredentials",
            "r4",
            r#"{"hits":[{"kuid":"carol","username":"carol"}],"total":1}"#
        )
    );
    let r = http(
        &s,
        "PUT",
        "/credentials/local/carol/_update",
        a,
        "r5",
        r#"{"password":"carol-pw-2"}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok(
            "security",
            "updateCredentials",
            "r5",
            r#"{"username":"carol","kuid":"carol"}"#
        )
    );
    assert!(login(&s, "carol", "carol-pw-2").await["result"]["jwt"].is_string());
    // An unknown strategy in the path.
    let r = http(&s, "GET", "/credentials/oauth/carol", a, "r6", "").await;
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"getCredentials","controller":"security","error":{{"code":117571585,"id":"security.credentials.unknown_strategy","message":"Unknown authentication strategy \"oauth\"","props":["oauth"],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"r6","result":null,"status":400,"volatile":null}}"#
        )
    );
    let r = http(&s, "DELETE", "/credentials/local/carol", a, "r7", "").await;
    assert_eq!(
        r.text(),
        http_ok(
            "security",
            "deleteCredentials",
            "r7",
            r#"{"acknowledged":true}"#
        )
    );
    let r = http(&s, "GET", "/credentials/local/carol", a, "r8", "").await;
    assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
    assert_error(
        &r.json(),
        "security.credentials.rejected",
        400,
        "Credentials rejected: A strategy does not exist for user \"carol\".",
    );
}

#[tokio::test]
async fn credentials_validation_errors() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    bare_user(&mut c, &admin, "dave").await;
    user(&mut c, &admin, "erin").await;
    let long = "x".repeat(257);
    let huge = "x".repeat(1025);
    let cases: Vec<(&str, Value, &str, u16, String)> = vec![
        (
            "createCredentials",
            json!({"_id":"dave","body":{"username":"d","password":"p"}}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"strategy\".".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","body":{"username":"d","password":"p"}}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"_id\".".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave"}),
            "api.assert.body_required",
            400,
            "The request must specify a body.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":7,"_id":"dave","body":{}}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"strategy\" (expected: string)".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"facebook","_id":"dave","body":{}}),
            "security.credentials.unknown_strategy",
            400,
            "Unknown authentication strategy \"facebook\"".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":"d","password":"p","kuid":"x"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: kuid cannot be specified in credentials.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":"d","password":"p","email":"x"}}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"body.email\" (accepted arguments: \"username\", \"password\")"
                .into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":["d"],"password":"p"}}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"body.username\" (expected: string)".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":long,"password":"p"}}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"body.username\". Expected: a string of at most 256 bytes".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":"d","password":huge}}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"body.password\". Expected: a string of at most 1024 bytes".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"password":"p"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: Username required.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":"d","password":""}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: Password required.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","body":{"username":"erin","password":"p"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: Login \"erin\" is already used.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"erin","body":{"username":"e2","password":"p"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: A strategy already exists for user \"erin\".".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"ghost","body":{"username":"g","password":"p"}}),
            "security.user.not_found",
            404,
            "User \"ghost\" not found.".into(),
        ),
        (
            "createCredentials",
            json!({"strategy":"local","_id":"dave","refresh":"soon","body":{"username":"d","password":"p"}}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"refresh\". Expected: \"wait_for\" or false".into(),
        ),
        (
            "updateCredentials",
            json!({"strategy":"local","_id":"erin","body":{}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: The request must at least provide one of the fields: \"username\" or \"password\".".into(),
        ),
        (
            "updateCredentials",
            json!({"strategy":"local","_id":"dave","body":{"password":"p"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: A strategy does not exist for user \"dave\".".into(),
        ),
        (
            "updateCredentials",
            json!({"strategy":"local","_id":"ghost","body":{"password":"p"}}),
            "security.user.not_found",
            404,
            "User \"ghost\" not found.".into(),
        ),
        (
            "updateCredentials",
            json!({"strategy":"local","_id":"erin","keepTokens":"yes","body":{"password":"p"}}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"keepTokens\" (expected: boolean)".into(),
        ),
        (
            "getCredentials",
            json!({"strategy":"local","_id":"dave"}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: A strategy does not exist for user \"dave\".".into(),
        ),
        (
            "deleteCredentials",
            json!({"strategy":"local","_id":"dave"}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: A strategy does not exist for user \"dave\".".into(),
        ),
        (
            "hasCredentials",
            json!({"strategy":"local"}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"_id\".".into(),
        ),
        (
            "getUserStrategies",
            json!({"_id":"ghost"}),
            "security.user.not_found",
            404,
            "User \"ghost\" not found.".into(),
        ),
        (
            "getCredentialFields",
            json!({"strategy":"oauth"}),
            "security.credentials.unknown_strategy",
            400,
            "Unknown authentication strategy \"oauth\"".into(),
        ),
        (
            "validateCredentials",
            json!({"strategy":"local","body":{"username":"erin","password":"p"}}),
            "security.credentials.rejected",
            400,
            "Credentials rejected: Login \"erin\" is already used.".into(),
        ),
        (
            "searchUsersByCredentials",
            json!({"strategy":"local","body":{"query":{"range":{"kuid":{}}}}}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"body.query.range\". Expected: one of the clauses match_all, ids, term, terms, prefix, exists, bool".into(),
        ),
        (
            "searchUsersByCredentials",
            json!({"strategy":"local","scroll":"1m"}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"scroll\" (accepted arguments: \"from\", \"size\", \"lang\")".into(),
        ),
        (
            "searchUsersByCredentials",
            json!({"strategy":"local","size":-1}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"size\". Expected: positive integer, or zero".into(),
        ),
    ];
    for (action, extra, id, status, message) in cases {
        let r = call(&mut c, Some(&admin), "security", action, extra.clone()).await;
        assert_error(&r, id, status, &message);
    }
    // Erin validates her own username: it is hers, so not taken.
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "validateCredentials",
        json!({"strategy":"local","_id":"erin","body":{"username":"erin","password":"p"}}),
    )
    .await;
    assert_eq!(*ok(&r), json!(true));
    // Nothing above was written.
    assert!(login(&s, "erin", "erin-password").await["result"]["jwt"].is_string());
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "hasCredentials",
        json!({"strategy":"local","_id":"dave"}),
    )
    .await;
    assert_eq!(*ok(&r), json!(false));
}

#[tokio::test]
async fn search_users_by_credentials_queries_usernames() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    for id in ["u-ann", "u-ben", "u-cat"] {
        user(&mut c, &admin, id).await;
    }
    let mut search = async |extra: Value| {
        let mut e = json!({"strategy":"local"});
        if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                o.insert(k.clone(), v.clone());
            }
        }
        let r = call(
            &mut c,
            Some(&admin),
            "security",
            "searchUsersByCredentials",
            e,
        )
        .await;
        ok(&r).clone()
    };
    let hit = |id: &str| json!({"kuid":id,"username":id});
    assert_eq!(
        search(json!({"body":{"query":{"prefix":{"username":"u-"}}}})).await,
        json!({"hits":[hit("u-ann"),hit("u-ben"),hit("u-cat")],"total":3})
    );
    assert_eq!(
        search(json!({"body":{"query":{"term":{"kuid":"u-ben"}}}})).await,
        json!({"hits":[hit("u-ben")],"total":1})
    );
    // Paging and sort; no query: every credential (root's too).
    assert_eq!(
        search(json!({"from":1,"size":2,"body":{"sort":{"username":"desc"}}})).await,
        json!({"hits":[hit("u-ben"),hit("u-ann")],"total":4})
    );
    assert_eq!(
        search(json!({"size":0})).await,
        json!({"hits":[],"total":4})
    );
    // The answer never carries a hash, whatever the query names.
    let all = search(json!({"body":{"query":{"exists":{"field":"hash"}}}})).await;
    assert_eq!(all, json!({"hits":[],"total":0}));
}

#[tokio::test]
async fn password_change_revokes_the_other_tokens() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    self_service(&mut c, &admin).await;
    user_with(&mut c, &admin, "fay", json!(["default", "self"])).await;
    let a = login_token(&s, "fay", "fay-password").await;
    // Tokens issued in the same second with the same lifetime are the same token: another lifetime.
    let body = json!({"username":"fay","password":"fay-password"}).to_string();
    let b = http_once(
        s.addr,
        "POST",
        "/_login/local?expiresIn=2h",
        &[],
        body.as_bytes(),
    )
    .await
    .json()["result"]["jwt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(a, b);
    let me = async |c: &mut WsClient, jwt: &str| {
        call(c, Some(jwt), "auth", "getCurrentUser", json!({})).await
    };
    ok(&me(&mut c, &b).await);
    // The user's own change over WebSocket: the calling token stays valid, the other is revoked.
    let r = call_text(
        &mut c,
        json!({"controller":"auth","action":"updateMyCredentials","jwt":a,"strategy":"local","requestId":"m1","body":{"password":"fay-password-2"}}),
    )
    .await;
    assert_eq!(
        r,
        ws_ok(
            "auth",
            "updateMyCredentials",
            "m1",
            r#"{"username":"fay","kuid":"fay"}"#
        )
    );
    ok(&me(&mut c, &a).await);
    assert_error(
        &me(&mut c, &b).await,
        "security.token.invalid",
        401,
        "Invalid token.",
    );
    assert_error(
        &login(&s, "fay", "fay-password").await,
        "plugin.strategy.missing_user",
        401,
        "wrong username or password",
    );
    let b = login_token(&s, "fay", "fay-password-2").await;
    // keepTokens: both stay valid.
    let r = call(
        &mut c,
        Some(&a),
        "auth",
        "updateMyCredentials",
        json!({"strategy":"local","keepTokens":true,"body":{"password":"fay-password-3"}}),
    )
    .await;
    ok(&r);
    ok(&me(&mut c, &a).await);
    ok(&me(&mut c, &b).await);
    // A username change alone revokes nothing.
    let r = call(
        &mut c,
        Some(&a),
        "auth",
        "updateMyCredentials",
        json!({"strategy":"local","body":{"username":"fay2"}}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"username":"fay2","kuid":"fay"}));
    ok(&me(&mut c, &b).await);
    // An admin's change over HTTP revokes every token of the user.
    let r = http(
        &s,
        "PUT",
        "/credentials/local/fay/_update",
        Some(&admin),
        "p1",
        r#"{"password":"fay-password-4"}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok(
            "security",
            "updateCredentials",
            "p1",
            r#"{"username":"fay2","kuid":"fay"}"#
        )
    );
    assert_error(
        &me(&mut c, &a).await,
        "security.token.invalid",
        401,
        "Invalid token.",
    );
    assert_error(
        &me(&mut c, &b).await,
        "security.token.invalid",
        401,
        "Invalid token.",
    );
    assert!(login(&s, "fay2", "fay-password-4").await["result"]["jwt"].is_string());
    // The admin's own token survives.
    ok(&me(&mut c, &admin).await);
}

#[tokio::test]
async fn my_credentials_over_websocket_and_http() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    // A user with profile admin (after the reset, the default role grants none of these actions).
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "createUser",
        json!({"_id":"gus","body":{"content":{"profileIds":["admin"]},"credentials":{"local":{"username":"gus","password":"gus-password"}}}}),
    )
    .await;
    ok(&r);
    let gus = login_token(&s, "gus", "gus-password").await;
    let mine = async |c: &mut WsClient, action: &str, rid: &str, extra: Value| {
        let mut r = json!({"controller":"auth","action":action,"jwt":gus,"strategy":"local","requestId":rid});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        call_text(c, r).await
    };
    let auth = |action: &str, rid: &str, result: &str| ws_ok("auth", action, rid, result);
    let gus_json = r#"{"username":"gus","kuid":"gus"}"#;
    assert_eq!(
        mine(&mut c, "getMyCredentials", "a1", json!({})).await,
        auth("getMyCredentials", "a1", gus_json)
    );
    assert_eq!(
        mine(&mut c, "credentialsExist", "a2", json!({})).await,
        auth("credentialsExist", "a2", "true")
    );
    assert_eq!(
        mine(
            &mut c,
            "validateMyCredentials",
            "a3",
            json!({"body":{"username":"gus","password":"gus-password-2"}})
        )
        .await,
        auth("validateMyCredentials", "a3", "true")
    );
    assert_eq!(
        mine(&mut c, "deleteMyCredentials", "a4", json!({})).await,
        auth("deleteMyCredentials", "a4", r#"{"acknowledged":true}"#)
    );
    assert_eq!(
        mine(&mut c, "credentialsExist", "a5", json!({})).await,
        auth("credentialsExist", "a5", "false")
    );
    assert_eq!(
        mine(
            &mut c,
            "createMyCredentials",
            "a6",
            json!({"body":{"username":"gus","password":"gus-password-2"}})
        )
        .await,
        auth("createMyCredentials", "a6", gus_json)
    );
    let r: Value = serde_json::from_str(
        &mine(
            &mut c,
            "createMyCredentials",
            "a7",
            json!({"body":{"username":"gus","password":"gus-password-2"}}),
        )
        .await,
    )
    .unwrap_or_default();
    assert_error(
        &r,
        "security.credentials.rejected",
        400,
        "Credentials rejected: A strategy already exists for user \"gus\".",
    );
    let r: Value = serde_json::from_str(
        &mine(&mut c, "getMyCredentials", "a8", json!({"strategy":"ldap"})).await,
    )
    .unwrap_or_default();
    assert_error(
        &r,
        "security.credentials.unknown_strategy",
        400,
        "Unknown authentication strategy \"ldap\"",
    );
    // The same over HTTP, on Kuzzle's routes and the deprecated ones.
    let g = Some(gus.as_str());
    for (method, path, action, result, body) in [
        (
            "GET",
            "/_me/credentials/local",
            "getMyCredentials",
            gus_json,
            "",
        ),
        (
            "GET",
            "/credentials/local/_me",
            "getMyCredentials",
            gus_json,
            "",
        ),
        (
            "GET",
            "/_me/credentials/local/_exists",
            "credentialsExist",
            "true",
            "",
        ),
        (
            "GET",
            "/credentials/local/_me/_exists",
            "credentialsExist",
            "true",
            "",
        ),
        (
            "POST",
            "/_me/credentials/local/_validate",
            "validateMyCredentials",
            "true",
            r#"{"username":"gus","password":"gus-password-3"}"#,
        ),
        (
            "PUT",
            "/_me/credentials/local/_update",
            "updateMyCredentials",
            gus_json,
            r#"{"password":"gus-password-3"}"#,
        ),
        (
            "DELETE",
            "/_me/credentials/local",
            "deleteMyCredentials",
            r#"{"acknowledged":true}"#,
            "",
        ),
        (
            "POST",
            "/_me/credentials/local/_create",
            "createMyCredentials",
            gus_json,
            r#"{"username":"gus","password":"gus-password-4"}"#,
        ),
        (
            "DELETE",
            "/credentials/local/_me",
            "deleteMyCredentials",
            r#"{"acknowledged":true}"#,
            "",
        ),
        (
            "POST",
            "/credentials/local/_me/_create",
            "createMyCredentials",
            gus_json,
            r#"{"username":"gus","password":"gus-password-5"}"#,
        ),
        (
            "PUT",
            "/credentials/local/_me/_update",
            "updateMyCredentials",
            gus_json,
            r#"{"password":"gus-password-6"}"#,
        ),
    ] {
        let r = http(&s, method, path, g, "h1", body).await;
        assert_eq!(
            r.text(),
            http_ok("auth", action, "h1", result),
            "{method} {path}"
        );
    }
    assert!(login(&s, "gus", "gus-password-6").await["result"]["jwt"].is_string());
}

#[tokio::test]
async fn my_credentials_refuse_the_anonymous_user() {
    // Before the default rights are restricted, anonymous may call everything: the actions refuse it.
    let s = server().await;
    let mut c = s.ws().await;
    for action in [
        "createMyCredentials",
        "updateMyCredentials",
        "credentialsExist",
        "getMyCredentials",
        "validateMyCredentials",
        "deleteMyCredentials",
        "updateSelf",
    ] {
        let r = call(
            &mut c,
            None,
            "auth",
            action,
            json!({"strategy":"local","body":{"username":"x","password":"y"}}),
        )
        .await;
        assert_error(
            &r,
            "security.rights.unauthorized",
            401,
            &format!(
                "Unauthorized: authentication required to execute the action \"auth:{action}\"."
            ),
        );
    }
    let r = call(&mut c, None, "auth", "getStrategies", json!({})).await;
    assert_eq!(*ok(&r), json!(["local"]));
    // Over HTTP too.
    let r = http(&s, "GET", "/_me/credentials/local", None, "n1", "").await;
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"getMyCredentials","controller":"auth","error":{{"code":117637121,"id":"security.rights.unauthorized","message":"Unauthorized: authentication required to execute the action \"auth:getMyCredentials\".","props":["auth","getMyCredentials"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"n1","result":null,"status":401,"volatile":null}}"#
        )
    );
}

#[tokio::test]
async fn rights_after_reset_anonymous_default_and_admin() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    user(&mut c, &admin, "hal").await;
    let hal = login_token(&s, "hal", "hal-password").await;
    for (controller, action) in [
        ("security", "createCredentials"),
        ("security", "updateCredentials"),
        ("security", "getCredentials"),
        ("security", "searchUsersByCredentials"),
        ("security", "getUserStrategies"),
        ("auth", "getMyCredentials"),
        ("auth", "updateMyCredentials"),
        ("auth", "getStrategies"),
    ] {
        let extra = json!({"strategy":"local","_id":"hal"});
        let r = call(&mut c, None, controller, action, extra.clone()).await;
        assert_eq!(r["error"]["id"], "security.rights.unauthorized", "{r}");
        let r = call(&mut c, Some(&hal), controller, action, extra.clone()).await;
        assert_eq!(r["error"]["id"], "security.rights.forbidden", "{r}");
    }
    // The admin may read anyone's credentials and its own.
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "getCredentials",
        json!({"strategy":"local","_id":"hal"}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"username":"hal","kuid":"hal"}));
    let r = call(
        &mut c,
        Some(&admin),
        "auth",
        "getMyCredentials",
        json!({"strategy":"local"}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"username":"root","kuid":"root"}));
    // The default role grants updateSelf.
    let r = call(
        &mut c,
        Some(&hal),
        "auth",
        "updateSelf",
        json!({"body":{"nick":"H"}}),
    )
    .await;
    assert_eq!(ok(&r)["_source"]["nick"], "H", "{r}");
}

#[tokio::test]
async fn update_self_changes_content_but_not_profiles() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    user(&mut c, &admin, "ivy").await;
    let ivy = login_token(&s, "ivy", "ivy-password").await;
    let r = call_text(
        &mut c,
        json!({"controller":"auth","action":"updateSelf","jwt":ivy,"requestId":"s1","body":{"name":"Ivy","_kuzzle_info":{"author":"x"}}}),
    )
    .await;
    let (r, _) = tollgate_testkit::mask_number(&r, "createdAt");
    let (r, _) = tollgate_testkit::mask_number(&r, "updatedAt");
    assert_eq!(
        r,
        ws_ok(
            "auth",
            "updateSelf",
            "s1",
            r#"{"_id":"ivy","_version":2,"_source":{"profileIds":["default"],"name":"Ivy","_kuzzle_info":{"author":"root","createdAt":X,"updatedAt":X,"updater":"ivy"}}}"#
        )
    );
    let r = http(&s, "PUT", "/_me", Some(&ivy), "s2", r#"{"age":30}"#).await;
    let (text, _) = tollgate_testkit::mask_number(&r.text(), "createdAt");
    let (text, _) = tollgate_testkit::mask_number(&text, "updatedAt");
    assert_eq!(
        text,
        http_ok(
            "auth",
            "updateSelf",
            "s2",
            r#"{"_id":"ivy","_version":3,"_source":{"profileIds":["default"],"name":"Ivy","age":30,"_kuzzle_info":{"author":"root","createdAt":X,"updatedAt":X,"updater":"ivy"}}}"#
        )
    );
    let r = http(&s, "PUT", "/_updateSelf", Some(&ivy), "s3", r#"{"age":31}"#).await;
    assert_eq!(r.json()["result"]["_version"], 4, "{}", r.text());
    for (body, argument) in [
        (json!({"profileIds":["admin"]}), "body.profileIds"),
        (json!({"_id":"root"}), "body._id"),
        (
            json!({"credentials":{"local":{"username":"x","password":"y"}}}),
            "body.credentials",
        ),
    ] {
        let r = call(
            &mut c,
            Some(&ivy),
            "auth",
            "updateSelf",
            json!({ "body": body }),
        )
        .await;
        assert_error(
            &r,
            "api.assert.forbidden_argument",
            400,
            &format!("The argument \"{argument}\" is not allowed by this API action."),
        );
    }
    let r = call(&mut c, Some(&ivy), "auth", "updateSelf", json!({})).await;
    assert_error(
        &r,
        "api.assert.body_required",
        400,
        "The request must specify a body.",
    );
    let r = call(
        &mut c,
        Some(&ivy),
        "auth",
        "updateSelf",
        json!({"retryOnConflict":500,"body":{"a":1}}),
    )
    .await;
    assert_error(
        &r,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"retryOnConflict\". Expected: an integer between 0 and 100",
    );
    // Still profile default, still its rights.
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "getUser",
        json!({"_id":"ivy"}),
    )
    .await;
    assert_eq!(ok(&r)["_source"]["profileIds"], json!(["default"]));
    assert_eq!(ok(&r)["_source"]["age"], 31);
}

#[tokio::test]
async fn password_policy_applies_to_every_password_write() {
    let s = TestServer::start_with(|c| c.security.password_min_length = 8, Vec::new()).await;
    let mut c = s.ws().await;
    let weak = r#"{"code":16711943,"id":"kuzzle-plugin-auth-passport-local.weak-password","message":"Password is too weak","props":[],"status":400}"#;
    // createFirstAdmin.
    let r = call(
        &mut c,
        None,
        "security",
        "createFirstAdmin",
        json!({"_id":"root","body":{"credentials":{"local":{"username":"root","password":"short"}}}}),
    )
    .await;
    assert_eq!(r["error"].to_string(), weak);
    assert_eq!(r["status"], 400);
    let r = call(
        &mut c,
        None,
        "security",
        "createFirstAdmin",
        json!({"_id":"root","reset":true,"body":{"credentials":{"local":{"username":"root","password":"root-password"}}}}),
    )
    .await;
    ok(&r);
    let admin = login_token(&s, "root", "root-password").await;
    self_service(&mut c, &admin).await;
    // createUser: seven characters are refused, eight accepted (characters, not bytes).
    let create = |id: &str, password: &str| json!({"_id":id,"body":{"content":{"profileIds":["default","self"]},"credentials":{"local":{"username":id,"password":password}}}});
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "createUser",
        create("jo", "ééééééé"),
    )
    .await;
    assert_eq!(r["error"].to_string(), weak);
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "getUser",
        json!({"_id":"jo"}),
    )
    .await;
    assert_eq!(r["error"]["id"], "security.user.not_found", "{r}");
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "createUser",
        create("jo", "éééééééé"),
    )
    .await;
    ok(&r);
    let jo = login_token(&s, "jo", "éééééééé").await;
    // The credentials writes.
    bare_user(&mut c, &admin, "kim").await;
    for (jwt, controller, action, extra) in [
        (
            &admin,
            "security",
            "createCredentials",
            json!({"_id":"kim","body":{"username":"kim","password":"1234567"}}),
        ),
        (
            &admin,
            "security",
            "updateCredentials",
            json!({"_id":"jo","body":{"password":"1234567"}}),
        ),
        (
            &admin,
            "security",
            "validateCredentials",
            json!({"body":{"username":"kim","password":"1234567"}}),
        ),
        (
            &jo,
            "auth",
            "updateMyCredentials",
            json!({"body":{"password":"1234567"}}),
        ),
        (
            &jo,
            "auth",
            "validateMyCredentials",
            json!({"body":{"username":"jo","password":"1234567"}}),
        ),
    ] {
        let mut extra = extra;
        extra["strategy"] = json!("local");
        let r = call(&mut c, Some(jwt), controller, action, extra).await;
        assert_eq!(r["error"].to_string(), weak, "{action}");
    }
    let r = call(
        &mut c,
        Some(&jo),
        "auth",
        "updateMyCredentials",
        json!({"strategy":"local","body":{"password":"12345678"}}),
    )
    .await;
    ok(&r);
    assert!(login(&s, "jo", "12345678").await["result"]["jwt"].is_string());
}

#[tokio::test]
async fn credential_writes_are_audited_without_any_hash() {
    let s = server().await;
    let (mut c, admin) = first_admin(&s).await;
    bare_user(&mut c, &admin, "lea").await;
    for (action, extra) in [
        (
            "createCredentials",
            json!({"_id":"lea","body":{"username":"lea","password":"lea-password"}}),
        ),
        (
            "updateCredentials",
            json!({"_id":"lea","body":{"username":"lea2","password":"lea-password-2"}}),
        ),
        ("deleteCredentials", json!({"_id":"lea"})),
    ] {
        let mut extra = extra;
        extra["strategy"] = json!("local");
        ok(&call(&mut c, Some(&admin), "security", action, extra).await);
    }
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "searchAuditLog",
        json!({"kind":"credential"}),
    )
    .await;
    let text = ok(&r).to_string();
    assert!(!text.contains("$argon2"), "{text}");
    assert!(!text.contains("lea-password"), "{text}");
    let records: Vec<(String, String, Value, Value)> = ok(&r)["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let b = &h["_source"];
            (
                b["action"].as_str().unwrap_or_default().to_owned(),
                b["target"].as_str().unwrap_or_default().to_owned(),
                b["document"].clone(),
                b["diff"].clone(),
            )
        })
        .collect();
    let expect = |action: &str, target: &str| {
        (
            format!("security:{action}"),
            target.to_owned(),
            Value::Null,
            Value::Null,
        )
    };
    assert_eq!(
        records,
        vec![
            expect("createFirstAdmin", "root"),
            expect("createCredentials", "lea"),
            expect("updateCredentials", "lea"),
            expect("updateCredentials", "lea2"),
            expect("deleteCredentials", "lea2"),
        ]
    );
    // Nor does the whole trail, whatever its kind.
    let r = call(
        &mut c,
        Some(&admin),
        "security",
        "searchAuditLog",
        json!({}),
    )
    .await;
    assert!(!ok(&r).to_string().contains("$argon2"));
}
