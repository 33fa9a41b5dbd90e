//! The index/collection catalog, through real sockets.

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, http_once};

#[tokio::test]
async fn index_lifecycle_over_websocket() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    let r = c
        .call(json!({"controller":"index","action":"create","index":"nyc"}))
        .await;
    assert_eq!(r["status"], 200);
    assert_eq!(r["result"], Value::Null);
    assert!(r.as_object().is_some_and(|o| o.contains_key("result")));
    let r = c
        .call(json!({"controller":"index","action":"create","index":"nyc"}))
        .await;
    assert_eq!(r["error"]["id"], "services.storage.index_already_exists");
    assert_eq!(
        r["error"]["message"],
        "A public index named \"nyc\" already exists"
    );
    assert_eq!(r["status"], 412);
    assert_eq!(
        c.call_text(r#"{"controller":"index","action":"create","index":"Nyc","requestId":"r2"}"#)
            .await,
        format!(
            r#"{{"action":"create","controller":"index","error":{{"code":16842793,"id":"services.storage.invalid_index_name","message":"The index name \"Nyc\" is invalid","props":["Nyc"],"status":400}},"headers":{{}},"index":"Nyc","node":"{NODE}","requestId":"r2","result":null,"status":400,"volatile":null,"room":"r2"}}"#
        )
    );
    for index in [json!(null), json!("")] {
        let r = c
            .call(json!({"controller":"index","action":"create","index":index}))
            .await;
        assert_eq!(r["error"]["message"], "Missing argument \"index\".");
    }
    assert_eq!(
        c.call(json!({"controller":"index","action":"exists","index":"nyc"}))
            .await["result"],
        true
    );
    assert_eq!(
        c.call(json!({"controller":"index","action":"exists","index":"paris"}))
            .await["result"],
        false
    );
    assert_eq!(
        c.call(json!({"controller":"index","action":"exists","index":"Bad*"}))
            .await["result"],
        false
    );
    for (index, collection) in [("nyc", "taxi"), ("nyc", "bus"), ("mtp", "tram")] {
        let r = c.call(json!({"controller":"collection","action":"create","index":index,"collection":collection})).await;
        assert_eq!(r["result"], json!({"acknowledged":true}), "{r}");
    }
    // Creating an existing collection succeeds.
    let r = c.call(json!({"controller":"collection","action":"create","index":"nyc","collection":"taxi","body":{"mappings":{}}})).await;
    assert_eq!(r["status"], 200);
    let r = c
        .call(
            json!({"controller":"collection","action":"create","index":"nyc","collection":"Taxi"}),
        )
        .await;
    assert_eq!(r["error"]["id"], "services.storage.invalid_collection_name");
    assert_eq!(
        r["error"]["message"],
        "The collection name \"Taxi\" is invalid"
    );
    let r = c.call(json!({"controller":"index","action":"list"})).await;
    assert_eq!(r["result"], json!({"indexes":["mtp","nyc"]}));
    let r = c
        .call(json!({"controller":"index","action":"list","countCollection":true}))
        .await;
    assert_eq!(
        r["result"],
        json!({"indexes":["mtp","nyc"],"collections":{"mtp":1,"nyc":2}})
    );
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc"}))
        .await;
    assert_eq!(
        r["result"].to_string(),
        r#"{"collections":[{"name":"bus","type":"stored"},{"name":"taxi","type":"stored"}],"type":"all"}"#
    );
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc","from":1}))
        .await;
    assert_eq!(
        r["result"].to_string(),
        r#"{"collections":[{"name":"taxi","type":"stored"}],"type":"all","from":1}"#
    );
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc","size":1}))
        .await;
    assert_eq!(
        r["result"].to_string(),
        r#"{"collections":[{"name":"bus","type":"stored"}],"type":"all","from":0,"size":1}"#
    );
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc","type":"realtime"}))
        .await;
    assert_eq!(r["result"], json!({"collections":[],"type":"realtime"}));
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc","type":"x"}))
        .await;
    assert_eq!(r["error"]["id"], "api.assert.invalid_argument");
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"ghost"}))
        .await;
    assert_eq!(r["error"]["message"], "The index \"ghost\" does not exist.");
    assert_eq!(
        c.call(
            json!({"controller":"collection","action":"exists","index":"nyc","collection":"bus"})
        )
        .await["result"],
        true
    );
    assert_eq!(
        c.call(
            json!({"controller":"collection","action":"exists","index":"nyc","collection":"tram"})
        )
        .await["result"],
        false
    );
    // Deleting an index removes its collections.
    let r = c
        .call(json!({"controller":"index","action":"delete","index":"nyc"}))
        .await;
    assert_eq!(r["result"], json!({"acknowledged":true}));
    assert_eq!(
        c.call(
            json!({"controller":"collection","action":"exists","index":"nyc","collection":"bus"})
        )
        .await["result"],
        false
    );
    let r = c
        .call(json!({"controller":"index","action":"delete","index":"nyc"}))
        .await;
    assert_eq!(r["error"]["id"], "services.storage.unknown_index");
    assert_eq!(r["status"], 412);
    let r = c
        .call(json!({"controller":"collection","action":"create","index":"nyc","collection":"bus"}))
        .await;
    assert_eq!(r["status"], 200);
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc"}))
        .await;
    assert_eq!(
        r["result"]["collections"],
        json!([{"name":"bus","type":"stored"}])
    );
}

#[tokio::test]
async fn index_routes_over_http() {
    let s = TestServer::start().await;
    let r = http_once(s.addr, "POST", "/nyc/_create", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["index"], "nyc");
    assert_eq!(
        http_once(s.addr, "PUT", "/nyc/taxi", &[], b"").await.json()["result"],
        json!({"acknowledged":true})
    );
    assert_eq!(
        http_once(s.addr, "GET", "/nyc/_exists", &[], b"")
            .await
            .json()["result"],
        true
    );
    assert_eq!(
        http_once(s.addr, "GET", "/nyc/taxi/_exists", &[], b"")
            .await
            .json()["result"],
        true
    );
    let r = http_once(s.addr, "GET", "/nyc/taxi/_exists", &[], b"")
        .await
        .json();
    assert_eq!(r["collection"], "taxi");
    assert_eq!(
        http_once(s.addr, "GET", "/_list?countCollection", &[], b"")
            .await
            .json()["result"],
        json!({"indexes":["nyc"],"collections":{"nyc":1}})
    );
    assert_eq!(
        http_once(s.addr, "GET", "/nyc/_list?size=0&from=0", &[], b"")
            .await
            .json()["result"],
        json!({"collections":[{"name":"taxi","type":"stored"}],"type":"all"})
    );
    let r = http_once(s.addr, "GET", "/nyc/_list?from=x", &[], b"")
        .await
        .json();
    assert_eq!(
        r["error"]["message"],
        "Wrong type for argument \"from\" (expected: integer)"
    );
    assert_eq!(
        http_once(s.addr, "DELETE", "/nyc", &[], b"").await.json()["result"],
        json!({"acknowledged":true})
    );
    // Reserved routes do not fall into `DELETE /:index`.
    let r = http_once(s.addr, "DELETE", "/ms", &[], b"").await.json();
    assert_eq!(r["error"]["id"], "api.process.controller_not_found");
}

#[tokio::test]
async fn deleting_an_index_leaves_profiles_unchanged() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    assert_eq!(
        c.call(json!({"controller":"index","action":"create","index":"nyc"}))
            .await["status"],
        200
    );
    let r = c.call(json!({"controller":"security","action":"createProfile","_id":"p","body":{"policies":[{"roleId":"default","restrictedTo":[{"index":"nyc"}]}]}})).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        c.call(json!({"controller":"index","action":"delete","index":"nyc"}))
            .await["status"],
        200
    );
    let r = c
        .call(json!({"controller":"security","action":"getProfile","_id":"p"}))
        .await;
    assert_eq!(
        r["result"]["_source"]["policies"],
        json!([{"roleId":"default","restrictedTo":[{"index":"nyc"}]}])
    );
    // An update that does not send policies still succeeds.
    let r = c.call(json!({"controller":"security","action":"updateProfile","_id":"p","body":{"rateLimit":3}})).await;
    assert_eq!(r["status"], 200, "{r}");
}

#[tokio::test]
async fn collection_delete_over_both_protocols() {
    let s = TestServer::start().await;
    let mut c = s.ws().await;
    for (index, collection) in [("nyc", "taxi"), ("nyc", "bus")] {
        let r = c.call(json!({"controller":"collection","action":"create","index":index,"collection":collection})).await;
        assert_eq!(r["status"], 200, "{r}");
    }
    assert_eq!(
        c.call_text(r#"{"controller":"collection","action":"delete","index":"nyc","collection":"taxi","requestId":"d1"}"#)
            .await,
        format!(
            r#"{{"action":"delete","collection":"taxi","controller":"collection","error":null,"headers":{{}},"index":"nyc","node":"{NODE}","requestId":"d1","result":null,"status":200,"volatile":null,"room":"d1"}}"#
        )
    );
    assert_eq!(
        c.call_text(r#"{"controller":"collection","action":"delete","index":"nyc","collection":"taxi","requestId":"d2"}"#)
            .await,
        format!(
            r#"{{"action":"delete","collection":"taxi","controller":"collection","error":{{"code":16842754,"id":"services.storage.unknown_collection","message":"The collection \"nyc\":\"taxi\" does not exist.","props":["nyc","taxi"],"status":412}},"headers":{{}},"index":"nyc","node":"{NODE}","requestId":"d2","result":null,"status":412,"volatile":null,"room":"d2"}}"#
        )
    );
    let r = c
        .call(
            json!({"controller":"collection","action":"delete","index":"ghost","collection":"bus"}),
        )
        .await;
    assert_eq!(r["error"]["id"], "services.storage.unknown_index", "{r}");
    assert_eq!(r["error"]["message"], "The index \"ghost\" does not exist.");
    let r = c
        .call(json!({"controller":"collection","action":"delete","index":"nyc"}))
        .await;
    assert_eq!(r["error"]["message"], "Missing argument \"collection\".");
    // The other collection and the index are still there.
    let r = c
        .call(json!({"controller":"collection","action":"list","index":"nyc"}))
        .await;
    assert_eq!(
        r["result"]["collections"],
        json!([{"name":"bus","type":"stored"}])
    );

    let r = http_once(
        s.addr,
        "DELETE",
        "/nyc/bus",
        &[("X-Kuzzle-Request-Id", "h1")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"action":"delete","collection":"bus","controller":"collection","error":null,"headers":{{}},"index":"nyc","node":"{NODE}","requestId":"h1","result":null,"status":200,"volatile":null}}"#
        )
    );
    let r = http_once(s.addr, "DELETE", "/nyc/bus", &[], b"").await;
    assert_eq!(r.status, 412);
    assert_eq!(
        r.json()["error"]["id"],
        "services.storage.unknown_collection"
    );
    assert_eq!(
        http_once(s.addr, "GET", "/nyc/bus/_exists", &[], b"")
            .await
            .json()["result"],
        false
    );
    assert_eq!(
        http_once(s.addr, "GET", "/nyc/_exists", &[], b"")
            .await
            .json()["result"],
        true
    );
}

#[tokio::test]
async fn index_m_delete_skips_unknown_and_forbidden_indexes() {
    let s = TestServer::start_with(|c| c.limits.documents_write_count = 3, Vec::new()).await;
    let (mut c, admin) = tollgate_testkit::first_admin(&s).await;
    let call = |r: Value| with(r, &admin);
    for index in ["a", "b", "c", "d"] {
        let r = c
            .call(call(
                json!({"controller":"index","action":"create","index":index}),
            ))
            .await;
        assert_eq!(r["status"], 200, "{r}");
    }
    // A user allowed index:mDelete everywhere, index:delete on "a" only.
    for r in [
        json!({"controller":"security","action":"createRole","_id":"dropper","body":{"controllers":{"index":{"actions":{"mDelete":true,"delete":true}}}}}),
        json!({"controller":"security","action":"createRole","_id":"bulk","body":{"controllers":{"index":{"actions":{"mDelete":true}}}}}),
        json!({"controller":"security","action":"createProfile","_id":"dropper","body":{"policies":[{"roleId":"bulk"},{"roleId":"dropper","restrictedTo":[{"index":"a"}]}]}}),
        json!({"controller":"security","action":"createUser","_id":"dan","body":{"content":{"profileIds":["dropper"]},"credentials":{"local":{"username":"dan","password":"dan-pw"}}}}),
    ] {
        let r = c.call(call(r)).await;
        assert_eq!(r["status"], 200, "{r}");
    }
    let dan = tollgate_testkit::login_token(&s, "dan", "dan-pw").await;
    assert_eq!(
        c.call_text(
            &with(
                json!({"controller":"index","action":"mDelete","body":{"indexes":["b","ghost","a"]},"requestId":"m1"}),
                &dan
            )
            .to_string()
        )
        .await,
        format!(
            r#"{{"action":"mDelete","controller":"index","error":null,"headers":{{}},"node":"{NODE}","requestId":"m1","result":{{"deleted":["a"]}},"status":200,"volatile":null,"room":"m1"}}"#
        )
    );
    let r = c
        .call(call(json!({"controller":"index","action":"list"})))
        .await;
    assert_eq!(r["result"], json!({"indexes":["b","c","d"]}));

    // The admin over HTTP, on both routes; a name listed twice is deleted once.
    let bearer = format!("Bearer {admin}");
    let auth = [("Authorization", bearer.as_str())];
    let r = http_once(
        s.addr,
        "DELETE",
        "/_mDelete",
        &auth,
        br#"{"indexes":["c","b","c"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], json!({"deleted":["b","c"]}));
    let r = http_once(
        s.addr,
        "DELETE",
        "/_mdelete",
        &auth,
        br#"{"indexes":["d"]}"#,
    )
    .await;
    assert_eq!(r.json()["result"], json!({"deleted":["d"]}));
    // No body, or no list: nothing deleted.
    let r = http_once(s.addr, "DELETE", "/_mDelete", &auth, b"").await;
    assert_eq!(r.json()["result"], json!({"deleted":[]}));

    for (body, id, message) in [
        (
            json!({"indexes":"a"}),
            "api.assert.invalid_type",
            "Wrong type for argument \"body.indexes\" (expected: array)",
        ),
        (
            json!({"indexes":["a",1]}),
            "api.assert.invalid_type",
            "Wrong type for argument \"body.indexes\" (expected: string[])",
        ),
        (
            json!({"indexes":["a","b","c","d"]}),
            "services.storage.write_limit_exceeded",
            "The number of documents edited by this request exceeds the configured server limit.",
        ),
    ] {
        let r = c
            .call(call(
                json!({"controller":"index","action":"mDelete","body":body}),
            ))
            .await;
        assert_eq!(r["error"]["id"], id, "{r}");
        assert_eq!(r["error"]["message"], message);
    }
    // Without index:mDelete, the request itself is refused.
    let r = c
        .call(json!({"controller":"index","action":"mDelete","body":{"indexes":[]}}))
        .await;
    assert_eq!(r["error"]["id"], "security.rights.unauthorized", "{r}");
}

fn with(mut r: Value, jwt: &str) -> Value {
    r["jwt"] = json!(jwt);
    r
}
