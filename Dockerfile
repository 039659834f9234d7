# perisco image: the agent binary (with its eBPF programs embedded) on a slim Debian.
#
#   docker build -t ghcr.io/perisco/perisco:0.1.0 .
#
# The build stage uses the project's own set-up script for the kernel-side toolchain
# (scripts/setup.d/10-ebpf.sh: nightly rust-src, the matching LLVM and bpf-linker), the same
# one CI runs, so the image builds the way the tests do. The other areas' scripts only
# install test servers and tools, and are left out.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The nightly that aya-build compiles the eBPF programs with, pinned (a newer nightly changes
# the LLVM major under bpf-linker). rustc 1.97.0-nightly (e50aa6fba 2026-05-19) is the
# nightly dated the next day. 10-ebpf.sh calls it `+nightly`; rustup refuses "nightly" as a
# custom link name, so the dated toolchain directory gets the channel's name as a symlink.
ARG NIGHTLY=nightly-2026-05-20
RUN rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src \
 && host="$(rustc -vV | sed -n 's/^host: //p')" \
 && ln -s "$RUSTUP_HOME/toolchains/$NIGHTLY-$host" "$RUSTUP_HOME/toolchains/nightly-$host" \
 && rustc +nightly -vV
COPY scripts scripts
RUN bash scripts/setup.d/10-ebpf.sh
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
