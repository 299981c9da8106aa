#!/usr/bin/env bash
# Fresh machine -> ruff (lint + format check) and the whole test suite (fast tests; BIELIK_SLOW=1 or `-m slow`
# adds the end-to-end ones).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
# Headless Chromium for tests/test_report.py (it renders the HTML report); installed from Debian's packages
# when missing and apt-get is usable as root. Never fails the test run: without it that test skips.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
    >/dev/null 2>&1 || echo "test.sh: could not install chromium; tests/test_report.py will skip" >&2
fi
venv="${BIELIK_VENV:-$root/.venv}"
# Lint and format check first (config in pyproject.toml [tool.ruff]; BIELIK_NO_LINT=1 skips it while iterating)
if [ -z "${BIELIK_NO_LINT:-}" ]; then
  "$venv/bin/ruff" check bielik tests benchmarks scripts
  "$venv/bin/ruff" format --check --quiet bielik tests benchmarks scripts
fi
export BIELIK_NO_BAR=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$venv/bin/python" -m pytest "$@"
