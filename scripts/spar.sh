#!/usr/bin/env bash
# Installs OpenG2P's SPAR ID-account mapper (openg2p-spar-mapper-api 1.1.0, from PyPI) into a virtual
# environment of its own, .tools/spar-venv, for the G2P Connect tests (tests/g2p_connect/spar.py starts it;
# the same environment runs the OpenG2P test client, tests/peers/openg2p_client.py). Idempotent: prints
# the environment's python and does nothing else when the installed set is already the pinned one.
#
#   bash scripts/spar.sh            # -> .tools/spar-venv/bin/python
#
# SPAR 1.1.0 imports openg2p_g2pconnect_common_lib.oauth_token, which 2.0.0 of that library lacks, so the
# library is pinned to 1.1.0; SQLAlchemy's asyncio needs greenlet, which SPAR does not declare; PyJWT
# signs and verifies for the test client (OpenG2P itself signs through its Keymanager). psycopg2
# (a SPAR dependency) builds from source: it needs pg_config and a C compiler (Debian: libpq-dev, gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=.tools/spar-venv
packages=(
  "openg2p-spar-mapper-api==1.1.0"
  "openg2p-g2pconnect-common-lib==1.1.0"
  # What SPAR 1.1.0 resolves to and was tested with (its own requirements are unpinned).
  "openg2p-g2pconnect-mapper-lib==2.0.0"
  "openg2p-fastapi-common==1.1.6"
  "greenlet==3.5.6"
  "pyjwt[crypto]==2.15.1"  # the OpenG2P test client's signer (OpenG2P signs through its Keymanager)
)
stamp="$venv/.installed"
want=$(printf '%s\n' "${packages[@]}")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi
if ! command -v pg_config >/dev/null || ! command -v gcc >/dev/null; then
  echo "spar.sh: installing libpq-dev and gcc (psycopg2 builds from source)" >&2
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q libpq-dev gcc python3-dev >&2
fi
mkdir -p .tools
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q "${packages[@]}" >&2
printf '%s\n' "$want" >"$stamp"
echo "$venv/bin/python"
