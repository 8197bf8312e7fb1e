#!/bin/sh
# Speed of libaimodel against PyTorch on the four seed models and the
# batch-norm CNN of issue 14 (resbn: examples/residual_classifier.c
# --batchnorm; the speed targets below are the seed models' only), and the
# GRU training step of issue 14 (gru: the lstm model with a GRU; its one
# target: at most 0.6x PyTorch's time at batch 32 on one thread), and the
# character GPT (gpt: 4 pre-norm blocks, width 128, 4 heads, context 128,
# AdamW; its one target: a training step at batch 16 x 128 at most 0.7x
# PyTorch's time on one thread; it also prints greedy generation at batch 1,
# contexts 64 and 256, without a KV cache and with one, see the two programs).
#
# Builds tests/bench/bench_models.c against build/libaimodel.a, then for each
# configuration (OPENBLAS_CORETYPE as the environment has it, and unset so
# that OpenBLAS detects the core; 1 and 2 threads) and each model runs, one
# process each:
#   build/bench/bench_models --model M                       the figures
#   tests/bench/bench_torch.py --model M --threads N         the same in PyTorch
#   the same PyTorch run with malloc's thresholds raised     (see below)
#   build/bench/bench_models --model M --what train-only     peak RSS
#   tests/bench/bench_torch.py --model M --what train-only   peak RSS
# with N threads: PyTorch with OPENBLAS_NUM_THREADS=N and
# torch.set_num_threads(N); libaimodel with its own pool of N threads
# (bench_models --threads N) and OPENBLAS_NUM_THREADS=1, since the pool
# splits the batch and each thread's GEMMs must not start more threads. Then
# prints one table per configuration (metric | libaimodel | PyTorch | ratio),
# the speed-ups from 1 to 2 threads, and the targets of the speed issue, met
# or not. It prints figures and never fails on a timing: it exits non-zero
# only if a build or a program fails.
#
#   make && tests/bench/compare.sh
#
# PyTorch twice. With glibc's default malloc, PyTorch may map and unmap its
# large buffers on every step (thousands of minor page faults per step, shown
# in the tables), and whether it does depends on how malloc's dynamic mmap
# threshold happens to settle in that process: the same run of the CNN takes
# 7 or 34 ms a step. So PyTorch is also run with
# GLIBC_TUNABLES=glibc.malloc.mmap_threshold=256MiB:glibc.malloc.trim_threshold=256MiB
# ("malloc tuned"), which keeps those buffers mapped; both are reported.
# libaimodel allocates nothing per step, so this changes nothing for it.
#
# Other processes on the CPUs distort the figures, the 2-thread ones most.
# Before each run the script waits (up to QUIET_WAIT seconds) until the other
# processes use less than QUIET_MAX percent of one CPU over half a second,
# and after it, it reports how many CPUs the other processes kept busy while
# the run lasted (/proc/stat busy time less the run's own CPU time): the
# "other CPU load" row of each table, to be read before trusting a column.
# A run during which they kept more than RETRY_LOAD CPUs busy is run again,
# RETRIES times at most (the last try is reported).
#
# Knobs (environment): MODELS="mlp binary cnn lstm resbn gru gpt", THREADS="1 2",
# CORES="set unset" (which OPENBLAS_CORETYPE settings to run), BUDGET=0.75
# (seconds per timed figure), EPOCH_STEPS=100, EPOCH_BLOCKS=3, TRAIN_STEPS=50,
# QUIET_WAIT=120, QUIET_MAX=20, RETRIES=1, RETRY_LOAD=0.25, TORCH_TUNED=1 (0: skip the malloc-tuned runs),
# PYTHON=/usr/bin/python3 (with python3-torch), OUT=build/bench/compare (raw
# outputs, one file per run), REPORT_ONLY=1 (print the tables from OUT again
# without running anything).
# SPDX-License-Identifier: MIT
set -eu
cd "$(dirname "$0")/../.."
if [ ! -f build/libaimodel.a ]; then
    echo "compare.sh: build/libaimodel.a is missing; run make first" >&2
    exit 1
fi
PYTHON=${PYTHON:-/usr/bin/python3}
MODELS=${MODELS:-"mlp binary cnn lstm resbn gru gpt"}
THREADS=${THREADS:-"1 2"}
CORES=${CORES:-"set unset"}
BUDGET=${BUDGET:-0.75}
EPOCH_STEPS=${EPOCH_STEPS:-100}
EPOCH_BLOCKS=${EPOCH_BLOCKS:-3}
TRAIN_STEPS=${TRAIN_STEPS:-50}
OUT=${OUT:-build/bench/compare}
QUIET_WAIT=${QUIET_WAIT:-120}
RETRIES=${RETRIES:-1}
RETRY_LOAD=${RETRY_LOAD:-0.25}
QUIET_MAX=${QUIET_MAX:-20}
TORCH_TUNED=${TORCH_TUNED:-1}
REPORT_ONLY=${REPORT_ONLY:-0}
TUNED="glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456"
HZ=$(getconf CLK_TCK)
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "compare.sh: $PYTHON cannot import torch (apt-get install python3-torch)" >&2
    exit 1
fi
# Without OPENBLAS_CORETYPE in the environment, "set" and "unset" are the same run.
if [ -z "${OPENBLAS_CORETYPE+x}" ]; then CORES="unset"; fi

if [ "$REPORT_ONLY" != 1 ]; then
    mkdir -p build/bench "$OUT"
    rm -f "$OUT"/*.txt
    # pkg-config prints several flags: word splitting is wanted.
    # shellcheck disable=SC2046
    gcc -std=c11 -O2 -Iinclude $(pkg-config --cflags openblas) tests/bench/bench_models.c build/libaimodel.a \
        $(pkg-config --libs openblas) -lm -pthread -o build/bench/bench_models

    # Busy jiffies of all CPUs so far (user nice system irq softirq steal).
    busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

    # Waits until the machine is quiet, at most QUIET_WAIT seconds.
    wait_quiet() {
        waited=0
        while :; do
            b0=$(busy)
            sleep 0.5
            b1=$(busy)
            if [ $((b1 - b0)) -le $((HZ * QUIET_MAX / 200)) ]; then return 0; fi
            waited=$((waited + 1))
            if [ $((waited / 2)) -ge "$QUIET_WAIT" ]; then
                echo "compare.sh: other processes still busy after ${QUIET_WAIT}s; measuring anyway" >&2
                return 0
            fi
        done
    }

    # run FILE TRIES COMMAND...: runs the command on a quiet machine, its output
    # in FILE, followed by the busy time of all CPUs and the wall time of the
    # run; runs it again (TRIES times at most) if other processes kept more
    # than RETRY_LOAD CPUs busy meanwhile.
    run() {
        f=$1
        retries=$2
        shift 2
        tries=0
        while :; do
            wait_quiet
            b0=$(busy)
            t0=$(date +%s.%N)
            "$@" >"$f"
            b1=$(busy)
            t1=$(date +%s.%N)
            busy_s=$(awk -v b="$((b1 - b0))" -v hz="$HZ" 'BEGIN{print b / hz}')
            wall_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
            echo "RUN busy_s=$busy_s wall_s=$wall_s tries=$((tries + 1))" >>"$f"
            other=$(awk -v b="$busy_s" -v w="$wall_s" '/metric=cpu_s /{for (i = 1; i <= NF; i++)
                if ($i ~ /^value=/) c = substr($i, 7)} END{print (w > 0 ? (b - c) / w : 0)}' "$f")
            tries=$((tries + 1))
            if [ "$tries" -gt "$retries" ] || awk -v o="$other" -v l="$RETRY_LOAD" 'BEGIN{exit !(o <= l)}'; then
                return 0
            fi
            echo "compare.sh: other processes kept $other CPUs busy during $f; running it again" >&2
        done
    }

    common="--budget $BUDGET --epoch-steps $EPOCH_STEPS --epoch-blocks $EPOCH_BLOCKS"
    start=$(date +%s)
    for core in $CORES; do
        for n in $THREADS; do
            cfg="core-$core.t$n"
            {
                echo "config core=$core threads=$n coretype=${OPENBLAS_CORETYPE-(unset)}"
                echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)"
            } >"$OUT/$cfg.meta.txt"
            for m in $MODELS; do
                echo "compare.sh: $cfg $m ($(($(date +%s) - start)) s so far)" >&2
                # "unset" runs under env -u; the word splitting of $common is wanted.
                if [ "$core" = unset ]; then envu="env -u OPENBLAS_CORETYPE"; else envu="env"; fi
                # shellcheck disable=SC2086
                run "$OUT/$cfg.$m.aimodel.txt" "$RETRIES" $envu OPENBLAS_NUM_THREADS=1 build/bench/bench_models \
                    --model "$m" --threads "$n" $common
                # shellcheck disable=SC2086
                run "$OUT/$cfg.$m.torch.txt" "$RETRIES" $envu OPENBLAS_NUM_THREADS="$n" "$PYTHON" tests/bench/bench_torch.py \
                    --model "$m" --threads "$n" $common
                if [ "$TORCH_TUNED" = 1 ]; then
                    # shellcheck disable=SC2086
                    run "$OUT/$cfg.$m.torch_tuned.txt" "$RETRIES" $envu OPENBLAS_NUM_THREADS="$n" GLIBC_TUNABLES="$TUNED" \
                        "$PYTHON" tests/bench/bench_torch.py --model "$m" --threads "$n" $common
                fi
                # shellcheck disable=SC2086
                run "$OUT/$cfg.$m.aimodel-rss.txt" 0 $envu OPENBLAS_NUM_THREADS=1 build/bench/bench_models \
                    --model "$m" --threads "$n" --what train-only --train-steps "$TRAIN_STEPS"
                # shellcheck disable=SC2086
                run "$OUT/$cfg.$m.torch-rss.txt" 0 $envu OPENBLAS_NUM_THREADS="$n" "$PYTHON" tests/bench/bench_torch.py \
                    --model "$m" --what train-only --threads "$n" --train-steps "$TRAIN_STEPS"
            done
            echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$cfg.meta.txt"
        done
    done
    echo "compare.sh: all runs done in $(($(date +%s) - start)) s; raw outputs in $OUT" >&2
fi


"$PYTHON" - "$OUT" "$MODELS" "$THREADS" "$CORES" <<'EOF'
import os, sys

out, models, threads, cores = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
LIBS = ("aimodel", "torch", "torch_tuned")
cfgs = ["core-%s.t%s" % (c, n) for c in cores for n in threads]


def parse(path):
    rows, run = {}, {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RUN "):
                    run = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
                elif line.startswith("BENCH "):
                    kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
                    rows[kv["metric"]] = kv
    except OSError:
        pass
    # CPUs kept busy by other processes while this run lasted.
    if run and "cpu_s" in rows and float(run["wall_s"]) > 0:
        other = (float(run["busy_s"]) - float(rows["cpu_s"]["value"])) / float(run["wall_s"])
        rows["other_cpus"] = {"value": str(max(other, 0.0))}
    rows.pop("cpu_s", None)
    return rows


data, meta = {}, {}
for cfg in cfgs:
    try:
        meta[cfg] = open(os.path.join(out, cfg + ".meta.txt")).read().split("\n")
    except OSError:
        meta[cfg] = ["", "load_start ?", "load_end ?"]
    for m in models:
        for lib in LIBS:
            d = parse(os.path.join(out, "%s.%s.%s.txt" % (cfg, m, lib)))
            if lib != "torch_tuned":
                r = parse(os.path.join(out, "%s.%s.%s-rss.txt" % (cfg, m, lib)))
                r.pop("other_cpus", None)
                r.pop("openblas", None)
                d.update(r)
            data[(cfg, m, lib)] = d
have_tuned = any(data[k] for k in data if k[2] == "torch_tuned")
libs = LIBS if have_tuned else LIBS[:2]


def val(cfg, m, lib, metric):
    r = data.get((cfg, m, lib), {}).get(metric)
    return float(r["value"]) if r else None


def value(cfg, m, lib, metric):
    """A figure, or for PyTorch the step GF/s derived from libaimodel's FLOP count (then True)."""
    v = val(cfg, m, lib, metric)
    if v is not None or lib == "aimodel":
        return v, False
    for b in ("16", "32", "128"):
        gf, step = val(cfg, m, "aimodel", "step_gflop_b" + b), val(cfg, m, lib, "train_step_b%s_ms" % b)
        sg = val(cfg, m, "aimodel", "sgemm_gflops_b" + b)
        if metric == "train_gflops_b" + b and gf and step:
            return gf / (step * 1e-3), True
        if metric == "train_sgemm_frac_b" + b and gf and step and sg:
            return gf / (step * 1e-3) / sg, True
    return None, False


ROWS = [
    ("train_step_b32_ms", "train step b32 (ms)", 1.0),
    ("train_step_b128_ms", "train step b128 (ms)", 1.0),
    ("epoch_s", "epoch b32 (s, extrapolated)", 1.0),
    ("infer_b1_ms", "inference b1 latency (ms)", 1.0),
    ("infer_b256_ms", "inference b256 (ms)", 1.0),
    ("infer_b256_img_per_s", "inference b256 (img/s)", 1.0),
    ("peak_rss_kb", "peak RSS, training only (MiB)", 1 / 1024),
    ("rss_start_kb", "RSS before the model (MiB)", 1 / 1024),
    ("minflt_per_step_b32", "minor page faults / step b32", 1.0),
    ("sgemm_gflops_b32", "sgemm GF/s on the b32 step's shapes", 1.0),
    ("train_gflops_b32", "train step GF/s b32", 1.0),
    ("train_sgemm_frac_b32", "  as a fraction of sgemm", 1.0),
    ("sgemm_gflops_b128", "sgemm GF/s on the b128 step's shapes", 1.0),
    ("train_gflops_b128", "train step GF/s b128", 1.0),
    ("train_sgemm_frac_b128", "  as a fraction of sgemm", 1.0),
    # gpt: the step at batch 16 x context 128, and generation at batch 1
    ("train_step_b16_ms", "train step b16 x T128 (ms)", 1.0),
    ("train_tok_per_s_b16", "train positions/s b16 x T128", 1.0),
    ("minflt_per_step_b16", "minor page faults / step b16", 1.0),
    ("sgemm_gflops_b16", "sgemm GF/s on the b16 step's shapes", 1.0),
    ("train_gflops_b16", "train step GF/s b16", 1.0),
    ("train_sgemm_frac_b16", "  as a fraction of sgemm", 1.0),
    ("gen_full_t64_tok_per_s", "generate T64 tok/s, full window a token", 1.0),
    ("gen_prefix_t64_tok_per_s", "generate T64 tok/s, prefix a token (PyTorch)", 1.0),
    ("gen_kv_t64_tok_per_s", "generate T64 tok/s, KV cache", 1.0),
    ("gen_full_t256_tok_per_s", "generate T256 tok/s, full window a token", 1.0),
    ("gen_prefix_t256_tok_per_s", "generate T256 tok/s, prefix a token (PyTorch)", 1.0),
    ("gen_kv_t256_tok_per_s", "generate T256 tok/s, KV cache", 1.0),
    ("other_cpus", "other processes' CPU load in the run (CPUs)", 1.0),
]
NO_RATIO = ("other_cpus", "sgemm_gflops_b16", "sgemm_gflops_b32", "sgemm_gflops_b128")


def fmt(v):
    if v is None:
        return ""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    if a >= 0.01:
        return "%.3f" % v
    return "%.4f" % v


def core_of(cfg, m, lib):
    r = data.get((cfg, m, lib), {}).get("openblas")
    return r.get("core", "?") if r else "?"


def setting(cfg):
    return coretype if cfg.startswith("core-set") else "unset"


def label(cfg):
    t = cfg.split(".t")[1]
    s = "OPENBLAS_CORETYPE=%s" % coretype if cfg.startswith("core-set") else "OPENBLAS_CORETYPE unset"
    return "%s, %s thread%s" % (s, t, "" if t == "1" else "s")


NAMES = {"aimodel": "libaimodel", "torch": "PyTorch", "torch_tuned": "PyTorch, malloc tuned"}
for cfg in cfgs:
    seen = sorted({"%s %s" % (NAMES[lib], core_of(cfg, m, lib)) for m in models for lib in libs})
    print()
    print("### %s" % label(cfg))
    print()
    print("OpenBLAS core reported: %s. Load average (1, 5, 15 min): %s at the start, %s at the end." %
          (", ".join(seen), " ".join(meta[cfg][1].split()[1:]), " ".join(meta[cfg][2].split()[1:])))
    print("Times are medians; ratio = libaimodel / PyTorch (below 1: libaimodel takes less time or memory).")
    print()
    head = "| model | metric | libaimodel | PyTorch | ratio |"
    rule = "|---|---|---:|---:|---:|"
    if have_tuned:
        head += " PyTorch, malloc tuned | ratio |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for m in models:
        for key, name, scale in ROWS:
            a, _ = value(cfg, m, "aimodel", key)
            cells = [fmt(a * scale if a is not None else None)]
            shown = a is not None
            for lib in libs[1:]:
                t, der = value(cfg, m, lib, key)
                shown = shown or t is not None
                r = a / t if a is not None and t and key not in NO_RATIO else None
                cells += [fmt(t * scale if t is not None else None) + ("\\*" if der and t is not None else ""),
                          fmt(r)]
            if shown:
                print("| %s | %s | %s |" % (m, name, " | ".join(cells)))
    print()
    print("\\* PyTorch's GF/s: the FLOPs of libaimodel's step GEMMs over PyTorch's step time; the fraction is of "
          "libaimodel's sgemm rate on those shapes.")
    if "gpt" in models:
        print("gpt generation (batch 1, greedy; tok/s, so a ratio above 1 means libaimodel is faster): \"full "
              "window\" runs the model over all T positions for every new token (the same work in both); \"prefix\" "
              "is PyTorch's usual loop over the prefix only; \"KV cache\" is aim_model_predict_step_ids against a "
              "hand-written PyTorch generator over cached keys and values with the same modules' weights.")

if "1" in threads and "2" in threads:
    print()
    print("### Training speed-up from 1 to 2 threads (time at 1 thread / time at 2 threads)")
    print()
    print("| OPENBLAS_CORETYPE | model | " + " | ".join("%s b32 (gpt b16) | %s b128" % (NAMES[l], NAMES[l])
                                                        for l in libs) + " |")
    print("|---|---|" + "---:|---:|" * len(libs))
    for c in cores:
        for m in models:
            cells = []
            for lib in libs:
                for b in (("16", "none") if m == "gpt" else ("32", "128")):
                    t1 = val("core-%s.t1" % c, m, lib, "train_step_b%s_ms" % b)
                    t2 = val("core-%s.t2" % c, m, lib, "train_step_b%s_ms" % b)
                    cells.append(fmt(t1 / t2) if t1 and t2 else "")
            print("| %s | %s | %s |" % (coretype if c == "set" else "unset", m, " | ".join(cells)))

# ---- the targets of the issue ----
targets = []  # (text, cfg -> cell text or "")


def verdict(v, ok):
    return "%s %s" % (fmt(v), "met" if ok else "**NOT met**")


def ratio_target(text, m, metric, limit_set, limit_unset=None, tuned=True):
    def cell(cfg):
        lim = limit_set if cfg.startswith("core-set") or limit_unset is None else limit_unset
        parts = []
        for lib in (libs[1:] if tuned else libs[1:2]):
            a, t = val(cfg, m, "aimodel", metric), val(cfg, m, lib, metric)
            parts.append(verdict(a / t, a / t <= lim) if a is not None and t else "?")
        return " / ".join(parts)
    targets.append((text, cell))


if "mlp" in models:
    ratio_target("mlp train b32 <= 0.30", "mlp", "train_step_b32_ms", 0.30)
    ratio_target("mlp inference b1 <= 0.10", "mlp", "infer_b1_ms", 0.10)
if "binary" in models:
    ratio_target("binary train b32 <= 0.30", "binary", "train_step_b32_ms", 0.30)
    ratio_target("binary inference b1 <= 0.10", "binary", "infer_b1_ms", 0.10)
if "cnn" in models:
    ratio_target("cnn train b32 <= 0.75 (%s) / 0.55 (unset)" % coretype, "cnn", "train_step_b32_ms", 0.75, 0.55)
    ratio_target("cnn inference b1 <= 0.25", "cnn", "infer_b1_ms", 0.25)
if "lstm" in models:
    ratio_target("lstm train b32 <= 0.75 (%s) / 0.55 (unset)" % coretype, "lstm", "train_step_b32_ms", 0.75, 0.55)
    ratio_target("lstm inference b1 <= 0.40", "lstm", "infer_b1_ms", 0.40)
if "gru" in models:
    # Issue 14: a GRU training step at batch 32, at most 0.6x PyTorch's time at one thread.
    def gru_cell(cfg):
        if not cfg.endswith(".t1"):
            return ""
        parts = []
        for lib in libs[1:]:
            a, t = val(cfg, "gru", "aimodel", "train_step_b32_ms"), val(cfg, "gru", lib, "train_step_b32_ms")
            parts.append(verdict(a / t, a / t <= 0.60) if a is not None and t else "?")
        return " / ".join(parts)
    targets.append(("gru train b32 <= 0.60 (1 thread)", gru_cell))
if "gpt" in models:
    # The transformer's training step at batch 16 x context 128, at most 0.7x PyTorch's time at one thread.
    def gpt_cell(cfg):
        if not cfg.endswith(".t1"):
            return ""
        parts = []
        for lib in libs[1:]:
            a, t = val(cfg, "gpt", "aimodel", "train_step_b16_ms"), val(cfg, "gpt", lib, "train_step_b16_ms")
            parts.append(verdict(a / t, a / t <= 0.70) if a is not None and t else "?")
        return " / ".join(parts)
    targets.append(("gpt train b16 x T128 <= 0.70 (1 thread)", gpt_cell))
# The speed issue's targets are the seed models'; resbn has none (issue 14
# only asks for its figures against PyTorch), gru and gpt only the ones above.
seed_models = [m for m in models if m in ("mlp", "binary", "cnn", "lstm")]
for m in seed_models:
    ratio_target("%s train b128 <= 0.80" % m, m, "train_step_b128_ms", 0.80)
for m in seed_models:
    ratio_target("%s inference b256 <= 0.80" % m, m, "infer_b256_ms", 0.80)
for m in seed_models:
    lim = 0.70 if m in ("cnn", "lstm") else 0.50
    for b in ("32", "128"):
        def cell(cfg, m=m, b=b, lim=lim):
            v = val(cfg, m, "aimodel", "train_sgemm_frac_b" + b)
            return "" if v is None else verdict(v, v >= lim)
        targets.append(("%s train step b%s >= %.0f%% of sgemm on its shapes" % (m, b, lim * 100), cell))
for m in [x for x in ("cnn", "lstm") if x in models]:
    def cell(cfg, m=m):
        if not cfg.endswith(".t2"):
            return ""
        t1 = val(cfg[:-1] + "1", m, "aimodel", "train_step_b128_ms")
        t2 = val(cfg, m, "aimodel", "train_step_b128_ms")
        return verdict(t1 / t2, t1 / t2 >= 1.6) if t1 and t2 else ""
    targets.append(("%s b128 training, 2 threads >= 1.6x faster than 1" % m, cell))
for m in models:
    def cell(cfg, m=m):
        r = data.get((cfg, m, "aimodel"), {}).get("minflt_per_step_b16" if m == "gpt" else "minflt_per_step_b32")
        return "" if r is None else verdict(float(r["value"]), int(r.get("faults", "1")) == 0)
    targets.append(("%s no page faults per step after warm-up" % m, cell))
for m in seed_models:
    ratio_target("%s peak RSS <= 0.5 of PyTorch's" % m, m, "peak_rss_kb", 0.50, tuned=False)

print()
print("### Targets, per configuration")
print()
if have_tuned:
    print("A ratio target shows the ratio against PyTorch, then against PyTorch with malloc tuned. The other "
          "targets are libaimodel's own figures.")
    print()
print("| target | " + " | ".join("%s, %s thread%s" % (setting(c), c.split(".t")[1],
                                                        "" if c.endswith(".t1") else "s") for c in cfgs) + " |")
print("|---|" + "---|" * len(cfgs))
for text, cell in targets:
    print("| %s | %s |" % (text, " | ".join(cell(cfg) for cfg in cfgs)))
EOF
