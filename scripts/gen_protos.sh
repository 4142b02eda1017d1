#!/usr/bin/env bash
# Regenerates every language's code from protos/. Generated files are never edited by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=clients/python/src
rm -f "$out"/gpo/v1/*_pb2*.py "$out"/gpo/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I protos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/gpo/v1/*.proto
touch "$out/gpo/__init__.py" "$out/gpo/v1/__init__.py" "$out/gpo/v1/py.typed"
