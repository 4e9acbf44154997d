#!/usr/bin/env bash
# setup_venv.sh: the Python environment of tools/train, idempotent.
# A venv over Debian's /usr/bin/python3 with --system-site-packages, so torch
# (python3-torch 1.13), numpy and matplotlib come from Debian; pip adds only
# the pinned packages of requirements.txt and is held to Debian's numpy by a
# constraint so it can never replace it. Usage: tools/train/setup_venv.sh [VENV]
# (default: .venv-train at the repository root). Prints the venv's python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$root/.venv-train}"
req="$root/tools/train/requirements.txt"
py=/usr/bin/python3

missing=()
for mod in torch numpy matplotlib; do
  "$py" -c "import $mod" 2>/dev/null || missing+=("$mod")
done
if ((${#missing[@]})); then
  echo "setup_venv.sh: $py lacks ${missing[*]}: install Debian's python3-torch python3-numpy python3-matplotlib python3-venv (apt-get install ...)" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$py" -m venv --system-site-packages "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! "$venv/bin/python" -c "import tokenizers, safetensors, gguf" 2>/dev/null; then
  cons="$(mktemp)"
  trap 'rm -f "$cons"' EXIT
  "$py" -c "import numpy; print('numpy==' + numpy.__version__)" > "$cons"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$cons" -r "$req"
  echo "$want" > "$stamp"
fi
"$venv/bin/python" -c "import torch, numpy, tokenizers, safetensors, gguf" || {
  echo "setup_venv.sh: $venv is broken: remove it and run again" >&2; exit 1; }
echo "$venv/bin/python"
