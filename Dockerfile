# Build stage: the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin openhqm

# Run stage: a slim image, an unprivileged user, a health check.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/openhqm /usr/local/bin/openhqm
USER 65532:65532
EXPOSE 8000
# Docker's default seccomp profile blocks io_uring; the broker falls back to epoll by itself.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["/usr/local/bin/openhqm"]
