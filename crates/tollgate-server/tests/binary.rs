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
