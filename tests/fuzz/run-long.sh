#!/usr/bin/env bash
# Runs every fuzzer for as long as asked (default 600 s each), one after the other, in a clang
# build (build/fuzz). Findings land in build/fuzz/fuzz-work/NAME/artifacts/.
#   tests/fuzz/run-long.sh [SECONDS] [FUZZER ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
shift || true
CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DLOOKUPGATE_FUZZ=ON >/dev/null
cmake --build build/fuzz -j"$(nproc)" >/dev/null
fuzzers=("$@")
[ ${#fuzzers[@]} -gt 0 ] || fuzzers=(head chunked config policy audit recover redis upstream)
status=0
for f in "${fuzzers[@]}"; do
    echo "== $f: $secs s"
    if ! sh tests/fuzz/run-one.sh "build/fuzz/fuzz_$f" "$f" "$secs" \
            "build/fuzz/fuzz-work/$f" tests/fuzz 2>"build/fuzz/fuzz-$f.log"; then
        echo "   FINDING: see build/fuzz/fuzz-$f.log and build/fuzz/fuzz-work/$f/artifacts/"
        status=1
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov: " "build/fuzz/fuzz-$f.log" | tail -3
done
exit $status
