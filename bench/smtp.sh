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
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
N=${1:-2000}
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
