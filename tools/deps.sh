#!/usr/bin/env bash
# Install what building, testing and benchmarking umpa needs, with apt-get,
# when it is missing.  Usage: tools/deps.sh build|test|bench
set -euo pipefail
need=(cmake gcc make)
case "${1:-build}" in
  test) need+=(pkg-config python3 git sqlite3) ;;
  bench) need+=() ;;
esac
missing=()
for c in "${need[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
# perl-base alone gives the perl command without the modules that the perl
# workload of the tests uses (package perl).
if [ "${1:-}" = test ] &&
  ! perl -Mthreads -MThread::Queue -MDigest::MD5 -e 1 >/dev/null 2>&1; then
  missing+=(perl)
fi
# libc headers come with gcc on Debian; check one anyway.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# apt-get install ARGS..., as root or through sudo, after one index update.
updated=0
apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  if [ $updated = 0 ]; then
    $sudo apt-get update -qq || true
    updated=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends "$@"
}
peers=()
if [ "${1:-}" = bench ]; then
  for p in libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4; do
    dpkg -s "$p" >/dev/null 2>&1 || peers+=("$p")
  done
fi
[ ${#missing[@]} -gt 0 ] && apt_install "${missing[@]}"
# Peers are only compared against; a failure to install one is not fatal.
[ ${#peers[@]} -gt 0 ] && { apt_install "${peers[@]}" || true; }
# CPython's regression tests (the cpython preload test): Debian's python3
# has them in a package of its own.
if [ "${1:-}" = test ] && [ -x /usr/bin/python3 ]; then
  # shellcheck source=../tests/preload/workloads.sh
  . "$(dirname "$0")/../tests/preload/workloads.sh"
  if [ -z "$(preload_cpython)" ]; then
    ver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    apt_install "libpython$ver-testsuite"
  fi
fi
exit 0
