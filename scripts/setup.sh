#!/usr/bin/env bash
# Install everything perisco's build and tests need on a Debian 12 machine with rustup
# (run as root). Idempotent: each step checks first, so a second run takes seconds.
# The per-area steps live in scripts/setup.d/*.sh and run in name order.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# apt_install PKG... — install the Debian packages that are missing (one apt-get update).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: ${missing[*]}"
    if [ ! -f /tmp/.perisco-apt-updated ]; then apt-get update -qq && touch /tmp/.perisco-apt-updated; fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
export -f apt_install log

apt_install pkg-config ca-certificates curl

# PERISCO_SETUP=run (./scripts/run.sh): only what building and running perisco needs;
# the test servers and tools (tansu alone is a 15-30 min build) are left out.
if [[ "${PERISCO_SETUP:-test}" != run ]] && ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  log "$(basename "$step")"
  bash "$step"
done
log "done"
