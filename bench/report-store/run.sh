#!/usr/bin/env bash
# bench/report-store/run.sh — how fast rows reach the DMARC report store.
#
#   bench/report-store/run.sh [ROWS]        (as root: it starts a private PostgreSQL as user postgres)
#
# Runs examples/report_store_bench.rs (release) against a fresh SQLite file and a
# private PostgreSQL server on a free loopback port (its own data directory under
# /tmp, fsync on, stopped at the end). Prints rows/s for the daemons' writer, batched
# transactions, one-row transactions (as each `pipe` process writes) and, for SQLite,
# bare rusqlite in one transaction (the bound).
set -euo pipefail
ROWS=${1:-100000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
cargo build --release --example report_store_bench --quiet
BIN=target/release/examples/report_store_bench
WORK=$(mktemp -d /tmp/authgate-report-bench.XXXXXX)
chmod 777 "$WORK"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U authgate >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PORT -c listen_addresses=127.0.0.1 -k $WORK" start >/dev/null
echo "== SQLite (WAL, synchronous=NORMAL) on $(df --output=source "$WORK" | tail -1)"
"$BIN" "sqlite:$WORK/reports.db" "$ROWS"
echo "== PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1 (fsync on)"
"$BIN" "postgres://authgate@127.0.0.1:$PORT/postgres" "$ROWS"
