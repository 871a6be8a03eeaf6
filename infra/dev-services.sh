#!/usr/bin/env bash
# Local PostgreSQL 16 and Redis 7 for development, data under .dev/ (used by `nix develop`).
#   infra/dev-services.sh up | down | status
# Ports 55432 and 56379, so they never clash with system services.
set -euo pipefail
DEV_DIR="${JARVIS_DEV_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.dev}"
PGDATA="$DEV_DIR/postgres"
PG_PORT=55432
REDIS_PORT=56379

up() {
  mkdir -p "$DEV_DIR"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    initdb --auth=trust --username=jarvis --encoding=UTF8 -D "$PGDATA" >/dev/null
  fi
  pg_ctl -D "$PGDATA" -l "$DEV_DIR/postgres.log" -o "-p $PG_PORT -k $DEV_DIR -h 127.0.0.1" -w status >/dev/null 2>&1 \
    || pg_ctl -D "$PGDATA" -l "$DEV_DIR/postgres.log" -o "-p $PG_PORT -k $DEV_DIR -h 127.0.0.1" -w start >/dev/null
  createdb -h 127.0.0.1 -p "$PG_PORT" -U jarvis jarvis 2>/dev/null || true
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 \
    || redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV_DIR" --daemonize yes \
         --logfile "$DEV_DIR/redis.log" --pidfile "$DEV_DIR/redis.pid" >/dev/null
  status
}

down() {
  pg_ctl -D "$PGDATA" -w stop >/dev/null 2>&1 || true
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
