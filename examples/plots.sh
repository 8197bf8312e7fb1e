#!/bin/sh
# Learning curves of the examples as PNG images (`make plots`): runs
# mlp_classifier (5 epochs), cnn_classifier and linear_regression with
# --log FILE into BUILD/plots/ and draws each log with examples/plots.gp:
#   mlp_classifier.png     loss, accuracy and val_accuracy per epoch
#   cnn_classifier.png     the same; 1 epoch by default (about 40 s against
#                          2 min for its own default of 3), so one point per
#                          series; PLOTS_CNN_EPOCHS=3 draws real curves
#   linear_regression.png  the data, the fitted line and the true
#                          y = 3x + 2, beside loss, slope and intercept
#                          per epoch
# The CSVs and each program's output (NAME.txt) stay beside the images.
# Needs gnuplot: as root Debian's gnuplot-nox is installed with apt-get when
# no gnuplot is found, otherwise the command is printed and nothing is run.
# Usage: examples/plots.sh [BUILD] (default build; the examples must be
# built, `make plots` does that). PLOTS_ARGS is passed to the Fashion-MNIST
# programs (e.g. --synthetic or --data DIR).
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
out=$build/plots
cnn_epochs=${PLOTS_CNN_EPOCHS:-1}
extra=${PLOTS_ARGS:-}

gnuplot=$(command -v gnuplot || command -v gnuplot-nox || true)
if [ -z "$gnuplot" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "plots: installing gnuplot-nox"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null) ||
        echo "plots: apt-get could not install gnuplot-nox" >&2
    gnuplot=$(command -v gnuplot || command -v gnuplot-nox || true)
fi
if [ -z "$gnuplot" ]; then
    echo "plots: gnuplot is missing; run: sudo apt-get update && sudo apt-get install -y gnuplot-nox"
    echo "plots: skipped"
    exit 0
fi
for p in mlp_classifier cnn_classifier linear_regression; do
    if [ ! -x "$build/examples/$p" ]; then
        echo "plots.sh: $build/examples/$p is missing; run make examples first" >&2
        exit 1
    fi
done
# pngcairo draws antialiased lines; the plain png terminal (libgd) is the
# fallback of a gnuplot built without cairo.
if "$gnuplot" -e 'set terminal pngcairo' >/dev/null 2>&1; then
    terminal=pngcairo
else
    terminal=png
fi
mkdir -p "$out"

# run NAME ARGS...: runs one example with --log, its output shown and kept in
# $out/NAME.txt; stops the script if it fails.
run() {
    name=$1
    shift
    echo "plots: $build/examples/$name${*:+ $*} --log $out/$name.csv"
    rm -f "$out/$name.csv" "$out/$name.rc"
    # The exit status crosses the pipe through a file: sh has no pipefail.
    { "$build/examples/$name" "$@" --log "$out/$name.csv" && echo 0 >"$out/$name.rc" ||
        echo $? >"$out/$name.rc"; } | tee "$out/$name.txt"
    if [ "$(cat "$out/$name.rc")" != 0 ]; then
        echo "plots.sh: $name failed (exit status $(cat "$out/$name.rc"))" >&2
        exit 1
    fi
    rm -f "$out/$name.rc"
}

# field NAME KEY: KEY's value on NAME's RESULT line (its last line).
field() {
    tail -n 1 "$out/$1.txt" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# draw NAME KIND TITLE: renders $out/NAME.csv with plots.gp into $out/NAME.png.
draw() {
    "$gnuplot" -e "kind='$2'; csv='$out/$1.csv'; png='$out/$1.png'; heading='$3'; terminal='$terminal'" \
        examples/plots.gp
    echo "plots: wrote $out/$1.png"
}

# PLOTS_ARGS is split into words on purpose.
# shellcheck disable=SC2086
run mlp_classifier --epochs 5 $extra
# shellcheck disable=SC2086
run cnn_classifier --epochs "$cnn_epochs" $extra
run linear_regression

draw mlp_classifier curves "mlp_classifier: 784-64-64-10 MLP, Adam, $(field mlp_classifier data), $(field mlp_classifier epochs) epochs, test accuracy $(field mlp_classifier test_accuracy)"
epochs=$(field cnn_classifier epochs)
if [ "$epochs" = 1 ]; then epochs="1 epoch (one point per series)"; else epochs="$epochs epochs"; fi
draw cnn_classifier curves "cnn_classifier: conv32-pool-conv64-pool-64-10, Adam, $(field cnn_classifier data), $epochs, test accuracy $(field cnn_classifier test_accuracy)"
draw linear_regression regression "linear_regression: Dense(1), MSE, SGD, $(field linear_regression epochs) epochs, test MSE $(field linear_regression test_mse)"
