#!/usr/bin/env bash
# Benchmark harness: starts a redis-server, the stub upstream and two lookupgates on loopback
# (one account whose quotas never bind: the full path of authentication, grant, an exact minute
# and day quota in Redis, and two durable audit records per lookup). One lookupgate keeps its
# audit log on a normal disk (under the build directory), the other on tmpfs (/dev/shm), to show
# what fsync costs. wrk (keep-alive) runs against the stub directly and both lookupgates,
# interleaved over several rounds; it prints requests/s and p99 side by side, with each
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
LG_SHM_PORT=$(free_port)
REDIS_PORT=$(free_port)
TMP=$(mktemp -d)
DISK_DIR=$(mktemp -d "$PWD/build/bench-audit-XXXXXX")  # the disk the checkout is on
SHM_DIR=$(mktemp -d /dev/shm/lg-bench-audit-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP" "$DISK_DIR" "$SHM_DIR"
}
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
./build/lookupgate-audit keygen --out "$TMP/keys" >/dev/null
for v in disk:$LG_PORT:$DISK_DIR shm:$LG_SHM_PORT:$SHM_DIR; do
    IFS=: read -r name port dir <<<"$v"
    cat > "$TMP/lg-$name.json" <<JSON
{"workers": $WORKERS, "log": {"level": "warn"}, "policy": "policy.json", "instance": "bench-$name",
 "listeners": [{"address": "127.0.0.1:$port"}],
 "upstream": {"url": "http://127.0.0.1:$STUB_PORT", "pool_size": 256},
 "store": {"address": "127.0.0.1:$REDIS_PORT"},
 "audit": {"dir": "$dir/audit", "signing_key": "keys/signing.key", "cid_key": "keys/cid.key",
           "min_free_mb": 1}}
JSON
done
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" &
pids+=($!)
./build/upstream-stub --port "$STUB_PORT" 2>/dev/null &
pids+=($!)
./build/lookupgate -c "$TMP/lg-disk.json" 2>"$TMP/lg-disk.err" &
pids+=($!)
./build/lookupgate -c "$TMP/lg-shm.json" 2>"$TMP/lg-shm.err" &
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

printf "%-6s %-34s %12s %10s\n" round target "requests/s" "p99 ms"
sum_lg=0 sum_shm=0 sum_stub=0 p99_lg=0 p99_shm=0
for r in $(seq "$ROUNDS"); do
    read -r s_rps s_p99 < <(run_wrk "$STUB_PORT")
    printf "%-6s %-34s %12s %10s\n" "$r" "stub (direct)" "$s_rps" "$s_p99"
    read -r l_rps l_p99 < <(run_wrk "$LG_PORT")
    printf "%-6s %-34s %12s %10s\n" "$r" "lookupgate, audit log on disk" "$l_rps" "$l_p99"
    read -r m_rps m_p99 < <(run_wrk "$LG_SHM_PORT")
    printf "%-6s %-34s %12s %10s\n" "$r" "lookupgate, audit log on tmpfs" "$m_rps" "$m_p99"
    sum_lg=$((sum_lg + l_rps)) sum_shm=$((sum_shm + m_rps)) sum_stub=$((sum_stub + s_rps))
    p99_lg=$(awk -v a="$p99_lg" -v b="$l_p99" 'BEGIN {print (b > a ? b : a)}')
    p99_shm=$(awk -v a="$p99_shm" -v b="$m_p99" 'BEGIN {print (b > a ? b : a)}')
done
awk -v a="$sum_lg" -v m="$sum_shm" -v b="$sum_stub" -v r="$ROUNDS" -v pl="$p99_lg" -v pm="$p99_shm" 'BEGIN {
    printf "\naudit log on disk:  %8.0f requests/s (mean), worst p99 %.3f ms, ratio to the stub %.2f\n", a/r, pl, a/b
    printf "audit log on tmpfs: %8.0f requests/s (mean), worst p99 %.3f ms, ratio to the stub %.2f\n", m/r, pm, m/b
    printf "disk / tmpfs throughput: %.2f\n", a/m }'
echo "(wrk -t$THREADS -c$CONNS -d${DURATION}s, keep-alive, $WORKERS lookupgate worker(s) each, $(nproc) cores)"
for name in disk shm; do
    ./build/lookupgate-audit verify "$( [ $name = disk ] && echo "$DISK_DIR" || echo "$SHM_DIR")/audit" \
        --pubkey "$TMP/keys/signing.pub" --live | head -1
done
