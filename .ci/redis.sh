#!/usr/bin/env bash
# Redis for the Redis backend's tests: redis-server and redis-cli on PATH (the tests spawn their own
# servers for Cluster, Sentinel, quorum and fault cases), and the shared Redis answering on
# 127.0.0.1:6379 (the contract suite and the benchmark use it under their own key prefixes).
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "redis.sh: installing redis-server and redis-tools from Debian's packages"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  echo "redis.sh: starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  # The machine's own command for its Redis (nothing kept on disk).
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && break
    sleep 0.2
  done
fi

redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG
echo "redis.sh: $(redis-server --version | cut -d' ' -f1-3) ready on 127.0.0.1:6379"
