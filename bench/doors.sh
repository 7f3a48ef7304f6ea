#!/usr/bin/env bash
# bench/doors.sh: the two Postfix doors, each against the program sites run there today,
# in the same run.
#
#  1. Policy delegation (check_policy_service): requests answered per second by
#     portcullis's policyd (its default rule file: HELO, sender and envelope checks, SPF
#     for our own domains) and by Debian's postgrey (greylisting in its Berkeley DB), the
#     same RCPT requests over 8 connections (cmd/policyload: 1000 triplets of client
#     address, sender and recipient, each request its own mail transaction). Target: 10x.
#     Then greylisting against greylisting: a second portcullis whose policyd runs the
#     same rules plus the greylist policy (postgrey's defaults, SQLite in its data dir)
#     and its 451 rule, against postgrey again, the same requests.
#  2. Milter (smtpd_milters): messages per second accepted by two identical private
#     Postfix instances (discard delivery), one with portcullis's milter (default rules
#     plus DMARC: the MIME walk, attachment and date checks, SPF, DMARC), one with
#     rspamd 3.4's proxy worker in milter mode (self_scan, its stock rules: MIME, regexp,
#     SPF, DKIM, DMARC, RBLs; no Redis, so no Bayes, fuzzy or greylisting), driven by
#     Postfix's smtp-source with 4 KiB messages at 10 concurrent sessions. Target: 1.0x.
#
# Neither side does real DNS: portcullis and rspamd ask a closed loopback port, so every
# lookup fails at once for both.
#
# Usage: bench/doors.sh [REQUESTS] [MESSAGES]   (defaults 10000 and 2000; needs root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
REQ=${1:-10000}
N=${2:-2000}
command -v postgrey >/dev/null && command -v rspamd >/dev/null && command -v smtp-source >/dev/null || bash scripts/install-test-deps.sh
W=$(bench_workdir doors)
BASE=$((20000 + RANDOM % 10000))
PG_PORT=$BASE; PD_PORT=$((BASE + 1)); MX_PORT=$((BASE + 2)); MI_PORT=$((BASE + 3))
RS_PORT=$((BASE + 4)); PFA_PORT=$((BASE + 5)); PFB_PORT=$((BASE + 6))
GX_PORT=$((BASE + 7)); GD_PORT=$((BASE + 8))
cleanup() {
  for p in ${PC_PID:-} ${PG_PID:-} ${RS_PID:-} ${GC_PID:-}; do kill "$p" 2>/dev/null || true; done
  stop_postfix "$W/pfa"; stop_postfix "$W/pfb"
  sleep 1
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

(cd bench && go build -o "$W/policyload" ./cmd/policyload)
go build -o "$W/portcullis" ./cmd/portcullis

# --- portcullis: policyd and milter on the default rules plus DMARC.
cp config/default-rules.yaml "$W/rules.yaml"
sed -i 's/^  # dmarc: { dmarc: {} }/  dmarc: { dmarc: {} }/' "$W/rules.yaml"
cat >> "$W/rules.yaml" <<'YAML'
  - name: dmarc-reject
    stage: data
    if: dmarc.fail && dmarc.policy == "reject" && !client.authenticated
    reject: '550 5.7.1 "DMARC policy of {{dmarc.from_domain}} rejects this message"'
YAML
{
  portcullis_config "$W/pc" "$MX_PORT"
  cat <<YAML
http: { addr: "" }
rules: $W/rules.yaml
trusted_networks: [192.0.2.0/24]
log: { level: warn }
policyd: { addr: "127.0.0.1:$PD_PORT" }
milter: { addr: "127.0.0.1:$MI_PORT" }
YAML
} > "$W/pc.yaml"
"$W/portcullis" serve --config "$W/pc.yaml" 2>"$W/pc.log" &
PC_PID=$!

# --- a second portcullis: policyd only, the same rules plus greylisting.
sed 's/^policies:/policies:\n  grey: { greylist: {} }/' "$W/rules.yaml" > "$W/rules-grey.yaml"
cat >> "$W/rules-grey.yaml" <<'YAML'
  - name: greylist
    stage: rcpt
    if: grey.greylisted
    tempfail: "{{grey.reply}}"
YAML
{
  portcullis_config "$W/pcg" "$GX_PORT"
  cat <<YAML
http: { addr: "" }
rules: $W/rules-grey.yaml
trusted_networks: [192.0.2.0/24]
log: { level: warn }
policyd: { addr: "127.0.0.1:$GD_PORT" }
YAML
} > "$W/pcg.yaml"
"$W/portcullis" serve --config "$W/pcg.yaml" 2>"$W/pcg.log" &
GC_PID=$!

# --- postgrey.
mkdir -p "$W/pg"; chown postgrey "$W/pg"
postgrey --inet="127.0.0.1:$PG_PORT" --dbdir="$W/pg" >"$W/pg.log" 2>&1 &
PG_PID=$!

# --- rspamd: its stock configuration with a private local.d: one proxy worker in milter
# mode scanning itself, no normal, controller or fuzzy worker, DNS to a closed port.
mkdir -p "$W/rs/local.d" "$W/rs/run" "$W/rs/db" "$W/rs/log"
cat > "$W/rs/local.d/worker-proxy.inc" <<INC
bind_socket = "127.0.0.1:$RS_PORT";
milter = yes;
timeout = 120s;
count = 2;
upstream "local" { default = yes; self_scan = yes; }
INC
for w in normal controller fuzzy; do echo 'enabled = false;' > "$W/rs/local.d/worker-$w.inc"; done
echo 'dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }' > "$W/rs/local.d/options.inc"
echo 'type = "console"; level = "error";' > "$W/rs/local.d/logging.inc"
chown -R _rspamd:_rspamd "$W/rs"
rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf --var LOCAL_CONFDIR="$W/rs" \
  --var RUNDIR="$W/rs/run" --var DBDIR="$W/rs/db" --var LOGDIR="$W/rs/log" >"$W/rs.log" 2>&1 &
RS_PID=$!

# --- two Postfix instances that differ only in their milter.
for x in a:$PFA_PORT:$MI_PORT b:$PFB_PORT:$RS_PORT; do
  IFS=: read -r n port mport <<<"$x"
  d="$W/pf$n"
  mkdir -p "$d/etc" "$d/spool" "$d/lib"; chown postfix "$d/lib"
  { postfix_main_cf "$d"; cat <<CF
virtual_mailbox_domains = example.test
virtual_transport = discard:
smtpd_milters = inet:127.0.0.1:$mport
milter_protocol = 6
milter_default_action = tempfail
CF
  } > "$d/etc/main.cf"
  start_postfix "$d" "$port"
done

wait_port "$PG_PORT" postgrey "$PG_PID" "$W/pg.log"
wait_port "$PD_PORT" portcullis "$PC_PID" "$W/pc.log"
wait_port "$GD_PORT" portcullis "$GC_PID" "$W/pcg.log"
wait_port "$MI_PORT" portcullis "$PC_PID" "$W/pc.log"
for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$RS_PORT") 2>/dev/null && break; sleep 0.2; done  # rspamd compiles its rules first
wait_port "$RS_PORT" rspamd "$RS_PID" "$W/rs.log"
wait_port "$PFA_PORT" postfix; wait_port "$PFB_PORT" postfix
ratio() { if [ "$2" != 0 ]; then echo "$1 / $2" | bc -l; else echo 0; fi; }

# --- 1. policy delegation.
"$W/policyload" -addr "127.0.0.1:$PG_PORT" -n 500 >/dev/null 2>&1; "$W/policyload" -addr "127.0.0.1:$PD_PORT" -n 2000 >/dev/null 2>&1  # warm up
pg=$("$W/policyload" -addr "127.0.0.1:$PG_PORT" -n "$REQ" 2>>"$W/load.err")
pd=$("$W/policyload" -addr "127.0.0.1:$PD_PORT" -n "$REQ" 2>>"$W/load.err")
cat "$W/load.err" >&2
printf '%-34s %12s %12s %8s\n' "policy delegation (req/s)" postgrey portcullis ratio
printf '%-34s %12.0f %12.0f %7.1fx\n' "$REQ requests, 8 connections" "$pg" "$pd" "$(ratio "$pd" "$pg")"
: >"$W/load.err"
"$W/policyload" -addr "127.0.0.1:$GD_PORT" -n 2000 >/dev/null 2>&1  # warm up
pg=$("$W/policyload" -addr "127.0.0.1:$PG_PORT" -n "$REQ" 2>>"$W/load.err")
gd=$("$W/policyload" -addr "127.0.0.1:$GD_PORT" -n "$REQ" 2>>"$W/load.err")
cat "$W/load.err" >&2
printf '%-34s %12.0f %12.0f %7.1fx\n' "  both greylisting" "$pg" "$gd" "$(ratio "$gd" "$pg")"

# --- 2. milter.
rate() { # PORT: messages per second for N messages at 10 sessions
  local start end
  start=$(date +%s.%N)
  if ! smtp-source -M client.example.net -s 10 -l 4096 -m "$N" -d -f bench@example.net -t postmaster@example.test -c "127.0.0.1:$1" >/dev/null 2>"$W/source.err"; then
    echo "bench/doors.sh: smtp-source against port $1: $(cat "$W/source.err")" >&2
    echo 0; return
  fi
  end=$(date +%s.%N)
  echo "$N / ($end - $start)" | bc -l
}
rate "$PFA_PORT" >/dev/null; rate "$PFB_PORT" >/dev/null  # warm up
rs=$(rate "$PFB_PORT"); pc=$(rate "$PFA_PORT")
printf '%-34s %12s %12s %8s\n' "milter behind Postfix (msg/s)" rspamd portcullis ratio
printf '%-34s %12.0f %12.0f %7.2fx\n' "$N messages, 10 sessions" "$rs" "$pc" "$(ratio "$pc" "$rs")"
for n in a b; do
  rej=$(grep -c 'milter-reject' "$W/pf$n/maillog" || true)
  [ "$rej" = 0 ] || echo "bench/doors.sh: Postfix $n logged $rej milter rejections: $(grep -m1 milter-reject "$W/pf$n/maillog")" >&2
done
