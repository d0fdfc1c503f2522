# Builds both binaries: outbox-tailer (the relay) and outbox-app (the example service).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p outbox-tailer -p outbox-app

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 outbox
COPY --from=build /src/target/release/outbox-tailer /src/target/release/outbox-app /usr/local/bin/
COPY migrations /migrations
USER outbox
ENTRYPOINT ["outbox-tailer"]
CMD ["--help"]
