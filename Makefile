# libaimodel - plain Makefile. `make help` lists the targets.
# SPDX-License-Identifier: MIT

VERSION_MAJOR := 1
VERSION_MINOR := 2
VERSION_PATCH := 0
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC      ?= cc
AR      ?= ar
PKG_CONFIG ?= pkg-config

# The target's multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu), where
# Debian keeps its headers and libraries; asked of $(CC) at its first use.
TRIPLET = $(eval TRIPLET := $$(shell $$(CC) -print-multiarch 2>/dev/null))$(TRIPLET)

# OpenBLAS's own cblas.h is taken explicitly: Debian's openblas.pc gives its
# directory (-I/usr/include/<triplet>/openblas-pthread/), searched before
# /usr/include/<triplet>/cblas.h, which the alternatives can make the
# reference BLAS's (no blasint, no openblas_*). Without pkg-config or
# openblas.pc: the first of Debian's OpenBLAS header directories for the
# target. The prerequisite check below then checks what $(CC) finds.
OPENBLAS_INCDIRS = $(foreach v,pthread openmp serial,/usr/include/$(TRIPLET)/openblas-$(v)) /usr/include/openblas
BLAS_CFLAGS := $(or $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null),\
                 $(patsubst %/cblas.h,-I%,$(firstword $(wildcard $(addsuffix /cblas.h,$(OPENBLAS_INCDIRS))))))
BLAS_LIBS   := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas)

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes -Wmissing-prototypes
OPT     ?= -O2
# The library's own loops (activations, pooling, im2col) are written to be
# vectorized, which GCC does fully only at -O3 (no -ffast-math: results stay
# bit-identical to -O2). -fno-trapping-math (we never read FP exception flags)
# lets it if-convert the clamps and the float-to-int step of src/fastmath.h;
# -fno-math-errno (nor errno) lets sqrtf inline into vector code (Adam).
LIB_OPT ?= -O3 -fno-trapping-math -fno-math-errno
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(CFLAGS) -Iinclude $(BLAS_CFLAGS)

# `make test SANITIZE=1` builds everything with AddressSanitizer and
# UndefinedBehaviorSanitizer into its own tree, and makes any report fatal.
ifeq ($(SANITIZE),1)
BUILD    ?= build/sanitize
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_CFLAGS += $(SAN) -O1
LDSAN    := $(SAN)
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
else
BUILD    ?= build
LDSAN    :=
endif

# src/ has one folder per module: core, tensor, layers, optimizers, model, serialization.
SRCS     := $(wildcard src/*/*.c)
OBJS     := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
PRIV_HDRS := src/internal.h $(wildcard src/*/*.h)
STATIC   := $(BUILD)/libaimodel.a
SONAME   := libaimodel.so.$(VERSION_MAJOR)
SHARED   := $(BUILD)/libaimodel.so.$(VERSION)

TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
TEST_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null || echo -lcmocka)

EX_SRCS   := $(wildcard examples/*.c)
EX_COMMON := $(wildcard examples/common/*.c)
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EX_SRCS))

.PHONY: all lib test examples demo docs install uninstall deps deps-build deps-demo clean help check-abi bench bench-layers bench-gemm

all: lib

lib: $(STATIC) $(SHARED)

help:
	@echo "make all         build $(STATIC) and $(SHARED) (plain make does the same)"
	@echo "make lib         the same as make all"
	@echo "make test        install missing dependencies, build and run the cmocka suite (SANITIZE=1: under ASan+UBSan)"
	@echo "make test-run    run the built suite without the dependency check (TEST_WRAP=... prefixes each program)"
	@echo "make test-valgrind  the suite under valgrind memcheck (installs valgrind as root)"
	@echo "make test-mpi    data-parallel training test on 2 MPI ranks (installs Open MPI as root)"
	@echo "make test-aarch64  cross-build the library, tests and examples for aarch64; run the suite and linear_regression under qemu (installs the cross toolchain as root)"
	@echo "make check-abi   only aim_ symbols exported, soname $(SONAME), header version $(VERSION)"
	@echo "make examples    build every example into $(BUILD)/examples/"
	@echo "make demo        install missing dependencies and train the seed MLP on Fashion-MNIST"
	@echo "make plots       learning curves as PNG in $(BUILD)/plots (gnuplot)"
	@echo "make bench       libaimodel against PyTorch on the seed models, the 1.1 models and the GPT (tests/bench/compare.sh; the GPT alone ~6 min)"
	@echo "make bench-layers  per-layer CNN and LSTM figures against cblas_sgemm (tests/bench/run.sh)"
	@echo "make bench-gemm the GPT step's GEMM shapes: cblas_sgemm against the library's AVX-512F kernel (tests/bench/bench_gemm.c)"
	@echo "make fuzz        the libFuzzer targets, FUZZ_SECONDS=60 each"
	@echo "make docs        API reference with Doxygen into build/docs/html"
	@echo "make install     header, libraries, aimodel.pc, aimodel-static.pc, CMake package into PREFIX=$(PREFIX) (DESTDIR=... to stage)"
	@echo "make uninstall   remove what make install put there (same PREFIX and DESTDIR)"
	@echo "make deps        install the build, docs and demo dependencies (apt-get as root, else prints the command)"
	@echo "make deps-build  install the build dependencies only"
	@echo "make deps-demo   install the demo's data set (Debian's dataset-fashion-mnist) if it can be had"
	@echo "make deps-py     install pytest and python3-venv for the Python package's tests (optional)"
	@echo "make clean       remove build/ (every build tree in it)"
	@echo "make help        this list"

$(BUILD)/obj/%.o: src/%.c include/aimodel.h $(PRIV_HDRS)
	@$(call need,cc blas)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc -Isrc/core $(if $(filter 1,$(SANITIZE)),,$(LIB_OPT)) -fPIC -fvisibility=hidden -c $< -o $@

$(STATIC): $(OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

# Only aim_* symbols are exported: hidden visibility by default, AIM_API on
# the public functions, and a version script as a second fence.
$(SHARED): $(OBJS) src/aimodel.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/aimodel.map $(LDSAN) -o $@ $(OBJS) $(BLAS_LIBS) -lm -pthread
	ln -sf libaimodel.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libaimodel.so

# ---- prerequisites: checked before the first compile ----------------------
# Every compile rule starts with $(call need,...). One preprocessor run, at
# the first compile of a make run, with the compiler and flags in use (so a
# cross build asks about the target's headers), tells which headers $(CC)
# finds; a missing one stops make with one line naming it and its Debian
# package, before any compiler error. Checking installs nothing: `make deps`,
# `make test` and the other targets that install do so through DEPS_* below.
# OpenBLAS's cblas.h is told from another BLAS's by OPENBLAS_VERSION (from its
# openblas_config.h), one for another architecture (a cross compiler given
# the machine's openblas.pc) by OPENBLAS_ARCH_*. A compiler without
# __has_include is not checked.
H := \#
PREREQ_PROBE := '$H if defined(__has_include)' \
  '$H  if __has_include(<cblas.h>)' '$H   include <cblas.h>' \
  '$H   if !defined(OPENBLAS_VERSION)' 'aim_have_other_cblas' \
  '$H   elif (defined(OPENBLAS_ARCH_X86_64) && !defined(__x86_64__)) || (defined(OPENBLAS_ARCH_ARM64) && !defined(__aarch64__))' \
  'aim_have_other_arch_blas' '$H   else' 'aim_have_blas' '$H   endif' '$H  endif' \
  '$H  if __has_include(<cmocka.h>)' 'aim_have_cmocka' '$H  endif' \
  '$H  if __has_include(<zlib.h>)' 'aim_have_zlib' '$H  endif' \
  '$H else' 'aim_have_blas aim_have_cmocka aim_have_zlib' '$H endif' 'aim_have_cc' \
  '$H if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12' \
  'aim_gcc12_aarch64' '$H endif'
PREREQS = $(eval PREREQS := $$(shell printf '%s\n' $$(PREREQ_PROBE) | \
            $$(CC) $$(ALL_CFLAGS) -E -P -x c - 2>/dev/null | grep -o 'aim_[a-z0-9_]*'))$(PREREQS)
# $(call need,cc blas cmocka zlib): expands to nothing, or stops make.
need = $(foreach p,$(1),$(if $(filter aim_have_$(p),$(PREREQS)),,$(error $(PREREQ_MSG_$(p)))))
# GCC 12 for aarch64 (Debian 12's aarch64-linux-gnu-gcc 12.2.0; its native
# arm64 gcc is the same release) dies with an internal compiler error (in
# vect_transform_reduction, at -O2) on the tests' fmax reductions
# over widened floats with a constant trip count (test_attention,
# test_layer_norm, test_lstm); the tests are built without the loop
# vectorizer there. The library is not affected and keeps it.
TEST_CFLAGS = $(if $(filter aim_gcc12_aarch64,$(PREREQS)),-fno-tree-loop-vectorize)

# The Debian packages are the target's: DEB_ARCH (arm64 for test-aarch64)
# suffixes the libraries' -dev packages, and the compiler's package is
# listed when it is not the native gcc (CC=clang, CC=aarch64-linux-gnu-gcc).
DEB_ARCH    ?=
DEB_SUFFIX   = $(if $(DEB_ARCH),:$(DEB_ARCH))
DEPS_TARGET ?= deps
CC_NAME      = $(notdir $(firstword $(CC)))
CC_PKG       = $(if $(filter clang%,$(CC_NAME)),$(CC_NAME),$(if $(filter %-gcc,$(CC_NAME)),gcc-$(CC_NAME:%-gcc=%),gcc))
PREREQ_MSG_cc     = the C compiler $(CC) is missing or does not run (Debian: apt-get install $(CC_PKG))
PREREQ_MSG_blas   = $(if $(filter aim_have_other_cblas,$(PREREQS)),$(PREREQ_MSG_blas_other),$(if \
                      $(filter aim_have_other_arch_blas,$(PREREQS)),$(PREREQ_MSG_blas_arch),$(PREREQ_MSG_blas_none)))
PREREQ_MSG_blas_arch  = the OpenBLAS cblas.h $(CC) finds ($(strip $(BLAS_CFLAGS))) is another architecture's (a cross build: PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET)/pkgconfig:/usr/share/pkgconfig, as make test-aarch64 sets)
PREREQ_MSG_blas_none  = OpenBLAS's cblas.h not found for $(CC) (Debian: apt-get install libopenblas-dev$(DEB_SUFFIX), or run make $(DEPS_TARGET))
PREREQ_MSG_blas_other = the cblas.h $(CC) finds is not OpenBLAS's but another BLAS's (Debian: apt-get install libopenblas-dev$(DEB_SUFFIX) for its openblas.pc, or set BLAS_CFLAGS=-I<directory of OpenBLAS's cblas.h>)
PREREQ_MSG_cmocka = cmocka.h not found for $(CC) (Debian: apt-get install libcmocka-dev$(DEB_SUFFIX), or run make $(DEPS_TARGET))
PREREQ_MSG_zlib   = zlib.h not found for $(CC) (Debian: apt-get install zlib1g-dev$(DEB_SUFFIX), or run make $(DEPS_TARGET))

# ---- dependencies ----------------------------------------------------------
# Each entry is "file-it-installs:debian-package"; dpkg's record decides when
# dpkg exists, the file otherwise.
DEPS_BUILD  = /usr/include/$(TRIPLET)/openblas-pthread/cblas.h:libopenblas-dev$(DEB_SUFFIX) \
              /usr/include/cmocka.h:libcmocka-dev$(DEB_SUFFIX) \
              /usr/bin/pkg-config:pkg-config \
              /usr/include/zlib.h:zlib1g-dev$(DEB_SUFFIX) \
              $(if $(filter-out gcc,$(CC_PKG)),/usr/bin/$(CC_NAME):$(CC_PKG)) \
              /usr/lib/python3/dist-packages/numpy/__init__.py:python3-numpy
DEPS_DOCS  := /usr/bin/doxygen:doxygen
DEPS_DEMO  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz:dataset-fashion-mnist
# The Python package's tests: pytest, and venv (with pip) for the install test.
DEPS_PY    := /usr/lib/python3/dist-packages/pytest/__init__.py:python3-pytest \
              /usr/share/doc/python3-venv/copyright:python3-venv

# Installs what is missing of the given list; as a non-root user it prints the
# command instead and fails. The dataset is optional: the demo falls back to
# built-in data, so its install failing only warns.
define install_missing
	@missing=""; for d in $(1); do f=$${d%%:*}; p=$${d#*:}; \
	  if command -v dpkg-query >/dev/null 2>&1; then \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	  elif [ ! -e "$$f" ]; then missing="$$missing $$p"; fi; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "deps: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || { $(2) ; }; \
	  else echo "deps: missing$$missing; run: sudo apt-get update && sudo apt-get install -y$$missing"; $(2); fi; \
	fi
endef

deps: deps-build deps-demo
	$(call install_missing,$(DEPS_DOCS),exit 1)

deps-build:
	$(call install_missing,$(DEPS_BUILD),exit 1)

deps-demo:
	$(call install_missing,$(DEPS_DEMO),echo "deps: dataset-fashion-mnist unavailable; the demo will use built-in data")

# Optional: without pytest, `make test` runs test_binding.py as a plain script.
.PHONY: deps-py
deps-py:
	$(call install_missing,$(DEPS_PY),echo "deps: without pytest only examples/python/test_binding.py runs")

# ---- tests -------------------------------------------------------------------
$(BUILD)/tests/%: tests/%.c tests/support.c tests/support.h $(wildcard tests/golden/*.h) $(wildcard tests/bad_input/*.inc) src/internal.h $(STATIC)
	@$(call need,cc blas cmocka)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Wno-missing-prototypes -Itests -o $@ $< tests/support.c $(STATIC) $(TEST_LIBS) $(BLAS_LIBS) -lm -pthread $(LDSAN)
# The examples' progress formatter, which that test includes.
$(BUILD)/tests/test_examples_progress: examples/common/progress.c examples/common/progress.h

# Runs every test program, then prints one summary line; fails if any failed.
test: deps-build $(if $(filter 1,$(SANITIZE)),,deps-py)
	@$(MAKE) --no-print-directory test-run

.PHONY: test-run test-valgrind
# The suite under valgrind memcheck: any error or leak fails.
test-valgrind: deps-build
	$(call install_missing,/usr/bin/valgrind:valgrind,exit 1)
	@$(MAKE) --no-print-directory test-run TEST_WRAP="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"

# The Python binding's test runs too when Debian's python3 with numpy is
# there, except under the sanitizers or valgrind (the binding loads the
# shared library into an uninstrumented interpreter).
PY_TEST := $(if $(filter 1,$(SANITIZE))$(TEST_WRAP),,$(shell /usr/bin/python3 -c 'import numpy' 2>/dev/null && echo yes))
# Every test_*.py of examples/python under pytest, one program in the count
# (no .pytest_cache or __pycache__ left in the tree); without pytest, the
# binding's checks as a plain script.
PY_TEST_CMD := $(if $(shell /usr/bin/python3 -c 'import pytest' 2>/dev/null && echo yes),\
                 /usr/bin/python3 -m pytest -q -p no:cacheprovider examples/python,\
                 /usr/bin/python3 examples/python/test_binding.py)

test-run: $(TESTS) $(if $(PY_TEST),$(SHARED))
	@pass=0; fail=0; failed=""; for t in $(TESTS); do \
	  echo "== $$t"; if $(TEST_WRAP) $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); failed="$$failed $$t"; fi; done; \
	  if [ -n "$(PY_TEST)" ]; then echo "== $(strip $(PY_TEST_CMD))"; \
	    if AIMODEL_LIB=$(CURDIR)/$(SHARED) PYTHONDONTWRITEBYTECODE=1 $(PY_TEST_CMD); then pass=$$((pass+1)); \
	    else fail=$$((fail+1)); failed="$$failed examples/python"; fi; fi; \
	  echo ""; [ -z "$$failed" ] || echo "failed programs:$$failed"; \
	  echo "test programs: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# ---- aarch64: cross-built, the suite run under qemu-user --------------------
# As root: adds Debian's arm64 architecture, installs the cross gcc, the arm64
# -dev packages and qemu-user; then builds the library, the examples and the
# tests with aarch64-linux-gnu-gcc into $(AARCH64_BUILD) (the arm64 .pc files
# through PKG_CONFIG_LIBDIR) and runs every test program under qemu-aarch64
# with one OpenBLAS thread, then linear_regression. No Python test: it would load an ARM library into
# this machine's python3. The programs run on the arm64 loader and libc of
# Debian's libc6:arm64 (multiarch, in /lib/aarch64-linux-gnu, as the arm64
# OpenBLAS and cmocka are), not under `-L /usr/aarch64-linux-gnu`: with the
# cross toolchain's libc loaded beside them, test_attention, test_batch_norm
# and a three-line program calling openblas_get_corename() spun forever.
AARCH64_BUILD ?= $(BUILD)/aarch64
AARCH64_CC    ?= aarch64-linux-gnu-gcc
AARCH64_WRAP  ?= qemu-aarch64
DEPS_AARCH64  := /usr/bin/aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu \
                 /usr/aarch64-linux-gnu/include/stdio.h:libc6-dev-arm64-cross \
                 /lib/ld-linux-aarch64.so.1:libc6:arm64 \
                 /usr/bin/qemu-aarch64:qemu-user \
                 /usr/include/aarch64-linux-gnu/openblas-pthread/cblas.h:libopenblas-dev:arm64 \
                 /usr/include/cmocka.h:libcmocka-dev:arm64 \
                 /usr/include/zlib.h:zlib1g-dev:arm64 \
                 /usr/bin/pkg-config:pkg-config
.PHONY: test-aarch64
test-aarch64:
	@dpkg --print-foreign-architectures | grep -qx arm64 || [ "$$(id -u)" != 0 ] || dpkg --add-architecture arm64
	$(call install_missing,$(DEPS_AARCH64),echo "deps: run first as root: dpkg --add-architecture arm64"; exit 1)
	@OPENBLAS_NUM_THREADS=1 PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
	  $(MAKE) --no-print-directory lib examples test-run CC=$(AARCH64_CC) BUILD=$(AARCH64_BUILD) \
	    DEB_ARCH=arm64 DEPS_TARGET=test-aarch64 TEST_WRAP="$(AARCH64_WRAP)" PY_TEST=
	@echo "== $(AARCH64_WRAP) $(AARCH64_BUILD)/examples/linear_regression"
	@out=$$(OPENBLAS_NUM_THREADS=1 $(AARCH64_WRAP) $(AARCH64_BUILD)/examples/linear_regression) || exit 1; \
	  echo "$$out" | tail -n 1; echo "$$out" | grep -q '^RESULT linear_regression ' || \
	  { echo "linear_regression under qemu: no RESULT line"; exit 1; }

# ---- examples ----------------------------------------------------------------
$(BUILD)/examples/%: examples/%.c $(EX_COMMON) $(wildcard examples/common/*.h) $(STATIC)
	@$(call need,cc blas zlib)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -Iexamples/common -o $@ $< $(EX_COMMON) $(STATIC) -lz $(BLAS_LIBS) -lm -pthread $(LDSAN)

examples: $(EXAMPLES)

demo: deps-build deps-demo
	@$(MAKE) --no-print-directory $(BUILD)/examples/mlp_classifier
	$(BUILD)/examples/mlp_classifier $(DEMO_ARGS)

# ---- MPI data parallelism (docs/DISTRIBUTED.md) ------------------------------
# The MPI program lives in examples/mpi/, out of reach of the examples/*.c
# rule, so `make examples` needs no MPI; these are built with mpicc only here.
MPICC      ?= mpicc
MPIRUN     ?= mpirun
MPI_NP     ?= 2
# --allow-run-as-root is needed as root (CI) and harmless otherwise;
# --oversubscribe lets MPI_NP exceed the cores.
MPIRUN_FLAGS ?= --oversubscribe --allow-run-as-root
DEPS_MPI   := /usr/bin/mpicc:libopenmpi-dev /usr/bin/mpirun:openmpi-bin
MPI_DP     := examples/mpi/mpi_dp.c examples/mpi/mpi_dp.h

$(BUILD)/examples/mpi/mpi_data_parallel: examples/mpi/mpi_data_parallel.c $(MPI_DP) $(EX_COMMON) $(wildcard examples/common/*.h) $(STATIC)
	@mkdir -p $(@D)
	$(MPICC) $(ALL_CFLAGS) -Wno-missing-prototypes -Iexamples/common -Iexamples/mpi -o $@ $< examples/mpi/mpi_dp.c $(EX_COMMON) $(STATIC) -lz $(BLAS_LIBS) -lm -pthread $(LDSAN)

$(BUILD)/tests/mpi/test_mpi: tests/mpi/test_mpi.c $(MPI_DP) tests/support.c tests/support.h $(STATIC)
	@mkdir -p $(@D)
	$(MPICC) $(ALL_CFLAGS) -Wno-missing-prototypes -Itests -Iexamples/mpi -o $@ $< examples/mpi/mpi_dp.c tests/support.c $(STATIC) $(BLAS_LIBS) -lm -pthread $(LDSAN)

.PHONY: test-mpi
# Installs Open MPI when missing (as root), then runs the test on MPI_NP
# ranks and the example for a few steps on the synthetic data; one line sums up.
test-mpi: deps-build
	$(call install_missing,$(DEPS_MPI),exit 1)
	@$(MAKE) --no-print-directory $(BUILD)/tests/mpi/test_mpi $(BUILD)/examples/mpi/mpi_data_parallel
	@export OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1}; pass=0; fail=0; \
	  echo "== $(MPIRUN) -np $(MPI_NP) $(BUILD)/tests/mpi/test_mpi"; \
	  if $(MPIRUN) $(MPIRUN_FLAGS) -np $(MPI_NP) $(BUILD)/tests/mpi/test_mpi; then pass=$$((pass+1)); else fail=$$((fail+1)); fi; \
	  echo "== $(MPIRUN) -np $(MPI_NP) $(BUILD)/examples/mpi/mpi_data_parallel --synthetic --steps 60 --batch 48"; \
	  out=$$($(MPIRUN) $(MPIRUN_FLAGS) -np $(MPI_NP) $(BUILD)/examples/mpi/mpi_data_parallel --synthetic --steps 60 --batch 48); \
	  rc=$$?; echo "$$out"; \
	  if [ $$rc -eq 0 ] && echo "$$out" | grep -q "^RESULT mpi_data_parallel .*ranks=$(MPI_NP) .*in_sync=1"; then pass=$$((pass+1)); \
	  else fail=$$((fail+1)); echo "mpi_data_parallel: exit $$rc or no RESULT line with ranks=$(MPI_NP) in_sync=1"; fi; \
	  echo ""; echo "mpi programs: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# Learning curves as PNG in $(BUILD)/plots/: runs mlp_classifier, cnn_classifier
# (1 epoch) and linear_regression with --log and draws the CSVs with gnuplot
# (examples/plots.sh installs gnuplot-nox as root, else prints the command).
.PHONY: plots
plots: deps-build deps-demo
	@$(MAKE) --no-print-directory examples
	sh examples/plots.sh $(BUILD)

# ---- fuzzing: libFuzzer targets under ASan+UBSan (tests/fuzz/README.md) -----
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps-build
	$(call install_missing,/usr/bin/clang:clang /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev,exit 1)
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# ---- benchmarks: print figures, never fail on a timing --------------------
# The comparison with PyTorch on the four seed models (about 9 minutes), the
# GRU, the batch-norm CNN and the character GPT (about 6 minutes alone), 1
# and 2 threads, both OpenBLAS cores; bench-layers: the per-layer breakdown.
bench: deps-build lib
	$(call install_missing,/usr/lib/python3/dist-packages/torch/__init__.py:python3-torch,exit 1)
	tests/bench/compare.sh

bench-layers: deps-build lib
	tests/bench/run.sh $(BENCH_ARGS)

# The GPT step's GEMM shapes: cblas_sgemm against the library's AVX-512F
# kernel and its dispatcher, one thread (tests/bench/bench_gemm.c; ~10 s).
bench-gemm: deps-build lib
	@mkdir -p $(BUILD)/bench
	$(CC) $(ALL_CFLAGS) -o $(BUILD)/bench/bench_gemm tests/bench/bench_gemm.c $(STATIC) $(BLAS_LIBS) -lm -pthread $(LDSAN)
	OPENBLAS_NUM_THREADS=1 $(BUILD)/bench/bench_gemm $(BENCH_ROUNDS)

# ---- docs ----------------------------------------------------------------------
docs: include/aimodel.h docs/Doxyfile README.md
	$(call install_missing,$(DEPS_DOCS),exit 1)
	@mkdir -p build/docs
	doxygen docs/Doxyfile

# ---- install -------------------------------------------------------------------
# The .pc files are generated for this PREFIX at every install; the CMake
# package finds its paths from its own location (relocatable), so only the
# relative path from $(CMAKEDIR) to $(INCDIR) and the pointer size go in.
CMAKEDIR ?= $(LIBDIR)/cmake/aimodel
PC_SED    = -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
CMAKE_SED = -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
            -e "s|@CMAKEDIR_TO_LIBDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(LIBDIR))|g" \
            -e "s|@CMAKEDIR_TO_INCDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(INCDIR))|g" \
            -e "s|@SIZEOF_VOID_P@|$$(echo __SIZEOF_POINTER__ | $(CC) -E -P -x c - | tr -d ' ')|g"

install: lib
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(CMAKEDIR)
	install -m 644 include/aimodel.h $(DESTDIR)$(INCDIR)/aimodel.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libaimodel.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libaimodel.so.$(VERSION)
	ln -sf libaimodel.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libaimodel.so
	sed $(PC_SED) pkgconfig/aimodel.pc.in > $(DESTDIR)$(PCDIR)/aimodel.pc
	sed $(PC_SED) pkgconfig/aimodel-static.pc.in > $(DESTDIR)$(PCDIR)/aimodel-static.pc
	sed $(CMAKE_SED) pkgconfig/aimodelConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/aimodelConfig.cmake
	sed $(CMAKE_SED) pkgconfig/aimodelConfigVersion.cmake.in > $(DESTDIR)$(CMAKEDIR)/aimodelConfigVersion.cmake
	chmod 644 $(DESTDIR)$(PCDIR)/aimodel.pc $(DESTDIR)$(PCDIR)/aimodel-static.pc \
	          $(DESTDIR)$(CMAKEDIR)/aimodelConfig.cmake $(DESTDIR)$(CMAKEDIR)/aimodelConfigVersion.cmake
	@if [ -z "$(DESTDIR)" ] && ! { /sbin/ldconfig -p 2>/dev/null | grep -q " $(LIBDIR)/$(SONAME)\$$"; }; then \
	  echo "note: the loader does not know $(LIBDIR) yet: link with an rpath, set LD_LIBRARY_PATH,"; \
	  echo "      or run ldconfig if it is in /etc/ld.so.conf (README.md, \"Installing and linking\")"; fi

# Removes what install put there, and the CMake directory if it is then empty.
uninstall:
	rm -f $(DESTDIR)$(INCDIR)/aimodel.h $(DESTDIR)$(LIBDIR)/libaimodel.a \
	      $(DESTDIR)$(LIBDIR)/libaimodel.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libaimodel.so $(DESTDIR)$(PCDIR)/aimodel.pc $(DESTDIR)$(PCDIR)/aimodel-static.pc \
	      $(DESTDIR)$(CMAKEDIR)/aimodelConfig.cmake $(DESTDIR)$(CMAKEDIR)/aimodelConfigVersion.cmake
	@rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null || true

# Every exported symbol starts with aim_, and the soname carries the major.
check-abi: $(SHARED)
	@bad=$$(nm -D --defined-only $(SHARED) | awk '{print $$3}' | grep -v '^aim_[a-z]' | grep -v '^AIMODEL_' || true); \
	  if [ -n "$$bad" ]; then echo "non-aim_ exports: $$bad"; exit 1; fi
	@readelf -d $(SHARED) | grep -q 'SONAME.*\[$(SONAME)\]' || { echo "soname is not $(SONAME)"; exit 1; }
	@grep -q '#define AIM_VERSION_STRING "$(VERSION)"' include/aimodel.h || { echo "header version != $(VERSION)"; exit 1; }
	@echo "abi: only aim_ symbols exported; soname $(SONAME); header version $(VERSION)"

clean:
	rm -rf build
