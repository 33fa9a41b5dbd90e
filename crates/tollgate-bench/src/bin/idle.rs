//! `tollgate-idle`: opens N idle WebSocket connections to a server and reports how much the server's
//! resident memory grew (VmRSS of `/proc/<pid>/status`), i.e. the memory cost of one idle connection.
//!
//! Each connection stays open with an application heartbeat (`{"p":1}`) every `--heartbeat` seconds,
//! which keeps it alive through the server's idle timeout as a Kuzzle SDK would; nothing else is
//! sent. Prints a human summary and one JSON line, then holds the connections for `--hold` seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tollgate_bench::rss_kib;

#[derive(Debug, Clone, Parser)]
#[command(about = "Opens N idle WebSocket connections and measures the server's memory growth")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7512")]
    target: SocketAddr,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Server process id whose VmRSS is read before and after (optional).
    #[arg(long)]
    pid: Option<u32>,
    /// Handshakes in progress at once (keeps the listen backlog from overflowing).
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Seconds to wait after the last handshake before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to keep the connections open after the measurement.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Seconds between application heartbeats on each connection.
    #[arg(long, default_value_t = 20.0)]
    heartbeat: f64,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let url = format!("ws://{}/", args.target);
    let rss_before = args.pid.and_then(rss_kib);
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let closed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handshakes = Vec::with_capacity(args.connections);
    let mut keepers = Vec::with_capacity(args.connections);
    let (keeper_tx, mut keeper_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..args.connections {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let (url, closed, keeper_tx) = (url.clone(), Arc::clone(&closed), keeper_tx.clone());
        let heartbeat = Duration::from_secs_f64(args.heartbeat.max(0.1));
        handshakes.push(tokio::spawn(async move {
            // A small read buffer: the client side should not need GiBs for 15k sockets.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            let connected =
                tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
                    .await;
            drop(permit);
            let (ws, _) = connected.map_err(|e| e.to_string())?;
            let keeper = tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if tx.send(Message::text(r#"{"p":1}"#)).await.is_err() {
                                break;
                            }
                        }
                        m = rx.next() => match m {
                            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                            Some(Ok(_)) => {}
                        },
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            });
            let _ = keeper_tx.send(keeper);
            Ok::<(), String>(())
        }));
    }
    drop(keeper_tx);
    let mut opened = 0u64;
    let mut failed = 0u64;
    let mut first_error = None;
    for h in handshakes {
        match h.await {
            Ok(Ok(())) => opened += 1,
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    while let Ok(k) = keeper_rx.try_recv() {
        keepers.push(k);
    }
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss_after = args.pid.and_then(rss_kib);
    let still_open = opened.saturating_sub(closed.load(Ordering::Relaxed));
    let growth_bytes = match (rss_before, rss_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) * 1024),
        _ => None,
    };
    let per_conn = growth_bytes
        .filter(|_| still_open > 0)
        .map(|g| g as f64 / still_open as f64);
    let per_gib = per_conn
        .filter(|b| *b > 0.0)
        .map(|b| (1u64 << 30) as f64 / b);
    if let Some(e) = &first_error {
        eprintln!("tollgate-idle: {failed} connection(s) failed, first error: {e}");
    }
    println!(
        "{} idle conns={} opened={opened} failed={failed} still_open={still_open} open_time={open_s:.2}s rss_before={}KiB rss_after={}KiB per_connection={}B per_GiB={}",
        args.label,
        args.connections,
        rss_before.map_or("?".into(), |v| v.to_string()),
        rss_after.map_or("?".into(), |v| v.to_string()),
        per_conn.map_or("?".into(), |v| format!("{v:.0}")),
        per_gib.map_or("?".into(), |v| format!("{v:.0}")),
    );
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "connections": args.connections,
            "opened": opened,
            "failed": failed,
            "still_open": still_open,
            "open_s": open_s,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "bytes_per_connection": per_conn,
            "connections_per_gib": per_gib,
        })
    );
    if args.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    for k in keepers {
        k.abort();
    }
}
