#!/bin/bash
# The IMAP proxy's cost (issue 21): one back-end process, one proxy process in front of
# it (plaintext link on loopback, master login, local directory), the same load
# generator against the back-end directly and through the proxy, in the same run.
# Prints the CPU of the server processes per session (connect, TLS, LOGIN, LOGOUT), per
# NOOP and per FETCH of a 20 KB message: directly (the back-end's) and proxied (proxy
# plus back-end), and the proxy's overhead as a share of the direct cost.
# Usage: [REPEAT=3] bench/proxy.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
W=$(bench_workdir proxy)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; sleep 0.5; rm -rf $W' EXIT
go build -o $W/portcullis ./cmd/portcullis
(cd bench && go build -o $W/proxyload ./cmd/proxyload)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $W/master.secret
B_PLAIN=21431 B_TLS=21432 P_TLS=21433
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
node backend 21425 "imap: { addr: 127.0.0.1:$B_PLAIN, tls_addr: 127.0.0.1:$B_TLS, proxy_protocol: true, proxy_from: [127.0.0.1/32] }
pop3: { addr: \"\" }" > $W/backend.yaml
node proxy 21426 "imap: { addr: \"\" }
pop3: { addr: \"\" }" | sed "s|^proxy: {|proxy: { imaps_addr: 127.0.0.1:$P_TLS, default_host: store1, backends: { store1: { imap: 127.0.0.1:$B_PLAIN } },|" > $W/proxy.yaml
for n in backend proxy; do
  mkdir -p $W/$n/data
  echo "bench pw 123456" | $W/portcullis user add bench@example.test --password-stdin --config $W/$n.yaml >/dev/null
  $W/portcullis serve --config $W/$n.yaml 2>$W/$n.log &
  PIDS+=($!)
done
wait_port $B_TLS backend ${PIDS[0]} $W/backend.log
wait_port $P_TLS proxy ${PIDS[1]} $W/proxy.log
load() { $W/proxyload -addr 127.0.0.1:$1 -pids $2 -user bench@example.test -pass "bench pw 123456" -sessions ${SESSIONS:-1000} -noops ${NOOPS:-20000} -fetches ${FETCHES:-5000}; }
for r in $(seq ${REPEAT:-1}); do
  d=$(load $B_TLS ${PIDS[0]})
  p=$(load $P_TLS ${PIDS[1]},${PIDS[0]})
  echo "round=$r direct: $d"
  echo "round=$r proxied: $p"
  paste <(echo "$d" | tr ' ' '\n') <(echo "$p" | tr ' ' '\n') | awk -F'[=\t]' -v r=$r \
    '{ printf "round=%s %s proxy_overhead=%.0f%%\n", r, $1, ($4-$2)*100/$2 }'
done
