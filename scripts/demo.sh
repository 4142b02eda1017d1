#!/usr/bin/env bash
# The main job on a fresh machine: install GPO into .venv, then pay N synthetic beneficiaries end to end
# on the embedded default (SQLite, in-process queue, in-process simulator rail). Extra arguments go to
# `gpo demo`, e.g. --payments 100000, or --database-url/--amqp-url for PostgreSQL and RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/gpo demo "${@:---payments=100000}"
