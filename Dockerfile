# wpgate container image. Build: docker build -t wpgate .
# Run:  docker run -p 8080:8080 -e WPGATE_LISTEN__PROXY=0.0.0.0:8080 \
#         -e WPGATE_KEYRING="$(cat keyring.toml)" -v wpgate-data:/var/lib/wpgate wpgate
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin wpgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/wpgate --create-home wpgate
COPY --from=build /src/target/release/wpgate /usr/local/bin/wpgate
USER wpgate
WORKDIR /var/lib/wpgate
ENV WPGATE_DATA_DIR=/var/lib/wpgate
EXPOSE 8080
ENTRYPOINT ["wpgate"]
CMD ["serve"]
