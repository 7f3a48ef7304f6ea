#!/usr/bin/env bash
# IMAP load benchmark: portcullis imapd against Dovecot configured the same way (maildir,
# plaintext LOGIN on loopback, static passwords), same machine, same load generator.
# Prints operations per second for 50 and 200 clients, the ratio, and portcullis's memory
# per idle IDLE connection. Needs dovecot-imapd.
# Usage: [REPEAT=3] [IDLE=5000] [OPS=1] [CPUPROFILE=file] bench/imap.sh [seconds]
# OPS=1 also prints the average latency per command kind for both servers; CPUPROFILE
# writes a CPU profile of the portcullis server over the whole run.
set -eu
SECS=${1:-20}
IDLE=${IDLE:-5000}
cd "$(dirname "$0")/.."
. bench/lib.sh
W=$(mktemp -d /tmp/imapbench.XXXXXX)
chmod 755 $W
trap 'kill $PPID_P 2>/dev/null || true; [ -f $W/run/master.pid ] && kill $(cat $W/run/master.pid) 2>/dev/null; sleep 1; rm -rf $W' EXIT
(cd bench && go build -o $W/imapload ./cmd/imapload)
P_ADDR=127.0.0.1:21143
D_PORT=21144

PROF=""
[ -n "${CPUPROFILE:-}" ] && PROF="-cpuprofile $(realpath -m "$CPUPROFILE")"
$W/imapload -serve $W/portcullis -listen $P_ADDR -pass secret $PROF &
PPID_P=$!

mkdir -p $W/dovecot $W/run $W/state
chown 65534:65534 $W/dovecot
dovecot_imap_conf $W $D_PORT "  driver = static
  args = password=secret" > $W/dovecot.conf
dovecot -c $W/dovecot.conf
sleep 2

# REPEAT rounds, alternating servers, so that load from other processes on the machine
# hits both alike; compare the per-round ratios.
for r in $(seq ${REPEAT:-1}); do
for n in 50 200; do
  p=$($W/imapload -addr $P_ADDR -clients $n -duration ${SECS}s 2>$W/p.ops | sed 's/.*ops_per_sec=//')
  d=$($W/imapload -addr 127.0.0.1:$D_PORT -clients $n -duration ${SECS}s 2>$W/d.ops | sed 's/.*ops_per_sec=//')
  echo "round=$r clients=$n portcullis_ops_per_sec=$p dovecot_ops_per_sec=$d ratio=$(echo "scale=2; $p / $d" | bc)"
  if [ -n "${OPS:-}" ]; then
    echo " portcullis:"; cat $W/p.ops
    echo " dovecot:"; cat $W/d.ops
  fi
done
done
$W/imapload -addr $P_ADDR -idle $IDLE -users 200 -server-pid $PPID_P
