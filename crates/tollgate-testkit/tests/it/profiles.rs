//! `security:updateProfile`: the numbered test cases of `shared/spec/update-profile.md` §13, over
//! WebSocket (and the main ones over HTTP). Until users and tokens exist, requests run as anonymous on a
//! fresh server, where anonymous has every right, so `author`/`updater` are null.

use serde_json::{Map, Value, json};
use tollgate_testkit::{NODE, TestServer, WsClient, http_once, mask_number};

/// The spec's fixture: catalog `nyc` (taxi, bus) and `mtp`; roles `editor`, `viewer`; profile
/// `editors` at version 1. Returns the original `editors` document.
pub async fn fixture(c: &mut WsClient) -> Value {
    for req in [
        json!({"controller":"collection","action":"create","index":"nyc","collection":"taxi"}),
        json!({"controller":"collection","action":"create","index":"nyc","collection":"bus"}),
        json!({"controller":"index","action":"create","index":"mtp"}),
        json!({"controller":"security","action":"createRole","_id":"editor","body":{"controllers":{"document":{"actions":{"get":true,"search":true}}}}}),
        json!({"controller":"security","action":"createRole","_id":"viewer","body":{"controllers":{"document":{"actions":{"get":true}}}}}),
        json!({"controller":"security","action":"createProfile","_id":"editors","body":{"policies":[{"roleId":"editor"}],"rateLimit":10,"tags":["staff"]}}),
    ] {
        let r = c.call(req.clone()).await;
        assert_eq!(r["status"], 200, "fixture {req}: {r}");
    }
    get(c, "editors").await["result"].clone()
}

pub async fn get(c: &mut WsClient, id: &str) -> Value {
    c.call(json!({"controller":"security","action":"getProfile","_id":id}))
        .await
}

/// `updateProfile` on `editors` with `extra` top-level keys (which may override `_id`).
async fn update(c: &mut WsClient, extra: Value) -> Value {
    let mut req = json!({"controller":"security","action":"updateProfile","_id":"editors"});
    if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    c.call(req).await
}

async fn update_body(c: &mut WsClient, body: Value) -> Value {
    update(c, json!({ "body": body })).await
}

#[track_caller]
fn assert_error(r: &Value, id: &str, status: u16, message: &str) {
    assert_eq!(r["status"], status, "{r}");
    assert_eq!(r["error"]["id"], id, "{r}");
    assert_eq!(r["error"]["status"], status, "{r}");
    if !message.is_empty() {
        assert_eq!(r["error"]["message"], message, "{r}");
    }
    assert_eq!(r["result"], Value::Null);
}

async fn assert_unchanged(c: &mut WsClient, original: &Value) {
    let now = get(c, "editors").await;
    assert_eq!(&now["result"], original, "the profile changed");
}

fn source(r: &Value) -> &Map<String, Value> {
    r["result"]["_source"]
        .as_object()
        .unwrap_or_else(|| panic!("no _source in {r}"))
}

async fn setup() -> (TestServer, WsClient, Value) {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let original = fixture(&mut c).await;
    (s, c, original)
}

#[tokio::test]
async fn update_profile_case_01_rate_limit_exact_bytes() {
    let (_s, mut c, original) = setup().await;
    assert_eq!(original["_version"], 1);
    let created = original["_source"]["_kuzzle_info"]["createdAt"]
        .as_u64()
        .unwrap_or(0);
    let text = c
        .call_text(r#"{"controller":"security","action":"updateProfile","_id":"editors","body":{"rateLimit":20},"requestId":"req-1"}"#)
        .await;
    let (masked, c_at) = mask_number(&text, "createdAt");
    let (masked, u_at) = mask_number(&masked, "updatedAt");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"req-1","result":{{"_id":"editors","_version":2,"_source":{{"policies":[{{"roleId":"editor"}}],"rateLimit":20,"tags":["staff"],"_kuzzle_info":{{"author":null,"createdAt":X,"updatedAt":X,"updater":null}}}}}},"status":200,"volatile":null,"room":"req-1"}}"#
        )
    );
    assert_eq!(c_at, Some(created));
    assert!(u_at.unwrap_or(0) >= created);
}

#[tokio::test]
async fn update_profile_cases_02_to_07_merge() {
    let (_s, mut c, _) = setup().await;
    // 2: policies replaced wholesale, other keys kept.
    let r = update_body(&mut c, json!({"policies":[{"roleId":"viewer"}]})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(source(&r)["policies"], json!([{"roleId":"viewer"}]));
    assert_eq!(source(&r)["rateLimit"], 10);
    assert_eq!(source(&r)["tags"], json!(["staff"]));
    // 3: {} writes a new version.
    let before = get(&mut c, "editors").await;
    let r = update_body(&mut c, json!({})).await;
    assert_eq!(r["result"]["_version"], 3);
    let (mut a, mut b) = (source(&before).clone(), source(&r).clone());
    for m in [&mut a, &mut b] {
        if let Some(Value::Object(info)) = m.get_mut("_kuzzle_info") {
            info.shift_remove("updatedAt");
        }
    }
    assert_eq!(a, b);
    // 4: new keys are appended, replaced keys keep their position.
    let r = update_body(&mut c, json!({"level":3,"tags":["a"]})).await;
    let keys: Vec<&String> = source(&r).keys().collect();
    assert_eq!(
        keys,
        ["policies", "rateLimit", "tags", "level", "_kuzzle_info"]
    );
    assert_eq!(source(&r)["tags"], json!(["a"]));
    // 5: reserved keys are ignored.
    let r = update_body(
        &mut c,
        json!({"_id":"x","_version":99,"_kuzzle_info":{"author":"y"},"optimizedPolicies":[]}),
    )
    .await;
    assert_eq!(r["result"]["_id"], "editors");
    assert_eq!(r["result"]["_version"], 5);
    assert_eq!(source(&r)["_kuzzle_info"]["author"], Value::Null);
    assert!(!source(&r).contains_key("optimizedPolicies"));
    // 6: null is stored as null.
    let r = update_body(&mut c, json!({"tags":null})).await;
    assert!(source(&r).contains_key("tags"));
    assert_eq!(source(&r)["tags"], Value::Null);
    // 7: successive updates bump the version by one.
    assert_eq!(
        update_body(&mut c, json!({"rateLimit":11})).await["result"]["_version"],
        7
    );
    assert_eq!(
        update_body(&mut c, json!({"rateLimit":11})).await["result"]["_version"],
        8
    );
}

#[tokio::test]
async fn update_profile_cases_08_to_10_restrictions_stored_as_sent() {
    let (_s, mut c, _) = setup().await;
    let policies =
        r#"[{"roleId":"editor","restrictedTo":[{"collections":["taxi","bus"],"index":"nyc"}]}]"#;
    let text = c
        .call_text(&format!(r#"{{"controller":"security","action":"updateProfile","_id":"editors","body":{{"policies":{policies}}}}}"#))
        .await;
    assert!(
        text.contains(&format!(
            r#""_source":{{"policies":{policies},"rateLimit":10"#
        )),
        "{text}"
    );
    for restricted in [
        json!([{"index":"mtp"}]),
        json!([{"index":"nyc","collections":[]}]),
        Value::Null,
        json!([]),
        json!([{"index":"nyc","collections":["taxi","taxi"]}]),
    ] {
        let body = json!({"policies":[{"roleId":"editor","restrictedTo":restricted}]});
        let r = update_body(&mut c, body.clone()).await;
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(source(&r)["policies"], body["policies"]);
        assert_eq!(
            get(&mut c, "editors").await["result"]["_source"]["policies"],
            body["policies"]
        );
    }
}

#[tokio::test]
async fn update_profile_cases_11_to_13_catalog_checks() {
    let (_s, mut c, original) = setup().await;
    let r = update_body(
        &mut c,
        json!({"policies":[{"roleId":"editor","restrictedTo":[{"index":"ghost"}]}]}),
    )
    .await;
    assert_error(
        &r,
        "services.storage.unknown_index",
        412,
        "The index \"ghost\" does not exist.",
    );
    assert_eq!(r["error"]["props"], json!(["ghost"]));
    assert_eq!(r["error"]["code"], 16842753);
    let text = c
        .call_text(r#"{"controller":"security","action":"updateProfile","_id":"editors","body":{"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc","collections":["taxi","zz","yy"]}]}]},"requestId":"req-44"}"#)
        .await;
    assert_eq!(
        text,
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":{{"code":16842754,"id":"services.storage.unknown_collection","message":"The collection \"nyc\":\"[\"zz\",\"yy\"]\" does not exist.","props":["nyc",["zz","yy"]],"status":412}},"headers":{{}},"node":"{NODE}","requestId":"req-44","result":null,"status":412,"volatile":null,"room":"req-44"}}"#
        )
    );
    let r = update_body(&mut c, json!({"policies":[{"roleId":"editor","restrictedTo":[{"index":"ghost","collections":["a"]}]}]})).await;
    assert_error(
        &r,
        "services.storage.unknown_index",
        412,
        "The index \"ghost\" does not exist.",
    );
    assert_unchanged(&mut c, &original).await;
}

#[tokio::test]
async fn update_profile_cases_14_to_22_force_and_strict() {
    let (_s, mut c, original) = setup().await;
    let ghost = json!({"policies":[{"roleId":"editor","restrictedTo":[{"index":"ghost"}]}]});
    // 17, 18, 19, 20 first: nothing changes.
    for force in [json!("true"), json!(1)] {
        let r = update(&mut c, json!({"body": ghost, "force": force})).await;
        assert_error(
            &r,
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"force\" (expected: boolean)",
        );
    }
    let r = update(&mut c, json!({"body": ghost, "force": null})).await;
    assert_error(&r, "services.storage.unknown_index", 412, "");
    for strict in [true, false] {
        let r = update(&mut c, json!({"body": ghost, "strict": strict})).await;
        assert_error(&r, "services.storage.unknown_index", 412, "");
    }
    let r = update(&mut c, json!({"body": {}, "strict": "x"})).await;
    assert_error(
        &r,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"strict\" (expected: boolean)",
    );
    let r = update_body(
        &mut c,
        json!({"policies":[{"roleId":"editor","restrictedTo":[{"index":""}]}]}),
    )
    .await;
    assert_error(
        &r,
        "services.storage.unknown_index",
        412,
        "The index \"\" does not exist.",
    );
    assert_unchanged(&mut c, &original).await;
    // 14: forced.
    let r = update(&mut c, json!({"body": ghost, "force": true})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(source(&r)["policies"], ghost["policies"]);
    // 21: stored restrictions are not re-checked.
    let r = update_body(&mut c, json!({"rateLimit":5})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(source(&r)["policies"], ghost["policies"]);
    // 22: an empty index name passes when forced.
    let r = update(&mut c, json!({"body":{"policies":[{"roleId":"editor","restrictedTo":[{"index":""}]}]},"force":true})).await;
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn update_profile_cases_23_to_28_id_and_body() {
    let (_s, mut c, original) = setup().await;
    for req in [
        json!({"controller":"security","action":"updateProfile","body":{}}),
        json!({"controller":"security","action":"updateProfile","_id":"","body":{}}),
        json!({"controller":"security","action":"updateProfile","_id":null,"body":{}}),
        json!({"controller":"security","action":"updateProfile"}),
    ] {
        assert_error(
            &c.call(req).await,
            "api.assert.missing_argument",
            400,
            "Missing argument \"_id\".",
        );
    }
    let r = update(&mut c, json!({"_id":123,"body":{}})).await;
    assert_error(
        &r,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"_id\" (expected: string)",
    );
    let r = update(&mut c, json!({"_id":"x".repeat(513),"body":{}})).await;
    assert_error(
        &r,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"_id\". Expected: a string of at most 512 bytes",
    );
    let r = update(&mut c, json!({"_id":"ghost","body":{}})).await;
    assert_error(
        &r,
        "security.profile.not_found",
        404,
        "Profile \"ghost\" not found.",
    );
    assert_eq!(r["error"]["code"], 117833729);
    for extra in [json!({}), json!({"body":null})] {
        let r = update(&mut c, extra).await;
        assert_error(
            &r,
            "api.assert.body_required",
            400,
            "The request must specify a body.",
        );
    }
    for body in [json!([]), json!("x")] {
        let r = update(&mut c, json!({ "body": body })).await;
        assert_error(
            &r,
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"body\" (expected: object)",
        );
        assert_eq!(r["controller"], Value::Null);
        assert_eq!(r["action"], Value::Null);
    }
    assert_unchanged(&mut c, &original).await;
}

#[tokio::test]
async fn update_profile_cases_29_to_36_arguments() {
    let (_s, mut c, original) = setup().await;
    // Errors first, so the profile must still be at version 1.
    // `true` is `wait_for` (as Kuzzle and the SDK have it): only other values are refused.
    for refresh in [json!("now"), json!(1), json!("true")] {
        let r = update(&mut c, json!({"body":{},"refresh":refresh})).await;
        assert_error(
            &r,
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"refresh\". Expected: \"wait_for\" or false",
        );
    }
    for retry in [json!(101), json!(-1)] {
        let r = update(&mut c, json!({"body":{},"retryOnConflict":retry})).await;
        assert_error(
            &r,
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"retryOnConflict\". Expected: an integer between 0 and 100",
        );
    }
    for retry in [json!("3"), json!(3.5), json!(true), json!(3.0)] {
        let r = update(&mut c, json!({"body":{},"retryOnConflict":retry})).await;
        assert_error(
            &r,
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"retryOnConflict\" (expected: integer)",
        );
    }
    // 34: argument order.
    let r = c
        .call(json!({"controller":"security","action":"updateProfile"}))
        .await;
    assert_eq!(r["error"]["props"], json!(["_id"]));
    // 35
    let r = update(
        &mut c,
        json!({"body":{},"refresh":"now","retryOnConflict":"x","force":"y"}),
    )
    .await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_argument");
    let r = update(&mut c, json!({"body":{},"retryOnConflict":"x","force":"y"})).await;
    assert_eq!(
        r["error"]["message"],
        "Wrong type for argument \"retryOnConflict\" (expected: integer)"
    );
    let r = update(&mut c, json!({"body":{},"force":"y"})).await;
    assert_eq!(
        r["error"]["message"],
        "Wrong type for argument \"force\" (expected: boolean)"
    );
    assert_unchanged(&mut c, &original).await;
    // 29, 31, 36: accepted values.
    for extra in [
        json!({"refresh":"wait_for"}),
        json!({"refresh":"false"}),
        json!({"refresh":false}),
        json!({"retryOnConflict":0}),
        json!({"retryOnConflict":100}),
        json!({"verb":"POST","foo":1}),
    ] {
        let mut req = extra.clone();
        req["body"] = json!({});
        let r = update(&mut c, req).await;
        assert_eq!(r["status"], 200, "{extra}: {r}");
    }
}

#[tokio::test]
async fn update_profile_cases_37_to_48_policies_and_rate_limit() {
    let (_s, mut c, original) = setup().await;
    let cases: Vec<(Value, &str, u16, &str)> = vec![
        (
            json!({"policies":{"roleId":"editor"}}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies\" (expected: object[])",
        ),
        (
            json!({"policies":null}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies\" (expected: object[])",
        ),
        (
            json!({"policies":"admin"}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies\" (expected: object[])",
        ),
        (
            json!({"policies":[]}),
            "api.assert.empty_argument",
            400,
            "The argument \"editors.policies\" is empty.",
        ),
        (
            json!({"policies":[null]}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0]\" (expected: object)",
        ),
        (
            json!({"policies":["admin"]}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0]\" (expected: object)",
        ),
        (
            json!({"policies":[{"roleId":"editor"},{"restrictedTo":[]}]}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"editors.policies[1].roleId\".",
        ),
        (
            json!({"policies":[{"roleId":""}]}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"editors.policies[0].roleId\".",
        ),
        (
            json!({"policies":[{"roleId":5}]}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].roleId\" (expected: string)",
        ),
        (
            json!({"policies":[{"roleId":"ghost"}]}),
            "security.role.not_found",
            404,
            "Role \"ghost\" not found.",
        ),
        (
            json!({"policies":[{"roleId":"editor"},{"roleId":"g1"},{"roleId":"g2"}]}),
            "security.role.not_found",
            404,
            "Role \"g1\" not found.",
        ),
        (
            json!({"policies":[{"roleId":"ghost"},null]}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[1]\" (expected: object)",
        ),
        (
            json!({"rateLimit":-1,"policies":[{"roleId":"ghost"}]}),
            "security.role.not_found",
            404,
            "Role \"ghost\" not found.",
        ),
        (
            json!({"rateLimit":"3"}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"rateLimit\" (expected: integer)",
        ),
        (
            json!({"rateLimit":1.5}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"rateLimit\" (expected: integer)",
        ),
        (
            json!({"rateLimit":true}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"rateLimit\" (expected: integer)",
        ),
        (
            json!({"rateLimit":[]}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"rateLimit\" (expected: integer)",
        ),
        (
            json!({"rateLimit":9007199254740992u64}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"rateLimit\" (expected: integer)",
        ),
        (
            json!({"rateLimit":-1}),
            "api.assert.invalid_argument",
            400,
            "Invalid argument \"rateLimit\". Expected: positive integer, or zero",
        ),
    ];
    for (body, id, status, message) in cases {
        let r = update_body(&mut c, body.clone()).await;
        assert_error(&r, id, status, message);
    }
    assert_unchanged(&mut c, &original).await;
    // 48: null → 0, 0, 5.0 → 5.
    for (value, stored) in [(Value::Null, 0), (json!(0), 0), (json!(5.0), 5)] {
        let r = update_body(&mut c, json!({ "rateLimit": value })).await;
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(source(&r)["rateLimit"], stored);
        assert!(
            get(&mut c, "editors")
                .await
                .to_string()
                .contains(&format!("\"rateLimit\":{stored},"))
        );
    }
}

#[tokio::test]
async fn update_profile_cases_49_to_58_shapes_and_anonymous() {
    let (_s, mut c, original) = setup().await;
    let p = |r: Value| json!({"policies":[{"roleId":"editor","restrictedTo":r}]});
    let cases: Vec<(Value, Value, &str, u16, &str)> = vec![
        (
            json!({"policies":[{"roleId":"editor","foo":1}]}),
            json!({}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"editors.policies[0].foo\" (accepted arguments: \"roleId\", \"restrictedTo\")",
        ),
        (
            p(json!("nyc")),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo\" (expected: object[])",
        ),
        (
            p(json!(false)),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo\" (expected: object[])",
        ),
        (
            p(json!(["nyc"])),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo[0]\" (expected: object)",
        ),
        (
            p(json!([{"collections":["taxi"]}])),
            json!({}),
            "api.assert.missing_argument",
            400,
            "Missing argument \"editors.policies[0].restrictedTo[0].index\".",
        ),
        (
            p(json!([{"index":5}])),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo[0].index\" (expected: string)",
        ),
        (
            p(json!([{"index":"nyc","collections":"taxi"}])),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo[0].collections\" (expected: string[])",
        ),
        (
            p(json!([{"index":"nyc","collections":["taxi",1]}])),
            json!({}),
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"editors.policies[0].restrictedTo[0].collections\" (expected: string[])",
        ),
        (
            p(json!([{"index":"nyc"},{"index":"mtp","x":1}])),
            json!({}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"editors.policies[0].restrictedTo[1].x\" (accepted arguments: \"index\", \"collections\")",
        ),
        (
            p(json!([{"index":"ghost","x":1}])),
            json!({}),
            "services.storage.unknown_index",
            412,
            "The index \"ghost\" does not exist.",
        ),
        (
            p(json!([{"index":"ghost","x":1}])),
            json!({"force":true}),
            "api.assert.unexpected_argument",
            400,
            "Unexpected argument \"editors.policies[0].restrictedTo[0].x\" (accepted arguments: \"index\", \"collections\")",
        ),
    ];
    for (body, extra, id, status, message) in cases {
        let mut req = extra;
        req["body"] = body;
        let r = update(&mut c, req).await;
        assert_error(&r, id, status, message);
    }
    assert_unchanged(&mut c, &original).await;
    // 57, 58: built-ins are updatable, but anonymous must keep the anonymous role.
    let r = update(
        &mut c,
        json!({"_id":"anonymous","body":{"policies":[{"roleId":"default"}]}}),
    )
    .await;
    assert_error(
        &r,
        "security.profile.missing_anonymous_role",
        400,
        "The anonymous profile must include the anonymous role",
    );
    let r = update(
        &mut c,
        json!({"_id":"anonymous","body":{"policies":[{"roleId":"anonymous"},{"roleId":"editor"}]}}),
    )
    .await;
    assert_eq!(r["status"], 200, "{r}");
    let r = update(&mut c, json!({"_id":"admin","body":{"rateLimit":100}})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(source(&r)["rateLimit"], 100);
}

#[tokio::test]
async fn update_profile_cases_63_64_concurrent_clients() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    fixture(&mut c).await;
    // 63: 20 clients, each adding its own key, with retries: nothing is lost.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = s.ws().await;
        tasks.push(tokio::spawn(async move {
            update(
                &mut client,
                json!({"body":{ format!("k{i}"): i },"retryOnConflict":100}),
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap_or_default();
        assert_eq!(r["status"], 200, "{r}");
    }
    let doc = get(&mut c, "editors").await;
    assert_eq!(doc["result"]["_version"], 21);
    for i in 0..20 {
        assert_eq!(doc["result"]["_source"][format!("k{i}")], i, "k{i} lost");
    }
    // 64: without retries, some fail, none is half-applied.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = s.ws().await;
        tasks.push(tokio::spawn(async move {
            (
                i,
                update(
                    &mut client,
                    json!({"body":{ format!("z{i}"): i },"retryOnConflict":0}),
                )
                .await,
            )
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap_or_default();
        match r["status"].as_u64() {
            Some(200) => ok.push(i),
            Some(500) => assert_error(
                &r,
                "services.storage.too_many_changes",
                500,
                "Unable to modify document \"editors\": cluster sync failed (too many simultaneous changes applied)",
            ),
            _ => panic!("unexpected {r}"),
        }
    }
    let doc = get(&mut c, "editors").await;
    assert_eq!(doc["result"]["_version"], 21 + ok.len() as u64);
    for i in 0..20 {
        let present = doc["result"]["_source"].get(format!("z{i}")).is_some();
        assert_eq!(present, ok.contains(&i), "z{i}");
    }
}

#[tokio::test]
async fn update_profile_over_http_case_65_exact_response() {
    let (s, mut c, _) = setup().await;
    let body = br#"{"rateLimit":20,"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc","collections":["taxi","bus"]}]}]}"#;
    assert_eq!(body.len(), 111);
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/editors/_update?refresh=wait_for&retryOnConflict=3",
        &[
            ("Content-Type", "application/json"),
            ("X-Kuzzle-Request-Id", "req-42"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    let (masked, _) = mask_number(&r.text(), "createdAt");
    let (masked, _) = mask_number(&masked, "updatedAt");
    assert_eq!(
        masked,
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"req-42","result":{{"_id":"editors","_version":2,"_source":{{"policies":[{{"roleId":"editor","restrictedTo":[{{"index":"nyc","collections":["taxi","bus"]}}]}}],"rateLimit":20,"tags":["staff"],"_kuzzle_info":{{"author":null,"createdAt":X,"updatedAt":X,"updater":null}}}}}},"status":200,"volatile":null}}"#
        )
    );
    assert_eq!(r.header("x-kuzzle-request-id"), Some("req-42"));
    // §11.2's failure.
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/editors/_update",
        &[
            ("Content-Type", "application/json"),
            ("X-Kuzzle-Request-Id", "req-43"),
        ],
        br#"{"policies":[{"roleId":"editor","restrictedTo":[{"index":"ghost"}]}]}"#,
    )
    .await;
    assert_eq!(r.status_line, "HTTP/1.1 412 Precondition Failed");
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"updateProfile","controller":"security","error":{{"code":16842753,"id":"services.storage.unknown_index","message":"The index \"ghost\" does not exist.","props":["ghost"],"status":412}},"headers":{{}},"node":"{NODE}","requestId":"req-43","result":null,"status":412,"volatile":null}}"#
        )
    );
    assert_eq!(r.body.len(), 296);
    assert_eq!(get(&mut c, "editors").await["result"]["_version"], 2);
}

#[tokio::test]
async fn update_profile_over_http_query_typing() {
    let (s, mut c, original) = setup().await;
    let ghost = br#"{"policies":[{"roleId":"editor","restrictedTo":[{"index":"ghost"}]}]}"#;
    let put = |q: &'static str, body: &'static [u8]| {
        let addr = s.addr;
        async move {
            http_once(
                addr,
                "PUT",
                &format!("/profiles/editors/_update{q}"),
                &[],
                body,
            )
            .await
            .json()
        }
    };
    // 16, 17, 30, 33: refused, nothing written.
    for q in ["?force=false", "?force=0"] {
        assert_eq!(
            put(q, ghost).await["error"]["id"],
            "services.storage.unknown_index",
            "{q}"
        );
    }
    let r = put("?force=yes", ghost).await;
    assert_error(
        &r,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"force\" (expected: boolean)",
    );
    let r = put("?refresh=now", b"{}").await;
    assert_error(
        &r,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"refresh\". Expected: \"wait_for\" or false",
    );
    for q in [
        "?retryOnConflict=3abc",
        "?retryOnConflict=1e3",
        "?retryOnConflict=",
        "?retryOnConflict=+3",
    ] {
        let r = put(q, b"{}").await;
        assert_error(
            &r,
            "api.assert.invalid_type",
            400,
            "Wrong type for argument \"retryOnConflict\" (expected: integer)",
        );
    }
    // 27: an empty body is "no body", not a parse error.
    let r = http_once(
        s.addr,
        "PUT",
        "/profiles/editors/_update",
        &[("Content-Type", "application/json")],
        b"",
    )
    .await;
    assert_error(
        &r.json(),
        "api.assert.body_required",
        400,
        "The request must specify a body.",
    );
    // 66: bad JSON is a bare error.
    let r = http_once(s.addr, "PUT", "/profiles/editors/_update", &[], b"{bad").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["id"], "network.http.body_parse_failed");
    assert!(r.json().get("action").is_none());
    // 67: /_query uses JSON typing.
    let r = http_once(s.addr, "POST", "/_query", &[], br#"{"controller":"security","action":"updateProfile","_id":"editors","body":{},"force":"true"}"#).await;
    assert_error(
        &r.json(),
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"force\" (expected: boolean)",
    );
    assert_unchanged(&mut c, &original).await;
    // 15, 29, 31: accepted.
    for q in ["?force", "?force=true", "?force=1"] {
        assert_eq!(put(q, ghost).await["status"], 200, "{q}");
    }
    for q in [
        "?refresh=false",
        "?refresh",
        "?refresh=wait_for",
        "?retryOnConflict=3",
    ] {
        assert_eq!(put(q, b"{}").await["status"], 200, "{q}");
    }
}

#[tokio::test]
async fn update_profile_case_68_survives_restart() {
    let s = TestServer::start().await;
    let dir = s.data_dir.clone();
    let mut c = s.ws().await;
    fixture(&mut c).await;
    let updated = update_body(&mut c, json!({"rateLimit":20})).await;
    assert_eq!(updated["result"]["_version"], 2);
    drop(c);
    assert!(s.stop().await);
    let s = TestServer::start_in(dir, |_| {}, vec![]).await;
    let mut c = s.ws().await;
    let doc = get(&mut c, "editors").await;
    assert_eq!(doc["result"], updated["result"]);
    let role = c
        .call(json!({"controller":"security","action":"getRole","_id":"editor"}))
        .await;
    assert_eq!(role["result"]["_version"], 1);
    let exists = c
        .call(json!({"controller":"collection","action":"exists","index":"nyc","collection":"bus"}))
        .await;
    assert_eq!(exists["result"], true);
    // The built-ins are not recreated over existing documents.
    let admin = get(&mut c, "admin").await;
    assert_eq!(admin["result"]["_version"], 1);
}
