//! PostgreSQL for the end-to-end tests: one schema per test in the database of
//! `TOLLGATE_TEST_PG_URL`, the URL a node uses to store its data there, the listener connections of
//! a node (to cut them), and stopping and starting the whole cluster (`TOLLGATE_TEST_PG_RESTART`).
//!
//! Each test gets a schema of its own, `tgit_<test>`, dropped before it is created (should an
//! earlier run have left it) and by [`PgSchema::finish`]. A node reaches it through the URL's
//! `options=-c search_path=<schema>` parameter, like the storage crate's own tests; its
//! `application_name` is `<schema>-<node>` (the listener's is that and `-listen`), which is how a
//! test finds a node's connections in `pg_stat_activity`.

use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_postgres::NoTls;
use tollgate_server::Config;

use crate::missing_service;

/// The database the PostgreSQL tests use (`.ci/pg-start` prints one).
pub const URL_VAR: &str = "TOLLGATE_TEST_PG_URL";

/// A command that stops or starts the cluster of [`URL_VAR`]: the program and its arguments,
/// separated by spaces, to which `stop` or `start` is appended (`.ci/pg-restart <dir>`, set by
/// `.ci/run`).
pub const RESTART_VAR: &str = "TOLLGATE_TEST_PG_RESTART";

/// How long stopping or starting the cluster may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(90);

/// The value of `var`, or the test fails with [`missing_service`].
fn required_var(test: &str, var: &str, service: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => missing_service(test, service, &format!("{var} is not set")),
    }
}

/// `text` percent-encoded for a URL's query string (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `url` with the query parameters `params` added.
fn with_params(url: &str, params: &[(&str, &str)]) -> String {
    let mut url = url.to_owned();
    for (key, value) in params {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(key);
        url.push('=');
        url.push_str(&encode(value));
    }
    url
}

/// The tests of this process share one cluster: a test that stops it holds this lock exclusively,
/// every other PostgreSQL test holds it shared.
static CLUSTER: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

/// A test's hold on the cluster.
enum ClusterHold {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

/// A schema of its own for one test.
pub struct PgSchema {
    base_url: String,
    /// `tgit_<test>`.
    pub schema: String,
    _hold: ClusterHold,
}

impl PgSchema {
    /// Creates (afresh) the schema of `test`. Fails the test with [`missing_service`] when
    /// [`URL_VAR`] is not set. Waits while a test that restarts the cluster runs.
    pub async fn create(test: &str) -> Self {
        let hold = ClusterHold::Shared(Arc::clone(&CLUSTER).read_owned().await);
        Self::create_holding(test, hold).await
    }

    /// [`PgSchema::create`] for a test that stops the cluster: no other PostgreSQL test of this
    /// process runs until it is dropped.
    pub async fn create_exclusive(test: &str) -> Self {
        let hold = ClusterHold::Exclusive(Arc::clone(&CLUSTER).write_owned().await);
        Self::create_holding(test, hold).await
    }

    async fn create_holding(test: &str, hold: ClusterHold) -> Self {
        let base_url = required_var(test, URL_VAR, "PostgreSQL");
        // Short enough for a listener's application name (`<schema>-<node>-listen`) to stay
        // within PostgreSQL's 63 bytes.
        let name: String = test
            .trim_start_matches("scaleout_")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        let pg = Self {
            base_url,
            schema: format!("tgit_{name}"),
            _hold: hold,
        };
        pg.execute(&format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            pg.schema
        ))
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create the schema {}: {e}", pg.schema));
        pg
    }

    /// The URL node `node` stores its data with: the test's schema, its own application name.
    pub fn url(&self, node: &str) -> String {
        with_params(
            &self.base_url,
            &[
                ("options", &format!("-c search_path={}", self.schema)),
                ("application_name", &self.app(node)),
            ],
        )
    }

    /// The `application_name` of `node`'s connections (its listener's is this and `-listen`).
    pub fn app(&self, node: &str) -> String {
        format!("{}-{node}", self.schema)
    }

    /// Configures a server to store its data in this schema as node `node` (its node id too).
    pub fn configure(&self, config: &mut Config, node: &str) {
        config.storage.engine = "postgresql".to_owned();
        config.storage.url = Some(self.url(node).as_str().into());
        config.server.node_id = Some(format!("knode-{node}"));
    }

    /// A new connection to the database, outside the test's schema (a connection made before a
    /// restart of the cluster is gone after it).
    pub async fn admin(&self) -> Result<tokio_postgres::Client, String> {
        let (client, connection) = tokio_postgres::connect(&self.base_url, NoTls)
            .await
            .map_err(|e| describe(&e))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Runs `sql` (statements without parameters) on a new connection.
    pub async fn execute(&self, sql: &str) -> Result<(), String> {
        self.admin()
            .await?
            .batch_execute(sql)
            .await
            .map_err(|e| describe(&e))
    }

    /// The backend pids of `node`'s `LISTEN` connection (one when it is listening).
    pub async fn listener_pids(&self, node: &str) -> Vec<i32> {
        let admin = self
            .admin()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = $1 AND query LIKE 'LISTEN%'",
                &[&format!("{}-listen", self.app(node))],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_stat_activity: {}", describe(&e)));
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Ends `node`'s `LISTEN` connection with `pg_terminate_backend`; returns how many backends
    /// were terminated.
    pub async fn terminate_listener(&self, node: &str) -> usize {
        let admin = self
            .admin()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1 AND query LIKE 'LISTEN%'",
                &[&format!("{}-listen", self.app(node))],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_terminate_backend: {}", describe(&e)));
        rows.iter().filter(|r| r.get::<_, bool>(0)).count()
    }

    /// Drops the schema.
    pub async fn finish(self) {
        let _ = self
            .execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await;
    }
}

/// An error with its causes.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Stops and starts the cluster of [`URL_VAR`] with the command of [`RESTART_VAR`].
pub struct PgControl {
    program: String,
    args: Vec<String>,
}

impl PgControl {
    /// The command of [`RESTART_VAR`]; fails the test with [`missing_service`] without it.
    pub fn from_env(test: &str) -> Self {
        let line = required_var(test, RESTART_VAR, "a command restarting PostgreSQL");
        let mut words = line.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .unwrap_or_else(|| panic!("{test}: {RESTART_VAR} is blank"));
        Self {
            program,
            args: words.collect(),
        }
    }

    /// Runs the command with `action` (`stop` or `start`) appended, to completion. Blocking: call
    /// it from `spawn_blocking`.
    fn run(&self, action: &str) -> Result<(), String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(action)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {} {action}: {e}", self.program))?;
        let deadline = Instant::now() + CTL_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} {action}: killed after {CTL_TIMEOUT:?}",
                        self.program
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("{} {action}: {e}", self.program)),
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{} {action}: {e}", self.program))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {action}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.program,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    async fn run_async(&self, action: &'static str) {
        let this = Self {
            program: self.program.clone(),
            args: self.args.clone(),
        };
        tokio::task::spawn_blocking(move || this.run(action))
            .await
            .unwrap_or_else(|e| panic!("{RESTART_VAR} task: {e}"))
            .unwrap_or_else(|e| panic!("{RESTART_VAR}: {e}"));
    }

    /// Stops the cluster (fast shutdown: every connection is closed). The cluster is started again
    /// by [`Down::start`], or when the guard is dropped (a test that failed meanwhile), so that the
    /// tests after it find it running.
    pub async fn stop(&self) -> Down<'_> {
        self.run_async("stop").await;
        Down {
            ctl: self,
            up: false,
        }
    }
}

/// The cluster stopped by [`PgControl::stop`].
pub struct Down<'a> {
    ctl: &'a PgControl,
    up: bool,
}

impl Down<'_> {
    /// Starts the cluster again, on the same port.
    pub async fn start(mut self) {
        self.up = true;
        self.ctl.run_async("start").await;
    }
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if !self.up
            && let Err(e) = self.ctl.run("start")
        {
            eprintln!("{RESTART_VAR}: cannot start PostgreSQL again: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_percent_encoded() {
        assert_eq!(
            with_params(
                "postgres://u@h:1/db",
                &[
                    ("options", "-c search_path=tgit_x"),
                    ("application_name", "a-b")
                ]
            ),
            "postgres://u@h:1/db?options=-c%20search_path%3Dtgit_x&application_name=a-b"
        );
        assert_eq!(
            with_params("postgres://u@h:1/db?sslmode=disable", &[("k", "v")]),
            "postgres://u@h:1/db?sslmode=disable&k=v"
        );
    }
}
