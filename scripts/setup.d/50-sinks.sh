#!/usr/bin/env bash
# Setup for the sinks (area `sinks`): the real servers their integration tests start.
# - tansu 0.6.0 (Kafka-protocol broker, Rust): `cargo install` takes 8-15 min on 2 cores,
#   so it runs only when the binary is missing; CI should cache ~/.cargo/bin/tansu.
# - osmem-server (PyPI; the OpenSearch REST API in memory), linked onto PATH.
# - python3 for tests/sink_server.py and tests/es_fault_proxy.py (stdlib only); openssl(1)
#   makes the test CA and server certificate of the http TLS test.
# rdkafka builds its bundled librdkafka with configure/make and needs zlib headers.
# Idempotent; takes well under a second when everything is present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"

# 1. Build tools for librdkafka (rdkafka's default vendored build).
missing=()
for p in zlib1g-dev make gcc g++ python3 openssl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[50-sinks] apt: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Everything below is for the tests; ./scripts/run.sh (PERISCO_SETUP=run) only builds.
[[ "${PERISCO_SETUP:-test}" == run ]] && exit 0

# 2. tansu, pinned; installed once when missing and kept in ~/.cargo/bin (CI: cache that
# binary to skip the 8-15 min build). Only the in-memory storage engine is used.
if ! command -v tansu >/dev/null 2>&1; then
  echo "[50-sinks] installing tansu 0.6.0 (cargo install, 8-15 min; cached afterwards)"
  cargo install tansu --version '=0.6.0' --locked --features dynostore
fi
tansu --version >/dev/null 2>&1 || tansu --help >/dev/null

# 3. osmem-server: the wheel ships a static binary inside the package; put it on PATH.
py=python3
if ! "$py" -c 'import osmem_server' >/dev/null 2>&1; then
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip
  fi
  "$py" -m pip install -q --disable-pip-version-check 'osmem-server==0.1.6' 2>/dev/null \
    || "$py" -m pip install -q --disable-pip-version-check --break-system-packages 'osmem-server==0.1.6'
fi
if ! command -v osmem-server >/dev/null 2>&1; then
  bin="$("$py" -c 'import osmem_server, pathlib; print(pathlib.Path(osmem_server.__file__).parent / "bin" / "osmem-server")')"
  if [ ! -x "$bin" ]; then
    echo "[50-sinks] osmem-server binary not found at $bin" >&2
    exit 1
  fi
  ln -sf "$bin" /usr/local/bin/osmem-server
fi
osmem-server -version >/dev/null
