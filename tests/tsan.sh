#!/bin/sh
# Builds tests/test_threads.c, tests/test_threadpool.c, tests/test_batch_norm.c,
# tests/test_dropout.c (the pool split by channel, and masks drawn per
# sample on any split) and tests/test_steps.c (threads generating text one
# token at a time from one shared model) with ThreadSanitizer,
# each together with the library's own sources (src/*/*.c, so the library code
# is instrumented too, not only the test), into build/tsan/, and runs them.
# Exits non-zero if a build fails, a test fails or ThreadSanitizer reports
# anything.
#
# OPENBLAS_NUM_THREADS=1: OpenBLAS is a prebuilt, uninstrumented library. Its
# own worker pool hands work between threads through spin-waits and flags
# that ThreadSanitizer cannot see, so our buffers that its workers read or
# write can be reported as races that are not ours (this test's GEMMs are
# small enough that OpenBLAS usually keeps them on the calling thread, but
# that depends on its version and build). With one OpenBLAS thread every GEMM
# runs on the calling thread, and what remains is exactly the concurrency the
# tests create: 8 threads calling aim_model_predict() on one shared model
# (test_threads), and the library's own thread pool splitting batches, shared
# by 4 threads predicting at once (test_threadpool). One blind spot remains:
# accesses made inside OpenBLAS are not instrumented, so a race one side of
# which is a GEMM's read or write can go unreported (test_threadpool's
# comparisons with a run without a pool catch what the race corrupts).
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

failed=0
for t in test_threads test_threadpool test_batch_norm test_dropout test_steps; do
    # pkg-config prints several flags: word splitting is wanted.
    # shellcheck disable=SC2046
    gcc -std=c11 -D_POSIX_C_SOURCE=200809L -DAIM_NO_MULTIVERSION -g -O1 -fsanitize=thread -fno-omit-frame-pointer \
        -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes \
        -Iinclude -Isrc -Isrc/core -Itests $(pkg-config --cflags openblas) \
        src/*/*.c "tests/$t.c" tests/support.c \
        $(pkg-config --libs openblas) -lcmocka -lm -pthread \
        -o "$out/$t"

    log="$out/$t.log"
    status=0
    # halt_on_error=1: the first report ends the run with TSan's exit code (66).
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}" \
    OPENBLAS_NUM_THREADS=1 \
        "$out/$t" >"$log" 2>&1 || status=$?
    cat "$log"

    # Belt and braces: a report that somehow did not change the exit status
    # still fails the run.
    reports=$(grep -c '^WARNING: ThreadSanitizer' "$log" || true)
    if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ]; then
        echo "tsan: $t FAILED (exit status $status, $reports ThreadSanitizer report(s)); log in $log" >&2
        failed=1
    else
        echo "tsan: $t passed with no ThreadSanitizer reports"
    fi
done
exit "$failed"
