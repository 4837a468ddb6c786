# syntax=docker/dockerfile:1

# ---- build -------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
RUN mkdir -p src static templates \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
COPY migrations migrations
COPY templates templates
COPY static static
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin chatserver

# ---- run ---------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin chat \
    && mkdir -p /data /etc/chatserver && chown chat:chat /data
COPY --from=build /src/target/release/chatserver /usr/local/bin/chatserver
COPY config/production.toml /etc/chatserver/production.toml
ENV CHAT_CONFIG=/etc/chatserver/production.toml \
    CHAT_BIND=0.0.0.0:8080 \
    CHAT_DATA_DIR=/data \
    RUST_LOG=info
USER chat
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/chatserver", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/chatserver"]
