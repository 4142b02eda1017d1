#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs GPO into .venv, installs and starts PostgreSQL and
# RabbitMQ from Debian's packages when missing, runs the static checks, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -n "${GPO_TEST_DATABASE_URL:-}" ] && [ -n "${GPO_TEST_AMQP_URL:-}" ]; then
  # Servers of the caller's own (e.g. a second PostgreSQL cluster and RabbitMQ node, so that one run's
  # restarts do not disturb another's; RABBITMQ_NODENAME then names the node rabbitmqctl drives).
  echo "== using GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL as given"
else
  service_urls=$(bash scripts/services.sh)
  # Only well-formed GPO_TEST_* assignments are taken from its output.
  while IFS= read -r line; do
    [[ "$line" =~ ^(GPO_TEST_[A-Z_]+)=(.*)$ ]] && export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  done <<<"$service_urls"
fi

echo "== generated code is fresh (every language)"
generated=(clients/python/src/gpo clients/go/gpo clients/java/gpo-client/src clients/typescript/src/gen gateway/gen docs/openapi)
snapshot=$(mktemp -d)
for dir in "${generated[@]}"; do mkdir -p "$snapshot/$dir" && cp -r "$dir/." "$snapshot/$dir/"; done
bash scripts/gen_protos.sh
for dir in "${generated[@]}"; do
  if ! diff -r -q -x __pycache__ "$snapshot/$dir" "$dir" >/dev/null; then
    diff -r -q -x __pycache__ "$snapshot/$dir" "$dir" >&2 || true
    echo "generated code in $dir was stale: run scripts/gen_protos.sh and commit the result" >&2
    exit 1
  fi
done
rm -rf "$snapshot"

echo "== buf lint"
bash scripts/buf.sh lint
echo "== buf breaking (against the last released protos)"
bash scripts/proto_breaking.sh

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy

echo "== pytest"
# The slowest tests close the run, so slow creep shows.
.venv/bin/pytest -q -p no:cacheprovider --durations=15 "$@"
