#!/bin/sh
# Runs one fuzzer for SECONDS on a working copy of its seed corpus (new inputs go to the copy,
# never into the source tree), with the HTTP dictionary. A finding is written as
# WORKDIR/crash-* and fails the run: copy it into tests/fuzz/regressions/NAME/ once fixed.
#   run-one.sh FUZZER_BINARY NAME SECONDS WORKDIR SOURCE_DIR
set -eu
bin=$1 name=$2 secs=$3 work=$4 src=$5
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$src/corpus/$name" ]; then cp -n "$src/corpus/$name"/* "$work/corpus/" 2>/dev/null || true; fi
if [ -d "$src/regressions/$name" ]; then cp -n "$src/regressions/$name"/* "$work/corpus/" 2>/dev/null || true; fi
dict=""
[ -f "$src/dict/$name.dict" ] && dict="-dict=$src/dict/$name.dict"
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" $dict "$work/corpus"
