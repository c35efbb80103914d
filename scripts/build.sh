#!/usr/bin/env bash
# Configure and build natshttp with CMake, using every core.
#
#   scripts/build.sh [--sanitize] [BUILD_DIR] [-- EXTRA_CMAKE_ARGS...]
#
# BUILD_DIR defaults to `build` (or `build-asan` with --sanitize), relative to
# the repository root; a relative BUILD_DIR given on the command line is taken
# relative to the current directory. --sanitize builds with AddressSanitizer
# and UndefinedBehaviorSanitizer (-DNATSHTTP_SANITIZE=ON). $CC is honoured.
set -euo pipefail

usage() {
  sed -n '2,9s/^# \{0,1\}//p' "$0"
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sanitize=OFF
build_dir=""
extra=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --sanitize) sanitize=ON ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) printf 'build.sh: unknown option %s\n' "$1" >&2; usage >&2; exit 2 ;;
    *)
      if [[ -n "$build_dir" ]]; then
        printf 'build.sh: only one BUILD_DIR may be given\n' >&2; exit 2
      fi
      build_dir=$1 ;;
  esac
  shift
done

if [[ -z "$build_dir" ]]; then
  if [[ "$sanitize" == ON ]]; then build_dir="$root/build-asan"; else build_dir="$root/build"; fi
elif [[ "$build_dir" != /* ]]; then
  build_dir="$PWD/$build_dir"
fi

jobs=$(nproc 2>/dev/null || echo 2)

printf 'build: configuring %s (sanitizers %s)\n' "$build_dir" "$sanitize"
cmake -S "$root" -B "$build_dir" -DNATSHTTP_SANITIZE="$sanitize" "${extra[@]}"
printf 'build: compiling with %s jobs\n' "$jobs"
cmake --build "$build_dir" --parallel "$jobs"
printf 'build: done: %s\n' "$build_dir"
