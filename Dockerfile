# Build stage: the release binary of the openhqm package (the workspace's loadtest is not built).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p openhqm --bin openhqm

# Run stage: a slim image, an unprivileged user, a health check.
FROM debian:bookworm-slim
# ca-certificates: proxy mode's https:// upstreams trust the system's roots; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 openhqm \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin openhqm
COPY --from=build /src/target/release/openhqm /usr/local/bin/openhqm
USER 65532:65532
EXPOSE 8000
# Docker's default seccomp profile blocks io_uring; the broker falls back to epoll by itself.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["/usr/local/bin/openhqm"]
