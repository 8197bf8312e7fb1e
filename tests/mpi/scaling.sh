#!/bin/sh
# Throughput of examples/mpi/mpi_data_parallel on 1 and 2 ranks, for the
# figures of docs/DISTRIBUTED.md. Prints figures; fails only if a run fails.
#
#   make build/examples/mpi/mpi_data_parallel
#   tests/mpi/scaling.sh [repetitions]      # default 3; the best run counts
#
# Every run uses one OpenBLAS thread per rank, so 2 ranks use the machine's
# 2 cores; the last column is the other way to use them: 1 rank with 2
# OpenBLAS threads. The global batch G is fixed per row: 2 ranks each
# compute G/2 samples (strong scaling); weak scaling compares rows whose
# shard is equal (1 rank at G against 2 ranks at 2G).
set -eu

BIN=${BIN:-build/examples/mpi/mpi_data_parallel}
MPIRUN=${MPIRUN:-mpirun}
MPIRUN_FLAGS=${MPIRUN_FLAGS:---oversubscribe --allow-run-as-root}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
REPS=${1:-3}

[ -x "$BIN" ] || { echo "scaling.sh: $BIN not built (make $BIN)" >&2; exit 1; }

# Other processes on a 2-CPU machine stall one of two ranks in lockstep and
# halve the figure: before each run, wait (up to IDLE_WAIT seconds) until
# the CPUs were at most 15% busy over one second, as /proc/stat counts.
IDLE_WAIT=${IDLE_WAIT:-300}
busy_percent() {
    a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
    echo "$a $b" | awk '{ u1 = $2+$3+$4+$7+$8; t1 = u1+$5+$6; u2 = $13+$14+$15+$18+$19; t2 = u2+$16+$17;
                          printf "%d\n", 100 * (u2 - u1) / (t2 - t1) }'
}
wait_idle() {
    [ -r /proc/stat ] || return 0
    waited=0
    while [ "$(busy_percent)" -gt 15 ] && [ "$waited" -lt "$IDLE_WAIT" ]; do sleep 4; waited=$((waited + 5)); done
    [ "$waited" -lt "$IDLE_WAIT" ] || echo "scaling.sh: the machine stayed busy; figures may be low" >&2
}

# best THREADS NP ARGS...: the highest steps_per_second of REPS runs.
best() {
    threads=$1; np=$2; shift 2
    top=0
    i=0
    while [ "$i" -lt "$REPS" ]; do
        wait_idle
        # shellcheck disable=SC2086 # MPIRUN_FLAGS is a list of words
        line=$(OPENBLAS_NUM_THREADS=$threads $MPIRUN $MPIRUN_FLAGS -np "$np" "$BIN" --data "$DATA" "$@" 2>/dev/null |
               grep '^RESULT ') || { echo "scaling.sh: run failed: -np $np $*" >&2; exit 1; }
        case $line in *data=fashion-mnist*) ;; *) echo "scaling.sh: not on Fashion-MNIST: $line" >&2; exit 1 ;; esac
        s=$(echo "$line" | sed 's/.* steps_per_second=\([0-9.]*\).*/\1/')
        top=$(awk -v a="$top" -v b="$s" 'BEGIN { print (b > a) ? b : a }')
        i=$((i + 1))
    done
    echo "$top"
}

echo "mpi scaling: $(nproc) CPUs online, OpenBLAS core ${OPENBLAS_CORETYPE:-auto}, best of $REPS runs, $($MPIRUN --version | head -1)"
printf '%-5s %6s %7s | %12s %12s %8s %10s | %14s\n' model G steps "1 rank st/s" "2 ranks st/s" speedup efficiency "1 rank 2 thr"
for spec in "mlp 32 6000" "mlp 64 4000" "mlp 128 2000" "mlp 512 600" "cnn 32 300" "cnn 64 160" "cnn 128 80"; do
    set -- $spec
    model=$1; g=$2; steps=$3
    one=$(best 1 1 --model "$model" --batch "$g" --steps "$steps")
    two=$(best 1 2 --model "$model" --batch "$g" --steps "$steps")
    thr=$(best 2 1 --model "$model" --batch "$g" --steps "$steps")
    awk -v m="$model" -v g="$g" -v n="$steps" -v a="$one" -v b="$two" -v c="$thr" 'BEGIN {
        printf "%-5s %6d %7d | %12.1f %12.1f %7.2fx %9.0f%% | %14.1f\n", m, g, n, a, b, b / a, 50 * b / a, c }'
done
