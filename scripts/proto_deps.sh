#!/usr/bin/env bash
# Puts the googleapis protos that protos/ import (google/api/annotations.proto, http.proto, httpbody.proto) into
# .tools/protos, copied from the googleapis-common-protos package in .venv: buf cannot reach the Buf
# Schema Registry here, and the pip package pins the same files the Python runtime uses.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
dest=.tools/protos/google/api
if [ -f "$dest/annotations.proto" ] && [ -f "$dest/http.proto" ] && [ -f "$dest/httpbody.proto" ]; then
  exit 0
fi
src=$("$PY" -c 'import google.api.annotations_pb2 as m, os; print(os.path.dirname(m.__file__))')
mkdir -p "$dest"
cp "$src/annotations.proto" "$src/http.proto" "$src/httpbody.proto" "$dest/"
