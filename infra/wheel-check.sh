#!/usr/bin/env bash
# Jarvis as a user installs it: build the wheel with Pants, install it with plain pip into a fresh
# virtualenv outside the repository, and use it from there with nothing of the checkout on the path:
# import the sync and asyncio APIs, run `jarvis demo` from the installed console script (embedded
# PostgreSQL in a fresh data directory), and run every ```python example of README.md and docs/.
# Exits non-zero on any failure, and if the embedded PostgreSQL is still running once all ended.
#
#   infra/wheel-check.sh            # builds dist/jarvis-*.whl (and checks the PEX imports the whole library) first
#   WHEEL=path/to.whl infra/wheel-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
started=$SECONDS

if [[ -z "${WHEEL:-}" ]]; then
  rm -f dist/jarvis-*.whl dist/jarvis-*.tar.gz
  ./pants package src/python/jarvis:dist src/python/jarvis/cli:jarvis
  WHEEL="$(ls dist/jarvis-*-py3-none-any.whl)"
  # The PEX (and so the image) ships the whole library too, not only what the CLI imports.
  PEX_INTERPRETER=1 dist/src.python.jarvis.cli/jarvis.pex -c 'import jarvis.db.aio, jarvis.cache.aio, jarvis.ui, jarvis.mcp.proxy, jarvis.otel.export' ||
    { echo "wheel-check: the PEX dist/src.python.jarvis.cli/jarvis.pex lacks part of the library" >&2; exit 1; }
fi
WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
python="${PYTHON311:-$(command -v python3.11 || command -v python3)}"
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' ||
  { echo "wheel-check: needs Python 3.11 (set PYTHON311)" >&2; exit 2; }

work="$(mktemp -d /tmp/jarvis-wheel-check.XXXXXX)"
# The embedded PostgreSQL runs as an unprivileged user when we are root: it must reach its data directory.
chmod 755 "$work"
data="$work/data"
# The embedded server's postmaster, if one is running: the first line of its postmaster.pid.
postmaster() {
  local pid
  pid="$(head -n 1 "$data/postgres16/postmaster.pid" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
cleanup() {
  local status=$? pid
  # Never leave a server behind, even when a step failed (then the failure is what is reported).
  if pid="$(postmaster)"; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

step() { printf '== wheel-check (%ss): %s\n' "$((SECONDS - started))" "$*"; }

step "fresh venv in $work, pip install $(basename "$WHEEL")[mcp,ui,redis,otel]"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$WHEEL[mcp,ui,redis,otel]" >"$work/pip.log" 2>&1 ||
  { cat "$work/pip.log" >&2; echo "wheel-check: pip install failed" >&2; exit 1; }

cd "$work"  # nothing of the checkout is importable from here, and no .env of ours is read
export JARVIS_DATA_DIR="$data" PATH="$work/venv/bin:$PATH"
unset DATABASE_URL REDIS_URL PYTHONPATH

step "the installed package: typed, both APIs, the extras' modules"
python - <<'EOF'
import importlib.resources
import pathlib

import jarvis
import jarvis.cache.aio
import jarvis.cli.main
import jarvis.db
import jarvis.db.aio
import jarvis.mcp.proxy
import jarvis.otel.export
import jarvis.ui

where = pathlib.Path(jarvis.__file__).parent
assert "site-packages" in str(where), f"jarvis was imported from {where}, not from the installed wheel"
assert (where / "py.typed").is_file(), "py.typed is missing"
for resource in ("agent/plans/demo.yaml", "db/migrations/env.py", "db/migrations/script.py.mako",
                 "ui/templates/base.html", "ui/static/ui.css"):
    assert (where / resource).is_file(), f"{resource} is missing from the wheel"
print(f"jarvis from {where}")
EOF

step "jarvis demo (console script, embedded PostgreSQL in a fresh data directory)"
jarvis demo >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; echo "wheel-check: jarvis demo failed" >&2; exit 1; }
tail -n 3 "$work/demo.log"

step "an MCP SDK client drives jarvis mcp proxy -- <venv python> -m mcp_server_time (docs/mcp.md's configuration)"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check mcp-server-time >"$work/pip-time.log" 2>&1 ||
  { cat "$work/pip-time.log" >&2; echo "wheel-check: pip install mcp-server-time failed" >&2; exit 1; }
python "$repo/infra/mcp-client-check.py" "$(command -v jarvis)" 2>"$work/mcp.log" ||
  { cat "$work/mcp.log" >&2; echo "wheel-check: the MCP client could not use jarvis mcp proxy" >&2; exit 1; }
jarvis audit verify || { echo "wheel-check: the trail after the MCP session does not verify" >&2; exit 1; }

step "the documentation's python examples, as written"
python3 "$repo/tests/docs/examples.py" "$work/examples"
for example in "$work/examples"/*.py; do
  echo "   $(basename "$example")"
  python "$example" || { echo "wheel-check: $(basename "$example") failed" >&2; exit 1; }
done

step "no embedded PostgreSQL left running"
if pid="$(postmaster)"; then
  ps -o pid,user,args -p "$pid" >&2 || true
  echo "wheel-check: the embedded PostgreSQL of $data outlived every command" >&2
  exit 1
fi
step "passed"
