#!/usr/bin/env bash
# Builds the REST gateway and the client examples (Go, TypeScript and the gateway from the committed generated
# code; Java generates its code from protos/ in its Maven build):
#
#   bash scripts/build_clients.sh                  # gateway go java typescript
#   bash scripts/build_clients.sh gateway          # only these
#
# Outputs (all gitignored): .tools/build/gpo-gateway, .tools/build/go-submit-and-watch,
# clients/java/examples/target (classes and lib/), clients/typescript/dist. Go, Maven and npm keep their
# own caches, so a rebuild with nothing changed takes seconds. (Python needs no build: `pip install
# ./clients/python`.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.tools/build
mkdir -p "$out"

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(gateway go java typescript)

need() {  # need TOOL WHAT
  command -v "$1" >/dev/null || { echo "build_clients: $2 needs '$1' on PATH" >&2; exit 3; }
}

# newer_than STAMP DIR...: true when a file under DIR is newer than STAMP (or STAMP is missing).
newer_than() {
  local stamp=$1
  shift
  [ ! -e "$stamp" ] && return 0
  [ -n "$(find "$@" -newer "$stamp" -type f -not -path '*/target/*' -not -path '*/node_modules/*' \
    -not -path '*/dist/*' -print -quit)" ]
}

build_gateway() {
  need go gateway
  (cd gateway && go build -trimpath -o "../$out/gpo-gateway" .)
}

build_go() {
  need go go
  (cd clients/go && go build -trimpath -o "../../$out/go-submit-and-watch" ./examples/submit-and-watch)
}

build_java() {
  need mvn java
  need java java
  local stamp=clients/java/examples/target/.built
  if newer_than "$stamp" clients/java protos; then
    # Maven's output is shown only when it fails (quiet mode still prints colour codes).
    if ! (cd clients/java && mvn -q -B -Dstyle.color=never package) >"$out/maven.log" 2>&1; then
      cat "$out/maven.log" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}

build_typescript() {
  need npm typescript
  (
    cd clients/typescript
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      npm ci --silent --no-audit --no-fund
    fi
    if newer_than dist/.built src examples package.json tsconfig.json; then
      npx --no-install tsc -p .
      touch dist/.built
    fi
  )
}

for lang in "${langs[@]}"; do
  case "$lang" in
    gateway | go | java | typescript) "build_$lang" ;;
    *) echo "build_clients: unknown target '$lang'" >&2; exit 2 ;;
  esac
done
