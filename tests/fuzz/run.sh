#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz into build/fuzz/ and runs each
# for a bounded time.
#   tests/fuzz/run.sh [SECONDS]      (default 60 per target)
# Needs clang and libFuzzer (Debian: clang, libclang-rt-<version>-dev).
# First each target replays the inputs kept in tests/fuzz/crashes/ (its name
# as their prefix) as regression tests, then it fuzzes. The deserializer
# starts from a copy of tests/fuzz/corpus, the builder from a copy of
# tests/fuzz/corpus_build; the committed corpora are never written. New
# crashing inputs are saved under build/fuzz/artifacts/.
# Exits non-zero if a target crashes, leaks, times out or fails to build.
# FUZZ_EXTRA_CFLAGS is appended to the compile line, e.g.
# FUZZ_EXTRA_CFLAGS=-fno-sanitize=pointer-overflow to look past a known finding.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-60}
CC=${CC_FUZZ:-clang}
out=build/fuzz
mkdir -p "$out/artifacts"

# One BLAS thread: the models are tiny, and threads only add noise.
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for t in fuzz_deserialize fuzz_build; do
  echo "== build $out/$t"
  # shellcheck disable=SC2046
  "$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iinclude -Isrc -Isrc/core \
    ${FUZZ_EXTRA_CFLAGS:-} $(pkg-config --cflags openblas) src/*/*.c "tests/fuzz/$t.c" $(pkg-config --libs openblas) -lm \
    -o "$out/$t"
done

status=0
replay() { # name: runs the kept reproducers once each
  local name=$1 files
  files=$(find tests/fuzz/crashes -name "$name-*" -type f 2>/dev/null | sort)
  [ -n "$files" ] || return 0
  echo "== replay tests/fuzz/crashes/$name-*"
  # shellcheck disable=SC2086
  if "$out/$name" -runs=1 $files >"$out/$name.replay.log" 2>&1; then
    echo "   $(echo "$files" | wc -l) kept input(s) pass"
  else
    echo "!! a kept input still fails:"
    grep -E 'runtime error|ERROR: AddressSanitizer|^Running:|SUMMARY' "$out/$name.replay.log" | head -n 20
    status=1
  fi
}

run_one() { # name, corpus directories...
  local name=$1; shift
  local log="$out/$name.log"
  echo "== run $name for ${secs}s"
  set +e
  "$out/$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$name-" "$@" >"$log" 2>&1
  local rc=$?
  set -e
  # libFuzzer's closing lines: "Done N runs in S second(s)" and the stats.
  grep -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|slowest_unit_time_sec|peak_rss_mb)' "$log" || true
  if [ $rc -ne 0 ]; then
    echo "!! $name exited with status $rc; the end of $log:"
    tail -n 60 "$log"
    ls -l "$out/artifacts/" | grep -- "$name-" || true
    status=1
  fi
}

# A fresh working copy of the seed corpus; new units land there, not in git.
work="$out/work"
rm -rf "$work"
mkdir -p "$work/deserialize" "$work/build"
cp tests/fuzz/corpus/* "$work/deserialize/"
cp tests/fuzz/corpus_build/* "$work/build/"

replay fuzz_deserialize
run_one fuzz_deserialize "$work/deserialize"
replay fuzz_build
run_one fuzz_build "$work/build"

if [ $status -ne 0 ]; then
  echo "fuzz: FAILED (inputs in $out/artifacts/; keep reproducers under tests/fuzz/crashes/)"
else
  echo "fuzz: no crash in ${secs}s per target"
fi
exit $status
