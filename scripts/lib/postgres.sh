# Sourced by scripts/test and the benchmarks: starts a throwaway PostgreSQL cluster (initdb in
# a temporary directory, a free loopback port, run as the `postgres` user when started as
# root), exports MASKD_TEST_PG_URL (the superuser `maskd`, no password, trust on loopback
# only) and stops and removes the cluster when the calling shell exits.
# Installs Debian's `postgresql` first when no server binaries are present.

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

start_throwaway_postgres() {
  if [ -z "$(pg_bin_dir)" ]; then
    echo "installing: postgresql"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    # The package starts a cluster of its own on 5432; the tests rely on none of that.
    $sudo systemctl disable --now postgresql >/dev/null 2>&1 \
      || $sudo service postgresql stop >/dev/null 2>&1 || true
  fi
  PG_BIN=$(pg_bin_dir)
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL's initdb not found" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/maskd-pg.XXXXXX); chmod 755 "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
  local port
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  _as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U maskd --auth=trust -E UTF8 --no-sync >/dev/null
  # fsync stays on: the tests check what is durable. Connections for two nodes, the tests'
  # databases and the benchmarks' clients.
  _as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_DIR -c max_connections=400" \
    start >/dev/null
  trap stop_throwaway_postgres EXIT
  export MASKD_TEST_PG_URL="postgres://maskd@127.0.0.1:$port/postgres"
  "$PG_BIN/postgres" --version
}

stop_throwaway_postgres() {
  [ -n "${PG_DIR:-}" ] || return 0
  _as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
