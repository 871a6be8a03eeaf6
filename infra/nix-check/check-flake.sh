#!/usr/bin/env bash
# Checks flake.nix offline (CI has no Nix binary cache and no GitHub): syntax,
# `nix flake check`, the dev shell's derivation for every system, and its
# shellHook as bash, with nixpkgs replaced by infra/nix-check/stand-in-nixpkgs.nix.
# Nix runs single-user with its store in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v nix >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin >/dev/null
fi
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/conf" "$work/nixpkgs"
cat >"$work/conf/nix.conf" <<CONF
experimental-features = nix-command flakes
sandbox = false
build-users-group =
substituters =
CONF
cp infra/nix-check/stand-in-nixpkgs.nix "$work/nixpkgs/flake.nix"
export NIX_CONF_DIR="$work/conf" NIX_REMOTE="local?store=$work/store&state=$work/state" HOME="$work"
override=(--override-input nixpkgs "path:$work/nixpkgs" --no-write-lock-file)

nix-instantiate --parse flake.nix >/dev/null
echo "flake.nix parses"
python3 - <<'PY'
import json
lock = json.load(open("flake.lock"))
node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
assert node["original"]["ref"] == "nixos-24.11", node
assert len(node["locked"]["rev"]) == 40 and node["locked"]["narHash"].startswith("sha256-"), node
print(f"flake.lock pins nixpkgs nixos-24.11 at {node['locked']['rev'][:12]}")
PY
nix flake check --no-build "${override[@]}" .
echo "nix flake check passed"
for system in x86_64-linux aarch64-linux x86_64-darwin aarch64-darwin; do
  drv=$(nix eval --raw "${override[@]}" ".#devShells.$system.default.drvPath")
  echo "devShells.$system.default -> ${drv##*/}"
done
nix eval --raw "${override[@]}" .#devShells.x86_64-linux.default.shellHook >"$work/shellHook.sh"
bash -n "$work/shellHook.sh"
grep -q 'DATABASE_URL=' "$work/shellHook.sh" && grep -q 'REDIS_URL=' "$work/shellHook.sh"
echo "shellHook is valid bash and sets DATABASE_URL and REDIS_URL"
bash -n infra/dev-services.sh
echo "flake check passed"
