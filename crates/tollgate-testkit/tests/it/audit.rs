//! The audit trail (`docs/api/security.md` §7): every security and catalog write recorded once, in
//! the same transaction, with its author, versions and diff; the history of a profile or role;
//! readable with its own rights only; never a password hash. Through real sockets.

use serde_json::{Value, json};
use tollgate_testkit::{TestServer, WsClient, first_admin, login_token};

async fn call(c: &mut WsClient, jwt: &str, controller: &str, action: &str, extra: Value) -> Value {
    let mut r = json!({"controller":controller,"action":action,"jwt":jwt});
    if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c.call(r).await
}

async fn login(s: &TestServer, user: &str) -> String {
    login_token(s, user, &format!("{user}-pw")).await
}

/// The records of the audit log matching `filter`, without the fields that vary (`_id`, `at`).
async fn records(c: &mut WsClient, jwt: &str, filter: Value) -> Vec<Value> {
    let r = call(c, jwt, "security", "searchAuditLog", filter).await;
    assert_eq!(r["status"], 200, "{r}");
    r["result"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut h| {
            let mut s = h["_source"].take();
            assert!(
                s["at"].as_u64().is_some_and(|at| at > 1_700_000_000_000),
                "{s}"
            );
            s["at"] = Value::Null;
            if let Some(doc) = s["document"].as_object_mut() {
                doc.remove("_kuzzle_info");
            }
            s
        })
        .collect()
}

#[tokio::test]
async fn every_write_is_recorded_once_with_its_author_and_diff() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    let ok = async |c: &mut WsClient, action: &str, extra: Value| {
        let r = call(c, &jwt, "security", action, extra).await;
        assert_eq!(r["status"], 200, "{action}: {r}");
    };
    ok(
        &mut c,
        "createRole",
        json!({"_id":"r","body":{"controllers":{"server":{"actions":{"now":true}}}}}),
    )
    .await;
    ok(
        &mut c,
        "createProfile",
        json!({"_id":"p","body":{"policies":[{"roleId":"r"}]}}),
    )
    .await;
    ok(
        &mut c,
        "updateProfile",
        json!({"_id":"p","body":{"rateLimit":5}}),
    )
    .await;
    ok(
        &mut c,
        "updateProfile",
        json!({"_id":"p","body":{"policies":[{"roleId":"default"}]}}),
    )
    .await;
    // A write that fails is rolled back with its record: p exists already.
    let r = call(
        &mut c,
        &jwt,
        "security",
        "createProfile",
        json!({"_id":"p","body":{"policies":[{"roleId":"r"}]}}),
    )
    .await;
    assert_eq!(
        r["error"]["id"], "services.storage.document_already_exists",
        "{r}"
    );
    ok(&mut c, "deleteProfile", json!({"_id":"p"})).await;

    let p = records(&mut c, &jwt, json!({"kind":"profile","target":"p"})).await;
    let rec = |action: &str, before: Value, after: Value, diff: Value, document: Value| {
        json!({"action":format!("security:{action}"),"at":null,"author":"root","diff":diff,
            "document":document,"kind":"profile","target":"p","versionAfter":after,"versionBefore":before})
    };
    assert_eq!(
        p,
        vec![
            rec(
                "createProfile",
                Value::Null,
                json!(1),
                json!({"added":{"/policies":[{"roleId":"r"}],"/rateLimit":0},"changed":{},"removed":{}}),
                json!({"policies":[{"roleId":"r"}],"rateLimit":0})
            ),
            rec(
                "updateProfile",
                json!(1),
                json!(2),
                json!({"added":{},"changed":{"/rateLimit":{"from":0,"to":5}},"removed":{}}),
                json!({"policies":[{"roleId":"r"}],"rateLimit":5})
            ),
            rec(
                "updateProfile",
                json!(2),
                json!(3),
                json!({"added":{},"changed":{"/policies":{"from":[{"roleId":"r"}],"to":[{"roleId":"default"}]}},"removed":{}}),
                json!({"policies":[{"roleId":"default"}],"rateLimit":5})
            ),
            rec(
                "deleteProfile",
                json!(3),
                Value::Null,
                json!({"added":{},"changed":{},"removed":{"/policies":[{"roleId":"default"}],"/rateLimit":5}}),
                Value::Null
            ),
        ]
    );

    // The history of the profile: every version in order.
    let r = call(
        &mut c,
        &jwt,
        "security",
        "getProfileHistory",
        json!({"_id":"p"}),
    )
    .await;
    let versions: Vec<(Value, Value, Value)> = r["result"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            (
                h["_version"].clone(),
                h["action"].clone(),
                h["_source"]["rateLimit"].clone(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!(1), json!("security:createProfile"), json!(0)),
            (json!(2), json!("security:updateProfile"), json!(5)),
            (json!(3), json!("security:updateProfile"), json!(5)),
            (Value::Null, json!("security:deleteProfile"), Value::Null),
        ],
        "{r}"
    );
    let r = call(
        &mut c,
        &jwt,
        "security",
        "getRoleHistory",
        json!({"_id":"r"}),
    )
    .await;
    assert_eq!(r["result"]["total"], 1, "{r}");

    // The first admin was created by anonymous; its credentials are recorded without any content.
    let root = records(&mut c, &jwt, json!({"target":"root"})).await;
    let kinds: Vec<(&str, &str)> = root
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["author"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("user", "-1"), ("credential", "-1")],
        "{root:?}"
    );
    assert_eq!(
        (&root[1]["document"], &root[1]["diff"]),
        (&Value::Null, &Value::Null)
    );

    // A user created with a password, and the catalog: recorded too; no hash anywhere.
    ok(
        &mut c,
        "createUser",
        json!({"_id":"u","body":{"content":{"profileIds":["default"]},
        "credentials":{"local":{"username":"u","password":"u-pw"}}}}),
    )
    .await;
    let r = call(&mut c, &jwt, "index", "create", json!({"index":"nyc"})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        records(&mut c, &jwt, json!({"kind":"index","target":"nyc"}))
            .await
            .len(),
        1
    );
    let all = call(
        &mut c,
        &jwt,
        "security",
        "searchAuditLog",
        json!({"size":1000}),
    )
    .await;
    let text = all.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("u-pw") && !text.contains("root-pw"),
        "{text}"
    );
    // Filters and paging.
    let by_root = records(
        &mut c,
        &jwt,
        json!({"author":"root","kind":"profile","from":1,"size":2}),
    )
    .await;
    assert_eq!(by_root.len(), 2);
    assert_eq!(by_root[0]["versionAfter"], 2);
    // The body takes a query and a sort, as every search does; the other arguments are checked alike.
    let deletes = records(
        &mut c,
        &jwt,
        json!({"body":{"query":{"term":{"action":"security:deleteProfile"}}}}),
    )
    .await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["target"], "p");
    let newest = records(
        &mut c,
        &jwt,
        json!({"kind":"profile","target":"p","size":1,"body":{"sort":[{"versionBefore":"desc"}]}}),
    )
    .await;
    assert_eq!(newest[0]["versionBefore"], 3);
    for (args, id) in [
        (json!({"lang":"sql"}), "api.assert.invalid_argument"),
        (json!({"scroll":"10s"}), "api.assert.unexpected_argument"),
        (json!({"since":-1}), "api.assert.invalid_argument"),
        (
            json!({"body":{"roles":["admin"]}}),
            "api.assert.unexpected_argument",
        ),
        (
            json!({"body":{"query":{"range":{"at":{"gt":0}}}}}),
            "api.assert.invalid_argument",
        ),
    ] {
        let r = call(&mut c, &jwt, "security", "searchAuditLog", args.clone()).await;
        assert_eq!(r["error"]["id"], id, "{args}: {r}");
    }

    // Only with its rights: a user of the default profile is refused.
    let u = login(&s, "u").await;
    let r = call(&mut c, &u, "security", "searchAuditLog", json!({})).await;
    assert_eq!(r["error"]["id"], "security.rights.forbidden", "{r}");
    let r = call(
        &mut c,
        &u,
        "security",
        "getProfileHistory",
        json!({"_id":"p"}),
    )
    .await;
    assert_eq!(r["error"]["id"], "security.rights.forbidden", "{r}");
}
