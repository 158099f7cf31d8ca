#!/usr/bin/env bash
# Installs what is missing, builds with AddressSanitizer + UndefinedBehaviorSanitizer, and runs
# the whole suite (unit and integration tests, the 2-minute soak, the replay of every fuzzer
# input kept) with ctest; then runs each libFuzzer fuzzer for a bounded time in a clang build.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/deps.sh
# prometheus: promtool checks /metrics; chromium renders the status page in its test;
# nftables and faketime: the Redis black hole, loss and clock-skew tests (test_netfaults);
# clang and libclang-rt-14-dev: the libFuzzer fuzzers; stress-ng: memory pressure (D15);
# fiu-utils: I/O errors injected into the audit writer (G3); valgrind: test_valgrind (I3).
lg_install_packages prometheus chromium nftables faketime clang libclang-rt-14-dev stress-ng \
    fiu-utils valgrind

BUILD_DIR=${BUILD_DIR:-build/asan}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Debug -DLOOKUPGATE_SANITIZE=ON
cmake --build "$BUILD_DIR" -j"$(nproc)"

# A build without sanitizers for test_valgrind (I3: the gateway under valgrind --leak-check=full).
PLAIN_DIR=${PLAIN_DIR:-build/plain}
cmake -S . -B "$PLAIN_DIR" -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$PLAIN_DIR" -j"$(nproc)" --target lookupgate lookupgate-audit upstream-stub
export LG_VALGRIND_BUILD="$PWD/$PLAIN_DIR"

# The fuzzers: a clang build with libFuzzer, each fuzzer run for a bounded time on a copy of
# its seed corpus (tests/fuzz/run-long.sh runs them for longer).
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
CC=clang cmake -S . -B "$FUZZ_DIR" -DCMAKE_BUILD_TYPE=Debug -DLOOKUPGATE_FUZZ=ON \
    -DLOOKUPGATE_FUZZ_SECONDS="${LOOKUPGATE_FUZZ_SECONDS:-10}" >/dev/null
cmake --build "$FUZZ_DIR" -j"$(nproc)" --target fuzz_head fuzz_chunked fuzz_config fuzz_policy \
    fuzz_audit fuzz_recover fuzz_redis fuzz_upstream

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 "$@")
(cd "$FUZZ_DIR" && ctest --output-on-failure -j2 -L fuzz)
