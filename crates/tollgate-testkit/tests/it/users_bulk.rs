//! replaceUser, upsertUser, createRestrictedUser, mDeleteUsers / mDeleteProfiles / mDeleteRoles,
//! revokeTokens, security:checkRights, the mapping actions and security:refresh, through real
//! sockets (`docs/api/users.md` §12, `docs/api/security.md` §8–9): success bytes over WebSocket and
//! HTTP, each validation error, rights.

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, first_admin, http_once, login_token};

/// Replaces every `createdAt` / `updatedAt` number in `v` by `"T"`.
fn mask_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if (k == "createdAt" || k == "updatedAt") && x.is_number() {
                    *x = json!("T");
                } else {
                    mask_times(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_times),
        _ => {}
    }
}

/// `request` with `jwt` and a request id, over WebSocket: the answer's text.
async fn call_text(c: &mut WsClient, jwt: &str, mut request: Value) -> String {
    request["jwt"] = json!(jwt);
    request["requestId"] = json!("r");
    c.call_text(&request.to_string()).await
}

/// The WS error envelope of `controller:action`, exact bytes.
fn ws_error(action: &str, status: u16, error: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"security","error":{error},"headers":{{}},"node":"{NODE}","requestId":"r","result":null,"status":{status},"volatile":null,"room":"r"}}"#
    )
}

/// The WS success envelope of `security:action`, exact bytes.
fn ws_ok(action: &str, result: &str) -> String {
    format!(
        r#"{{"action":"{action}","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"r","result":{result},"status":200,"volatile":null,"room":"r"}}"#
    )
}

fn missing(argument: &str) -> String {
    format!(
        r#"{{"code":33619971,"id":"api.assert.missing_argument","message":"Missing argument \"{argument}\".","props":["{argument}"],"status":400}}"#
    )
}

fn user_not_found(id: &str) -> String {
    format!(
        r#"{{"code":117702658,"id":"security.user.not_found","message":"User \"{id}\" not found.","props":["{id}"],"status":404}}"#
    )
}

/// Creates user `id` (profiles `profiles`, password `<id>-pw`) as `admin`.
async fn create_user(c: &mut WsClient, admin: &str, id: &str, profiles: Value) {
    let r = c
        .call(
            json!({"controller":"security","action":"createUser","_id":id,"jwt":admin,
            "body":{"content":{"profileIds":profiles,"name":id},
            "credentials":{"local":{"username":id,"password":format!("{id}-pw")}}}}),
        )
        .await;
    assert_eq!(r["status"], 200, "{r}");
}

async fn ws(c: &mut WsClient, jwt: &str, mut request: Value) -> Value {
    request["jwt"] = json!(jwt);
    c.call(request).await
}

#[tokio::test]
async fn replace_user_over_websocket_and_http() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_user(&mut c, &admin, "u1", json!(["default"])).await;
    let mut r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"replaceUser","_id":"u1",
            "body":{"profileIds":["admin"],"nick":"one","_kuzzle_info":{"author":"forged"}}}),
    )
    .await;
    mask_times(&mut r);
    assert_eq!(
        r["result"],
        json!({"_id":"u1","_version":2,"_source":{"profileIds":["admin"],"nick":"one",
            "_kuzzle_info":{"author":"root","createdAt":"T","updatedAt":"T","updater":"root"}}})
    );
    // `name` is gone: the content is replaced, not merged.
    let r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"getUser","_id":"u1"}),
    )
    .await;
    assert_eq!(r["result"]["_source"].get("name"), None, "{r}");
    // HTTP, `refresh=true` being wait_for.
    let mut r = http_once(
        s.addr,
        "PUT",
        "/users/u1/_replace?refresh=true",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"profileIds":["default"],"nick":"uno"}"#,
    )
    .await
    .json();
    mask_times(&mut r);
    assert_eq!(
        r,
        json!({"action":"replaceUser","controller":"security","error":null,
            "headers":{},"node":NODE,"requestId":r["requestId"],
            "result":{"_id":"u1","_version":3,"_source":{"profileIds":["default"],"nick":"uno",
                "_kuzzle_info":{"author":"root","createdAt":"T","updatedAt":"T","updater":"root"}}},
            "status":200,"volatile":null})
    );
    // The credentials are untouched: u1 still logs in.
    login_token(&s, "u1", "u1-pw").await;

    let replace = |body: Value, id: &str| json!({"controller":"security","action":"replaceUser","_id":id,"body":body});
    let cases = [
        (replace(json!({"nick":"x"}), "u1"), 400, missing("body.profileIds")),
        (
            replace(json!({"profileIds":"default"}), "u1"),
            400,
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.profileIds\" (expected: array)","props":["body.profileIds","array"],"status":400}"#.to_owned(),
        ),
        (
            replace(json!({"profileIds":[]}), "u1"),
            400,
            r#"{"code":33619972,"id":"api.assert.empty_argument","message":"The argument \"body.profileIds\" is empty.","props":["body.profileIds"],"status":400}"#.to_owned(),
        ),
        (
            replace(
                json!({"profileIds":["default"],"credentials":{"local":{}}}),
                "u1",
            ),
            400,
            r#"{"code":33619979,"id":"api.assert.forbidden_argument","message":"The argument \"body.credentials\" is not allowed by this API action.","props":["body.credentials"],"status":400}"#.to_owned(),
        ),
        (
            replace(json!({"profileIds":["ghost"]}), "u1"),
            404,
            r#"{"code":117833729,"id":"security.profile.not_found","message":"Profile \"ghost\" not found.","props":["ghost"],"status":404}"#.to_owned(),
        ),
        (
            replace(json!({"profileIds":["default"]}), "nobody"),
            404,
            user_not_found("nobody"),
        ),
        (
            replace(json!({"profileIds":["default"]}), "-1"),
            404,
            user_not_found("-1"),
        ),
        (
            json!({"controller":"security","action":"replaceUser","body":{"profileIds":["default"]}}),
            400,
            missing("_id"),
        ),
        (
            json!({"controller":"security","action":"replaceUser","_id":"u1"}),
            400,
            r#"{"code":33619976,"id":"api.assert.body_required","message":"The request must specify a body.","props":[],"status":400}"#.to_owned(),
        ),
        // The last administrator cannot lose administration (the lock-out guard).
        (
            replace(json!({"profileIds":["default"]}), "root"),
            412,
            r#"{"code":117637171,"id":"security.rights.lockout","message":"This change would leave no user able to call security:updateProfile and security:updateRole. Send allowLockout: true to make it anyway.","props":[],"status":412}"#.to_owned(),
        ),
    ];
    for (request, status, error) in cases {
        assert_eq!(
            call_text(&mut c, &admin, request.clone()).await,
            ws_error("replaceUser", status, &error),
            "{request}"
        );
    }
}

#[tokio::test]
async fn upsert_user_creates_then_updates() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let upsert = |body: Value| json!({"controller":"security","action":"upsertUser","_id":"u2","refresh":true,"body":body});
    let mut r = ws(
        &mut c,
        &admin,
        upsert(
            json!({"content":{"profileIds":["default"],"b":2},"default":{"a":1,"b":0},
            "credentials":{"local":{"username":"u2","password":"u2-pw"}}}),
        ),
    )
    .await;
    mask_times(&mut r);
    assert_eq!(
        r["result"],
        json!({"_id":"u2","_version":1,"_source":{"profileIds":["default"],"a":1,"b":2,
            "_kuzzle_info":{"author":"root","createdAt":"T","updatedAt":null,"updater":null}}}),
        "{r}"
    );
    login_token(&s, "u2", "u2-pw").await;
    // The audit trail records the writes, never the password nor its hash.
    let audit = call_text(
        &mut c,
        &admin,
        json!({"controller":"security","action":"searchAuditLog","target":"u2"}),
    )
    .await;
    assert!(
        audit.contains(r#""action":"security:upsertUser""#),
        "{audit}"
    );
    assert!(audit.contains(r#""kind":"credential""#), "{audit}");
    assert!(
        !audit.contains("u2-pw") && !audit.contains("argon2"),
        "{audit}"
    );
    // Exists now: content merged, defaults ignored.
    let mut r = http_once(
        s.addr,
        "POST",
        "/users/u2/_upsert",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"content":{"profileIds":["default"],"c":3},"default":{"a":9}}"#,
    )
    .await
    .json();
    mask_times(&mut r);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        r["result"],
        json!({"_id":"u2","_version":2,"_source":{"profileIds":["default"],"a":1,"b":2,"c":3,
            "_kuzzle_info":{"author":"root","createdAt":"T","updatedAt":"T","updater":"root"}}})
    );
    let cases = [
        (upsert(json!({})), missing("body.content")),
        (
            upsert(json!({"content":{"a":1}})),
            missing("body.content.profileIds"),
        ),
        (
            upsert(json!({"content":[]})),
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.content\" (expected: object)","props":["body.content","object"],"status":400}"#.to_owned(),
        ),
        (
            upsert(json!({"content":{"profileIds":["default"]},"default":"x"})),
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.default\" (expected: object)","props":["body.default","object"],"status":400}"#.to_owned(),
        ),
        (
            json!({"controller":"security","action":"upsertUser","_id":"u2","refresh":"now",
                "body":{"content":{"profileIds":["default"]}}}),
            r#"{"code":33619970,"id":"api.assert.invalid_argument","message":"Invalid argument \"refresh\". Expected: \"wait_for\" or false","props":["refresh","\"wait_for\" or false"],"status":400}"#.to_owned(),
        ),
    ];
    for (request, error) in cases {
        assert_eq!(
            call_text(&mut c, &admin, request.clone()).await,
            ws_error("upsertUser", 400, &error),
            "{request}"
        );
    }
}

#[tokio::test]
async fn create_restricted_user_gets_the_default_profile() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let mut r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"createRestrictedUser","_id":"r1",
            "body":{"content":{"name":"R"},"credentials":{"local":{"username":"r1","password":"r1-pw"}}}}),
    )
    .await;
    mask_times(&mut r);
    assert_eq!(
        r["result"],
        json!({"_id":"r1","_version":1,"_source":{"profileIds":["default"],"name":"R",
            "_kuzzle_info":{"author":"root","createdAt":"T","updatedAt":null,"updater":null}}})
    );
    login_token(&s, "r1", "r1-pw").await;
    // HTTP, no body at all: a generated kuid.
    let r = http_once(
        s.addr,
        "POST",
        "/users/_createRestricted",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await
    .json();
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["result"]["_source"]["profileIds"], json!(["default"]));
    assert!(
        r["result"]["_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("kuid-")),
        "{r}"
    );
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"createRestrictedUser","_id":"r2",
                "body":{"content":{"profileIds":["admin"]}}})
        )
        .await,
        ws_error(
            "createRestrictedUser",
            400,
            r#"{"code":33619979,"id":"api.assert.forbidden_argument","message":"The argument \"body.content.profileIds\" is not allowed by this API action.","props":["body.content.profileIds"],"status":400}"#
        )
    );
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"createRestrictedUser","_id":"r1","body":{}})
        )
        .await,
        ws_error(
            "createRestrictedUser",
            412,
            r#"{"code":117702657,"id":"security.user.already_exists","message":"User r1 already exists.","props":["r1"],"status":412}"#
        )
    );
}

#[tokio::test]
async fn m_delete_users_lists_deletions_and_reports_failures_as_a_partial_error() {
    let s = TestServer::start_with(|c| c.limits.documents_write_count = 3, vec![]).await;
    let (mut c, admin) = first_admin(&s).await;
    for id in ["a", "b", "d"] {
        create_user(&mut c, &admin, id, json!(["default"])).await;
    }
    let a_token = login_token(&s, "a", "a-pw").await;
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"mDeleteUsers","body":{"ids":["a","b"]}})
        )
        .await,
        ws_ok("mDeleteUsers", r#"["a","b"]"#)
    );
    // Their tokens went with them.
    let r = c
        .call(json!({"controller":"server","action":"now","jwt":a_token}))
        .await;
    assert_eq!(r["error"]["id"], "security.token.invalid", "{r}");
    // Some fail: 206, the deleted ids as the result, each failure in `errors`.
    let partial = format!(
        r#"{{"action":"mDeleteUsers","controller":"security","error":{{"code":16842761,"count":2,"errors":[{},{}],"id":"services.storage.incomplete_delete","message":"Couldn't delete all the requested documents: [\"ghost\",\"root\"]","props":[["ghost","root"]],"status":206}},"headers":{{}},"node":"{NODE}","requestId":"r","result":["d"],"status":206,"volatile":null,"room":"r"}}"#,
        user_not_found("ghost"),
        r#"{"code":117637171,"id":"security.rights.lockout","message":"This change would leave no user able to call security:updateProfile and security:updateRole. Send allowLockout: true to make it anyway.","props":[],"status":412}"#
    );
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"mDeleteUsers","body":{"ids":["ghost","d","root"]}})
        )
        .await,
        partial
    );
    // Over HTTP: the status line says 206 too.
    let r = http_once(
        s.addr,
        "POST",
        "/users/_mDelete",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"ids":["ghost"]}"#,
    )
    .await;
    assert_eq!(r.status, 206);
    let r = r.json();
    assert_eq!(r["result"], json!([]));
    assert_eq!(r["error"]["count"], 1);
    assert_eq!(r["error"]["errors"][0]["id"], "security.user.not_found");

    let m = |body: Value| json!({"controller":"security","action":"mDeleteUsers","body":body});
    let cases = [
        (m(json!({})), 400, missing("body.ids")),
        (
            m(json!({"ids":"a"})),
            400,
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.ids\" (expected: array)","props":["body.ids","array"],"status":400}"#.to_owned(),
        ),
        (
            m(json!({"ids":["a",1]})),
            400,
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.ids\" (expected: string[])","props":["body.ids","string[]"],"status":400}"#.to_owned(),
        ),
        (
            m(json!({"ids":["1","2","3","4"]})),
            413,
            r#"{"code":16842756,"id":"services.storage.write_limit_exceeded","message":"The number of documents edited by this request exceeds the configured server limit.","props":[],"status":413}"#.to_owned(),
        ),
        (
            json!({"controller":"security","action":"mDeleteUsers"}),
            400,
            r#"{"code":33619976,"id":"api.assert.body_required","message":"The request must specify a body.","props":[],"status":400}"#.to_owned(),
        ),
    ];
    for (request, status, error) in cases {
        assert_eq!(
            call_text(&mut c, &admin, request.clone()).await,
            ws_error("mDeleteUsers", status, &error),
            "{request}"
        );
    }
}

#[tokio::test]
async fn m_delete_profiles_and_roles() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    for request in [
        json!({"controller":"security","action":"createRole","_id":"r1","body":{"controllers":{"auth":{"actions":{"login":true}}}}}),
        json!({"controller":"security","action":"createRole","_id":"r2","body":{"controllers":{"auth":{"actions":{"login":true}}}}}),
        json!({"controller":"security","action":"createProfile","_id":"p1","body":{"policies":[{"roleId":"r1"}]}}),
        json!({"controller":"security","action":"createProfile","_id":"p2","body":{"policies":[{"roleId":"r1"}]}}),
    ] {
        let r = ws(&mut c, &admin, request).await;
        assert_eq!(r["status"], 200, "{r}");
    }
    create_user(&mut c, &admin, "holder", json!(["p2"])).await;
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"mDeleteProfiles","body":{"ids":["p1","p2","admin"]}})
        )
        .await,
        format!(
            r#"{{"action":"mDeleteProfiles","controller":"security","error":{{"code":16842761,"count":2,"errors":[{{"code":117833731,"id":"security.profile.in_use","message":"The profile \"p2\" is still used and cannot be deleted.","props":["p2"],"status":412}},{{"code":117833730,"id":"security.profile.cannot_delete","message":"The following profiles are protected and cannot be deleted: anonymous, default, admin","props":[],"status":400}}],"id":"services.storage.incomplete_delete","message":"Couldn't delete all the requested documents: [\"p2\",\"admin\"]","props":[["p2","admin"]],"status":206}},"headers":{{}},"node":"{NODE}","requestId":"r","result":["p1"],"status":206,"volatile":null,"room":"r"}}"#
        )
    );
    // r1 is still used by p2; r2 is not.
    let r = http_once(
        s.addr,
        "POST",
        "/roles/_mDelete",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"ids":["r2","r1"]}"#,
    )
    .await;
    assert_eq!(r.status, 206);
    let r = r.json();
    assert_eq!(r["result"], json!(["r2"]));
    assert_eq!(r["error"]["errors"][0]["id"], "security.role.in_use", "{r}");
    let r = http_once(
        s.addr,
        "POST",
        "/profiles/_mDelete?refresh=wait_for",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"ids":[]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], json!([]));
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"mDeleteRoles","body":{"ids":["ghost"]}})
        )
        .await,
        format!(
            r#"{{"action":"mDeleteRoles","controller":"security","error":{{"code":16842761,"count":1,"errors":[{{"code":117768193,"id":"security.role.not_found","message":"Role \"ghost\" not found.","props":["ghost"],"status":404}}],"id":"services.storage.incomplete_delete","message":"Couldn't delete all the requested documents: [\"ghost\"]","props":[["ghost"]],"status":206}},"headers":{{}},"node":"{NODE}","requestId":"r","result":[],"status":206,"volatile":null,"room":"r"}}"#
        )
    );
}

#[tokio::test]
async fn revoke_tokens_refuses_every_token_of_the_user() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_user(&mut c, &admin, "u1", json!(["default"])).await;
    let t1 = login_token(&s, "u1", "u1-pw").await;
    let t2 = login_token(&s, "u1", "u1-pw").await;
    let mut u = s.ws().await;
    for t in [&t1, &t2] {
        let r = u
            .call(json!({"controller":"auth","action":"getCurrentUser","jwt":t}))
            .await;
        assert_eq!(r["result"]["_id"], "u1", "{r}");
    }
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"revokeTokens","_id":"u1"})
        )
        .await,
        ws_ok("revokeTokens", "null")
    );
    for t in [&t1, &t2] {
        let r = u
            .call(json!({"controller":"auth","action":"getCurrentUser","jwt":t}))
            .await;
        assert_eq!(r["error"]["id"], "security.token.invalid", "{r}");
    }
    // The admin's own token is untouched; a new login of u1 works.
    let t3 = login_token(&s, "u1", "u1-pw").await;
    let r = http_once(
        s.addr,
        "DELETE",
        "/users/u1/tokens",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"revokeTokens","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"{}","result":null,"status":200,"volatile":null}}"#,
            r.json()["requestId"].as_str().unwrap_or("")
        )
    );
    let r = u
        .call(json!({"controller":"auth","action":"getCurrentUser","jwt":t3}))
        .await;
    assert_eq!(r["error"]["id"], "security.token.invalid", "{r}");
    for (request, status, error) in [
        (
            json!({"controller":"security","action":"revokeTokens","_id":"ghost"}),
            404,
            user_not_found("ghost"),
        ),
        (
            json!({"controller":"security","action":"revokeTokens"}),
            400,
            missing("_id"),
        ),
    ] {
        assert_eq!(
            call_text(&mut c, &admin, request).await,
            ws_error("revokeTokens", status, &error)
        );
    }
}

#[tokio::test]
async fn check_rights_of_a_given_user() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_user(&mut c, &admin, "u1", json!(["default"])).await;
    let check = |user: Value, body: Value| json!({"controller":"security","action":"checkRights","userId":user,"body":body});
    for (user, action, allowed) in [
        ("u1", "getMyRights", true),
        ("u1", "createFirstAdmin", false),
        ("root", "createFirstAdmin", true),
        ("-1", "login", true),
    ] {
        let controller = if action == "createFirstAdmin" {
            "security"
        } else {
            "auth"
        };
        assert_eq!(
            call_text(
                &mut c,
                &admin,
                check(
                    json!(user),
                    json!({"controller":controller,"action":action})
                )
            )
            .await,
            ws_ok("checkRights", &format!(r#"{{"allowed":{allowed}}}"#)),
            "{user} {action}"
        );
    }
    let r = http_once(
        s.addr,
        "POST",
        "/_checkRights/u1",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"controller":"auth","action":"logout"}"#,
    )
    .await
    .json();
    assert_eq!(r["result"], json!({"allowed": true}), "{r}");
    assert_eq!(r["action"], "checkRights");
    assert_eq!(r["controller"], "security");
    for (request, status, error) in [
        (
            check(json!(null), json!({"controller":"auth","action":"login"})),
            400,
            missing("userId"),
        ),
        (
            check(json!("u1"), json!({"action":"login"})),
            400,
            missing("body.controller"),
        ),
        (
            check(json!("u1"), json!({"controller":"auth","action":5})),
            400,
            missing("body.action"),
        ),
        (
            check(
                json!("u1"),
                json!({"controller":"auth","action":"login","index":1}),
            ),
            400,
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.index\" (expected: string)","props":["body.index","string"],"status":400}"#.to_owned(),
        ),
        (
            check(json!("ghost"), json!({"controller":"auth","action":"login"})),
            404,
            user_not_found("ghost"),
        ),
    ] {
        assert_eq!(
            call_text(&mut c, &admin, request.clone()).await,
            ws_error("checkRights", status, &error),
            "{request}"
        );
    }
}

#[tokio::test]
async fn mappings_fixed_for_profiles_and_roles_stored_for_users() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")));
    let s = TestServer::start_in(std::sync::Arc::clone(&dir), |_| {}, vec![]).await;
    let (mut c, admin) = first_admin(&s).await;
    let get = |action: &str| json!({"controller":"security","action":action});
    assert_eq!(
        call_text(&mut c, &admin, get("getProfileMapping")).await,
        ws_ok(
            "getProfileMapping",
            r#"{"mapping":{"tags":{"type":"keyword"},"policies":{"properties":{"roleId":{"type":"keyword"},"restrictedTo":{"type":"nested","properties":{"index":{"type":"keyword"},"collections":{"type":"keyword"}}}}}}}"#
        )
    );
    assert_eq!(
        call_text(&mut c, &admin, get("getRoleMapping")).await,
        ws_ok(
            "getRoleMapping",
            r#"{"mapping":{"tags":{"type":"keyword"},"controllers":{"dynamic":"false","properties":{}}}}"#
        )
    );
    assert_eq!(
        call_text(&mut c, &admin, get("getUserMapping")).await,
        ws_ok(
            "getUserMapping",
            r#"{"mapping":{"profileIds":{"type":"keyword"}}}"#
        )
    );
    let update =
        |action: &str, body: Value| json!({"controller":"security","action":action,"body":body});
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            update(
                "updateUserMapping",
                json!({"properties":{"name":{"type":"text","fields":{"raw":{"type":"keyword"}}},"address":{"properties":{"city":{"type":"keyword"}}}}})
            )
        )
        .await,
        ws_ok(
            "updateUserMapping",
            r#"{"dynamic":"false","properties":{"profileIds":{"type":"keyword"},"name":{"type":"text","fields":{"raw":{"type":"keyword"}}},"address":{"properties":{"city":{"type":"keyword"}}}}}"#
        )
    );
    // Restating the fixed profile mapping is accepted; changing it is not.
    let r = ws(
        &mut c,
        &admin,
        update(
            "updateProfileMapping",
            json!({"properties":{"tags":{"type":"keyword"}}}),
        ),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let type_error = |path: &str, expected: &str| {
        format!(
            r#"{{"code":33619970,"id":"api.assert.invalid_argument","message":"Invalid argument \"{path}\". Expected: {expected}","props":["{path}","{expected}"],"status":400}}"#
        )
    };
    for (action, body, error) in [
        (
            "updateRoleMapping",
            json!({"properties":{"colour":{"type":"keyword"}}}),
            type_error(
                "body.properties",
                "the fixed role mapping (getProfileMapping, getRoleMapping)",
            ),
        ),
        (
            "updateUserMapping",
            json!({"properties":{"profileIds":{"type":"text"}}}),
            type_error(
                "body.properties.profileIds.type",
                "keyword (a field's type cannot change)",
            ),
        ),
        (
            "updateUserMapping",
            json!({"properties":{"x":{"type":"blob"}}}),
            type_error(
                "body.properties.x.type",
                "an Elasticsearch 7 field type (keyword, text, long, …)",
            ),
        ),
        (
            "updateUserMapping",
            json!({"properties":{"_kuzzle_info":{"type":"keyword"}}}),
            type_error(
                "body.properties._kuzzle_info",
                "a field name of 1 to 256 bytes, not starting with _",
            ),
        ),
        ("updateUserMapping", json!({}), missing("body.properties")),
        (
            "updateUserMapping",
            json!({"properties":{},"settings":{}}),
            r#"{"code":33619975,"id":"api.assert.unexpected_argument","message":"Unexpected argument \"body.settings\" (accepted arguments: \"dynamic\", \"_meta\", \"properties\")","props":["body.settings","\"dynamic\", \"_meta\", \"properties\""],"status":400}"#.to_owned(),
        ),
        (
            "updateUserMapping",
            json!({"properties":{"x":"keyword"}}),
            r#"{"code":33619969,"id":"api.assert.invalid_type","message":"Wrong type for argument \"body.properties.x\" (expected: object)","props":["body.properties.x","object"],"status":400}"#.to_owned(),
        ),
    ] {
        assert_eq!(
            call_text(&mut c, &admin, update(action, body.clone())).await,
            ws_error(action, 400, &error),
            "{body}"
        );
    }
    // Too many fields.
    let many: serde_json::Map<String, Value> = (0..1_001)
        .map(|i| (format!("f{i}"), json!({"type":"keyword"})))
        .collect();
    let r = ws(
        &mut c,
        &admin,
        update("updateUserMapping", json!({ "properties": many })),
    )
    .await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_argument", "{r}");
    assert_eq!(
        r["error"]["props"],
        json!(["body.properties", "a mapping of at most 1000 fields"])
    );
    // Too deep.
    let mut deep = json!({"type":"keyword"});
    for _ in 0..21 {
        deep = json!({ "properties": { "x": deep } });
    }
    let r = ws(
        &mut c,
        &admin,
        update("updateUserMapping", json!({"properties":{"x":deep}})),
    )
    .await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_argument", "{r}");

    // Stored: the same after a restart, over HTTP.
    drop(c);
    assert!(s.stop().await);
    let s = TestServer::start_in(dir, |_| {}, vec![]).await;
    let admin = login_token(&s, "root", "root-pw").await;
    let r = http_once(
        s.addr,
        "GET",
        "/users/_mapping",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await
    .json();
    assert_eq!(
        r["result"],
        json!({"mapping":{"profileIds":{"type":"keyword"},"name":{"type":"text","fields":{"raw":{"type":"keyword"}}},"address":{"properties":{"city":{"type":"keyword"}}}}})
    );
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/_mapping",
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"properties":{"tags":{"type":"keyword"}}}"#,
    )
    .await
    .json();
    assert_eq!(r["action"], "updateProfileMapping", "{r}");
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn security_refresh_is_accepted_for_the_security_collections() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let r = call_text(
        &mut c,
        &admin,
        json!({"controller":"security","action":"refresh","collection":"users"}),
    )
    .await;
    assert_eq!(
        r,
        format!(
            r#"{{"action":"refresh","collection":"users","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"r","result":null,"status":200,"volatile":null,"room":"r"}}"#
        )
    );
    let r = call_text(
        &mut c,
        &admin,
        json!({"controller":"security","action":"refresh","collection":"tokens"}),
    )
    .await;
    assert_eq!(
        r,
        format!(
            r#"{{"action":"refresh","collection":"tokens","controller":"security","error":{{"code":33619975,"id":"api.assert.unexpected_argument","message":"Unexpected argument \"tokens\" (accepted arguments: \"users\", \"profiles\", \"roles\")","props":["tokens","\"users\", \"profiles\", \"roles\""],"status":400}},"headers":{{}},"node":"{NODE}","requestId":"r","result":null,"status":400,"volatile":null,"room":"r"}}"#
        )
    );
    assert_eq!(
        call_text(
            &mut c,
            &admin,
            json!({"controller":"security","action":"refresh"})
        )
        .await,
        ws_error("refresh", 400, &missing("collection"))
    );
    let r = http_once(
        s.addr,
        "POST",
        "/_security/profiles/_refresh",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await
    .json();
    assert_eq!(r["result"], Value::Null, "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["collection"], "profiles", "{r}");
}

#[tokio::test]
async fn security_writes_accept_refresh_true_as_wait_for() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    let r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"createRole","_id":"r1","refresh":true,
            "body":{"controllers":{"auth":{"actions":{"login":true}}}}}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    // Visible at once, on the answer.
    let r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"getRole","_id":"r1"}),
    )
    .await;
    assert_eq!(r["result"]["_id"], "r1", "{r}");
    let r = http_once(
        s.addr,
        "DELETE",
        "/roles/r1?refresh=true",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await
    .json();
    assert_eq!(r["result"], json!({"_id":"r1"}), "{r}");
}

#[tokio::test]
async fn new_security_actions_are_denied_to_anonymous_and_default_users() {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    create_user(&mut c, &admin, "u1", json!(["default"])).await;
    let u1 = login_token(&s, "u1", "u1-pw").await;
    for action in [
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
        let request = json!({"controller":"security","action":action,"_id":"u1","userId":"u1",
            "body":{"ids":["u1"],"profileIds":["admin"],"content":{"profileIds":["admin"]}}});
        let r = c.call(request.clone()).await;
        assert_eq!(
            r["error"]["id"], "security.rights.unauthorized",
            "{action}: {r}"
        );
        let r = ws(&mut c, &u1, request).await;
        assert_eq!(
            r["error"]["id"], "security.rights.forbidden",
            "{action}: {r}"
        );
    }
    // Nothing was changed by the refused calls.
    let r = ws(
        &mut c,
        &admin,
        json!({"controller":"security","action":"getUser","_id":"u1"}),
    )
    .await;
    assert_eq!(r["result"]["_source"]["profileIds"], json!(["default"]));
}
