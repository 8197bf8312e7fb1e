#!/bin/sh
# Builds tests/bench/bench_cnn.c and tests/bench/bench_lstm.c against
# build/libaimodel.a and runs each four times: with the environment's
# OPENBLAS_CORETYPE and with it unset (OpenBLAS then detects the core), each
# on 1 and 2 OpenBLAS threads. Arguments are passed to every program:
# [repetitions [warm-up runs]]. BENCHES="bench_lstm" (a space-separated list)
# runs only those programs. Run `make` first.
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/../.."
if [ ! -f build/libaimodel.a ]; then
    echo "run.sh: build/libaimodel.a is missing; run make first" >&2
    exit 1
fi
benches=${BENCHES:-"bench_cnn bench_lstm"}
for b in $benches; do
    case $b in
    bench_cnn | bench_lstm) ;;
    *)
        echo "run.sh: unknown bench '$b' (known: bench_cnn bench_lstm)" >&2
        exit 1
        ;;
    esac
done
mkdir -p build/bench
# pkg-config prints several flags: word splitting is wanted.
# shellcheck disable=SC2046
gcc -std=c11 -O2 -Iinclude -Isrc -Isrc/core $(pkg-config --cflags openblas) tests/bench/bench_cnn.c build/libaimodel.a \
    $(pkg-config --libs openblas) -lm -o build/bench/bench_cnn
# bench_lstm times copies of the library's LSTM cell loops, so it is built
# with the library's LIB_OPT (the Makefile's default, or $LIB_OPT as make
# would take it); --wrap=cblas_sgemm lets it time the library's own sgemm
# calls in situ (it still builds and runs without the flag).
lib_opt=${LIB_OPT:-$(sed -n 's/^LIB_OPT *?= *//p' Makefile)}
# shellcheck disable=SC2046,SC2086
gcc -std=c11 -O2 ${lib_opt:--O3} -Iinclude -Isrc -Isrc/core $(pkg-config --cflags openblas) tests/bench/bench_lstm.c \
    build/libaimodel.a $(pkg-config --libs openblas) -lm -Wl,--wrap=cblas_sgemm -o build/bench/bench_lstm

for b in $benches; do
    for threads in 1 2; do
        echo "#### $b: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_NUM_THREADS=$threads"
        OPENBLAS_NUM_THREADS=$threads "build/bench/$b" "$@"
        echo
    done
    for threads in 1 2; do
        echo "#### $b: env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$threads"
        env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=$threads "build/bench/$b" "$@"
        echo
    done
done
