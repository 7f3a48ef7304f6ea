#!/bin/bash
# Scale-out capacity (issue 21): delivered messages/s and IMAP operations/s with 1, 2 and
# 3 back-ends (mode: backend) behind 2 front-ends (mode: frontend) and 1 proxy (mode:
# proxy), over one PostgreSQL directory, every process separate on loopback, the three
# sizes in the same run.
#   messages: smtp-source sends MSGS messages (4 KiB) split over the front-ends and the
#     users; the clock stops when the last one is in a back-end's maildir.
#   IMAP: imapload's operation mix (bench/cmd/imapload) through the proxy's imaps_addr,
#     CLIENTS clients over the users, for SECS seconds.
# Usage: [MSGS=600] [USERS=12] [CLIENTS=12] [SECS=10] bench/scaleout.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
MSGS=${MSGS:-600} USERS=${USERS:-12} CLIENTS=${CLIENTS:-12} SECS=${SECS:-10}
command -v smtp-source >/dev/null || bash scripts/install-test-deps.sh
W=$(bench_workdir scaleout)
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait $p 2>/dev/null || true; done; PIDS=(); }
trap 'stop_all; stop_postgres $W; sleep 1; [ -n "${KEEP:-}" ] || rm -rf $W' EXIT
go build -o $W/portcullis ./cmd/portcullis
(cd bench && go build -o $W/imapload ./cmd/imapload)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $W/master.secret

# PostgreSQL, as its own user.
PGPORT=21500
start_postgres $W $PGPORT

count_delivered() { # DIR...: messages in the back-ends' INBOXes
  find "$@" -path '*/Maildir/new/*' -type f 2>/dev/null | wc -l
}

for N in ${SIZES:-1 2 3}; do
  R=$W/n$N
  mkdir -p $R
  psql -q -h 127.0.0.1 -p $PGPORT -U portcullis -d postgres -c "CREATE DATABASE n$N"
  DSN="postgres://portcullis@127.0.0.1:$PGPORT/n$N?sslmode=disable"
  HOSTS="" BACKENDS=""
  for i in $(seq $N); do
    HOSTS+="    store$i: { lmtp: \"127.0.0.1:2$((1600+i*10))\" }
"
    BACKENDS+="    store$i: { imap: \"127.0.0.1:2$((1600+i*10+1))\" }
"
  done
  for i in $(seq $N); do
    portcullis_config $R/store$i/data 2$((1600+i*10+2)) | sed '/^imap:/d; /^smtp:/,$d' > $R/store$i.yaml
    cat >> $R/store$i.yaml <<CF
mode: backend
trusted_networks: [127.0.0.1/32]
http: { addr: "" }
log: { level: warn }
smtp: { listeners: [ { name: lmtp, addr: "127.0.0.1:2$((1600+i*10))", mode: lmtp } ] }
imap: { addr: "127.0.0.1:2$((1600+i*10+1))", proxy_protocol: true, proxy_from: [127.0.0.1/32] }
proxy: { master_user: proxy, master_secret_file: $W/master.secret }
directory: { postgres: "$DSN", this_host: store$i }
CF
  done
  for f in 1 2; do
    portcullis_config $R/fe$f/data 2$((1700+f)) > $R/fe$f.yaml
    cat >> $R/fe$f.yaml <<CF
mode: frontend
trusted_networks: [192.0.2.0/24]
http: { addr: "" }
log: { level: warn }
delivery: { min_backoff: 1s, max_backoff: 2s }
directory:
  postgres: "$DSN"
  hosts:
$HOSTS
CF
  done
  cat > $R/proxy.yaml <<CF
hostname: proxy.example.test
mode: proxy
data_dir: $R/proxy/data
http: { addr: "" }
log: { level: warn }
directory: { postgres: "$DSN" }
proxy:
  imaps_addr: "127.0.0.1:21799"
  master_user: proxy
  master_secret_file: $W/master.secret
  backends:
$BACKENDS
CF
  for n in $(seq $N | sed 's/^/store/') fe1 fe2 proxy; do mkdir -p $R/$n/data; done
  for u in $(seq 0 $((USERS - 1))); do
    echo "bench pw 123456" | $W/portcullis user add user$u@example.test --host store$((u % N + 1)) --password-stdin --config $R/fe1.yaml >/dev/null
  done
  serve() { $W/portcullis serve --config $R/$1.yaml 2>$R/$1.log & PIDS+=($!); }
  for n in $(seq $N | sed 's/^/store/') fe1 fe2; do serve $n; done
  for i in $(seq $N); do wait_port 2$((1600+i*10+1)) store$i; done
  wait_port 21701 fe1; wait_port 21702 fe2
  serve proxy # after the back-ends: its first health check would find them down
  wait_port 21799 proxy

  # Messages: one smtp-source per user, alternately to each front-end.
  per=$((MSGS / USERS))
  start=$(date +%s.%N)
  SRC=()
  for u in $(seq 0 $((USERS - 1))); do
    smtp-source -s 2 -l 4096 -m $per -d -M client.example.net -f bench@example.net -t user$u@example.test -c 127.0.0.1:2$((1701 + u % 2)) >/dev/null 2>>$R/source.err &
    SRC+=($!)
  done
  wait_all=$((per * USERS))
  for _ in $(seq 1200); do
    [ "$(count_delivered $R/store*/data)" -ge $wait_all ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  got=$(count_delivered $R/store*/data)
  msgs=$(awk -v n=$got -v a=$start -v b=$end 'BEGIN { printf "%.0f", n / (b - a) }')
  for p in "${SRC[@]}"; do wait $p || true; done

  # IMAP operations through the proxy.
  ops=$($W/imapload -addr 127.0.0.1:21799 -tls -domain example.test -pass "bench pw 123456" \
    -clients $CLIENTS -users $USERS -seed 10 -duration ${SECS}s 2>$R/imapload.err | sed 's/.*ops_per_sec=//')
  echo "backends=$N delivered=$got/$wait_all messages_per_sec=$msgs imap_ops_per_sec=${ops:-0}"
  stop_all
done
