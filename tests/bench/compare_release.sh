#!/bin/sh
# Speed of this release against a previous one on the four seed models.
#
# Builds tests/bench/bench_models.c twice, one program per release, each from
# its own tree against its own library:
#   new  this tree's tests/bench/bench_models.c against build/libaimodel.a
#        (`make lib` is run here first);
#   old  the old tree's tests/bench/bench_models.c (the same figures through
#        the old API) against that tree's build/libaimodel.a (`make lib` is run
#        there first).
# The old tree is the first argument, or $OLD_TREE; without either, a git
# worktree of OLD_COMMIT (default acb6a78, release 0.1.0) is made under
# build/old-release (`git worktree add --detach`) and reused by later runs.
#
# Then runs, for ROUNDS rounds, every model once with each program, one
# process per run, the two programs of a model back to back and their order
# swapped every round (old first in odd rounds, new first in even ones), so
# that a slow phase of the machine hits both alike:
#   build/bench/release/bench_models_{old,new} --model M --budget BUDGET
#       --epoch-steps EPOCH_STEPS --epoch-blocks EPOCH_BLOCKS
# with OPENBLAS_NUM_THREADS=1 and OPENBLAS_CORETYPE as the environment has it
# (CORETYPE_UNSET=1: under env -u OPENBLAS_CORETYPE, so that OpenBLAS picks
# its kernels for the detected CPU). Each run's figures are themselves
# medians (see bench_models.c); the tables give, per metric that both
# programs report, the median over the rounds for each release, new/old, and
# a flag when new/old is outside [1 - LIMIT, 1 + LIMIT] (LIMIT=0.05). For the
# time metrics (_ms, _s) above 1 means the new release is slower; for the
# rates (img_per_s, gflops) below 1 does. "paired" lists new/old round by
# round (the two runs of a round ran back to back), "spread" the (max -
# min) / median of each release's rounds: a flag whose paired ratios straddle
# 1, or whose spread is larger than the gap, is likely noise. The sgemm_gflops
# rows time cblas_sgemm called directly by the program, not the library: they
# show how much the machine itself moved between the two programs' runs.
#
# Other processes on the CPUs distort the figures. The script does not wait
# for a quiet machine; it reports, per run, how many CPUs other processes
# kept busy while it lasted (/proc/stat busy time less the run's own cpu_s):
# the other_cpus table, and the load average at the start and the end.
#
# It prints figures and never fails on a timing: it exits non-zero only if a
# build or a program fails.
#
#   tests/bench/compare_release.sh [OLD_TREE]
#
# Knobs (environment): OLD_TREE (as the argument), OLD_COMMIT=acb6a78,
# ROUNDS=5, MODELS="mlp binary cnn lstm", BUDGET=0.4 (seconds per timed
# figure in each run), EPOCH_STEPS=100, EPOCH_BLOCKS=3, CORETYPE_UNSET=0,
# LIMIT=0.05, OUT=build/bench/compare-release (raw outputs, one file per run),
# REPORT_ONLY=1 (print the tables from OUT again without building or running
# anything). With the defaults the whole script takes about 3 to 5 minutes on
# 2 CPUs.
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/../.."
OLD_TREE=${1:-${OLD_TREE:-}}
OLD_COMMIT=${OLD_COMMIT:-acb6a78}
ROUNDS=${ROUNDS:-5}
MODELS=${MODELS:-"mlp binary cnn lstm"}
BUDGET=${BUDGET:-0.4}
EPOCH_STEPS=${EPOCH_STEPS:-100}
EPOCH_BLOCKS=${EPOCH_BLOCKS:-3}
CORETYPE_UNSET=${CORETYPE_UNSET:-0}
LIMIT=${LIMIT:-0.05}
OUT=${OUT:-build/bench/compare-release}
REPORT_ONLY=${REPORT_ONLY:-0}
HZ=$(getconf CLK_TCK)
BIN=build/bench/release

for m in $MODELS; do
    case $m in
    mlp | binary | cnn | lstm) ;;
    *)
        echo "compare_release.sh: unknown model '$m' (known: mlp binary cnn lstm)" >&2
        exit 1
        ;;
    esac
done

if [ "$CORETYPE_UNSET" = 1 ]; then
    envu="env -u OPENBLAS_CORETYPE"
    coretype="(unset)"
else
    envu="env"
    coretype=${OPENBLAS_CORETYPE-(unset)}
fi

if [ "$REPORT_ONLY" != 1 ]; then
    # ---- the two libraries and the two programs ----
    make lib >&2
    if [ -z "$OLD_TREE" ]; then
        OLD_TREE=build/old-release
        want=$(git rev-parse --verify "$OLD_COMMIT^{commit}")
        if [ ! -e "$OLD_TREE" ]; then
            echo "compare_release.sh: creating the worktree $OLD_TREE at $OLD_COMMIT" >&2
            git worktree add --detach "$OLD_TREE" "$want" >&2
        fi
        # An existing tree is reused only if it is that commit.
        have=$(git -C "$OLD_TREE" rev-parse HEAD)
        if [ "$have" != "$want" ]; then
            echo "compare_release.sh: $OLD_TREE is at $have, not $OLD_COMMIT ($want); remove it" \
                "(git worktree remove $OLD_TREE) or pass OLD_TREE" >&2
            exit 1
        fi
    fi
    if [ ! -f "$OLD_TREE/tests/bench/bench_models.c" ] || [ ! -f "$OLD_TREE/Makefile" ]; then
        echo "compare_release.sh: $OLD_TREE has no Makefile or tests/bench/bench_models.c" >&2
        exit 1
    fi
    make -C "$OLD_TREE" lib >&2

    mkdir -p "$BIN" "$OUT"
    rm -f "$OUT"/*.txt
    # The same compiler line as compare.sh, each tree with its own header and
    # library. pkg-config prints several flags: word splitting is wanted.
    # shellcheck disable=SC2046
    gcc -std=c11 -O2 -I"$OLD_TREE/include" $(pkg-config --cflags openblas) "$OLD_TREE/tests/bench/bench_models.c" \
        "$OLD_TREE/build/libaimodel.a" $(pkg-config --libs openblas) -lm -pthread -o "$BIN/bench_models_old"
    # shellcheck disable=SC2046
    gcc -std=c11 -O2 -Iinclude $(pkg-config --cflags openblas) tests/bench/bench_models.c build/libaimodel.a \
        $(pkg-config --libs openblas) -lm -pthread -o "$BIN/bench_models_new"

    # Busy jiffies of all CPUs so far (user nice system irq softirq steal).
    busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

    # run FILE COMMAND...: runs the command with its output in FILE, followed by
    # a RUN line with the busy time of all CPUs and the wall time of the run.
    run() {
        f=$1
        shift
        b0=$(busy)
        t0=$(date +%s.%N)
        "$@" >"$f"
        b1=$(busy)
        t1=$(date +%s.%N)
        busy_s=$(awk -v b="$((b1 - b0))" -v hz="$HZ" 'BEGIN{print b / hz}')
        wall_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
        echo "RUN busy_s=$busy_s wall_s=$wall_s" >>"$f"
    }

    {
        echo "old_tree $OLD_TREE $(git -C "$OLD_TREE" rev-parse --short HEAD)"
        dirty=$(git status --porcelain -- src include tests/bench/bench_models.c)
        echo "new_tree $(pwd) $(git rev-parse --short HEAD)${dirty:+ plus uncommitted changes}"
        echo "coretype $coretype"
        echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/meta.txt"
    common="--budget $BUDGET --epoch-steps $EPOCH_STEPS --epoch-blocks $EPOCH_BLOCKS"
    start=$(date +%s)
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
        for m in $MODELS; do
            for b in $order; do
                echo "compare_release.sh: round $r/$ROUNDS $m $b ($(($(date +%s) - start)) s so far;" \
                    "load $(cut -d' ' -f1 /proc/loadavg))" >&2
                # The word splitting of $envu and $common is wanted.
                # shellcheck disable=SC2086
                run "$OUT/r$r.$m.$b.txt" $envu OPENBLAS_NUM_THREADS=1 "$BIN/bench_models_$b" --model "$m" $common
            done
        done
        r=$((r + 1))
    done
    echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
    echo "elapsed_s $(($(date +%s) - start))" >>"$OUT/meta.txt"
    echo "compare_release.sh: all runs done in $(($(date +%s) - start)) s; raw outputs in $OUT" >&2
fi

# ---- the tables ----
# One "metric model build round value" line per figure of every run, then the
# medians. other_cpus is derived from the RUN line and cpu_s.
for f in "$OUT"/r*.*.*.txt; do
    [ -e "$f" ] || continue
    base=${f##*/}
    base=${base%.txt}
    awk -v id="$base" '
        BEGIN { split(id, p, "."); r = substr(p[1], 2); m = p[2]; b = p[3] }
        /^BENCH / {
            metric = ""; value = ""
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^metric=/) metric = substr($i, 8)
                if ($i ~ /^value=/) value = substr($i, 7)
                if ($i ~ /^core=/) core = substr($i, 6)
            }
            if (metric == "cpu_s") cpu = value
            else if (metric != "openblas") print metric, m, b, r, value
        }
        /^# bench_models: libaimodel / { version = $4; sub(",", "", version) }
        /^RUN / {
            for (i = 2; i <= NF; i++) {
                if ($i ~ /^busy_s=/) busy = substr($i, 8)
                if ($i ~ /^wall_s=/) wall = substr($i, 8)
            }
        }
        END {
            if (wall > 0 && cpu != "") { o = (busy - cpu) / wall; print "other_cpus", m, b, r, (o > 0 ? o : 0) }
            print "#info", b, version, core
        }' "$f"
done >"$OUT/all.dat"

awk -v models="$MODELS" -v limit="$LIMIT" -v rounds="$ROUNDS" -v meta="$OUT/meta.txt" '
    function fmt(v, a) {
        a = v < 0 ? -v : v
        if (a == 0) return "0"
        if (a >= 1000) return sprintf("%.0f", v)
        if (a >= 100) return sprintf("%.1f", v)
        if (a >= 10) return sprintf("%.2f", v)
        if (a >= 0.01) return sprintf("%.3f", v)
        return sprintf("%.4f", v)
    }
    # Median of the values of key k (build SUBSEP model SUBSEP metric); also
    # sets g_lo and g_hi.
    function median(k, n, i, j, t, x) {
        n = cnt[k]
        if (n == 0) return ""
        for (i = 1; i <= n; i++) x[i] = val[k, i]
        for (i = 2; i <= n; i++) {
            t = x[i]
            for (j = i - 1; j >= 1 && x[j] > t; j--) x[j + 1] = x[j]
            x[j + 1] = t
        }
        g_lo = x[1]; g_hi = x[n]
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }
    $1 == "#info" { info[$2] = "libaimodel " $3 ", OpenBLAS core " $4; next }
    {
        k = $3 SUBSEP $2 SUBSEP $1
        val[k, ++cnt[k]] = $5
        byround[k, $4] = $5
        if (!($1 in seen)) { seen[$1] = 1; order[++nm] = $1 }
    }
    END {
        while ((getline line < meta) > 0) { split(line, w, " "); mt[w[1]] = substr(line, length(w[1]) + 2) }
        nmod = split(models, mods, " ")
        # The metrics in the order of compare.sh, then any others as found.
        npref = split("train_step_b32_ms train_step_b128_ms epoch_s infer_b1_ms infer_b256_ms " \
                      "infer_b256_img_per_s minflt_per_step_b32 train_gflops_b32 train_gflops_b128 " \
                      "train_sgemm_frac_b32 train_sgemm_frac_b128 sgemm_gflops_b32 sgemm_gflops_b128 " \
                      "step_gflop_b32 step_gflop_b128 other_cpus", pref, " ")
        n = 0
        for (i = 1; i <= npref; i++) if (pref[i] in seen) { list[++n] = pref[i]; done_[pref[i]] = 1 }
        for (i = 1; i <= nm; i++) if (!(order[i] in done_)) list[++n] = order[i]
        print "### libaimodel, new release against old (medians of " rounds " alternating rounds)"
        print ""
        print "old: " mt["old_tree"] " (" info["old"] "); new: " mt["new_tree"] " (" info["new"] ")."
        print "OPENBLAS_NUM_THREADS=1, OPENBLAS_CORETYPE=" mt["coretype"] ". Load average (1, 5, 15 min): " \
              mt["load_start"] " at the start, " mt["load_end"] " at the end; runs took " mt["elapsed_s"] " s."
        print "ratio = new / old; ! = outside [" 1 - limit ", " 1 + limit "]."
        flagged = ""
        for (i = 1; i <= n; i++) {
            metric = list[i]
            both = 0
            for (j = 1; j <= nmod; j++)
                if (cnt["old", mods[j], metric] && cnt["new", mods[j], metric]) both = 1
            if (!both) continue
            print ""
            note = ""
            if (metric ~ /^sgemm_gflops/) note = " (direct cblas_sgemm calls: the machine, not the library)"
            if (metric ~ /^step_gflop/) note = " (a count of the GEMMs issued, not a timing)"
            if (metric == "other_cpus") note = " (CPUs kept busy by other processes during the runs)"
            print "#### " metric note
            print ""
            print "| model | old | new | new/old | | paired new/old by round | spread old | spread new |"
            print "|---|---:|---:|---:|---|---|---:|---:|"
            for (j = 1; j <= nmod; j++) {
                m = mods[j]
                ko = "old" SUBSEP m SUBSEP metric; kn = "new" SUBSEP m SUBSEP metric
                if (!cnt[ko] || !cnt[kn]) continue
                o = median(ko); so = o != 0 ? (g_hi - g_lo) / o : 0
                nw = median(kn); sn = nw != 0 ? (g_hi - g_lo) / nw : 0
                ratio = ""; flag = ""
                if (o != 0 && metric != "other_cpus") {
                    ratio = nw / o
                    if (ratio < 1 - limit || ratio > 1 + limit) {
                        flag = "!"
                        if (metric !~ /^(sgemm_gflops|step_gflop)/) flagged = flagged " " m ":" metric
                    }
                }
                paired = ""
                for (r = 1; r <= rounds && metric != "other_cpus"; r++)
                    if (((ko, r) in byround) && ((kn, r) in byround) && byround[ko, r] != 0)
                        paired = paired (paired == "" ? "" : " ") sprintf("%.3f", byround[kn, r] / byround[ko, r])
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", m, fmt(o), fmt(nw),
                       ratio == "" ? "" : sprintf("%.3f", ratio), flag, paired,
                       sprintf("%.1f%%", 100 * so), sprintf("%.1f%%", 100 * sn)
            }
        }
        print ""
        print "Outside " 100 * limit "% (library figures only):" (flagged == "" ? " none" : flagged)
    }' "$OUT/all.dat"
