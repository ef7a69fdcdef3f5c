#!/bin/sh
# Entry point of the PostgreSQL image, both the one `cargo xtask images` builds and Nix's
# (nix/images.nix, which runs it under bash). It takes the settings the compose files give the
# database (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA and a `postgres ...` command),
# as the official image does, so the compose files run with either image.
set -eu

# Options alone (`-c name=value ...`) are options for the server.
if [ "${1#-}" != "${1:-}" ]; then
    set -- postgres "$@"
fi
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres-entrypoint: POSTGRES_PASSWORD is empty; refusing to create a cluster nobody can log into" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    # Local socket connections are trusted (they come from inside the container); over TCP
    # the password is required.
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    # The replicas connect from other containers' addresses on a bridge network.
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\";" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "postgres-entrypoint: created cluster in $PGDATA with database $database" >&2
fi

exec "$@"
