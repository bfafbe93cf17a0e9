#!/usr/bin/env bash
# The real-program workloads run under LD_PRELOAD by tests/preload/run.sh
# (each once without and once with the allocator, outputs compared) and by
# bench/programs (each under every allocator, timed).
#
# Each workload W has two functions:
#   gen_W INDIR SCALE   writes W's inputs into INDIR (no preload: plain tools)
#   run_W INDIR         runs the programs, in the current directory (a fresh
#                       empty one), printing only deterministic output
# Only the programs under test get the allocator: they are started through
# P, which adds LD_PRELOAD=$PRELOAD (empty: the system allocator) to that one
# command and logs "exit STATUS: COMMAND" to $STATUS_LOG, so the shell,
# sha256sum and the like always run on the system allocator.
#
# Sourced, this file only defines functions.  Run as
#   workloads.sh run W INDIR [LIB]   (in an empty directory)
#   workloads.sh gen W INDIR SCALE
# it does one step; bench/programs and run.sh use that form so that a
# timeout or a resource measurement covers exactly one step.

# shellcheck disable=SC2034 # used by run.sh and bench/programs
PRELOAD_WORKLOADS="python perl gcc git sqlite sort awk"
# Tests only, not timed by bench/programs: a regression suite's run time is
# its own sleeps and subprocesses more than the allocator's.
PRELOAD_TEST_WORKLOADS="cpython"
PRELOAD_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A fixed, small environment: the same in both runs, and nothing that makes
# output depend on the machine (locale, time zone, user configuration).
preload_env() {
  export LC_ALL=C LANG=C TZ=UTC
  export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
  unset PYTHONSTARTUP PYTHONPATH PYTHONHOME
  unset PERL5LIB PERL5OPT PERL_HASH_SEED_DEBUG
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat PAGER=cat
  unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY
  unset LD_PRELOAD LD_LIBRARY_PATH LD_DEBUG LD_DEBUG_OUTPUT
  unset SQLITE_HISTORY
  # glibc malloc tuning would change only the reference run.
  unset MALLOC_CHECK_ MALLOC_PERTURB_ MALLOC_ARENA_MAX GLIBC_TUNABLES
}

# P CMD ARGS...: run one program under test with the allocator.
P() {
  local rc=0
  if [ -n "${PRELOAD:-}" ]; then
    LD_PRELOAD=$PRELOAD "$@" || rc=$?
  else
    "$@" || rc=$?
  fi
  [ -n "${STATUS_LOG:-}" ] && echo "exit $rc: ${*:1:3}" >>"$STATUS_LOG"
  return 0
}

# The python3 first in PATH, resolved to the real interpreter: a pyenv shim
# is a shell script, and the binding check must look at the interpreter.
preload_python() {
  python3 -c 'import sys; print(sys.executable)'
}

# --- python ---------------------------------------------------------------
gen_python() {
  cp "$PRELOAD_HERE/workload.py" "$1/workload.py"
  echo "$2" >"$1/scale"
  preload_python >"$1/python"
}
run_python() {
  local py
  py=$(cat "$1/python")
  # pymalloc would serve most objects from its own arenas (mmap'ed, not
  # malloc'ed): send every allocation to malloc, so the allocator under test
  # sees Python's whole allocation traffic.
  PYTHONMALLOC=malloc P "$py" -s "$1/workload.py" "$(cat "$1/scale")"
}

# --- cpython --------------------------------------------------------------
# CPython's own regression tests for the types and modules that allocate
# most (3 500 tests; 11 s with two workers here), in worker processes that
# inherit the preload.  Only the totals are compared: the per-test lines
# carry timings.

# An interpreter that has the test modules (Debian's python3 needs its
# libpython3.X-testsuite package), else nothing.
preload_cpython() {
  local py
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import test.test_dict' >/dev/null 2>&1; then
      "$py" -c 'import sys; print(sys.executable)'
      return
    fi
  done
}

CPYTHON_TESTS="test_dict test_list test_set test_bytes test_json test_pickle
  test_deque test_itertools test_sort test_struct test_array test_collections
  test_re test_weakref test_gc"

gen_cpython() {
  preload_cpython >"$1/python"
}
run_cpython() {
  local py
  py=$(cat "$1/python")
  # shellcheck disable=SC2086 # the list is words
  PYTHONMALLOC=malloc P "$py" -m test -j2 $CPYTHON_TESTS >log.txt 2>&1
  grep -E '^(Total tests|Total test files|Result):|^[0-9]+ tests? (failed|skipped)' log.txt
}

# --- perl -----------------------------------------------------------------
gen_perl() {
  cp "$PRELOAD_HERE/workload.pl" "$1/workload.pl"
  echo "$2" >"$1/scale"
}
run_perl() {
  # Hash order and the hash seed must not differ between the two runs.
  PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 \
    P perl "$1/workload.pl" "$(cat "$1/scale")"
}

# --- gcc ------------------------------------------------------------------
# A generated C file of a few thousand lines per scale unit: structs, many
# functions, a big switch; compiled at -O2 (and once more with -g), linked,
# run.  Object files, assembly and executable must be byte-identical.
gen_gcc() {
  awk -v nf=$((350 * $2)) -f "$PRELOAD_HERE/gen_c.awk" >"$1/gen.c"
}
run_gcc() {
  P gcc -O2 -save-temps=obj -c "$1/gen.c" -o gen.o
  P gcc -O2 gen.o -o gen
  P gcc -O1 -g -fdebug-prefix-map="$PWD"=. -c "$1/gen.c" -o gen_g.o
  sha256sum gen.s gen.o gen gen_g.o
  wc -l <gen.s
  P ./gen
}

# --- git ------------------------------------------------------------------
# A repository built by a few hundred commits of deterministic content with
# fixed identity and dates, so every hash is the same in every run.
gen_git() {
  echo $((300 * $2)) >"$1/commits"
}
run_git() {
  local n c k i d f base=1700000000
  n=$(cat "$1/commits")
  export GIT_AUTHOR_NAME="Umpa Test" GIT_AUTHOR_EMAIL="test@umpa.invalid"
  export GIT_COMMITTER_NAME="Umpa Test" GIT_COMMITTER_EMAIL="test@umpa.invalid"
  P git init -q -b main repo
  cd repo || return 1
  P git config gc.auto 0
  P git config gc.autoDetach false
  P git config core.autocrlf false
  P git config commit.gpgSign false
  mkdir -p d0 d1 d2 d3 d4 d5 d6 d7
  for ((c = 1; c <= n; c++)); do
    for ((k = 0; k < 4; k++)); do
      d=d$(((c * 7 + k * 3) % 8))
      f=$d/f$(((c * 13 + k * 5) % 37)).txt
      {
        for ((i = 0; i < 3 + (c + k) % 9; i++)); do
          printf 'commit %d line %d value %d %s\n' "$c" "$i" \
            $(((c * 2654435761 + i * 40503 + k) % 1000003)) "$f"
        done
      } >>"$f"
    done
    # Rewrite a file now and then, so that blobs shrink as well as grow.
    if ((c % 7 == 0)); then
      f=d$((c % 8))/f$((c % 37)).txt
      [ -f "$f" ] && { head -n 5 "$f" >"$f.tmp"; mv "$f.tmp" "$f"; }
    fi
    if ((c % 23 == 0)); then
      f=d$((c % 8))/f$(((c * 3) % 37)).txt
      [ -f "$f" ] && P git mv "$f" "d$(((c + 1) % 8))/moved$c.txt"
    fi
    if ((c % 31 == 0)); then
      f=d$(((c + 3) % 8))/f$(((c * 5) % 37)).txt
      [ -f "$f" ] && P git rm -q "$f"
    fi
    P git add -A
    GIT_AUTHOR_DATE="@$((base + c * 3600)) +0000" \
      GIT_COMMITTER_DATE="@$((base + c * 3600 + 60)) +0000" \
      P git commit -q -m "commit $c" -m "Touches $((c % 8)) and $(((c * 7) % 8))."
    ((c % 50 == 0)) && P git tag "v$((c / 50))"
  done
  P git gc -q
  P git fsck --full --strict --no-progress
  P git rev-parse HEAD 'HEAD^{tree}'
  P git rev-list --count HEAD
  P git log --stat --format='%H %an %ad %s' --date=iso-strict
  P git log -p -n 20 --format=%H
  P git diff --stat v1 HEAD
  P git blame -s -- "$(git ls-files d3 | head -n 1)"
  P git shortlog -sn HEAD
  P git describe --tags
  P git archive --format=tar HEAD | sha256sum
  P git ls-tree -r HEAD
  P git cat-file --batch-all-objects --batch-check
}

# --- sqlite ---------------------------------------------------------------
gen_sqlite() {
  awk -v scale="$2" -f "$PRELOAD_HERE/gen_sql.awk" >"$1/workload.sql"
}
run_sqlite() {
  P sqlite3 -bail -batch test.db <"$1/workload.sql"
}

# --- sort -----------------------------------------------------------------
# About 58 MB of seeded lines per scale unit: a word, a number, a hex field.
# Lines repeat (drawn from fewer distinct values) so sort -u has work to do;
# every order is total (ties are whole-line ties), so outputs are unique.
gen_sort() {
  awk -v n=$((1200000 * $2)) -f "$PRELOAD_HERE/gen_sort.awk" >"$1/lines.txt"
}
run_sort() {
  local in=$1/lines.txt tab=$'\t'
  mkdir -p tmp
  P sort -T tmp "$in" | sha256sum
  P sort -T tmp -n -t "$tab" -k2,2 -S 16M "$in" | sha256sum
  P sort -T tmp -u "$in" | sha256sum
  P sort -T tmp -u "$in" | wc -l
  P sort -T tmp -t "$tab" -k3,3 -k2,2nr --parallel=2 "$in" | sha256sum
}

# --- awk ------------------------------------------------------------------
# The system's awk (mawk on Debian) over 200,000 of sort's lines per scale
# unit (about 10 MB): word counts in an associative array, a string built
# by appending to it line after line (the usual way an awk script collects
# output; each append allocates the longer string and frees the old one),
# an array filled with sprintf'd strings and half deleted, and gsub/split.
gen_awk() {
  awk -v n=$((200000 * $2)) -f "$PRELOAD_HERE/gen_sort.awk" >"$1/lines.txt"
  echo $((20000 * $2)) >"$1/appends"
}
run_awk() {
  # Each program on one line: P logs its first words, one line a command.
  local in=$1/lines.txt count append churn split
  count='{ for (i = 1; i <= NF; i++) c[$i]++ } END { for (w in c) print c[w], w }'
  append='NR <= n { x = x $1 "," $3 } END { print length(x), substr(x, 1000, 40) }'
  churn='BEGIN { for (i = 0; i < 300000; i++) a[i] = sprintf("%x-%d", i, i * i);'
  churn+=' for (i = 0; i < 300000; i += 2) delete a[i];'
  churn+=' for (k in a) n += length(a[k]); print n }'
  split='{ gsub(/[aeiou]/, "_"); t += split($0, f, "_") } END { print t }'
  P awk "$count" "$in" | sort | sha256sum
  P awk -v n="$(cat "$1/appends")" "$append" "$in"
  P awk "$churn"
  P awk "$split" "$in"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -u
  preload_env
  case "${1:-}" in
    run)
      [ $# -ge 3 ] || { echo "usage: $0 run W INDIR [LIB]" >&2; exit 2; }
      PRELOAD=${4:-}
      "run_$2" "$3"
      ;;
    gen)
      [ $# -eq 4 ] || { echo "usage: $0 gen W INDIR SCALE" >&2; exit 2; }
      "gen_$2" "$3" "$4"
      ;;
    *)
      echo "usage: $0 run W INDIR [LIB] | gen W INDIR SCALE" >&2
      exit 2
      ;;
  esac
fi
