#!/usr/bin/env bash
# Makes what the PostgreSQL backend's tests need available:
# - the local PostgreSQL answering on 127.0.0.1:5432 (trust auth, database "test"), started when not;
# - the server programs (initdb, pg_ctl) for the tests' private servers (they come with it);
# - pgbouncer, installed from Debian's packages when missing (the tests start their own).
set -euo pipefail

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

pg_answers() {
  pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null
}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  apt_install postgresql postgresql-client
fi

if ! pg_answers; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "PostgreSQL does not answer on 127.0.0.1:5432: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 30); do
  pg_answers && break
  sleep 1
done
if ! pg_answers; then
  echo "PostgreSQL still does not answer on 127.0.0.1:5432" >&2
  exit 1
fi

if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
fi

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  apt_install pgbouncer
fi

echo "PostgreSQL answers on 127.0.0.1:5432; pgbouncer: $( (command -v pgbouncer || echo /usr/sbin/pgbouncer) | head -n 1)"
