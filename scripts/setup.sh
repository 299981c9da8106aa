#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and install bielik into it.
# torch goes in first, pinned, so that nothing later pulls a multi-GB CUDA build by accident.
#   BIELIK_TORCH   torch requirement to install (default: torch==2.13.0, the CPU build);
#                  a GPU user sets e.g. BIELIK_TORCH="torch==2.9.1" BIELIK_TORCH_INDEX=https://download.pytorch.org/whl/cu128
#   BIELIK_VENV    where the virtualenv lives (default: .venv in the repository)
#   BIELIK_EXTRAS  pip extras to install (default: dev)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BIELIK_VENV:-$root/.venv}"
torch_req="${BIELIK_TORCH:-torch==2.13.0}"
extras="${BIELIK_EXTRAS:-dev}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtualenv $venv" >&2
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $torch_req" >&2
  if [ -n "${BIELIK_TORCH_INDEX:-}" ]; then
    "${pip[@]}" install "$torch_req" --index-url "$BIELIK_TORCH_INDEX"
  else
    "${pip[@]}" install "$torch_req"
  fi
fi
stamp="$venv/.bielik-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  # The distribution was named `bielik` before it became `bielik-toolkit` (that name on the package index
  # is an unrelated package with the same import name and command). A `bielik` distribution left in this
  # venv, ours from before the rename or that other one, would shadow or later delete our `bielik` command
  # and package: remove it before installing (after would delete the command this install writes).
  if "$venv/bin/python" -m pip --disable-pip-version-check show -q bielik >/dev/null 2>&1; then
    echo "[setup] removing the distribution named 'bielik' (this project is now 'bielik-toolkit')" >&2
    "${pip[@]}" uninstall -y bielik
  fi
  echo "[setup] installing bielik-toolkit[$extras]" >&2
  "${pip[@]}" install -e "$root[$extras]"
  touch "$stamp"
fi
