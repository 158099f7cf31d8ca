#!/usr/bin/env bash
# Benchmark harness: starts a redis-server, the stub upstream and lookupgate on loopback (one
# account whose quotas never bind: the full path of authentication, grant and an exact minute
# and day quota in Redis), runs wrk (keep-alive) against lookupgate and against the stub directly,
# interleaved over several rounds, and prints requests/s and p99 of both side by side, with
# lookupgate's ratio to the bare stub. (The 1,000-account comparison with nginx and HAProxy is
# issue 6.)
#   bench/run.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-r ROUNDS] [-w WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
lg_install_packages wrk

DURATION=5 CONNS=50 THREADS=2 ROUNDS=3 WORKERS=1
while getopts "d:c:t:r:w:" o; do
    case $o in
        d) DURATION=$OPTARG ;; c) CONNS=$OPTARG ;; t) THREADS=$OPTARG ;;
        r) ROUNDS=$OPTARG ;; w) WORKERS=$OPTARG ;; *) exit 2 ;;
    esac
done

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
STUB_PORT=$(free_port)
LG_PORT=$(free_port)
REDIS_PORT=$(free_port)
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

TOKEN=lg_bench-not-a-secret
python3 - "$TMP" "$TOKEN" <<'PY'
import datetime, hashlib, json, sys
today = datetime.date.today()
json.dump({
    "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                      "subject": {"path": "id"}, "purpose": {"dossier": True}}},
    "roles": {"bench": {"operations": ["citizen.lookup"],
                        "quota": {"per_minute": 1000000, "per_day": 1000000000}}},
    "units": {"bench": {}},
    "accounts": [{"id": "bench", "unit": "bench", "roles": ["bench"], "credentials": [{
        "sha256": hashlib.sha256(sys.argv[2].encode()).hexdigest(),
        "issued": (today - datetime.timedelta(days=1)).isoformat(),
        "expires": (today + datetime.timedelta(days=80)).isoformat()}]}],
}, open(sys.argv[1] + "/policy.json", "w"))
PY
cat > "$TMP/lg.json" <<JSON
{"workers": $WORKERS, "log": {"level": "warn"}, "policy": "policy.json",
 "listeners": [{"address": "127.0.0.1:$LG_PORT"}],
 "upstream": {"url": "http://127.0.0.1:$STUB_PORT", "pool_size": 256},
 "store": {"address": "127.0.0.1:$REDIS_PORT"}}
JSON
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" &
pids+=($!)
./build/upstream-stub --port "$STUB_PORT" 2>/dev/null &
pids+=($!)
./build/lookupgate -c "$TMP/lg.json" 2>"$TMP/lg.err" &
pids+=($!)
sleep 0.5

URL_PATH=/api/v1/citizens/079123456789
run_wrk() { # port → "rps p99_ms"
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" \
        -H "X-Dossier-Id: HS-BENCH-1" "http://127.0.0.1:$1$URL_PATH" |
        awk '/Requests\/sec/ {rps=$2}
             /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p99=v}
             END {printf "%.0f %.3f\n", rps, p99}'
}

printf "%-6s %-22s %12s %10s\n" round target "requests/s" "p99 ms"
sum_lg=0 sum_stub=0
for r in $(seq "$ROUNDS"); do
    read -r s_rps s_p99 < <(run_wrk "$STUB_PORT")
    printf "%-6s %-22s %12s %10s\n" "$r" "stub (direct)" "$s_rps" "$s_p99"
    read -r l_rps l_p99 < <(run_wrk "$LG_PORT")
    printf "%-6s %-22s %12s %10s\n" "$r" "lookupgate -> stub" "$l_rps" "$l_p99"
    sum_lg=$((sum_lg + l_rps)) sum_stub=$((sum_stub + s_rps))
done
awk -v a="$sum_lg" -v b="$sum_stub" 'BEGIN {printf "\nlookupgate / stub throughput ratio over all rounds: %.2f\n", a/b}'
echo "(wrk -t$THREADS -c$CONNS -d${DURATION}s, keep-alive, $WORKERS lookupgate worker(s), $(nproc) cores)"
