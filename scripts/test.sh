#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs GPO into .venv, installs and starts PostgreSQL and
# RabbitMQ from Debian's packages when missing, runs the static checks, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
eval "$(bash scripts/services.sh | sed 's/^/export /')"

echo "== generated code is fresh"
tmp=$(mktemp -d)
cp -r clients/python/src/gpo "$tmp/before"
bash scripts/gen_protos.sh
if ! diff -r -q "$tmp/before" clients/python/src/gpo -x __pycache__ >/dev/null; then
  echo "generated code in clients/python/src/gpo was stale: run scripts/gen_protos.sh and commit" >&2
  exit 1
fi
rm -rf "$tmp"

echo "== buf lint"
bash scripts/buf.sh lint

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy

echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
