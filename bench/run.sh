#!/usr/bin/env bash
# Tollgate's one-command benchmark suite (issue "Know how fast we are"). Method: docs/benchmarks.md.
#
#   bench/run.sh                                     # full run, ~12 minutes on 2 cores
#   BENCH_DURATION=1 BENCH_RUNS=1 BENCH_IDLE="500 1500" bench/run.sh   # smoke run, ~1 minute
#
# Each server (tollgate, or the ceiling server) runs alone on core $BENCH_SERVER_CPU; the load
# generator runs on core $BENCH_CLIENT_CPU. Every figure is written as one JSON line to
# target/bench-results/<UTC date>.jsonl, and a Markdown summary (medians over the runs, ratios to the
# ceiling) is printed at the end and saved next to it as <UTC date>.md.
#
# Environment overrides:
#   BENCH_DURATION     measured seconds per throughput run                (8)
#   BENCH_WARMUP       unmeasured seconds before each run                  (min(2, BENCH_DURATION))
#   BENCH_RUNS         runs per figure; the summary shows medians          (3)
#   BENCH_CONNECTIONS  concurrent connections of the load generator        (32)
#   BENCH_IDLE         idle WebSocket connection counts to measure         ("5000 15000")
#   BENCH_SEED         roles, profiles, users of the seeded cold start     ("1000 1000 10000")
#   BENCH_WRITE_SEED   roles, profiles, users of the seeded write scenario ("100 10000 100000")
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU   cores for the server / the load (0 / 1)
#   BENCH_SKIP_BUILD=1 use the binaries already in target/release
#   BENCH_SOAK         seconds of a soak run (tollgate-soak: mixed HTTP and WebSocket load with
#                      logins, reads and writes; RSS at start/middle/end) after the rest; opt-in (0)
#   BENCH_SOAK_RATE    requests per second of the soak run                 (2000)
#   BENCH_OUT          results directory                                   (target/bench-results)
#   BENCH_PG_URL       PostgreSQL server for the PostgreSQL scenarios (postgres://user@host:port/db; each
#                      run creates and drops a database of its own, so the role needs CREATEDB, and psql
#                      must be installed). Unset: a throw-away cluster is started with .ci/pg-start and
#                      stopped at exit. BENCH_PG=0 skips the PostgreSQL scenarios.
#   BENCH_PROPAGATION_UPDATES  updates per propagation run (A -> B, PostgreSQL)    (1000)
#   BENCH_SCENARIOS    only these throughput scenarios (space-separated names of section 1), then
#                      the summary: for A/B checks of one change
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-8}
WARMUP=${BENCH_WARMUP:-$(python3 -c "print(min(2.0, float('$DURATION')))")}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
IDLE_COUNTS=${BENCH_IDLE:-"5000 15000"}
read -r SEED_ROLES SEED_PROFILES SEED_USERS <<<"${BENCH_SEED:-1000 1000 10000}"
WRITE_SEED=${BENCH_WRITE_SEED:-"100 10000 100000"}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
OUT_DIR=${BENCH_OUT:-$ROOT/target/bench-results}
BIN=$ROOT/target/release

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------------
# Build, environment, pinning
# ---------------------------------------------------------------------------------------------------
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries"
    cargo build --release -p tollgate-server -p tollgate-bench
fi
SOAK=${BENCH_SOAK:-0}
TOOLS=(tollgate tollgate-bench tollgate-ceiling tollgate-idle tollgate-propagation)
[[ $SOAK != 0 ]] && TOOLS+=(tollgate-soak)
for b in "${TOOLS[@]}"; do
    [[ -x "$BIN/$b" ]] || { echo "bench: $BIN/$b is missing (build first)" >&2; exit 1; }
done

SERVER_PIN=()
CLIENT_PIN=()
if command -v taskset >/dev/null && [[ $(nproc --all) -ge 2 ]]; then
    SERVER_PIN=(taskset -c "$SERVER_CPU")
    CLIENT_PIN=(taskset -c "$CLIENT_CPU")
else
    warn "fewer than 2 cores or no taskset: server and load generator are NOT pinned"
fi

# Idle connections need one descriptor each, in the server and in the client.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]]; then hard=1048576; fi
ulimit -n "$hard" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$OUT_DIR/$STAMP.jsonl
SUMMARY=$OUT_DIR/$STAMP.md
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
SERVER_LOG=$WORK/servers.log
: >"$RESULTS"

PIDS=()
PG_STARTED_DIR=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $PG_STARTED_DIR ]]; then
        TMPDIR=$WORK "$ROOT/.ci/pg-stop" "$PG_STARTED_DIR" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------
# Python helper: HTTP calls, readiness, seeding, cold start, JSON bookkeeping and the report
# ---------------------------------------------------------------------------------------------------
cat >"$WORK/helper.py" <<'PYEOF'
import json, os, signal, socket, statistics, subprocess, sys, threading, time
import http.client

def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)

def call(c, method, path, body=None, jwt=None):
    headers = {"Content-Type": "application/json"}
    if jwt:
        headers["Authorization"] = "Bearer " + jwt
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data

def must(addr, method, path, body=None, jwt=None):
    c = conn(addr)
    status, data = call(c, method, path, body, jwt)
    c.close()
    if status != 200:
        sys.exit(f"bench: {method} {path} answered {status}: {data[:300]!r}")
    return json.loads(data)

def cmd_freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()

def healthy(addr, timeout):
    """Seconds until GET /_healthcheck answers 200, polling every 0.5 ms; None on timeout."""
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((host, int(port)), timeout=timeout)
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(b"GET /_healthcheck HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            s.close()
            if head.startswith(b"HTTP/1.1 200"):
                return True
        except OSError:
            pass
        time.sleep(0.0005)
    return False

def cmd_wait(addr, timeout="15"):
    if not healthy(addr, float(timeout)):
        sys.exit(f"bench: {addr} did not become healthy")

def cmd_profiles(addr, n):
    """createOrReplaceProfile bench-0 .. bench-(n-1) (what the WebSocket runs do with --setup)."""
    c = conn(addr)
    for i in range(int(n)):
        status, data = call(c, "PUT", f"/profiles/bench-{i}", {"policies": [{"roleId": "default"}]})
        if status != 200:
            sys.exit(f"bench: creating profile bench-{i}: {status} {data[:200]!r}")
    c.close()

def cmd_admin_token(addr):
    """createFirstAdmin (no reset: anonymous keeps its rights) then auth:login; prints the jwt."""
    must(addr, "POST", "/_createFirstAdmin/bench-admin",
         {"content": {}, "credentials": {"local": {"username": "bench-admin", "password": "bench-password"}}})
    print(must(addr, "POST", "/_login/local", {"username": "bench-admin", "password": "bench-password"})["result"]["jwt"])

def cmd_user_token(addr):
    """A user whose only right is security:getProfile, with a (high) rate limit: the rights check
    and the rate limiter both run on every request. Prints its jwt."""
    must(addr, "POST", "/roles/bench-reader/_create",
         {"controllers": {"security": {"actions": {"getProfile": True}}}})
    must(addr, "POST", "/profiles/bench-reader/_create",
         {"policies": [{"roleId": "bench-reader"}], "rateLimit": 1000000})
    must(addr, "POST", "/users/bench-user/_create",
         {"content": {"profileIds": ["bench-reader"]},
          "credentials": {"local": {"username": "bench-user", "password": "bench-password"}}})
    print(must(addr, "POST", "/_login/local", {"username": "bench-user", "password": "bench-password"})["result"]["jwt"])

def cmd_seed(addr, roles, profiles, users, threads="16"):
    """Roles, profiles and users (no credentials: no password hashing) through the HTTP API."""
    roles, profiles, users, threads = int(roles), int(profiles), int(users), int(threads)
    jobs = []
    jobs.append([("POST", f"/roles/seed-role-{i}/_create",
                  {"controllers": {"document": {"actions": {"get": True, "search": True}},
                                   "auth": {"actions": {"getMyRights": True}}}})
                 for i in range(roles)])
    jobs.append([("POST", f"/profiles/seed-profile-{i}/_create",
                  {"policies": [{"roleId": f"seed-role-{i % max(roles, 1)}"}], "rateLimit": 10})
                 for i in range(profiles)])
    jobs.append([("POST", f"/users/seed-user-{i}/_create",
                  {"content": {"profileIds": [f"seed-profile-{i % max(profiles, 1)}"], "name": f"User {i}"}})
                 for i in range(users)])
    errors = []
    started = time.monotonic()
    for phase in jobs:
        lock = threading.Lock()
        todo = iter(phase)
        def worker():
            c = conn(addr)
            while True:
                with lock:
                    job = next(todo, None)
                if job is None:
                    break
                status, data = call(c, *job)
                if status != 200:
                    errors.append(f"{job[0]} {job[1]}: {status} {data[:200]!r}")
            c.close()
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts: t.start()
        for t in ts: t.join()
    took = time.monotonic() - started
    if errors:
        sys.exit(f"bench: seeding failed ({len(errors)} errors), first: {errors[0]}")
    print(f"seeded {roles} roles, {profiles} profiles, {users} users in {took:.1f}s", file=sys.stderr)

def cmd_fsync(directory, seconds, run):
    """The disk's durable-write rate where the data directories live: one writer, 4 KiB written
    at offset 0 then fsync, for `seconds`. Appends a JSON line (kind fsync) to stdout."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    block = os.urandom(4096)
    lat = []
    try:
        os.pwrite(fd, block, 0)
        os.fsync(fd)
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fsync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    total = sum(lat)
    print(f"fsync probe: {len(lat)} writes, {len(lat) / total:,.0f}/s, p50 {lat[len(lat) // 2] * 1e3:.3f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.3f} ms", file=sys.stderr)
    print(json.dumps({"kind": "fsync", "scenario": "fsync-4k", "server": "disk", "run": int(run),
                      "writes": len(lat), "rate": len(lat) / total,
                      "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}))

def cmd_coldstart(addr, timeout, *command):
    """Milliseconds from spawning the server to its first 200 on /_healthcheck; then stops it."""
    t0 = time.monotonic()
    p = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=open(os.environ["SERVER_LOG"], "a"))
    try:
        ok = healthy(addr, float(timeout))
        ms = (time.monotonic() - t0) * 1000
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if not ok:
        sys.exit("bench: the server did not become healthy")
    print(f"{ms:.2f}")

def cmd_record(results, *pairs):
    """Reads a tool's output on stdin, echoes its human lines, appends its JSON line (plus the given
    key=value fields) to `results`."""
    extra = {}
    for p in pairs:
        k, v = p.split("=", 1)
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    record = None
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("{"):
            try:
                record = json.loads(line)
                continue
            except ValueError:
                pass
        if line:
            print("   " + line, file=sys.stderr)
    if record is None:
        record = {"missing": True}
        print("   (no result)", file=sys.stderr)
    record.update(extra)
    with open(results, "a") as f:
        f.write(json.dumps(record) + "\n")

def load(results):
    return [json.loads(l) for l in open(results) if l.strip()]

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def cmd_median_rate(results, scenario, server="tollgate"):
    rows = [r for r in load(results) if r.get("scenario") == scenario and r.get("server") == server
            and r.get("kind") == "throughput" and not r.get("missing")]
    m = median([r.get("rate") for r in rows])
    print(int(m) if m else 0)

def fmt(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"

def cmd_report(results):
    rows = load(results)
    def runs(kind, scenario, server="tollgate"):
        return [r for r in rows if r.get("kind") == kind and r.get("scenario") == scenario
                and r.get("server") == server and not r.get("missing")]
    def med(kind, scenario, field, server="tollgate"):
        return median([r.get(field) for r in runs(kind, scenario, server)])
    def errs(kind, scenario, server="tollgate"):
        rs = runs(kind, scenario, server)
        return sum(r.get("errors", 0) + r.get("failed_connections", 0) for r in rs)
    def ratio(a, b):
        return None if a is None or not b else a / b
    meta = next((r for r in rows if r.get("kind") == "meta"), {})
    out = []
    p = out.append
    p(f"## Tollgate benchmark results — {meta.get('stamp', '?')}")
    p("")
    p(f"Machine: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores; server pinned to core "
      f"{meta.get('server_cpu', '?')}, load generator to core {meta.get('client_cpu', '?')}. "
      f"{meta.get('runs', '?')} run(s) of {meta.get('duration', '?')} s (+{meta.get('warmup', '?')} s warm-up), "
      f"{meta.get('connections', '?')} connections; medians over the runs. "
      f"Load average at start: {meta.get('loadavg_at_start', '?')}.")
    p("")
    p("### Throughput (closed loop) against the ceiling server")
    p("")
    p("| protocol | scenario | Tollgate msg/s | p99 ms | ceiling msg/s | ceiling p99 ms | Tollgate / ceiling | "
      "server CPU µs / answer | ceiling µs / answer | CPU ratio | errors |")
    p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = [
        ("ws", "server:now", "ws-now", "ws-now"),
        ("ws", "security:getProfile (anonymous)", "ws-getProfile", "ws-getProfile"),
        ("ws", "security:getProfile (admin token)", "ws-getProfile-admin", "ws-getProfile"),
        ("ws", "security:getProfile (restricted user: rights check + rate limiter)", "ws-getProfile-user", "ws-getProfile"),
        ("ws", "security:updateProfile, memory store", "ws-updateProfile-memory", "ws-updateProfile"),
        ("ws", "security:updateProfile, SQLite store (fsync)", "ws-updateProfile-sqlite", "ws-updateProfile"),
        ("http", "GET /_now", "http-now", "http-now"),
        ("http", "GET /profiles/<id>", "http-getProfile", "http-getProfile"),
        ("http", "PUT /profiles/<id>/_update, memory store", "http-updateProfile-memory", "http-updateProfile"),
        ("http", "PUT /profiles/<id>/_update, SQLite store (fsync)", "http-updateProfile-sqlite", "http-updateProfile"),
    ]
    for proto, name, sc, ceil in table:
        rate, p99 = med("throughput", sc, "rate"), med("throughput", sc, "p99_ms")
        crate, cp99 = med("throughput", ceil, "rate", "ceiling"), med("throughput", ceil, "p99_ms", "ceiling")
        r = ratio(rate, crate)
        cpu = med("throughput", sc, "server_cpu_us_per_answer")
        ccpu = med("throughput", ceil, "server_cpu_us_per_answer", "ceiling")
        cr = ratio(cpu, ccpu)
        p(f"| {proto} | {name} | {fmt(rate)} | {fmt(p99, 2)} | {fmt(crate)} | {fmt(cp99, 2)} | "
          f"{'—' if r is None else f'{r:.0%}'} | {fmt(cpu, 1)} | {fmt(ccpu, 1)} | {'—' if cr is None else f'{cr:.2f}×'} | "
          f"{errs('throughput', sc) + errs('throughput', ceil, 'ceiling')} |")
    p("")
    # The write path: ratios that hold on any disk (each against a figure of the same run).
    fs_rate, fs_p50 = med("fsync", "fsync-4k", "rate", "disk"), med("fsync", "fsync-4k", "p50_ms", "disk")
    w = {sc: (med("throughput", sc, "rate"), med("throughput", sc, "server_cpu_us_per_answer"))
         for sc in ("ws-updateProfile-memory", "http-updateProfile-memory", "ws-updateProfile-sqlite",
                    "ws-updateProfile-sqlite-1", "ws-updateProfile-sqlite-seeded")}
    write_targets = []
    if any(v[0] for v in w.values()):
        p("### Write path (`security:updateProfile`)")
        p("")
        p(f"Disk: 4 KiB write + fsync, one writer, in the data directories' file system: {fmt(fs_rate)}/s "
          f"(p50 {fmt(fs_p50, 3)} ms). Seeded store: {meta.get('write_seed', '?')}.")
        p("")
        p("| scenario | msg/s | server CPU µs / answer |")
        p("| --- | ---: | ---: |")
        for sc, (rate, cpu) in w.items():
            p(f"| {sc} | {fmt(rate)} | {fmt(cpu, 1)} |")
        p("")
        pct = lambda r: "—" if r is None else f"{r:.0%}"
        times = lambda r: "—" if r is None else f"{r:.2f}×"
        for proto in ("ws", "http"):
            r = ratio(w[f"{proto}-updateProfile-memory"][0], med("throughput", f"{proto}-updateProfile", "rate", "ceiling"))
            write_targets.append((f"{proto.upper()} updateProfile, memory store, ≥ 60% of the ceiling", pct(r), None if r is None else r >= 0.6))
        r = ratio(w["ws-updateProfile-sqlite-1"][0], fs_rate)
        write_targets.append(("durable updateProfile, 1 client, ≥ 80% of the fsync rate", pct(r), None if r is None else r >= 0.8))
        r = ratio(w["ws-updateProfile-sqlite"][0], w["ws-updateProfile-memory"][0])
        write_targets.append(("durable updateProfile, 32 clients, ≥ 70% of the memory store's rate", pct(r), None if r is None else r >= 0.7))
        r = ratio(w["ws-updateProfile-sqlite"][1], w["ws-updateProfile-memory"][1])
        write_targets.append(("server CPU per durable write ≤ 1.5× per in-memory write", times(r), None if r is None else r <= 1.5))
        r = ratio(w["ws-updateProfile-sqlite-seeded"][0], w["ws-updateProfile-sqlite"][0])
        write_targets.append(("durable updateProfile on the seeded store within 10% of the empty store's rate", pct(r), None if r is None else r >= 0.9))
    # Runtime workers: the server and the load generator share both cores, so the rate is bounded by
    # the generator too; the server's CPU per answer tells whether a second worker adds cost (a lock).
    wk = {(b, n): (med("throughput", f"{b}-w{n}", "rate"), med("throughput", f"{b}-w{n}", "server_cpu_us_per_answer"))
          for b in ("ws-getProfile", "ws-updateProfile-memory") for n in (1, 2)}
    if any(v[0] for v in wk.values()):
        p("### Runtime workers (server and load generator on both cores, no pinning)")
        p("")
        p("| scenario | 1 worker msg/s | µs / answer | 2 workers msg/s | µs / answer | CPU per answer, 2 / 1 |")
        p("| --- | ---: | ---: | ---: | ---: | ---: |")
        for b in ("ws-getProfile", "ws-updateProfile-memory"):
            (r1, c1), (r2, c2) = wk[(b, 1)], wk[(b, 2)]
            x = ratio(c2, c1)
            p(f"| {b} | {fmt(r1)} | {fmt(c1, 1)} | {fmt(r2)} | {fmt(c2, 1)} | {'—' if x is None else f'{x:.2f}×'} |")
        p("")
    anon, admin, user = (med("throughput", s, "rate") for s in ("ws-getProfile", "ws-getProfile-admin", "ws-getProfile-user"))
    p("### Cost of the security gate (WebSocket security:getProfile)")
    p("")
    p("| comparison | ratio | cost |")
    p("| --- | ---: | ---: |")
    for label, a, b in (("restricted user (rights check + rate limiter) / admin token", user, admin),
                        ("admin token / anonymous", admin, anon),
                        ("restricted user / anonymous", user, anon)):
        r = ratio(a, b)
        p(f"| {label} | {'—' if r is None else f'{r:.1%}'} | {'—' if r is None else f'{1 - r:.1%}'} |")
    p("")
    metered = ratio(med("throughput", "ws-getProfile-metrics", "rate"), anon)
    p("### Cost of the metrics layer (WebSocket security:getProfile, `[metrics] mode = \"open\"`)")
    p("")
    p(f"With metrics / without: {'—' if metered is None else f'{metered:.1%}'} "
      f"(cost {'—' if metered is None else f'{1 - metered:.1%}'}; target: at most 3%).")
    cpu_m = ratio(med("throughput", "ws-getProfile-metrics", "server_cpu_us_per_answer"),
                  med("throughput", "ws-getProfile", "server_cpu_us_per_answer"))
    p(f"Server CPU per answer, with metrics / without: {'—' if cpu_m is None else f'{cpu_m:.3f}×'}.")
    p("")
    p("### Latency at half the saturation rate (open loop, no coordinated omission)")
    p("")
    p("| scenario | offered msg/s | achieved msg/s | p50 ms | p99 ms | p99.9 ms | max ms | ceiling p50 ms | ceiling p99 ms | errors |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sc, name in (("ws-getProfile-half", "ws security:getProfile"), ("http-getProfile-half", "http GET /profiles/<id>"),
                     ("ws-now-half", "ws server:now")):
        rs = runs("openloop", sc)
        if not rs:
            continue
        p(f"| {name} | {fmt(median([r.get('open_loop_rate') for r in rs]))} | {fmt(med('openloop', sc, 'rate'))} | "
          f"{fmt(med('openloop', sc, 'p50_ms'), 3)} | {fmt(med('openloop', sc, 'p99_ms'), 3)} | "
          f"{fmt(med('openloop', sc, 'p999_ms'), 3)} | {fmt(med('openloop', sc, 'max_ms'), 3)} | "
          f"{fmt(med('openloop', sc, 'p50_ms', 'ceiling'), 3)} | {fmt(med('openloop', sc, 'p99_ms', 'ceiling'), 3)} | "
          f"{errs('openloop', sc) + errs('openloop', sc, 'ceiling')} |")
    p("")
    p("The ceiling columns are the ceiling server at the same offered rate: the floor that the load generator "
      "(its timer resolution) and the transport put under every open-loop figure.")
    p("")
    p("### PostgreSQL")
    p("")
    pg_skip = meta.get("pg_skipped")
    if pg_skip:
        p(f"**Skipped:** {pg_skip}.")
        p("")
    else:
        p(f"PostgreSQL {meta.get('pg_version', '?')}, `synchronous_commit = {meta.get('pg_synchronous_commit', '?')}`, "
          f"`fsync = {meta.get('pg_fsync', '?')}`; the PostgreSQL server is not pinned (it shares both cores). "
          "Each run uses a new database.")
        p("")
        p("Durable `security:updateProfile` (WebSocket), writes/s:")
        p("")
        p("| store | 1 client | p99 ms | 32 clients | p99 ms | errors |")
        p("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, sc in (("SQLite (`synchronous = \"full\"`)", "ws-updateProfile-sqlite"),
                         ("PostgreSQL (`synchronous_commit = on`)", "ws-updateProfile-postgresql")):
            one = sc + "-1"
            p(f"| {name} | {fmt(med('throughput', one, 'rate'))} | {fmt(med('throughput', one, 'p99_ms'), 2)} | "
              f"{fmt(med('throughput', sc, 'rate'))} | {fmt(med('throughput', sc, 'p99_ms'), 2)} | "
              f"{errs('throughput', one) + errs('throughput', sc)} |")
        p("")
        pgr = med("throughput", "ws-getProfile-postgresql", "rate")
        cr = med("throughput", "ws-getProfile", "rate", "ceiling")
        r = ratio(pgr, cr)
        p(f"Cached `security:getProfile` on a PostgreSQL-backed node: {fmt(pgr)} msg/s "
          f"(p99 {fmt(med('throughput', 'ws-getProfile-postgresql', 'p99_ms'), 2)} ms), "
          f"{'—' if r is None else f'{r:.0%}'} of the ceiling ({fmt(cr)} msg/s).")
        p("")
        prop = runs("propagation", "pg-propagation")
        p("Propagation A → B (two nodes, one database): `updateProfile` on A, then `getProfile` on B until B "
          "answers the new `_version`; delay from A's answer, ms:")
        p("")
        p("| runs | updates per run | p50 | p90 | p99 | max | from A's send p99 | reads of B per update |")
        p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        p(f"| {len(prop)} | {fmt(median([r.get('updates') for r in prop]))} | {fmt(med('propagation', 'pg-propagation', 'p50_ms'), 3)} | "
          f"{fmt(med('propagation', 'pg-propagation', 'p90_ms'), 3)} | {fmt(med('propagation', 'pg-propagation', 'p99_ms'), 3)} | "
          f"{fmt(max([r['max_ms'] for r in prop if r.get('max_ms') is not None], default=None), 3)} | "
          f"{fmt(med('propagation', 'pg-propagation', 'from_send_p99_ms'), 3)} | "
          f"{fmt(med('propagation', 'pg-propagation', 'reads_per_update'), 2)} |")
        p("")
        p("p50, p90 and p99 are medians over the runs; max is the largest of any run.")
        p("")
    p("### Idle WebSocket connections")
    p("")
    p("| server | connections | still open | server RSS before MiB | after MiB | bytes / connection | connections / GiB | × ceiling |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    idle_rows = [r for r in rows if r.get("kind") == "idle" and not r.get("missing")]
    def idle_ceiling(n):
        return next((c.get("bytes_per_connection") for c in idle_rows
                     if c.get("server") == "ceiling" and c["connections"] == n), None)
    for r in sorted(idle_rows, key=lambda r: (r["connections"], r.get("server") != "tollgate")):
        mib = lambda k: None if r.get(k) is None else r[k] / 1024
        x = None if r.get("server") == "ceiling" else ratio(r.get("bytes_per_connection"), idle_ceiling(r["connections"]))
        p(f"| {r.get('server', 'tollgate')} | {fmt(r['connections'])} | {fmt(r.get('still_open'))} | {fmt(mib('rss_before_kib'), 1)} | "
          f"{fmt(mib('rss_after_kib'), 1)} | {fmt(r.get('bytes_per_connection'))} | {fmt(r.get('connections_per_gib'))} | "
          f"{'—' if x is None else f'{x:.2f}×'} |")
    p("")
    p("### Cold start (process start → first 200 on /_healthcheck)")
    p("")
    p("| data directory | median ms | runs (ms) |")
    p("| --- | ---: | --- |")
    for sc, name in (("empty", "empty"), ("seeded", "seeded (%s)" % meta.get("seed", "?"))):
        ms = [r["ms"] for r in rows if r.get("kind") == "coldstart" and r.get("scenario") == sc]
        p(f"| {name} | {fmt(median(ms), 1)} | {', '.join(f'{m:.1f}' for m in ms) or '—'} |")
    p("")
    b = next((r for r in rows if r.get("kind") == "binary"), None)
    if b:
        p("### Release binary")
        p("")
        p(f"`tollgate`: {b['bytes'] / 2**20:.1f} MiB ({b['bytes']:,} bytes)"
          + (f"; stripped: {b['stripped_bytes'] / 2**20:.1f} MiB" if b.get("stripped_bytes") else ""))
        p("")
    soak = next((r for r in rows if r.get("kind") == "soak" and not r.get("missing")), None)
    if soak:
        rss = soak.get("rss_kib", {})
        mib = lambda v: "—" if v is None else f"{v / 1024:,.1f}"
        p("### Soak")
        p("")
        p("| duration s | requests | unexpected errors | RSS start MiB | middle MiB | end MiB |")
        p("| ---: | ---: | ---: | ---: | ---: | ---: |")
        p(f"| {fmt(soak.get('duration_s'))} | {fmt(soak.get('requests'))} | {fmt(soak.get('unexpected_errors'))} | "
          f"{mib(rss.get('start'))} | {mib(rss.get('middle'))} | {mib(rss.get('end'))} |")
        p("")
    # The issue's targets.
    p("### Targets")
    p("")
    def check(ok):
        return "—" if ok is None else ("yes" if ok else "**no**")
    wsr = ratio(anon, med("throughput", "ws-getProfile", "rate", "ceiling"))
    httpr = ratio(med("throughput", "http-getProfile", "rate"), med("throughput", "http-getProfile", "rate", "ceiling"))
    half = med("openloop", "ws-getProfile-half", "p99_ms")
    idle = [r for r in rows if r.get("kind") == "idle" and r.get("connections_per_gib") and r.get("server", "tollgate") == "tollgate"]
    per_gib = min((r["connections_per_gib"] for r in idle), default=None)
    idle_x = max((x for x in (ratio(r.get("bytes_per_connection"), idle_ceiling(r["connections"])) for r in idle)
                  if x is not None), default=None)
    seeded = median([r["ms"] for r in rows if r.get("kind") == "coldstart" and r.get("scenario") == "seeded"])
    gate = ratio(user, admin)
    p("| target | measured | met |")
    p("| --- | ---: | :---: |")
    p(f"| WS cached reads ≥ 80% of the ceiling | {'—' if wsr is None else f'{wsr:.0%}'} | {check(None if wsr is None else wsr >= 0.8)} |")
    p(f"| WS cached reads ≥ 30× Kuzzle (2,350–3,750 req/s per 2-vCPU node) | "
      f"{'—' if anon is None else f'{anon / 3750:.1f}× – {anon / 2350:.1f}×'} | {check(None if anon is None else anon >= 30 * 3750)} |")
    p(f"| HTTP ≥ 80% of the ceiling (GET /profiles/<id>) | {'—' if httpr is None else f'{httpr:.0%}'} | {check(None if httpr is None else httpr >= 0.8)} |")
    half_floor = med("openloop", "ws-getProfile-half", "p99_ms", "ceiling")
    p(f"| p99 at half saturation ≤ 2 ms (WS getProfile) | {fmt(half, 3)} ms (ceiling at that rate: {fmt(half_floor, 3)} ms) | "
      f"{check(None if half is None else half <= 2.0)} |")
    p(f"| ≥ 80,000 idle WS connections per GiB | {fmt(per_gib)} | {check(None if per_gib is None else per_gib >= 80000)} |")
    p(f"| idle WS bytes per connection ≤ 1.3× the ceiling's (worst of the counts) | {'—' if idle_x is None else f'{idle_x:.2f}×'} | "
      f"{check(None if idle_x is None else idle_x <= 1.3)} |")
    p(f"| cold start with a seeded store ≤ 100 ms | {fmt(seeded, 1)} ms | {check(None if seeded is None else seeded <= 100)} |")
    p(f"| rights check + rate limiter cost < 10% | {'—' if gate is None else f'{1 - gate:.1%}'} | {check(None if gate is None else 1 - gate < 0.10)} |")
    for label, measured, ok in write_targets:
        p(f"| {label} | {measured} | {check(ok)} |")
    if not meta.get("pg_skipped"):
        pgw = med("throughput", "ws-updateProfile-postgresql", "rate")
        pgr = ratio(med("throughput", "ws-getProfile-postgresql", "rate"), med("throughput", "ws-getProfile", "rate", "ceiling"))
        prop99 = med("propagation", "pg-propagation", "p99_ms")
        p(f"| PostgreSQL durable updateProfile, 32 clients ≥ 10,000 writes/s | {fmt(pgw)} | {check(None if pgw is None else pgw >= 10000)} |")
        p(f"| PostgreSQL-backed cached reads ≥ 80% of the ceiling | {'—' if pgr is None else f'{pgr:.0%}'} | {check(None if pgr is None else pgr >= 0.8)} |")
        p(f"| propagation A → B p99 ≤ 50 ms | {fmt(prop99, 3)} ms | {check(None if prop99 is None else prop99 <= 50)} |")
    else:
        p(f"| PostgreSQL targets | skipped: {meta.get('pg_skipped')} | — |")
    missing = [r for r in rows if r.get("missing")]
    if missing:
        p("")
        p(f"**{len(missing)} run(s) produced no result:** " + ", ".join(sorted({str(r.get('scenario')) for r in missing})))
    print("\n".join(out))

if __name__ == "__main__":
    name, *args = sys.argv[1:]
    globals()["cmd_" + name.replace("-", "_")](*args)
PYEOF
py() { python3 "$WORK/helper.py" "$@"; }
export SERVER_LOG

# Configurations.
# Every load connection comes from one address (loopback): no per-address connection cap.
printf '# defaults: SQLite store, synchronous = "full"\n[server]\nmax_connections_per_ip = 0\n' >"$WORK/sqlite.toml"
# The same with GET /_metrics on (the metrics layer counting every request).
printf '[server]\nmax_connections_per_ip = 0\n[metrics]\nmode = "open"\n' >"$WORK/metrics.toml"
printf '[server]\nmax_connections_per_ip = 0\n[storage]\nengine = "memory"\n' >"$WORK/memory.toml"
# The worker scenarios (`-w1`, `-w2`): the same with a set number of runtime worker threads.
for w in 1 2; do
    printf '[server]\nmax_connections_per_ip = 0\nworker_threads = %s\n' "$w" >"$WORK/sqlite-w$w.toml"
    printf '[server]\nmax_connections_per_ip = 0\nworker_threads = %s\n[storage]\nengine = "memory"\n' "$w" >"$WORK/memory-w$w.toml"
done

# PostgreSQL: BENCH_PG_URL, else a throw-away cluster (.ci/pg-start, stopped at exit); skipped with a
# printed reason when neither works. Each run gets a database of its own (created with psql).
PG_URL=
PG_SKIP=
PSQL=
PG_VERSION= PG_SYNC= PG_FSYNC=
if [[ ${BENCH_PG:-1} == 0 ]]; then
    PG_SKIP="BENCH_PG=0"
else
    PSQL=$(command -v psql || ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -1 || true)
    if [[ -n ${BENCH_PG_URL:-} ]]; then
        PG_URL=$BENCH_PG_URL
    else
        log "starting a throw-away PostgreSQL cluster (.ci/pg-start)"
        PG_STARTED_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench-pg.XXXXXX")
        # Its state file goes to $WORK, not to the shared ${TMPDIR:-/tmp}/tollgate-pg.current.
        if ! PG_URL=$(TMPDIR=$WORK TOLLGATE_PG_DIR=$PG_STARTED_DIR "$ROOT/.ci/pg-start" 2>"$WORK/pg-start.log" | tail -1) ||
            [[ -z $PG_URL ]]; then
            PG_SKIP=".ci/pg-start failed: $(tail -1 "$WORK/pg-start.log")"
            PG_URL=
            rm -rf "$PG_STARTED_DIR"
            PG_STARTED_DIR=
        fi
    fi
    if [[ -n $PG_URL && -z $PSQL ]]; then
        PG_SKIP="psql not found (needed to create the runs' databases)"
    elif [[ -n $PG_URL ]] && ! "$PSQL" "$PG_URL" -qAtc 'SELECT 1' >/dev/null 2>"$WORK/pg-check.log"; then
        PG_SKIP="cannot connect to the PostgreSQL server: $(head -1 "$WORK/pg-check.log")"
    fi
fi
if [[ -n $PG_SKIP ]]; then
    echo "bench: PostgreSQL scenarios SKIPPED: $PG_SKIP" >&2
    PG_URL=
else
    PG_VERSION=$("$PSQL" "$PG_URL" -qAtc 'SHOW server_version')
    PG_SYNC=$("$PSQL" "$PG_URL" -qAtc 'SHOW synchronous_commit')
    PG_FSYNC=$("$PSQL" "$PG_URL" -qAtc 'SHOW fsync')
    log "PostgreSQL $PG_VERSION (synchronous_commit $PG_SYNC, fsync $PG_FSYNC)"
fi
# pg_url_db <name>: PG_URL with its database replaced by <name>.
pg_url_db() {
    python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_URL" "$1"
}
PG_DB=
# pg_fresh: a new database and a server configuration for it ($WORK/pg.toml).
pg_fresh() {
    PG_DB=tollgate_bench_$(date +%s%N)
    "$PSQL" "$PG_URL" -qAtc "CREATE DATABASE $PG_DB" >/dev/null
    printf '[server]\nmax_connections_per_ip = 0\n[storage]\nengine = "postgresql"\nurl = "%s"\n' \
        "$(pg_url_db "$PG_DB")" >"$WORK/pg.toml"
}
pg_drop() {
    [[ -n $PG_DB ]] || return 0
    "$PSQL" "$PG_URL" -qAtc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || warn "could not drop database $PG_DB"
    PG_DB=
}

# ---------------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------------
SERVER_PID=
ADDR=
# start_server tollgate|ceiling [config] [data directory to start from (copied)]
start_server() {
    local kind=$1 config=${2:-$WORK/sqlite.toml} template=${3:-}
    ADDR=127.0.0.1:$(py freeport)
    if [[ $kind == ceiling ]]; then
        "${SERVER_PIN[@]}" "$BIN/tollgate-ceiling" "$ADDR" 2>>"$SERVER_LOG" &
    else
        local data
        data=$(mktemp -d "$WORK/data.XXXXXX")
        [[ -n $template ]] && cp -a "$template/." "$data/"
        "${SERVER_PIN[@]}" "$BIN/tollgate" --listen "$ADDR" --data-dir "$data" --config "$config" \
            --log-level warn 2>>"$SERVER_LOG" &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    py wait "$ADDR" 15
}
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# seed_store <data directory> <roles> <profiles> <users>: a SQLite store seeded through the API.
seed_store() {
    ADDR=127.0.0.1:$(py freeport)
    "${SERVER_PIN[@]}" "$BIN/tollgate" --listen "$ADDR" --data-dir "$1" --config "$WORK/sqlite.toml" \
        --log-level warn 2>>"$SERVER_LOG" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    py wait "$ADDR" 15
    "${CLIENT_PIN[@]}" python3 "$WORK/helper.py" seed "$ADDR" "$2" "$3" "$4"
    stop_server
}

# bench <connections> <tollgate-bench arguments…>
bench() { local conns=$1; shift; "${CLIENT_PIN[@]}" "$BIN/tollgate-bench" --target "$ADDR" --connections "$conns" \
    --duration "$DURATION" --warmup "$WARMUP" ${SERVER_PID:+--pid "$SERVER_PID"} "$@"; }

WS_SETUP='{"controller":"security","action":"createOrReplaceProfile","_id":"bench-{conn}","body":{"policies":[{"roleId":"default"}]}}'
WS_NOW='{"controller":"server","action":"now"}'
WS_GET='{"controller":"security","action":"getProfile","_id":"bench-{conn}"}'
WS_UPDATE='{"controller":"security","action":"updateProfile","_id":"bench-{conn}","body":{"rateLimit":0}}'

# run_scenario <kind> <scenario> <run> [--rate R]: one run of one scenario, on a fresh server.
run_scenario() {
    local kind=$1 scenario=$2 run=$3
    shift 3
    local server=tollgate config=$WORK/sqlite.toml args=() jwt= template=
    case $scenario in
        ceiling-*) server=ceiling; scenario=${scenario#ceiling-} ;;
    esac
    # `-w1`, `-w2`: that many runtime worker threads, and the server and the load generator share
    # every core (no pinning): the figure to read is the server's CPU per answer, not the rate.
    local workers= scenario_base= saved_server_pin=("${SERVER_PIN[@]}") saved_client_pin=("${CLIENT_PIN[@]}")
    if [[ $scenario =~ -w([0-9]+)$ ]]; then
        workers=${BASH_REMATCH[1]}
        SERVER_PIN=(); CLIENT_PIN=()
        scenario_base=${scenario%-w*}
    else
        scenario_base=$scenario
    fi
    [[ $scenario_base == *-memory ]] && config=$WORK/memory.toml
    [[ $scenario_base == *-metrics ]] && config=$WORK/metrics.toml
    [[ -n $workers ]] && config=${config%.toml}-w$workers.toml
    if [[ $scenario == *-postgresql* ]]; then
        pg_fresh
        config=$WORK/pg.toml
    fi
    # `-seeded`: on a copy of the data directory seeded with $WRITE_SEED (SQLite only).
    [[ $scenario == *-seeded ]] && template=$WRITE_SEEDED
    # `-1`: one client instead of $CONNS.
    local conns=$CONNS
    [[ $scenario == *-1 ]] && conns=1
    start_server "$server" "$config" "$template"
    case $scenario_base in
        ws-now*) args=(--protocol ws --request "$WS_NOW") ;;
        ws-getProfile-admin) jwt=$(py admin-token "$ADDR") ;;&
        ws-getProfile-user) jwt=$(py user-token "$ADDR") ;;&
        ws-getProfile*)
            local req=$WS_GET
            if [[ -n $jwt ]]; then req=${WS_GET%\}}; req="$req,\"jwt\":\"$jwt\"}"; fi
            args=(--protocol ws --setup "$WS_SETUP" --request "$req") ;;
        ws-updateProfile*) args=(--protocol ws --setup "$WS_SETUP" --request "$WS_UPDATE") ;;
        http-now*) args=(--protocol http --method GET --path /_now) ;;
        http-getProfile*)
            [[ $server == tollgate ]] && py profiles "$ADDR" "$CONNS"
            args=(--protocol http --method GET --path '/profiles/bench-{conn}') ;;
        http-updateProfile*)
            [[ $server == tollgate ]] && py profiles "$ADDR" "$CONNS"
            args=(--protocol http --method PUT --path '/profiles/bench-{conn}/_update' --body '{"rateLimit":0}') ;;
        *) echo "bench: unknown scenario $scenario" >&2; exit 1 ;;
    esac
    echo "-- $server $scenario (run $run/$RUNS${*:+, $*})" >&2
    { bench "$conns" "${args[@]}" --label "$server:$scenario" "$@" || true; } |
        py record "$RESULTS" kind="$kind" scenario="$scenario" server="$server" run="$run"
    stop_server
    pg_drop
    SERVER_PIN=("${saved_server_pin[@]}"); CLIENT_PIN=("${saved_client_pin[@]}")
}

cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
read -r load1 _ </proc/loadavg
if ! python3 -c "import sys; sys.exit(0 if float('$load1') < 0.5 else 1)"; then
    warn "load average is $load1: other work on this machine will skew the figures"
fi
PG_SKIP=$PG_SKIP PG_VERSION=$PG_VERSION PG_SYNC=$PG_SYNC PG_FSYNC=$PG_FSYNC python3 - "$RESULTS" <<EOF
import json, os, sys
meta = {"kind": "meta", "stamp": "$STAMP", "cpu": "$cpu_model", "nproc": $(nproc --all),
        "server_cpu": "$SERVER_CPU", "client_cpu": "$CLIENT_CPU", "runs": $RUNS, "duration": $DURATION,
        "warmup": $WARMUP, "connections": $CONNS, "seed": "$SEED_ROLES roles, $SEED_PROFILES profiles, $SEED_USERS users",
        "write_seed": "$(read -r a b c <<<"$WRITE_SEED"; echo "$a roles, $b profiles, $c users")",
        "fd_limit": "$FD_LIMIT", "loadavg_at_start": "$load1"}
env = os.environ
if env.get("PG_SKIP"):
    meta["pg_skipped"] = env["PG_SKIP"]
else:
    meta.update({"pg_version": env.get("PG_VERSION"), "pg_synchronous_commit": env.get("PG_SYNC"),
                 "pg_fsync": env.get("PG_FSYNC")})
open(sys.argv[1], "a").write(json.dumps(meta) + "\n")
EOF
log "results: $RESULTS"

# ---------------------------------------------------------------------------------------------------
# 1. Throughput, closed loop: every scenario once per round, $RUNS rounds (interleaved, so a slow
#    moment of the machine does not hit one scenario's runs only).
# ---------------------------------------------------------------------------------------------------
THROUGHPUT=(
    ws-now ceiling-ws-now
    ws-getProfile ws-getProfile-admin ws-getProfile-user ceiling-ws-getProfile ws-getProfile-metrics
    ws-updateProfile-memory ws-updateProfile-sqlite ceiling-ws-updateProfile
    http-now ceiling-http-now
    http-getProfile ceiling-http-getProfile
    http-updateProfile-memory http-updateProfile-sqlite ceiling-http-updateProfile
    ws-updateProfile-sqlite-1 ws-updateProfile-sqlite-seeded
    ws-getProfile-w1 ws-getProfile-w2 ws-updateProfile-memory-w1 ws-updateProfile-memory-w2
)
if [[ -n $PG_URL ]]; then
    THROUGHPUT+=(ws-updateProfile-postgresql ws-updateProfile-postgresql-1 ws-getProfile-postgresql)
fi
# BENCH_SCENARIOS="a b …": only these throughput scenarios, then the summary (for A/B checks).
if [[ -n ${BENCH_SCENARIOS:-} ]]; then
    read -r -a THROUGHPUT <<<"$BENCH_SCENARIOS"
fi
# The seeded write scenarios start from one data directory seeded once through the API.
WRITE_SEEDED=
if [[ " ${THROUGHPUT[*]} " == *-seeded\ * ]]; then
    read -r W_ROLES W_PROFILES W_USERS <<<"$WRITE_SEED"
    log "seeding the write scenarios' store: $W_ROLES roles, $W_PROFILES profiles, $W_USERS users"
    WRITE_SEEDED=$(mktemp -d "$WORK/write-seeded.XXXXXX")
    seed_store "$WRITE_SEEDED" "$W_ROLES" "$W_PROFILES" "$W_USERS"
fi
for run in $(seq 1 "$RUNS"); do
    log "throughput, round $run/$RUNS"
    # The disk's own durable-write rate, in the same round as the durable write scenarios.
    { "${SERVER_PIN[@]}" python3 "$WORK/helper.py" fsync "$WORK" "$DURATION" "$run" || true; } |
        py record "$RESULTS"
    for scenario in "${THROUGHPUT[@]}"; do
        run_scenario throughput "$scenario" "$run"
    done
done

if [[ -z ${BENCH_SCENARIOS:-} ]]; then
# ---------------------------------------------------------------------------------------------------
# 2. Latency at half the saturation rate (open loop: latency from the scheduled send time).
# ---------------------------------------------------------------------------------------------------
#    The ceiling server is run at the same offered rate as a control: its latency is the floor of the
#    load generator and the transport at that rate (see docs/benchmarks.md on timer resolution).
for scenario in ws-getProfile http-getProfile ws-now; do
    saturation=$(py median-rate "$RESULTS" "$scenario")
    half=$((saturation / 2))
    if [[ $half -lt 1 ]]; then
        warn "no saturation figure for $scenario: skipping its open-loop run"
        continue
    fi
    for run in $(seq 1 "$RUNS"); do
        log "open loop $scenario at $half msg/s, run $run/$RUNS"
        run_scenario openloop "$scenario-half" "$run" --rate "$half"
        run_scenario openloop "ceiling-$scenario-half" "$run" --rate "$half"
    done
done

# ---------------------------------------------------------------------------------------------------
# 2b. PostgreSQL: propagation delay from one node to another. Two servers on one (fresh) database,
#     both on the server core; tollgate-propagation makes 1,000 updateProfile on A, each followed by
#     getProfile on B until B answers the new _version.
# ---------------------------------------------------------------------------------------------------
if [[ -n $PG_URL ]]; then
    for run in $(seq 1 "$RUNS"); do
        log "PostgreSQL propagation A -> B, run $run/$RUNS"
        pg_fresh
        start_server tollgate "$WORK/pg.toml"
        A_ADDR=$ADDR A_PID=$SERVER_PID
        start_server tollgate "$WORK/pg.toml"
        { "${CLIENT_PIN[@]}" "$BIN/tollgate-propagation" --writer "$A_ADDR" --reader "$ADDR" \
            --updates "${BENCH_PROPAGATION_UPDATES:-1000}" --label "propagation" || true; } |
            py record "$RESULTS" kind=propagation scenario=pg-propagation server=tollgate run="$run"
        stop_server
        SERVER_PID=$A_PID
        stop_server
        pg_drop
    done
fi

# ---------------------------------------------------------------------------------------------------
# 3. Idle WebSocket connections: server RSS growth / N, on a fresh server for each N, Tollgate then the
#    ceiling server (same stack, same 4 KiB read buffer) for the ratio.
# ---------------------------------------------------------------------------------------------------
for n in $IDLE_COUNTS; do
    if [[ $((n + 64)) -gt $FD_LIMIT ]]; then
        warn "ulimit -n is $FD_LIMIT: measuring $((FD_LIMIT - 64)) idle connections instead of $n"
        n=$((FD_LIMIT - 64))
    fi
    for server in tollgate ceiling; do
        log "idle WebSocket connections: $n ($server)"
        start_server "$server"
        { "${CLIENT_PIN[@]}" "$BIN/tollgate-idle" --target "$ADDR" --connections "$n" --pid "$SERVER_PID" \
            --settle 2 --label "idle-$n-$server" || true; } |
            py record "$RESULTS" kind=idle scenario="idle-$n" server="$server"
        stop_server
    done
done

# ---------------------------------------------------------------------------------------------------
# 4. Cold start: spawn → first 200 on /_healthcheck. Empty data directory (fresh each time), then a
#    store seeded through the API and restarted on.
# ---------------------------------------------------------------------------------------------------
coldstart() {
    local scenario=$1 data=$2 run=$3 addr ms
    addr=127.0.0.1:$(py freeport)
    ms=$(py coldstart "$addr" 30 "${SERVER_PIN[@]}" "$BIN/tollgate" --listen "$addr" --data-dir "$data" \
        --config "$WORK/sqlite.toml" --log-level warn) || { warn "cold start $scenario failed"; return 0; }
    echo "   cold start, $scenario data directory, run $run: $ms ms" >&2
    printf '{"kind":"coldstart","scenario":"%s","run":%s,"ms":%s}\n' "$scenario" "$run" "$ms" >>"$RESULTS"
}
log "cold start, empty data directory"
for run in $(seq 1 "$RUNS"); do
    coldstart empty "$(mktemp -d "$WORK/data.XXXXXX")" "$run"
done
log "seeding $SEED_ROLES roles, $SEED_PROFILES profiles, $SEED_USERS users"
SEEDED=$(mktemp -d "$WORK/seeded.XXXXXX")
seed_store "$SEEDED" "$SEED_ROLES" "$SEED_PROFILES" "$SEED_USERS"
log "cold start, seeded data directory ($(du -sh "$SEEDED" | cut -f1))"
for run in $(seq 1 "$RUNS"); do
    coldstart seeded "$SEEDED" "$run"
done

# ---------------------------------------------------------------------------------------------------
# 5. Binary size.
# ---------------------------------------------------------------------------------------------------
size=$(stat -c %s "$BIN/tollgate")
stripped=null
if command -v strip >/dev/null && strip -o "$WORK/tollgate.stripped" "$BIN/tollgate" 2>/dev/null; then
    stripped=$(stat -c %s "$WORK/tollgate.stripped")
fi
printf '{"kind":"binary","bytes":%s,"stripped_bytes":%s}\n' "$size" "$stripped" >>"$RESULTS"

# ---------------------------------------------------------------------------------------------------
# 6. Soak (opt-in: BENCH_SOAK=<seconds>): mixed load on one server for that long; unexpected answers
#    and the server's RSS over time.
# ---------------------------------------------------------------------------------------------------
if [[ $SOAK != 0 ]]; then
    log "soak: $SOAK s of mixed HTTP and WebSocket load"
    start_server tollgate
    { "${CLIENT_PIN[@]}" "$BIN/tollgate-soak" --target "$ADDR" --pid "$SERVER_PID" \
        --duration "$SOAK" --rate "${BENCH_SOAK_RATE:-2000}" || true; } |
        py record "$RESULTS" kind=soak scenario=soak server=tollgate
    stop_server
fi

fi # BENCH_SCENARIOS

# ---------------------------------------------------------------------------------------------------
# Summary.
# ---------------------------------------------------------------------------------------------------
if grep -qiE 'panick|error' "$SERVER_LOG"; then
    warn "the servers logged errors (first lines below)"
    grep -iE 'panick|error' "$SERVER_LOG" | head -5 >&2
fi
py report "$RESULTS" | tee "$SUMMARY"
echo
log "raw results: $RESULTS"
log "summary: $SUMMARY"
