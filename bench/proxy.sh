#!/bin/bash
# The IMAP proxy's cost (issue 21): one back-end process, one proxy process in front of
# it (plaintext link on loopback, master login, local directory), the same load
# generator against the back-end directly and through the proxy, in the same run.
# Prints the CPU of the server processes per bare session (connect, TLS, LOGIN, LOGOUT),
# per usual session (connect, TLS, LOGIN, SELECT, FETCH of flags and envelopes of 20
# messages, SEARCH UNSEEN, two FETCHes of a 20 KB body, LOGOUT), per NOOP, per FETCH of a
# 20 KB message and per SEARCH SUBJECT of 20 messages: directly (the back-end's) and
# proxied (proxy plus back-end), and the proxy's overhead as a share of the direct cost,
# (proxied - direct) / direct, rounds alternating; backend_us is the back-end's CPU alone
# (proxied, it does no TLS: backend_change is negative). BASE_BIN=path runs a second proxy from
# another portcullis binary (the code before a change) in the same rounds.
# STRACE=1 then counts the system calls of each back-end reached directly and of each
# proxy (strace -c: the processes, not the back-end behind a proxy) per NOOP, per FETCH
# and per usual session: a measure the machine's load does not blur.
# PROFILE=phase (noops, fetches, sessions or mixes) prints the top of a CPU profile of
# the proxy process during that phase (http.pprof).
# IMAPTEST_SECS=n then runs imaptest's default random mix (10 clients, its checks of every
# reply on) for n seconds directly and through each proxy: CPU per imaptest command.
# The same rounds measure Dovecot's own proxy the same way (DOVECOT=0 leaves it out): a
# Dovecot back-end reached directly (implicit TLS) and a Dovecot proxy instance in front
# of it (passdb proxy=y with the master login over a plaintext link; the back-end's
# login_trusted_networks holds the proxy's address, its master passdb checks the master
# password; imap-login relays), the CPU of each instance being its master's process tree
# (the master, the processes it forked alive and the ones it reaped: auth, imap-login,
# imap, config, log, anvil, stats). Dovecot checks each login's password with
# DOVECOT_SCHEME (default SHA256: one hash, as a login costs portcullis when its verified-
# login cache has it, as every login of this bench after the first does; ARGON2ID would
# hash each login for 100 ms and hide everything else). Its login processes are reused
# (imap-login service_count = 0, Dovecot's "high-performance mode"); DOVECOT_LOGIN=fork
# keeps Dovecot's default (a login process forked per connection, service_count = 1).
# Usage: [REPEAT=3] [BASE_BIN=...] [STRACE=1] [PROFILE=sessions] [IMAPTEST_SECS=20]
#        [DOVECOT=0] [DOVECOT_LOGIN=fork] [DOVECOT_SCHEME=SHA256] bench/proxy.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
W=$(bench_workdir proxy)
[ -d "$W" ] || { echo "no work directory" >&2; exit 1; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf $W' EXIT
go build -o $W/portcullis ./cmd/portcullis
(cd bench && go build -o $W/proxyload ./cmd/proxyload)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $W/master.secret
B_PLAIN=21431 B_TLS=21432 P_TLS=21433 P2_TLS=21434
node() { # NAME SMTPPORT EXTRA
  mkdir -p $W/$1
  portcullis_config $W/$1/data $2 | sed '/^imap:/d; /^pop3:/d'
  cat <<CF
http: { addr: "" }
log: { level: warn }
proxy: { master_user: proxy, master_secret_file: $W/master.secret }
$3
CF
}
# The proxy reaches the back-end over ::1, its only trusted proxy address: direct clients
# (imaptest, from 127.0.0.1) send no PROXY header.
node backend 21425 "imap: { addr: \"[::1]:$B_PLAIN\", tls_addr: 127.0.0.1:$B_TLS, proxy_protocol: true, proxy_from: [\"::1/128\"] }
pop3: { addr: \"\" }" > $W/backend.yaml
node proxy 21426 "imap: { addr: \"\" }
pop3: { addr: \"\" }" | sed "s|^proxy: {|proxy: { imaps_addr: 127.0.0.1:$P_TLS, default_host: store1, backends: { store1: { imap: \"[::1]:$B_PLAIN\" } },|" > $W/proxy.yaml
[ -z "${PROFILE:-}" ] || sed -i 's|^http: { addr: "" }|http: { addr: "127.0.0.1:21435", pprof: true }|' $W/proxy.yaml
for n in backend proxy; do
  mkdir -p $W/$n/data
  echo "bench pw 123456" | $W/portcullis user add bench@example.test --password-stdin --config $W/$n.yaml >/dev/null
  $W/portcullis serve --config $W/$n.yaml 2>$W/$n.log &
  PIDS+=($!)
done
wait_port $B_TLS backend ${PIDS[0]} $W/backend.log
wait_port $P_TLS proxy ${PIDS[1]} $W/proxy.log
if [ -n "${BASE_BIN:-}" ]; then
  sed "s|imaps_addr: 127.0.0.1:$P_TLS|imaps_addr: 127.0.0.1:$P2_TLS|; s|$W/proxy/data|$W/base/data|; s|127.0.0.1:21426|127.0.0.1:21427|" $W/proxy.yaml > $W/base.yaml
  mkdir -p $W/base/data
  echo "bench pw 123456" | $W/portcullis user add bench@example.test --password-stdin --config $W/base.yaml >/dev/null
  $BASE_BIN serve --config $W/base.yaml 2>$W/base.log &
  PIDS+=($!)
  wait_port $P2_TLS base ${PIDS[2]} $W/base.log
fi
DOVECOT=${DOVECOT:-1}
D_PLAIN=21436 D_TLS=21437 DP_TLS=21438
if [ "$DOVECOT" = 1 ]; then
  # An ECDSA P-256 certificate, as portcullis makes for itself.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.example.test \
    -keyout $W/dovecot.key -out $W/dovecot.crt 2>/dev/null
  login_service() { # the imap-login service's process model
    [ "${DOVECOT_LOGIN:-reuse}" = fork ] || printf '  service_count = 0\n  process_min_avail = 2\n'
  }
  dovecot_conf() { # DIR: the settings both instances share
    cat <<CF
base_dir = $1/run
state_dir = $1/state
log_path = $1/dovecot.log
info_log_path = /dev/null
instance_name = $(basename $1)
listen = 127.0.0.1
protocols = imap
ssl = yes
ssl_cert = <$W/dovecot.crt
ssl_key = <$W/dovecot.key
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
mail_max_userip_connections = 10000
default_process_limit = 1000
default_client_limit = 20000
default_vsz_limit = 0
first_valid_uid = 1
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$1/mail/%u
}
CF
  }
  DHASH=$(doveadm pw -s "${DOVECOT_SCHEME:-SHA256}" -p "bench pw 123456")
  MHASH=$(doveadm pw -s SHA256 -p "$(cat $W/master.secret)")
  mkdir -p $W/dbackend/mail $W/dproxy/mail
  chown 65534:65534 $W/dbackend/mail
  # The back-end: the users' passwords for direct clients; the master login only from the
  # proxy's real address (allow_real_nets), whose ID (the client's address) it trusts.
  echo "bench@example.test:$DHASH" > $W/dbackend/passwd
  echo "proxy:$MHASH::::::allow_real_nets=127.0.0.1/32" > $W/dbackend/masters
  { dovecot_conf $W/dbackend; cat <<CF
login_trusted_networks = 127.0.0.1/32
passdb {
  driver = passwd-file
  args = $W/dbackend/masters
  master = yes
}
passdb {
  driver = passwd-file
  args = $W/dbackend/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $D_PLAIN
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $D_TLS
    ssl = yes
  }
$(login_service)
}
service imap {
  service_count = 0
  process_min_avail = 4
}
CF
  } > $W/dbackend.conf
  # The proxy: the password checked here, then the master login to the back-end.
  echo "bench@example.test:$DHASH::::::proxy=y host=127.0.0.1 port=$D_PLAIN master=proxy pass=$(cat $W/master.secret)" > $W/dproxy/passwd
  { dovecot_conf $W/dproxy; cat <<CF
passdb {
  driver = passwd-file
  args = $W/dproxy/passwd
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $DP_TLS
    ssl = yes
  }
$(login_service)
}
CF
  } > $W/dproxy.conf
  for n in dbackend dproxy; do
    dovecot -F -c $W/$n.conf 2>$W/$n.err &
    PIDS+=($!)
    eval ${n^^}_PID=$!
  done
  wait_port $D_TLS dovecot-backend $DBACKEND_PID $W/dbackend/dovecot.log
  wait_port $DP_TLS dovecot-proxy $DPROXY_PID $W/dproxy/dovecot.log
fi
load() { $W/proxyload -addr 127.0.0.1:$1 -pids $2 -user bench@example.test -pass "bench pw 123456" -sessions ${SESSIONS:-1000} -mixes ${MIXES:-300} -noops ${NOOPS:-20000} -fetches ${FETCHES:-5000} -searches ${SEARCHES:-2000} ${3:-}; }
overhead() { # ROUND NAME DIRECT PROXIED
  paste <(echo "$3" | tr ' ' '\n') <(echo "$4" | tr ' ' '\n') | awk -F'[=\t]' -v r=$1 -v n=$2 \
    '{ k = ($1 ~ /^backend_/) ? "backend_change" : "overhead"; printf "round=%s %s %s %s=%.0f%%\n", r, n, $1, k, ($4-$2)*100/$2 }'
}
load $B_TLS ${PIDS[0]} "-setup -sessions 1 -mixes 1 -noops 1 -fetches 1 -searches 1" >/dev/null
[ "$DOVECOT" != 1 ] || load $D_TLS $DBACKEND_PID "-setup -sessions 1 -mixes 1 -noops 1 -fetches 1 -searches 1" >/dev/null
for r in $(seq ${REPEAT:-1}); do
  echo "round=$r $(uptime | sed 's/.*load/load/')"
  d=$(load $B_TLS ${PIDS[0]})
  p=$(load $P_TLS ${PIDS[1]},${PIDS[0]})
  echo "round=$r direct: $d"
  echo "round=$r proxied: $p"
  if [ -n "${BASE_BIN:-}" ]; then
    b=$(load $P2_TLS ${PIDS[2]},${PIDS[0]})
    echo "round=$r proxied-base: $b"
    overhead $r proxied-base "$d" "$b"
  fi
  overhead $r proxied "$d" "$p"
  if [ "$DOVECOT" = 1 ]; then
    dd=$(load $D_TLS $DBACKEND_PID)
    dp=$(load $DP_TLS $DPROXY_PID,$DBACKEND_PID)
    echo "round=$r dovecot-direct: $dd"
    echo "round=$r dovecot-proxied: $dp"
    overhead $r dovecot-proxied "$dd" "$dp"
  fi
done | tee $W/rounds
# Medians and ranges over the rounds: CPU per operation of each setup, and overheads.
awk '
  / (direct|proxied|proxied-base|dovecot-direct|dovecot-proxied): / {
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2 " " kv[1]] = v[$2 " " kv[1]] " " kv[2] } }
  / (overhead|backend_change)=/ { split($4, kv, "="); sub(/%/, "", kv[2]); v[$2 " " $3 " " kv[1]] = v[$2 " " $3 " " kv[1]] " " kv[2] }
  END { for (k in v) { n = split(substr(v[k], 2), a, " "); asort(a)
    m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    printf "median %s=%g range=%g…%g rounds=%d\n", k, m, a[1], a[n], n } }' $W/rounds | sort
if [ -n "${STRACE:-}" ]; then
  only="-sessions 0 -mixes 0 -noops 0 -fetches 0 -searches 0"
  for ph in "noops 2000" "fetches 1000" "mixes 100"; do
    set -- $ph
    for v in "direct ${PIDS[0]} $B_TLS" "proxied ${PIDS[1]} $P_TLS" ${BASE_BIN:+"proxied-base ${PIDS[2]} $P2_TLS"} \
        ${DPROXY_PID:+"dovecot-direct $DBACKEND_PID $D_TLS" "dovecot-proxied $DPROXY_PID $DP_TLS"}; do
      set -- $1 $2 $v
      # Dovecot's proxy is its master and the processes it forked (imap-login relays):
      # all of them, and those forked during the phase (-f).
      strace -f -c $(for p in $4 $(pgrep -P $4); do echo -p $p; done) -o $W/strace.out 2>/dev/null & st=$!
      sleep 1
      load $5 $4 "$only -$1 $2" >/dev/null
      kill -INT $st; wait $st || true
      awk -v n=$2 -v name=$3 -v ph=$1 '$4 ~ /^[0-9]+$/ && ($4/n >= 0.05 || $NF == "total") {
          printf "%s %s %s_per_op=%.2f\n", name, ph, $NF, $4/n }' $W/strace.out
    done
  done
fi
if [ -n "${PROFILE:-}" ]; then
  curl -s "http://127.0.0.1:21435/debug/pprof/profile?seconds=20" -o $W/cpu.prof &
  cp=$!
  declare -A big=([noops]=100000 [fetches]=20000 [sessions]=3000 [mixes]=1000)
  load $P_TLS ${PIDS[1]} "-sessions 0 -mixes 0 -noops 0 -fetches 0 -searches 0 -$PROFILE ${big[$PROFILE]}" >/dev/null &
  lp=$!
  wait $cp
  kill $lp 2>/dev/null || true
  go tool pprof -top $W/portcullis $W/cpu.prof 2>/dev/null | head -45
  [ -z "${KEEP_PROF:-}" ] || cp $W/cpu.prof $W/portcullis "$KEEP_PROF"
fi
if [ -n "${IMAPTEST_SECS:-}" ]; then
  IMAPTEST=${PORTCULLIS_IMAPTEST:-$(git rev-parse --path-format=absolute --git-common-dir)/../.cache/imaptest}
  python3 - $W/it.mbox <<'PY'
import sys
with open(sys.argv[1], "w", newline="") as f:
    for i in range(50):
        f.write("From bench@example.test Thu Jan  1 00:00:00 2015\n")
        f.write(f"From: a{i}@example.test\nTo: bench@example.test\nSubject: imaptest {i}\nMessage-ID: <{i}@example.test>\nDate: Thu, 1 Jan 2015 00:00:00 +0000\n\n")
        f.write(("body line %d\n" % i) * (20 + i * 10))
PY
  cpu_of() { $W/proxyload -cpu -pids $(IFS=,; echo "$*"); } # µs, their process trees
  itest() { # NAME PORT PIDS...
    local name=$1 port=$2; shift 2
    local c0=$(cpu_of "$@")
    (cd $W && "$IMAPTEST/run" host=127.0.0.1 port=$port ssl=any-cert user=bench@example.test pass="bench pw 123456" \
      clients=10 secs=$IMAPTEST_SECS mbox=$W/it.mbox >$W/it-$name.out 2>&1) || true
    local c1=$(cpu_of "$@")
    local t=$(imaptest_totals $W/it-$name.out | head -1) cmds
    cmds=$(echo "$t" | sed -n 's/.*commands=\([0-9]*\).*/\1/p')
    echo "imaptest $name: $t cpu_ms=$(( (c1 - c0) / 1000 )) cpu_us_per_command=$(echo "scale=1; ($c1 - $c0) / ${cmds:-0}" | bc 2>/dev/null || echo -)"
  }
  for r in $(seq ${REPEAT:-1}); do
    itest direct $B_TLS ${PIDS[0]}
    itest proxied $P_TLS ${PIDS[1]} ${PIDS[0]}
    [ -z "${BASE_BIN:-}" ] || itest proxied-base $P2_TLS ${PIDS[2]} ${PIDS[0]}
    if [ "$DOVECOT" = 1 ]; then
      itest dovecot-direct $D_TLS $DBACKEND_PID
      itest dovecot-proxied $DP_TLS $DPROXY_PID $DBACKEND_PID
    fi
  done
fi
