#!/usr/bin/env bash
# The benchmark of issue 6: lookupgate (full policy, 1,000 accounts) against nginx (plain
# reverse proxy; limit_req for the refused path) and HAProxy (per-account stick tables), on one
# machine, in one run, with wrk interleaving the targets over several rounds. Installs what is
# missing (wrk, nginx-light, haproxy), builds RelWithDebInfo and runs bench/bench.py, which
# prints one table per mode. All options go to bench/bench.py (--help):
#   bench/run.sh [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-r ROUNDS] [-w WORKERS]
#                [--modes allowed,refused,idle] [--idle N] [--audit-dir DIR] [--redis-module]
#                [--allocs] [--syscalls] [--profile FILE] [--profile-all PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
lg_install_packages wrk nginx-light haproxy redis-server
case " $* " in # perf for --syscalls (perf stat) and --profile[-all] (perf record)
*" --syscalls "* | *" --profile"*) lg_install_packages linux-perf ;;
esac

BUILD=${LG_BENCH_BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target lookupgate lookupgate-audit upstream-stub \
    lookupgate-redis >/dev/null
exec python3 bench/bench.py --build "$BUILD" "$@"
