#!/usr/bin/env bash
# Soak test: the whole suite, as CI runs it (`./pants test ::` with pants.ci.toml), several times in a row
# while CPU hogs keep every core busy, to show that no test passes or fails by timing. One line per run;
# exits 1 if any run failed.
#
#   infra/soak-tests.sh              # 5 runs under load
#   infra/soak-tests.sh 10           # 10 runs
#   SOAK_HOGS=0 infra/soak-tests.sh  # no extra load (a baseline)
#
# Load: `stress-ng --cpu N` when installed (apt-get install stress-ng), else N Python busy loops; N is the
# number of cores unless SOAK_HOGS says otherwise. Needs what the tests need (redis-server, pgbouncer:
# `.ci/run` installs them). Each run's Pants output and JUnit reports are kept in dist/soak/run-K/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
hogs="${SOAK_HOGS:-$(nproc)}"
out=dist/soak
export PANTS_CONFIG_FILES="+['pants.ci.toml']" # JUnit reports per test file, plain output
export CI="${CI:-true}"                        # a missing service fails the run instead of skipping tests

command -v redis-server >/dev/null || { echo "soak: redis-server is not installed (run .ci/run once)" >&2; exit 2; }
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] ||
  { echo "soak: pgbouncer is not installed (run .ci/run once)" >&2; exit 2; }

hog_pids=()
stop_hogs() {
  local pid
  for pid in "${hog_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
if ((hogs > 0)); then
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$hogs" --quiet &
    hog_pids+=("$!")
    load="stress-ng --cpu $hogs"
  else
    for _ in $(seq "$hogs"); do
      python3 -c 'while True: pass' &
      hog_pids+=("$!")
    done
    load="$hogs Python busy loops"
  fi
else
  load="no extra load"
fi
echo "soak: $runs run(s) of ./pants test --force :: on $(nproc) core(s) with $load"

failed_runs=0
rm -rf "$out"
for run in $(seq 1 "$runs"); do
  dir="$out/run-$run"
  mkdir -p "$dir"
  rm -rf dist/test-reports
  started=$SECONDS
  status=0
  # --force: rerun every test; otherwise Pants answers unchanged tests from its cache.
  ./pants test --force :: >"$dir/pants.log" 2>&1 || status=$?
  took=$((SECONDS - started))
  if ! summary="$(python3 .ci/summarize_tests.py dist/test-reports 2>&1)" && [[ "$status" == 0 ]]; then
    status=1 # no test ran, or a failure Pants did not count
  fi
  [[ -d dist/test-reports ]] && mv dist/test-reports "$dir/reports"
  # Failed test cases by name, and test files Pants reports as failed or timed out (those may have no report).
  failures="$(python3 - "$dir/reports" <<'EOF'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

for report in sorted(Path(sys.argv[1]).rglob("*.xml")) if Path(sys.argv[1]).is_dir() else []:
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            print(f"    {case.get('classname')}::{case.get('name')}")
EOF
  )"
  files="$(grep -E '^✕ ' "$dir/pants.log" | sed 's/^/    /' || true)"
  printf 'run %d/%d: %s in %d s (pants exit %d)\n' "$run" "$runs" "$summary" "$took" "$status"
  [[ -n "$failures" ]] && echo "$failures"
  [[ -n "$files" ]] && echo "$files"
  [[ "$status" == 0 ]] || failed_runs=$((failed_runs + 1))
done

echo "soak: $((runs - failed_runs)) of $runs run(s) passed under $load (logs: $out/)"
((failed_runs == 0))
