#!/usr/bin/env bash
# Fails when protos/ breaks the last released API: the current protos, built to an image, are compared
# (buf breaking, FILE rules) with the image of the last release kept in protos/released/. On a release,
# add its image: bash scripts/buf.sh build -o protos/released/vX.Y.Z.binpb
set -euo pipefail
cd "$(dirname "$0")/.."
released=$(ls protos/released/*.binpb | sort -V | tail -1)
current=$(mktemp --suffix=.binpb)
trap 'rm -f "$current"' EXIT
bash scripts/buf.sh build -o "$current"
bash scripts/buf.sh breaking "$current" --against "$released"
echo "protos are compatible with $(basename "$released" .binpb)"
