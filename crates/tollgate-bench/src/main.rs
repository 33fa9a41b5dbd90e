//! `tollgate-bench`: a load generator for Tollgate's WebSocket and HTTP front-ends.
//!
//! - **Closed loop** (default): each connection sends a request, waits for its answer, sends the next.
//!   Measures throughput.
//! - **Open loop** (`--rate R`): requests are sent on a fixed schedule (R per second in total, spread
//!   over the connections) whatever the answers do, and latency is measured from the *scheduled* send
//!   time, so a stalled server shows up in the percentiles (no coordinated omission).
//!
//! Requests are matched to answers by `requestId` (WebSocket `room`). `{conn}` in a request template is
//! replaced by the connection number, so each connection can work on its own document. Prints a human
//! summary and one JSON line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tollgate_bench::{http_connect, room, succeeded, template, with_request_id, ws_connect};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum Protocol {
    Ws,
    Http,
}

#[derive(Debug, Clone, Parser)]
#[command(about = "Load generator for Tollgate (WebSocket and HTTP)")]
struct Args {
    /// `ws` or `http`.
    #[arg(long, value_enum, default_value = "ws")]
    protocol: Protocol,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7512")]
    target: SocketAddr,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Open loop: total requests per second (0 = closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// WebSocket: the request envelope (a JSON object; `requestId` is added).
    #[arg(long, default_value = r#"{"controller":"server","action":"now"}"#)]
    request: String,
    /// WebSocket: a request sent once per connection before the run (answer ignored).
    #[arg(long)]
    setup: Option<String>,
    /// HTTP: method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// HTTP: path and query.
    #[arg(long, default_value = "/_now")]
    path: String,
    /// HTTP: body.
    #[arg(long, default_value = "")]
    body: String,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// The server's process id: its CPU time (user + system, every thread) over the measured
    /// seconds is reported per answer.
    #[arg(long)]
    pid: Option<u32>,
}

/// User + system CPU time of process `pid`, every thread, in seconds (`/proc/<pid>/stat`, in
/// clock ticks of 1/100 s: Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// What each connection reports.
struct Stats {
    histogram: Histogram<u64>,
    ok: u64,
    errors: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            // 1 µs .. 60 s, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram())),
            ok: 0,
            errors: 0,
        }
    }

    fn record(&mut self, latency: Duration, success: bool) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self.histogram.record(micros.min(60_000_000));
        if success {
            self.ok += 1;
        } else {
            self.errors += 1;
        }
    }
}

fn unreachable_histogram() -> Histogram<u64> {
    eprintln!("tollgate-bench: cannot allocate a histogram");
    std::process::exit(2)
}

/// Shared timing of a run.
struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    stop: AtomicBool,
}

impl Clock {
    fn measuring(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// Waits until `due` with sub-millisecond precision: tokio's timer has a 1 ms granularity, which would
/// add up to a millisecond of scheduling lateness to every open-loop measurement. The last stretch is
/// spent yielding (the load generator has a core of its own).
async fn wait_until(due: Instant) {
    let coarse = due.checked_sub(Duration::from_millis(2));
    if let Some(coarse) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

async fn ws_connection(args: Arc<Args>, conn: usize, clock: Arc<Clock>) -> Result<Stats, String> {
    let (mut tx, mut rx) = ws_connect(args.target).await?.split();
    let request = template(&args.request, conn);
    let mut stats = Stats::new();
    if let Some(setup) = &args.setup {
        let setup = with_request_id(&template(setup, conn), &format!("setup-{conn}"));
        tx.send(Message::text(setup))
            .await
            .map_err(|e| e.to_string())?;
        while let Some(Ok(m)) = rx.next().await {
            if matches!(m, Message::Text(_)) {
                break;
            }
        }
    }
    if args.rate == 0 {
        let mut n: u64 = 0;
        while !clock.stop.load(Ordering::Relaxed) && Instant::now() < clock.end {
            n += 1;
            let id = format!("{conn}-{n}");
            let sent = Instant::now();
            tx.send(Message::text(with_request_id(&request, &id)))
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) if room(&t) == Some(id.as_str()) => {
                        let done = Instant::now();
                        if clock.measuring(sent) {
                            stats.record(done - sent, succeeded(&t));
                        }
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("connection closed".into()),
                }
            }
        }
        return Ok(stats);
    }
    // Open loop: a sender on a fixed schedule, and this task reading answers.
    let per_conn = args.rate as f64 / args.connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn.max(0.001));
    let pending: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let sender_pending = Arc::clone(&pending);
    let sender_clock = Arc::clone(&clock);
    let offset = interval.mul_f64(conn as f64 / args.connections as f64);
    let sender = tokio::spawn(async move {
        let mut n: u64 = 0;
        let mut due = sender_clock.start + offset;
        while due < sender_clock.end {
            wait_until(due).await;
            n += 1;
            let id = format!("{conn}-{n}");
            sender_pending.lock().await.insert(id.clone(), due);
            if tx
                .send(Message::text(with_request_id(&request, &id)))
                .await
                .is_err()
            {
                break;
            }
            due += interval;
        }
        tx
    });
    let deadline = clock.end + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline.into(), rx.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        let Message::Text(t) = message else { continue };
        let Some(id) = room(&t) else { continue };
        let Some(due) = pending.lock().await.remove(id) else {
            continue;
        };
        if clock.measuring(due) {
            stats.record(Instant::now() - due, succeeded(&t));
        }
        if Instant::now() >= clock.end && pending.lock().await.is_empty() {
            break;
        }
    }
    // Requests never answered count as errors with the time they waited.
    for (_, due) in pending.lock().await.drain() {
        if clock.measuring(due) {
            stats.record(deadline - due, false);
        }
    }
    let _ = sender.await;
    Ok(stats)
}

async fn http_connection(args: Arc<Args>, conn: usize, clock: Arc<Clock>) -> Result<Stats, String> {
    let mut sender = http_connect(args.target).await?;
    let path = template(&args.path, conn);
    let body = Bytes::from(template(&args.body, conn));
    let mut stats = Stats::new();
    let mut n: u64 = 0;
    let interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate as f64));
    let mut due = clock.start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(conn as f64 / args.connections as f64)
        });
    while !clock.stop.load(Ordering::Relaxed) && Instant::now() < clock.end {
        n += 1;
        let sent = match interval {
            Some(i) => {
                wait_until(due).await;
                let scheduled = due;
                due += i;
                scheduled
            }
            None => Instant::now(),
        };
        let req = hyper::Request::builder()
            .method(args.method.as_str())
            .uri(path.as_str())
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("x-kuzzle-request-id", format!("{conn}-{n}"))
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let ok = res.status() == 200;
        let _ = res.into_body().collect().await.map_err(|e| e.to_string())?;
        if clock.measuring(sent) {
            stats.record(Instant::now() - sent, ok);
        }
    }
    Ok(stats)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let now = Instant::now();
    let measure_from = now + Duration::from_secs_f64(args.warmup);
    let clock = Arc::new(Clock {
        start: now,
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
        stop: AtomicBool::new(false),
    });
    // The server's CPU time at the start and the end of the measured seconds.
    let cpu = args.pid.map(|pid| {
        let clock = Arc::clone(&clock);
        tokio::spawn(async move {
            tokio::time::sleep_until(clock.measure_from.into()).await;
            let from = cpu_seconds(pid);
            tokio::time::sleep_until(clock.end.into()).await;
            Some(cpu_seconds(pid)? - from?)
        })
    });
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let (args, clock) = (Arc::clone(&args), Arc::clone(&clock));
        tasks.push(tokio::spawn(async move {
            match args.protocol {
                Protocol::Ws => ws_connection(args, conn, clock).await,
                Protocol::Http => http_connection(args, conn, clock).await,
            }
        }));
    }
    let mut total = Stats::new();
    let mut failures = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(stats)) => {
                let _ = total.histogram.add(&stats.histogram);
                total.ok += stats.ok;
                total.errors += stats.errors;
            }
            Ok(Err(e)) => {
                failures += 1;
                eprintln!("tollgate-bench: connection failed: {e}");
            }
            Err(e) => {
                failures += 1;
                eprintln!("tollgate-bench: task failed: {e}");
            }
        }
    }
    let h = &total.histogram;
    let count = total.ok + total.errors;
    let server_cpu_s = match cpu {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let cpu_us_per_answer = server_cpu_s
        .filter(|_| count > 0)
        .map(|s| s * 1e6 / count as f64);
    let rate = count as f64 / args.duration;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{} {:?} conns={} rate={rate:.0}/s ok={} errors={} failed_connections={failures} p50={:.3}ms p90={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms server_cpu={}",
        args.label,
        args.protocol,
        args.connections,
        total.ok,
        total.errors,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        cpu_us_per_answer.map_or("-".to_owned(), |us| format!("{us:.1}us/answer")),
    );
    let _ = writeln!(
        out,
        "{}",
        serde_json::json!({
            "label": args.label,
            "protocol": format!("{:?}", args.protocol).to_lowercase(),
            "connections": args.connections,
            "open_loop_rate": args.rate,
            "duration_s": args.duration,
            "requests": count,
            "ok": total.ok,
            "errors": total.errors,
            "failed_connections": failures,
            "rate": rate,
            "p50_ms": ms(0.5),
            "p90_ms": ms(0.9),
            "p99_ms": ms(0.99),
            "p999_ms": ms(0.999),
            "max_ms": h.max() as f64 / 1000.0,
            "server_cpu_s": server_cpu_s,
            "server_cpu_us_per_answer": cpu_us_per_answer,
        })
    );
}
