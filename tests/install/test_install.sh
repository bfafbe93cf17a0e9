#!/usr/bin/env bash
# Install the build tree into a temporary prefix, then build a consumer
# with find_package(umpa) (shared and static) and with pkg-config, and run
# them.  Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cm/consumer_shared"
"$tmp/cm/consumer_static"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc "$src/tests/install/consumer.c" $(pkg-config --cflags --libs umpa) -o "$tmp/pc"
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/pc"
cc "$src/tests/install/consumer.c" $(pkg-config --cflags umpa) \
   "$tmp/prefix/lib/libumpa.a" -o "$tmp/pc_static"
"$tmp/pc_static"
