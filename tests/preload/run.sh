#!/usr/bin/env bash
# One real-program test: run workload W (see workloads.sh) once on the
# system allocator and once with LIB preloaded, and fail unless both print
# the same stdout and stderr with the same exit statuses, and the preloaded
# run neither crashes nor hangs.
#
# Usage: tests/preload/run.sh LIB W [SCALE]
#   LIB    the allocator to preload (CTest passes libumpa.so; any drop-in
#          malloc works, e.g. /usr/lib/x86_64-linux-gnu/libmimalloc.so.2)
#   W      python | perl | gcc | git | sqlite | sort | awk | cpython
#   SCALE  input size multiplier (default 1)
# Environment: UMPA_PRELOAD_KEEP=1 keeps the work directory;
#   UMPA_PRELOAD_TIMEOUT seconds allowed per run (default 135).
#
# Before comparing it proves the preload took effect: LIB must define malloc
# in its dynamic symbol table, and with LD_DEBUG=bindings each program under
# test must bind malloc to LIB.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/workloads.sh
. "$here/workloads.sh"

[ $# -ge 2 ] || { echo "usage: $0 LIB WORKLOAD [SCALE]" >&2; exit 2; }
lib=$1 w=$2 scale=${3:-1}
limit=${UMPA_PRELOAD_TIMEOUT:-135}
fail() { echo "FAIL preload_$w: $*" >&2; exit 1; }
case " $PRELOAD_WORKLOADS $PRELOAD_TEST_WORKLOADS " in
  *" $w "*) ;;
  *) echo "unknown workload '$w' (one of: $PRELOAD_WORKLOADS $PRELOAD_TEST_WORKLOADS)" >&2; exit 2 ;;
esac

# --- the programs this workload needs, installed when missing -------------
need=(nm awk timeout sha256sum cmp diff)
case $w in
  python | cpython) need+=(python3) ;;
  perl) need+=(perl) ;;
  gcc) need+=(gcc) ;;
  git) need+=(git) ;;
  sqlite) need+=(sqlite3) ;;
  sort) need+=(sort) ;;
esac
missing() {
  local c
  for c in "${need[@]}"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done
  # perl-base alone gives the command without threads and Digest::MD5.
  if [ "$w" = perl ] && command -v perl >/dev/null 2>&1 &&
    ! perl -Mthreads -MThread::Queue -MDigest::MD5 -e 1 >/dev/null 2>&1; then
    echo "perl-modules"
  fi
  if [ "$w" = cpython ] && [ -z "$(preload_cpython)" ]; then
    echo "CPython's test modules (libpython3.X-testsuite)"
  fi
}
if [ -n "$(missing)" ]; then
  echo "installing the missing $(missing | tr '\n' ' ')with tools/deps.sh test"
  "$root/tools/deps.sh" test || true
  [ -z "$(missing)" ] || fail "missing programs: $(missing | tr '\n' ' ')"
fi

# --- the library must be a drop-in malloc ---------------------------------
[ -f "$lib" ] || fail "library not found: $lib"
lib="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
libname=$(basename "$lib" | sed 's/\.so\..*$/.so/')
exports_malloc() {
  nm -D --defined-only "$1" 2>/dev/null |
    awk '$2 ~ /^[TWi]$/ && $3 ~ /^malloc(@|$)/ { found = 1 } END { exit !found }'
}
exports_malloc "$lib" ||
  fail "$libname does not export malloc ($lib: nm -D --defined-only lists no malloc, so LD_PRELOAD cannot replace the system allocator)"

preload_env
tmp=$(mktemp -d "${TMPDIR:-/tmp}/umpa-preload-$w.XXXXXX")
cleanup() {
  if [ "${UMPA_PRELOAD_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
mkdir "$tmp/in" "$tmp/ld"

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }

t0=$(now_ms)
"$here/workloads.sh" gen "$w" "$tmp/in" "$scale" || fail "generating the inputs failed"
echo "inputs generated in $(secs $(($(now_ms) - t0))) s ($(du -sh "$tmp/in" | cut -f1))"

# --- every program under test binds malloc to LIB -------------------------
bins=()
case $w in
  python | cpython) bins=("$(cat "$tmp/in/python")") ;;
  perl) bins=("$(command -v perl)") ;;
  gcc) bins=("$(command -v gcc)" "$(gcc -print-prog-name=cc1)") ;;
  git) bins=("$(command -v git)") ;;
  sqlite) bins=("$(command -v sqlite3)") ;;
  sort) bins=("$(command -v sort)") ;;
  awk) bins=("$(command -v awk)") ;;
esac
# The probe: --version, which mawk does not take (an empty program it does).
probe=--version
[ "$w" = awk ] && probe='BEGIN { }'
for b in "${bins[@]}"; do
  rm -f "$tmp"/ld/*
  LD_BIND_NOW=1 LD_DEBUG=bindings LD_DEBUG_OUTPUT="$tmp/ld/out" \
    LD_PRELOAD="$lib" "$b" "$probe" </dev/null >/dev/null 2>"$tmp/ld/stderr" ||
    fail "$b $probe failed with $libname preloaded: $(head -c 2000 "$tmp/ld/stderr")"
  # LD_DEBUG writes one file per process (out.PID).
  # (No grep -q: with pipefail its early exit would fail the pipeline.)
  if ! cat "$tmp"/ld/out.* 2>/dev/null | grep -F "to $lib [" |
      grep -F "normal symbol \`malloc'" >/dev/null; then
    fail "$b does not bind malloc to $lib under LD_PRELOAD (LD_DEBUG=bindings); stderr: $(head -c 2000 "$tmp/ld/stderr")"
  fi
done
echo "malloc binds to $libname in: ${bins[*]}"

# --- the two runs ---------------------------------------------------------
run_once() { # tag, preload
  local tag=$1 pl=$2 rc=0 t
  mkdir "$tmp/$tag"
  t=$(now_ms)
  (
    cd "$tmp/$tag"
    export STATUS_LOG="$tmp/$tag.status"
    exec timeout -k 10 "$limit" "$here/workloads.sh" run "$w" "$tmp/in" "$pl"
  ) >"$tmp/$tag.out" 2>"$tmp/$tag.err" </dev/null || rc=$?
  echo "$rc" >"$tmp/$tag.rc"
  echo "$tag run: $(secs $(($(now_ms) - t))) s, exit $rc, $(wc -l <"$tmp/$tag.out") lines of output"
}
run_once system ""
run_once preload "$lib"

show() { # file: its tail, indented
  sed -n '1,40p' "$1" | sed 's/^/    /'
}
rc_sys=$(cat "$tmp/system.rc") rc_pre=$(cat "$tmp/preload.rc")

# The reference run must be clean, or the harness itself is broken.
if [ "$rc_sys" != 0 ] || grep -qv '^exit 0:' "$tmp/system.status"; then
  echo "system run: statuses"; show "$tmp/system.status"
  echo "system run: stderr"; show "$tmp/system.err"
  fail "the run without LD_PRELOAD failed: the test itself is broken"
fi
if [ "$rc_pre" = 124 ] || [ "$rc_pre" = 137 ]; then
  echo "preloaded run: stderr"; show "$tmp/preload.err"
  fail "the run with $libname did not finish in $limit s (hang or deadlock?); last command: $(tail -n 1 "$tmp/preload.status" 2>/dev/null)"
fi
if grep -q 'cannot be preloaded' "$tmp/preload.err"; then
  show "$tmp/preload.err"
  fail "ld.so refused to preload $lib"
fi
crash=$(awk -F'[ :]' '$1 == "exit" && $2 >= 128 { print; exit }' "$tmp/preload.status")
if [ -n "$crash" ]; then
  code=${crash#exit }; code=${code%%:*}
  echo "preloaded run: stderr"; show "$tmp/preload.err"
  fail "crashed with $libname: signal $((code - 128)) ($(kill -l $((code - 128)) 2>/dev/null || echo '?')) in '${crash#*: }'"
fi
bad=0
for part in status out err; do
  if ! cmp -s "$tmp/system.$part" "$tmp/preload.$part"; then
    case $part in
      status) what="exit statuses" ;;
      out) what="stdout" ;;
      err) what="stderr" ;;
    esac
    echo "$what differ (- system, + $libname):"
    diff -u "$tmp/system.$part" "$tmp/preload.$part" | sed -n '3,42p' | sed 's/^/    /'
    bad=1
  fi
done
[ "$rc_sys" = "$rc_pre" ] || { echo "exit status of the run: $rc_sys vs $rc_pre"; bad=1; }
[ $bad = 0 ] || fail "output with $libname differs from the system allocator's"
echo "PASS preload_$w: same output with $libname ($(wc -c <"$tmp/system.out") bytes stdout, $(wc -l <"$tmp/system.status") commands)"
