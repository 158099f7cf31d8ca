#!/usr/bin/env bash
# Installs what is missing, builds with AddressSanitizer + UndefinedBehaviorSanitizer, and runs
# the whole suite (unit and integration tests) with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
# prometheus: promtool checks /metrics; chromium renders the status page in its test;
# nftables and faketime: the Redis black hole, loss and clock-skew tests (test_netfaults).
lg_install_packages prometheus chromium nftables faketime

BUILD_DIR=${BUILD_DIR:-build/asan}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Debug -DLOOKUPGATE_SANITIZE=ON
cmake --build "$BUILD_DIR" -j"$(nproc)"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$BUILD_DIR"
ctest --output-on-failure -j2 "$@"
