#!/usr/bin/env bash
# Install everything natshttp needs to build, test and run its demo on
# Debian 12. Safe to run again: when every package is already installed it
# does nothing (and needs no network).
#
# Run as root, or as a user who may use sudo.
#
# Environment:
#   NATSHTTP_SKIP_APT=1    skip the apt step entirely
#   NATSHTTP_FORCE_APT=1   run apt-get update/install even if all is installed
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev     # LeakSanitizer and libFuzzer with clang
  libnats-dev nats-server      # NATS client library and the real broker
  libmicrohttpd-dev            # the gateway's HTTP server
  libcurl4-openssl-dev         # the upstream HTTP client of `serve --upstream`
  libcmocka-dev                # unit tests
  libssl-dev openssl ca-certificates
  curl python3 nginx           # real HTTP peers in the end-to-end tests
  nix-bin                      # the real Nix client (e2e tests, demo)
  git jq
)

say() { printf 'setup: %s\n' "$*"; }

if [[ "${NATSHTTP_SKIP_APT:-0}" == 1 ]]; then
  say "NATSHTTP_SKIP_APT=1: not installing packages"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "apt-get not found; this script supports Debian 12 only" >&2
  exit 1
fi
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  os_id=$(. /etc/os-release && printf '%s %s' "${ID:-?}" "${VERSION_ID:-?}")
  if [[ "$os_id" != "debian 12" ]]; then
    say "warning: written for Debian 12, this is ${os_id}; trying anyway" >&2
  fi
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 && "${NATSHTTP_FORCE_APT:-0}" != 1 ]]; then
  say "all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  say "not root and sudo is not available; run this script as root" >&2
  exit 1
fi

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive
     apt-get -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)

if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing: ${missing[*]}"
fi
"${apt[@]}" -qq update
"${apt[@]}" -qq install -y --no-install-recommends "${packages[@]}" >/dev/null
say "done"
