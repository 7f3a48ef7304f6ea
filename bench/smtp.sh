#!/usr/bin/env bash
# bench/smtp.sh: messages per second accepted and durably stored, portcullis versus Postfix,
# in the same run, driven by Postfix's smtp-source (4 KiB messages, one session per client
# sending its share of the messages) at 1, 10 and 50 concurrent clients.
#
# Both servers answer 250 only after the message is fsynced in their queue; both have
# loopback as a trusted network; Postfix delivers to a maildir with its virtual(8) agent
# and portcullis with its local delivery agent (when present), while accepting.
# portcullis runs with its default rule file (the built-in content and date policies on).
# It runs twice: on its defaults, where the deliveries of a burst wait until the burst is
# accepted (delivery.inflow_delay, at most 2 s), and with inflow_delay off, delivering
# alongside as Postfix does ("alongside" column). Both are printed, with their ratios.
# Neither does DNS: Postfix has smtpd_peername_lookup = no, portcullis a resolver on a closed
# loopback port (lookups fail at once), so neither ever queries the machine's resolver.
#
# Usage: bench/smtp.sh [MESSAGES]   (default 2000 per run; needs root for Postfix)
#
#        bench/smtp.sh log [MESSAGES [ROUNDS]]   (default 2000, 6): what the decision log
#        costs. Two portcullis servers in the same run, the log on (its default, SQLite
#        under the data dir) and off (stats: { disable: true }), at 10 and 50 clients,
#        alternating which goes first, ROUNDS times: the median rate of each, the cost
#        (1 - on/off), the server's CPU per message (user + system from /proc,
#        deliveries included) and every round's rates, since a shared machine makes
#        single rounds vary by tens of percent. ON_EXTRA is YAML appended to the "on"
#        server's config (e.g. ON_EXTRA='stats: { path: /dev/shm/d.db }' to take the
#        log's disk out); CLIENTS="10 50" by default. PROFILE=1 then profiles each
#        server in turn (pprof on a loopback HTTP port) over one more round at the last
#        client count: PSEC seconds of CPU (default 20, enough for the burst and its
#        deliveries) and the allocations of the round, in .cache/smtp-log-{on,off}.{cpu,
#        allocs}.pprof; compare with go tool pprof -top -diff_base off.cpu.pprof on.cpu.pprof.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
if [ "${1:-}" = log ]; then
  shift
  exec bash "$(dirname "$0")/smtp.sh" __log "$@"
fi
MODE=
if [ "${1:-}" = __log ]; then MODE=log; shift; fi
N=${1:-2000}
ROUNDS=${2:-6}
SIZE=4096
command -v smtp-source >/dev/null || bash scripts/install-test-deps.sh
W=$(bench_workdir smtp)
PF_PORT=$((20000 + RANDOM % 10000)); PC_PORT=$((PF_PORT + 1)); PA_PORT=$((PF_PORT + 2))
cleanup() {
  [ -n "${PC_PID:-}" ] && kill "$PC_PID" 2>/dev/null || true
  [ -n "${PA_PID:-}" ] && kill "$PA_PID" 2>/dev/null || true
  stop_postfix "$W/pf"
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

if [ "$MODE" = log ]; then
  cleanup() {
    [ -n "${ON_PID:-}" ] && kill "$ON_PID" 2>/dev/null || true
    [ -n "${OFF_PID:-}" ] && kill "$OFF_PID" 2>/dev/null || true
    sleep 1
    rm -rf "$W"
  }
  trap cleanup EXIT
  [ -n "${KEEP:-}" ] && trap - EXIT
  go build -o "$W/portcullis" ./cmd/portcullis
  ON_PORT=$((20000 + RANDOM % 10000)); OFF_PORT=$((ON_PORT + 1))
  # the profiler only with PROFILE: it needs an HTTP address (an empty one turns it off)
  ON_HTTP='http: { addr: "" }'; OFF_HTTP=$ON_HTTP
  if [ -n "${PROFILE:-}" ]; then
    ON_HTTP_PORT=$((ON_PORT + 2)); OFF_HTTP_PORT=$((ON_PORT + 3))
    ON_HTTP="http: { addr: \"127.0.0.1:$ON_HTTP_PORT\", pprof: true }"; OFF_HTTP="http: { addr: \"127.0.0.1:$OFF_HTTP_PORT\", pprof: true }"
  fi
  { portcullis_config "$W/on" "$ON_PORT"; printf '%s\n%s\n%s\n' "$ON_HTTP" "${EXTRA:-}" "${ON_EXTRA:-}"; } > "$W/on.yaml"
  { portcullis_config "$W/off" "$OFF_PORT"; printf '%s\nstats: { disable: true }\n%s\n' "$OFF_HTTP" "${EXTRA:-}"; } > "$W/off.yaml"
  "$W/portcullis" serve --config "$W/on.yaml" 2>"$W/on.log" & ON_PID=$!
  "$W/portcullis" serve --config "$W/off.yaml" 2>"$W/off.log" & OFF_PID=$!
  wait_port "$ON_PORT" portcullis "$ON_PID" "$W/on.log"; wait_port "$OFF_PORT" portcullis "$OFF_PID" "$W/off.log"
  median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }  # PID: seconds
  drained() { # LOG
    local want
    want=$(grep -c 'smtp message queued' "$1")
    for _ in $(seq 600); do [ "$(grep -c 'status=delivered' "$1")" -ge "$want" ] && return; sleep 0.1; done
  }
  lrate() { # PORT CLIENTS PID CPUFILE LOG: messages/s; CPU ms per message appended to CPUFILE
    local start end c0
    c0=$(cpu "$3")
    start=$(date +%s.%N)
    smtp-source -s "$2" -l "$SIZE" -m "$N" -d -f bench@example.net -t postmaster@example.test -c "127.0.0.1:$1" >/dev/null 2>"$W/source.err" || { echo 0; return; }
    end=$(date +%s.%N)
    drained "$5"; echo "($(cpu "$3") - $c0) * 1000 / $N" | bc -l >> "$4"
    echo "$N / ($end - $start)" | bc -l
  }
  lrate "$ON_PORT" 5 "$ON_PID" /dev/null "$W/on.log" >/dev/null; lrate "$OFF_PORT" 5 "$OFF_PID" /dev/null "$W/off.log" >/dev/null  # warm up
  printf '%-8s %9s %9s %7s %12s %12s %7s   (medians of %s rounds of %s messages)\n' clients "on msg/s" "off msg/s" cost "on CPU ms/msg" "off" cost "$ROUNDS" "$N"
  for c in ${CLIENTS:-10 50}; do
    : > "$W/on.rates"; : > "$W/off.rates"; : > "$W/on.cpu"; : > "$W/off.cpu"
    for r in $(seq "$ROUNDS"); do
      if (( r % 2 )); then
        lrate "$ON_PORT" "$c" "$ON_PID" "$W/on.cpu" "$W/on.log" >> "$W/on.rates"
        lrate "$OFF_PORT" "$c" "$OFF_PID" "$W/off.cpu" "$W/off.log" >> "$W/off.rates"
      else
        lrate "$OFF_PORT" "$c" "$OFF_PID" "$W/off.cpu" "$W/off.log" >> "$W/off.rates"
        lrate "$ON_PORT" "$c" "$ON_PID" "$W/on.cpu" "$W/on.log" >> "$W/on.rates"
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
  echo "dropped records (buffer full): $(grep -c 'records dropped' "$W/on.log" || true) log lines"
  if [ -n "${PROFILE:-}" ]; then
    last=${CLIENTS:-10 50}; last=${last##* }
    mkdir -p .cache
    for s in on off; do
      if [ $s = on ]; then hp=$ON_HTTP_PORT port=$ON_PORT pid=$ON_PID; else hp=$OFF_HTTP_PORT port=$OFF_PORT pid=$OFF_PID; fi
      P="$PWD/.cache/smtp-log-$s"
      curl -s -o "$W/$s.allocs0" "http://127.0.0.1:$hp/debug/pprof/allocs"
      curl -s -o "$P.cpu.pprof" "http://127.0.0.1:$hp/debug/pprof/profile?seconds=${PSEC:-20}" & prof=$!
      : > "$W/$s.pcpu"
      r=$(lrate "$port" "$last" "$pid" "$W/$s.pcpu" "$W/$s.log")
      wait "$prof"
      curl -s -o "$W/$s.allocs1" "http://127.0.0.1:$hp/debug/pprof/allocs"
      go tool pprof -proto -base "$W/$s.allocs0" "$W/$s.allocs1" > "$P.allocs.pprof" 2>/dev/null
      printf 'profile %-3s (%s clients): %.0f msg/s, %.3f CPU ms/msg, in %s.{cpu,allocs}.pprof\n' "$s" "$last" "$r" "$(cat "$W/$s.pcpu")" "$P"
    done
    echo "  compare: go tool pprof -top -diff_base .cache/smtp-log-off.cpu.pprof .cache/smtp-log-on.cpu.pprof"
  fi
  exit 0
fi

# --- Postfix: a private instance in $W/pf. postfix -c needs the default main.cf to list it
# in alternate_config_directories; the line is added only while Postfix starts, under the
# lock delivery/relay/postfixtest and bench/delivery.sh use too, then the file is restored.
mkdir -p "$W/pf/etc" "$W/pf/spool" "$W/pf/lib" "$W/pf/vmail"
chown postfix "$W/pf/lib"; chown nobody:nogroup "$W/pf/vmail"
{
  postfix_main_cf "$W/pf"
  cat <<CF
virtual_mailbox_domains = example.test
virtual_mailbox_base = $W/pf/vmail
virtual_mailbox_maps = static:postmaster/Maildir/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
CF
} > "$W/pf/etc/main.cf"
start_postfix "$W/pf" "$PF_PORT"

# --- portcullis on its defaults, MX only.
go build -o "$W/portcullis" ./cmd/portcullis
pc_config() { # NAME PORT [EXTRA YAML]
  { portcullis_config "$W/$1" "$2"; printf 'http: { addr: "" }\n%s\n' "${3:-}"; } > "$W/$1.yaml"
}
pc_config pc "$PC_PORT"
pc_config pa "$PA_PORT" "delivery: { inflow_delay: -1s }"
"$W/portcullis" serve --config "$W/pc.yaml" 2>"$W/pc.log" &
PC_PID=$!
"$W/portcullis" serve --config "$W/pa.yaml" 2>"$W/pa.log" &
PA_PID=$!

wait_port "$PF_PORT" postfix; wait_port "$PC_PORT" portcullis "$PC_PID" "$W/pc.log"; wait_port "$PA_PORT" portcullis "$PA_PID" "$W/pa.log"

# rate PORT CLIENTS: messages per second for N messages.
rate() {
  local start end
  start=$(date +%s.%N)
  if ! smtp-source -s "$2" -l "$SIZE" -m "$N" -d -f bench@example.net -t postmaster@example.test -c "127.0.0.1:$1" >/dev/null 2>"$W/source.err"; then
    echo "bench/smtp.sh: smtp-source against port $1 ($( [ "$1" = "$PF_PORT" ] && echo postfix || echo portcullis)), $2 clients: $(cat "$W/source.err")" >&2
    echo 0; return  # a run that did not send all N messages has no rate
  fi
  end=$(date +%s.%N)
  echo "$N / ($end - $start)" | bc -l
}
rate "$PF_PORT" 5 >/dev/null; rate "$PC_PORT" 5 >/dev/null; rate "$PA_PORT" 5 >/dev/null   # warm up

# drained PORT-LOG: wait until the server has delivered everything it accepted, so that a
# run's deliveries do not spill into the next server's run.
drained() {
  local want
  want=$(grep -c 'smtp message queued' "$1")
  for _ in $(seq 600); do [ "$(grep -c 'status=delivered' "$1")" -ge "$want" ] && return; sleep 0.1; done
}
pf_drained() {
  for _ in $(seq 600); do [ -z "$(find "$W/pf/spool/incoming" "$W/pf/spool/active" -type f 2>/dev/null | head -1)" ] && return; sleep 0.1; done
}
ratio() { if [ "$2" != 0 ]; then echo "$1 / $2" | bc -l; else echo 0; fi; }

printf '%-8s %14s %14s %8s %14s %8s\n' clients "postfix msg/s" "portcullis" ratio "alongside" ratio
for c in 1 10 50; do
  pf=$(rate "$PF_PORT" "$c"); pf_drained
  pc=$(rate "$PC_PORT" "$c"); drained "$W/pc.log"
  pa=$(rate "$PA_PORT" "$c"); drained "$W/pa.log"
  printf '%-8s %14.0f %14.0f %7.2fx %14.0f %7.2fx\n' "$c" "$pf" "$pc" "$(ratio "$pc" "$pf")" "$pa" "$(ratio "$pa" "$pf")"
done
