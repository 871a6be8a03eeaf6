#!/usr/bin/env bash
# Source this to build and run containers with podman where no Docker daemon
# exists (CI, locked-down hosts): rootful podman with runc and cgroupfs, its
# storage in a directory of ours, and a `docker` shim first on PATH for Pants.
#   source infra/container/podman-env.sh [STATE_DIR]
# Facts this relies on (seen on our CI machines): crun refuses the host's
# hybrid cgroup layout, so runc; ulimits above these are refused.
JARVIS_CONTAINER_STATE="${1:-${JARVIS_CONTAINER_STATE:-/var/tmp/jarvis-containers}}"
mkdir -p "$JARVIS_CONTAINER_STATE"/{storage,run,shim}

cat >"$JARVIS_CONTAINER_STATE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat >"$JARVIS_CONTAINER_STATE/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$JARVIS_CONTAINER_STATE/storage"
runroot = "$JARVIS_CONTAINER_STATE/run"
CONF
PODMAN="$(command -v podman)" || { echo "podman is not installed (apt-get install podman)" >&2; return 1; }
cat >"$JARVIS_CONTAINER_STATE/shim/docker" <<SHIM
#!/bin/sh
# docker -> podman, exit codes passed through. Absolute path: Pants runs this with an empty PATH.
export CONTAINERS_CONF="$JARVIS_CONTAINER_STATE/containers.conf"
export CONTAINERS_STORAGE_CONF="$JARVIS_CONTAINER_STATE/storage.conf"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec "$PODMAN" "\$@"
SHIM
chmod +x "$JARVIS_CONTAINER_STATE/shim/docker"

export CONTAINERS_CONF="$JARVIS_CONTAINER_STATE/containers.conf"
export CONTAINERS_STORAGE_CONF="$JARVIS_CONTAINER_STATE/storage.conf"
export PATH="$JARVIS_CONTAINER_STATE/shim:$PATH"
# Pants' Docker backend: find our shim (it sets podman's configuration and PATH itself).
export PANTS_DOCKER_EXECUTABLE_SEARCH_PATHS="[\"$JARVIS_CONTAINER_STATE/shim\"]"
