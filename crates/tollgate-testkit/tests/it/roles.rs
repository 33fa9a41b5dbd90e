//! Role actions and the profile actions other than updateProfile, through real sockets.

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, http_once, mask_number};

async fn call(c: &mut WsClient, action: &str, extra: Value) -> Value {
    let mut req = json!({"controller":"security","action":action});
    if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    c.call(req).await
}

#[track_caller]
fn assert_error(r: &Value, id: &str, status: u16, message: &str) {
    assert_eq!(r["error"]["id"], id, "{r}");
    assert_eq!(r["status"], status, "{r}");
    if !message.is_empty() {
        assert_eq!(r["error"]["message"], message, "{r}");
    }
}

#[track_caller]
fn assert_ok(r: &Value) {
    assert_eq!(r["status"], 200, "{r}");
}

const EDITOR: &str = r#"{"controllers":{"document":{"actions":{"get":true,"search":true}}}}"#;

#[tokio::test]
async fn create_role_result_and_errors() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let text = c
        .call_text(r#"{"controller":"security","action":"createRole","_id":"editor","body":{"_id":"x","controllers":{"document":{"actions":{"get":true,"search":true}}},"note":"n"},"requestId":"r1"}"#)
        .await;
    let (masked, _) = mask_number(&text, "createdAt");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"createRole","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"r1","result":{{"_id":"editor","_version":1,"_source":{{"controllers":{{"document":{{"actions":{{"get":true,"search":true}}}}}},"note":"n","_kuzzle_info":{{"author":null,"createdAt":X,"updatedAt":null,"updater":null}}}}}},"status":200,"volatile":null,"room":"r1"}}"#
        )
    );
    let body: Value = serde_json::from_str(EDITOR).unwrap_or_default();
    let r = call(&mut c, "createRole", json!({"_id":"editor","body":body})).await;
    assert_error(
        &r,
        "services.storage.document_already_exists",
        400,
        "Document already exists.",
    );
    // Validation comes first: an invalid definition on an existing id reports the definition.
    let r = call(
        &mut c,
        "createRole",
        json!({"_id":"editor","body":{"controllers":{}}}),
    )
    .await;
    assert_error(
        &r,
        "api.assert.empty_argument",
        400,
        "The argument \"editor.controllers\" is empty.",
    );
    let r = call(
        &mut c,
        "createRole",
        json!({"_id":"mine","body":{"controllers":{"plugin":{"actions":{"x":true}}}}}),
    )
    .await;
    assert_error(
        &r,
        "security.role.unknown_controller",
        400,
        "Trying to set role mine with a non-existing controller 'plugin'.",
    );
    let r = call(
        &mut c,
        "createRole",
        json!({"_id":"mine","body":{"controllers":{"plugin":{"actions":{"x":true}}}},"force":true}),
    )
    .await;
    assert_ok(&r);
    let r = call(
        &mut c,
        "createRole",
        json!({"_id":"bad","body":{"controllers":{"document":{"actions":{"fly":true}}}}}),
    )
    .await;
    assert_error(
        &r,
        "security.role.unknown_action",
        400,
        "Trying to set role bad with a non-existing action 'fly' in controller 'document'.",
    );
    let r = call(&mut c, "createRole", json!({"_id":"bad"})).await;
    assert_error(&r, "api.assert.body_required", 400, "");
    let r = call(&mut c, "createRole", json!({"_id":"bad","body":{"controllers":{"auth":{"actions":{"login":true}}}},"refresh":"now"})).await;
    assert_error(&r, "api.assert.invalid_argument", 400, "");
}

#[tokio::test]
async fn replace_and_update_role() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let r = call(
        &mut c,
        "createOrReplaceRole",
        json!({"_id":"r","body":{"controllers":{"auth":{"actions":{"login":true}}},"a":1}}),
    )
    .await;
    assert_ok(&r);
    assert_eq!(r["result"]["_version"], 1);
    assert_eq!(
        r["result"]["_source"]["_kuzzle_info"]["updatedAt"],
        Value::Null
    );
    let created = r["result"]["_source"]["_kuzzle_info"]["createdAt"].clone();
    let r = call(
        &mut c,
        "createOrReplaceRole",
        json!({"_id":"r","body":{"controllers":{"server":{"actions":{"now":true}}}}}),
    )
    .await;
    assert_eq!(r["result"]["_version"], 2);
    assert_eq!(r["result"]["_source"]["_kuzzle_info"]["createdAt"], created);
    assert!(r["result"]["_source"]["_kuzzle_info"]["updatedAt"].is_u64());
    assert!(
        r["result"]["_source"].get("a").is_none(),
        "replace drops old keys"
    );
    // updateRole replaces the whole definition too, but the role must exist.
    let r = call(
        &mut c,
        "updateRole",
        json!({"_id":"ghost","body":{"controllers":{"auth":{"actions":{"login":true}}}}}),
    )
    .await;
    assert_error(
        &r,
        "security.role.not_found",
        404,
        "Role \"ghost\" not found.",
    );
    let r = call(&mut c, "updateRole", json!({"_id":"r","body":{"controllers":{"auth":{"actions":{"*":true}}},"b":2},"retryOnConflict":0})).await;
    assert_eq!(r["result"]["_version"], 3);
    assert_eq!(
        r["result"]["_source"]["controllers"],
        json!({"auth":{"actions":{"*":true}}})
    );
    assert_eq!(r["result"]["_source"]["b"], 2);
    let r = call(&mut c, "updateRole", json!({"_id":"r","body":{"controllers":{"auth":{"actions":{"*":true}}}},"retryOnConflict":101})).await;
    assert_error(&r, "api.assert.invalid_argument", 400, "");
    // The anonymous role must keep auth:login.
    let r = call(
        &mut c,
        "updateRole",
        json!({"_id":"anonymous","body":{"controllers":{"auth":{"actions":{"logout":true}}}}}),
    )
    .await;
    assert_error(
        &r,
        "security.role.login_required",
        400,
        "Cannot remove the \"login\" action from the anonymous role.",
    );
    let r = call(&mut c, "getRole", json!({"_id":"r"})).await;
    assert_eq!(r["result"]["_version"], 3);
    let r = call(&mut c, "getRole", json!({"_id":"nope"})).await;
    assert_error(
        &r,
        "security.role.not_found",
        404,
        "Role \"nope\" not found.",
    );
}

#[tokio::test]
async fn mget_and_search_roles() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    for (id, ctrl) in [
        ("b-role", "auth"),
        ("a-role", "document"),
        ("c-role", "server"),
    ] {
        assert_ok(
            &call(
                &mut c,
                "createRole",
                json!({"_id":id,"body":{"controllers":{ctrl:{"actions":{"*":true}}}}}),
            )
            .await,
        );
    }
    let r = call(
        &mut c,
        "mGetRoles",
        json!({"body":{"ids":["c-role","a-role"]}}),
    )
    .await;
    let ids: Vec<&str> = r["result"]["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x["_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["c-role", "a-role"]);
    assert!(r["result"].get("total").is_none());
    let r = call(
        &mut c,
        "mGetRoles",
        json!({"body":{"ids":["a-role","nope","zz"]}}),
    )
    .await;
    assert_error(
        &r,
        "security.role.not_found",
        404,
        "Role \"nope\" not found.",
    );
    for (body, id) in [
        (json!({}), "api.assert.missing_argument"),
        (json!({"ids":"a"}), "api.assert.invalid_type"),
        (json!({"ids":["a",1]}), "api.assert.invalid_type"),
    ] {
        assert_eq!(
            call(&mut c, "mGetRoles", json!({ "body": body })).await["error"]["id"],
            id
        );
    }
    // Every role (3 built-ins + 3), sorted by id; paginated.
    let r = call(&mut c, "searchRoles", json!({"from":1,"size":2})).await;
    assert_eq!(r["result"]["total"], 6);
    let ids: Vec<&str> = r["result"]["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x["_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["admin", "anonymous"]);
    // `controllers` matches a listed controller, or `*`.
    let r = call(
        &mut c,
        "searchRoles",
        json!({"body":{"controllers":["auth"]}}),
    )
    .await;
    let ids: Vec<&str> = r["result"]["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x["_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["admin", "anonymous", "b-role", "default"]);
    assert_error(
        &call(&mut c, "searchRoles", json!({"scroll":"1m"})).await,
        "api.assert.unexpected_argument",
        400,
        "Unexpected argument \"scroll\" (accepted arguments: \"from\", \"size\", \"lang\")",
    );
    assert_error(
        &call(&mut c, "searchRoles", json!({"size":10001})).await,
        "services.storage.get_limit_exceeded",
        413,
        "",
    );
    assert_error(
        &call(&mut c, "searchRoles", json!({"from":-1})).await,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"from\". Expected: positive integer, or zero",
    );
    assert_error(
        &call(&mut c, "searchRoles", json!({"lang":"sql"})).await,
        "api.assert.invalid_argument",
        400,
        "",
    );
    assert_error(
        &call(&mut c, "searchRoles", json!({"body":{"aggregations":{}}})).await,
        "api.assert.unexpected_argument",
        400,
        "Unexpected argument \"body.aggregations\" (accepted arguments: \"controllers\", \"query\", \"sort\", \"search_after\")",
    );
    assert_error(
        &call(&mut c, "searchRoles", json!({"body":{"query":{"term":{}}}})).await,
        "api.assert.invalid_argument",
        400,
        "",
    );
    assert_error(
        &call(
            &mut c,
            "searchRoles",
            json!({"body":{"query":{},"controllers":["auth"]}}),
        )
        .await,
        "api.assert.mutually_exclusive",
        400,
        "Arguments \"body.controllers\" and \"body.query\" are mutually exclusive",
    );
    assert_ok(
        &call(
            &mut c,
            "searchRoles",
            json!({"body":{"query":{"match_all":{}}},"lang":"koncorde"}),
        )
        .await,
    );
}

#[tokio::test]
async fn delete_role_rules() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let editor: Value = serde_json::from_str(EDITOR).unwrap_or_default();
    assert_ok(&call(&mut c, "createRole", json!({"_id":"editor","body":editor})).await);
    assert_ok(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"p","body":{"policies":[{"roleId":"editor"}]}}),
        )
        .await,
    );
    assert_error(
        &call(&mut c, "deleteRole", json!({"_id":"admin"})).await,
        "security.role.cannot_delete",
        400,
        "The following roles are protected and cannot be deleted: anonymous, default, admin",
    );
    assert_error(
        &call(&mut c, "deleteRole", json!({"_id":"ghost"})).await,
        "security.role.not_found",
        404,
        "",
    );
    assert_error(
        &call(&mut c, "deleteRole", json!({"_id":"editor"})).await,
        "security.role.in_use",
        412,
        "The role \"editor\" is still used and cannot be deleted.",
    );
    assert_ok(&call(&mut c, "deleteProfile", json!({"_id":"p"})).await);
    let r = call(&mut c, "deleteRole", json!({"_id":"editor"})).await;
    assert_eq!(r["result"], json!({"_id":"editor"}));
    assert_error(
        &call(&mut c, "getRole", json!({"_id":"editor"})).await,
        "security.role.not_found",
        404,
        "",
    );
    // A profile can no longer reference it.
    assert_error(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"p","body":{"policies":[{"roleId":"editor"}]}}),
        )
        .await,
        "security.role.not_found",
        404,
        "",
    );
}

#[tokio::test]
async fn create_profile_and_replace() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    assert_error(
        &call(&mut c, "createProfile", json!({"_id":"p","body":{}})).await,
        "api.assert.missing_argument",
        400,
        "Missing argument \"body.policies\".",
    );
    assert_error(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"p","body":{"policies":null}}),
        )
        .await,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"body.policies\" (expected: array)",
    );
    assert_error(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"p","body":{"policies":[]}}),
        )
        .await,
        "api.assert.empty_argument",
        400,
        "The argument \"p.policies\" is empty.",
    );
    assert_error(&call(&mut c, "createProfile", json!({"_id":"p","body":{"policies":[{"roleId":"default","restrictedTo":[{"index":"nyc"}]}]}})).await, "services.storage.unknown_index", 412, "");
    let r = call(&mut c, "createProfile", json!({"_id":"p","body":{"tags":1,"policies":[{"roleId":"default","restrictedTo":[{"index":"nyc"}]}]},"force":true})).await;
    assert_ok(&r);
    let keys: Vec<&String> = r["result"]["_source"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["policies", "rateLimit", "tags", "_kuzzle_info"]);
    assert_eq!(r["result"]["_version"], 1);
    assert_error(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"p","body":{"policies":[{"roleId":"default"}]}}),
        )
        .await,
        "services.storage.document_already_exists",
        400,
        "Document already exists.",
    );
    let created = r["result"]["_source"]["_kuzzle_info"]["createdAt"].clone();
    let r = call(
        &mut c,
        "createOrReplaceProfile",
        json!({"_id":"p","body":{"policies":[{"roleId":"admin"}],"rateLimit":3}}),
    )
    .await;
    assert_eq!(r["result"]["_version"], 2);
    assert_eq!(r["result"]["_source"]["_kuzzle_info"]["createdAt"], created);
    assert!(r["result"]["_source"].get("tags").is_none());
    let r = call(
        &mut c,
        "createOrReplaceProfile",
        json!({"_id":"q","body":{"policies":[{"roleId":"admin"}]}}),
    )
    .await;
    assert_eq!(r["result"]["_version"], 1);
    assert_eq!(r["result"]["_source"]["rateLimit"], 0);
}

#[tokio::test]
async fn mget_search_delete_profiles() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let editor: Value = serde_json::from_str(EDITOR).unwrap_or_default();
    assert_ok(&call(&mut c, "createRole", json!({"_id":"editor","body":editor})).await);
    assert_ok(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"z","body":{"policies":[{"roleId":"editor"}]}}),
        )
        .await,
    );
    assert_ok(
        &call(
            &mut c,
            "createProfile",
            json!({"_id":"m","body":{"policies":[{"roleId":"default"},{"roleId":"editor"}]}}),
        )
        .await,
    );
    let r = call(
        &mut c,
        "mGetProfiles",
        json!({"body":{"ids":["z","admin"]}}),
    )
    .await;
    assert_eq!(r["result"]["hits"][0]["_id"], "z");
    assert_eq!(r["result"]["hits"][1]["_id"], "admin");
    assert_error(
        &call(
            &mut c,
            "mGetProfiles",
            json!({"body":{"ids":["z","ghost"]}}),
        )
        .await,
        "security.profile.not_found",
        404,
        "Profile \"ghost\" not found.",
    );
    assert_error(
        &call(&mut c, "mGetProfiles", json!({})).await,
        "api.assert.body_required",
        400,
        "",
    );
    let r = call(
        &mut c,
        "searchProfiles",
        json!({"body":{"roles":["editor"]}}),
    )
    .await;
    assert_eq!(r["result"]["total"], 2);
    assert_eq!(r["result"]["hits"][0]["_id"], "m");
    let r = call(&mut c, "searchProfiles", json!({})).await;
    assert_eq!(r["result"]["total"], 5);
    let r = call(&mut c, "searchProfiles", json!({"from":4,"size":5})).await;
    assert_eq!(r["result"]["hits"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["result"]["hits"][0]["_id"], "z");
    assert_error(
        &call(&mut c, "searchProfiles", json!({"body":{"roles":"editor"}})).await,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"body.roles\" (expected: string[])",
    );
    // Deletion.
    assert_error(
        &call(&mut c, "deleteProfile", json!({"_id":"default"})).await,
        "security.profile.cannot_delete",
        400,
        "The following profiles are protected and cannot be deleted: anonymous, default, admin",
    );
    assert_error(
        &call(&mut c, "deleteProfile", json!({"_id":"ghost"})).await,
        "security.profile.not_found",
        404,
        "",
    );
    assert_error(
        &call(
            &mut c,
            "deleteProfile",
            json!({"_id":"z","onAssignedUsers":"drop"}),
        )
        .await,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"onAssignedUsers\". Expected: \"fail\" or \"remove\"",
    );
    assert_eq!(
        call(&mut c, "deleteProfile", json!({"_id":"z"})).await["result"],
        json!({"_id":"z"})
    );
    assert_error(
        &call(&mut c, "getProfile", json!({"_id":"z"})).await,
        "security.profile.not_found",
        404,
        "",
    );
}

#[tokio::test]
async fn profile_rights_listing_matches_the_spec_example() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let restricted = json!({"controllers":{"auth":{"actions":{"checkToken":true,"getCurrentUser":true,"getMyRights":true,"login":true}},"server":{"actions":{"publicApi":true,"openapi":true}}}});
    // The standard anonymous role of `security-model.md` §6, on a profile of its own.
    assert_ok(
        &call(
            &mut c,
            "createRole",
            json!({"_id":"restricted","body":restricted}),
        )
        .await,
    );
    let profile = json!({"_id":"restricted","body":{"policies":[{"roleId":"restricted"}]}});
    assert_ok(&call(&mut c, "createProfile", profile).await);
    let r = http_once(
        s.addr,
        "GET",
        "/profiles/restricted/_rights",
        &[("X-Kuzzle-Request-Id", "g1")],
        b"",
    )
    .await;
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"getProfileRights","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"g1","result":{{"hits":[{{"action":"getCurrentUser","collection":"*","controller":"auth","index":"*","value":"allowed"}},{{"action":"publicApi","collection":"*","controller":"server","index":"*","value":"allowed"}},{{"action":"login","collection":"*","controller":"auth","index":"*","value":"allowed"}},{{"action":"checkToken","collection":"*","controller":"auth","index":"*","value":"allowed"}},{{"action":"openapi","collection":"*","controller":"server","index":"*","value":"allowed"}},{{"action":"getMyRights","collection":"*","controller":"auth","index":"*","value":"allowed"}}],"total":6}},"status":200,"volatile":null}}"#
        )
    );
    // Restrictions become (index, collection) pairs; a denied action is listed as denied.
    assert_ok(&call(&mut c, "createRole", json!({"_id":"ed","body":{"controllers":{"document":{"actions":{"get":true,"delete":false}}}}})).await);
    assert_ok(&call(&mut c, "createProfile", json!({"_id":"p","force":true,"body":{"policies":[{"roleId":"ed","restrictedTo":[{"index":"nyc","collections":["bus"]},{"index":"mtp"}]}]}})).await);
    let r = call(&mut c, "getProfileRights", json!({"_id":"p"})).await;
    let hits = r["result"]["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(r["result"]["total"], 4);
    assert!(hits.contains(&json!({"action":"get","collection":"bus","controller":"document","index":"nyc","value":"allowed"})));
    assert!(hits.contains(&json!({"action":"delete","collection":"*","controller":"document","index":"mtp","value":"denied"})));
    assert_error(
        &call(&mut c, "getProfileRights", json!({"_id":"ghost"})).await,
        "security.profile.not_found",
        404,
        "",
    );
}

#[tokio::test]
async fn http_routes_of_profiles_and_roles() {
    let s = TestServer::start().await;
    let post = |path: &'static str, body: &'static [u8]| {
        let addr = s.addr;
        async move {
            http_once(
                addr,
                "POST",
                path,
                &[("Content-Type", "application/json")],
                body,
            )
            .await
        }
    };
    assert_eq!(
        post("/roles/ed/_create", EDITOR.as_bytes()).await.status,
        200
    );
    let r = http_once(s.addr, "PUT", "/roles/ed", &[], EDITOR.as_bytes()).await;
    assert_eq!(r.json()["result"]["_version"], 2);
    let r = http_once(
        s.addr,
        "PUT",
        "/roles/ed/_update?retryOnConflict=2",
        &[],
        EDITOR.as_bytes(),
    )
    .await;
    assert_eq!(r.json()["result"]["_version"], 3);
    assert_eq!(
        http_once(s.addr, "GET", "/roles/ed", &[], b"").await.json()["result"]["_id"],
        "ed"
    );
    assert_eq!(
        post("/roles/_mGet", br#"{"ids":["ed"]}"#).await.json()["result"]["hits"][0]["_id"],
        "ed"
    );
    assert_eq!(
        post("/roles/_search?from=0&size=1", b"").await.json()["result"]["total"],
        4
    );
    assert_eq!(
        post("/profiles/p/_create", br#"{"policies":[{"roleId":"ed"}]}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        http_once(
            s.addr,
            "PUT",
            "/profiles/p",
            &[],
            br#"{"policies":[{"roleId":"ed"}]}"#
        )
        .await
        .json()["result"]["_version"],
        2
    );
    assert_eq!(
        http_once(s.addr, "GET", "/profiles/p", &[], b"")
            .await
            .json()["result"]["_version"],
        2
    );
    assert_eq!(
        post("/profiles/_mGet", br#"{"ids":["p"]}"#).await.json()["result"]["hits"][0]["_id"],
        "p"
    );
    assert_eq!(
        post("/profiles/_search", br#"{"roles":["ed"]}"#)
            .await
            .json()["result"]["total"],
        1
    );
    assert_eq!(
        http_once(s.addr, "DELETE", "/profiles/p?refresh=wait_for", &[], b"")
            .await
            .json()["result"],
        json!({"_id":"p"})
    );
    assert_eq!(
        http_once(s.addr, "DELETE", "/roles/ed", &[], b"")
            .await
            .json()["result"],
        json!({"_id":"ed"})
    );
    // `/profiles/x` under PUT is createOrReplaceProfile, never collection:create on index `profiles`.
    let r = http_once(s.addr, "PUT", "/profiles/x", &[], b"{}").await;
    assert_eq!(r.json()["action"], "createOrReplaceProfile");
}

#[tokio::test]
async fn bootstrap_creates_the_built_ins_of_the_spec() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    for id in ["admin", "default", "anonymous"] {
        let r = call(&mut c, "getRole", json!({ "_id": id })).await;
        let (masked, _) = mask_number(&r["result"].to_string(), "createdAt");
        assert_eq!(
            masked,
            format!(
                r#"{{"_id":"{id}","_version":1,"_source":{{"controllers":{{"*":{{"actions":{{"*":true}}}}}},"_kuzzle_info":{{"author":null,"createdAt":X,"updatedAt":null,"updater":null}}}}}}"#
            )
        );
        let r = call(&mut c, "getProfile", json!({ "_id": id })).await;
        let (masked, _) = mask_number(&r["result"].to_string(), "createdAt");
        assert_eq!(
            masked,
            format!(
                r#"{{"_id":"{id}","_version":1,"_source":{{"policies":[{{"roleId":"{id}"}}],"rateLimit":0,"_kuzzle_info":{{"author":null,"createdAt":X,"updatedAt":null,"updater":null}}}}}}"#
            )
        );
    }
}
