#!/usr/bin/env bash
# Setup for the enrich transform (area `enrich`): the kmock Kubernetes API emulator (PyPI)
# that testutil/kmock_server.py wraps. Idempotent; fast when present.
set -euo pipefail
# Test-only step: skipped by ./scripts/run.sh (PERISCO_SETUP=run), which only builds and runs.
[[ "${PERISCO_SETUP:-test}" == run ]] && exit 0
export DEBIAN_FRONTEND=noninteractive

py=python3
if "$py" -c 'import kmock' >/dev/null 2>&1; then
  exit 0
fi
if ! "$py" -m pip --version >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-pip
fi
# A Debian system python refuses pip installs (PEP 668) unless told; a pyenv python does not.
"$py" -m pip install -q --disable-pip-version-check 'kmock>=0.8,<0.9' 2>/dev/null \
  || "$py" -m pip install -q --disable-pip-version-check --break-system-packages 'kmock>=0.8,<0.9'
"$py" -c 'import kmock'
