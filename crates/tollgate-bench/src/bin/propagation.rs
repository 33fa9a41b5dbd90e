//! `tollgate-propagation`: how long a write on one node takes to be visible on another node of the
//! same store (two servers sharing one PostgreSQL database).
//!
//! Over one WebSocket to each node: creates a profile on the writer (`--writer`), waits until the
//! reader (`--reader`) has it, then `--updates` times: sends `security:updateProfile` to the writer,
//! waits for its answer (the write is durable and acknowledged), then sends
//! `security:getProfile` to the reader again and again, one request at a time, until the answer
//! carries the `_version` the writer returned. The delay of one update is the time from the
//! writer's answer to the first reader answer with that version (the reader's caches are fed by the
//! store's change feed, so this is what a client of the reader waits for). Prints a human summary
//! and one JSON line (delays in ms: p50, p90, p99, max; the mean number of reads per update).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tollgate_bench::{WsStream, ws_connect};

#[derive(Debug, Clone, Parser)]
#[command(about = "Propagation delay of a write from one Tollgate node to another")]
struct Args {
    /// The node written to.
    #[arg(long)]
    writer: SocketAddr,
    /// The node read from.
    #[arg(long)]
    reader: SocketAddr,
    /// Updates measured.
    #[arg(long, default_value_t = 1000)]
    updates: u64,
    /// The profile written (created or replaced first).
    #[arg(long, default_value = "bench-propagation")]
    id: String,
    /// Give up on one update when the reader has not shown it after this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

/// One WebSocket connection with request/answer matching by `requestId`.
struct Client {
    ws: WsStream,
    next_id: u64,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        Ok(Self {
            ws: ws_connect(addr).await.map_err(|e| format!("{addr}: {e}"))?,
            next_id: 0,
        })
    }

    /// Sends `request` and returns its answer envelope.
    async fn call(&mut self, mut request: Value, timeout: Duration) -> Result<Value, String> {
        self.next_id += 1;
        let id = format!("p{}", self.next_id);
        request["requestId"] = json!(id);
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| "no answer in time".to_owned())?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if envelope["requestId"] == json!(id) {
                        return Ok(envelope);
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Err("connection closed".into()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }
}

/// `result._version` of a successful answer.
fn version(envelope: &Value) -> Result<Option<u64>, String> {
    match envelope["status"].as_u64() {
        Some(200) => Ok(envelope["result"]["_version"].as_u64()),
        Some(404) => Ok(None),
        _ => Err(format!("unexpected answer: {envelope}")),
    }
}

/// Reads from `reader` until the profile is at `wanted` or later; the number of reads.
async fn wait_for_version(
    reader: &mut Client,
    id: &str,
    wanted: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let started = Instant::now();
    let mut reads = 0;
    loop {
        let answer = reader
            .call(
                json!({"controller":"security","action":"getProfile","_id":id}),
                timeout,
            )
            .await?;
        reads += 1;
        if version(&answer)?.is_some_and(|v| v >= wanted) {
            return Ok(reads);
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "the reader did not show version {wanted} within {} ms",
                timeout.as_millis()
            ));
        }
    }
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

async fn run(args: &Args) -> Result<(), String> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut writer = Client::connect(args.writer).await?;
    let mut reader = Client::connect(args.reader).await?;
    let created = writer
        .call(
            json!({"controller":"security","action":"createOrReplaceProfile","_id":args.id,
                   "body":{"policies":[{"roleId":"default"}]}}),
            timeout,
        )
        .await?;
    let first = version(&created)?.ok_or_else(|| format!("cannot create: {created}"))?;
    wait_for_version(&mut reader, &args.id, first, timeout).await?;

    // 1 µs .. 60 s, 3 significant digits.
    let mut delays =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut from_send =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut reads_total = 0u64;
    let started = Instant::now();
    for n in 1..=args.updates {
        let sent = Instant::now();
        let answer = writer
            .call(
                json!({"controller":"security","action":"updateProfile","_id":args.id,
                       "body":{"rateLimit":0,"n":n}}),
                timeout,
            )
            .await?;
        let acknowledged = Instant::now();
        let wanted = version(&answer)?.ok_or_else(|| format!("update failed: {answer}"))?;
        reads_total += wait_for_version(&mut reader, &args.id, wanted, timeout).await?;
        let seen = Instant::now();
        let micros = |d: Duration| {
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX)
                .clamp(1, 60_000_000)
        };
        delays
            .record(micros(seen - acknowledged))
            .map_err(|e| e.to_string())?;
        from_send
            .record(micros(seen - sent))
            .map_err(|e| e.to_string())?;
    }
    let took = started.elapsed().as_secs_f64();
    let reads_per_update = reads_total as f64 / args.updates.max(1) as f64;
    println!(
        "{} propagation writer={} reader={} updates={} delay after the writer's answer: p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms; from the update's send: p50={:.3}ms p99={:.3}ms; reads/update={reads_per_update:.2}; {took:.1}s",
        args.label,
        args.writer,
        args.reader,
        args.updates,
        millis(&delays, 0.5),
        millis(&delays, 0.9),
        millis(&delays, 0.99),
        delays.max() as f64 / 1000.0,
        millis(&from_send, 0.5),
        millis(&from_send, 0.99),
    );
    println!(
        "{}",
        json!({
            "label": args.label,
            "updates": args.updates,
            "p50_ms": millis(&delays, 0.5),
            "p90_ms": millis(&delays, 0.9),
            "p99_ms": millis(&delays, 0.99),
            "max_ms": delays.max() as f64 / 1000.0,
            "from_send_p50_ms": millis(&from_send, 0.5),
            "from_send_p99_ms": millis(&from_send, 0.99),
            "reads_per_update": reads_per_update,
            "duration_s": took,
            "errors": 0,
        })
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args).await {
        eprintln!("tollgate-propagation: {e}");
        std::process::exit(1);
    }
}
