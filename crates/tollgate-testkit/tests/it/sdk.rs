//! The official Kuzzle JavaScript SDK (`kuzzle-sdk` 7.17.1, pinned in `sdk-tests/package.json`)
//! drives a real server over its `WebSocket` and `Http` protocols, with Node.js scripts:
//! `sdk-tests/profile_lifecycle.mjs` (the security profile lifecycle), `sdk-tests/auth_flow.mjs`
//! (createFirstAdmin with reset, login, checkToken, getCurrentUser, logout, revoked token) and
//! `sdk-tests/refresh_token.mjs` (`kuzzle.auth.refreshToken()`: the SDK takes the new token, the old
//! one works during the grace and is refused after it, no `TokenExpired` for the old one; then the
//! SDK's `authenticator` logging in again when its token is refused, and on WebSocket when the
//! server pushes `TokenExpired`) and
//! `sdk-tests/credentials.mjs` (the local strategy's credentials API, updateSelf, a password change
//! revoking the other token) and
//! `sdk-tests/api_keys.mjs` (API keys: created, searched, used as the SDK's token, deleted) and
//! `sdk-tests/users.mjs` (searchUsers with a query, paged by the SDK's `next()` through from/size,
//! sort + `search_after` and scroll; mGetUsers, checkRights, getUserStrategies; searchProfiles and
//! searchRoles with queries, scrollProfiles; the mapping actions and refresh) and
//! `sdk-tests/bulk.mjs` (createRestrictedUser, replaceUser, revokeTokens, mDeleteUsers with a partial
//! failure, mDeleteProfiles, mDeleteRoles, security writes with `refresh: true`) and
//! `sdk-tests/cookie_auth.mjs` (the SDK's browser cookie mode, `cookieAuth: true` over `Http`, with
//! the `XMLHttpRequest` and cookie jar of `sdk-tests/xhr_shim.mjs`: login without jwt, the cookie
//! as the only credential, checkToken, refreshToken, logout clearing it; HTTP only).
//!
//! Each script runs against a server on the default store (SQLite) and, in the `_postgresql`
//! variants, against a node storing its data in PostgreSQL (a schema of its own in
//! `TOLLGATE_TEST_PG_URL`, `tollgate_testkit::pg`).
//!
//! Without Node.js on the PATH when the tests are built, they are ignored (cfg `no_node`, set by
//! `build.rs`), which cargo's summary shows; so are the `_postgresql` variants without
//! `TOLLGATE_TEST_PG_URL` (cfg `no_pg`). With `CI=true` they always run: a missing Node.js or
//! PostgreSQL, or an `npm ci` that fails, fails them. When `sdk-tests/node_modules` lacks the SDK,
//! `npm ci` installs it first (once per test run).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tollgate_testkit::pg::PgSchema;
use tollgate_testkit::{TestServer, missing_service};

/// How long one run of the SDK script may take (the script gives up by itself after 20 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `npm ci` may take.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// The result of the one `npm ci` of this test run, shared by the tests.
static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();

/// The repository root (`crates/tollgate-testkit/../..`).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or_else(|| panic!("no repository root above {}", manifest.display()))
        .to_path_buf()
}

/// A finished (or killed) child process.
struct Finished {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `command` to completion, killing it after `timeout`. Blocking.
fn run(mut command: Command, timeout: Duration) -> Result<Finished, String> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let (success, status) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.success(), status.to_string()),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("killed after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("wait failed: {e}"));
            }
        }
    };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok(Finished {
        success,
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the SDK with `npm ci` in `sdk-tests/` unless it is already there. Blocking.
fn install_sdk(sdk_dir: &Path) -> Result<(), String> {
    if sdk_dir
        .join("node_modules/kuzzle-sdk/package.json")
        .is_file()
    {
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(sdk_dir);
    let out = run(npm, NPM_TIMEOUT)?;
    if out.success {
        Ok(())
    } else {
        Err(format!(
            "`npm ci --no-audit --no-fund` failed in {}\n{}",
            sdk_dir.display(),
            out.describe()
        ))
    }
}

/// The store of the server an SDK script runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The default: SQLite in the server's data directory.
    Default,
    /// A fresh PostgreSQL schema.
    Postgres,
}

/// Runs the SDK script `sdk-tests/<script>` with the SDK's `protocol` (`websocket` or `http`)
/// against a fresh server, and checks that it prints `ok <protocol>` and exits 0.
async fn run_sdk_script(test: &str, script: &str, protocol: &'static str) {
    run_sdk_script_on(test, script, protocol, Backend::Default).await;
}

/// [`run_sdk_script`] against a server on `backend`.
async fn run_sdk_script_on(test: &str, script: &str, protocol: &'static str, backend: Backend) {
    if !node_available() {
        missing_service(test, "Node.js", "`node --version` failed");
    }
    let root = repo_root();
    let sdk_dir = root.join("sdk-tests");
    let installed =
        tokio::task::spawn_blocking(move || INSTALL.get_or_init(|| install_sdk(&sdk_dir)).clone())
            .await
            .unwrap_or_else(|e| panic!("npm ci task: {e}"));
    if let Err(e) = installed {
        panic!("{test}: cannot install the Kuzzle SDK: {e}");
    }

    let pg = match backend {
        Backend::Default => None,
        Backend::Postgres => Some(PgSchema::create(test).await),
    };
    let server = match &pg {
        None => TestServer::start().await,
        // The node id stays the harness's: the scripts do not look at it.
        Some(pg) => {
            TestServer::start_with(
                |c| {
                    pg.configure(c, "a");
                    c.server.node_id = Some(tollgate_testkit::NODE.to_owned());
                },
                vec![],
            )
            .await
        }
    };
    let port = server.addr.port().to_string();
    let mut node = Command::new("node");
    node.arg(Path::new("sdk-tests").join(script))
        .args(["127.0.0.1", port.as_str(), protocol])
        .current_dir(&root);
    let out = tokio::task::spawn_blocking(move || run(node, NODE_TIMEOUT))
        .await
        .unwrap_or_else(|e| panic!("node task: {e}"))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    server.stop().await;
    if let Some(pg) = pg {
        pg.finish().await;
    }

    let expected = format!("ok {protocol}");
    assert!(
        out.success && out.stdout.lines().any(|l| l.trim() == expected),
        "{test}: the SDK script did not print `{expected}` and exit 0\n{}",
        out.describe()
    );
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_profile_lifecycle_websocket() {
    run_sdk_script(
        "sdk_profile_lifecycle_websocket",
        "profile_lifecycle.mjs",
        "websocket",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_profile_lifecycle_http() {
    run_sdk_script(
        "sdk_profile_lifecycle_http",
        "profile_lifecycle.mjs",
        "http",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_auth_flow_websocket() {
    run_sdk_script("sdk_auth_flow_websocket", "auth_flow.mjs", "websocket").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_auth_flow_http() {
    run_sdk_script("sdk_auth_flow_http", "auth_flow.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_credentials_websocket() {
    run_sdk_script("sdk_credentials_websocket", "credentials.mjs", "websocket").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_credentials_http() {
    run_sdk_script("sdk_credentials_http", "credentials.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_refresh_token_websocket() {
    run_sdk_script(
        "sdk_refresh_token_websocket",
        "refresh_token.mjs",
        "websocket",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_refresh_token_http() {
    run_sdk_script("sdk_refresh_token_http", "refresh_token.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_api_keys_websocket() {
    run_sdk_script("sdk_api_keys_websocket", "api_keys.mjs", "websocket").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_bulk_websocket() {
    run_sdk_script("sdk_bulk_websocket", "bulk.mjs", "websocket").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_api_keys_http() {
    run_sdk_script("sdk_api_keys_http", "api_keys.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_bulk_http() {
    run_sdk_script("sdk_bulk_http", "bulk.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_users_websocket() {
    run_sdk_script("sdk_users_websocket", "users.mjs", "websocket").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_users_http() {
    run_sdk_script("sdk_users_http", "users.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
async fn sdk_cookie_auth_http() {
    run_sdk_script("sdk_cookie_auth_http", "cookie_auth.mjs", "http").await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
#[cfg_attr(
    all(no_pg, not(no_node)),
    ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)"
)]
async fn sdk_profile_lifecycle_websocket_postgresql() {
    run_sdk_script_on(
        "sdk_profile_lifecycle_websocket_postgresql",
        "profile_lifecycle.mjs",
        "websocket",
        Backend::Postgres,
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
#[cfg_attr(
    all(no_pg, not(no_node)),
    ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)"
)]
async fn sdk_profile_lifecycle_http_postgresql() {
    run_sdk_script_on(
        "sdk_profile_lifecycle_http_postgresql",
        "profile_lifecycle.mjs",
        "http",
        Backend::Postgres,
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
#[cfg_attr(
    all(no_pg, not(no_node)),
    ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)"
)]
async fn sdk_auth_flow_websocket_postgresql() {
    run_sdk_script_on(
        "sdk_auth_flow_websocket_postgresql",
        "auth_flow.mjs",
        "websocket",
        Backend::Postgres,
    )
    .await;
}

#[tokio::test]
#[cfg_attr(no_node, ignore = "Node.js not found on the PATH")]
#[cfg_attr(
    all(no_pg, not(no_node)),
    ignore = "TOLLGATE_TEST_PG_URL not set (PostgreSQL)"
)]
async fn sdk_auth_flow_http_postgresql() {
    run_sdk_script_on(
        "sdk_auth_flow_http_postgresql",
        "auth_flow.mjs",
        "http",
        Backend::Postgres,
    )
    .await;
}
