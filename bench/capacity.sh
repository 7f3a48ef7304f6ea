#!/bin/bash
# Capacity of ONE back-end (issue 21: "a measured capacity per back-end on the 2-core test
# machine: users, messages delivered per second, concurrent IMAP sessions"). One
# back-end (mode: backend), one front-end (mode: frontend) delivering to it by LMTP and
# one proxy (mode: proxy, implicit TLS, plaintext link with PROXY v2 and the master login)
# in front of it, over one PostgreSQL directory; every process separate on loopback.
#   deliveries: smtp-source sends MSGS messages (4 KiB) to DUSERS users through the
#     front-end; the clock stops when the last one is in the back-end's maildir. Prints
#     messages/s and the CPU time per message of the back-end, the front-end and
#     PostgreSQL (utime+stime from /proc; PostgreSQL's: its processes alive at both ends).
#   sessions: bench/cmd/imapidle holds SESSIONS (levels, ascending) IMAP sessions in
#     IDLE through the proxy (IDLE_USERS users, logged in once before) and reports the
#     back-end's and the proxy's RSS per session since the start and, in parentheses, per
#     session added between the last two levels (without what is held once: the users'
#     open stores, the proxy's hash buffers); while they are held, imapload's operation mix runs on ACTIVE more
#     clients through the proxy for SECS seconds (commands/s with that many sessions
#     idle), and every idle session must still answer DONE at the end.
#   users: the directory grown to each size of USERS_AT (the users are copies of one with
#     the default argon2id hash, inserted in SQL); bench/cmd/logincost looks up LOOKUPS
#     random users in the directory (no cache) and runs LOGINS first logins of random
#     distinct users through the proxy (connect, TLS, LOGIN, LOGOUT; 4 at once): the
#     latency and the CPU per login of the proxy and the back-end.
# Prints a table at the end, with the load average beside it: run it on a quiet machine.
# Descriptors: each proxied session holds two in the proxy, one in the back-end and one
# in imapidle; the levels must fit the hard RLIMIT_NOFILE (ulimit -Hn) of the proxy.
# Usage: [MSGS=3000] [DUSERS=100] [SESSIONS=1000,5000] [IDLE_USERS=200] [ACTIVE=10]
#        [SECS=10] [USERS_AT="10000 30000"] [LOOKUPS=2000] [LOGINS=200] [KEEP=1]
#        bench/capacity.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
MSGS=${MSGS:-3000} DUSERS=${DUSERS:-100} SESSIONS=${SESSIONS:-1000,5000} IDLE_USERS=${IDLE_USERS:-200}
ACTIVE=${ACTIVE:-10} SECS=${SECS:-10} USERS_AT=${USERS_AT:-10000 30000} LOOKUPS=${LOOKUPS:-2000} LOGINS=${LOGINS:-200}
PASS=bench-pw-123456 # imapidle sends it as an atom
command -v smtp-source >/dev/null || bash scripts/install-test-deps.sh
ulimit -n "$(ulimit -Hn)"
W=$(bench_workdir capacity)
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait $p 2>/dev/null || true; done; PIDS=(); }
trap 'stop_all; stop_postgres $W; sleep 1; [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf $W' EXIT
go build -o $W/portcullis ./cmd/portcullis
(cd bench && go build -o $W/imapload ./cmd/imapload && go build -o $W/imapidle ./cmd/imapidle && go build -o $W/logincost ./cmd/logincost)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $W/master.secret

# PostgreSQL, as its own user.
PGPORT=21900
start_postgres $W $PGPORT mail
DSN="postgres://portcullis@127.0.0.1:$PGPORT/mail?sslmode=disable"
SQL() { psql -qtA -h 127.0.0.1 -p $PGPORT -U portcullis -d mail -c "$1"; }

LMTP=127.0.0.1:21910 B_IMAP=127.0.0.1:21911 FE_PORT=21912 P_IMAPS=127.0.0.1:21913
portcullis_config $W/store1/data 21914 | sed '/^imap:/d; /^smtp:/,$d' > $W/store1.yaml
cat >> $W/store1.yaml <<CF
mode: backend
trusted_networks: [127.0.0.1/32]
http: { addr: "" }
log: { level: warn }
smtp: { listeners: [ { name: lmtp, addr: "$LMTP", mode: lmtp } ] }
imap:
  addr: "$B_IMAP"
  proxy_protocol: true
  proxy_from: [127.0.0.1/32]
  max_connections: -1
  max_connections_per_ip: -1
  max_login_connections: -1
  max_user_connections: -1
  max_user_ip_connections: -1
proxy: { master_user: proxy, master_secret_file: $W/master.secret }
directory: { postgres: "$DSN", this_host: store1 }
CF
portcullis_config $W/fe1/data $FE_PORT > $W/fe1.yaml
cat >> $W/fe1.yaml <<CF
mode: frontend
trusted_networks: [192.0.2.0/24]
http: { addr: "" }
log: { level: warn }
delivery: { min_backoff: 1s, max_backoff: 2s }
directory:
  postgres: "$DSN"
  hosts:
    store1: { lmtp: "$LMTP" }
CF
cat > $W/proxy.yaml <<CF
hostname: proxy.example.test
mode: proxy
data_dir: $W/proxy/data
http: { addr: "" }
log: { level: warn }
directory: { postgres: "$DSN" }
proxy:
  imaps_addr: "$P_IMAPS"
  max_connections: -1
  max_connections_per_ip: -1
  max_login_connections: -1
  master_user: proxy
  master_secret_file: $W/master.secret
  backends:
    store1: { imap: "$B_IMAP" }
CF
for n in store1 fe1 proxy; do mkdir -p $W/$n/data; done

# Users: user0 with the default hash (argon2id, 64 MiB), the others copies of its row.
echo "$PASS" | $W/portcullis user add user0@example.test --host store1 --password-stdin --config $W/fe1.yaml >/dev/null
grow_users() { # N: users user0..user<N-1>
  SQL "INSERT INTO directory_users(address, password, quota, mail_host, state, updated)
       SELECT 'user' || g || '@example.test', u.password, 0, 'store1', '', now()
       FROM directory_users u, generate_series(1, $1 - 1) g WHERE u.address = 'user0@example.test'
       ON CONFLICT DO NOTHING"
  SQL "ANALYZE directory_users"
}
grow_users $(( DUSERS > IDLE_USERS ? DUSERS : IDLE_USERS ))

serve() { $W/portcullis serve --config $W/$1.yaml 2>$W/$1.log & PIDS+=($!); }
serve store1; B_PID=$!
serve fe1; F_PID=$!
wait_port ${LMTP#*:} store1 $B_PID $W/store1.log # not B_IMAP: a connection without a PROXY header is logged
wait_port $FE_PORT fe1 $F_PID $W/fe1.log
serve proxy; P_PID=$! # after the back-end: its first health check would find it down
wait_port ${P_IMAPS#*:} proxy $P_PID $W/proxy.log

cpu_ms() { # PID...: utime+stime in ms, summed
  local t=0 p f
  for p in "$@"; do
    f=$(sed 's/^.*) //' /proc/$p/stat 2>/dev/null) || continue
    set -- $f
    t=$((t + (${12} + ${13}) * 10))
  done
  echo $t
}
pg_pids() { # the postmaster (runuser's child) and its processes
  local pm
  pm=$(head -1 $W/pg/data/postmaster.pid)
  echo $pm $(pgrep -P $pm)
}
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "-" }'; }

# (a) deliveries.
count_delivered() { find $W/store1/data -path '*/Maildir/new/*' -type f 2>/dev/null | wc -l; }
echo "deliveries: $MSGS messages to $DUSERS users" >&2
b0=$(cpu_ms $B_PID) f0=$(cpu_ms $F_PID) g0=$(cpu_ms $(pg_pids))
start=$(date +%s.%N)
per_user=$((MSGS / DUSERS)) SRC=()
for u in $(seq 0 $((DUSERS - 1))); do
  smtp-source -s 1 -l 4096 -m $per_user -d -M client.example.net -f bench@example.net -t user$u@example.test -c 127.0.0.1:$FE_PORT >/dev/null 2>>$W/source.err &
  SRC+=($!)
done
want=$((per_user * DUSERS))
for _ in $(seq 3000); do
  [ "$(count_delivered)" -ge $want ] && break
  sleep 0.1
done
end=$(date +%s.%N)
for p in "${SRC[@]}"; do wait $p || true; done
got=$(count_delivered)
b1=$(cpu_ms $B_PID) f1=$(cpu_ms $F_PID) g1=$(cpu_ms $(pg_pids))
D_RATE=$(awk -v n=$got -v a=$start -v b=$end 'BEGIN { printf "%.0f", n / (b - a) }')
D_B=$(per $b0 $b1 $got) D_F=$(per $f0 $f1 $got) D_G=$(per $g0 $g1 $got)
D_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "delivered=$got/$want messages_per_sec=$D_RATE backend_cpu_ms_per_msg=$D_B frontend_cpu_ms_per_msg=$D_F postgres_cpu_ms_per_msg=$D_G load=$D_LOAD" >&2

# (b) sessions: IDLE through the proxy, then the mix on ACTIVE clients beside them.
echo "sessions: $SESSIONS idle through the proxy, then $ACTIVE active for ${SECS}s" >&2
HOLD=$((SECS + 15))
# Their first logins first, 2 at once: each checks a 64 MiB argon2id hash at the proxy,
# and 32 at once exceed auth's hashing limits (NO [UNAVAILABLE], by design); later logins
# of the same users are served from the proxy's verified-login cache.
$W/logincost -addr $P_IMAPS -users $IDLE_USERS -logins $IDLE_USERS -parallel 2 -pass "$PASS" >&2
$W/imapidle -addr $P_IMAPS -tls -domain example.test -pass "$PASS" -levels $SESSIONS -users $IDLE_USERS \
  -server-pid $B_PID -proxy-pid $P_PID -hold ${HOLD}s >$W/imapidle.out 2>$W/imapidle.err &
IDLE_PID=$!
for _ in $(seq 6000); do
  grep -q '^holding=' $W/imapidle.out && break
  kill -0 $IDLE_PID 2>/dev/null || break
  sleep 0.1
done
S_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
b0=$(cpu_ms $B_PID) p0=$(cpu_ms $P_PID)
OPS=$($W/imapload -addr $P_IMAPS -tls -domain example.test -pass "$PASS" -clients $ACTIVE -users $ACTIVE \
  -seed 10 -duration ${SECS}s 2>$W/imapload.err | sed -n 's/.*ops_per_sec=\([0-9.]*\).*/\1/p')
b1=$(cpu_ms $B_PID) p1=$(cpu_ms $P_PID)
wait $IDLE_PID || echo "imapidle failed: $(tail -3 $W/imapidle.err)" >&2
cat $W/imapidle.out >&2
LAST=$(grep '^sessions=' $W/imapidle.out | tail -1)
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
S_N=$(field sessions "$LAST") S_FAILED=$(field failed "$LAST")
S_B=$(field rss_per_conn "$LAST") S_BADD=$(field rss_per_added_conn "$LAST") S_P=$(field proxy_rss_per_conn "$LAST") S_PADD=$(field proxy_rss_per_added_conn "$LAST")
S_ALIVE=$(sed -n 's/^sessions_answering_done=//p' $W/imapidle.out)
A_B=$(awk -v a=$b0 -v b=$b1 -v s=$SECS 'BEGIN { printf "%.0f", (b - a) / s / 10 }')
A_P=$(awk -v a=$p0 -v b=$p1 -v s=$SECS 'BEGIN { printf "%.0f", (b - a) / s / 10 }')

# (c) users: the directory at each size.
U_ROWS=()
for n in $USERS_AT; do
  echo "users: $n in the directory" >&2
  grow_users $n
  l=$($W/logincost -dsn "$DSN" -users $n -lookups $LOOKUPS -seed $n)
  s=$($W/logincost -addr $P_IMAPS -users $n -logins $LOGINS -parallel 4 -pass "$PASS" -seed $((n + 1)) \
    -pids proxy=$P_PID,backend=$B_PID) || true
  echo "users=$n $l $s load=$(cut -d' ' -f1-3 /proc/loadavg)" >&2
  U_ROWS+=("| $n | $(field lookup_p50_us "$l") / $(field lookup_p99_us "$l") µs | $(field logins_per_sec "$s") | $(field login_p50_ms "$s") / $(field login_p99_ms "$s") ms | $(field proxy_cpu_ms_per_login "$s") | $(field backend_cpu_ms_per_login "$s") |")
done

# The back-end's own log: warnings and errors (but the one about running as root).
if grep -i "level=\(warn\|error\)" $W/store1.log $W/proxy.log $W/fe1.log | grep -qv "RUNNING AS ROOT"; then
  echo "logs (warnings):" >&2; grep -i "level=\(warn\|error\)" $W/store1.log $W/proxy.log $W/fe1.log | grep -v "RUNNING AS ROOT" | head -10 >&2
fi

cat <<TABLE

One back-end (mode: backend) behind a front-end and the proxy, PostgreSQL directory; $(nproc) cores; $(date -u +%F)

| deliveries | messages/s | back-end CPU ms/msg | front-end CPU ms/msg | PostgreSQL CPU ms/msg | load average |
|---|---|---|---|---|---|
| $got of $want (4 KiB, $DUSERS users) | $D_RATE | $D_B | $D_F | $D_G | $D_LOAD |

| IDLE sessions through the proxy | failed | answering DONE | back-end RSS/session (added) | proxy RSS/session (added) | + $ACTIVE active clients: commands/s | back-end / proxy CPU % meanwhile | load average |
|---|---|---|---|---|---|---|---|
| $S_N | $S_FAILED | $S_ALIVE | $S_B ($S_BADD) | $S_P ($S_PADD) | ${OPS:-0} | $A_B / $A_P | $S_LOAD |

| users in the directory | lookup p50 / p99 (uncached) | first logins/s (4 at once) | login p50 / p99 | proxy CPU ms/login | back-end CPU ms/login |
|---|---|---|---|---|---|
$(printf '%s\n' "${U_ROWS[@]}")
TABLE
