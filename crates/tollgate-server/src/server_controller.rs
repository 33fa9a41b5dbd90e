//! The `server` controller: `now`, `info`, `healthCheck`, `publicApi`, `openapi`, `adminExists`
//! (`routes.md` §1), `capabilities` and `getConfig` (`docs/api/server.md`).

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tollgate_core::{ActionDef, ArgType, Context, Controller, route};
use tollgate_protocol::errors::CORE_FATAL_SERVICE_UNAVAILABLE;
use tollgate_protocol::{KuzzleError, Request};
use tollgate_storage::Store;

/// The Kuzzle API level Tollgate implements.
pub const KUZZLE_API_VERSION: &str = "2.56.0";

/// A service whose health `server:healthCheck` reports (e.g. `storageEngine`).
#[async_trait]
pub trait HealthProbe: Send + Sync + 'static {
    /// The service name as reported, e.g. `storageEngine`.
    fn name(&self) -> &'static str;
    /// `Ok` when the service answers; `Err(reason)` otherwise.
    async fn check(&self) -> Result<(), String>;
    /// What `server:info` reports under `services.<name>`.
    fn info(&self) -> Value;
}

pub struct ServerController {
    node: Arc<str>,
    started: Instant,
    /// Filled once the router is complete (the table lists this controller too).
    routes: Arc<OnceLock<Value>>,
    /// The OpenAPI document of the routes, filled with the route table.
    openapi: Arc<OnceLock<Value>>,
    probes: Vec<Arc<dyn HealthProbe>>,
    /// The store `adminExists` reads; without one the action is not served.
    store: Option<Arc<dyn Store>>,
    /// What `getConfig` and `capabilities` report; without it neither is served.
    config: Option<Reported>,
}

/// The configuration as `server:getConfig` and `server:capabilities` report it.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The whole configuration, secrets already replaced by `***`.
    pub config: Value,
    /// The request limits, under Kuzzle's `limits` names.
    pub limits: Value,
}

impl ServerController {
    pub fn new(
        node: Arc<str>,
        routes: Arc<OnceLock<Value>>,
        probes: Vec<Arc<dyn HealthProbe>>,
    ) -> Self {
        Self {
            node,
            started: Instant::now(),
            routes,
            openapi: Arc::default(),
            probes,
            store: None,
            config: None,
        }
    }

    /// Serves `server:getConfig` and `server:capabilities` from `reported`.
    pub fn with_config(mut self, reported: Reported) -> Self {
        self.config = Some(reported);
        self
    }

    /// `server:capabilities`: what a client may rely on (Kuzzle's shape): the limits, the plugins
    /// (none), the route table, the services with their engine and version, the API level.
    fn capabilities(&self, reported: &Reported) -> Value {
        let services: Map<String, Value> = self
            .probes
            .iter()
            .map(|p| {
                let info = p.info();
                (
                    p.name().to_owned(),
                    json!({"backend": info["type"], "version": info["version"]}),
                )
            })
            .collect();
        json!({
            "limits": reported.limits,
            "plugins": {},
            "routes": self.route_table(),
            "services": services,
            "version": KUZZLE_API_VERSION,
        })
    }

    /// Serves `server:openapi` from `document`, filled once the router is complete.
    pub fn with_openapi(mut self, document: Arc<OnceLock<Value>>) -> Self {
        self.openapi = document;
        self
    }

    /// `server:openapi`: the document for scope `kuzzle`; for scope `app` (the application's own
    /// routes, of which there are none) the same without paths.
    fn openapi(&self, req: &Request) -> Result<Value, KuzzleError> {
        match req.string("format")? {
            None | Some("json") => {}
            Some(_) => return Err(KuzzleError::invalid_argument("format", "\"json\"")),
        }
        let app = match req.string("scope")? {
            None | Some("kuzzle") => false,
            Some("app") => true,
            Some(_) => {
                return Err(KuzzleError::invalid_argument(
                    "scope",
                    "\"kuzzle\" or \"app\"",
                ));
            }
        };
        let Some(document) = self.openapi.get() else {
            return Err(KuzzleError::internal("server:openapi has no document"));
        };
        let mut document = document.clone();
        if app && let Value::Object(d) = &mut document {
            d.insert("paths".into(), json!({}));
            d.insert("tags".into(), json!([]));
        }
        Ok(document)
    }

    /// Serves `server:adminExists` from `store`.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// `{"exists": <some user holds profile "admin">}`.
    async fn admin_exists(&self) -> Result<Value, KuzzleError> {
        let Some(store) = &self.store else {
            return Err(KuzzleError::internal("server:adminExists has no store"));
        };
        let exists = tollgate_security::admin_exists(store.as_ref())
            .await
            .map_err(tollgate_security::store_error)?;
        Ok(json!({ "exists": exists }))
    }

    fn route_table(&self) -> Value {
        self.routes.get().cloned().unwrap_or_else(|| json!({}))
    }

    async fn health(&self, req: &Request) -> Result<Value, KuzzleError> {
        let wanted = req.string_list("services")?;
        let mut services = Map::new();
        let mut failures = Vec::new();
        for probe in &self.probes {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.iter().any(|n| n == probe.name()))
            {
                continue;
            }
            let state = match probe.check().await {
                Ok(()) => "green",
                Err(reason) => {
                    failures.push(format!("{}: {reason}", probe.name()));
                    "red"
                }
            };
            services.insert(probe.name().to_owned(), json!(state));
        }
        if failures.is_empty() {
            Ok(json!({"services": services, "status": "green"}))
        } else {
            // The envelope carries both the state of each service and the error.
            Err(KuzzleError::new(
                &CORE_FATAL_SERVICE_UNAVAILABLE,
                vec![json!(failures.join(", "))],
            )
            .with_result(json!({"services": services, "status": "red"})))
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Resident set size of this process, in bytes (0 where unknown).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[async_trait]
impl Controller for ServerController {
    fn name(&self) -> &'static str {
        "server"
    }

    fn actions(&self) -> Vec<ActionDef> {
        let mut actions = vec![
            ActionDef::new("now", &[route("GET", "/_now")])
                .describe("The server's clock: `{\"now\": <epoch ms>}`."),
            ActionDef::new("info", &[route("GET", "/"), route("GET", "/_serverInfo")])
                .describe("Versions, node id, uptime, memory, route table and storage engine."),
            ActionDef::new("healthCheck", &[route("GET", "/_healthCheck")])
                .describe("The state of each service; 500 with the states when one is down.")
                .arg(
                    "services",
                    ArgType::StringList,
                    "The services to check (comma-separated on HTTP); unknown names are ignored.",
                ),
            ActionDef::new("publicApi", &[route("GET", "/_publicApi")])
                .describe("The route table: every implemented action with its HTTP routes."),
            ActionDef::new("openapi", &[route("GET", "/_openapi")])
                .describe(
                    "This OpenAPI document, generated from the route table and the actions' \
                     declared arguments. Sent bare over HTTP, as the result over WebSocket.",
                )
                .arg(
                    "format",
                    ArgType::OneOf(&["json"]),
                    "The document's format: json (yaml is refused).",
                )
                .arg(
                    "scope",
                    ArgType::OneOf(&["kuzzle", "app"]),
                    "kuzzle (default): the Kuzzle API routes; app: the application's own routes (none).",
                ),
        ];
        if self.store.is_some() {
            actions.push(
                ActionDef::new("adminExists", &[route("GET", "/_adminExists")])
                    .describe("Whether some user holds the profile admin: `{\"exists\": bool}`."),
            );
        }
        if self.config.is_some() {
            actions.push(
                ActionDef::new("capabilities", &[route("GET", "/_capabilities")]).describe(
                    "What clients may rely on: `{limits, plugins, routes, services, version}`.",
                ),
            );
            actions.push(
                ActionDef::new("getConfig", &[route("GET", "/_getConfig")])
                    .describe("The server's configuration, every secret replaced by \"***\"."),
            );
        }
        actions
    }

    async fn call(
        &self,
        action: &str,
        req: &Request,
        _ctx: &Context,
    ) -> Result<Value, KuzzleError> {
        match action {
            "now" => Ok(json!({ "now": now_ms() })),
            "publicApi" => Ok(self.route_table()),
            "openapi" => self.openapi(req),
            "healthCheck" => self.health(req).await,
            "adminExists" => self.admin_exists().await,
            "capabilities" | "getConfig" => {
                let Some(reported) = &self.config else {
                    return Err(KuzzleError::internal(format!(
                        "server:{action} has no configuration"
                    )));
                };
                Ok(if action == "getConfig" {
                    reported.config.clone()
                } else {
                    self.capabilities(reported)
                })
            }
            "info" => {
                let services: Map<String, Value> = self
                    .probes
                    .iter()
                    .map(|p| (p.name().to_owned(), p.info()))
                    .collect();
                Ok(json!({"serverInfo": {
                    "kuzzle": {
                        "api": {"routes": self.route_table()},
                        "application": {"name": "tollgate", "version": env!("CARGO_PKG_VERSION")},
                        "memoryUsed": rss_bytes(),
                        "nodeId": &*self.node,
                        "plugins": {},
                        "uptime": format!("{}s", self.started.elapsed().as_secs()),
                        "version": KUZZLE_API_VERSION,
                    },
                    "services": services,
                }}))
            }
            other => Err(KuzzleError::internal(format!(
                "server:{other} is not routed here"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{Caller, ConnectionInfo, Protocol};

    struct Down;

    #[async_trait]
    impl HealthProbe for Down {
        fn name(&self) -> &'static str {
            "storageEngine"
        }
        async fn check(&self) -> Result<(), String> {
            Err("disk unreachable".into())
        }
        fn info(&self) -> Value {
            json!({"type": "sqlite"})
        }
    }

    #[tokio::test]
    async fn health_check_reports_red_services_with_the_error() {
        let c = ServerController::new(Arc::from("n"), Arc::default(), vec![Arc::new(Down)]);
        let ctx = Context {
            connection: Arc::new(ConnectionInfo::new(Protocol::Http, None, None)),
            reply: Default::default(),
            caller: Caller::anonymous(),
        };
        let req = Request::from_json(json!({"controller":"server","action":"healthCheck"}), None)
            .unwrap_or_default();
        let e = c.call("healthCheck", &req, &ctx).await.err();
        assert_eq!(
            e.as_ref().map(|e| e.id()),
            Some("core.fatal.service_unavailable")
        );
        assert_eq!(
            e.as_ref().map(|e| e.message().to_owned()),
            Some("Service unavailable: storageEngine: disk unreachable.".to_owned())
        );
        assert_eq!(
            e.and_then(|e| e.result().cloned()),
            Some(json!({"services":{"storageEngine":"red"},"status":"red"}))
        );
    }
}
