# Multi-stage build: compile with the Rust toolchain, run on a small Debian base as a non-root user.
# Config comes from /etc/chorus (default.toml + production.toml, CHORUS_ENV=production) and the
# environment (CHORUS__SECTION__KEY: database and Redis URLs and the JWT secret from your secret
# store). Checked by hadolint in k8s/check.
FROM rust:1-bookworm AS build
# The commit `chorus --version` and chorus_build_info report (the build context has no .git):
# docker build --build-arg CHORUS_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG CHORUS_COMMIT=unknown
ENV CHORUS_COMMIT=${CHORUS_COMMIT}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY config config
# The browser/Node SDK's bundle, served at /chorus.js (built in clients/js and checked in).
COPY clients/js/dist/chorus.js clients/js/dist/chorus.js
# Cargo.toml names the bench example, so its source must be present to build anything.
COPY loadtest loadtest
RUN cargo build --release --locked --bin chorus

FROM debian:bookworm-slim
# Debian's security updates replace exact versions; pinning them would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 --user-group chorus
COPY --from=build /src/target/release/chorus /usr/local/bin/chorus
COPY config /etc/chorus
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/chorus/
USER 10001:10001
# production.toml: listen on 0.0.0.0:8080, JSON logs, drain 20 s.
ENV CHORUS_ENV=production
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
# SIGTERM drains: /readyz 503 at once, sessions closed with 1012 over shutdown.drain_ms, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chorus", "--config-dir", "/etc/chorus"]
CMD ["serve"]
