#!/usr/bin/env bash
# Every C/C++ source follows .clang-format (clang-format 14 from Debian).
set -euo pipefail
cd "${1:?source root}"
command -v clang-format >/dev/null || { echo "clang-format missing: run tools/install-deps.sh"; exit 1; }
git ls-files '*.c' '*.h' '*.cc' | xargs clang-format --dry-run --Werror
echo "format-check: $(git ls-files '*.c' '*.h' '*.cc' | wc -l) files formatted"
