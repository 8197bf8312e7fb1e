#!/bin/sh
# Builds tests/test_threads.c with ThreadSanitizer, together with the library's
# own sources (src/*.c, so the library code is instrumented too, not only the
# test), into build/tsan/test_threads, and runs it. Exits non-zero if the build
# fails, a test fails or ThreadSanitizer reports anything.
#
# OPENBLAS_NUM_THREADS=1: OpenBLAS is a prebuilt, uninstrumented library. Its
# own worker pool hands work between threads through spin-waits and flags
# that ThreadSanitizer cannot see, so our buffers that its workers read or
# write can be reported as races that are not ours (this test's GEMMs are
# small enough that OpenBLAS usually keeps them on the calling thread, but
# that depends on its version and build). With one OpenBLAS thread every GEMM
# runs on the calling thread, and what remains is exactly the concurrency the
# test creates: 8 threads calling aim_model_predict() on one shared model.
#
# AIM_NO_MULTIVERSION: the multiversioned loops (src/internal.h, AIM__HOT) are
# chosen by ifunc resolvers that run before ThreadSanitizer's runtime is up,
# which crashes at start; the single-version build is the same code.
#
# Usage: tests/tsan.sh   (from anywhere; needs gcc, libtsan, OpenBLAS, cmocka)
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/.."

out=build/tsan
mkdir -p "$out"

# pkg-config prints several flags: word splitting is wanted.
# shellcheck disable=SC2046
gcc -std=c11 -D_POSIX_C_SOURCE=200809L -DAIM_NO_MULTIVERSION -g -O1 -fsanitize=thread -fno-omit-frame-pointer \
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes \
    -Iinclude -Itests $(pkg-config --cflags openblas) \
    src/*.c tests/test_threads.c tests/support.c \
    $(pkg-config --libs openblas) -lcmocka -lm -pthread \
    -o "$out/test_threads"

log="$out/test_threads.log"
status=0
# halt_on_error=1: the first report ends the run with TSan's exit code (66).
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}" \
OPENBLAS_NUM_THREADS=1 \
    "$out/test_threads" >"$log" 2>&1 || status=$?
cat "$log"

# Belt and braces: a report that somehow did not change the exit status
# still fails the run.
reports=$(grep -c '^WARNING: ThreadSanitizer' "$log" || true)
if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ]; then
    echo "tsan: FAILED (exit status $status, $reports ThreadSanitizer report(s)); log in $log" >&2
    exit 1
fi
echo "tsan: test_threads passed with no ThreadSanitizer reports"
