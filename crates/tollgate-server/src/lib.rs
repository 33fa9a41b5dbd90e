//! Tollgate's wiring: configuration, the controllers, the Funnel, both front-ends on one listener, and
//! graceful shutdown. The `tollgate` binary is a thin layer over [`Server::start`].
//!
//! ```text
//! TcpListener ─ accept loop ─ HttpFrontend ─(upgrade)─ WsFrontend
//!                                  └──────── Funnel ───────┘
//!                                  gate → Router → controllers
//! ```

pub mod config;
pub mod security_cli;
pub mod server_controller;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tollgate_catalog::{Catalog, CollectionController, IndexController};
use tollgate_core::observe::{Access, Exposition};
use tollgate_core::{Controller, Funnel, FunnelConfig, Gate, Router, Shutdown, UpgradeAcceptor};
use tollgate_http::{HttpConfig, HttpFrontend};
use tollgate_metrics::{MeteredCommits, Metrics};
use tollgate_security::audit::Audit;
use tollgate_security::tokens::Secret;
use tollgate_security::{
    AuthController, AuthFailures, CacheLimits, CookieConfig, GateConfig, HashCost, Passwords,
    SecurityCache, SecurityConfig, SecurityController, SecurityGate, TokenConfig,
};
use tollgate_storage::layer::Layered;
use tollgate_storage::memory::MemoryStore;
use tollgate_storage::postgres::PostgresStore;
use tollgate_storage::sqlite::{Durability, SqliteStore};
use tollgate_storage::{Expect, Op, Store};
use tollgate_ws::{WsConfig, WsFrontend};

pub use config::{Cli, Config, ConfigError, Settings};
pub use server_controller::{HealthProbe, Reported, ServerController};

/// Everything a server needs besides its configuration. Tests add controllers here.
#[derive(Default)]
pub struct Extensions {
    /// Controllers registered after the built-in ones.
    pub controllers: Vec<Arc<dyn Controller>>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    node: Arc<str>,
    shutdown: Shutdown,
    grace: Duration,
    accept_loop: tokio::task::JoinHandle<()>,
    /// Closed (the last reference dropped) at the end of the shutdown.
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("node", &self.node)
            .finish()
    }
}

/// Failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the listener address: {0}")]
    Listener(std::io::Error),
    #[error("cannot open the store: {0}")]
    Storage(#[from] tollgate_storage::StoreError),
    #[error("{0}")]
    Secret(String),
}

/// `server:healthCheck` and `server:info` report the store as `storageEngine`.
struct StoreProbe(Arc<dyn Store>);

#[async_trait::async_trait]
impl HealthProbe for StoreProbe {
    fn name(&self) -> &'static str {
        "storageEngine"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| {
            tracing::warn!(error = %e, "storage health check failed");
            e.summary().to_owned()
        })
    }
    fn info(&self) -> serde_json::Value {
        let engine = self.0.engine();
        let mut info = serde_json::json!({"type": engine.kind, "version": engine.version});
        if engine.kind == "postgresql" {
            // Several nodes may share this store: who they are, how far each has applied the
            // change log, and the bounds a client can count on (`docs/scale-out.md`).
            let peers: Vec<serde_json::Value> = self
                .0
                .peers()
                .into_iter()
                .map(|p| serde_json::json!({"node": p.node, "applied": p.applied, "heardMs": p.heard_ms}))
                .collect();
            info["cluster"] = serde_json::json!({
                "peers": peers,
                "writesWaitForPeersMs": tollgate_security::cache::PEER_APPLY_TIMEOUT.as_millis() as u64,
                "peerLiveMs": tollgate_storage::peers::LIVE.as_millis() as u64,
                "changeLogPollMs": tollgate_storage::postgres::POLL.as_millis() as u64,
                "rateLimits": "per node",
            });
        }
        info
    }
}

/// `GET /_metrics`: the node's metrics, with the gauges read when rendered.
struct NodeMetrics {
    metrics: Arc<Metrics>,
    cache: Arc<SecurityCache>,
    store: Arc<dyn Store>,
    access: Access,
}

#[async_trait::async_trait]
impl Exposition for NodeMetrics {
    fn access(&self) -> Access {
        self.access
    }

    async fn render(&self) -> String {
        let gauges = &self.metrics.gauges;
        let (users, tokens) = self.cache.cached_entries();
        let snapshot = self.cache.snapshot();
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.cached_users.set(as_i64(users));
        gauges.cached_tokens.set(as_i64(tokens));
        gauges.roles.set(as_i64(snapshot.roles.len()));
        gauges.profiles.set(as_i64(snapshot.profiles.len()));
        if let Some((groups, batches)) = self.store.group_stats() {
            gauges.set_groups(groups, batches);
        }
        if let Ok(Ok(seq)) =
            tokio::time::timeout(Duration::from_secs(2), self.store.current_seq()).await
        {
            let lag = seq.saturating_sub(self.cache.applied_seq());
            gauges.feed_lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        self.metrics.encode()
    }
}

/// How often the store is pinged for `/_ready`, and how long a ping may take.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A flag that follows whether the store answers, pinged every second until shutdown: `/_ready`
/// goes unready while the store is down and ready again by itself once it answers.
fn store_up(store: Arc<dyn Store>, shutdown: &Shutdown) -> Arc<AtomicBool> {
    let up = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&up);
    let weak = Arc::downgrade(&store);
    drop(store);
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        let mut tick = tokio::time::interval(STORE_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.triggered() => return,
                _ = tick.tick() => {}
            }
            let Some(store) = weak.upgrade() else { return };
            let ok = matches!(
                tokio::time::timeout(STORE_CHECK_TIMEOUT, store.ping()).await,
                Ok(Ok(()))
            );
            drop(store);
            if flag.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    tracing::info!("the store answers again: ready");
                } else {
                    tracing::warn!("the store does not answer: not ready");
                }
            }
        }
    });
    up
}

/// Opens the configured store.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(match config.storage.engine.as_str() {
        "memory" => Arc::new(MemoryStore::new()),
        "postgresql" => {
            // Validation made sure there is a usable URL. It is never logged: the store logs the
            // host, port, database and user it connected to.
            let url = config.storage.url.as_ref().map_or("", |u| u.expose());
            Arc::new(PostgresStore::open(url).await?)
        }
        _ => {
            let durability = if config.storage.synchronous == "off" {
                Durability::Off
            } else {
                Durability::Full
            };
            Arc::new(SqliteStore::open(&config.server.data_dir, durability)?)
        }
    })
}

/// The configuration as `server:getConfig` and `server:capabilities` report it: secrets are `***`
/// (`config.rs` serializes them so), the limits under Kuzzle's names.
fn reported(config: &Config) -> Reported {
    let limits = serde_json::json!({
        "concurrentRequests": config.limits.concurrent_requests,
        "documentsFetchCount": config.limits.documents_fetch_count,
        "documentsWriteCount": config.limits.documents_write_count,
        "loginsPerSecond": config.security.logins_per_second,
        "maxScrollDuration": config.limits.max_scroll_duration_ms,
        "requestsBufferSize": config.limits.requests_buffer_size,
    });
    let config = serde_json::to_value(config).unwrap_or_else(|e| {
        // Every field serializes to JSON (paths as lossy text): not expected to happen.
        tracing::warn!("server:getConfig: the configuration cannot be shown: {e}");
        serde_json::json!({})
    });
    Reported { config, limits }
}

impl Server {
    /// Starts serving on `listener` with a validated configuration.
    pub async fn start(
        listener: TcpListener,
        settings: Settings,
        ext: Extensions,
    ) -> Result<Self, StartError> {
        let config = settings.config;
        let data_dir = &config.server.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(StartError::Listener)?;
        let node: Arc<str> = Arc::from(
            config
                .server
                .node_id
                .clone()
                .unwrap_or_else(generate_node_id),
        );
        let shutdown = Shutdown::new();

        let store = open_store(&config).await?;
        tollgate_security::bootstrap(store.as_ref()).await?;
        tollgate_security::migrate_token_ids(store.as_ref()).await?;
        let cache = SecurityCache::start(
            Arc::clone(&store),
            CacheLimits {
                users: config.security.cached_users,
                tokens: config.security.cached_tokens,
            },
        )
        .await?;
        // The controllers write through the audited store: each security or catalog write made for a
        // request carries its audit record in the same batch.
        let metrics = (config.metrics.mode != "off").then(Metrics::new);
        // Commits are measured below the audit layer (the records are part of each batch).
        let written: Arc<dyn Store> = match &metrics {
            Some(m) => Arc::new(Layered::new(
                Arc::clone(&store),
                Arc::new(MeteredCommits(Arc::clone(m))),
            )),
            None => Arc::clone(&store),
        };
        let audited: Arc<dyn Store> = if config.security.audit_trail {
            Arc::new(Layered::new(written, Arc::new(Audit::new())))
        } else {
            written
        };
        let catalog = Catalog::new(Arc::clone(&audited));
        let secret = load_secret(store.as_ref(), config.security.jwt_secret.as_deref()).await?;
        let passwords = Passwords::new(HashCost {
            memory_kib: config.security.argon2_memory_kib,
            iterations: config.security.argon2_iterations,
            parallelism: config.security.argon2_parallelism,
        })
        .with_min_length(config.security.password_min_length);

        let routes = Arc::new(OnceLock::new());
        let openapi = Arc::new(OnceLock::new());
        let mut router = Router::new();
        let probes: Vec<Arc<dyn HealthProbe>> = vec![Arc::new(StoreProbe(Arc::clone(&store)))];
        router.register(Arc::new(
            ServerController::new(Arc::clone(&node), Arc::clone(&routes), probes)
                .with_store(Arc::clone(&store))
                .with_openapi(Arc::clone(&openapi))
                .with_config(reported(&config)),
        ));
        router.register(Arc::new(
            SecurityController::new(
                Arc::clone(&audited),
                Arc::clone(&cache),
                catalog.clone(),
                SecurityConfig {
                    documents_fetch_count: config.limits.documents_fetch_count,
                    documents_write_count: config.limits.documents_write_count,
                    max_scroll_duration: std::time::Duration::from_millis(
                        config.limits.max_scroll_duration_ms,
                    ),
                    max_scroll_cursors: config.limits.max_scroll_cursors,
                },
                passwords.clone(),
            )
            .with_api_key_secret(secret.clone()),
        ));
        let failures = Arc::new(AuthFailures::new(
            config.security.failed_auth_per_minute_per_ip,
        ));
        let gate: Arc<dyn Gate> = Arc::new(SecurityGate::new(
            Arc::clone(&cache),
            secret.clone(),
            GateConfig {
                logins_per_second: config.security.logins_per_second,
                logins_per_second_per_ip: config.security.logins_per_second_per_ip,
                cookie_authentication: config.http.cookie_authentication,
            },
            Arc::clone(&failures),
        ));
        router.register(Arc::new(
            AuthController::new(
                Arc::clone(&audited),
                Arc::clone(&cache),
                secret,
                passwords,
                TokenConfig {
                    default_ttl_ms: config.security.token_expires_in_ms,
                    max_ttl_ms: config.security.token_max_ttl_ms,
                    refresh_grace_ms: config.security.refresh_grace_ms,
                },
                failures,
            )
            .with_cookies(CookieConfig {
                enabled: config.http.cookie_authentication,
                options: tollgate_protocol::cookie::CookieOptions {
                    secure: config.http.cookie_secure,
                },
            }),
        ));
        router.register(Arc::new(
            IndexController::new(catalog.clone())
                .with_gate(Arc::clone(&gate))
                .with_write_limit(config.limits.documents_write_count),
        ));
        router.register(Arc::new(CollectionController(catalog)));
        for controller in ext.controllers {
            router.register(controller);
        }
        let table = router.route_table();
        if let (Some(m), Some(controllers)) = (&metrics, table.as_object()) {
            m.name_actions(controllers.iter().flat_map(|(c, actions)| {
                actions
                    .as_object()
                    .into_iter()
                    .flat_map(|a| a.keys())
                    .map(move |a| (c.clone(), a.clone()))
            }));
        }
        let _ = routes.set(table);
        let _ = openapi.set(tollgate_core::openapi::document(
            &router,
            tollgate_core::openapi::DocInfo {
                title: "Tollgate",
                version: env!("CARGO_PKG_VERSION"),
                kuzzle_version: server_controller::KUZZLE_API_VERSION,
            },
            true,
        ));
        let router = Arc::new(router);

        shutdown.spawn(housekeeping(
            Arc::clone(&cache),
            Arc::clone(&store),
            config.security.audit_retention_days,
            shutdown.clone(),
        ));
        let funnel = Funnel::new(
            router,
            gate,
            FunnelConfig {
                concurrent_requests: config.limits.concurrent_requests,
                requests_buffer_size: config.limits.requests_buffer_size,
                allowed_origins: config.http.allowed_origins.clone(),
            },
            shutdown.clone(),
        )
        .with_services_up(store_up(Arc::clone(&store), &shutdown));
        // Metrics are one layer of the pipeline: the Funnel tells it of every answer.
        let funnel = Arc::new(match &metrics {
            Some(m) => {
                funnel.with_observer(Arc::clone(m) as Arc<dyn tollgate_core::observe::Observer>)
            }
            None => funnel,
        });
        let ws: Arc<dyn UpgradeAcceptor> = Arc::new(WsFrontend::new(
            Arc::clone(&funnel),
            WsConfig {
                max_message_size: config.server.max_request_size,
                idle_timeout: config.idle_timeout(),
                max_queued_messages: config.websocket.max_queued_messages,
                max_in_flight: config.websocket.max_in_flight,
                rate_limit: config.websocket.rate_limit,
                read_buffer_size: config.websocket.read_buffer_size,
            },
            Arc::clone(&node),
            shutdown.clone(),
        ));
        let http = HttpFrontend::new(
            funnel,
            HttpConfig {
                max_request_size: config.server.max_request_size,
                max_encoding_layers: config.http.max_encoding_layers,
                compression: config.http.compression,
                max_head_size: config.http.max_head_size,
                head_timeout: Duration::from_millis(config.http.head_timeout_ms),
                body_timeout: Duration::from_millis(config.http.body_timeout_ms),
                body_min_rate: config.http.body_min_rate,
                max_buffered_body_bytes: config.http.max_buffered_body_bytes,
                trusted_proxies: config
                    .http
                    .trusted_proxies
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                cookie_authentication: config.http.cookie_authentication,
            },
            Arc::clone(&node),
            Some(ws),
            shutdown.clone(),
        );
        let http = Arc::new(match metrics {
            Some(metrics) => http.with_metrics(Arc::new(NodeMetrics {
                metrics,
                cache: Arc::clone(&cache),
                store: Arc::clone(&store),
                access: if config.metrics.mode == "token" {
                    Access::Token
                } else {
                    Access::Open
                },
            })),
            None => http,
        });

        let accept_loop = tokio::spawn(accept_loop(
            listener,
            http,
            shutdown.clone(),
            Arc::new(Semaphore::new(config.server.max_connections)),
            PerIp::new(config.server.max_connections_per_ip),
        ));
        tracing::info!(%addr, node = &*node, "tollgate is listening (HTTP and WebSocket)");
        Ok(Self {
            addr,
            node,
            shutdown,
            grace: Duration::from_millis(config.server.shutdown_grace_ms),
            accept_loop,
            store,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node id reported in every response.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Graceful shutdown: stop accepting, refuse new requests, let in-flight ones finish, close
    /// WebSockets with a close frame; at most the configured grace period. Returns false when the
    /// grace period ran out before every connection finished.
    ///
    /// Then the store is closed: once nothing else holds it (every connection and background task
    /// has ended) it is dropped, which stops its writer and releases the data directory.
    pub async fn shutdown(self) -> bool {
        self.shutdown.trigger();
        let _ = self.accept_loop.await;
        let started = tokio::time::Instant::now();
        let drained = self.shutdown.drain(self.grace).await;
        let deadline = started + self.grace.max(Duration::from_secs(1));
        while Arc::strong_count(&self.store) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&self.store) > 1 {
            tracing::warn!("the store is still in use; it closes when its last user ends");
        }
        // The last reference: the writer finishes what was submitted and the store closes.
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        if drained {
            tracing::info!("shutdown complete");
        } else {
            tracing::warn!(
                grace_ms = self.grace.as_millis() as u64,
                "shutdown grace period ran out"
            );
        }
        drained
    }
}

/// Open connections per client address.
#[derive(Clone)]
struct PerIp {
    open: Arc<DashMap<IpAddr, usize>>,
    /// 0 = unlimited.
    limit: usize,
}

/// One open connection of an address; dropping it frees the slot.
struct IpSlot {
    open: Arc<DashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.open.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl PerIp {
    fn new(limit: usize) -> Self {
        Self {
            open: Arc::new(DashMap::new()),
            limit,
        }
    }

    /// A slot for `ip`, or `None` when the address is at its limit.
    fn take(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.entry(ip).or_insert(0);
        if self.limit != 0 && *open >= self.limit {
            return None;
        }
        *open += 1;
        drop(open);
        Some(IpSlot {
            open: Arc::clone(&self.open),
            ip,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    http: Arc<HttpFrontend>,
    shutdown: Shutdown,
    slots: Arc<Semaphore>,
    per_ip: PerIp,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.triggered() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.triggered() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = per_ip.take(peer.ip()) else {
                    tracing::debug!(%peer, "connection refused: too many from this address");
                    drop(stream);
                    continue;
                };
                let http = Arc::clone(&http);
                shutdown.spawn(http.serve_connection(stream, peer, Arc::new((permit, slot))));
            }
            Err(error) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The token signing secret: from configuration, else the one kept in the store, else a new one
/// (64 random bytes) stored for every node to share.
async fn load_secret(store: &dyn Store, configured: Option<&str>) -> Result<Secret, StartError> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use rand::Rng;
    const META: &str = tollgate_security::META;
    let invalid = || StartError::Secret("the token secret was refused".into());
    if let Some(secret) = configured {
        return Secret::new(secret.as_bytes()).ok_or_else(invalid);
    }
    for _ in 0..3 {
        if let Some(doc) = store.get(META, "jwt_secret").await? {
            let bytes = doc
                .body
                .get("secret")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| {
                    StartError::Secret("the stored token secret is unreadable".into())
                })?;
            return Secret::new(&bytes).ok_or_else(invalid);
        }
        let mut bytes = [0u8; 64];
        rand::rng().fill(&mut bytes[..]);
        let op = Op::Put {
            kind: META,
            id: "jwt_secret".into(),
            body: serde_json::json!({"secret": STANDARD.encode(bytes)}),
            expect: Expect::Absent,
        };
        match store.commit(vec![op]).await {
            Ok(_) => return Secret::new(&bytes).ok_or_else(invalid),
            // Another node stored one first: use it.
            Err(tollgate_storage::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StartError::Secret("cannot agree on a token secret".into()))
}

/// Periodic chores until shutdown: warn while the install is open to anyone, purge expired tokens.
async fn housekeeping(
    cache: Arc<SecurityCache>,
    store: Arc<dyn Store>,
    audit_retention_days: u32,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    // Both chores read the store (users, tokens): once at start, then every ten minutes.
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = tick.tick() => {}
        }
        let snapshot = cache.snapshot();
        if snapshot
            .roles
            .get("anonymous")
            .is_some_and(|r| r.rights.allows("*", "*"))
        {
            tracing::warn!(
                "the anonymous role grants every action (*:*): anyone can call anything"
            );
        }
        round += 1;
        if round % 10 != 1 {
            continue;
        }
        match tollgate_security::admin_exists(store.as_ref()).await {
            Ok(false) => tracing::warn!(
                "no admin user exists: create one with security:createFirstAdmin (reset: true)"
            ),
            Ok(true) => {}
            Err(error) => tracing::warn!(%error, "cannot tell whether an admin exists"),
        }
        let now = i64::try_from(tollgate_security::now_ms()).unwrap_or(i64::MAX);
        if let Err(error) = tollgate_security::purge_expired_tokens(store.as_ref(), now).await {
            tracing::warn!(%error, "purging expired tokens failed");
        }
        if audit_retention_days > 0 {
            let keep_ms = u64::from(audit_retention_days) * 86_400_000;
            let cutoff = tollgate_security::now_ms().saturating_sub(keep_ms);
            if let Err(error) = tollgate_security::audit::purge(store.as_ref(), cutoff).await {
                tracing::warn!(%error, "purging old audit records failed");
            }
        }
    }
}

fn generate_node_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("knode-{}", &id[..12])
}
