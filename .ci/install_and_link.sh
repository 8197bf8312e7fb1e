#!/usr/bin/env bash
# Installs libaimodel and links programs against it the way README.md says,
# by running the README's own `<!-- ci:NAME -->` blocks as written (so they
# cannot drift): the first program, the install into $HOME/..., each way of
# linking it (rpath, LD_LIBRARY_PATH, static), /usr/local with ldconfig, and
# CMake. HOME is a temporary directory. Then the downstream CMake project in
# .ci/cmake is built against a DESTDIR-staged copy moved elsewhere, once per
# imported target. Each program is run and its libaimodel checked with ldd.
#
# Usage: .ci/install_and_link.sh WORKDIR (a new directory). Meant for CI's
# fresh machine, as root: it installs cmake, g++ and sudo when missing, and
# installs into /usr/local (then uninstalls) for the ldconfig block.
# pkg-config's output and the package list are meant to be split into words;
# each subshell sets its own HOME on purpose.
# shellcheck disable=SC2046,SC2086,SC2030,SC2031,SC1091
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$1
mkdir "$work"
fail() { echo "install_and_link: $*" >&2; exit 1; }

missing=""
command -v cmake >/dev/null || missing="$missing cmake"
command -v g++ >/dev/null || missing="$missing g++"
command -v sudo >/dev/null || missing="$missing sudo"
if [ -n "$missing" ]; then
  echo "installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

# The fenced block after the line starting "<!-- ci:NAME " in README.md.
readme_block() {
  awk -v mark="<!-- ci:$1 " 'index($0, mark) == 1 { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' README.md
}
mkdir "$work/blocks"
for name in quickstart.c quickstart-output install link-rpath link-env link-static system-install system-link CMakeLists.txt cmake; do
  readme_block "$name" > "$work/blocks/$name"
  [ -s "$work/blocks/$name" ] || fail "README.md has no ci:$name block"
done
# The heading gives the first program's length: keep it true.
lines=$(wc -l < "$work/blocks/quickstart.c")
grep -q "^## A first program ($lines lines)$" README.md || fail "README.md's first program is $lines lines; its heading says otherwise"
# Runs a README block in the current directory, in a child bash -e.
# Shows it on stderr, so that stdout is the block's own output.
run_block() {
  echo "--- README.md ci:$1 in $PWD" >&2
  sed 's/^/    /' "$work/blocks/$1" >&2
  bash -euo pipefail "$work/blocks/$1"
}
# The first program's output: the loss falls, and each of the four
# predictions is on its target's side of 0.5.
check_quickstart() {
  awk '/^step / { n++; if (n == 1) first = $4; last = $4 }
    / xor .* -> / { k++; p = $5; t = $7; sub(/\)/, "", t); if ((t == 1 && p <= 0.5) || (t == 0 && p >= 0.5)) bad++ }
    END { if (n < 2 || !(last < first) || k != 4 || bad) {
            printf "quickstart: %d loss lines (%s -> %s), %d predictions, %d wrong\n", n, first, last, k, bad; exit 1 } }' "$1" ||
    fail "the first program did not learn XOR"
  # Its last lines (a block may print a build's output first) are what the
  # README shows, word for word, numbers within 0.002.
  tail -n "$(wc -l < "$work/blocks/quickstart-output")" "$1" > "$1.tail"
  awk 'NR == FNR { want[FNR] = $0; n = FNR; next }
    { got = FNR; k = split(want[FNR], w); if (k != split($0, g)) bad++
      for (i = 1; i <= k; i++) if (w[i] != g[i] && (w[i] !~ /^[0-9.]+$/ || (w[i] - g[i]) ^ 2 > 0.002 ^ 2)) bad++ }
    END { if (bad || got != n) { print "quickstart: its output differs from README.md'"'"'s"; exit 1 } }' \
    "$work/blocks/quickstart-output" "$1.tail" || { diff "$work/blocks/quickstart-output" "$1.tail" || true; fail "README.md shows another output"; }
}
# The libaimodel the loader gives a program (ldd's output is captured before
# grepping it: `ldd | grep -q` under pipefail fails when ldd dies of SIGPIPE).
loaded_aimodel() {
  local deps
  deps=$(ldd "$1")
  sed -n 's/^[[:space:]]*libaimodel\.so[^ ]* => \([^ ]*\).*/\1/p' <<<"$deps"
}

home="$work/home"
prog="$work/prog"
mkdir "$home" "$prog"
cp "$work/blocks/quickstart.c" "$prog/quickstart.c"
(
  export HOME="$home"
  # The install block exports PKG_CONFIG_PATH: it is sourced, in the source tree.
  echo "--- README.md ci:install in $PWD (sourced)"
  sed 's/^/    /' "$work/blocks/install"
  . "$work/blocks/install"
  libdir=$(pkg-config --variable=libdir aimodel)
  prefix=$(pkg-config --variable=prefix aimodel)
  case "$libdir" in "$home"/*) ;; *) fail "the install block installed into $libdir, not under \$HOME" ;; esac
  for f in include/aimodel.h lib/libaimodel.a lib/libaimodel.so.1 lib/pkgconfig/aimodel-static.pc lib/cmake/aimodel/aimodelConfig.cmake; do
    [ -e "$prefix/$f" ] || fail "make install did not install $prefix/$f"
  done

  cd "$prog"
  run_block link-rpath | tee rpath.out
  check_quickstart rpath.out
  [ "$(loaded_aimodel quickstart)" = "$libdir/libaimodel.so.1" ] || fail "rpath: the program does not load $libdir/libaimodel.so.1"

  run_block link-env | tee env.out
  check_quickstart env.out
  [ "$(loaded_aimodel quickstart)" = "not" ] || fail "without LD_LIBRARY_PATH the loader found libaimodel at $(loaded_aimodel quickstart)"
  # The error the README quotes for a program with neither rpath nor LD_LIBRARY_PATH.
  if ./quickstart > /dev/null 2> noenv.err; then fail "the program ran without its library"; fi
  grep -q "error while loading shared libraries: libaimodel.so.1: cannot open shared object file" noenv.err ||
    fail "unexpected error without LD_LIBRARY_PATH: $(cat noenv.err)"
  [ "$(LD_LIBRARY_PATH="$libdir" loaded_aimodel quickstart)" = "$libdir/libaimodel.so.1" ] ||
    fail "LD_LIBRARY_PATH: the program does not load $libdir/libaimodel.so.1"

  run_block link-static | tee static.out
  check_quickstart static.out
  [ -z "$(loaded_aimodel quickstart)" ] || fail "the static link loads $(loaded_aimodel quickstart)"

  # The same program, strict, as C11 and as C++, against the installed copy.
  strict=(-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror)
  echo "--- quickstart.c as C11 and as C++ with ${strict[*]}"
  cc -std=c11 "${strict[@]}" quickstart.c $(pkg-config --cflags --libs aimodel) -Wl,-rpath,"$libdir" -o quickstart-c11
  ./quickstart-c11 > c11.out
  check_quickstart c11.out
  g++ -x c++ "${strict[@]}" quickstart.c -x none $(pkg-config --cflags --libs aimodel-static) -o quickstart-cxx
  ./quickstart-cxx > cxx.out
  check_quickstart cxx.out
  cmp -s c11.out cxx.out || fail "C and C++ builds print different results"

  # CMake, as the README shows: its CMakeLists.txt beside quickstart.c.
  mkdir "$work/cmake-readme"
  cp quickstart.c "$work/cmake-readme/"
  cp "$work/blocks/CMakeLists.txt" "$work/cmake-readme/CMakeLists.txt"
  cd "$work/cmake-readme"
  run_block cmake | tee cmake.out
  check_quickstart cmake.out
  [ "$(loaded_aimodel build/quickstart)" = "$libdir/libaimodel.so.1" ] || fail "CMake: the program does not load $libdir/libaimodel.so.1"

  cd "$repo"
  make --no-print-directory uninstall PREFIX="$prefix" > /dev/null
  left=$(find "$prefix" -type f -o -type l)
  [ -z "$left" ] || fail "make uninstall PREFIX=$prefix left: $left"
)

# /usr/local, the default prefix, with ldconfig, exactly as the README says.
if ls /usr/local/lib/libaimodel* > /dev/null 2>&1; then fail "/usr/local/lib already holds a libaimodel; not overwriting it"; fi
(
  unset PKG_CONFIG_PATH
  export HOME="$home"
  run_block system-install
  cd "$prog"
  run_block system-link | tee system.out
  check_quickstart system.out
  [ "$(loaded_aimodel quickstart)" = "/usr/local/lib/libaimodel.so.1" ] || fail "/usr/local: the program does not load /usr/local/lib/libaimodel.so.1"
  cd "$repo"
  sudo make --no-print-directory uninstall > /dev/null
  sudo ldconfig
  ! ls /usr/local/lib/libaimodel* /usr/local/lib/pkgconfig/aimodel* /usr/local/include/aimodel.h 2> /dev/null || fail "make uninstall left files in /usr/local"
  ! /sbin/ldconfig -p | grep -q libaimodel || fail "the loader's cache still lists libaimodel"
)

# DESTDIR staging puts every file under the stage and nothing elsewhere;
# uninstall removes them all. A copy of the staged prefix, moved, serves the
# downstream CMake project (the package finds its paths from its location).
stage="$work/stage"
make --no-print-directory install PREFIX=/opt/aimodel DESTDIR="$stage"
find "$stage" | sort
cp -a "$stage/opt/aimodel" "$work/moved"
make --no-print-directory uninstall PREFIX=/opt/aimodel DESTDIR="$stage"
left=$(find "$stage" -type f -o -type l | wc -l)
[ "$left" -eq 0 ] || fail "uninstall left $left files in $stage"

version=$(sed -n 's/^#define AIM_VERSION_STRING "\(.*\)"$/\1/p' include/aimodel.h)
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
for target in aimodel::aimodel aimodel::aimodel_static; do
  b="$work/cmake-${target#aimodel::}"
  echo "--- .ci/cmake with $target against $work/moved"
  cmake -S .ci/cmake -B "$b" -DCMAKE_PREFIX_PATH="$work/moved" -DAIMODEL_TARGET="$target" \
        -DAIMODEL_REQUEST="$major.$minor" -DAIMODEL_EXPECT_VERSION="$version" > "$b.log" || { cat "$b.log"; fail "cmake configure with $target"; }
  grep 'aimodel ' "$b.log"
  cmake --build "$b" > "$b.build.log" || { cat "$b.build.log"; fail "cmake build with $target"; }
  "$b/downstream"
  lib=$(loaded_aimodel "$b/downstream")
  if [ "$target" = aimodel::aimodel ]; then
    [ "$lib" = "$work/moved/lib/libaimodel.so.1" ] || fail "$target: the program loads '$lib', not the moved copy's"
  else
    [ -z "$lib" ] || fail "$target: the program loads $lib"
  fi
done
# The version file: the next major and a newer minor are refused.
for asked in "$((major + 1)).0" "$major.$((minor + 1))"; do
  if cmake -S .ci/cmake -B "$work/cmake-v$asked" -DCMAKE_PREFIX_PATH="$work/moved" -DAIMODEL_REQUEST="$asked" \
       > "$work/cmake-v$asked.log" 2>&1; then
    fail "find_package(aimodel $asked) accepted version $version"
  fi
  grep -q "version: $version" "$work/cmake-v$asked.log" || { cat "$work/cmake-v$asked.log"; fail "find_package(aimodel $asked) failed for another reason"; }
  echo "find_package(aimodel $asked) refuses $version"
done
echo "install_and_link: all passed"
