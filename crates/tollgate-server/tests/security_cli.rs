//! `tollgate security export` / `import` as an operator runs them: the real binary against real
//! servers (each one the binary too, on its own port), over real sockets.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const PASSWORD: &str = "cli-admin-pw-7d1c3e";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// A server (the binary, in-memory store) killed when dropped.
struct Srv {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Srv {
    /// With `fetch_limit`, `[limits] documents_fetch_count` (searches then need small pages).
    fn start(fetch_limit: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let config = dir.path().join("tollgate.toml");
        let mut text = "[storage]\nengine = \"memory\"\n[security]\nargon2_memory_kib = 1024\n\
                        argon2_iterations = 1\n"
            .to_owned();
        if let Some(limit) = fetch_limit {
            text.push_str(&format!("[limits]\ndocuments_fetch_count = {limit}\n"));
        }
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("config: {e}"));
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ])
            .env("TOLLGATE_DATA_DIR", dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the server: {e}"));
        let srv = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while srv.raw("GET", "/_healthcheck", None, b"").is_none() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        srv
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn raw(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        s.write_all(&bytes).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// One `POST /_query`; the envelope.
    fn query(&self, token: Option<&str>, payload: Value) -> Value {
        let answer = self
            .raw("POST", "/_query", token, payload.to_string().as_bytes())
            .unwrap_or_else(|| panic!("no answer to {payload}"));
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
    }

    /// A call that must succeed; its result.
    fn ok(&self, token: Option<&str>, payload: Value) -> Value {
        let envelope = self.query(token, payload.clone());
        assert_eq!(envelope["status"], 200, "{payload} → {envelope}");
        envelope["result"].clone()
    }

    /// The first admin (`admin` / [`PASSWORD`], default rights restricted) and its token.
    fn secure(&self) -> String {
        self.ok(
            None,
            json!({"controller":"security","action":"createFirstAdmin","_id":"admin","reset":true,
                   "body":{"credentials":{"local":{"username":"admin","password":PASSWORD}}}}),
        );
        self.ok(
            None,
            json!({"controller":"auth","action":"login","strategy":"local",
                   "body":{"username":"admin","password":PASSWORD}}),
        )["jwt"]
            .as_str()
            .unwrap_or_else(|| panic!("login: no jwt"))
            .to_owned()
    }

    /// A user's `_source` without `_kuzzle_info` (compact JSON), or `None` when it does not exist.
    fn user(&self, token: &str, id: &str) -> Option<String> {
        let envelope = self.query(
            Some(token),
            json!({"controller":"security","action":"getUser","_id":id}),
        );
        let mut source = envelope["result"]["_source"].as_object()?.clone();
        source.remove("_kuzzle_info");
        Some(Value::Object(source).to_string())
    }

    /// `kind:id` → `_version` of every role, profile and user.
    fn versions(&self, token: &str) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for (kind, action) in [
            ("role", "searchRoles"),
            ("profile", "searchProfiles"),
            ("user", "searchUsers"),
        ] {
            let result = self.ok(
                Some(token),
                json!({"controller":"security","action":action,"size":100}),
            );
            for hit in result["hits"].as_array().into_iter().flatten() {
                all.insert(
                    format!("{kind}:{}", hit["_id"].as_str().unwrap_or_default()),
                    hit["_version"].as_u64().unwrap_or(0),
                );
            }
        }
        all
    }
}

/// Runs `tollgate <args>` with `env` and `stdin`, nothing else from the environment that matters.
fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("TOLLGATE_TOKEN")
        .env_remove("TOLLGATE_PASSWORD")
        .env_remove("TOLLGATE_USERNAME")
        .env_remove("TOLLGATE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A command that does not read stdin (an export, a refused URL) may exit first: a broken
        // pipe here is not a failure of the test.
        let _ = input.write_all(stdin.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code, stdout, stderr.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (Option<i32>, String, String) {
    let out = cli(args, env, stdin);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `tollgate security export` of `srv` with a token; its stdout.
fn export(srv: &Srv, token: &str) -> String {
    let (code, out, err) = run(
        &["security", "export", "--url", &srv.url(), "--token", token],
        &[],
        "",
    );
    assert_eq!(code, Some(0), "export failed: {err}");
    out
}

/// The model of the first server: roles with extra keys and a non-native controller (stored with
/// `force`), profiles with `restrictedTo` and `rateLimit`, a built-in profile changed, users with
/// several profiles and extra content (one with credentials).
fn seed(srv: &Srv, token: &str) {
    for collection in ["bus", "taxi"] {
        srv.ok(
            Some(token),
            json!({"controller":"collection","action":"create","index":"nyc","collection":collection}),
        );
    }
    let writes = [
        json!({"action":"createRole","_id":"editor","body":{"controllers":{"document":{"actions":{"get":true,"search":true}},"collection":{"actions":{"list":true}}},"note":"editors"}}),
        json!({"action":"createRole","_id":"viewer","body":{"controllers":{"document":{"actions":{"get":true}}}}}),
        json!({"action":"createRole","_id":"plugin","force":true,"body":{"controllers":{"myplugin":{"actions":{"run":true}}}}}),
        json!({"action":"createProfile","_id":"editors","body":{"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc","collections":["taxi","bus"]}]},{"roleId":"viewer"}],"rateLimit":10,"tags":["staff"]}}),
        json!({"action":"createProfile","_id":"auditors","body":{"policies":[{"roleId":"viewer","restrictedTo":[{"index":"nyc"}]},{"roleId":"plugin"}],"rateLimit":3}}),
        json!({"action":"createOrReplaceProfile","_id":"default","body":{"policies":[{"roleId":"default"}],"rateLimit":5,"level":2}}),
        json!({"action":"createUser","_id":"alice","body":{"content":{"profileIds":["editors","auditors"],"name":"Alice","address":{"zip":"69001","city":"Lyon"},"tags":["b","a"]}}}),
        json!({"action":"createUser","_id":"bob","body":{"content":{"profileIds":["default","editors"],"team":null,"level":3},"credentials":{"local":{"username":"bob","password":"bob-pw-9f2e"}}}}),
        json!({"action":"createUser","_id":"carol","body":{"content":{"profileIds":["auditors"],"name":"Çarol"}}}),
    ];
    for mut write in writes {
        write["controller"] = json!("security");
        srv.ok(Some(token), write);
    }
}

/// Export, import into a fresh server (dry run first), export again: the same bytes. A second
/// import changes nothing.
#[test]
fn export_import_round_trip_is_exact_and_a_second_import_writes_nothing() {
    // Searches on the source are limited to 3 documents: the export reads page after page.
    let a = Srv::start(Some(3));
    let b = Srv::start(None);
    let ta = a.secure();
    let tb = b.secure();
    seed(&a, &ta);

    // Export with a login (password from the environment), then with a token: the same bytes.
    let (code, exported, err) = run(
        &[
            "security",
            "export",
            "--url",
            &a.url(),
            "--username",
            "admin",
        ],
        &[("TOLLGATE_PASSWORD", PASSWORD)],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "", "nothing on stderr");
    assert_eq!(export(&a, &ta), exported, "two exports are byte-identical");
    for secret in [
        PASSWORD,
        "bob-pw-9f2e",
        "kauth-",
        "_kuzzle_info",
        "_version",
        "$argon2",
    ] {
        assert!(!exported.contains(secret), "export holds {secret}");
    }
    let doc: Value = serde_json::from_str(&exported).unwrap_or_else(|e| panic!("{e}: {exported}"));
    let ids = |kind: &str| -> Vec<String> {
        doc[kind]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        ids("roles"),
        [
            "admin",
            "anonymous",
            "default",
            "editor",
            "plugin",
            "viewer"
        ]
    );
    assert_eq!(
        ids("profiles"),
        ["admin", "anonymous", "auditors", "default", "editors"]
    );
    assert_eq!(
        doc["profiles"]["editors"].to_string(),
        r#"{"policies":[{"roleId":"editor","restrictedTo":[{"index":"nyc","collections":["taxi","bus"]}]},{"roleId":"viewer"}],"rateLimit":10,"tags":["staff"]}"#
    );
    assert_eq!(ids("users"), ["admin", "alice", "bob", "carol"]);
    assert_eq!(
        doc["users"]["alice"].to_string(),
        r#"{"profileIds":["editors","auditors"],"name":"Alice","address":{"zip":"69001","city":"Lyon"},"tags":["b","a"]}"#
    );
    assert_eq!(
        doc["users"]["bob"].to_string(),
        r#"{"profileIds":["default","editors"],"team":null,"level":3}"#
    );
    assert_eq!(
        doc["roles"]["editor"].to_string(),
        r#"{"controllers":{"document":{"actions":{"get":true,"search":true}},"collection":{"actions":{"list":true}}},"note":"editors"}"#
    );
    let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(file.path(), &exported).unwrap_or_else(|e| panic!("{e}"));
    let path = file.path().to_string_lossy().into_owned();

    // The target knows the indexes, not the plugin's controller.
    for collection in ["bus", "taxi"] {
        b.ok(
            Some(&tb),
            json!({"controller":"collection","action":"create","index":"nyc","collection":collection}),
        );
    }
    let untouched = export(&b, &tb);
    let versions = b.versions(&tb);

    // A dry run without --force: the server's refusal, for the role only; nothing written.
    let (code, out, err) = run(
        &["security", "import", "--url", &b.url(), "--dry-run", &path],
        &[("TOLLGATE_TOKEN", &tb)],
        "",
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("role plugin: refused\n"), "{out}");
    assert!(
        err.contains("tollgate: role plugin refused: security.role.unknown_controller (400): Trying to set role plugin with a non-existing controller 'myplugin'. [--force accepts it]"),
        "{err}"
    );
    assert!(
        !err.contains(&tb) && !out.contains(&tb),
        "the token is not printed"
    );
    assert_eq!(b.versions(&tb), versions, "a dry run writes nothing");

    // A dry run with --force, from stdin: every change validated, nothing written.
    let (code, dry, err) = run(
        &[
            "security",
            "import",
            "--url",
            &b.url(),
            "--dry-run",
            "--force",
        ],
        &[("TOLLGATE_TOKEN", &tb)],
        &exported,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        dry,
        "dry run: nothing was written\n\
         dry run: users are not validated by the server, only their profiles are checked\n\
         role admin: unchanged\n\
         role anonymous: unchanged\n\
         role default: unchanged\n\
         role editor: created\n\
         role plugin: created\n\
         role viewer: created\n\
         profile admin: unchanged\n\
         profile anonymous: unchanged\n\
         profile auditors: created (not validated: it names role viewer, which this import creates)\n\
         profile default: replaced\n\
         profile editors: created (not validated: it names role editor, which this import creates)\n\
         user admin: unchanged\n\
         user alice: created\n\
         user bob: created\n\
         user carol: created\n\
         roles: 3 created, 0 replaced, 3 unchanged\n\
         profiles: 2 created, 1 replaced, 2 unchanged\n\
         users: 3 created, 0 replaced, 1 unchanged\n"
    );
    assert_eq!(b.versions(&tb), versions, "a dry run writes nothing");
    assert_eq!(export(&b, &tb), untouched);

    // The import, logging in: the changes of the dry run, written.
    let (code, out, err) = run(
        &[
            "security",
            "import",
            "--url",
            &b.url(),
            "--force",
            "--username",
            "admin",
            "--password",
            PASSWORD,
            &path,
        ],
        &[],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "role admin: unchanged\n\
         role anonymous: unchanged\n\
         role default: unchanged\n\
         role editor: created\n\
         role plugin: created\n\
         role viewer: created\n\
         profile admin: unchanged\n\
         profile anonymous: unchanged\n\
         profile auditors: created\n\
         profile default: replaced\n\
         profile editors: created\n\
         user admin: unchanged\n\
         user alice: created\n\
         user bob: created\n\
         user carol: created\n\
         roles: 3 created, 0 replaced, 3 unchanged\n\
         profiles: 2 created, 1 replaced, 2 unchanged\n\
         users: 3 created, 0 replaced, 1 unchanged\n"
    );
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    let after = b.versions(&tb);
    assert_eq!(
        after["role:admin"], versions["role:admin"],
        "unchanged: not written"
    );
    assert_eq!(after["profile:default"], versions["profile:default"] + 1);
    assert_eq!(after["role:editor"], 1);
    assert_eq!(after["user:admin"], versions["user:admin"]);
    assert_eq!(after["user:alice"], 1);
    // No credentials are copied: bob exists on the target but cannot log in.
    let login = b.query(
        None,
        json!({"controller":"auth","action":"login","strategy":"local",
               "body":{"username":"bob","password":"bob-pw-9f2e"}}),
    );
    assert_eq!(login["status"], 401, "{login}");

    // The round trip is exact.
    assert_eq!(export(&b, &tb), exported, "export → import → export");

    // A second import: everything unchanged, nothing written.
    let (code, out, err) = run(
        &["security", "import", "--url", &b.url(), "--force", &path],
        &[("TOLLGATE_TOKEN", &tb)],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with(
            "roles: 0 created, 0 replaced, 6 unchanged\nprofiles: 0 created, 0 replaced, 5 unchanged\n\
             users: 0 created, 0 replaced, 4 unchanged\n"
        ),
        "{out}"
    );
    assert_eq!(out.matches(": unchanged\n").count(), 15, "{out}");
    assert_eq!(b.versions(&tb), after, "the second import writes nothing");
}

/// A change the lock-out guard refuses: the Kuzzle error, a non-zero exit, nothing written, the
/// documents after it skipped; `--allow-lockout` makes it.
#[test]
fn import_refused_by_the_lockout_guard_exits_non_zero() {
    // No admin yet: the anonymous role is what lets anyone administer the rights.
    let srv = Srv::start(None);
    let model = r#"{"roles":{"anonymous":{"controllers":{"auth":{"actions":{"login":true}}}},"extra":{"controllers":{"server":{"actions":{"now":true}}}}}}"#;
    let role_version = |id: &str| {
        srv.query(
            None,
            json!({"controller":"security","action":"getRole","_id":id}),
        )["result"]["_version"]
            .as_u64()
    };
    for dry in [true, false] {
        let mut args = vec!["security", "import", "--url"];
        let url = srv.url();
        args.push(&url);
        if dry {
            args.push("--dry-run");
        }
        let (code, out, err) = run(&args, &[], model);
        assert_eq!(code, Some(1), "dry run {dry}: {out}{err}");
        assert!(
            err.contains(
                "tollgate: role anonymous refused: security.rights.lockout (412): This change would leave no user able to call security:updateProfile and security:updateRole."
            ),
            "{err}"
        );
        assert!(
            err.contains("[--allow-lockout makes the change anyway]"),
            "{err}"
        );
        assert!(out.contains("role anonymous: refused\n"), "{out}");
        if dry {
            // A dry run goes on, and says what the rest would do.
            assert!(out.contains("role extra: created\n"), "{out}");
        } else {
            assert!(out.contains("role extra: skipped\n"), "{out}");
            assert!(err.contains("the import stopped there"), "{err}");
        }
        assert_eq!(role_version("anonymous"), Some(1), "nothing written");
        assert_eq!(role_version("extra"), None, "nothing written");
    }
    // Alone: once it is made, anonymous can no longer write anything.
    let url = srv.url();
    let (code, out, err) = run(
        &["security", "import", "--url", &url, "--allow-lockout"],
        &[],
        r#"{"roles":{"anonymous":{"controllers":{"auth":{"actions":{"login":true}}}}}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("role anonymous: replaced\n"), "{out}");
    assert_eq!(
        role_version("anonymous"),
        None,
        "anonymous may no longer read roles"
    );
}

/// Bad credentials and unreachable servers: a clear message on stderr, the Kuzzle error when there
/// is one, nothing on stdout, no secret printed.
#[test]
fn bad_credentials_and_unreachable_servers_exit_non_zero() {
    let srv = Srv::start(None);
    let token = srv.secure();
    let versions = srv.versions(&token);
    let url = srv.url();
    let forged = "kauth-bogus.token.value";
    let wrong = "wrong-pw-41aa0c";
    let empty = r#"{"roles":{"admin":{"controllers":{}}}}"#;
    /// Arguments, environment, exit code, the start of stderr.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["security", "export", "--url", &url, "--token", forged],
            vec![],
            77,
            "tollgate: security:searchRoles: security.token.invalid (401)",
        ),
        (
            vec!["security", "import", "--url", &url],
            vec![("TOLLGATE_TOKEN", forged)],
            77,
            "tollgate: security:searchRoles: security.token.invalid (401)",
        ),
        (
            vec!["security", "export", "--url", &url, "--username", "admin"],
            vec![("TOLLGATE_PASSWORD", wrong)],
            77,
            "tollgate: auth:login: plugin.strategy.missing_user (401): wrong username or password",
        ),
        (
            vec!["security", "export", "--url", &url],
            vec![],
            77,
            "tollgate: security:searchRoles: security.rights.unauthorized (401)",
        ),
        (
            vec!["security", "export", "--url", "http://127.0.0.1:1"],
            vec![],
            69,
            "tollgate: security:searchRoles: cannot connect to 127.0.0.1:1",
        ),
        (
            vec!["security", "export", "--url", "https://127.0.0.1:1"],
            vec![],
            64,
            "tollgate: --url: https is not supported",
        ),
    ];
    for (args, env, expected, message) in cases {
        let (code, out, err) = run(&args, &env, empty);
        assert_eq!(code, Some(expected), "{args:?}: {err}");
        assert!(err.starts_with(message), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}: nothing on stdout");
        for secret in [forged, wrong, token.as_str()] {
            assert!(!err.contains(secret), "{args:?} printed a secret: {err}");
        }
    }
    // Not a security export: refused before anything is sent.
    let (code, _, err) = run(
        &["security", "import", "--url", &url, "--token", &token],
        &[],
        r#"{"users":{"u":{"name":"x"}}}"#,
    );
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("users.u has no profileIds (a non-empty array of profile ids)"),
        "{err}"
    );
    assert_eq!(srv.versions(&token), versions, "nothing written");
}

/// Users: a profile missing on the target (checked by the tool in a dry run, refused by the server
/// in a real import), a stored key the file lacks (updateUser cannot remove it: said in the
/// summary), a profile change the lock-out guard refuses, and `--no-users` on both commands.
#[test]
fn users_refused_inexact_locked_out_and_left_out() {
    let srv = Srv::start(None);
    let token = srv.secure();
    let url = srv.url();
    srv.ok(
        Some(&token),
        json!({"controller":"security","action":"createUser","_id":"dave",
               "body":{"content":{"profileIds":["default"],"legacy":1,"name":"D"}}}),
    );
    let model = r#"{"users":{"dave":{"profileIds":["default"],"name":"Dave"},"erin":{"profileIds":["default","ghost"],"name":"E"},"frank":{"profileIds":["default"]}}}"#;
    let versions = srv.versions(&token);

    // A dry run: erin refused by the tool's own check, the rest predicted; nothing written.
    let (code, out, err) = run(
        &["security", "import", "--url", &url, "--dry-run"],
        &[("TOLLGATE_TOKEN", &token)],
        model,
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        out,
        "dry run: nothing was written\n\
         dry run: users are not validated by the server, only their profiles are checked\n\
         user dave: replaced (not exactly as in the file: updateUser cannot remove its key(s) \"legacy\")\n\
         user erin: refused\n\
         user frank: created\n\
         roles: 0 created, 0 replaced, 0 unchanged\n\
         profiles: 0 created, 0 replaced, 0 unchanged\n\
         users: 1 created, 1 replaced, 0 unchanged, 1 refused, 1 not exactly as in the file\n"
    );
    assert!(
        err.contains("tollgate: user erin refused: profile ghost does not exist on the server"),
        "{err}"
    );
    assert_eq!(srv.versions(&token), versions, "a dry run writes nothing");

    // The import: dave updated (legacy kept), erin refused by the server, frank skipped.
    let (code, out, err) = run(
        &["security", "import", "--url", &url],
        &[("TOLLGATE_TOKEN", &token)],
        model,
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(
            "tollgate: user erin refused: security.profile.not_found (404): Profile \"ghost\" not found."
        ),
        "{err}"
    );
    assert!(
        out.ends_with(
            "user dave: replaced (not exactly as in the file: updateUser cannot remove its key(s) \"legacy\")\n\
             user erin: refused\n\
             user frank: skipped\n\
             roles: 0 created, 0 replaced, 0 unchanged\n\
             profiles: 0 created, 0 replaced, 0 unchanged\n\
             users: 0 created, 1 replaced, 0 unchanged, 1 refused, 1 skipped, 1 not exactly as in the file\n"
        ),
        "{out}"
    );
    assert_eq!(
        srv.user(&token, "dave").as_deref(),
        Some(r#"{"profileIds":["default"],"legacy":1,"name":"Dave"}"#)
    );
    assert_eq!(srv.user(&token, "erin"), None);
    assert_eq!(srv.user(&token, "frank"), None);
    let after = srv.versions(&token);
    assert_eq!(after["user:dave"], versions["user:dave"] + 1);

    // Again without erin: dave is not written again (the merge would change nothing).
    let (code, out, err) = run(
        &["security", "import", "--url", &url],
        &[("TOLLGATE_TOKEN", &token)],
        r#"{"users":{"dave":{"profileIds":["default"],"name":"Dave"},"frank":{"profileIds":["default"]}}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("user dave: unchanged (not exactly as in the file"),
        "{out}"
    );
    assert!(out.contains("user frank: created\n"), "{out}");
    assert_eq!(srv.versions(&token)["user:dave"], after["user:dave"]);

    // --no-users: the file's users are ignored; the export has no "users".
    let (code, out, err) = run(
        &["security", "import", "--url", &url, "--no-users"],
        &[("TOLLGATE_TOKEN", &token)],
        r#"{"users":{"gina":{"profileIds":["default"]}}}"#,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("user"), "{out}");
    assert_eq!(srv.user(&token, "gina"), None);
    let (code, out, err) = run(
        &["security", "export", "--url", &url, "--no-users"],
        &[("TOLLGATE_TOKEN", &token)],
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        doc.get("users").is_none() && doc.get("roles").is_some(),
        "{out}"
    );

    // The only admin loses its profile: the lock-out guard refuses; --allow-lockout passes.
    let demote = r#"{"users":{"admin":{"profileIds":["default"]}}}"#;
    let (code, out, err) = run(
        &["security", "import", "--url", &url],
        &[("TOLLGATE_TOKEN", &token)],
        demote,
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("tollgate: user admin refused: security.rights.lockout (412)")
            && err.contains("[--allow-lockout makes the change anyway]"),
        "{err}"
    );
    assert_eq!(
        srv.user(&token, "admin").as_deref(),
        Some(r#"{"profileIds":["admin"]}"#)
    );
    let (code, out, err) = run(
        &["security", "import", "--url", &url, "--allow-lockout"],
        &[("TOLLGATE_TOKEN", &token)],
        demote,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("user admin: replaced\n"), "{out}");
}
