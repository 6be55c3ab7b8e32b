#!/usr/bin/env bash
# Check that the C sources under lib/ and include/ match .clang-format.
# Lists every file that differs and exits 1; exits 77 (skipped) when
# clang-format is not installed.  Files named in format-exempt.txt (one path
# per line, '#' starts a reason) are not checked.
# usage: check-format.sh [REPO_ROOT]   (default: this script's repository)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
exempt_file=$(cd "$(dirname "$0")" && pwd)/format-exempt.txt

# Formatting differs between clang-format releases; the style is tuned for 14.
fmt=
for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1; then fmt=$c; break; fi
done
if [ -z "$fmt" ]; then
    echo "format check skipped: clang-format not installed (apt-get install clang-format-14)"
    exit 77
fi

exempt=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$exempt_file" 2>/dev/null || true)
cd "$root"
mapfile -t files < <(find lib include -type f \( -name '*.c' -o -name '*.h' \) | sort)
bad=()
checked=0
for f in "${files[@]}"; do
    if grep -qxF "$f" <<<"$exempt"; then
        continue
    fi
    checked=$((checked + 1))
    if ! "$fmt" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
        bad+=("$f")
    fi
done

if [ "${#bad[@]}" -gt 0 ]; then
    echo "not formatted per .clang-format ($("$fmt" --version | sed 's/.*version //')):"
    printf '  %s\n' "${bad[@]}"
    echo "fix with: $fmt -i ${bad[*]}"
    exit 1
fi
echo "$checked files under lib/ and include/ match .clang-format"
