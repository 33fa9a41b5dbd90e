//! `server:capabilities` and `server:getConfig` through real sockets (`docs/api/server.md`).

use serde_json::{Value, json};
use tollgate_testkit::{NODE, TestServer, first_admin, http_once};

const SECRET: &str = "a-token-secret-of-more-than-32-bytes-0123456789";

#[tokio::test]
async fn get_config_shows_the_configuration_without_its_secrets() {
    let s = TestServer::start_with(
        |c| {
            c.security.jwt_secret = Some(SECRET.to_owned());
            c.limits.documents_write_count = 7;
        },
        Vec::new(),
    )
    .await;
    let (mut c, admin) = first_admin(&s).await;
    let text = c
        .call_text(
            &json!({"controller":"server","action":"getConfig","jwt":admin,"requestId":"g1"})
                .to_string(),
        )
        .await;
    assert!(!text.contains(SECRET), "{text}");
    let r: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(r["status"], 200, "{r}");
    let config = &r["result"];
    assert_eq!(config["security"]["jwt_secret"], "***");
    assert_eq!(config["limits"]["documents_write_count"], 7);
    assert_eq!(config["server"]["node_id"], NODE);
    assert_eq!(config["storage"]["engine"], "sqlite");
    assert_eq!(config["storage"]["url"], Value::Null);
    // Every section of the configuration file is there.
    let mut sections: Vec<&str> = config
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    sections.sort_unstable();
    assert_eq!(
        sections,
        [
            "http",
            "limits",
            "log",
            "metrics",
            "security",
            "server",
            "storage",
            "websocket"
        ]
    );
    // The same over HTTP; the anonymous user may not read it once rights are restricted.
    let bearer = format!("Bearer {admin}");
    let r = http_once(
        s.addr,
        "GET",
        "/_getConfig",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(SECRET));
    assert_eq!(r.json()["result"], *config);
    let r = http_once(s.addr, "GET", "/_getConfig", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["id"], "security.rights.unauthorized");
}

#[tokio::test]
async fn capabilities_lists_limits_routes_services_and_version() {
    let s = TestServer::start_with(|c| c.limits.documents_fetch_count = 55, Vec::new()).await;
    let mut c = s.ws().await;
    let r = c
        .call(json!({"controller":"server","action":"capabilities"}))
        .await;
    assert_eq!(r["status"], 200, "{r}");
    let routes = c
        .call(json!({"controller":"server","action":"publicApi"}))
        .await;
    assert_eq!(r["result"]["routes"], routes["result"]);
    assert_eq!(
        r["result"]["routes"]["server"]["capabilities"],
        json!({"action":"capabilities","controller":"server","http":[{"path":"/_capabilities","url":"/_capabilities","verb":"GET"}]})
    );
    assert_eq!(
        r["result"]["limits"],
        json!({"concurrentRequests":100,"documentsFetchCount":55,"documentsWriteCount":200,
            "loginsPerSecond":1,"maxScrollDuration":60000,"requestsBufferSize":50000})
    );
    assert_eq!(r["result"]["plugins"], json!({}));
    assert_eq!(r["result"]["version"], "2.56.0");
    let engine = &r["result"]["services"]["storageEngine"];
    assert_eq!(engine["backend"], "sqlite");
    assert!(
        engine["version"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{engine}"
    );
    let h = http_once(s.addr, "GET", "/_capabilities", &[], b"").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["result"], r["result"]);
}
