#!/usr/bin/env bash
# Setup for the ebpf_socket source (area `ebpf`): the toolchain that builds probes/ebpf
# (nightly rust-src, libLLVM matching the nightly's LLVM major, bpf-linker built against it)
# and the servers/clients its tests and benchmark use. Idempotent and fast when present.
# Never updates or installs toolchains: a new nightly would change the LLVM major.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"

# 1. rust-src for the image's nightly (build-std=core for bpfel-unknown-none).
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "10-ebpf: no nightly toolchain in this image; the eBPF programs need one" >&2
  exit 1
fi
sysroot="$(rustc +nightly --print sysroot)"
if [[ ! -d "$sysroot/lib/rustlib/src/rust/library/core" ]]; then
  rustup component add rust-src --toolchain nightly
fi

# 2. libLLVM with the nightly's LLVM major, and bpf-linker linked against it.
llvm_major="$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
if [[ -z "$llvm_major" ]]; then
  echo "10-ebpf: cannot read the LLVM version from 'rustc +nightly -vV'" >&2
  exit 1
fi

# Debian package -> a file it installs (cheaper than asking dpkg).
declare -A want=(
  ["llvm-${llvm_major}-dev"]="/usr/lib/llvm-${llvm_major}/lib/libLLVM.so"
  [nginx-light]=/usr/sbin/nginx
  [nghttp2-server]=/usr/sbin/nghttpd
  [nghttp2-client]=/usr/bin/nghttp
  [python3-grpcio]=/usr/lib/python3/dist-packages/grpc/__init__.py
  [python3-grpc-tools]=/usr/lib/python3/dist-packages/grpc_tools/protoc.py
  [curl]=/usr/bin/curl
  [wrk]=/usr/bin/wrk
  [libcap2-bin]=/usr/sbin/capsh
  [iproute2]=/usr/bin/ip
)
# ./scripts/run.sh (PERISCO_SETUP=run) needs only the build toolchain, not the test servers.
if [[ "${PERISCO_SETUP:-test}" == run ]]; then
  want=(["llvm-${llvm_major}-dev"]="/usr/lib/llvm-${llvm_major}/lib/libLLVM.so")
fi
missing=()
for pkg in "${!want[@]}"; do
  [[ -e "${want[$pkg]}" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bpf-linker: rebuilt when missing or linked against another LLVM major.
stamp="$CARGO_BIN/.bpf-linker-llvm"
if ! command -v bpf-linker >/dev/null 2>&1 || [[ "$(cat "$stamp" 2>/dev/null)" != "$llvm_major" ]]; then
  LLVM_PREFIX="/usr/lib/llvm-${llvm_major}" \
    cargo install bpf-linker --no-default-features --features "llvm-${llvm_major}" --locked --force
  echo "$llvm_major" >"$stamp"
fi

# 3. tracefs: syscall tracepoints are attached by the ids it lists (the source also tries to
#    mount it itself, but a test machine should have it up front).
if [[ ! -d /sys/kernel/tracing/events ]] && [[ ! -d /sys/kernel/debug/tracing/events ]]; then
  mount -t tracefs nodev /sys/kernel/tracing || echo "10-ebpf: could not mount tracefs" >&2
fi
