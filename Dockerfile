# The image of docker-compose.yml's `migrate` service: runs `xtask migrate upgrade` against
# SQLALCHEMY_DATABASE_URI (the migrations are compiled into the binary), then exits.
# Build: docker build -t notify-db-migrate:local .   (docker-compose.yml builds it for you)
#
# Only the paths the build needs are copied (BuildKit then sends nothing else, target/ included).
# xtask/tests/compose.rs checks that every workspace member is copied here.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY migrations migrations
COPY xtask xtask
COPY examples examples
RUN cargo build --release --locked -p xtask

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /src notify
# The same paths as in the build stage: the binary finds config/ and migrations/ (where a run
# against notification_api records the head revision) where it was built.
WORKDIR /src
COPY --from=build /src/target/release/xtask /usr/local/bin/xtask
COPY --chown=notify:notify config /src/config
COPY --chown=notify:notify migrations /src/migrations
ENV NOTIFY_CONFIG_DIR=/src/config \
    NOTIFY_ENVIRONMENT=production
USER notify
ENTRYPOINT ["xtask"]
CMD ["migrate", "upgrade"]
