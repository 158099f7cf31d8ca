#!/usr/bin/env bash
# Soak run (D14): bench/soak.sh DURATION_SECONDS [soak.py options]. Builds with ASan+UBSan (so
# that "zero sanitizer reports" means something) unless LG_BUILD_DIR names a build, then runs
# bench/soak.py: mixed traffic, Redis restarts and a reload, RSS / fd / p99 samples, and the
# audit log checked against the requests sent. ./deploy/test.sh runs a 2-minute soak.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:?usage: bench/soak.sh DURATION_SECONDS [options]}
shift
if [ -z "${LG_BUILD_DIR:-}" ]; then
    . deploy/deps.sh
    lg_install_packages
    cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DLOOKUPGATE_SANITIZE=ON >/dev/null
    cmake --build build/asan -j"$(nproc)" >/dev/null
    export LG_BUILD_DIR=$PWD/build/asan
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
exec python3 bench/soak.py "$DURATION" --build "$LG_BUILD_DIR" "$@"
