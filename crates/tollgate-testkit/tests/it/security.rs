//! Token security through real sockets (`security-model.md` §7): forged tokens (algorithm confusion,
//! altered payloads, a missing prefix) and the tokens of a deleted user are refused with the exact
//! `security.token.invalid` bytes, over WebSocket, HTTP routes and `/_query`.
//!
//! A forged token is refused by its format, signature or algorithm checks, but it would also be
//! refused later because it was never recorded by `auth:login`. To test the first checks alone, each
//! forgery test records its forged tokens in the store, as if they had been issued (the server is
//! stopped, the records are written, the server is restarted on the same data directory), and proves
//! the recording works with a control token: one forged correctly with the server's secret, which is
//! accepted.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tollgate_storage::sqlite::{Durability, SqliteStore};
use tollgate_storage::{Expect, Op, Store};
use tollgate_testkit::{NODE, TestServer, WsClient, http_once, now_ms};

/// The token secret of every server in this file (`security.jwt_secret`).
const SECRET: &str = "tollgate-security-suite-secret-0123456789abcdef";

/// The error object of a refused token.
const INVALID: &str = r#"{"code":117506049,"id":"security.token.invalid","message":"Invalid token.","props":[],"status":401}"#;

fn with_secret(c: &mut tollgate_server::Config) {
    c.security.jwt_secret = Some(SECRET.to_owned());
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Clone, Copy)]
enum Alg {
    Hs256,
    Hs384,
    Hs512,
}

/// The base64url HMAC of `input` with [`SECRET`].
fn mac(alg: Alg, input: &str) -> String {
    let key = SECRET.as_bytes();
    let bytes = match alg {
        Alg::Hs256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Alg::Hs384 => {
            let mut m = Hmac::<Sha384>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Alg::Hs512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap_or_else(|e| panic!("{e}"));
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    b64(&bytes)
}

/// `kauth-<header>.<payload>.` followed by the HMAC of the first two segments with `alg`.
fn signed(alg: Alg, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = mac(alg, &input);
    format!("kauth-{input}.{signature}")
}

/// `kauth-<header>.<payload>.<signature>` with the signature given as is.
fn unsigned(header: &str, payload: &str, signature: &str) -> String {
    format!(
        "kauth-{}.{}.{signature}",
        b64(header.as_bytes()),
        b64(payload.as_bytes())
    )
}

/// The claims of a token of `kuid` issued now for one hour, as the server writes them.
fn claims(kuid: &str) -> String {
    let iat = now_ms() / 1000;
    json!({"_id": kuid, "iat": iat, "exp": iat + 3600}).to_string()
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Tokens issued by the server during the set-up.
struct Issued {
    /// `kuid-admin`, profile `admin`.
    admin: String,
    /// `alice`, profile `default`.
    alice: String,
}

/// A server on a data directory, with the first admin (`reset`) and the `default` user `alice`.
async fn set_up() -> (TestServer, Issued) {
    let s = TestServer::start_with(with_secret, vec![]).await;
    let mut c = s.ws().await;
    let r = c
        .call(json!({"controller":"security","action":"createFirstAdmin","_id":"kuid-admin","reset":true,
            "body":{"content":{},"credentials":{"local":{"username":"admin","password":"admin-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let admin = login(&s, "admin", "admin-pw").await;
    let r = c
        .call(json!({"controller":"security","action":"createUser","_id":"alice","jwt":admin,
            "body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"alice","password":"alice-pw"}}}}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let alice = login(&s, "alice", "alice-pw").await;
    (s, Issued { admin, alice })
}

async fn login(s: &TestServer, username: &str, password: &str) -> String {
    let body = json!({"username":username,"password":password}).to_string();
    let r = http_once(s.addr, "POST", "/_login/local", &[], body.as_bytes())
        .await
        .json();
    assert_eq!(r["status"], 200, "{r}");
    r["result"]["jwt"].as_str().unwrap_or_default().to_owned()
}

/// The id of a token's record: the hex SHA-256 of the whole token.
fn record_id(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens the store of a stopped server; its data directory lock is released once the server's last
/// task has ended.
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

/// Stops `s`, records each `(token, kuid)` as an issued token valid for one hour, plus a control
/// token forged correctly for `kuid-admin`, restarts the server on the same data directory and
/// checks that the control token is accepted there.
async fn record_and_restart(s: TestServer, tokens: &[(String, &str)]) -> TestServer {
    let dir = Arc::clone(&s.data_dir);
    assert!(s.stop().await, "the server did not stop cleanly");
    let iat = now_ms() / 1000 - 1;
    let control = signed(
        Alg::Hs256,
        HS256,
        &json!({"_id":"kuid-admin","iat":iat,"exp":iat + 3600}).to_string(),
    );
    let expires_at = now_ms() + 3_600_000;
    let store = open_store(dir.path()).await;
    let ops = tokens
        .iter()
        .map(|(t, kuid)| (t.as_str(), *kuid))
        .chain([(control.as_str(), "kuid-admin")])
        .map(|(token, kuid)| Op::Put {
            kind: "token",
            id: record_id(token),
            body: json!({"kuid": kuid, "expiresAt": expires_at}),
            expect: Expect::Any,
        })
        .collect();
    store
        .commit(ops)
        .await
        .unwrap_or_else(|e| panic!("recording the tokens: {e}"));
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .unwrap_or_else(|e| panic!("closing the store: {e}"));
    let s = TestServer::start_in(dir, with_secret, vec![]).await;
    let mut c = s.ws().await;
    let r = c
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":control}))
        .await;
    assert_eq!(
        (&r["status"], &r["result"]["_id"]),
        (&json!(200), &json!("kuid-admin")),
        "the control token, forged with the secret and recorded, must be accepted: {r}"
    );
    s
}

/// `auth:getCurrentUser` with `token` over WebSocket (on `c`), over the HTTP route `GET /_me` and
/// over `POST /_query`: the answer is exactly `security.token.invalid`, 401.
async fn assert_refused(s: &TestServer, c: &mut WsClient, token: &str) {
    let text = c
        .call_text(
            &json!({"controller":"auth","action":"getCurrentUser","jwt":token,"requestId":"f1"})
                .to_string(),
        )
        .await;
    assert_eq!(
        text,
        format!(
            r#"{{"action":"getCurrentUser","controller":"auth","error":{INVALID},"headers":{{}},"node":"{NODE}","requestId":"f1","result":null,"status":401,"volatile":null,"room":"f1"}}"#
        ),
        "websocket, token {token}"
    );
    let bearer = format!("Bearer {token}");
    let r = http_once(
        s.addr,
        "GET",
        "/_me",
        &[("Authorization", &bearer), ("X-Kuzzle-Request-Id", "f2")],
        b"",
    )
    .await;
    assert_eq!(
        r.status_line, "HTTP/1.1 401 Unauthorized",
        "GET /_me, token {token}"
    );
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"getCurrentUser","controller":"auth","error":{INVALID},"headers":{{}},"node":"{NODE}","requestId":"f2","result":null,"status":401,"volatile":null}}"#
        ),
        "GET /_me, token {token}"
    );
    // The requestId of `/_query` is the header's.
    let body = json!({"controller":"auth","action":"getCurrentUser","jwt":token}).to_string();
    let r = http_once(
        s.addr,
        "POST",
        "/_query",
        &[("X-Kuzzle-Request-Id", "f3")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        r.status_line, "HTTP/1.1 401 Unauthorized",
        "/_query, token {token}"
    );
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"getCurrentUser","controller":"auth","error":{INVALID},"headers":{{}},"node":"{NODE}","requestId":"f3","result":null,"status":401,"volatile":null}}"#
        ),
        "/_query, token {token}"
    );
}

/// Records `forged` (all as tokens of `kuid`), restarts, and checks each one is refused everywhere.
async fn assert_forgeries_refused(s: TestServer, forged: Vec<(String, &str)>) {
    let s = record_and_restart(s, &forged).await;
    let mut c = s.ws().await;
    for (token, _) in &forged {
        assert_refused(&s, &mut c, token).await;
    }
}

#[tokio::test]
async fn get_current_user_refuses_alg_none() {
    let (s, _) = set_up().await;
    let payload = claims("kuid-admin");
    let mut forged = Vec::new();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"none"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE","typ":"JWT"}"#,
    ] {
        // The unsecured JWT of RFC 7519: an empty signature.
        forged.push((unsigned(header, &payload, ""), "kuid-admin"));
    }
    // `none` with a signature that is a correct HS256 MAC: the algorithm check alone refuses it.
    forged.push((
        signed(Alg::Hs256, r#"{"alg":"none","typ":"JWT"}"#, &payload),
        "kuid-admin",
    ));
    assert_forgeries_refused(s, forged).await;
}

#[tokio::test]
async fn get_current_user_refuses_hs384_and_hs512() {
    let (s, _) = set_up().await;
    let payload = claims("kuid-admin");
    let hs384 = r#"{"alg":"HS384","typ":"JWT"}"#;
    let hs512 = r#"{"alg":"HS512","typ":"JWT"}"#;
    let forged = vec![
        // Signed as their header says, with the server's own secret.
        (signed(Alg::Hs384, hs384, &payload), "kuid-admin"),
        (signed(Alg::Hs512, hs512, &payload), "kuid-admin"),
        // Their header with an HS256 signature that verifies: the algorithm check alone refuses it.
        (signed(Alg::Hs256, hs384, &payload), "kuid-admin"),
        (signed(Alg::Hs256, hs512, &payload), "kuid-admin"),
    ];
    assert_forgeries_refused(s, forged).await;
}

#[tokio::test]
async fn get_current_user_refuses_rs256() {
    let (s, _) = set_up().await;
    let payload = claims("kuid-admin");
    let rs256 = r#"{"alg":"RS256","typ":"JWT"}"#;
    let forged = vec![
        // Key confusion: an RS256 header over an HMAC made with the secret.
        (signed(Alg::Hs256, rs256, &payload), "kuid-admin"),
        // An RSA-2048-sized signature.
        (unsigned(rs256, &payload, &b64(&[0x5a; 256])), "kuid-admin"),
        (unsigned(rs256, &payload, ""), "kuid-admin"),
    ];
    assert_forgeries_refused(s, forged).await;
}

#[tokio::test]
async fn get_current_user_refuses_a_missing_or_malformed_alg() {
    let (s, _) = set_up().await;
    let payload = claims("kuid-admin");
    let mut forged = Vec::new();
    // Every header below is signed with a valid HS256 MAC: only the algorithm check stands.
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{}"#,
        r#"{"alg":null,"typ":"JWT"}"#,
        r#"{"alg":"","typ":"JWT"}"#,
        r#"{"alg":"hs256","typ":"JWT"}"#,
        r#"{"alg":["HS256"],"typ":"JWT"}"#,
        r#"{"alg":{"name":"HS256"},"typ":"JWT"}"#,
        r#""HS256""#,
        "not json",
    ] {
        forged.push((signed(Alg::Hs256, header, &payload), "kuid-admin"));
    }
    assert_forgeries_refused(s, forged).await;
}

#[tokio::test]
async fn get_current_user_refuses_an_altered_payload() {
    let (s, issued) = set_up().await;
    // alice's real token, a `default` user, with its payload replaced and its signature kept.
    let parts: Vec<&str> = issued.alice.split('.').collect();
    assert_eq!(parts.len(), 3, "{}", issued.alice);
    let original: Value = URL_SAFE_NO_PAD
        .decode(parts[1])
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| panic!("payload of {}", issued.alice));
    let iat = original["iat"].as_u64().unwrap_or(0);
    let exp = original["exp"].as_u64().unwrap_or(0);
    assert!(iat > 0 && exp > iat, "{original}");
    let altered = |payload: Value| {
        format!(
            "{}.{}.{}",
            parts[0],
            b64(payload.to_string().as_bytes()),
            parts[2]
        )
    };
    let forged = vec![
        // Privilege escalation: alice's signature over the admin's kuid.
        (
            altered(json!({"_id":"kuid-admin","iat":iat,"exp":exp})),
            "kuid-admin",
        ),
        // A longer lifetime, a removed expiry.
        (
            altered(json!({"_id":"alice","iat":iat,"exp":exp + 86_400})),
            "alice",
        ),
        (altered(json!({"_id":"alice","iat":iat})), "alice"),
        // The same claims, re-encoded with a space: other bytes, so another signature.
        (
            format!(
                "{}.{}.{}",
                parts[0],
                b64(format!(r#"{{"_id":"alice", "iat":{iat},"exp":{exp}}}"#).as_bytes()),
                parts[2]
            ),
            "alice",
        ),
    ];
    let s = record_and_restart(s, &forged).await;
    let mut c = s.ws().await;
    for (token, _) in &forged {
        assert_refused(&s, &mut c, token).await;
    }
    // alice's real token still works, as alice.
    let r = c
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":issued.alice}))
        .await;
    assert_eq!(r["result"]["_id"], "alice", "{r}");
}

#[tokio::test]
async fn get_current_user_refuses_a_token_without_the_kauth_prefix() {
    let (s, issued) = set_up().await;
    let bare = issued
        .admin
        .strip_prefix("kauth-")
        .unwrap_or_else(|| panic!("{}", issued.admin))
        .to_owned();
    let forged = vec![
        (bare.clone(), "kuid-admin"),
        (format!("KAUTH-{bare}"), "kuid-admin"),
        (format!("kauth_{bare}"), "kuid-admin"),
        (format!("kapikey-{bare}"), "kuid-admin"),
        (format!("kauth-kauth-{bare}"), "kuid-admin"),
    ];
    let s = record_and_restart(s, &forged).await;
    let mut c = s.ws().await;
    for (token, _) in &forged {
        assert_refused(&s, &mut c, token).await;
    }
    let r = c
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":issued.admin}))
        .await;
    assert_eq!(r["result"]["_id"], "kuid-admin", "{r}");
}

#[tokio::test]
async fn delete_user_revokes_its_tokens_over_websocket_and_http() {
    let (s, issued) = set_up().await;
    // A second token of alice, from a WebSocket login.
    let mut linked = s.ws().await;
    let r = linked
        .call(
            json!({"controller":"auth","action":"login","strategy":"local",
            "body":{"username":"alice","password":"alice-pw"}}),
        )
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let ws_token = r["result"]["jwt"].as_str().unwrap_or_default().to_owned();
    // Both work, and are linked to this socket.
    for token in [&issued.alice, &ws_token] {
        let r = linked
            .call(json!({"controller":"auth","action":"getCurrentUser","jwt":token}))
            .await;
        assert_eq!(r["result"]["_id"], "alice", "{r}");
        let r = http_once(
            s.addr,
            "GET",
            "/_me",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = http_once(
        s.addr,
        "DELETE",
        "/users/alice",
        &[("Authorization", &format!("Bearer {}", issued.admin))],
        b"",
    )
    .await;
    assert_eq!(r.json()["result"], json!({"_id":"alice"}), "{}", r.text());
    // Refused on the socket that used them, on a new socket, and over HTTP.
    for token in [&issued.alice, &ws_token] {
        assert_refused(&s, &mut linked, token).await;
        let mut fresh = s.ws().await;
        assert_refused(&s, &mut fresh, token).await;
        let r = fresh
            .call(json!({"controller":"auth","action":"checkToken","body":{"token":token}}))
            .await;
        assert_eq!(r["result"], json!({"state":"Invalid token.","valid":false}));
    }
    // The admin's token is untouched.
    let r = linked
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":issued.admin}))
        .await;
    assert_eq!(r["result"]["_id"], "kuid-admin", "{r}");
}

/// A token is a function of (kuid, second of issue, lifetime). When a user is deleted and a user
/// with the same kuid is created and logs in within the same second, `auth:login` must not issue
/// (and record) the deleted user's token again: whoever held it would be authenticated as the new
/// user.
#[tokio::test]
async fn delete_user_then_recreate_with_the_same_kuid_keeps_the_old_token_refused() {
    let (s, issued) = set_up().await;
    let mut c = s.ws().await;
    let create = json!({"controller":"security","action":"createUser","_id":"bob","jwt":issued.admin,
        "body":{"content":{"profileIds":["default"]},"credentials":{"local":{"username":"bob","password":"bob-pw"}}}});
    let delete =
        json!({"controller":"security","action":"deleteUser","_id":"bob","jwt":issued.admin});
    // The old and the new bob log in within one second when possible: that is when a token built
    // only from (kuid, second of issue, lifetime) would come back. Up to a few attempts, each started
    // just after a second boundary.
    let mut same_second = false;
    for _ in 0..5 {
        assert_eq!(c.call(create.clone()).await["status"], 200);
        let wait = 1000 - now_ms() % 1000;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let started = now_ms() / 1000;
        let old = login(&s, "bob", "bob-pw").await;
        assert_eq!(c.call(delete.clone()).await["status"], 200);
        assert_eq!(c.call(create.clone()).await["status"], 200);
        // The new login is asked for within the old token's second (the server may then take until
        // the next second to answer, with another token).
        same_second = now_ms() / 1000 == started;
        let new = login(&s, "bob", "bob-pw").await;
        assert_ne!(new, old, "the deleted user's token was issued again");
        // The deleted user's token never authenticates anyone, the new bob included.
        assert_refused(&s, &mut c, &old).await;
        let r = c
            .call(json!({"controller":"auth","action":"getCurrentUser","jwt":new}))
            .await;
        assert_eq!(r["result"]["_id"], "bob", "{r}");
        assert_eq!(c.call(delete.clone()).await["status"], 200);
        if same_second {
            break;
        }
    }
    assert!(
        same_second,
        "the second login was never asked for within the first one's second"
    );
}
