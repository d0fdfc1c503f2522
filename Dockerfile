# syntax=docker/dockerfile:1
#
# outbox-tailer (the relay, the default command) and outbox-app (the example service and its
# migrations) in one small image that runs as a numeric non-root user.
#
#   docker build -t outbox-tailer:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm -e OUTBOX_POSTGRES=… -e OUTBOX_KAFKA_BROKERS=… outbox-tailer:0.1.0      # run
#   docker run --rm -e OUTBOX_POSTGRES=… outbox-tailer:0.1.0 status
#   docker run --rm -e OUTBOX_POSTGRES=… --entrypoint outbox-app outbox-tailer:0.1.0 migrate
#
# Bases are pinned to exact tags; pin digests too (`rust:…@sha256:…`) where builds must be
# reproducible bit for bit.

# --- The dependency skeleton: the manifests, Cargo.lock and a stand-in `fn main() { }` for every
# .rs file (not `{}`: find's -exec reserves it).
# Its output changes only when a manifest, the lock file or the set of .rs files changes, so the
# dependency layers below stay cached across source edits (BuildKit keys COPY --from by content).
FROM rust:1.95.0-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN find . -type f ! -name Cargo.toml ! -name Cargo.lock ! -name '*.rs' -delete \
    && find . -type f -name '*.rs' -exec sh -c 'for f; do echo "fn main() { }" > "$f"; done' sh {} +

# --- The build.
FROM rust:1.95.0-bookworm AS build
# rdkafka builds librdkafka (cmake, a C toolchain) and links the system's OpenSSL and zlib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
# The image's binaries carry no symbol table (the tailer: 14 MB instead of 17 MB).
# --build-arg STRIP=none keeps it (function names in perf and panic backtraces); for line
# numbers kept in a separate file, see the note above [profile.release] in Cargo.toml.
ARG STRIP=symbols
ENV CARGO_PROFILE_RELEASE_STRIP=${STRIP}
WORKDIR /src
COPY --from=skeleton /src ./
RUN cargo fetch --locked
# Every dependency, compiled against the stand-ins: the slow part, cached until Cargo.lock or a
# manifest changes.
RUN cargo build --release --locked --offline -p outbox-tailer -p outbox-app
COPY crates ./crates
COPY migrations ./migrations
# The copied sources can be older than the stand-ins' build; touching them makes cargo rebuild
# the workspace's own crates. The version check fails the build if a stand-in got through.
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --offline -p outbox-tailer -p outbox-app \
    && target/release/outbox-tailer --version | grep -q '^outbox-tailer ' \
    && target/release/outbox-app --version | grep -q '^outbox-app ' \
    && mkdir /out \
    && cp target/release/outbox-tailer target/release/outbox-app /out/

# --- The runtime: the binaries, their shared libraries (ldd: libssl3, libcrypto, zlib), CA roots.
FROM debian:bookworm-20261005-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="outbox-tailer" \
      org.opencontainers.image.description="Transactional outbox relay: tails the PostgreSQL WAL (pgoutput) and publishes outbox events to Kafka" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/outbox-tailer/outbox-tailer" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 outbox \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin outbox
COPY --from=build /out/ /usr/local/bin/
COPY migrations /migrations
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/outbox-tailer/
# Metrics, /healthz and /readyz on every interface of the container (off in the binary unless
# asked for); `run` serves them, the other commands ignore the variable.
ENV OUTBOX_METRICS_ADDR=0.0.0.0:9187
EXPOSE 9187
USER 10001:10001
ENTRYPOINT ["outbox-tailer"]
CMD ["run"]
