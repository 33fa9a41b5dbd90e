//! `server:openapi` (`GET /_openapi`): the OpenAPI document generated from the route table and the
//! actions' declared arguments.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use tollgate_testkit::{TestServer, http_once, missing_service, openapi_venv};

async fn document(s: &TestServer) -> Value {
    let r = http_once(s.addr, "GET", "/_openapi", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// Every (controller, action) of the route table, and every (verb, OpenAPI path) of its routes.
async fn route_table(s: &TestServer) -> (BTreeSet<(String, String)>, BTreeSet<(String, String)>) {
    let r = http_once(s.addr, "GET", "/_publicApi", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let table = r.json()["result"].clone();
    let mut actions = BTreeSet::new();
    let mut routes = BTreeSet::new();
    for (controller, defs) in table
        .as_object()
        .unwrap_or_else(|| panic!("table: {table}"))
    {
        for (action, def) in defs.as_object().unwrap_or_else(|| panic!("defs: {defs}")) {
            actions.insert((controller.clone(), action.clone()));
            for route in def["http"].as_array().into_iter().flatten() {
                let path = route["path"].as_str().unwrap_or_default();
                let path: Vec<String> = path
                    .split('/')
                    .map(|seg| match seg.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => seg.to_owned(),
                    })
                    .collect();
                routes.insert((
                    route["verb"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    path.join("/"),
                ));
            }
        }
    }
    (actions, routes)
}

/// (path, verb, operation) of every operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths: {doc}"));
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap_or_else(|| panic!("path item {path}: {item}"))
                .iter()
                .map(|(verb, op)| (path.clone(), verb.clone(), op.clone()))
        })
        .collect()
}

fn parameter<'a>(op: &'a Value, name: &str, place: &str) -> Option<&'a Value> {
    op["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name && p["in"] == place)
}

fn operation<'a>(ops: &'a [(String, String, Value)], id: &str) -> &'a Value {
    ops.iter()
        .find(|(_, _, op)| op["operationId"] == id)
        .map(|(_, _, op)| op)
        .unwrap_or_else(|| panic!("no operation {id}"))
}

#[tokio::test]
async fn openapi_lists_every_action_and_route_of_the_route_table() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Tollgate");
    // Bare over HTTP: the document itself, not an envelope.
    assert!(doc.get("requestId").is_none() && doc.get("result").is_none());

    let (actions, routes) = route_table(&s).await;
    let ops = operations(&doc);
    let documented: BTreeSet<(String, String)> = ops
        .iter()
        .map(|(_, _, op)| {
            (
                op["x-kuzzle-controller"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                op["x-kuzzle-action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(documented, actions, "operations vs route table actions");
    let documented_routes: BTreeSet<(String, String)> = ops
        .iter()
        .map(|(path, verb, _)| (verb.clone(), path.clone()))
        .collect();
    assert_eq!(
        documented_routes, routes,
        "operations vs route table routes"
    );

    let ids: Vec<&str> = ops
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap_or_default())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique: {ids:?}");

    for (path, verb, op) in &ops {
        // Every placeholder is a declared, required path parameter.
        for name in path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        {
            let p = parameter(op, name, "path")
                .unwrap_or_else(|| panic!("{verb} {path}: no path parameter {name}"));
            assert_eq!(p["required"], true, "{verb} {path} {name}");
            assert_ne!(
                p["description"], "",
                "{verb} {path}: {name} is not declared"
            );
        }
        let responses = &op["responses"];
        assert!(
            responses["200"].is_object() && responses["4XX"].is_object(),
            "{verb} {path}: {responses}"
        );
    }
}

#[tokio::test]
async fn openapi_operations_carry_the_declared_arguments() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let ops = operations(&doc);

    let update = operation(&ops, "security:updateProfile");
    assert_eq!(update["x-kuzzle-action"], "updateProfile");
    assert_eq!(
        parameter(update, "retryOnConflict", "query").map(|p| &p["schema"]),
        Some(&json!({"type": "integer", "minimum": 0, "maximum": 100}))
    );
    assert_eq!(
        parameter(update, "refresh", "query").map(|p| &p["schema"]["enum"]),
        Some(&json!(["wait_for", "false"]))
    );
    assert!(
        parameter(update, "_id", "query").is_none(),
        "_id is in the path"
    );
    assert_eq!(update["requestBody"]["required"], true);

    let create = operation(&ops, "security:createProfile");
    let schema = &create["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["policies"]));
    assert_eq!(schema["properties"]["policies"]["type"], "array");

    // `_id` is a path parameter on one route of createUser, an optional query argument on the other.
    let on_path = operation(&ops, "security:createUser:2");
    assert!(parameter(on_path, "_id", "path").is_some());
    let in_query = operation(&ops, "security:createUser");
    assert_eq!(
        parameter(in_query, "_id", "query").map(|p| &p["required"]),
        Some(&json!(false))
    );

    let search = operation(&ops, "security:searchProfiles");
    assert_eq!(
        parameter(search, "size", "query").map(|p| &p["schema"]),
        Some(&json!({"type": "integer", "minimum": 0}))
    );
    let check = operation(&ops, "auth:checkToken");
    assert_eq!(
        check["requestBody"]["content"]["application/json"]["schema"]["properties"]["token"]["type"],
        json!(["string", "null"])
    );
    let role = operation(&ops, "security:createRole");
    let controllers =
        &role["requestBody"]["content"]["application/json"]["schema"]["properties"]["controllers"];
    assert_eq!(
        controllers["additionalProperties"]["properties"]["actions"]["additionalProperties"],
        json!({"type": "boolean"})
    );

    let login = operation(&ops, "auth:login");
    assert!(parameter(login, "strategy", "path").is_some());
    assert!(parameter(login, "expiresIn", "query").is_some());
    assert_eq!(login["requestBody"]["required"], false);

    let health = operation(&ops, "server:healthCheck");
    assert_eq!(
        parameter(health, "services", "query").map(|p| (&p["style"], &p["explode"])),
        Some((&json!("form"), &json!(false)))
    );
    // No body for an action that reads none.
    assert!(operation(&ops, "index:exists").get("requestBody").is_none());

    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        json!(["code", "id", "message", "props", "status"])
    );
}

#[tokio::test]
async fn openapi_over_websocket_and_its_arguments() {
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let mut ws = s.ws().await;
    let r = ws
        .call(json!({"controller":"server","action":"openapi"}))
        .await;
    assert_eq!(r["status"], 200);
    assert_eq!(r["result"], doc, "WS result = HTTP document");

    let r = ws
        .call(json!({"controller":"server","action":"openapi","scope":"app"}))
        .await;
    assert_eq!(r["result"]["paths"], json!({}));
    assert_eq!(r["result"]["openapi"], "3.1.0");

    // Errors keep the envelope over HTTP too.
    let r = http_once(s.addr, "GET", "/_openapi?format=yaml", &[], b"").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["id"], "api.assert.invalid_argument");
    assert_eq!(r.json()["action"], "openapi");
    let r = http_once(s.addr, "GET", "/_openapi?scope=plugins", &[], b"").await;
    assert_eq!(r.json()["error"]["id"], "api.assert.invalid_argument");
}

#[tokio::test]
#[cfg_attr(
    no_openapi_validator,
    ignore = "openapi-spec-validator is not installed (.ci/openapi-venv)"
)]
async fn openapi_document_passes_openapi_spec_validator() {
    let test = "openapi_document_passes_openapi_spec_validator";
    let validator = openapi_venv().join("bin/openapi-spec-validator");
    if !validator.is_file() {
        missing_service(
            test,
            "openapi-spec-validator",
            &format!(
                "{} is not a file; run .ci/openapi-venv",
                validator.display()
            ),
        );
    }
    let s = TestServer::start().await;
    let doc = document(&s).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap_or_else(|e| panic!("write: {e}"));
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", validator.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the validator refuses the document:\n{text}"
    );
    assert!(text.contains("OK"), "validator output: {text}");
}
