#!/usr/bin/env bash
# Builds a minimal Debian bookworm image with Python 3.11 from Debian's
# packages and imports it into podman as localhost/jarvis-base:bookworm.
# For machines that reach no container registry; normal users build on
# python:3.11-slim instead. Needs root, debootstrap and podman-env.sh sourced.
set -euo pipefail
IMAGE="${1:-localhost/jarvis-base:bookworm}"
if podman image exists "$IMAGE"; then
  echo "base image $IMAGE already present"; exit 0
fi
# The Debian mirror apt already uses (enabled .sources files only), else the default one.
MIRROR="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm from $MIRROR (about 40 s)"
debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS" "$MIRROR" >/dev/null
# Trim what a runtime image never needs.
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*
chmod 0755 "$ROOTFS"  # mktemp made it 0700: it becomes the image's /
tar -C "$ROOTFS" -c . | podman import - "$IMAGE" >/dev/null
echo "imported $IMAGE"
