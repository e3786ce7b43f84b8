# syntax=docker/dockerfile:1
# plugrpc host image: `docker build -t plugrpc:dev .` (see docs/DEPLOY.md).
#
# Builder: the toolchain rust-toolchain.toml pins (1.95), the workspace as Cargo.lock
# locks it. The build script compiles the vendored protos with protox (pure Rust): no
# protoc needed. The cache mounts keep crates and incremental artefacts between builds;
# the binary is copied out of the target cache in the same step.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p plugrpc --locked \
 && install -D -m 0755 target/release/plugrpc /out/plugrpc

# Runtime: glibc and libgcc (the binary is dynamically linked against them), no shell,
# no package manager, user nonroot (65532). The host writes only to its plugins, data and
# cache folders: mount them writable (emptyDir) and run with a read-only root filesystem.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/plugrpc /usr/local/bin/plugrpc
USER 65532:65532
ENV XDG_CACHE_HOME=/var/cache
# 50051: gRPC (and gRPC-Web, Connect, HTTP/JSON); 9901: admin (/healthz, /readyz,
# /metrics, /plugins).
EXPOSE 50051 9901
ENTRYPOINT ["/usr/local/bin/plugrpc"]
CMD ["serve", \
     "--config", "/etc/plugrpc/plugrpc.toml", \
     "--plugins", "/var/lib/plugrpc/plugins", \
     "--data", "/var/lib/plugrpc/data", \
     "--listen", "0.0.0.0:50051", \
     "--admin", "0.0.0.0:9901", \
     "--log-format", "json"]
