#!/bin/sh
# Builds tests/bench/bench_cnn.c against build/libaimodel.a and runs it four
# times: with the environment's OPENBLAS_CORETYPE and with it unset (OpenBLAS
# then detects the core), each on 1 and 2 OpenBLAS threads. Arguments are
# passed to bench_cnn: [repetitions [warm-up runs]]. Run `make` first.
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/../.."
if [ ! -f build/libaimodel.a ]; then
    echo "run.sh: build/libaimodel.a is missing; run make first" >&2
    exit 1
fi
mkdir -p build/bench
# pkg-config prints several flags: word splitting is wanted.
# shellcheck disable=SC2046
gcc -std=c11 -O2 -Iinclude -Isrc $(pkg-config --cflags openblas) tests/bench/bench_cnn.c build/libaimodel.a \
    $(pkg-config --libs openblas) -lm -o build/bench/bench_cnn

for threads in 1 2; do
    echo "#### OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_NUM_THREADS=$threads"
    OPENBLAS_NUM_THREADS=$threads build/bench/bench_cnn "$@"
    echo
done
for threads in 1 2; do
    echo "#### env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$threads"
    env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$threads build/bench/bench_cnn "$@"
    echo
done
