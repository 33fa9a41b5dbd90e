//! `security:exportUsers` through real sockets (`docs/api/users.md` §12.7).

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, first_admin, http_once};

async fn seeded() -> (TestServer, tollgate_testkit::WsClient, String) {
    let s = TestServer::start().await;
    let (mut c, admin) = first_admin(&s).await;
    for (id, content) in [
        (
            "alice",
            json!({"profileIds":["default"],"name":"Alice, A.","address":{"city":"Nyc"}}),
        ),
        (
            "bob",
            json!({"profileIds":["admin"],"name":"Bob \"B\"","age":41}),
        ),
    ] {
        let r = c
            .call(json!({"controller":"security","action":"createUser","_id":id,"jwt":admin,
                "body":{"content":content,"credentials":{"local":{"username":id,"password":format!("{id}-pw")}}}}))
            .await;
        assert_eq!(r["status"], 200, "{r}");
    }
    (s, c, admin)
}

#[tokio::test]
async fn export_users_as_jsonl_over_http_and_websocket() {
    let (s, mut c, admin) = seeded().await;
    let bearer = format!("Bearer {admin}");
    let r = http_once(
        s.addr,
        "GET",
        "/users/_export",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/x-ndjson; charset=utf-8")
    );
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"users.jsonl\"")
    );
    // Each user's `_source` as getUser answers it, `_kuzzle_info` included (creation times read
    // from the answer: the rest is compared byte for byte).
    let text = r.text();
    let created = created_at(&text);
    let expected = format!(
        concat!(
            "{{\"type\":\"users\"}}\n",
            "{{\"_id\":\"alice\",\"body\":{{\"profileIds\":[\"default\"],\"name\":\"Alice, A.\",\"address\":{{\"city\":\"Nyc\"}},\"_kuzzle_info\":{{\"author\":\"root\",\"createdAt\":{},\"updatedAt\":null,\"updater\":null}}}}}}\n",
            "{{\"_id\":\"bob\",\"body\":{{\"profileIds\":[\"admin\"],\"name\":\"Bob \\\"B\\\"\",\"age\":41,\"_kuzzle_info\":{{\"author\":\"root\",\"createdAt\":{},\"updatedAt\":null,\"updater\":null}}}}}}\n",
            "{{\"_id\":\"root\",\"body\":{{\"profileIds\":[\"admin\"],\"_kuzzle_info\":{{\"author\":null,\"createdAt\":{},\"updatedAt\":null,\"updater\":null}}}}}}\n",
        ),
        created[0], created[1], created[2]
    );
    assert_eq!(text, expected);
    let r = c
        .call(json!({"controller":"security","action":"getUser","_id":"bob","jwt":admin}))
        .await;
    assert_eq!(
        r["result"]["_source"],
        serde_json::from_str::<Value>(text.lines().nth(2).unwrap_or_default()).unwrap_or_default()
            ["body"]
    );
    // Never a credential: no password, no hash.
    assert!(!text.contains("-pw") && !text.contains("argon2"));
    // Over WebSocket the same text is the result.
    let r = c
        .call_text(
            &json!({"controller":"security","action":"exportUsers","jwt":admin,"requestId":"x1",
                "format":"csv","fields":["profileIds"],"body":{"query":{"ids":{"values":["root"]}}}})
            .to_string(),
        )
        .await;
    assert_eq!(
        r,
        format!(
            r#"{{"action":"exportUsers","controller":"security","error":null,"headers":{{}},"node":"{NODE}","requestId":"x1","result":"_id,profileIds\nroot,\"[\"\"admin\"\"]\"\n","status":200,"volatile":null,"room":"x1"}}"#
        )
    );
}

#[tokio::test]
async fn export_users_as_csv_with_fields_names_and_separator() {
    let (s, mut c, admin) = seeded().await;
    let bearer = format!("Bearer {admin}");
    let auth = [("Authorization", bearer.as_str())];
    // Every field found, sorted; cells quoted where needed; absent fields empty.
    let r = http_once(s.addr, "GET", "/users/_export?format=csv", &auth, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"users.csv\"")
    );
    let jsonl = http_once(s.addr, "GET", "/users/_export", &auth, b"")
        .await
        .text();
    let t = created_at(&jsonl);
    assert_eq!(
        r.text(),
        format!(
            concat!(
                "_id,_kuzzle_info.author,_kuzzle_info.createdAt,_kuzzle_info.updatedAt,_kuzzle_info.updater,address.city,age,name,profileIds\n",
                "alice,root,{},,,Nyc,,\"Alice, A.\",\"[\"\"default\"\"]\"\n",
                "bob,root,{},,,,41,\"Bob \"\"B\"\"\",\"[\"\"admin\"\"]\"\n",
                "root,,{},,,,,,\"[\"\"admin\"\"]\"\n",
            ),
            t[0], t[1], t[2]
        )
    );
    // A query, chosen fields (`_id` is always first, once), their header names, `;`.
    let body = json!({"query":{"terms":{"profileIds":["default","admin"]}},
        "fields":["_id","name","address"],"fieldsName":{"name":"Name","_id":"kuid"}});
    let r = http_once(
        s.addr,
        "POST",
        "/users/_export?format=csv&separator=;",
        &auth,
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "kuid;Name;address\nalice;Alice, A.;[OBJECT]\nbob;\"Bob \"\"B\"\"\";\nroot;;\n"
    );
    // Errors keep the envelope.
    for (request, id, message) in [
        (
            json!({"format":"xml"}),
            "api.assert.invalid_argument",
            "Invalid argument \"format\". Expected: \"jsonl\" or \"csv\"",
        ),
        (
            json!({"format":"csv","separator":";;"}),
            "api.assert.invalid_argument",
            "Invalid argument \"separator\". Expected: one character, not a double quote or a line break",
        ),
        (
            json!({"body":{"sort":["_id"]}}),
            "api.assert.unexpected_argument",
            "Unexpected argument \"body.sort\" (accepted arguments: \"query\", \"fields\", \"fieldsName\")",
        ),
        (
            json!({"body":{"fieldsName":{"name":1}}}),
            "api.assert.invalid_type",
            "Wrong type for argument \"body.fieldsName\" (expected: object of strings)",
        ),
        (
            json!({"body":{"query":{"fuzzy":{"name":"x"}}}}),
            "api.assert.invalid_argument",
            "",
        ),
    ] {
        let mut call = json!({"controller":"security","action":"exportUsers","jwt":admin});
        if let (Some(o), Some(extra)) = (call.as_object_mut(), request.as_object()) {
            o.extend(extra.clone());
        }
        let r: Value = c.call(call).await;
        assert_eq!(r["status"], 400, "{r}");
        assert_eq!(r["error"]["id"], id, "{r}");
        if !message.is_empty() {
            assert_eq!(r["error"]["message"], message);
        }
    }
    let r = http_once(s.addr, "GET", "/users/_export?format=xml", &auth, b"").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["id"], "api.assert.invalid_argument");
    // Anonymous, once rights are restricted: refused before anything is read.
    let r = http_once(s.addr, "GET", "/users/_export", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["id"], "security.rights.unauthorized");
}

/// The `_kuzzle_info.createdAt` of each user line of a JSONL export, in order.
fn created_at(jsonl: &str) -> Vec<u64> {
    let times: Vec<u64> = jsonl
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["body"]["_kuzzle_info"]["createdAt"].as_u64())
        .collect();
    assert_eq!(times.len(), 3, "{jsonl}");
    times
}
