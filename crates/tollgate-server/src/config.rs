//! Configuration: defaults, then a TOML file, then `TOLLGATE_*` environment variables, then command-line
//! flags (each later source overrides the earlier ones). Everything is validated before the server
//! binds its port; the binary exits with code 64 on a bad configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Command-line flags. Each one also reads its environment variable; the flag wins over it.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: a Kuzzle-compatible API gateway",
    long_about = "Tollgate: a Kuzzle-compatible API gateway. Without a subcommand, runs the server.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "TOLLGATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on (HTTP and WebSocket share it).
    #[arg(long, env = "TOLLGATE_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "TOLLGATE_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Node id reported in every response (default: `knode-` and a random suffix).
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Log format: `human` or `json`.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `tollgate=debug` (tracing-subscriber syntax).
    #[arg(long, env = "TOLLGATE_LOG")]
    pub log_level: Option<String>,
    /// Storage engine: `sqlite`, `postgresql` or `memory`.
    #[arg(long, env = "TOLLGATE_STORAGE_ENGINE", value_name = "ENGINE")]
    pub storage_engine: Option<String>,
    /// PostgreSQL URL (`postgres://user:password@host:port/dbname`) of `storage.engine =
    /// "postgresql"`. Prefer the environment variable or the file to this flag: other users of the
    /// machine can see a process's arguments.
    #[arg(
        long,
        env = "TOLLGATE_STORAGE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub storage_url: Option<DatabaseUrl>,
    /// A tool that talks to a running server; without one, the binary runs the server.
    #[command(subcommand)]
    pub command: Option<crate::security_cli::Command>,
}

/// A database URL. Its `Debug` form hides the password, so a logged configuration never shows it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: for connecting only, never for messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialized (`server:getConfig`) with its password replaced by `***`, as in its `Debug` form.
impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&tollgate_storage::postgres::redact_url(&self.0))
    }
}

/// A path, serialized as text (bytes that are not UTF-8 shown as U+FFFD).
fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// A secret setting, serialized as `"***"` when set, `null` when not.
fn redacted<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", tollgate_storage::postgres::redact_url(&self.0))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The whole configuration, as read from the TOML file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub http: HttpSection,
    pub websocket: WebSocketSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    pub storage: StorageSection,
    pub security: SecuritySection,
    pub metrics: MetricsSection,
}

/// `GET /_metrics` (Prometheus text format).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `off` (no endpoint: 404), `open` (anyone reaching the port), or `token` (a token whose user
    /// may call `server:metrics`, in `Authorization: Bearer` or `?jwt=`).
    pub mode: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            mode: "off".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySection {
    /// Token signing secret (`security.authToken.secret`). When absent, 64 random bytes are generated
    /// at first start and kept in the store, shared by every node. Serialized (`server:getConfig`)
    /// as `"***"`, never in clear.
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<String>,
    /// Default token lifetime in ms (`security.authToken.expiresIn`, 1 h).
    pub token_expires_in_ms: i64,
    /// Largest token lifetime in ms; -1 for no maximum (`security.authToken.maxTTL`).
    pub token_max_ttl_ms: i64,
    /// How long a token replaced by `auth:refreshToken` stays valid, in ms, for the requests
    /// already sent with it (Kuzzle's `security.jwt.gracePeriod`); 0 to 60000.
    pub refresh_grace_ms: u64,
    /// argon2id memory cost in KiB (19 MiB).
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Fewest characters of a password set by createUser, createFirstAdmin or a credentials write
    /// (1 to 1024; shorter: `kuzzle-plugin-auth-passport-local.weak-password`). 1, as Kuzzle.
    pub password_min_length: usize,
    /// `auth:login` per WebSocket connection per second; 0 = unlimited (`limits.loginsPerSecond`).
    pub logins_per_second: u32,
    /// `auth:login` per client address per second, over HTTP and WebSocket together (behind a
    /// proxy listed in `http.trusted_proxies`, the forwarded client address); 0 = unlimited.
    #[serde(alias = "http_logins_per_second_per_ip")]
    pub logins_per_second_per_ip: u32,
    /// Failed authentications (wrong passwords, refused tokens) per client address per minute before
    /// its logins and refused tokens get `api.process.too_many_logins_requests` for the rest of the
    /// minute; 0 = unlimited.
    pub failed_auth_per_minute_per_ip: u32,
    /// Users kept in this node's memory (a bounded cache over the store; a miss is a store read).
    pub cached_users: usize,
    /// Token records kept in this node's memory (likewise).
    pub cached_tokens: usize,
    /// Whether security and catalog writes are recorded in the audit trail.
    pub audit_trail: bool,
    /// Days the audit trail is kept (records older are purged); 0 = kept forever.
    pub audit_retention_days: u32,
}

impl Default for SecuritySection {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_expires_in_ms: 3_600_000,
            token_max_ttl_ms: -1,
            refresh_grace_ms: 1_000,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_min_length: 1,
            logins_per_second: 1,
            logins_per_second_per_ip: 10,
            failed_auth_per_minute_per_ip: 30,
            cached_users: 100_000,
            cached_tokens: 100_000,
            audit_trail: true,
            audit_retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// `sqlite` (durable, in `server.data_dir`), `postgresql` (a database shared by several nodes,
    /// at `url`) or `memory` (nothing survives a restart).
    pub engine: String,
    /// SQLite only: `full` (every commit is fsynced, the default) or `off` (benchmarks only).
    pub synchronous: String,
    /// PostgreSQL only, and required by it: `postgres://user:password@host:port/dbname`.
    pub url: Option<DatabaseUrl>,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            engine: "sqlite".to_owned(),
            synchronous: "full".to_owned(),
            url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// `0.0.0.0:7512` by default.
    pub listen: String,
    /// `./data` by default.
    #[serde(serialize_with = "lossy_path")]
    pub data_dir: PathBuf,
    /// Node id; generated when absent.
    pub node_id: Option<String>,
    /// Largest HTTP body or WebSocket message, in bytes (`server.maxRequestSize`).
    pub max_request_size: usize,
    /// Open connections at most; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections per client address (the TCP peer) at most; a connection over it is closed
    /// at once. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Time in-flight requests get to finish on shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Threads of the async runtime that serve requests; 0 = one per core the process may run on.
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Compress responses for clients that accept gzip or deflate.
    pub compression: bool,
    /// Most `Content-Encoding` layers in a request (`http.maxEncodingLayers`).
    pub max_encoding_layers: usize,
    /// Largest request head, in bytes.
    pub max_head_size: usize,
    /// Time allowed to receive a whole request head, in milliseconds, counted from its first byte
    /// (a client sending one byte at a time does not extend it). Bounds the WebSocket upgrade
    /// handshake too, which is an HTTP request.
    pub head_timeout_ms: u64,
    /// Time allowed to receive a request body, in milliseconds, on top of what `body_min_rate`
    /// grants. Past it the request gets 400 `network.http.unexpected_error` and the connection is
    /// closed.
    pub body_timeout_ms: u64,
    /// Bytes per second a body must keep arriving at: each byte received extends the body's
    /// deadline by 1/`body_min_rate` s. 0: the whole body within `body_timeout_ms`.
    pub body_min_rate: u64,
    /// Bytes of request bodies (raw and decoded) held at once by all connections together; past it
    /// a request gets 503 `api.process.overloaded` without its body being read.
    pub max_buffered_body_bytes: usize,
    /// Allowed `Origin` values; absent allows every origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<String>,
    /// Cookie authentication (Kuzzle's `http.cookieAuthentication`, default on): `cookieAuth` on
    /// HTTP `auth:login`/`refreshToken`/`logout`, the `authToken` cookie as a request's token, and
    /// `Access-Control-Allow-Credentials: true` on every HTTP response. Off: `cookieAuth`, or a
    /// request carrying an `authToken` cookie, gets `security.cookie.unsupported`.
    pub cookie_authentication: bool,
    /// Add `Secure` to the `authToken` cookie (browsers then send it over HTTPS only). Off by
    /// default, as in Kuzzle: Tollgate speaks plain HTTP, TLS is a reverse proxy's; turn it on
    /// whenever clients reach Tollgate through HTTPS.
    pub cookie_secure: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSection {
    /// Idle timeout in milliseconds (values below 1 s mean 60 s).
    pub idle_timeout_ms: u64,
    /// Outgoing messages waiting on one socket before it is closed (1011).
    pub max_queued_messages: usize,
    /// Requests of one socket running at once.
    pub max_in_flight: usize,
    /// Messages per second per socket; 0 disables the limit.
    pub rate_limit: u32,
    /// Read buffer of each socket, in bytes (memory per idle connection grows with it).
    pub read_buffer_size: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    pub concurrent_requests: usize,
    pub requests_buffer_size: usize,
    /// Largest search `size` and mGet id count (`limits.documentsFetchCount`).
    pub documents_fetch_count: u64,
    /// Most ids of a bulk delete (`security:mDeleteUsers`, …; `limits.documentsWriteCount`).
    pub documents_write_count: u64,
    /// Longest `scroll` lifetime of a search cursor, in ms (Kuzzle's `maxScrollDuration`).
    pub max_scroll_duration_ms: u64,
    /// Search cursors open at once on the node.
    pub max_scroll_cursors: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `human` or `json`.
    pub format: String,
    /// tracing-subscriber filter.
    pub level: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7512".to_owned(),
            data_dir: PathBuf::from("./data"),
            node_id: None,
            max_request_size: 1024 * 1024,
            max_connections: 65_536,
            max_connections_per_ip: 1024,
            shutdown_grace_ms: 10_000,
            worker_threads: 0,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            compression: true,
            max_encoding_layers: 3,
            max_head_size: 64 * 1024,
            head_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            body_min_rate: 64 * 1024,
            max_buffered_body_bytes: 128 * 1024 * 1024,
            allowed_origins: None,
            trusted_proxies: Vec::new(),
            cookie_authentication: true,
            cookie_secure: false,
        }
    }
}

impl Default for WebSocketSection {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 60_000,
            max_queued_messages: 50,
            max_in_flight: 50,
            rate_limit: 0,
            read_buffer_size: 4096,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            concurrent_requests: 100,
            requests_buffer_size: 50_000,
            documents_fetch_count: 10_000,
            documents_write_count: 200,
            max_scroll_duration_ms: 60_000,
            max_scroll_cursors: 1_000,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "human".to_owned(),
            level: "info".to_owned(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The usable, validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub listen: SocketAddr,
}

/// Most runtime worker threads `server.worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Config {
    /// Loads the file named by `cli.config` (if any) and applies the CLI/environment overrides.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(listen) = &cli.listen {
            config.server.listen.clone_from(listen);
        }
        if let Some(dir) = &cli.data_dir {
            config.server.data_dir.clone_from(dir);
        }
        if let Some(node) = &cli.node_id {
            config.server.node_id = Some(node.clone());
        }
        if let Some(format) = &cli.log_format {
            config.log.format.clone_from(format);
        }
        if let Some(level) = &cli.log_level {
            config.log.level.clone_from(level);
        }
        if let Some(engine) = &cli.storage_engine {
            config.storage.engine.clone_from(engine);
        }
        if let Some(url) = &cli.storage_url {
            config.storage.url = Some(url.clone());
        }
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks every value; returns the parsed listen address with the configuration.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let listen: SocketAddr = match self.server.listen.parse() {
            Ok(addr) => addr,
            Err(_) => {
                return bad(format!(
                    "server.listen: {:?} is not an ADDR:PORT",
                    self.server.listen
                ));
            }
        };
        const MAX_BODY: usize = 64 * 1024 * 1024;
        if !(1..=MAX_BODY).contains(&self.server.max_request_size) {
            return bad(format!(
                "server.max_request_size must be between 1 and {MAX_BODY}"
            ));
        }
        if self.server.worker_threads > MAX_WORKER_THREADS {
            return bad(format!(
                "server.worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core)"
            ));
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections must be at least 1".into());
        }
        if let Some(node) = &self.server.node_id
            && (node.is_empty() || node.len() > 128 || !node.bytes().all(|b| b.is_ascii_graphic()))
        {
            return bad("server.node_id must be 1 to 128 visible ASCII characters".into());
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return bad("server.data_dir must not be empty".into());
        }
        if self.http.max_encoding_layers == 0 || self.http.max_encoding_layers > 16 {
            return bad("http.max_encoding_layers must be between 1 and 16".into());
        }
        if !(1024..=1024 * 1024).contains(&self.http.max_head_size) {
            return bad("http.max_head_size must be between 1024 and 1048576".into());
        }
        if let Some(bad_ip) = self
            .http
            .trusted_proxies
            .iter()
            .find(|p| p.parse::<std::net::IpAddr>().is_err())
        {
            return bad(format!(
                "http.trusted_proxies: {bad_ip:?} is not an IP address"
            ));
        }
        if self.http.max_head_size > tollgate_http::MAX_HEAD_SIZE_LIMIT {
            return bad(format!(
                "http.max_head_size must be at most {} (every head over the limit then gets 431)",
                tollgate_http::MAX_HEAD_SIZE_LIMIT
            ));
        }
        if self.http.body_timeout_ms == 0 {
            return bad("http.body_timeout_ms must be positive".into());
        }
        if self.http.max_buffered_body_bytes < self.server.max_request_size {
            return bad(
                "http.max_buffered_body_bytes must be at least server.max_request_size".into(),
            );
        }
        if self.http.head_timeout_ms == 0 {
            return bad("http.head_timeout_ms must be positive".into());
        }
        if self.websocket.max_queued_messages == 0 || self.websocket.max_in_flight == 0 {
            return bad(
                "websocket.max_queued_messages and websocket.max_in_flight must be at least 1"
                    .into(),
            );
        }
        if !(256..=1024 * 1024).contains(&self.websocket.read_buffer_size) {
            return bad("websocket.read_buffer_size must be between 256 and 1048576".into());
        }
        if self.limits.concurrent_requests == 0 {
            return bad("limits.concurrent_requests must be at least 1".into());
        }
        if !matches!(self.metrics.mode.as_str(), "off" | "open" | "token") {
            return bad(format!(
                "metrics.mode must be \"off\", \"open\" or \"token\", not {:?}",
                self.metrics.mode
            ));
        }
        if !matches!(
            self.storage.engine.as_str(),
            "sqlite" | "postgresql" | "memory"
        ) {
            return bad(format!(
                "storage.engine must be \"sqlite\", \"postgresql\" or \"memory\", not {:?}",
                self.storage.engine
            ));
        }
        let url = self
            .storage
            .url
            .as_ref()
            .map(DatabaseUrl::expose)
            .filter(|url| !url.is_empty());
        match (self.storage.engine.as_str(), url) {
            ("postgresql", None) => {
                return bad(
                    "storage.url is required with storage.engine = \"postgresql\" \
                     (or TOLLGATE_STORAGE_URL, or --storage-url)"
                        .into(),
                );
            }
            ("postgresql", Some(url)) => {
                if let Err(e) = tollgate_storage::postgres::parse_url(url) {
                    return bad(format!("storage.url: {e}"));
                }
            }
            // A URL for another engine is a mistake that would otherwise go unnoticed: this node
            // would keep its data to itself.
            (engine, Some(_)) => {
                return bad(format!(
                    "storage.url is set but storage.engine is {engine:?}; \
                     set storage.engine = \"postgresql\" to use it"
                ));
            }
            (_, None) => {}
        }
        if !matches!(self.storage.synchronous.as_str(), "full" | "off") {
            return bad(format!(
                "storage.synchronous must be \"full\" or \"off\", not {:?}",
                self.storage.synchronous
            ));
        }
        if self
            .security
            .jwt_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32)
        {
            return bad("security.jwt_secret must be at least 32 bytes".into());
        }
        if self.security.token_expires_in_ms == 0 || self.security.token_expires_in_ms < -1 {
            return bad("security.token_expires_in_ms must be positive, or -1 (never)".into());
        }
        if self.security.token_max_ttl_ms == 0 || self.security.token_max_ttl_ms < -1 {
            return bad("security.token_max_ttl_ms must be positive, or -1 (no maximum)".into());
        }
        let max_ttl = self.security.token_max_ttl_ms;
        if max_ttl != -1
            && (self.security.token_expires_in_ms == -1
                || self.security.token_expires_in_ms > max_ttl)
        {
            return bad(
                "security.token_expires_in_ms must not exceed security.token_max_ttl_ms".into(),
            );
        }
        if !(1..=1024).contains(&self.security.password_min_length) {
            return bad("security.password_min_length must be 1 to 1024".into());
        }
        if self.security.refresh_grace_ms > 60_000 {
            return bad("security.refresh_grace_ms must be at most 60000".into());
        }
        if self.security.argon2_memory_kib > 4 * 1024 * 1024
            || !(1..=100).contains(&self.security.argon2_iterations)
            || !(1..=64).contains(&self.security.argon2_parallelism)
        {
            return bad("security.argon2_*: memory at most 4194304 KiB, iterations 1 to 100, parallelism 1 to 64".into());
        }
        let cost = tollgate_security::HashCost {
            memory_kib: self.security.argon2_memory_kib,
            iterations: self.security.argon2_iterations,
            parallelism: self.security.argon2_parallelism,
        };
        if !cost.is_valid() {
            return bad("security.argon2_* parameters are not accepted by argon2".into());
        }
        if self.limits.max_scroll_duration_ms == 0 || self.limits.max_scroll_cursors == 0 {
            return bad(
                "limits.max_scroll_duration_ms and limits.max_scroll_cursors must be at least 1"
                    .into(),
            );
        }
        if self.limits.documents_fetch_count == 0 {
            return bad("limits.documents_fetch_count must be at least 1".into());
        }
        if self.limits.documents_write_count == 0 {
            return bad("limits.documents_write_count must be at least 1".into());
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return bad(format!(
                "log.format must be \"human\" or \"json\", not {:?}",
                self.log.format
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(format!(
                "log.level: {:?} is not a valid filter",
                self.log.level
            ));
        }
        Ok(Settings {
            config: self,
            listen,
        })
    }

    /// The WebSocket idle timeout, with Kuzzle's rule that values below one second mean 60 s.
    pub fn idle_timeout(&self) -> Duration {
        match self.websocket.idle_timeout_ms {
            ms if ms < 1000 => Duration::from_secs(60),
            ms => Duration::from_millis(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_configuration_hides_secrets() {
        let mut config = Config::default();
        config.security.jwt_secret = Some("secret-value-of-the-tokens".into());
        for (url, shown) in [
            (
                "postgres://app:pw1@db:5432/tg",
                "postgres://app:***@db:5432/tg",
            ),
            (
                "postgres://db/tg?password=pw1&user=app",
                "postgres://db/tg?password=***&user=app",
            ),
            (
                "host=db password=pw1 user=app",
                "host=db password=*** user=app",
            ),
        ] {
            config.storage.url = Some(DatabaseUrl::from(url));
            let value = serde_json::to_value(&config).unwrap_or_default();
            let text = value.to_string();
            assert!(
                !text.contains("pw1") && !text.contains("secret-value"),
                "{text}"
            );
            assert_eq!(value["storage"]["url"], shown);
            assert_eq!(value["security"]["jwt_secret"], "***");
        }
    }

    #[test]
    fn subcommands_take_no_server_flags() {
        let cli = Cli::try_parse_from(["tollgate", "security", "export", "--url", "http://h:1"]);
        assert!(cli.is_ok_and(|c| c.command.is_some()));
        let cli =
            Cli::try_parse_from(["tollgate", "--listen", "127.0.0.1:1", "security", "export"]);
        assert!(cli.is_err(), "server flags are not taken with a subcommand");
        let cli = Cli::try_parse_from(["tollgate", "--listen", "127.0.0.1:1"]);
        assert!(
            cli.is_ok_and(|c| c.command.is_none()),
            "no subcommand: the server"
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.server.listen, "0.0.0.0:7512");
        assert_eq!(c.server.data_dir, PathBuf::from("./data"));
        assert_eq!(c.server.max_request_size, 1_048_576);
        assert_eq!(c.security.refresh_grace_ms, 1_000);
        // Kuzzle's `http.cookieAuthentication` default.
        assert!(c.http.cookie_authentication);
        assert!(!c.http.cookie_secure);
        assert!(c.clone().validate().is_ok());
        let mut c = c;
        c.security.refresh_grace_ms = 60_001;
        assert!(c.validate().is_err());
    }

    #[test]
    fn cookie_switches_are_read() {
        let c = Config::from_toml("[http]\ncookie_authentication = false\ncookie_secure = true\n");
        assert_eq!(
            c.map(|c| (c.http.cookie_authentication, c.http.cookie_secure))
                .ok(),
            Some((false, true))
        );
    }

    #[test]
    fn password_min_length_is_read_and_bounded() {
        assert_eq!(Config::default().security.password_min_length, 1);
        let c = Config::from_toml("[security]\npassword_min_length = 12\n");
        assert_eq!(c.map(|c| c.security.password_min_length).ok(), Some(12));
        for bad in [0, 1025] {
            let mut c = Config::default();
            c.security.password_min_length = bad;
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn former_login_limit_name_is_still_read_and_head_size_is_capped() {
        let c = Config::from_toml("[security]\nhttp_logins_per_second_per_ip = 3\n");
        assert_eq!(c.map(|c| c.security.logins_per_second_per_ip).ok(), Some(3));
        let mut c = Config::default();
        c.http.max_head_size = 65_537;
        assert!(c.clone().validate().is_err());
        c.http.max_head_size = 65_536;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn file_then_env_then_flags() {
        let c = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:1\"\n[websocket]\nidle_timeout_ms = 500\n",
        );
        let c = c.unwrap_or_default();
        assert_eq!(c.server.listen, "127.0.0.1:1");
        assert_eq!(c.idle_timeout(), Duration::from_secs(60));
        let cli = Cli::try_parse_from([
            "tollgate",
            "--listen",
            "127.0.0.1:2",
            "--data-dir",
            "/tmp/x",
        ]);
        let cli = cli.unwrap_or_default();
        let merged = Config::load(&cli).unwrap_or_default();
        assert_eq!(merged.server.listen, "127.0.0.1:2");
        assert_eq!(merged.server.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn postgresql_needs_a_usable_url_that_never_shows_its_password() {
        let c = Config::from_toml("[storage]\nengine = \"postgresql\"\n").unwrap_or_default();
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("storage.url is required"), "{e}");
        let url = "postgres://tollgate:s3cret@db.example:5432/tollgate";
        let c = Config::from_toml(&format!(
            "[storage]\nengine = \"postgresql\"\nurl = \"{url}\"\n"
        ))
        .unwrap_or_default();
        assert_eq!(c.storage.url.as_ref().map(DatabaseUrl::expose), Some(url));
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret") && shown.contains("tollgate:***@db.example"));
        assert!(c.validate().is_ok());
        for (toml, wanted) in [
            (
                "engine = \"postgresql\"\nurl = \"postgres://u@h/d?sslmode=require\"",
                "TLS",
            ),
            (
                "engine = \"postgresql\"\nurl = \"postgres://u:pw@h/d?bogus=1\"",
                "storage.url",
            ),
            ("url = \"postgres://u@h/d\"", "storage.engine is \"sqlite\""),
            ("engine = \"postgres\"", "storage.engine must be"),
        ] {
            let c = Config::from_toml(&format!("[storage]\n{toml}\n")).unwrap_or_default();
            let e = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(wanted) && !e.contains("pw"), "{toml}: {e}");
        }
    }

    #[test]
    fn storage_flags_override_the_file() {
        let cli = Cli::try_parse_from([
            "tollgate",
            "--storage-engine",
            "postgresql",
            "--storage-url",
            "postgres://u:pw@127.0.0.1:5432/tollgate",
        ])
        .unwrap_or_default();
        assert!(!format!("{cli:?}").contains("pw"));
        let c = Config::load(&cli).unwrap_or_default();
        assert_eq!(c.storage.engine, "postgresql");
        assert_eq!(
            c.storage.url.as_ref().map(DatabaseUrl::expose),
            Some("postgres://u:pw@127.0.0.1:5432/tollgate")
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("[server]\nlisten_addr = \"x\"\n").is_err());
        for toml in [
            "[server]\nlisten = \"nope\"",
            "[server]\nmax_request_size = 0",
            "[log]\nformat = \"xml\"",
            "[limits]\nconcurrent_requests = 0",
            "[server]\nnode_id = \"a b\"",
            "[server]\nworker_threads = 1025",
        ] {
            let c = Config::from_toml(toml).unwrap_or_default();
            assert!(c.validate().is_err(), "{toml}");
        }
        let c = Config::from_toml("[server]\nworker_threads = 2").unwrap_or_default();
        assert_eq!(
            c.validate().map(|s| s.config.server.worker_threads).ok(),
            Some(2)
        );
    }
}
