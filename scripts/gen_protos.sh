#!/usr/bin/env bash
# Regenerates every committed language's code from protos/. Generated files are committed and never edited
# by hand. (Java is not here: its Maven build generates it, see clients/java/gpo-client/pom.xml.)
#
#   bash scripts/gen_protos.sh                 # python go gateway openapi typescript
#   bash scripts/gen_protos.sh python go       # only these
#
# Every generator is pinned (below, or in clients/typescript/package-lock.json) and installed into the
# gitignored .tools/ on first use, so the output is the same on every machine. Every language uses the protoc
# of the pinned grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

GO_PROTOBUF_VERSION=v1.36.12         # protoc-gen-go
GO_GRPC_PLUGIN_VERSION=v1.6.2        # protoc-gen-go-grpc
GRPC_GATEWAY_VERSION=v2.33.0         # protoc-gen-grpc-gateway, protoc-gen-openapiv2

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python go gateway openapi typescript)

bash scripts/proto_deps.sh
tools=$PWD/.tools
bin=$tools/bin
mkdir -p "$bin"
wkt=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
includes=(-I protos -I .tools/protos -I "$wkt")
all_protos=(protos/gpo/v1/*.proto)
# Only the public API is mapped to REST; RailService is internal to GPO and its sidecars.
public_protos=(protos/gpo/v1/disbursement_service.proto)
# The gateway also serves G2P Connect on the spec's paths; its OpenAPI document is the spec itself, so
# gpo.swagger.json stays GPO's own API.
gateway_protos=("${public_protos[@]}" protos/gpo/v1/g2p_connect_service.proto)

protoc() { "$PY" -m grpc_tools.protoc "${includes[@]}" "$@"; }

need() {  # need TOOL LANGUAGE
  command -v "$1" >/dev/null || { echo "gen_protos: $2 needs '$1' on PATH" >&2; exit 1; }
}

go_plugin() {  # go_plugin NAME MODULE@VERSION: installs a protoc plugin into .tools/bin once per version
  local name=$1 pkg=$2 stamp="$bin/.$1.version"
  if [ ! -x "$bin/$name" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$pkg" ]; then
    need go "$name"
    GOBIN=$bin go install "$pkg"
    echo "$pkg" >"$stamp"
  fi
}

gen_python() {
  local out=clients/python/src
  rm -f "$out"/gpo/v1/*_pb2*.py "$out"/gpo/v1/*_pb2*.pyi
  protoc --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "${all_protos[@]}"
  touch "$out/gpo/__init__.py" "$out/gpo/v1/__init__.py" "$out/gpo/v1/py.typed"
}

gen_go() {  # the Go client module: messages and gRPC stubs for every service
  go_plugin protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$GO_PROTOBUF_VERSION"
  go_plugin protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$GO_GRPC_PLUGIN_VERSION"
  rm -f clients/go/gpo/v1/*.pb.go
  mkdir -p clients/go
  local module=github.com/gpo-project/gpo/clients/go
  protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --go_out=clients/go --go_opt=module=$module \
    --go-grpc_out=clients/go --go-grpc_opt=module=$module \
    "${all_protos[@]}"
}

gen_gateway() {  # REST handlers, in the gateway's own package so the Go client needs no gateway runtime
  go_plugin protoc-gen-grpc-gateway \
    "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$GRPC_GATEWAY_VERSION"
  rm -f gateway/gen/gpo/v1/*.pb.gw.go
  mkdir -p gateway/gen
  protoc --plugin=protoc-gen-grpc-gateway="$bin/protoc-gen-grpc-gateway" \
    --grpc-gateway_out=gateway/gen --grpc-gateway_opt=paths=source_relative,standalone=true \
    "${gateway_protos[@]}"
}

gen_openapi() {
  go_plugin protoc-gen-openapiv2 \
    "github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$GRPC_GATEWAY_VERSION"
  mkdir -p docs/openapi
  rm -f docs/openapi/gpo.swagger.json
  # gateway/openapi.yaml adds what the protos do not say: title, bearer auth, NDJSON streams.
  protoc --plugin=protoc-gen-openapiv2="$bin/protoc-gen-openapiv2" \
    --openapiv2_out=docs/openapi \
    --openapiv2_opt=allow_merge=true,merge_file_name=gpo,preserve_rpc_order=true \
    --openapiv2_opt=openapi_configuration=gateway/openapi.yaml \
    "${public_protos[@]}"
}

gen_typescript() {  # the TypeScript client: ts-proto over @grpc/grpc-js, pinned by package-lock.json
  need npm typescript
  (cd clients/typescript && { [ -x node_modules/.bin/protoc-gen-ts_proto ] || npm ci --silent --no-audit --no-fund; })
  local out=clients/typescript/src/gen
  rm -rf "$out"
  mkdir -p "$out"
  protoc --plugin=protoc-gen-ts_proto="$PWD/clients/typescript/node_modules/.bin/protoc-gen-ts_proto" \
    --ts_proto_out="$out" \
    --ts_proto_opt=outputServices=grpc-js,env=node,forceLong=string,esModuleInterop=true \
    --ts_proto_opt=useOptionals=messages,exportCommonSymbols=false \
    "${all_protos[@]}"
  # ts-proto also emits the files of options-only imports (google/api, descriptor.proto), which no
  # generated file references; the package does without them. httpbody.ts is kept: the G2P Connect
  # service's messages are google.api.HttpBody.
  find "$out/google/api" -type f ! -name httpbody.ts -delete
  rm -f "$out/google/protobuf/descriptor.ts"
}

for lang in "${langs[@]}"; do
  case "$lang" in
    python | go | gateway | openapi | typescript) "gen_$lang" ;;
    java) echo "gen_protos: Java is generated by its Maven build (bash scripts/build_clients.sh java)" >&2; exit 2 ;;
    *) echo "gen_protos: unknown language '$lang'" >&2; exit 2 ;;
  esac
done
