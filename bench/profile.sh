#!/usr/bin/env bash
# Instructions per answer of one scenario, counted by callgrind (valgrind): repeatable whatever else
# the machine is doing, unlike rates and CPU times. For before/after checks of one change, and for
# the profile of where those instructions go (docs/benchmarks.md, "Profiles").
#
#   bench/profile.sh [scenario] [seconds]     # default: ws-updateProfile-memory 10
#
# Scenarios: ws-getProfile, ws-getProfile-metrics (the same with `[metrics] mode = "open"`), ws-updateProfile-memory, ws-updateProfile-sqlite, http-getProfile,
# http-updateProfile-memory, http-updateProfile-sqlite (the names of bench/run.sh). The server runs
# under callgrind with instrumentation off until the load starts; the load generator (4 connections, closed
# loop) runs for `seconds`; instrumentation stops when it ends. The count covers the answers made in that
# time plus each connection's setup request and handshake (a few against thousands of answers).
#
# Prints `instructions/answer` and the top functions by their own instructions; keeps the callgrind
# file under target/profile/ for callgrind_annotate or kcachegrind.
#   PROFILE_SKIP_BUILD=1  use the binaries already in target/profiling
#   PROFILE_TOP=25        functions listed
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SCENARIO=${1:-ws-updateProfile-memory}
SECONDS_=${2:-10}
CONNS=4
BIN=$ROOT/target/profiling
OUT=$ROOT/target/profile
mkdir -p "$OUT"
if [[ "${PROFILE_SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --profile profiling -p tollgate-server -p tollgate-bench >&2
fi
command -v valgrind >/dev/null || { echo "profile: valgrind is not installed" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
PID=
cleanup() { [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

engine=sqlite
[[ $SCENARIO == *-memory ]] && engine=memory
printf '[server]\nmax_connections_per_ip = 0\n[storage]\nengine = "%s"\n' "$engine" >"$WORK/config.toml"
[[ $SCENARIO == *-metrics ]] && printf '[metrics]\nmode = "open"\n' >>"$WORK/config.toml"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
FILE=$OUT/callgrind.$SCENARIO.$STAMP.out
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$FILE" \
    "$BIN/tollgate" --listen "$ADDR" --data-dir "$WORK/data" --config "$WORK/config.toml" \
    --log-level warn 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 1 300); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    sleep 0.2
done

SETUP='{"controller":"security","action":"createOrReplaceProfile","_id":"bench-{conn}","body":{"policies":[{"roleId":"default"}]}}'
case $SCENARIO in
    ws-getProfile | ws-getProfile-metrics) args=(--protocol ws --setup "$SETUP" --request '{"controller":"security","action":"getProfile","_id":"bench-{conn}"}') ;;
    ws-updateProfile-*) args=(--protocol ws --setup "$SETUP" --request '{"controller":"security","action":"updateProfile","_id":"bench-{conn}","body":{"rateLimit":0}}') ;;
    http-getProfile | http-updateProfile-*)
        for c in $(seq 0 $((CONNS - 1))); do
            curl -sf -X PUT "http://$ADDR/profiles/bench-$c" -H 'content-type: application/json' \
                -d '{"policies":[{"roleId":"default"}]}' >/dev/null
        done
        if [[ $SCENARIO == http-getProfile ]]; then
            args=(--protocol http --method GET --path '/profiles/bench-{conn}')
        else
            args=(--protocol http --method PUT --path '/profiles/bench-{conn}/_update' --body '{"rateLimit":0}')
        fi ;;
    *) echo "profile: unknown scenario $SCENARIO" >&2; exit 1 ;;
esac

callgrind_control -i on "$PID" >/dev/null
result=$("$BIN/tollgate-bench" --target "$ADDR" --connections "$CONNS" --duration "$SECONDS_" --warmup 0 \
    "${args[@]}" --label "$SCENARIO" | tail -1)
callgrind_control -i off "$PID" >/dev/null
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=
answers=$(python3 -c 'import json,sys; r = json.loads(sys.argv[1]); print(r["ok"] + r["errors"])' "$result")
[[ $SCENARIO == ws-* ]] && answers=$((answers + CONNS))
total=$(callgrind_annotate "$FILE" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
python3 -c 'import sys; s, n, t = sys.argv[1:]; print(f"{s}: {n} answers, {t} instructions, {int(t) // max(int(n), 1):,} instructions/answer")' \
    "$SCENARIO" "$answers" "${total:-0}"
echo "callgrind file: $FILE"
callgrind_annotate --inclusive=no "$FILE" 2>/dev/null | sed -n '/file:function/,$p' | head -n $((${PROFILE_TOP:-25} + 2)) || true
