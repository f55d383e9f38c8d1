# verifyd in a container (docs/packaging.md, "Docker"). Not built in this project's CI, which
# cannot pull base images.
#
#   docker build -t verifyd .
#   docker run -d --name verifyd --stop-timeout 45 -p 127.0.0.1:8080:8080 \
#       -v verifyd-data:/var/lib/verifyd verifyd
#   docker logs verifyd        # the first API key, printed once on the first start
#
# The image serves the packaged sample configuration (packaging/verifyd.toml: every message to
# the inbox, which shows codes in clear) on 0.0.0.0:8080 inside the container, so publish the
# port on the host's loopback only, as above. For real gateways mount your own file over
# /etc/verifyd/verifyd.toml (read-only) and pass its secrets as environment variables.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p verifyd --bin verifyd

FROM debian:bookworm-slim
# espeak-ng: SIP calls read codes with it. ca-certificates: HTTPS gateways (Twilio, Vonage, …).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates espeak-ng \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system verifyd \
    && useradd --system --gid verifyd --home-dir /var/lib/verifyd --no-create-home \
        --shell /usr/sbin/nologin verifyd \
    && install -d -o verifyd -g verifyd -m 0750 /var/lib/verifyd
COPY --from=build /src/target/release/verifyd /usr/bin/verifyd
COPY packaging/verifyd.toml /etc/verifyd/verifyd.toml

# Every command reads the configuration from VERIFYD_CONFIG; VERIFYD_LISTEN wins over the
# file's loopback address, so that the published port reaches the server.
ENV VERIFYD_CONFIG=/etc/verifyd/verifyd.toml \
    VERIFYD_LISTEN=0.0.0.0:8080
USER verifyd
WORKDIR /var/lib/verifyd
# The database and its secret key: keep them on a volume, and back them up together.
VOLUME /var/lib/verifyd
EXPOSE 8080
# SIGTERM lets requests and sends in progress finish (up to about 30 s): give `docker stop`
# more than its default 10 s (--stop-timeout 45, or compose's stop_grace_period: 45s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/verifyd"]
CMD ["serve"]
