#!/usr/bin/env bash
# bench/decisionlog.sh: what the decision log costs and how fast it answers.
#
# 1. SMTP: messages per second accepted by portcullis with the decision log on (its
#    default, SQLite under the data dir) and off (stats: { disable: true }), two servers
#    in the same run, driven by Postfix's smtp-source (4 KiB messages) at 10 and 50
#    clients, alternating, ROUNDS times; the median of each and the cost (1 - on/off).
#    On a shared machine the rates are noisy: the server's CPU time per message (user +
#    system, from /proc, deliveries included) is printed too, with its cost (on/off - 1).
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
SIZE=4096
W=$(bench_workdir decisionlog)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
cleanup() {
  [ -n "${ON_PID:-}" ] && kill "$ON_PID" 2>/dev/null || true
  [ -n "${OFF_PID:-}" ] && kill "$OFF_PID" 2>/dev/null || true
  [ -n "${PG_STARTED:-}" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

if [[ " $PARTS " == *" smtp "* ]]; then
  command -v smtp-source >/dev/null || bash scripts/install-test-deps.sh
  go build -o "$W/portcullis" ./cmd/portcullis
  ON_PORT=$((20000 + RANDOM % 10000)); OFF_PORT=$((ON_PORT + 1))
  { portcullis_config "$W/on" "$ON_PORT"; printf 'http: { addr: "" }\n'; } > "$W/on.yaml"
  { portcullis_config "$W/off" "$OFF_PORT"; printf 'http: { addr: "" }\nstats: { disable: true }\n'; } > "$W/off.yaml"
  "$W/portcullis" serve --config "$W/on.yaml" 2>"$W/on.log" & ON_PID=$!
  "$W/portcullis" serve --config "$W/off.yaml" 2>"$W/off.log" & OFF_PID=$!
  wait_port "$ON_PORT" portcullis "$ON_PID" "$W/on.log"; wait_port "$OFF_PORT" portcullis "$OFF_PID" "$W/off.log"
  cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }  # PID: seconds
  rate() { # PORT CLIENTS [PID CPUFILE LOG]: messages/s; CPU ms per message appended to CPUFILE
    local start end c0
    [ -n "${3:-}" ] && c0=$(cpu "$3")
    start=$(date +%s.%N)
    smtp-source -s "$2" -l "$SIZE" -m "$N" -d -f bench@example.net -t postmaster@example.test -c "127.0.0.1:$1" >/dev/null 2>"$W/source.err" || { echo 0; return; }
    end=$(date +%s.%N)
    if [ -n "${3:-}" ]; then drained "$5"; echo "($(cpu "$3") - $c0) * 1000 / $N" | bc -l >> "$4"; fi
    echo "$N / ($end - $start)" | bc -l
  }
  drained() { # LOG
    local want
    want=$(grep -c 'smtp message queued' "$1")
    for _ in $(seq 600); do [ "$(grep -c 'status=delivered' "$1")" -ge "$want" ] && return; sleep 0.1; done
  }
  rate "$ON_PORT" 5 >/dev/null; rate "$OFF_PORT" 5 >/dev/null; drained "$W/on.log"; drained "$W/off.log"  # warm up
  printf '%-8s %9s %9s %7s %12s %12s %7s   (medians of %s rounds of %s messages)\n' clients "on msg/s" "off msg/s" cost "on CPU ms/msg" "off" cost "$ROUNDS" "$N"
  for c in 10 50; do
    : > "$W/on.rates"; : > "$W/off.rates"; : > "$W/on.cpu"; : > "$W/off.cpu"
    for r in $(seq "$ROUNDS"); do
      if (( r % 2 )); then
        rate "$ON_PORT" "$c" "$ON_PID" "$W/on.cpu" "$W/on.log" >> "$W/on.rates"
        rate "$OFF_PORT" "$c" "$OFF_PID" "$W/off.cpu" "$W/off.log" >> "$W/off.rates"
      else
        rate "$OFF_PORT" "$c" "$OFF_PID" "$W/off.cpu" "$W/off.log" >> "$W/off.rates"
        rate "$ON_PORT" "$c" "$ON_PID" "$W/on.cpu" "$W/on.log" >> "$W/on.rates"
      fi
    done
    on=$(median < "$W/on.rates"); off=$(median < "$W/off.rates")
    onc=$(median < "$W/on.cpu"); offc=$(median < "$W/off.cpu")
    printf '%-8s %9.0f %9.0f %6.1f%% %12.3f %12.3f %6.1f%%\n' "$c" "$on" "$off" "$(echo "(1 - $on / $off) * 100" | bc -l)" \
      "$onc" "$offc" "$(echo "($onc / $offc - 1) * 100" | bc -l)"
    printf '         rates on: %s off: %s; CPU ms on: %s off: %s\n' \
      "$(xargs printf '%.0f ' < "$W/on.rates")" "$(xargs printf '%.0f ' < "$W/off.rates")" \
      "$(xargs printf '%.3f ' < "$W/on.cpu")" "$(xargs printf '%.3f ' < "$W/off.cpu")"
  done
  kill "$ON_PID" "$OFF_PID"; wait "$ON_PID" "$OFF_PID" 2>/dev/null || true; ON_PID=; OFF_PID=
  echo "dropped records (buffer full): $(grep -c 'records dropped' "$W/on.log" || true) log lines"
fi

if [[ " $PARTS " == *" search "* ]]; then
  (cd bench && go build -o "$W/dlbench" ./cmd/dlbench)
  if [[ " $STORES " == *" sqlite "* ]]; then
    echo; echo "SQLite, $RECORDS records:"
    "$W/dlbench" -records "$RECORDS" -path "$W/decisions.db" ${GENERATE:+-generate}
    ls -l "$W/decisions.db" | awk '{printf "database file: %.0f MiB\n", $5/1048576}'
    rm -f "$W"/decisions.db*
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
    "$W/dlbench" -records "$RECORDS" -postgres "postgres://bench@127.0.0.1:$PG_PORT/postgres?sslmode=disable" ${GENERATE:+-generate}
    echo "database size: $(psql -h 127.0.0.1 -p "$PG_PORT" -U bench -d postgres -Atc "SELECT pg_size_pretty(pg_database_size('postgres'))" 2>/dev/null || echo '?')"
  else
    echo "PostgreSQL is not installed: skipped (scripts/install-test-deps.sh installs it)"
  fi
fi
