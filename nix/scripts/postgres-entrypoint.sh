# shellcheck shell=bash
# The PostgreSQL image's entrypoint, with the official image's interface: on first start it
# creates the cluster in $PGDATA with POSTGRES_PASSWORD for the postgres user and the database
# POSTGRES_DB; then it runs the command (`postgres ...`).

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  password_file=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD for the postgres user}" >"$password_file"
  initdb --pgdata="$PGDATA" --username=postgres --pwfile="$password_file" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
  rm -f "$password_file"
  # initdb only lets loopback clients in; the API replicas connect from other containers.
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [[ -n ${POSTGRES_DB:-} && $POSTGRES_DB != postgres ]]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi

exec "$@"
