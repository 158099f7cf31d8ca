#!/usr/bin/env bash
# Installs what is missing, builds, and runs a private redis-server, the stub upstream and
# lookupgate with the example policy on loopback in the foreground until Ctrl-C, printing curl
# lines to try. The demo credentials' dates are set to today (the example policy's fixed dates
# would otherwise expire); the tokens are the documented demo tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
lg_install_packages

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

DEMO_DIR=${DEMO_DIR:-demo}
mkdir -p "$DEMO_DIR"
DEMO_ABS=$(cd "$DEMO_DIR" && pwd)
REDIS_PORT=${REDIS_PORT:-6380}
for port in 8080 9000 9090 "$REDIS_PORT"; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "port $port on 127.0.0.1 is in use; stop what is listening there first" >&2
        exit 1
    fi
done

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The runtime config and policy: the examples, with the demo Redis port and today's dates.
python3 - "$DEMO_DIR" "$REDIS_PORT" <<'PY'
import datetime, json, os, sys
d, port = sys.argv[1], int(sys.argv[2])
cfg = json.load(open("deploy/lookupgate.example.json"))
cfg["policy"] = "policy.json"
cfg["store"]["address"] = "127.0.0.1:%d" % port
# The audit log under the demo directory; its keys beside it, outside the log directory.
cfg["audit"].update({"dir": "audit", "signing_key": "keys/signing.key",
                     "cid_key": "keys/cid.key", "min_free_mb": 1})
json.dump(cfg, open(os.path.join(d, "lookupgate.json"), "w"), indent=2)
pol = json.load(open("deploy/policy.example.json"))
today = datetime.date.today()
for a in pol["accounts"]:
    for c in a["credentials"]:
        c["issued"] = (today - datetime.timedelta(days=1)).isoformat()
        c["expires"] = (today + datetime.timedelta(days=80)).isoformat()
json.dump(pol, open(os.path.join(d, "policy.json"), "w"), indent=2, ensure_ascii=False)
PY

[ -f "$DEMO_DIR/keys/signing.key" ] || ./build/lookupgate-audit keygen --out "$DEMO_DIR/keys"

# With the lookupgate module (build/lookupgate-redis.so): quotas are decided by its
# LOOKUPGATE.ADMIT command, as in the recommended deployment (README, "The Redis module").
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DEMO_ABS" --logfile "$DEMO_ABS/redis.log" \
    --loadmodule "$PWD/build/lookupgate-redis.so" &
pids+=($!)
./build/upstream-stub --host 127.0.0.1 --port 9000 2>"$DEMO_DIR/upstream-stub.log" &
pids+=($!)
./build/lookupgate -t -c "$DEMO_DIR/lookupgate.json"
./build/lookupgate -c "$DEMO_DIR/lookupgate.json" 2>"$DEMO_DIR/lookupgate.log" &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.1
done

cat <<'TXT'

lookupgate is running on http://127.0.0.1:8080 in front of the stub upstream on 127.0.0.1:9000,
with quotas counted in the demo redis-server on 127.0.0.1:6380 (by the lookupgate module's
LOOKUPGATE.ADMIT: `redis-cli -p 6380 info commandstats` counts its calls). Demo accounts (tokens are not
secret; see deploy/policy.example.json):
  demo.xuly      Bearer lg_demo-xuly-not-a-secret      citizen.lookup + citizen.verify, 10/min, 100/day
  demo.tiepnhan  Bearer lg_demo-tiepnhan-not-a-secret  citizen.verify only,              5/min, 20/day
Try, in another terminal:

  # 1. an allowed lookup: 200, with RateLimit headers and an X-Request-Id
  curl -si -H 'Authorization: Bearer lg_demo-xuly-not-a-secret' -H 'X-Dossier-Id: HS-2026-0001' \
       http://127.0.0.1:8080/api/v1/citizens/079123456789

  # 2. a grant refusal: demo.tiepnhan may only verify, so a lookup is 403 operation-not-granted
  curl -si -H 'Authorization: Bearer lg_demo-tiepnhan-not-a-secret' -H 'X-Dossier-Id: HS-2026-0001' \
       http://127.0.0.1:8080/api/v1/citizens/079123456789

  # 3. a quota refusal: demo.xuly may make 10 lookups a minute (counting the one above); the
  #    next ones are 429 quota-exceeded
  #    with Retry-After, RateLimit-Policy and RateLimit
  for i in $(seq 11); do curl -s -o /dev/null -w '%{http_code} ' \
       -H 'Authorization: Bearer lg_demo-xuly-not-a-secret' -H 'X-Dossier-Id: HS-2026-0001' \
       http://127.0.0.1:8080/api/v1/citizens/079123456789; done; echo
  curl -si -H 'Authorization: Bearer lg_demo-xuly-not-a-secret' -H 'X-Dossier-Id: HS-2026-0001' \
       http://127.0.0.1:8080/api/v1/citizens/079123456789

  # 4. a verification by demo.tiepnhan (POST with a JSON body): allowed
  curl -si -H 'Authorization: Bearer lg_demo-tiepnhan-not-a-secret' -H 'X-Dossier-Id: HS-2026-0001' \
       -H 'Content-Type: application/json' \
       -d '{"so_dinh_danh":"079123456789","ho_ten":"Phạm Văn An","ngay_sinh":"1987-06-22"}' \
       http://127.0.0.1:8080/api/v1/citizens/verify

  # 5. no credential: 401 with WWW-Authenticate
  curl -si http://127.0.0.1:8080/api/v1/citizens/079123456789

  # the counters in Redis (keys carry the account's hash tag and all expire)
  redis-cli -p 6380 --scan --pattern 'lg:*'

  # the audit log: one JSON record per line in demo/audit (no citizen ID, no token in it)
  ./build/lookupgate-audit verify demo/audit --pubkey demo/keys/signing.pub --live
  # who looked up citizen 079123456789, and an account's lookups, merged by time
  ./build/lookupgate-audit search demo/audit --pubkey demo/keys/signing.pub --live \
       --citizen 079123456789 --cid-key demo/keys/cid.key
  ./build/lookupgate-audit search demo/audit --pubkey demo/keys/signing.pub --live \
       --account demo.xuly --format csv
  ./build/lookupgate-audit stats demo/audit --pubkey demo/keys/signing.pub --live
  # after Ctrl-C the log is closed and signed: verify without --live passes

  # the admin API on 127.0.0.1:9090 (demo admin token: lg_demo-admin-not-a-secret)
  A='Authorization: Bearer lg_demo-admin-not-a-secret'
  curl -s -H "$A" http://127.0.0.1:9090/admin/v1/accounts/demo.xuly      # usage, last use
  curl -s -H "$A" -d '{"reason":"demo: credential leaked"}' \
       http://127.0.0.1:9090/admin/v1/accounts/demo.xuly/suspend         # then try lookup 1: 403
  curl -s -H "$A" -X POST http://127.0.0.1:9090/admin/v1/accounts/demo.xuly/resume
  curl -s -H "$A" 'http://127.0.0.1:9090/admin/v1/reports/credentials?days=90'
  curl -s -H "$A" 'http://127.0.0.1:9090/admin/v1/reports/idle?days=0'
  curl -s -H "$A" http://127.0.0.1:9090/metrics | grep '^lookupgate_requests_total'
  # the status page in a browser: http://127.0.0.1:9090/status
  #   (any user name; password lg_demo-admin-not-a-secret)

Logs are in demo/. Press Ctrl-C to stop.
TXT
wait "${pids[2]}"
