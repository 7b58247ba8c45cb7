# Multi-stage build: compile with the Rust toolchain, run on a small Debian base as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY config config
COPY loadtest loadtest
RUN cargo build --release --locked --bin chorus

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 chorus
COPY --from=build /src/target/release/chorus /usr/local/bin/chorus
COPY config /etc/chorus
USER 10001
ENV CHORUS__HTTP__BIND=0.0.0.0:8080 CHORUS__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["chorus", "--config-dir", "/etc/chorus"]
CMD ["serve"]
