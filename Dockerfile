# Tandem in a container: `docker build -t tandem .` then
# `docker run -v /etc/tandem:/etc/tandem:ro -v tandem-state:/var/lib/tandem -p 8480:8480 tandem`
# (set `admin.listen = "0.0.0.0:8480"` in the configuration to reach the admin API).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip2 && cargo build --release --locked --bin tandem

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/tandem tandem \
    && mkdir -p /var/lib/tandem && chown tandem /var/lib/tandem
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
USER tandem
VOLUME /var/lib/tandem
EXPOSE 8480
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["serve", "--config", "/etc/tandem/tandem.toml"]
