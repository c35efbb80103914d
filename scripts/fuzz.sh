#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz with clang (ASan + UBSan +
# libFuzzer, in build-fuzz/) and run each for SECONDS (default 60) on a
# temporary copy of its seed corpus, through CTest (tests fuzz_<name>).
#
#   scripts/fuzz.sh [SECONDS]
#
# Exits non-zero on any crash, leak, sanitizer report or failed invariant;
# the offending input is left in build-fuzz/fuzz-artifacts/<name>/. Add it to
# tests/fuzz/corpus/<name>/ once fixed (see tests/fuzz/README.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -lt 1 ]]; then
  printf 'fuzz.sh: SECONDS must be a positive integer\n' >&2
  exit 2
fi

CC=${FUZZ_CC:-clang} bash "$root/scripts/build.sh" "$root/build-fuzz" -- \
  -DNATSHTTP_FUZZ=ON -DNATSHTTP_FUZZ_SECONDS="$seconds"
printf '\nfuzz: ctest in build-fuzz/ (%ss per target)\n' "$seconds"
cd "$root/build-fuzz"
exec ctest --output-on-failure --no-tests=error -L fuzz
