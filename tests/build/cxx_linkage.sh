#!/usr/bin/env bash
# Compile header_cxx.cpp with a C++ compiler and check that every reki symbol
# it references has C linkage (an unmangled name, as the library defines it).
# usage: cxx_linkage.sh CXX STD INCLUDE_DIR SOURCE OBJECT
set -euo pipefail
cxx=$1 std=$2 inc=$3 src=$4 obj=$5

"$cxx" -std="$std" -pedantic -Wall -Wextra -Werror -I"$inc" -c "$src" -o "$obj"
undef=$(nm -u "$obj" | awk '{print $NF}')
mangled=$(printf '%s\n' "$undef" | grep -E '^_Z.*reki_' || true)
if [ -n "$mangled" ]; then
    printf 'C++-mangled reki references (missing extern "C"?):\n%s\n' "$mangled" >&2
    exit 1
fi
for f in reki_spawn reki_alive reki_send reki_lookup reki_strerror reki_version_string; do
    grep -qx "$f" <<<"$undef" || { echo "no C-linkage reference to $f" >&2; exit 1; }
done
echo "$std: reki.h compiles as C++ and its functions have C linkage"
