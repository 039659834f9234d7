# perisco image: the agent binary (with its eBPF programs embedded) on a slim Debian.
#
#   docker build -t ghcr.io/perisco/perisco:0.1.0 .
#
# The build stage uses the project's own set-up script for the kernel-side toolchain
# (nightly rust-src, LLVM and a matching bpf-linker), the same one CI runs, so the image
# builds the way the tests do. Only the build-time scripts run here; the test-only ones
# (servers, traffic tools, emulators) are left out.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The nightly that aya-build compiles the eBPF programs with; pinned, see ENVIRONMENT notes
# in docs/ebpf.md (a newer nightly changes the LLVM major under bpf-linker).
ARG NIGHTLY=nightly-2026-05-19
RUN rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
COPY scripts scripts
RUN set -eu; for s in scripts/setup.d/*-ebpf.sh; do if [ -e "$s" ]; then bash "$s"; fi; done
# Sources only: every workspace member, not target directories.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY engine engine
COPY probes probes
COPY transforms transforms
COPY sinks sinks
COPY testutil testutil
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin perisco \
 && cp target/release/perisco /usr/local/bin/perisco

FROM debian:bookworm-slim
# CA roots for sinks that speak TLS with public certificates (the Kubernetes API's CA comes
# from the service account, not from here).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/perisco /usr/local/bin/perisco
# Root inside the container, but only with the capabilities the DaemonSet adds (no
# privileged mode); see docs/deploy.md.
ENTRYPOINT ["/usr/local/bin/perisco"]
CMD ["--config", "/etc/perisco/pipeline.toml", "--watch-config"]
