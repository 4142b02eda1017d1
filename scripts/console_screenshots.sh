#!/usr/bin/env bash
# Retakes the screenshots in docs/console/: runs the console's browser test (tests/e2e/test_console.py), which
# saves the main pages there. Needs PostgreSQL, RabbitMQ and chromium (scripts/services.sh installs and starts
# them unless GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL name running servers).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${GPO_TEST_DATABASE_URL:-}" ] || [ -z "${GPO_TEST_AMQP_URL:-}" ]; then
  urls=$(bash scripts/services.sh)
  eval "export $(echo "$urls" | tr '\n' ' ')"
fi
GPO_CONSOLE_SCREENSHOTS=docs/console .venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e/test_console.py
