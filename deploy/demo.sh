#!/usr/bin/env bash
# Installs what is missing, builds, and runs the stub upstream and lookupgate on loopback in the
# foreground until Ctrl-C, printing curl lines to try.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
lg_install_packages

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

DEMO_DIR=${DEMO_DIR:-demo}
mkdir -p "$DEMO_DIR"
for port in 8080 9000; do
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

./build/upstream-stub --host 127.0.0.1 --port 9000 2>"$DEMO_DIR/upstream-stub.log" &
pids+=($!)
./build/lookupgate -t -c deploy/lookupgate.example.json
./build/lookupgate -c deploy/lookupgate.example.json 2> >(tee "$DEMO_DIR/lookupgate.log" >&2) &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.1
done

cat <<'TXT'

lookupgate is running on http://127.0.0.1:8080 in front of the stub upstream on 127.0.0.1:9000.
Try, in another terminal:

  # a citizen lookup, forwarded to the upstream (note the X-Request-Id header)
  curl -si http://127.0.0.1:8080/api/v1/citizens/079123456789

  # a verification (POST with a JSON body)
  curl -si -X POST -H 'Content-Type: application/json' \
       -d '{"so_dinh_danh":"079123456789","ho_ten":"Phạm Văn An","ngay_sinh":"1987-06-22"}' \
       http://127.0.0.1:8080/api/v1/citizens/verify

  # a path that normalises differently from how it reads: refused with a problem+json 400
  curl -si --path-as-is 'http://127.0.0.1:8080/api/v1/citizens/%2e%2e/admin'

  # a method outside the allowlist: 405
  curl -si -X TRACE http://127.0.0.1:8080/api/v1/citizens/079123456789

Logs are in demo/. Press Ctrl-C to stop.
TXT
wait "${pids[1]}"
