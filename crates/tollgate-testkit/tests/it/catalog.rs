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
