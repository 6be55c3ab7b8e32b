#!/usr/bin/env bash
# The library must export exactly the functions its headers mark REKI_API:
# nothing internal leaks (symbols are hidden by default) and nothing public is
# missing.  Names starting with "__" belong to the compiler runtime
# (sanitizers) and are ignored.
# usage: exports.sh LIBRARY_FILE HEADER...
set -euo pipefail
lib=$1
shift

expected=$(sed -n 's/^REKI_API[^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$@" | sort -u)
[ -n "$expected" ] || { echo "no REKI_API declarations found in $*" >&2; exit 1; }

case "$lib" in
    *.a)
        # Defined GLOBAL/WEAK symbols of default visibility across the members.
        actual=$(readelf -sW "$lib" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $6 == "DEFAULT" \
                 && $7 != "UND" && $4 != "FILE" && $4 != "SECTION" && NF >= 8 {print $8}')
        ;;
    *)
        actual=$(nm -D --defined-only "$lib" | awk 'NF >= 3 {print $3}')
        ;;
esac
actual=$(printf '%s\n' "$actual" | sed 's/@.*//' | grep -v -e '^__' -e '^$' -e '^_init$' -e '^_fini$' \
         | sort -u || true)

extra=$(comm -13 <(printf '%s\n' "$expected") <(printf '%s\n' "$actual"))
missing=$(comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$actual"))
status=0
if [ -n "$extra" ]; then
    printf 'exported but not REKI_API (should be static or hidden):\n%s\n' "$extra" >&2
    status=1
fi
if [ -n "$missing" ]; then
    printf 'declared REKI_API but not exported by %s:\n%s\n' "$lib" "$missing" >&2
    status=1
fi
[ "$status" -ne 0 ] || echo "$(printf '%s\n' "$expected" | wc -l) public functions exported, nothing else"
exit "$status"
