# syntax=docker/dockerfile:1
# iocd, the Da Nang IOC streaming backend: `docker build -t iocd .`
# Used by docker-compose.yml for the `iocd`, `simulator` and `simulator-kafka` services.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# rdkafka builds its bundled librdkafka (its `configure` and `make`, no cmake) with gcc, make,
# perl and python3, and links zlib (zlib1g-dev; found through pkg-config). The rust image has
# most of these already; installing them explicitly keeps the build from depending on that. The
# runtime image needs only libz, which debian:bookworm-slim has.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl python3 pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The caches survive between builds (BuildKit); the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p iocd --locked \
 && install -D -m 0755 target/release/iocd /out/iocd

# ---- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 iocd \
 && useradd --system --uid 10001 --gid iocd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin iocd \
 && install -d -o iocd -g iocd -m 0700 /var/lib/iocd
COPY --from=builder /out/iocd /usr/local/bin/iocd
# A default configuration for the compose network; docker-compose.yml mounts the same file over
# it so that it can be edited without a rebuild.
COPY deploy/iocd.toml /etc/iocd/iocd.toml
# Alert state and the webhook outbox (alerts.state_dir in deploy/iocd.toml).
VOLUME /var/lib/iocd
USER iocd:iocd
EXPOSE 8080
# iocd shuts down gracefully (drain, flush to ClickHouse, last acks) on SIGINT (Ctrl-C); make
# `docker stop` send that rather than SIGTERM.
STOPSIGNAL SIGINT
ENTRYPOINT ["iocd"]
CMD ["run", "--config", "/etc/iocd/iocd.toml"]
