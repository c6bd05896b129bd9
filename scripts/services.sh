#!/usr/bin/env bash
# Brings up and provisions the services the tests (and a fleet) use, and fails loudly when one
# does not come up:
#
#   Redis       redis://127.0.0.1:6379
#   PostgreSQL  postgres://voxbridge:voxbridge@127.0.0.1:5432/voxbridge
#               (a login role `voxbridge` with password `voxbridge` that may create databases:
#               the tests make one fresh database per test; the database `voxbridge`)
#
# Those are the tests' defaults (crates/testkit). When REDIS_URL or DATABASE_URL is set, that
# server is used instead: it is checked, not started or provisioned.
#
# Installs redis-server and postgresql first when they are missing (scripts/setup.sh), creates
# and starts a PostgreSQL cluster when none exists, and is safe to run again: whatever is
# already up and provisioned is left alone. Exits 1 naming each service that stays down.
# Prints the URLs as `export` lines, so `eval "$(scripts/services.sh)"` also sets them.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { echo "services: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { for _ in $(seq 100); do port_open "$1" "$2" && return 0; sleep 0.1; done; return 1; }
# host and port of a URL such as redis://[user:pw@]host[:port][/db]
url_host() { local a="${1#*://}"; a="${a%%/*}"; a="${a##*@}"; echo "${a%:*}"; }
url_port() { local a="${1#*://}"; a="${a%%/*}"; a="${a##*@}"; [[ "$a" == *:* ]] && echo "${a##*:}" || echo "$2"; }
# The URL with any password replaced by *** (never print a secret).
masked() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# A server named by the user's URL ($2, e.g. REDIS_URL): checked, never started or provisioned.
check_given() {
  local name=$1 var=$2 url=$3 host port
  host=$(url_host "$url") port=$(url_port "$url" "$4")
  if port_open "$host" "$port"; then say "$name ($var) answers on $host:$port"; else
    say "ERROR: nothing answers at $var ($host:$port)"
    failed+=("$name")
  fi
}

failed=()

if [ -z "${REDIS_URL:-}${DATABASE_URL:-}" ] &&
  { ! command -v redis-server >/dev/null || ! command -v psql >/dev/null; }; then
  say "redis-server or postgresql missing: running scripts/setup.sh"
  scripts/setup.sh >&2 || failed+=("setup")
fi

# --- Redis -------------------------------------------------------------------------------
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
if [ -n "${REDIS_URL:-}" ]; then
  check_given redis REDIS_URL "$redis_url" 6379
elif port_open 127.0.0.1 6379; then
  say "redis up on 127.0.0.1:6379"
elif command -v redis-server >/dev/null; then
  mkdir -p /tmp/voxbridge-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/voxbridge-redis --logfile /tmp/voxbridge-redis/redis.log >&2
  if wait_port 127.0.0.1 6379; then say "started redis on 127.0.0.1:6379"; else
    say "ERROR: redis did not start (log: /tmp/voxbridge-redis/redis.log)"
    failed+=("redis")
  fi
else
  say "ERROR: redis-server is not installed and REDIS_URL is not set"
  failed+=("redis")
fi
if [[ ! " ${failed[*]} " =~ " redis " ]] && command -v redis-cli >/dev/null; then
  pong=$(redis-cli -u "$redis_url" PING 2>&1)
  [ "$pong" = PONG ] || { say "ERROR: redis at $(masked "$redis_url") answers PING with: $pong"; failed+=("redis"); }
fi

# --- PostgreSQL --------------------------------------------------------------------------
pg_url="${DATABASE_URL:-postgres://voxbridge:voxbridge@127.0.0.1:5432/voxbridge}"
# Runs psql as the server's superuser: over TCP as `postgres` where local TCP is trusted, else as
# the `postgres` OS user over the socket (peer auth, Debian's default).
pg_admin() {
  if psql -w -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    psql -w -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -tA "$@"
  elif command -v runuser >/dev/null && [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -tA "$@")
  else
    (cd / && sudo -u postgres psql -d postgres -v ON_ERROR_STOP=1 -tA "$@")
  fi
}
if [ -n "${DATABASE_URL:-}" ]; then
  check_given postgresql DATABASE_URL "$pg_url" 5432
else
  if ! port_open 127.0.0.1 5432; then
    if command -v pg_ctlcluster >/dev/null; then
      ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
      if [ -z "$ver" ]; then
        ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
        say "creating PostgreSQL $ver cluster 'main'"
        root pg_createcluster "$ver" main >&2
      fi
      root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 2>/dev/null ||
        root pg_ctlcluster "$ver" main start >&2
      if wait_port 127.0.0.1 5432; then say "started postgresql $ver on 127.0.0.1:5432"; else
        say "ERROR: postgresql $ver did not start (see /var/log/postgresql/)"
        failed+=("postgresql")
      fi
    else
      say "ERROR: postgresql is not installed and DATABASE_URL is not set"
      failed+=("postgresql")
    fi
  else
    say "postgresql up on 127.0.0.1:5432"
  fi
  if [[ ! " ${failed[*]} " =~ " postgresql " ]]; then
    # The role the tests log in as (password auth works whatever pg_hba says for local TCP:
    # trust, md5 or scram-sha-256) and its database.
    if pg_admin >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'voxbridge') THEN
    CREATE ROLE voxbridge LOGIN CREATEDB PASSWORD 'voxbridge';
  END IF;
END $$;
SQL
    then
      if [ "$(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = 'voxbridge'")" != 1 ]; then
        pg_admin -c "CREATE DATABASE voxbridge OWNER voxbridge" >/dev/null
      fi
      say "postgresql: role and database 'voxbridge' ready"
    else
      say "ERROR: could not provision PostgreSQL (no superuser access as 'postgres')"
      failed+=("postgresql")
    fi
  fi
fi
if [[ ! " ${failed[*]} " =~ " postgresql " ]]; then
  if ! out=$(PGCONNECT_TIMEOUT=5 psql -w "$pg_url" -tAc 'SELECT 1' 2>&1) || [ "$out" != 1 ]; then
    say "ERROR: SELECT 1 at $(masked "$pg_url") failed: $out"
    failed+=("postgresql")
  fi
fi

echo "export REDIS_URL='$redis_url'"
echo "export DATABASE_URL='$pg_url'"
if ((${#failed[@]})); then
  say "FAILED: ${failed[*]} not available; tests that need them will fail under CI=true and skip (counted) otherwise"
  exit 1
fi
say "ready: redis and postgresql"
