#!/usr/bin/env bash
# Setup for the pcap source (area `pcap`): what fixtures/make-fixtures.sh and the
# probes/pcap tests need. Idempotent and fast when everything is present.
set -euo pipefail
# Test-only step: skipped by ./scripts/run.sh (PERISCO_SETUP=run), which only builds and runs.
[[ "${PERISCO_SETUP:-test}" == run ]] && exit 0
export DEBIAN_FRONTEND=noninteractive

# Debian package -> a file it installs (checked instead of asking dpkg, which is slower).
declare -A want=(
  [tshark]=/usr/bin/tshark
  [curl]=/usr/bin/curl
  [nghttp2-client]=/usr/bin/nghttp
  [nghttp2-server]=/usr/sbin/nghttpd
  [python3-grpcio]=/usr/lib/python3/dist-packages/grpc/__init__.py
  [python3-grpc-tools]=/usr/lib/python3/dist-packages/grpc_tools/protoc.py
  [nginx-light]=/usr/sbin/nginx
  [apache2-bin]=/usr/sbin/apache2
  [netcat-openbsd]=/bin/nc.openbsd
)
missing=()
for pkg in "${!want[@]}"; do
  [[ -e "${want[$pkg]}" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cargo-fuzz for the pcap_reader fuzz target (runs on the image's nightly).
if ! command -v cargo-fuzz >/dev/null 2>&1 && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]]; then
  cargo install cargo-fuzz --locked
fi
