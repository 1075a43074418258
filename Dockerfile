# Builds the keyledger binary. Used by docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p api --bin keyledger

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/keyledger /usr/local/bin/keyledger
ENV KEYLEDGER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["keyledger"]
CMD ["serve"]
