#!/bin/sh
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
cat > $W/dovecot.conf <<CONF
base_dir = $W/run
state_dir = $W/state
log_path = $W/dovecot.log
ssl = no
listen = 127.0.0.1
protocols = imap
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$W/dovecot/%u/Maildir
mail_max_userip_connections = 10000
default_process_limit = 1000
default_client_limit = 20000
default_vsz_limit = 0
first_valid_uid = 1
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$W/dovecot/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $D_PORT
  }
  service_count = 0
  process_min_avail = 2
}
# Dovecot forks an imap process per session; under load a fork made a login take 1 s
# (6 s at 200 clients). Reused, pre-started processes (service_count = 0,
# process_min_avail) bring that to about 60 ms, so Dovecot runs at its best here.
service imap {
  process_limit = 1000
  service_count = 0
  process_min_avail = 64
}
CONF
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
