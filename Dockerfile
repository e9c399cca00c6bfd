# syntax=docker/dockerfile:1
# The one Umpire image: every role is a subcommand (`umpire controller`, `umpire ingest`,
# `umpire evaluator`, and the tools). Build and publish (tag = the chart's appVersion):
#   docker build -t ghcr.io/umpire-dev/umpire:0.1.0 .
#   docker push ghcr.io/umpire-dev/umpire:0.1.0
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 -t … --push .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The `dist` profile: release with fat LTO and one codegen unit, symbols stripped.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p umpire \
    && install -D -m 0755 target/dist/umpire /out/umpire

# Distroless: glibc, CA certificates and tzdata; no shell, no package manager. Its `nonroot`
# user is 65532, which the controller's pod security context also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="umpire" \
      org.opencontainers.image.description="Online evaluation and alerting for LLM apps on Kubernetes" \
      org.opencontainers.image.source="https://github.com/umpire-dev/umpire" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/umpire /usr/local/bin/umpire
USER 65532:65532
ENTRYPOINT ["umpire"]
CMD ["--help"]
