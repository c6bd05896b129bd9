# syntax=docker/dockerfile:1
# Multi-stage build of the voxbridge binary.
#   docker build -t voxbridge .
#   docker run --rm voxbridge --help

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config cmake libopus-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin voxbridge

FROM debian:bookworm-slim
# libopus0: Opus codec at run time; espeak-ng: local text-to-speech; ca-certificates: TLS to providers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 espeak-ng ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/voxbridge voxbridge
COPY --from=build /src/target/release/voxbridge /usr/local/bin/voxbridge
COPY config /etc/voxbridge
USER voxbridge
WORKDIR /var/lib/voxbridge
ENTRYPOINT ["/usr/local/bin/voxbridge"]
CMD ["--help"]
