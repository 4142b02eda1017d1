#!/usr/bin/env bash
# Runs buf (installed from the npm registry into .tools/ on first use) with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
if [ ! -x .tools/node_modules/.bin/buf ]; then
  mkdir -p .tools
  npm install --silent --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
fi
bash scripts/proto_deps.sh  # google/api protos that buf.yaml names as a local module
exec .tools/node_modules/.bin/buf "$@"
