#!/usr/bin/env bash
# bench_target.sh sqlite|postgresql [PORT] [extra csms serve args...]
# A fresh `csms serve` for /work/shared/bench/compare.sh (TARGET_CMD): a new empty database each
# start (SQLite file in $BENCH_TMP, or the PostgreSQL database `bench` dropped and created on
# 127.0.0.1:5432), lab mode, no per-connection rate limit, the whole driver from one address with up to
# 100 connectors a charger (bench.py --connectors), WARNING logs.
set -eu
kind=${1:-sqlite}; port=${2:-9000}; shift 2 || shift $#
here=$(cd "$(dirname "$0")/.." && pwd)
py=${CSMS_PY:-$here/.venv/bin/python}
tmp=${BENCH_TMP:-/tmp/csms-bench-target}
mkdir -p "$tmp"
case $kind in
  sqlite) rm -f "$tmp"/bench.db*; db="sqlite:///$tmp/bench.db" ;;
  postgresql)
    "$py" - <<'PY'
import psycopg
with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
    c.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
    c.execute("CREATE DATABASE bench")
PY
    db="postgresql+psycopg://postgres@127.0.0.1:5432/bench" ;;
  *) echo "usage: bench_target.sh sqlite|postgresql [PORT] [args]" >&2; exit 2 ;;
esac
exec "$py" -m csms serve --db "$db" --ocpp-port "$port" --http-port $((port + 1)) \
  --allow-unknown-chargers --max-auto-registered 1000000 --accept-unknown-id-tags \
  --ocpp-messages-per-second 0 --max-connections 100000 --max-handshakes 1000 \
  --max-handshakes-per-address 1000 --max-connectors-per-charger 100 --log-level WARNING "$@"
