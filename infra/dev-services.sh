#!/usr/bin/env bash
# Local PostgreSQL 16 and Redis 7 for development, data under .dev/ (used by `nix develop`).
#   infra/dev-services.sh up | down | status
# Ports 55432 and 56379, so they never clash with system services.
set -euo pipefail
DEV_DIR="${JARVIS_DEV_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.dev}"
PGDATA="$DEV_DIR/postgres"
PG_PORT=55432
REDIS_PORT=56379
# PostgreSQL refuses to run as root (`initdb: cannot be run as root`): as root, its commands run as this
# unprivileged user (JARVIS_DEV_PG_USER, default `postgres`), which owns the cluster and keeps its socket in it.
PG_USER="${JARVIS_DEV_PG_USER:-postgres}"
SOCKET_DIR="$DEV_DIR"
[[ $EUID -ne 0 ]] || SOCKET_DIR="$PGDATA"

as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

prepare_for_root() {
  [[ $EUID -eq 0 ]] || return 0
  id -u "$PG_USER" >/dev/null 2>&1 || {
    echo "dev-services: running as root, PostgreSQL needs an unprivileged user to run as, and '$PG_USER' does not" \
      "exist. Fix: useradd --system $PG_USER, set JARVIS_DEV_PG_USER to another user, or run as a normal user" >&2
    exit 2
  }
  mkdir -p "$PGDATA"
  chown "$PG_USER" "$PGDATA"
  chmod 700 "$PGDATA"
  touch "$DEV_DIR/postgres.log"
  chown "$PG_USER" "$DEV_DIR/postgres.log"
  as_pg test -w "$PGDATA" || {
    echo "dev-services: the PostgreSQL user '$PG_USER' cannot reach $PGDATA (a parent directory is closed to" \
      "others, e.g. root's home). Fix: JARVIS_DEV_DIR=/var/tmp/jarvis-dev $0 up, or run as a normal user" >&2
    exit 2
  }
}

up() {
  mkdir -p "$DEV_DIR"
  prepare_for_root
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    as_pg initdb --auth=trust --username=jarvis --encoding=UTF8 -D "$PGDATA" >/dev/null
  fi
  as_pg pg_ctl -D "$PGDATA" -l "$DEV_DIR/postgres.log" -o "-p $PG_PORT -k $SOCKET_DIR -h 127.0.0.1" -w status >/dev/null 2>&1 \
    || as_pg pg_ctl -D "$PGDATA" -l "$DEV_DIR/postgres.log" -o "-p $PG_PORT -k $SOCKET_DIR -h 127.0.0.1" -w start >/dev/null
  createdb -h 127.0.0.1 -p "$PG_PORT" -U jarvis jarvis 2>/dev/null || true
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 \
    || redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV_DIR" --daemonize yes \
         --logfile "$DEV_DIR/redis.log" --pidfile "$DEV_DIR/redis.pid" >/dev/null
  status
}

down() {
  as_pg pg_ctl -D "$PGDATA" -w stop >/dev/null 2>&1 || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  echo "stopped (data kept in $DEV_DIR)"
}

status() {
  pg_isready -h 127.0.0.1 -p "$PG_PORT" >/dev/null && echo "postgres: up on 127.0.0.1:$PG_PORT" || echo "postgres: down"
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && echo "redis:    up on 127.0.0.1:$REDIS_PORT" || echo "redis:    down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
