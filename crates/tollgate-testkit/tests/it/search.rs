//! The security searches through real sockets: the query engine (each clause, sort, paging, the
//! precise 400s), scrolls (continuation, expiry, bounds), searchUsers and mGetUsers, rights.

use serde_json::{Value, json};
use tollgate_testkit::{TestServer, WsClient, first_admin, http_once};

async fn call(c: &mut WsClient, jwt: &str, action: &str, extra: Value) -> Value {
    let mut req = json!({"controller":"security","action":action,"jwt":jwt});
    if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    c.call(req).await
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

fn ids(result: &Value) -> Vec<String> {
    result["hits"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|x| x["_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Roles `editor`; profiles `editors` (editor, level 3, tags) and `mixed` (default + editor, level 1),
/// besides the built-in `admin`, `anonymous`, `default`.
async fn fixture(c: &mut WsClient, jwt: &str) {
    for (action, extra) in [
        (
            "createRole",
            json!({"_id":"editor","body":{"controllers":{"document":{"actions":{"get":true}}}}}),
        ),
        (
            "createProfile",
            json!({"_id":"editors","body":{"policies":[{"roleId":"editor"}],"level":3,"tags":["staff","eu"]}}),
        ),
        (
            "createProfile",
            json!({"_id":"mixed","body":{"policies":[{"roleId":"default"},{"roleId":"editor"}],"level":1}}),
        ),
    ] {
        ok(&call(c, jwt, action, extra).await);
    }
}

async fn search(c: &mut WsClient, jwt: &str, body: Value) -> Value {
    call(c, jwt, "searchProfiles", json!({ "body": body })).await
}

#[tokio::test]
async fn search_profiles_with_the_query_dsl() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    fixture(&mut c, &jwt).await;
    let get = async |c: &mut WsClient, id: &str| {
        ok(&call(c, &jwt, "getProfile", json!({ "_id": id })).await).clone()
    };
    let (default, mixed) = (get(&mut c, "default").await, get(&mut c, "mixed").await);
    // The SDK's documented example: every hit exactly as getProfile serializes it.
    let r = search(
        &mut c,
        &jwt,
        json!({"query":{"term":{"policies.roleId":"default"}}}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"hits":[default, mixed],"total":2}));
    // Each clause.
    for (query, expected) in [
        (
            json!({"match_all":{}}),
            vec!["admin", "anonymous", "default", "editors", "mixed"],
        ),
        (
            json!({}),
            vec!["admin", "anonymous", "default", "editors", "mixed"],
        ),
        (
            json!({"ids":{"values":["mixed","ghost","admin"]}}),
            vec!["admin", "mixed"],
        ),
        (
            json!({"terms":{"policies.roleId":["editor","anonymous"]}}),
            vec!["anonymous", "editors", "mixed"],
        ),
        (json!({"term":{"tags":"eu"}}), vec!["editors"]),
        (json!({"term":{"level":{"value":1}}}), vec!["mixed"]),
        (json!({"term":{"_id":"admin"}}), vec!["admin"]),
        (
            json!({"prefix":{"policies.roleId":"edit"}}),
            vec!["editors", "mixed"],
        ),
        (json!({"prefix":{"_id":{"value":"an"}}}), vec!["anonymous"]),
        (json!({"exists":{"field":"tags"}}), vec!["editors"]),
        (
            json!({"exists":{"field":"_kuzzle_info.createdAt"}}),
            vec!["admin", "anonymous", "default", "editors", "mixed"],
        ),
        (
            json!({"bool":{"must":[{"exists":{"field":"level"}}],"must_not":{"term":{"tags":"staff"}}}}),
            vec!["mixed"],
        ),
        (
            json!({"bool":{"filter":{"term":{"policies.roleId":"editor"}},"should":{"term":{"level":99}}}}),
            vec!["editors", "mixed"],
        ),
        // Only should clauses: one must match (Elasticsearch's default).
        (
            json!({"bool":{"should":[{"term":{"_id":"admin"}},{"term":{"level":3}}]}}),
            vec!["admin", "editors"],
        ),
        (
            json!({"bool":{"should":[{"term":{"policies.roleId":"editor"}},{"term":{"level":1}}],"minimum_should_match":2}}),
            vec!["mixed"],
        ),
        (
            json!({"bool":{"must":{"bool":{"should":[{"ids":{"values":["default"]}},{"term":{"level":3}}]}}}}),
            vec!["default", "editors"],
        ),
    ] {
        let r = search(&mut c, &jwt, json!({ "query": query })).await;
        assert_eq!(ids(ok(&r)), expected, "{query}");
        assert_eq!(r["result"]["total"], expected.len(), "{query}");
    }
    // Sort: by level descending (missing last), then by id; then paging.
    let body = json!({"sort":[{"level":{"order":"desc"}},"_id"]});
    let r = search(&mut c, &jwt, body.clone()).await;
    assert_eq!(
        ids(ok(&r)),
        ["editors", "mixed", "admin", "anonymous", "default"]
    );
    let r = call(
        &mut c,
        &jwt,
        "searchProfiles",
        json!({"body":body,"from":1,"size":2}),
    )
    .await;
    assert_eq!(ids(ok(&r)), ["mixed", "admin"]);
    assert_eq!(r["result"]["total"], 5);
    let r = search(&mut c, &jwt, json!({"sort":{"_id":"desc"}})).await;
    assert_eq!(ids(ok(&r))[0], "mixed");
    // The legacy `roles` filter is unchanged.
    let r = search(&mut c, &jwt, json!({"roles":["editor"]})).await;
    assert_eq!(ids(ok(&r)), ["editors", "mixed"]);
    // Precise refusals.
    let supported = "one of the clauses match_all, ids, term, terms, prefix, exists, bool";
    for (body, id, message) in [
        (
            json!({"query":{"bool":{"must":[{"term":{"a":1}},{"range":{"level":{"gt":1}}}]}}}),
            "api.assert.invalid_argument",
            format!("Invalid argument \"body.query.bool.must[1].range\". Expected: {supported}"),
        ),
        (
            json!({"query":{"match":{"tags":"eu"}}}),
            "api.assert.invalid_argument",
            format!("Invalid argument \"body.query.match\". Expected: {supported}"),
        ),
        (
            json!({"query":{"term":{"a":1},"ids":{"values":[]}}}),
            "api.assert.invalid_argument",
            format!("Invalid argument \"body.query\". Expected: an object with exactly {supported}"),
        ),
        (
            json!({"query":{"terms":{"policies.roleId":"editor"}}}),
            "api.assert.invalid_type",
            "Wrong type for argument \"body.query.terms.policies.roleId\" (expected: array)".to_owned(),
        ),
        (
            json!({"query":{"bool":{"must":{"exists":{}}}}}),
            "api.assert.missing_argument",
            "Missing argument \"body.query.bool.must.exists.field\".".to_owned(),
        ),
        (
            json!({"query":{"bool":{"should":[],"minimum":1}}}),
            "api.assert.unexpected_argument",
            "Unexpected argument \"body.query.bool.minimum\" (accepted arguments: \"must\", \"filter\", \"should\", \"must_not\", \"minimum_should_match\", \"boost\")".to_owned(),
        ),
        (
            json!({"sort":[{"level":"up"}]}),
            "api.assert.invalid_argument",
            "Invalid argument \"body.sort[0].level\". Expected: \"asc\" or \"desc\"".to_owned(),
        ),
        (
            json!({"aggs":{}}),
            "api.assert.unexpected_argument",
            "Unexpected argument \"body.aggs\" (accepted arguments: \"roles\", \"query\", \"sort\", \"search_after\")".to_owned(),
        ),
        (
            json!({"roles":["editor"],"query":{"match_all":{}}}),
            "api.assert.mutually_exclusive",
            "Arguments \"body.roles\" and \"body.query\" are mutually exclusive".to_owned(),
        ),
    ] {
        assert_error(&search(&mut c, &jwt, body).await, id, 400, &message);
    }
    // Bounds: nesting depth and clause count.
    let mut deep = json!({"match_all":{}});
    for _ in 0..10 {
        deep = json!({"bool":{"must":deep}});
    }
    let r = search(&mut c, &jwt, json!({ "query": deep })).await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_argument", "{r}");
    assert_eq!(r["error"]["props"][1], "at most 10 nested query clauses");
    let many: Vec<Value> = (0..300).map(|i| json!({"term":{"level":i}})).collect();
    let r = search(&mut c, &jwt, json!({"query":{"bool":{"should":many}}})).await;
    assert_error(
        &r,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"body.query.bool.should[255]\". Expected: at most 256 clauses in a query",
    );
    // searchRoles takes the same query language, with its `controllers` filter.
    let r = call(
        &mut c,
        &jwt,
        "searchRoles",
        json!({"body":{"query":{"exists":{"field":"controllers.document"}}}}),
    )
    .await;
    assert_eq!(ids(ok(&r)), ["editor"]);
}

#[tokio::test]
async fn scroll_profiles_continues_then_expires() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    fixture(&mut c, &jwt).await;
    let r = call(
        &mut c,
        &jwt,
        "searchProfiles",
        json!({"size":2,"scroll":"30s"}),
    )
    .await;
    assert_eq!(ids(ok(&r)), ["admin", "anonymous"]);
    assert_eq!(r["result"]["total"], 5);
    let scroll_id = r["result"]["scrollId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!scroll_id.is_empty(), "{r}");
    // A snapshot: a profile deleted meanwhile is still served.
    ok(&call(&mut c, &jwt, "deleteProfile", json!({"_id":"mixed"})).await);
    let next = async |c: &mut WsClient, extra: Value| {
        let mut args = json!({ "scrollId": scroll_id });
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        call(c, &jwt, "scrollProfiles", args).await
    };
    let r = next(&mut c, json!({})).await;
    assert_eq!(ids(ok(&r)), ["default", "editors"]);
    assert_eq!(r["result"]["scrollId"], scroll_id.as_str());
    assert_eq!(r["result"]["total"], 5);
    let r = next(&mut c, json!({"scroll":"10s"})).await;
    assert_eq!(ids(ok(&r)), ["mixed"]);
    // The last page closes the cursor.
    assert_error(
        &next(&mut c, json!({})).await,
        "services.storage.unknown_scroll_id",
        404,
        "Non-existing or expired scroll identifier.",
    );
    // Expiry.
    let r = call(
        &mut c,
        &jwt,
        "searchProfiles",
        json!({"size":1,"scroll":"300ms"}),
    )
    .await;
    let short = r["result"]["scrollId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_error(
        &call(&mut c, &jwt, "scrollProfiles", json!({ "scrollId": short })).await,
        "services.storage.unknown_scroll_id",
        404,
        "Non-existing or expired scroll identifier.",
    );
    // A profile cursor is not a user cursor.
    let r = call(
        &mut c,
        &jwt,
        "searchProfiles",
        json!({"size":1,"scroll":"1m"}),
    )
    .await;
    let profiles = r["result"]["scrollId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        call(&mut c, &jwt, "scrollUsers", json!({ "scrollId": profiles })).await["error"]["id"],
        "services.storage.unknown_scroll_id"
    );
    // Bounded lifetime (Kuzzle's maxScrollDuration, 1m by default), checked arguments.
    assert_error(
        &call(&mut c, &jwt, "searchProfiles", json!({"scroll":"2m"})).await,
        "services.storage.scroll_duration_too_great",
        400,
        "Scroll duration \"2m\" is too great.",
    );
    assert_error(
        &call(
            &mut c,
            &jwt,
            "scrollProfiles",
            json!({"scrollId": profiles, "scroll":"1h"}),
        )
        .await,
        "services.storage.scroll_duration_too_great",
        400,
        "Scroll duration \"1h\" is too great.",
    );
    assert_error(
        &call(&mut c, &jwt, "searchProfiles", json!({"scroll":"soon"})).await,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"scroll\". Expected: a time to live such as \"30s\" or \"1m\"",
    );
    assert_error(
        &call(&mut c, &jwt, "searchProfiles", json!({"scroll":30})).await,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"scroll\" (expected: string)",
    );
    assert_error(
        &call(&mut c, &jwt, "scrollProfiles", json!({})).await,
        "api.assert.missing_argument",
        400,
        "Missing argument \"scrollId\".",
    );
    // searchRoles has no scroll (Kuzzle has no scrollRoles).
    assert_eq!(
        call(&mut c, &jwt, "searchRoles", json!({"scroll":"1m"})).await["error"]["id"],
        "api.assert.unexpected_argument"
    );
}

#[tokio::test]
async fn search_scroll_and_mget_users_over_http_and_ws() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    for (id, profiles, name, age) in [
        ("u1", json!(["default"]), "Ann", 31),
        ("u2", json!(["default", "admin"]), "Bob", 25),
        ("u3", json!(["anonymous"]), "Cid", 40),
        ("u4", json!(["default"]), "Dee", 25),
    ] {
        ok(&call(
            &mut c,
            &jwt,
            "createUser",
            json!({"_id":id,"body":{"content":{"profileIds":profiles,"name":name,"age":age,
                "address":{"city": if age == 25 { "Lyon" } else { "Paris" }}}}}),
        )
        .await);
    }
    let get = async |c: &mut WsClient, id: &str| {
        ok(&call(c, &jwt, "getUser", json!({ "_id": id })).await).clone()
    };
    let (u1, u2, u4) = (
        get(&mut c, "u1").await,
        get(&mut c, "u2").await,
        get(&mut c, "u4").await,
    );
    let auth = format!("Bearer {jwt}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // HTTP: a query, a sort, paging; hits exactly as getUser serializes them.
    let r = http_once(
        s.addr,
        "POST",
        "/users/_search?from=0&size=2",
        &headers,
        br#"{"query":{"bool":{"filter":{"term":{"profileIds":"default"}},"must_not":{"term":{"address.city":"Paris"}}}},"sort":[{"age":"asc"},{"name":"desc"}]}"#,
    )
    .await
    .json();
    assert_eq!(r["result"], json!({"hits":[u4, u2],"total":2}), "{r}");
    let r = call(
        &mut c,
        &jwt,
        "searchUsers",
        json!({"body":{"query":{"prefix":{"name":"B"}}}}),
    )
    .await;
    assert_eq!(ids(ok(&r)), ["u2"]);
    // Every stored user (root, u1..u4), not the anonymous one.
    let r = call(&mut c, &jwt, "searchUsers", json!({"from":3})).await;
    assert_eq!(ids(ok(&r)), ["u3", "u4"]);
    assert_eq!(r["result"]["total"], 5);
    assert_error(
        &call(
            &mut c,
            &jwt,
            "searchUsers",
            json!({"body":{"query":{"range":{"age":{"gte":30}}}}}),
        )
        .await,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"body.query.range\". Expected: one of the clauses match_all, ids, term, terms, prefix, exists, bool",
    );
    assert_error(
        &call(&mut c, &jwt, "searchUsers", json!({"from":9995,"size":10})).await,
        "api.assert.invalid_argument",
        400,
        "Invalid argument \"from\". Expected: an offset such that from + size is at most 10000",
    );
    // Scroll over HTTP.
    let r = http_once(
        s.addr,
        "POST",
        "/users/_search?size=2&scroll=30s",
        &headers,
        br#"{"query":{"terms":{"profileIds":["default"]}}}"#,
    )
    .await
    .json();
    assert_eq!(ids(&r["result"]), ["u1", "u2"], "{r}");
    assert_eq!(r["result"]["total"], 3);
    let scroll_id = r["result"]["scrollId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/users/_scroll/{scroll_id}?scroll=5s");
    let r = http_once(s.addr, "GET", &path, &headers, b"").await.json();
    assert_eq!(
        r["result"],
        json!({"hits":[u4],"scrollId":scroll_id,"total":3}),
        "{r}"
    );
    let r = http_once(s.addr, "GET", &path, &headers, b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["id"],
        "services.storage.unknown_scroll_id"
    );
    // mGetUsers: unknown ids are left out, request order kept.
    let r = call(
        &mut c,
        &jwt,
        "mGetUsers",
        json!({"body":{"ids":["u2","ghost","u1"]}}),
    )
    .await;
    assert_eq!(*ok(&r), json!({"hits":[u2.clone(), u1.clone()]}));
    let r = http_once(s.addr, "GET", "/users/_mGet?ids=u1,u2", &headers, b"")
        .await
        .json();
    assert_eq!(r["result"], json!({"hits":[u1, u2]}), "{r}");
    let r = http_once(
        s.addr,
        "POST",
        "/users/_mGet",
        &headers,
        br#"{"ids":["ghost"]}"#,
    )
    .await
    .json();
    assert_eq!(r["result"], json!({"hits":[]}), "{r}");
    assert_error(
        &call(&mut c, &jwt, "mGetUsers", json!({})).await,
        "api.assert.missing_argument",
        400,
        "Missing argument \"ids\".",
    );
    assert_error(
        &call(&mut c, &jwt, "mGetUsers", json!({"body":{"ids":"u1"}})).await,
        "api.assert.invalid_type",
        400,
        "Wrong type for argument \"body.ids\" (expected: array)",
    );
    // Rights: denied without them.
    let r = http_once(s.addr, "GET", "/users/_mGet?ids=u1", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["id"], "security.rights.unauthorized");
    let r = http_once(
        s.addr,
        "POST",
        "/users/_search",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn search_after_pages_by_the_sort_values() {
    let s = TestServer::start().await;
    let (mut c, jwt) = first_admin(&s).await;
    fixture(&mut c, &jwt).await;
    let sort = json!([{"level":"desc"},"_id"]);
    // Pages of one, each starting after the sort values of the previous page's last hit, as the
    // SDK's SearchResult.next() sends them; `total` counts every match.
    let mut after = Value::Null;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let mut body = json!({"sort": sort});
        if !after.is_null() {
            body["search_after"] = after.clone();
        }
        let r = call(
            &mut c,
            &jwt,
            "searchProfiles",
            json!({"size":1,"body":body}),
        )
        .await;
        let result = ok(&r);
        assert_eq!(result["total"], 5, "{r}");
        let Some(hit) = result["hits"].get(0) else {
            break;
        };
        seen.push(hit["_id"].as_str().unwrap_or_default().to_owned());
        after = json!([hit["_source"]["level"], hit["_id"]]);
    }
    assert_eq!(seen, ["editors", "mixed", "admin", "anonymous", "default"]);

    // Over HTTP, on users: the bytes of a page.
    for (id, age) in [("a", 30), ("b", 20), ("c", 30)] {
        let r = call(
            &mut c,
            &jwt,
            "createUser",
            json!({"_id":id,"body":{"content":{"profileIds":["default"],"age":age}}}),
        )
        .await;
        ok(&r);
    }
    let bearer = format!("Bearer {jwt}");
    let r = http_once(
        s.addr,
        "POST",
        "/users/_search?size=1",
        &[("Authorization", &bearer)],
        br#"{"query":{"exists":{"field":"age"}},"sort":[{"age":"asc"},"_id"],"search_after":[30,"a"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    assert_eq!(page["result"]["total"], 3);
    assert_eq!(ids(&page["result"]), ["c"]);

    for (extra, message) in [
        (
            json!({"body":{"sort":["_id"],"search_after":["a","b"]}}),
            "Invalid argument \"body.search_after\". Expected: an array with one value per body.sort key",
        ),
        (
            json!({"body":{"search_after":["a"]}}),
            "Invalid argument \"body.search_after\". Expected: an array with one value per body.sort key",
        ),
        (
            json!({"from":1,"body":{"sort":["_id"],"search_after":["a"]}}),
            "Invalid argument \"body.search_after\". Expected: no scroll and from 0 (search_after pages by the sort values)",
        ),
        (
            json!({"scroll":"5s","body":{"sort":["_id"],"search_after":["a"]}}),
            "Invalid argument \"body.search_after\". Expected: no scroll and from 0 (search_after pages by the sort values)",
        ),
    ] {
        let r = call(&mut c, &jwt, "searchUsers", extra).await;
        assert_error(&r, "api.assert.invalid_argument", 400, message);
    }
    // Searches that do not page this way refuse it.
    let r = call(
        &mut c,
        &jwt,
        "searchAuditLog",
        json!({"body":{"sort":["_id"],"search_after":["a"]}}),
    )
    .await;
    assert_eq!(r["error"]["id"], "api.assert.unexpected_argument", "{r}");
}
