#!/usr/bin/env bash
# Creates .venv (if needed) and installs GPO (which ships the generated gpo.v1 package) and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.gpo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # gpo-client (clients/python) holds the same gpo.v1 files: an older .venv's copy is dropped.
  .venv/bin/python -m pip uninstall -q -y gpo-client 2>/dev/null || true
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
