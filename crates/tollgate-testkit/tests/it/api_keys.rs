//! API keys (`docs/api/api-keys.md`): `auth:createApiKey` / `searchApiKeys` / `deleteApiKey` and
//! their `security` counterparts, through real sockets; the key as a token over WebSocket and HTTP,
//! after a restart, once deleted; what the store and the audit trail keep of it.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tollgate_storage::Store;
use tollgate_storage::sqlite::{Durability, SqliteStore};
use tollgate_testkit::{NODE, TestServer, WsClient, first_admin, http_once, login_token};

/// Replaces the value of `"token":"…"` in a JSON text with `T`; returns the token found.
fn mask_token(text: &str) -> (String, String) {
    let needle = "\"token\":\"";
    let Some(start) = text.find(needle) else {
        return (text.to_owned(), String::new());
    };
    let from = start + needle.len();
    let len = text[from..].find('"').unwrap_or(0);
    let masked = format!("{}T{}", &text[..from], &text[from + len..]);
    (masked, text[from..from + len].to_owned())
}

fn ws_ok(controller: &str, action: &str, rid: &str, result: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{result},"status":200,"volatile":null,"room":"{rid}"}}"#
    )
}

fn http_ok(controller: &str, action: &str, rid: &str, result: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"{controller}","error":null,"headers":{{}},"node":"{NODE}","requestId":"{rid}","result":{result},"status":200,"volatile":null}}"#
    )
}

async fn call(c: &mut WsClient, jwt: &str, mut r: Value) -> Value {
    if !jwt.is_empty() {
        r["jwt"] = json!(jwt);
    }
    c.call(r).await
}

/// `(id, status, message)` of an error answer.
fn error_of(r: &Value) -> (String, u64, String) {
    (
        r["error"]["id"].as_str().unwrap_or_default().to_owned(),
        r["status"].as_u64().unwrap_or_default(),
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[track_caller]
fn assert_error(r: &Value, id: &str, status: u64, message: &str) {
    assert_eq!(
        error_of(r),
        (id.to_owned(), status, message.to_owned()),
        "{r}"
    );
}

/// A key of `root` created over WebSocket with `auth:createApiKey`: its token.
async fn my_key(c: &mut WsClient, admin: &str, id: &str) -> String {
    let r = call(
        c,
        admin,
        json!({"controller":"auth","action":"createApiKey","_id":id,"body":{"description":"ci"}}),
    )
    .await;
    r["result"]["_source"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned()
}

async fn create_alice(c: &mut WsClient, admin: &str) {
    let r = call(
        c,
        admin,
        json!({"controller":"security","action":"createUser","_id":"alice","body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"alice","password":"alice-pw"}}}}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
}

fn kuid_with(c_jwt: &str) -> Value {
    json!({"controller":"auth","action":"getCurrentUser","jwt":c_jwt})
}

#[tokio::test]
async fn create_api_key_answers_its_token_once_over_websocket_and_http() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    // WebSocket: a key that never expires, with the id asked for.
    let text = c
        .call_text(
            &json!({"controller":"auth","action":"createApiKey","_id":"k1","body":{"description":"ci runner"},"jwt":admin,"requestId":"c1"})
                .to_string(),
        )
        .await;
    let (masked, token) = mask_token(&text);
    assert_eq!(
        masked,
        ws_ok(
            "auth",
            "createApiKey",
            "c1",
            r#"{"_id":"k1","_source":{"userId":"root","description":"ci runner","expiresAt":-1,"ttl":-1,"token":"T"}}"#
        )
    );
    assert!(token.starts_with("kapikey-eyJ"), "{token}");
    // HTTP: a key of one hour, id generated.
    let bearer = format!("Bearer {admin}");
    let before = tollgate_testkit::now_ms();
    let r = http_once(
        s.addr,
        "POST",
        "/api-keys/_create?expiresIn=1h",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "c2")],
        br#"{"description":"hourly"}"#,
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    let v = r.json();
    let id = v["result"]["_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 36, "a UUID v4: {v}");
    let expires_at = v["result"]["_source"]["expiresAt"].as_u64().unwrap_or(0);
    assert!(
        (before + 3_600_000..=tollgate_testkit::now_ms() + 3_600_000).contains(&expires_at),
        "{v}"
    );
    let (masked, hourly) = mask_token(&r.text());
    assert_eq!(
        masked,
        http_ok(
            "auth",
            "createApiKey",
            "c2",
            &format!(
                r#"{{"_id":"{id}","_source":{{"userId":"root","description":"hourly","expiresAt":{expires_at},"ttl":3600000,"token":"T"}}}}"#
            )
        )
    );
    // security:createApiKey for another user, over both protocols.
    create_alice(&mut c, &admin).await;
    let text = c
        .call_text(
            &json!({"controller":"security","action":"createApiKey","userId":"alice","_id":"a1","body":{"description":"for alice"},"jwt":admin,"requestId":"c3"})
                .to_string(),
        )
        .await;
    let (masked, alice_ws) = mask_token(&text);
    assert_eq!(
        masked,
        ws_ok(
            "security",
            "createApiKey",
            "c3",
            r#"{"_id":"a1","_source":{"userId":"alice","description":"for alice","expiresAt":-1,"ttl":-1,"token":"T"}}"#
        )
    );
    let r = http_once(
        s.addr,
        "POST",
        "/users/alice/api-keys/_create?_id=a2&refresh=wait_for",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "c4")],
        br#"{"description":"second"}"#,
    )
    .await;
    let (masked, alice_http) = mask_token(&r.text());
    assert_eq!(
        masked,
        http_ok(
            "security",
            "createApiKey",
            "c4",
            r#"{"_id":"a2","_source":{"userId":"alice","description":"second","expiresAt":-1,"ttl":-1,"token":"T"}}"#
        )
    );
    // Every key is a token of its user, over WebSocket (jwt) and HTTP (Bearer).
    for (key, kuid) in [
        (&token, "root"),
        (&hourly, "root"),
        (&alice_ws, "alice"),
        (&alice_http, "alice"),
    ] {
        let r = c.call(kuid_with(key)).await;
        assert_eq!(r["result"]["_id"], kuid, "{r}");
        let bearer = format!("Bearer {key}");
        let r = http_once(s.addr, "GET", "/_me", &[("Authorization", &bearer)], b"")
            .await
            .json();
        assert_eq!(r["result"]["_id"], kuid, "{r}");
    }
    // checkToken reports a key as Kuzzle does.
    let text = c
        .call_text(
            &json!({"controller":"auth","action":"checkToken","body":{"token":token},"requestId":"t1"})
                .to_string(),
        )
        .await;
    assert_eq!(
        text,
        ws_ok(
            "auth",
            "checkToken",
            "t1",
            r#"{"expiresAt":-1,"kuid":"root","valid":true}"#
        )
    );
    // The searches never answer a token.
    let text = c
        .call_text(
            &json!({"controller":"security","action":"searchApiKeys","userId":"alice","body":{},"jwt":admin,"requestId":"s1"})
                .to_string(),
        )
        .await;
    assert_eq!(
        text,
        ws_ok(
            "security",
            "searchApiKeys",
            "s1",
            r#"{"hits":[{"_id":"a1","_source":{"userId":"alice","description":"for alice","expiresAt":-1,"ttl":-1}},{"_id":"a2","_source":{"userId":"alice","description":"second","expiresAt":-1,"ttl":-1}}],"total":2}"#
        )
    );
    let r = http_once(
        s.addr,
        "POST",
        "/api-keys/_search?from=0&size=5",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "s2")],
        br#"{"term":{"description":"ci runner"}}"#,
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok(
            "auth",
            "searchApiKeys",
            "s2",
            r#"{"hits":[{"_id":"k1","_source":{"userId":"root","description":"ci runner","expiresAt":-1,"ttl":-1}}],"total":1}"#
        )
    );
    // `{query, sort}` bodies too, and pagination with the real total.
    let r = call(
        &mut c,
        &admin,
        json!({"controller":"security","action":"searchApiKeys","userId":"alice","size":1,"from":1,"body":{"query":{"prefix":{"description":"s"}}}}),
    )
    .await;
    assert_eq!(
        r["result"],
        json!({"hits":[],"total":1}),
        "from past the only hit"
    );
    let r = call(
        &mut c,
        &admin,
        json!({"controller":"security","action":"searchApiKeys","userId":"alice","size":1,"body":{"query":{"match_all":{}},"sort":{"description":"desc"}}}),
    )
    .await;
    assert_eq!(
        r["result"],
        json!({"hits":[{"_id":"a2","_source":{"userId":"alice","description":"second","expiresAt":-1,"ttl":-1}}],"total":2})
    );
    // Deletion, over WebSocket and HTTP: `{_id}`.
    let text = c
        .call_text(
            &json!({"controller":"security","action":"deleteApiKey","userId":"alice","_id":"a1","jwt":admin,"requestId":"d1"})
                .to_string(),
        )
        .await;
    assert_eq!(
        text,
        ws_ok("security", "deleteApiKey", "d1", r#"{"_id":"a1"}"#)
    );
    let r = http_once(
        s.addr,
        "DELETE",
        "/api-keys/k1",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "d2")],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok("auth", "deleteApiKey", "d2", r#"{"_id":"k1"}"#)
    );
    let r = http_once(
        s.addr,
        "DELETE",
        "/users/alice/api-keys/a2",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "d3")],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        http_ok("security", "deleteApiKey", "d3", r#"{"_id":"a2"}"#)
    );
    // Deleted keys stop working at once, over both protocols; the others still work.
    for key in [&token, &alice_ws, &alice_http] {
        let r = c.call(kuid_with(key)).await;
        assert_error(&r, "security.token.invalid", 401, "Invalid token.");
        let bearer = format!("Bearer {key}");
        let r = http_once(s.addr, "GET", "/_me", &[("Authorization", &bearer)], b"")
            .await
            .json();
        assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    }
    let r = c.call(kuid_with(&hourly)).await;
    assert_eq!(r["result"]["_id"], "root", "{r}");
}

#[tokio::test]
async fn api_key_actions_validate_their_arguments() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    my_key(&mut c, &admin, "dup").await;
    let create = |extra: Value| {
        let mut r = json!({"controller":"auth","action":"createApiKey"});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        r
    };
    let cases: Vec<(Value, &str, u64, &str)> = vec![
        (
            create(json!({})),
            "api.assert.body_required",
            400,
            "The request must specify a body.",
        ),
        (
            create(json!({"body":{}})),
            "api.assert.missing_argument",
            400,
            "Missing argument \"body.description\".",
        ),
        (
            create(json!({"body":{"description":5}})),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"body.description\" (expected: string)",
        ),
        (
            create(json!({"body":{"description":"x".repeat(4097)}})),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"body.description\". Expected: a string of at most 4096 bytes",
        ),
        (
            create(json!({"expiresIn":"soon","body":{"description":"d"}})),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"expiresIn\". Expected: a number of milliseconds, or a parsable timespan string",
        ),
        (
            create(json!({"expiresIn":0,"body":{"description":"d"}})),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"expiresIn\". Expected: a number of milliseconds, or a parsable timespan string",
        ),
        (
            create(json!({"refresh":"now","body":{"description":"d"}})),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"refresh\". Expected: \"wait_for\" or false",
        ),
        (
            create(json!({"_id":7,"body":{"description":"d"}})),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"_id\" (expected: string)",
        ),
        (
            create(json!({"_id":"i".repeat(513),"body":{"description":"d"}})),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"_id\". Expected: a string of at most 512 bytes",
        ),
        (
            create(json!({"_id":"dup","body":{"description":"d"}})),
            "services.storage.document_already_exists",
            400,
            "Document already exists.",
        ),
        (
            json!({"controller":"security","action":"createApiKey","body":{"description":"d"}}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"userId\".",
        ),
        (
            json!({"controller":"security","action":"createApiKey","userId":true,"body":{"description":"d"}}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"userId\" (expected: string)",
        ),
        (
            json!({"controller":"security","action":"createApiKey","userId":"nobody","body":{"description":"d"}}),
            "security.user.not_found",
            404,
            "User \"nobody\" not found.",
        ),
        (
            json!({"controller":"auth","action":"deleteApiKey"}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"_id\".",
        ),
        (
            json!({"controller":"auth","action":"deleteApiKey","_id":"nope"}),
            "services.storage.not_found",
            404,
            "Document \"nope\" not found in \"kuzzle\":\"api-keys\".",
        ),
        // Another user's id does not reach root's key.
        (
            json!({"controller":"security","action":"deleteApiKey","userId":"someone","_id":"dup"}),
            "services.storage.not_found",
            404,
            "Document \"dup\" not found in \"kuzzle\":\"api-keys\".",
        ),
        (
            json!({"controller":"security","action":"deleteApiKey","_id":"dup"}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"userId\".",
        ),
        (
            json!({"controller":"security","action":"searchApiKeys"}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"userId\".",
        ),
        (
            json!({"controller":"auth","action":"searchApiKeys","scroll":"1m"}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"scroll\" (accepted arguments: \"from\", \"size\", \"lang\")",
        ),
        (
            json!({"controller":"auth","action":"searchApiKeys","size":10001}),
            "services.storage.get_limit_exceeded",
            413,
            "The number of documents returned by this request exceeds the configured server limit.",
        ),
        (
            json!({"controller":"auth","action":"searchApiKeys","from":-1}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"from\". Expected: positive integer, or zero",
        ),
        (
            json!({"controller":"auth","action":"searchApiKeys","body":{"range":{"ttl":{"gt":1}}}}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"body.range\". Expected: one of the clauses match_all, ids, term, terms, prefix, exists, bool",
        ),
        (
            json!({"controller":"auth","action":"searchApiKeys","body":{"query":{},"size":1}}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"body.size\" (accepted arguments: \"query\", \"sort\")",
        ),
    ];
    for (request, id, status, message) in cases {
        let r = call(&mut c, &admin, request.clone()).await;
        assert_error(&r, id, status, message);
    }
    // The same over HTTP's query-string typing.
    let bearer = format!("Bearer {admin}");
    for (path, body, id, message) in [
        (
            "/api-keys/_create?expiresIn=-5",
            &br#"{"description":"d"}"#[..],
            "api.assert.invalid_argument",
            "Invalid argument \"expiresIn\". Expected: a number of milliseconds, or a parsable timespan string",
        ),
        (
            "/api-keys/_search?size=abc",
            &b""[..],
            "api.assert.invalid_type",
            "Wrong type for argument \"size\" (expected: integer)",
        ),
    ] {
        let r = http_once(s.addr, "POST", path, &[("Authorization", &bearer)], body)
            .await
            .json();
        assert_error(&r, id, 400, message);
    }
}

#[tokio::test]
async fn api_keys_are_not_refreshed_nor_revoked_by_logout() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let key = my_key(&mut c, &admin, "k").await;
    let text = c
        .call_text(
            &json!({"controller":"auth","action":"refreshToken","jwt":key,"requestId":"r1"})
                .to_string(),
        )
        .await;
    assert_eq!(
        text,
        format!(
            r#"{{"action":"refreshToken","controller":"auth","error":{{"code":117506056,"id":"security.token.refresh_forbidden","message":"API Key cannot be refreshed.","props":["API Key"],"status":401}},"headers":{{}},"node":"{NODE}","requestId":"r1","result":null,"status":401,"volatile":null,"room":"r1"}}"#
        )
    );
    // Logging out with a key acknowledges and keeps it; a global logout keeps it too.
    let r = call(&mut c, &key, json!({"controller":"auth","action":"logout"})).await;
    assert_eq!(r["result"], json!({"acknowledged":true}), "{r}");
    let session = login_token(&s, "root", "root-pw").await;
    let r = call(
        &mut c,
        &session,
        json!({"controller":"auth","action":"logout","global":true}),
    )
    .await;
    assert_eq!(r["result"], json!({"acknowledged":true}), "{r}");
    let r = c.call(kuid_with(&session)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = c.call(kuid_with(&admin)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = c.call(kuid_with(&key)).await;
    assert_eq!(r["result"]["_id"], "root", "{r}");
    // The JWT of a key under the session prefix is no token.
    let swapped = key.replacen("kapikey-", "kauth-", 1);
    let r = c.call(kuid_with(&swapped)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
}

async fn open_store(dir: &std::path::Path) -> SqliteStore {
    let deadline = std::time::Instant::now() + tollgate_testkit::TIMEOUT;
    loop {
        match SqliteStore::open(dir, Durability::Full) {
            Ok(store) => return store,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("cannot open the stopped server's store: {e}"),
        }
    }
}

#[tokio::test]
async fn api_keys_survive_a_restart_and_neither_store_nor_audit_keeps_the_token() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let key = my_key(&mut c, &admin, "durable").await;
    let fingerprint: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    drop(c);
    let dir = s.data_dir.clone();
    assert!(s.stop().await);
    {
        let store = open_store(dir.path()).await;
        let keys = store
            .list("api-key", "", 0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.docs.len(), 1);
        assert_eq!(keys.docs[0].id, "root:durable");
        assert_eq!(
            keys.docs[0].body,
            json!({"userId":"root","description":"ci","expiresAt":-1,"ttl":-1,"fingerprint":fingerprint})
        );
        let tokens = store
            .list("token", "", 0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let record = tokens
            .docs
            .iter()
            .find(|d| d.id == format!("root:{fingerprint}"))
            .unwrap_or_else(|| panic!("no token record"));
        assert_eq!(
            record.body,
            json!({"kuid":"root","expiresAt":-1,"apiKey":"durable"})
        );
        // The audit trail records the key's creation, without its token or its hash.
        let audit = store
            .list("audit", "", 0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let entry = audit
            .docs
            .iter()
            .find(|d| d.body["kind"] == "api-key")
            .unwrap_or_else(|| panic!("no audit record of the key"));
        assert_eq!(entry.body["action"], "auth:createApiKey");
        assert_eq!(entry.body["author"], "root");
        assert_eq!(entry.body["target"], "root:durable");
        assert_eq!(
            entry.body["document"],
            json!({"userId":"root","description":"ci","expiresAt":-1,"ttl":-1})
        );
        for d in &audit.docs {
            let text = d.body.to_string();
            assert!(
                !text.contains(&key) && !text.contains(&fingerprint),
                "{text}"
            );
        }
    }
    // No file of the data directory holds the token.
    for entry in std::fs::read_dir(dir.path()).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds the token",
                path.display()
            );
        }
    }
    let s = TestServer::start_in(dir, |_| {}, vec![]).await;
    let mut c = s.ws().await;
    let r = c.call(kuid_with(&key)).await;
    assert_eq!(r["result"]["_id"], "root", "after a restart: {r}");
    let bearer = format!("Bearer {key}");
    // The key deletes itself (auth:deleteApiKey with its own token), then is refused.
    let r = http_once(
        s.addr,
        "DELETE",
        "/api-keys/durable",
        &[("Authorization", &bearer)],
        b"",
    )
    .await
    .json();
    assert_eq!(r["result"], json!({"_id":"durable"}), "{r}");
    let r = http_once(s.addr, "GET", "/_me", &[("Authorization", &bearer)], b"")
        .await
        .json();
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    // Over WebSocket too, on the socket that used it and on a new one.
    let r = c.call(kuid_with(&key)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    let r = s.ws().await.call(kuid_with(&key)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
}

#[tokio::test]
async fn delete_user_removes_its_api_keys() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_alice(&mut c, &admin).await;
    let r = call(
        &mut c,
        &admin,
        json!({"controller":"security","action":"createApiKey","userId":"alice","_id":"a","body":{"description":"d"}}),
    )
    .await;
    let key = r["result"]["_source"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = c.call(kuid_with(&key)).await;
    assert_eq!(r["result"]["_id"], "alice", "{r}");
    let r = call(
        &mut c,
        &admin,
        json!({"controller":"security","action":"deleteUser","_id":"alice"}),
    )
    .await;
    assert_eq!(r["result"], json!({"_id":"alice"}), "{r}");
    let r = c.call(kuid_with(&key)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
    // A user of the same id created again has no keys.
    create_alice(&mut c, &admin).await;
    let r = call(
        &mut c,
        &admin,
        json!({"controller":"security","action":"searchApiKeys","userId":"alice"}),
    )
    .await;
    assert_eq!(r["result"], json!({"hits":[],"total":0}), "{r}");
    let r = c.call(kuid_with(&key)).await;
    assert_error(&r, "security.token.invalid", 401, "Invalid token.");
}

#[tokio::test]
async fn api_key_rights_anonymous_default_and_admin() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_alice(&mut c, &admin).await;
    let alice = login_token(&s, "alice", "alice-pw").await;
    let actions = [
        json!({"controller":"auth","action":"createApiKey","body":{"description":"d"}}),
        json!({"controller":"auth","action":"searchApiKeys"}),
        json!({"controller":"auth","action":"deleteApiKey","_id":"x"}),
        json!({"controller":"security","action":"createApiKey","userId":"alice","body":{"description":"d"}}),
        json!({"controller":"security","action":"searchApiKeys","userId":"alice"}),
        json!({"controller":"security","action":"deleteApiKey","userId":"alice","_id":"x"}),
    ];
    for request in actions {
        let (controller, action) = (
            request["controller"].as_str().unwrap_or_default(),
            request["action"].as_str().unwrap_or_default(),
        );
        let r = call(&mut c, "", request.clone()).await;
        assert_error(
            &r,
            "security.rights.unauthorized",
            401,
            &format!(
                "Unauthorized: authentication required to execute the action \"{controller}:{action}\"."
            ),
        );
        let r = call(&mut c, &alice, request.clone()).await;
        assert_error(
            &r,
            "security.rights.forbidden",
            403,
            &format!(
                "Insufficient permissions to execute the action \"{controller}:{action}\" (User \"alice\")."
            ),
        );
        let r = call(&mut c, &admin, request.clone()).await;
        let id = r["error"]["id"].as_str().unwrap_or_default();
        assert!(
            r["status"] == 200 || id == "services.storage.not_found",
            "admin {controller}:{action}: {r}"
        );
    }
}
