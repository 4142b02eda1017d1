#!/usr/bin/env bash
# Fetches the official message schemas the rail tests validate against that are not in ../shared/specs:
#
#   bash scripts/schemas.sh            # prints the folder of @mojaloop/api-snippets' FSPIOP v1.1 OpenAPI
#
# @mojaloop/api-snippets (the Mojaloop Foundation's own schemas, FSPIOP v1.1 split OpenAPI files under
# fspiop/v1_1/openapi3/) is fetched from the npm registry with `npm pack` (npm checks the tarball against
# the registry's integrity hash) and unpacked into .tools/schemas/ (gitignored). Nothing is installed
# and no package script runs. A second run with the version present does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

version=18.4.1
dir=.tools/schemas/mojaloop-api-snippets-$version
root=$dir/package/fspiop/v1_1/openapi3

if [ ! -f "$root/openapi.yaml" ]; then
  command -v npm >/dev/null || { echo "schemas.sh: npm is needed for @mojaloop/api-snippets" >&2; exit 3; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@mojaloop/api-snippets@$version" >/dev/null)
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/mojaloop-api-snippets-$version.tgz" -C "$tmp/x"
  [ -f "$tmp/x/package/fspiop/v1_1/openapi3/openapi.yaml" ] || {
    echo "schemas.sh: @mojaloop/api-snippets@$version has no fspiop/v1_1/openapi3/openapi.yaml" >&2
    exit 1
  }
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/x" "$dir"
fi
echo "$(pwd)/$root"
