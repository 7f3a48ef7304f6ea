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
# STRACE=1 then counts the system calls of each proxy process (strace -c) per NOOP, per
# FETCH and per usual session: a measure the machine's load does not blur.
# PROFILE=phase (noops, fetches, sessions or mixes) prints the top of a CPU profile of
# the proxy process during that phase (http.pprof).
# IMAPTEST_SECS=n then runs imaptest's default random mix (10 clients, its checks of every
# reply on) for n seconds directly and through each proxy: CPU per imaptest command.
# Usage: [REPEAT=3] [BASE_BIN=...] [STRACE=1] [PROFILE=sessions] [IMAPTEST_SECS=20] bench/proxy.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
W=$(bench_workdir proxy)
[ -d "$W" ] || { echo "no work directory" >&2; exit 1; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; rm -rf $W' EXIT
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
load() { $W/proxyload -addr 127.0.0.1:$1 -pids $2 -user bench@example.test -pass "bench pw 123456" -sessions ${SESSIONS:-1000} -mixes ${MIXES:-300} -noops ${NOOPS:-20000} -fetches ${FETCHES:-5000} -searches ${SEARCHES:-2000} ${3:-}; }
overhead() { # ROUND NAME DIRECT PROXIED
  paste <(echo "$3" | tr ' ' '\n') <(echo "$4" | tr ' ' '\n') | awk -F'[=\t]' -v r=$1 -v n=$2 \
    '{ k = ($1 ~ /^backend_/) ? "backend_change" : "overhead"; printf "round=%s %s %s %s=%.0f%%\n", r, n, $1, k, ($4-$2)*100/$2 }'
}
load $B_TLS ${PIDS[0]} "-setup -sessions 1 -mixes 1 -noops 1 -fetches 1 -searches 1" >/dev/null
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
done
if [ -n "${STRACE:-}" ]; then
  only="-sessions 0 -mixes 0 -noops 0 -fetches 0 -searches 0"
  for ph in "noops 2000" "fetches 1000" "mixes 100"; do
    set -- $ph
    for v in "proxied ${PIDS[1]} $P_TLS" ${BASE_BIN:+"proxied-base ${PIDS[2]} $P2_TLS"}; do
      set -- $1 $2 $v
      strace -f -c -p $4 -o $W/strace.out 2>/dev/null & st=$!
      sleep 1
      load $5 $4 "$only -$1 $2" >/dev/null
      kill -INT $st; wait $st || true
      awk -v n=$2 -v name=$3 -v ph=$1 '$NF ~ /^(read|write|epoll_pwait|futex|nanosleep|total)$/ {
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
  cpu_of() { local t=0; for p in "$@"; do set -- $(sed 's/.*) //' /proc/$p/stat); t=$((t + ${12} + ${13})); done; echo $t; }
  itest() { # NAME PORT PIDS...
    local name=$1 port=$2; shift 2
    local c0=$(cpu_of "$@")
    (cd $W && "$IMAPTEST/run" host=127.0.0.1 port=$port ssl=any-cert user=bench@example.test pass="bench pw 123456" \
      clients=10 secs=$IMAPTEST_SECS mbox=$W/it.mbox >$W/it-$name.out 2>&1) || true
    local c1=$(cpu_of "$@")
    python3 - "$name" $((c1 - c0)) $W/it-$name.out <<'PY'
import sys
name, ticks, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path, errors="replace").read().splitlines()
cols, tot = [], None
for i, l in enumerate(lines):
    if l.strip().startswith("Totals:"):
        for m in lines[i + 1:]:
            f = m.split()
            if f[:1] == ["Logi"]:
                cols = f
            elif cols and f and all(x.isdigit() for x in f):
                tot = f
                break
if not tot:
    print(f"imaptest {name}: no totals; output in {path}: {lines[-3:]}")
    sys.exit(0)
cmds = sum(int(x) for x in tot[:len(cols)])
errors = sum(1 for l in lines if l.startswith("Error:"))
print(f"imaptest {name}: commands={cmds} cpu_ms={ticks*10} cpu_us_per_command={ticks*10000/max(cmds,1):.1f} errors={errors}")
PY
  }
  for r in $(seq ${REPEAT:-1}); do
    itest direct $B_TLS ${PIDS[0]}
    itest proxied $P_TLS ${PIDS[1]} ${PIDS[0]}
    [ -z "${BASE_BIN:-}" ] || itest proxied-base $P2_TLS ${PIDS[2]} ${PIDS[0]}
  done
fi
