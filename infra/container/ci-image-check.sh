#!/usr/bin/env bash
# CI stage: build the jarvis image through `./pants package` with podman (no
# Docker daemon, no registry), then run `jarvis db upgrade`, `jarvis doctor`
# and `jarvis demo` inside it against the host's PostgreSQL and Redis.
# Skips (loudly, exit 0) only where podman or debootstrap cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null; }; then
    echo "SKIPPED image stage: podman/debootstrap cannot be installed on this machine" >&2
    exit 0
  fi
fi
command -v psql >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
source infra/container/podman-env.sh
infra/container/make-base-image.sh
export PANTS_DOCKER_BUILD_ARGS='["BASE_IMAGE=localhost/jarvis-base:bookworm"]'
# A failed binary lookup is cached by Pants: never reuse one from a run without the shim.
./pants --no-pantsd --no-local-cache package infra/docker:jarvis

IMAGE=localhost/jarvis:latest
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
echo "image $IMAGE: $((size / 1000000)) MB, runs as '$user'"
# 300 MB: the MCP SDK and the web view's Starlette/uvicorn/Jinja2 took the image past 250 MB (255 MB on
# 2026-11-26). A jump past this means something test-only (playwright, mcp-server-time) got in.
[[ "$size" -lt 300000000 ]] || { echo "image is over 300 MB" >&2; exit 1; }
[[ -n "$user" && "$user" != "root" && "$user" != "0" ]] || { echo "image runs as root" >&2; exit 1; }
uid=$(podman run --rm --entrypoint /usr/bin/python3 "$IMAGE" -c 'import os; print(os.getuid())')
[[ "$uid" != "0" ]] || { echo "container process runs as uid 0" >&2; exit 1; }

PG_HOST_URL="${IMAGE_TEST_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="jarvis_image_ci_$$"
psql "$PG_HOST_URL" -qc "CREATE DATABASE $DB"
trap 'psql "$PG_HOST_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true' EXIT
run() {
  podman run --rm --network=host -e COLUMNS=120 \
    -e DATABASE_URL="${PG_HOST_URL%/*}/$DB" -e REDIS_URL="${IMAGE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
    "$IMAGE" "$@"
}
run db upgrade
run doctor
run demo | tail -n 4
echo "image stage passed"
