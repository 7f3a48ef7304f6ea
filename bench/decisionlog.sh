#!/usr/bin/env bash
# bench/decisionlog.sh: what the decision log costs and how fast it answers.
#
# 1. SMTP: what the log costs in accepted messages per second, `bench/smtp.sh log N
#    ROUNDS` (two servers in the same run, log on and off, at 10 and 50 clients).
# 2. Search and insertion at size: cmd/dlbench fills a log with RECORDS synthetic records
#    (one year of a 30,000-user site), on SQLite and on PostgreSQL (Debian's postgresql,
#    a private cluster started here as the postgres user on a loopback port), reports
#    records per second inserted and the median and 95th percentile of each search.
#
# Usage: bench/decisionlog.sh [MESSAGES [RECORDS [ROUNDS]]]   (default 2000, 1000000, 3)
#        PARTS="smtp search" by default; PARTS=search runs only the second part;
#        STORES="sqlite postgres" by default; GENERATE=1 makes the records with SQL
#        inside the store, without its indexes, then builds the indexes and the charts'
#        counters (10 million records in minutes; the insert rate is then not the
#        server's: without it, records go through the log's writer as a server's do).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-2000}
RECORDS=${2:-1000000}
ROUNDS=${3:-3}
PARTS=${PARTS:-smtp search}
STORES=${STORES:-sqlite postgres}
W=$(bench_workdir decisionlog)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
cleanup() {
  [ -n "${PG_STARTED:-}" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

if [[ " $PARTS " == *" smtp "* ]]; then
  # One measurement of the SMTP cost, bench/smtp.sh's: two servers, log on and off.
  bash bench/smtp.sh log "$N" "$ROUNDS"
fi

if [[ " $PARTS " == *" search "* ]]; then
  (cd bench && go build -o "$W/dlbench" ./cmd/dlbench)
  if [[ " $STORES " == *" sqlite "* ]]; then
    echo; echo "SQLite, $RECORDS records:"
    "$W/dlbench" -records "$RECORDS" -path "$W/decisions.db" ${GENERATE:+-generate}
    ls -l "$W/decisions.db" | awk '{printf "database file: %.0f MiB\n", $5/1048576}'
    # KEEP=1 keeps the file (and the PostgreSQL cluster) for dlbench -records 0 runs
    if [ -n "${KEEP:-}" ]; then echo "kept: $W/decisions.db"; else rm -f "$W"/decisions.db*; fi
  fi
  if [[ " $STORES " != *" postgres "* ]]; then
    :
  elif [ -n "$PG_BIN" ]; then
    PG_PORT=$((30000 + RANDOM % 10000))
    mkdir -p "$W/pg" && chown postgres "$W/pg"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$W/pg/data" -U bench --auth=trust --no-sync >/dev/null
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w \
      -o "-p $PG_PORT -k $W/pg -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
    PG_STARTED=1
    echo; echo "PostgreSQL $(basename "$(dirname "$PG_BIN")"), $RECORDS records:"
    "$W/dlbench" -records "$RECORDS" -postgres "postgres://bench@127.0.0.1:$PG_PORT/postgres?sslmode=disable" ${GENERATE:+-generate} \
      -serverpid "$(head -1 "$W/pg/data/postmaster.pid")"
    [ -n "${KEEP:-}" ] && echo "kept: postgres://bench@127.0.0.1:$PG_PORT/postgres?sslmode=disable (stop: runuser -u postgres -- $PG_BIN/pg_ctl -D $W/pg/data stop)"
    echo "database size: $(psql -h 127.0.0.1 -p "$PG_PORT" -U bench -d postgres -Atc "SELECT pg_size_pretty(pg_database_size('postgres'))" 2>/dev/null || echo '?')"
  else
    echo "PostgreSQL is not installed: skipped (scripts/install-test-deps.sh installs it)"
  fi
fi
