#!/usr/bin/env bash
# natshttp in one command: a local nats-server, `nats-http serve` answering
# from examples/, and `nats-http gateway` turning HTTP into NATS requests.
#
#   bash scripts/demo.sh [--once]
#
# It first installs packages (scripts/setup.sh, needs root or sudo) and builds
# (scripts/build.sh), then starts everything on free loopback ports, fetches
# a page and a Nix cache file through the gateway and with `nats-http request`,
# fetches a store path from that cache with nix when nix is installed, and
# keeps running until Ctrl-C. With --once it exits after the fetches.
# Everything it started is stopped when it exits, however it exits.
#
# Environment:
#   NATSHTTP_SKIP_SETUP=1   do not run setup.sh and build.sh
#   NATSHTTP_BIN=PATH       use this nats-http binary (and do not build)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
subject=demo
once=0

for arg in "$@"; do
  case "$arg" in
    --once) once=1 ;;
    -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) printf 'demo: unknown argument %s (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

if [[ -t 1 ]]; then bold=$'\e[1m'; green=$'\e[32m'; red=$'\e[31m'; off=$'\e[0m'
else bold=''; green=''; red=''; off=''; fi

step() { printf '%s==>%s %s\n' "$bold" "$off" "$*"; }
fail() { printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/natshttp-demo.XXXXXX")
pids=()
names=()

# Show the end of a log file, indented, to explain a failure.
show_log() {
  local name=$1 file=$2
  [[ -s "$file" ]] || return 0
  printf '%s--- last lines of the %s log:%s\n' "$bold" "$name" "$off" >&2
  tail -n 20 "$file" | sed 's/^/    /' >&2
}

running() {
  local pid=$1 stat
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

cleanup() {
  local rc=$? i pid n list
  trap - EXIT INT TERM HUP
  trap '' PIPE            # the reader of our output may be gone; finish anyway
  if [[ ${#pids[@]} -gt 0 ]]; then
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      kill -TERM "${pids[i]}" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
      for ((n = 0; n < 50; n++)); do running "$pid" || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
  fi
  rm -rf "$tmp"
  if [[ ${#pids[@]} -gt 0 ]]; then
    list=$(printf '%s, ' "${names[@]}")
    step "Stopped ${list%, }." 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'printf "\n"; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# start NAME LOG CMD... : run CMD in the background with stderr+stdout in LOG.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

# wait_for NAME LOG PID REGEX [SECONDS]: until REGEX (grep -E) is in LOG.
wait_for() {
  local name=$1 log=$2 pid=$3 regex=$4 secs=${5:-20} n
  for ((n = 0; n < secs * 10; n++)); do
    if grep -Eq -- "$regex" "$log" 2>/dev/null; then return 0; fi
    if ! running "$pid"; then
      show_log "$name" "$log"
      fail "$name exited before it was ready"
    fi
    sleep 0.1
  done
  show_log "$name" "$log"
  fail "$name was not ready after ${secs}s"
}

# --- 1. packages and build ---------------------------------------------------

if [[ "${NATSHTTP_SKIP_SETUP:-0}" != 1 ]]; then
  step "Checking packages (scripts/setup.sh)"
  bash "$root/scripts/setup.sh"
  if [[ -z "${NATSHTTP_BIN:-}" ]]; then
    step "Building nats-http (scripts/build.sh; log in build/demo-build.log)"
    mkdir -p "$root/build"
    if ! bash "$root/scripts/build.sh" >"$root/build/demo-build.log" 2>&1; then
      show_log build "$root/build/demo-build.log"
      fail "the build failed; see build/demo-build.log"
    fi
  fi
fi

bin=${NATSHTTP_BIN:-$root/build/src/cli/nats-http}
[[ -x "$bin" ]] || fail "no nats-http binary at $bin; run: bash scripts/build.sh"
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
[[ -x "$nats_server" ]] || fail "nats-server not found; run: bash scripts/setup.sh"
command -v curl >/dev/null || fail "curl not found; run: bash scripts/setup.sh"

# --- 2. nats-server on free ports ------------------------------------------

step "Starting nats-server on free loopback ports"
start nats-server "$tmp/nats.log" \
  "$nats_server" -a 127.0.0.1 -p -1 -m -1 --ports_file_dir "$tmp"
nats_pid=${pids[-1]}
ports_file="$tmp/nats-server_${nats_pid}.ports"
nats_url=""
for ((n = 0; n < 200; n++)); do
  if [[ -s "$ports_file" ]]; then
    nats_url=$(sed -n 's/.*"nats":\["\([^"]*\)".*/\1/p' "$ports_file")
    [[ -n "$nats_url" ]] && break
  fi
  running "$nats_pid" || { show_log nats-server "$tmp/nats.log"; fail "nats-server exited"; }
  sleep 0.1
done
[[ -n "$nats_url" ]] || { show_log nats-server "$tmp/nats.log"; fail "nats-server did not start"; }
printf '    NATS server: %s\n' "$nats_url"

# --- 3. serve and gateway ------------------------------------------------

step "Starting nats-http serve: subject '$subject', files from examples/"
start "nats-http serve" "$tmp/serve.log" \
  "$bin" serve --subject "$subject" --dir "$root/examples" --server "$nats_url"
wait_for "nats-http serve" "$tmp/serve.log" "${pids[-1]}" ' ready( |$)'

step "Starting nats-http gateway: HTTP -> subject '$subject'"
start "nats-http gateway" "$tmp/gateway.log" \
  "$bin" gateway --listen 127.0.0.1:0 --subject "$subject" --server "$nats_url"
wait_for "nats-http gateway" "$tmp/gateway.log" "${pids[-1]}" \
  '\bready\b.*listening on http://|listening on http://.*\bready\b'
base=$(grep -wE 'ready' "$tmp/gateway.log" | grep -Eo 'listening on http://[^[:space:]]+' \
       | head -n 1 | sed -e 's/^listening on //' -e 's,/$,,')
[[ -n "$base" ]] || fail "could not read the gateway's address from its log"
printf '    Gateway:     %s%s%s\n' "$green" "$base" "$off"

# --- 4. fetch through it ---------------------------------------------------

show_failure_logs() {
  show_log "nats-http gateway" "$tmp/gateway.log"
  show_log "nats-http serve" "$tmp/serve.log"
}

fetch() {
  local path=$1
  printf '\n%s$ curl %s%s%s\n' "$bold" "$base" "$path" "$off"
  if ! curl -fsS --noproxy '*' --max-time 10 -o "$tmp/body" "$base$path"; then
    show_failure_logs
    fail "fetching $path through the gateway failed"
  fi
  cat "$tmp/body"
  [[ -z "$(tail -c 1 "$tmp/body")" ]] || printf '\n'
}

step "Fetching through the gateway (HTTP -> NATS -> files)"
fetch /site/index.html
fetch /cache/nix-cache-info

printf '\n%s$ nats-http request nats+http://%s/cache/nix-cache-info%s\n' "$bold" "$subject" "$off"
if ! NATS_URL="$nats_url" "$bin" request "nats+http://$subject/cache/nix-cache-info" \
     >"$tmp/body" 2>"$tmp/request.log"; then
  show_log "nats-http request" "$tmp/request.log"
  show_failure_logs
  fail "nats-http request failed"
fi
cat "$tmp/body"
[[ -z "$(tail -c 1 "$tmp/body")" ]] || printf '\n'

# --- 5. nix fetches a store path through it ----------------------------------

# The founding use case: examples/cache is a (tiny) Nix binary cache. With nix
# installed (Debian: nix-bin), fetch its store path over NATS into a store of
# our own, with nix's state kept in $tmp so nothing global is touched.
nix_demo() {
  local narinfo store_path nixdir store before n
  narinfo=$(ls "$root"/examples/cache/*.narinfo | head -n 1)
  store_path=$(sed -n 's/^StorePath: //p' "$narinfo")
  nixdir="$tmp/nix"; store="$tmp/nix-store"
  mkdir -p "$nixdir/conf" "$nixdir/cache" "$nixdir/config" "$nixdir/home"
  printf '%s\n' 'sandbox = false' 'experimental-features = nix-command' \
    'substituters =' 'build-users-group =' >"$nixdir/conf/nix.conf"
  before=$(wc -l <"$tmp/gateway.log")
  printf '\n%s$ nix copy --from %s/cache --to %s %s%s\n' "$bold" "$base" "$store" \
    "$store_path" "$off"
  if ! NIX_CONF_DIR="$nixdir/conf" XDG_CACHE_HOME="$nixdir/cache" \
       XDG_CONFIG_HOME="$nixdir/config" HOME="$nixdir/home" \
       nix copy --from "$base/cache" --to "$store" "$store_path" >"$tmp/nix.log" 2>&1; then
    show_log nix "$tmp/nix.log"
    show_failure_logs
    fail "nix could not fetch $store_path through the gateway"
  fi
  sed 's/^/    /' "$tmp/nix.log"
  # The gateway logs a request once its response is out: give it a moment.
  for ((n = 0; n < 20; n++)); do
    tail -n "+$((before + 1))" "$tmp/gateway.log" | grep -q 'access .*method=GET target=/cache/nar/' && break
    sleep 0.1
  done
  printf '    nix asked the gateway (and so NATS) for:\n'
  tail -n "+$((before + 1))" "$tmp/gateway.log" | grep ' access ' | sed -e 's/^.* access /      /'
  printf '    %s is now in %s; it says:\n' "$store_path" "$store"
  sed 's/^/      /' "$store$store_path"
  printf '    nix fetched store path %s through NATS.\n' "$store_path"
}

if command -v nix >/dev/null 2>&1; then
  step "Fetching a Nix store path with nix (HTTP -> NATS -> the binary cache in examples/cache)"
  nix_demo
else
  step "nix is not installed (Debian: nix-bin): skipping the nix fetch"
fi

printf '\n%sIt works.%s Each request above crossed NATS on a subject under %s.\n' \
  "$green" "$off" "'$subject'"

if [[ $once -eq 1 ]]; then
  exit 0
fi

cat <<EOF

Try it yourself while this runs:
  curl $base/site/hello.txt
  curl -I $base/cache/nix-cache-info
  NATS_URL=$nats_url ${bin#"$root"/} request nats+http://$subject/site/hello.txt
  open $base/site/index.html in a browser

Press Ctrl-C to stop.
EOF

while true; do
  for i in "${!pids[@]}"; do
    if ! running "${pids[i]}"; then
      case "${names[i]}" in
        nats-server) show_log nats-server "$tmp/nats.log" ;;
        *serve) show_log "${names[i]}" "$tmp/serve.log" ;;
        *gateway) show_log "${names[i]}" "$tmp/gateway.log" ;;
      esac
      fail "${names[i]} stopped unexpectedly"
    fi
  done
  sleep 1 &
  wait $! || true
done
