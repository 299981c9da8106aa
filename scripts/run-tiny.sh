#!/usr/bin/env bash
# Fresh machine -> the default tiny Polish recipe end to end (CPU, minutes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec "${BIELIK_VENV:-$root/.venv}/bin/bielik" recipe run recipes/tiny-pl.yaml "$@"
