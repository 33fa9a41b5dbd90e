//! The `tollgate` binary as an operator runs it: flags, environment, exit codes, signals.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (vec!["--listen", "not-an-address"], vec![]),
        (vec![], vec![("TOLLGATE_LISTEN", "nope:x")]),
        (vec!["--log-format", "xml"], vec![]),
        (vec!["--config", "/nonexistent/tollgate.toml"], vec![]),
    ];
    for (args, env) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .envs(env.clone())
            .env("TOLLGATE_DATA_DIR", dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("tollgate: "),
            "{args:?}"
        );
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nunknown_key = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("nested/data");
    let port = free_port();
    let config = dir.path().join("tollgate.toml");
    // The file says one port, the flag another: the flag wins.
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:1\"\nnode_id = \"knode-from-file\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-format")
        .arg("json")
        .env("TOLLGATE_DATA_DIR", &data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Some(answer) = get(port, "/_healthcheck") {
            break answer;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(r#""node":"knode-from-file""#), "{answer}");
    assert!(data.is_dir(), "the data directory is created");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map(|s| s.success());
    assert_eq!(killed.ok(), Some(true));
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut logs);
    }
    // Every log line is a JSON object.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert!(lines.iter().all(serde_json::Value::is_object), "{logs}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "tollgate is listening (HTTP and WebSocket)"),
        "{logs}"
    );
    assert!(logs.contains("shutdown complete"), "{logs}");
}

/// One request on a fresh connection (`Connection: close`); the whole response as text.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap_or_else(|e| panic!("write: {e}"));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body of a whole HTTP response.
fn body_json(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// A minimal blocking WebSocket client: the handshake, masked text frames out, frames in.
struct Ws(TcpStream);

impl Ws {
    fn connect(port: u16) -> Self {
        let mut s =
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        // Byte by byte, so that nothing after the head is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte)
                .unwrap_or_else(|e| panic!("handshake: {e}"));
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Self(s)
    }

    /// Sends one text frame and returns the next text frame.
    fn call(&mut self, text: &str) -> String {
        let payload = text.as_bytes();
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0
            .write_all(&frame)
            .unwrap_or_else(|e| panic!("write: {e}"));
        loop {
            let mut head = [0u8; 2];
            self.0
                .read_exact(&mut head)
                .unwrap_or_else(|e| panic!("read: {e}"));
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    self.0
                        .read_exact(&mut ext)
                        .unwrap_or_else(|e| panic!("read: {e}"));
                    usize::from(u16::from_be_bytes(ext))
                }
                127 => {
                    let mut ext = [0u8; 8];
                    self.0
                        .read_exact(&mut ext)
                        .unwrap_or_else(|e| panic!("read: {e}"));
                    usize::try_from(u64::from_be_bytes(ext)).unwrap_or(usize::MAX)
                }
                n => usize::from(n),
            };
            let mut data = vec![0u8; len];
            self.0
                .read_exact(&mut data)
                .unwrap_or_else(|e| panic!("read: {e}"));
            match head[0] & 0x0f {
                0x1 => return String::from_utf8_lossy(&data).into_owned(),
                0x8 => panic!("websocket closed: {data:?}"),
                _ => continue,
            }
        }
    }
}

/// Removes ANSI colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A secret as it may be written: raw, JSON-escaped, Rust-`Debug`-escaped.
fn spellings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let debug = format!("{secret:?}");
    let mut all = vec![
        secret.to_owned(),
        json.trim_matches('"').to_owned(),
        debug.trim_matches('"').to_owned(),
    ];
    all.dedup();
    all
}

/// Runs a flow that handles every kind of credential against the binary with every log target at
/// `trace`, in `format`.
fn credential_flow(format: &str, secret: &str, passwords: &Passwords) -> Flow {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[security]\njwt_secret = {}\nargon2_memory_kib = 1024\nargon2_iterations = 1\n",
            serde_json::to_string(secret).unwrap_or_default()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "trace", "--log-format", format])
        .env("TOLLGATE_DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Read stderr as it comes, so a verbose log never blocks the server on a full pipe.
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut logs = Vec::new();
            let _ = err.read_to_end(&mut logs);
            String::from_utf8_lossy(&logs).into_owned()
        })
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/_healthcheck").is_none() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut seen = Vec::new();
    let mut record = |text: String| {
        seen.push(text.clone());
        text
    };
    let json = |v: serde_json::Value| v.to_string();
    let p = passwords;
    // First admin, with reset, over HTTP.
    let r = record(http(
        port,
        "POST",
        "/_createFirstAdmin/kuid-admin?reset",
        &[],
        json(serde_json::json!({"content":{"name":"Admin"},"credentials":{"local":{"username":"admin","password":p.admin}}})).as_bytes(),
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Logins over HTTP, a route and /_query.
    let r = record(http(
        port,
        "POST",
        "/_login/local",
        &[],
        json(serde_json::json!({"username":"admin","password":p.admin})).as_bytes(),
    ));
    let admin = body_json(&r)["result"]["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let bearer = format!("Bearer {admin}");
    // A user with a password, then a login over WebSocket.
    let r = record(http(
        port,
        "POST",
        "/users/alice/_create",
        &[("Authorization", &bearer)],
        json(serde_json::json!({"content":{"profileIds":["default"]},"credentials":{"local":{"username":"alice","password":p.alice}}})).as_bytes(),
    ));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut ws = Ws::connect(port);
    let r = record(ws.call(&json(serde_json::json!({"controller":"auth","action":"login","strategy":"local","body":{"username":"alice","password":p.alice}}))));
    let alice: serde_json::Value = serde_json::from_str(&r).unwrap_or_default();
    let alice = alice["result"]["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    // Refused credentials: a taken username, credentials on updateUser, wrong passwords (a known
    // user, an unknown one, over each protocol), a password in a query string, malformed bodies.
    record(http(
        port,
        "POST",
        "/users/mallory/_create",
        &[("Authorization", &bearer)],
        json(serde_json::json!({"content":{"profileIds":["default"]},"credentials":{"local":{"username":"alice","password":p.rejected}}})).as_bytes(),
    ));
    record(http(
        port,
        "PUT",
        "/users/alice/_update",
        &[("Authorization", &bearer)],
        json(
            serde_json::json!({"credentials":{"local":{"username":"alice","password":p.rejected}}}),
        )
        .as_bytes(),
    ));
    record(http(
        port,
        "POST",
        "/_login/local",
        &[],
        json(serde_json::json!({"username":"admin","password":p.wrong_http})).as_bytes(),
    ));
    record(http(
        port,
        "POST",
        "/_query",
        &[],
        json(serde_json::json!({"controller":"auth","action":"login","strategy":"local","body":{"username":"ghost","password":p.wrong_http}})).as_bytes(),
    ));
    let mut other = Ws::connect(port);
    record(other.call(&json(serde_json::json!({"controller":"auth","action":"login","strategy":"local","body":{"username":"alice","password":p.wrong_ws}}))));
    record(http(
        port,
        "POST",
        &format!("/_login/local?username=admin&password={}", p.in_query),
        &[],
        b"",
    ));
    // A malformed body is echoed to its sender, its first 50 characters (`errors.md`,
    // `network.http.body_parse_failed`): a password within them comes back to the client that sent
    // it, and only there; one past them does not.
    let echo = http(
        port,
        "POST",
        "/_login/local",
        &[("Content-Type", "application/json")],
        format!(r#"{{"username":"admin","password":"{}""#, p.echoed).as_bytes(),
    );
    record(http(
        port,
        "POST",
        "/_login/local",
        &[("Content-Type", "application/json")],
        format!(
            r#"{{"username":"administrator-with-a-long-name","password":"{}""#,
            p.in_query
        )
        .as_bytes(),
    ));
    record(other.call(&format!(
        r#"{{"controller":"auth","action":"login","strategy":"local","body":{{"username":"admin","password":"{}"}}"#,
        p.in_query
    )));
    // Tokens in every place a client puts them, valid, tampered and revoked.
    record(http(
        port,
        "GET",
        "/_me",
        &[("Authorization", &bearer)],
        b"",
    ));
    record(http(port, "GET", &format!("/_me?jwt={admin}"), &[], b""));
    record(http(
        port,
        "POST",
        "/_checkToken",
        &[],
        json(serde_json::json!({"token":alice})).as_bytes(),
    ));
    record(ws.call(&json(
        serde_json::json!({"controller":"auth","action":"getCurrentUser","jwt":alice}),
    )));
    record(ws.call(&json(
        serde_json::json!({"controller":"auth","action":"checkToken","body":{"token":admin}}),
    )));
    record(ws.call(&json(
        serde_json::json!({"controller":"security","action":"getUser","_id":"alice","jwt":admin}),
    )));
    record(ws.call(&json(serde_json::json!({"controller":"security","action":"updateUser","_id":"alice","body":{"name":"Alice"},"jwt":admin}))));
    let tampered = format!("{}x", &alice[..alice.len() - 1]);
    record(ws.call(&json(
        serde_json::json!({"controller":"server","action":"now","jwt":tampered}),
    )));
    record(http(
        port,
        "POST",
        "/_logout",
        &[("Authorization", &bearer)],
        b"",
    ));
    record(http(
        port,
        "GET",
        "/_me",
        &[("Authorization", &bearer)],
        b"",
    ));
    // Connection-level errors are logged at debug: a request that is not HTTP.
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(format!("\x01\x02 {admin} {}\r\n\r\n", p.admin).as_bytes());
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        seen.push(String::from_utf8_lossy(&sink).into_owned());
    }
    drop(ws);
    drop(other);

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0));
    let logs = stderr
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    Flow {
        logs: strip_ansi(&logs),
        responses: seen,
        echo,
        tokens: vec![admin, alice],
    }
}

/// What a run of [`credential_flow`] saw.
struct Flow {
    /// stderr, without colours.
    logs: String,
    /// Every response, except `echo`.
    responses: Vec<String>,
    /// The answer to a malformed body holding `Passwords::echoed`.
    echo: String,
    /// The tokens issued.
    tokens: Vec<String>,
}

struct Passwords {
    admin: &'static str,
    alice: &'static str,
    rejected: &'static str,
    wrong_http: &'static str,
    wrong_ws: &'static str,
    in_query: &'static str,
    /// Sent in a malformed body, within the 50 characters the error echoes.
    echoed: &'static str,
}

/// With every log target at `trace`, in both log formats, a flow through every credential path
/// (createFirstAdmin, createUser, logins that succeed and fail over HTTP, `/_query` and WebSocket,
/// refused credentials, passwords in a query string and in malformed bodies, tokens in headers,
/// `?jwt=`, `jwt` fields and checkToken bodies, logout) leaves no password, no argon2 hash and no token
/// secret in a log line or a response, and no token in a log line.
#[test]
fn credential_flow_leaks_no_secret_in_logs_or_responses() {
    let secret = "log-scan-token-secret-4c1f9a7e0b3d42e8a6c15d2f";
    let passwords = Passwords {
        admin: r#"Adm1n-"quoted"\pw-8d2b"#,
        alice: "alice-pw-61c2e0",
        rejected: "rejected-pw-3b4c91",
        wrong_http: "wrong-http-pw-9d1e44",
        wrong_ws: "wrong-ws-pw-77ab02",
        in_query: "query-pw-2a2a5e",
        echoed: "echo-pw-5e0c",
    };
    for format in ["human", "json"] {
        let Flow {
            logs,
            responses,
            echo,
            tokens,
        } = credential_flow(format, secret, &passwords);
        assert!(
            echo.contains(r#""id":"network.http.body_parse_failed""#)
                && echo.contains(passwords.echoed),
            "{echo}"
        );
        // The capture works: debug lines are there.
        assert!(
            logs.contains("DEBUG") || logs.contains(r#""level":"DEBUG""#),
            "{format}: no debug line captured:\n{logs}"
        );
        let mut secrets: Vec<(String, String)> = Vec::new();
        for pw in [
            passwords.admin,
            passwords.alice,
            passwords.rejected,
            passwords.wrong_http,
            passwords.wrong_ws,
            passwords.in_query,
            passwords.echoed,
        ] {
            for s in spellings(pw) {
                secrets.push((format!("password {pw:?}"), s));
            }
        }
        secrets.push(("a password hash".into(), "$argon2".into()));
        secrets.push(("the token secret".into(), secret.into()));
        for encoding in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            use base64::Engine;
            secrets.push((
                "the token secret (base64)".into(),
                encoding.encode(secret).trim_end_matches('=').to_owned(),
            ));
        }
        let mut leaks = Vec::new();
        for (what, needle) in &secrets {
            for line in logs.lines().filter(|l| l.contains(needle.as_str())) {
                leaks.push(format!("log has {what}: {line}"));
            }
            let echoed = |r: &&String| r.as_str() == echo && needle.as_str() == passwords.echoed;
            for r in responses
                .iter()
                .chain([&echo])
                .filter(|r| r.contains(needle.as_str()) && !echoed(r))
            {
                leaks.push(format!("response has {what}: {r}"));
            }
        }
        // Tokens belong in login answers, never in logs: the whole token or its signature.
        for token in &tokens {
            let signature = token.rsplit('.').next().unwrap_or(token);
            for line in logs.lines().filter(|l| l.contains(signature)) {
                leaks.push(format!("log has a token: {line}"));
            }
        }
        assert!(leaks.is_empty(), "{format}:\n{}", leaks.join("\n"));
    }
}
