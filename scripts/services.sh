#!/usr/bin/env bash
# Installs (from Debian's packages) and starts the PostgreSQL and RabbitMQ that GPO's real path needs,
# on 127.0.0.1 only, and tmux and chromium for tests. Idempotent: does nothing that is already done. Prints the URLs to use.
set -euo pipefail
# Only the URL lines below belong on stdout (callers eval them); everything any tool prints goes to stderr.
exec 3>&1 1>&2
# shellcheck source=scripts/lib/detached.sh
. "$(dirname "$0")/lib/detached.sh"

PG_USER=gpo
PG_PASSWORD=gpo
PG_DB=gpo

need_install=()
# The server binary, not pg_ctlcluster: a machine with only the client has postgresql-common too.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_install+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || need_install+=(rabbitmq-server)
# Not a service either: promtool (Debian's prometheus package) checks deploy/prometheus/gpo-rules.yml in
# tests/e2e/test_metrics.py.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then need_install+=(prometheus); else echo "services.sh: promtool is missing; install prometheus as root" >&2; fi
fi
# Not a service: tests/e2e/test_progress_tmux.py drives the CLI's progress display in a tmux pane. Without
# root it is only reported (that test then fails and says so), so the servers still start.
if ! command -v tmux >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then need_install+=(tmux); else echo "services.sh: tmux is missing; install it as root" >&2; fi
fi
# Not a service: tests/e2e/test_console.py drives the web console in Debian's headless chromium through
# Playwright (which never downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then need_install+=(chromium); else echo "services.sh: chromium is missing; install it as root" >&2; fi
fi
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "services.sh: need root to install ${need_install[*]}" >&2; exit 1; fi
  echo "services.sh: installing ${need_install[*]} from Debian's packages" >&2
  apt_log=$(mktemp)
  # A package's postinst may start its server: that server must not hold this script's output open.
  if ! detached apt-get update -q >"$apt_log" 2>&1 ||
    ! DEBIAN_FRONTEND=noninteractive detached apt-get install -y -q "${need_install[@]}" >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

# PostgreSQL: the Debian cluster, started with pg_ctlcluster (no systemd on these machines).
pg_version=$(basename "$(dirname "$(dirname "$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | sort -V | tail -1)")")")
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$pg_version main"; then
  detached pg_createcluster "$pg_version" main >/dev/null
fi
# Settings for a 24 GiB machine doing bulk writes: more cache, fewer checkpoints. Durability is untouched
# (fsync and synchronous_commit stay on: an acknowledged chunk is on disk).
conf_dir=/etc/postgresql/$pg_version/main/conf.d
if [ ! -f "$conf_dir/gpo.conf" ]; then
  mkdir -p "$conf_dir"
  cat >"$conf_dir/gpo.conf" <<'CONF'
shared_buffers = 2GB
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = on
max_connections = 200
CONF
  pg_lsclusters -h | grep -q "^$pg_version main .* online" && detached pg_ctlcluster "$pg_version" main restart
fi
if ! pg_lsclusters -h | grep -q "^$pg_version main .* online"; then
  detached pg_ctlcluster "$pg_version" main start
fi
for _ in $(seq 1 60); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.5
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='$PG_USER'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"create role $PG_USER login superuser password '$PG_PASSWORD'\"" >/dev/null
su postgres -c "psql -qtAc \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1 ||
  su postgres -c "createdb -O $PG_USER $PG_DB"

# RabbitMQ: started detached; the guest user may log in from loopback, which is all GPO's tests use.
rabbit_up() { detached rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }
if ! rabbit_up && pgrep -u rabbitmq -f beam.smp >/dev/null; then
  # The package's postinst may have started a node that is still booting: give it time.
  for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
fi
if ! rabbit_up; then
  # A node left half-started (no systemd here) is cleared before starting afresh.
  pkill -u rabbitmq -f beam.smp >/dev/null 2>&1 || true
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  detached su rabbitmq -s /bin/sh -c "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached" >/dev/null 2>&1 ||
    detached rabbitmq-server -detached >/dev/null 2>&1
  for _ in $(seq 1 120); do
    rabbit_up && break
    sleep 1
  done
  detached rabbitmq-diagnostics -q check_running
fi

# TLS on loopback buys nothing and costs CPU on every row; production URLs choose their own ssl mode.
echo "GPO_TEST_DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/$PG_DB?ssl=disable" >&3
echo "GPO_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/" >&3
