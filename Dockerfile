# Images of docker-compose.yml, from one build:
#   target `migrate` (the default): runs `notify-db-migrations upgrade` against
#     SQLALCHEMY_DATABASE_URI (the shipped migration binary, migrations/src/bin: the migration set
#     compiled in, over the command line of crates/migrate-cli; also `current`, `history`,
#     `check`, `doctor`, ...), then exits;
#   target `service`: examples/service, the example API built on notify-db, on port 6011.
# Build: docker build -t notify-db-migrate:local .
#        docker build --target service -t notify-db-example-service:local .
# (docker-compose.yml builds both for you.)
#
# Only the paths the build needs are copied (BuildKit then sends nothing else, target/ included);
# every workspace member must be there for cargo to load the workspace, though only the two
# shipped binaries are built. xtask/tests/compose.rs checks that every member is copied here.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY migrations migrations
COPY xtask xtask
COPY bench bench
COPY examples examples
COPY tests tests
# --locked: the image builds exactly the dependency versions of the committed Cargo.lock.
RUN cargo build --release --locked -p notify-db-migrations --features notify-db-migrations/cli -p notify-db-example-service

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /src notify
# The same paths as in the build stage: the binaries find config/ and migrations/ (where a run
# against notification_api records the head revision) where they were built.
WORKDIR /src
COPY --chown=notify:notify config /src/config
COPY --chown=notify:notify migrations /src/migrations
ENV NOTIFY_CONFIG_DIR=/src/config \
    NOTIFY_ENVIRONMENT=production
USER notify

FROM runtime AS service
COPY --from=build /src/target/release/notify-db-example-service /usr/local/bin/notify-db-example-service
ENV LISTEN_ADDR=0.0.0.0:6011
EXPOSE 6011
ENTRYPOINT ["notify-db-example-service"]

FROM runtime AS migrate
COPY --from=build /src/target/release/notify-db-migrations /usr/local/bin/notify-db-migrations
ENTRYPOINT ["notify-db-migrations"]
CMD ["upgrade"]
