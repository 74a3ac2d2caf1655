# wpgate container image.
#
# Build (needs a registry for the base images):
#   docker build -t wpgate .
# Build the runtime image around a binary built on the host, on a base of your own
# (how CI does it, with no registry: deploy/container-smoke):
#   docker build --target prebuilt --build-arg RUNTIME_IMAGE=local/debian:bookworm \
#     -t wpgate CONTEXT_WITH_wpgate_BINARY
#
# Run (SQLite store in a volume, keyring from a secret store):
#   wpgate keyring init > keyring.toml        # once; keep it in your secret store
#   docker run -d --name wpgate --read-only -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -e WPGATE_KEYRING="$(cat keyring.toml)" -v wpgate-data:/var/lib/wpgate wpgate
#
# WARNING: the image listens for the admin API (/admin/v1, /metrics, /healthz) on all of
# the container's interfaces (WPGATE_LISTEN__ADMIN=0.0.0.0:9090 below), so that health
# checks and Prometheus can reach it from outside the container. Publish it only on the
# host's loopback (as above) or a private network, never to the internet; admin calls
# still need an admin token, but /metrics and /healthz do not.

ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The runtime: CA certificates for https upstreams, a non-root user, nothing else.
FROM ${RUNTIME_IMAGE} AS runtime-base
# ca-certificates is not pinned: it must follow Debian's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 wpgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/wpgate --no-create-home wpgate \
    && mkdir -p /var/lib/wpgate \
    && chown wpgate:wpgate /var/lib/wpgate \
    && chmod 0700 /var/lib/wpgate
ENV WPGATE_DATA_DIR=/var/lib/wpgate \
    WPGATE_LISTEN__PROXY=0.0.0.0:8080 \
    WPGATE_LISTEN__ADMIN=0.0.0.0:9090
WORKDIR /var/lib/wpgate
# The SQLite store and (without WPGATE_KEYRING) the generated keyring: the only path
# wpgate writes, so the root filesystem can be read-only.
VOLUME ["/var/lib/wpgate"]
EXPOSE 8080 9090
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["wpgate", "healthcheck"]
ENTRYPOINT ["wpgate"]
CMD ["serve"]

# A binary built outside (CI's own build): `wpgate` at the root of the build context.
FROM runtime-base AS prebuilt
COPY wpgate /usr/local/bin/wpgate

# The default: build from source.
FROM ${BUILD_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The manifest names the test binary, so its sources must be present to build at all.
COPY tests ./tests
RUN cargo build --release --locked --bin wpgate

FROM runtime-base AS runtime
COPY --from=build /src/target/release/wpgate /usr/local/bin/wpgate
