#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) are up when they are
# installed locally. Tests that need them read REDIS_URL / DATABASE_URL when set.
# Safe to run repeatedly; a service that is already up is left alone.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open 6379; then
  echo "services: redis up on 127.0.0.1:6379"
elif command -v redis-server >/dev/null; then
  mkdir -p /tmp/voxbridge-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/voxbridge-redis --logfile /tmp/voxbridge-redis/redis.log
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
  port_open 6379 && echo "services: started redis on 127.0.0.1:6379" || echo "services: WARNING redis did not start"
else
  echo "services: WARNING redis-server not installed; Redis tests will skip"
fi

if port_open 5432; then
  echo "services: postgresql up on 127.0.0.1:5432"
elif command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start || true
  for _ in $(seq 100); do port_open 5432 && break; sleep 0.1; done
  port_open 5432 && echo "services: started postgresql $ver on 127.0.0.1:5432" || echo "services: WARNING postgresql did not start"
else
  echo "services: WARNING postgresql not installed; PostgreSQL tests will skip"
fi
exit 0
