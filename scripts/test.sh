#!/usr/bin/env bash
# Run every test: install what is needed, build, run CTest; then fuzz each
# libFuzzer target for a minute (scripts/fuzz.sh); then build with
# AddressSanitizer + UndefinedBehaviorSanitizer and run CTest again.
#
# Exits non-zero if anything fails. It stops at the first failing step unless
# NATSHTTP_KEEP_GOING=1, in which case the sanitizer run happens even when the
# normal run failed. Nothing is printed after the last CTest run, so the last
# lines of output are CTest's own summary.
#
# Environment: NATSHTTP_SKIP_APT=1 (skip package installation),
# NATSHTTP_KEEP_GOING=1, NATSHTTP_FUZZ_SECONDS (per fuzz target; default 60),
# CTEST_PARALLEL_LEVEL (CTest's own; default 2 here: the suite is mostly
# waiting on sockets and processes, and runs serially in about twice the time),
# and CC / ASAN_OPTIONS / UBSAN_OPTIONS (user values are appended and win).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# CTest's default timeout for tests that set none (e2e tests set their own).
ctest_args=(--output-on-failure --no-tests=error --timeout 600)
export CTEST_PARALLEL_LEVEL="${CTEST_PARALLEL_LEVEL:-2}"

bash scripts/setup.sh

status=0

bash scripts/build.sh "$root/build"
printf '\ntest: ctest in build/\n'
(cd "$root/build" && ctest "${ctest_args[@]}") || status=$?

if [[ $status -ne 0 && "${NATSHTTP_KEEP_GOING:-0}" != 1 ]]; then
  exit "$status"
fi

# libFuzzer targets (tests/fuzz), about a minute each, with ASan + UBSan.
fuzz_status=0
bash scripts/fuzz.sh "${NATSHTTP_FUZZ_SECONDS:-60}" || fuzz_status=$?
if [[ $status -eq 0 ]]; then
  status=$fuzz_status
fi
if [[ $status -ne 0 && "${NATSHTTP_KEEP_GOING:-0}" != 1 ]]; then
  exit "$status"
fi

asan_status=0
bash scripts/build.sh --sanitize "$root/build-asan"
printf '\ntest: ctest in build-asan/ (AddressSanitizer, LeakSanitizer, UBSan)\n'
(
  cd "$root/build-asan"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  exec ctest "${ctest_args[@]}"
) || asan_status=$?

if [[ $status -eq 0 ]]; then
  status=$asan_status
fi
exit "$status"
