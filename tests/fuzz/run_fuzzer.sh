#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a temporary copy of its seed
# corpus (the committed corpus is never written to). Registered as a CTest
# test by tests/fuzz/fuzz.cmake in a -DNATSHTTP_FUZZ=ON build.
#
#   run_fuzzer.sh FUZZER CORPUS_DIR SECONDS ARTIFACT_DIR [DICT]
#
# Fails (non-zero) on any crash, leak, failed invariant, sanitizer report,
# per-input timeout or out-of-memory; the input that caused it is written to
# ARTIFACT_DIR (crash-*, leak-*, timeout-*, oom-*).
set -euo pipefail

fuzzer=$1 corpus=$2 seconds=$3 artifacts=$4 dict=${5:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/natshttp-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -R "$corpus"/. "$work/"
mkdir -p "$artifacts"

# Slow unwinding reaches into libnats (built without frame pointers), so that
# lsan.supp can name the nats.c function a leak comes from.
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# The library's debug log is on, so its log lines are fuzzed too (a use after
# free in one was found that way); -close_fd_mask=2 discards the target's
# stderr, libFuzzer's and the sanitizers' reports still show.
export NATSHTTP_FUZZ_LOG=3
args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -max_len=16384 -close_fd_mask=2
      -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$artifacts/")
if [[ -n "$dict" ]]; then
  args+=(-dict="$dict")
fi
printf 'fuzz: %s for %ss on a copy of %s (%s inputs)\n' "$(basename "$fuzzer")" "$seconds" \
  "$corpus" "$(find "$work" -type f | wc -l)"
status=0
"$fuzzer" "${args[@]}" "$work" || status=$?
exit "$status"
