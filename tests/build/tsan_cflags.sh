#!/usr/bin/env bash
# A project that builds reki's sources with -fsanitize=thread in its own
# CFLAGS (not through REKI_SANITIZE) must get a TSan-correct library that
# compiles under -Werror: reki detects TSan from the compiler
# (__SANITIZE_THREAD__ / __has_feature) instead of relying on REKI_TSAN.
# usage: tsan_cflags.sh CC REPO_ROOT
set -euo pipefail
cc=$1
root=$2
# shellcheck disable=SC2046 # pkg-config prints a word list
flags=(-std=c11 -O2 -fsanitize=thread -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Werror -D_GNU_SOURCE -D_LGPL_SOURCE -DREKI_BUILDING
    -I"$root/include" -I"$root/lib" $(pkg-config --cflags liburcu-bp ck))
n=0
for src in "$root"/lib/core/*.c "$root"/lib/runtime/*.c "$root"/lib/registry/*.c; do
    "$cc" "${flags[@]}" -c -o /dev/null "$src"
    n=$((n + 1))
done
echo "tsan_cflags: $n sources compiled with -fsanitize=thread -Werror"
