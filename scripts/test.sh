#!/usr/bin/env bash
# Fresh machine -> the whole test suite (fast tests; BIELIK_SLOW=1 or `-m slow` adds the end-to-end ones).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
export BIELIK_NO_BAR=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "${BIELIK_VENV:-$root/.venv}/bin/python" -m pytest "$@"
